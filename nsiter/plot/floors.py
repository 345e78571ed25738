"""Dtype floors: how orthogonal a converged iteration can get in each floating-point format."""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.ticker import ScalarFormatter

from nsiter.plot._data import Rows, groups, require, xy
from nsiter.plot.style import color_for, new_axes

__all__ = ["dtype_floors"]


def dtype_floors(
    rows: Rows,
    ax: plt.Axes | None = None,
    *,
    x: str = "n",
    value: str = "floor",
    dtype: str = "dtype",
    reference: str | None = None,
    xlabel: str = "matrix size $n$",
    ylabel: str = r"floor $\|X X^\top - I\|_2$",
) -> plt.Axes:
    """One line per dtype: the measured floor against ``x`` (log-log), with an optional reference.

    ``reference`` names a column (e.g. the unit roundoff ``u`` of the dtype) drawn as a dotted line in
    the same colour, so the floor reads as a multiple of ``u``.
    """
    require(rows, x, value, dtype)
    ax = new_axes(ax)
    for n, (name, grp) in enumerate(groups(rows, dtype).items()):
        xs, ys = xy(grp, x, value)
        ax.plot(xs, ys, marker="o", color=color_for(n), label=str(name))
        if reference:
            xs, rs = xy(grp, x, reference)
            ax.plot(xs, rs, ls=":", color=color_for(n), lw=1)
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.set_yscale("log", nonpositive="mask")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(loc="center right")
    return ax
