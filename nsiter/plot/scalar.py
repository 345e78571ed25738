"""The scalar picture: a step's polynomial ``p(x)`` and the composed maps ``phi_k(x)`` with certified bands."""

from __future__ import annotations

import matplotlib.pyplot as plt

from nsiter.plot._data import Rows, groups, require, xy
from nsiter.plot.style import color_for, new_axes

__all__ = ["scalar_map"]


def scalar_map(
    curves: Rows,
    bands: Rows | None = None,
    ax: plt.Axes | None = None,
    *,
    x: str = "x",
    y: str = "y",
    series: str = "step",
    band_lo: str = "lo",
    band_hi: str = "hi",
    interval: tuple[float, float] | None = None,
    logx: bool = False,
    label: str = r"$\phi_{{{}}}$",
) -> plt.Axes:
    """Curves ``y = phi_k(x)`` (one per ``series`` value) with the certified band of each shaded.

    Args:
        curves: rows ``(series, x, y)``: sampled values of the maps (for drawing only).
        bands: rows ``(series, lo, hi)``: the certified image ``phi_k([a, b])`` of the input interval,
            shaded as a horizontal strip over ``[a, b]`` in the colour of its curve.
        interval: the input interval ``[a, b]`` (dotted vertical lines; default: the x range).
        label: legend format, filled with the series value.
    """
    require(curves, x, y, series)
    ax = new_axes(ax)
    band_of = {} if not bands else {r[series]: (float(r[band_lo]), float(r[band_hi])) for r in bands}
    xs_all = [float(r[x]) for r in curves]
    a, b = interval if interval is not None else (min(xs_all), max(xs_all))
    for n, (key, grp) in enumerate(groups(curves, series).items()):
        xs, ys = xy(grp, x, y)
        c = color_for(n)
        ax.plot(xs, ys, color=c, label=label.format(key))
        if key in band_of:
            lo, hi = band_of[key]
            ax.fill_between([a, b], [lo, lo], [hi, hi], color=c, alpha=0.15, lw=0)
    ax.axhline(1.0, ls="--", c="k", lw=1)
    if interval is not None:
        for v in interval:
            ax.axvline(v, ls=":", c="0.4", lw=1)
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel("$x$ (normalized singular value)")
    ax.set_ylabel(r"$\phi_k(x)$")
    ax.legend()
    return ax
