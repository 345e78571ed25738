"""Schedule comparison: certified worst-case error and measured error against steps or matmuls."""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from nsiter.plot._data import Rows, groups, require, xy
from nsiter.plot.style import color_for, new_axes

__all__ = ["schedule_comparison"]


def schedule_comparison(
    rows: Rows,
    ax: plt.Axes | None = None,
    *,
    x: str = "step",
    schedule: str = "schedule",
    certified: str | None = "certified_error",
    measured: str | None = "measured_error",
    legend: bool = True,
) -> plt.Axes:
    """Per schedule (one colour each): certified worst-case error (solid) and measured error (dashed).

    Args:
        rows: one row per schedule and step with columns ``x`` (``step`` or ``matmuls``), the certified
            error ``max |1 - phi_k(x)|`` over the input interval, and the measured error on matrices.
        certified, measured: column names; None omits that kind of line.
    """
    require(rows, x, schedule)
    kinds = [(c, "-", "") for c in [certified] if c] + [(m, "--", "o") for m in [measured] if m]
    ax = new_axes(ax, figsize=(5.2, 3.6))
    for n, (name, grp) in enumerate(groups(rows, schedule).items()):
        for col, ls, marker in kinds:
            if all(r.get(col) is None for r in grp):
                continue
            xs, ys = xy(grp, x, col)
            ax.plot(xs, ys, ls=ls, marker=marker, color=color_for(n), label=str(name) if ls == "-" else None)
    ax.set_yscale("log", nonpositive="mask")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel({"step": "step $k$", "matmuls": "matrix multiplications"}.get(x, x))
    ax.set_ylabel(r"error $\max |1 - \sigma|$")
    if legend:
        handles = [
            Line2D([], [], color=color_for(n), label=str(name))
            for n, name in enumerate(groups(rows, schedule))
        ]
        handles += [
            Line2D([], [], color="0.3", ls=ls, marker=mk, label=col.replace("_", " "))
            for col, ls, mk in kinds
        ]
        ax.legend(handles=handles, fontsize=7, ncols=2)
    return ax
