"""Quantities against the iteration index: singular-value trajectories and the spectral distance."""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

from nsiter.plot._data import Rows, groups, require, xy
from nsiter.plot.style import color_for, new_axes

__all__ = ["QUANTITY_LABELS", "singular_value_trajectories", "spectral_distance"]

# the quantities ``nsiter.records`` records, as a reader reads them (legend and axis labels)
QUANTITY_LABELS = {
    "sigma_max": r"$\sigma_{\max}(X_k)$",
    "sigma_min": r"$\sigma_{\min}(X_k)$",
    "rho": r"$1 - \lambda_{\min}(X_k X_k^\top)$",
    "max_abs_lambda_minus_1": r"$\max_i |\sigma_i^2 - 1|$",
    "orth_err_2": r"$\|X_k X_k^\top - I\|_2$",
    "orth_err_fro": r"$\|X_k X_k^\top - I\|_F$",
    "polar_err_2": r"$\|X_k - U V^\top\|_2$ (polar factor)",
    "polar_err_fro": r"$\|X_k - U V^\top\|_F$ (polar factor)",
}


def singular_value_trajectories(
    rows: Rows,
    ax: plt.Axes | None = None,
    *,
    step: str = "step",
    index: str = "index",
    value: str = "sigma",
    target: float | None = 1.0,
    legend: bool = True,
) -> plt.Axes:
    """One line per singular index ``i``: ``sigma_i(X_k)`` against the step ``k``, the target marked.

    Args:
        rows: tidy rows with the step, the singular index and the singular value (``nsiter.trajectory``
            records per step and singular index).
        ax: axes to draw on (a new figure when None).
        target: a dashed horizontal line at this value (the orthogonal factor has all singular values 1).
    """
    require(rows, step, index, value)
    ax = new_axes(ax)
    for n, (i, grp) in enumerate(sorted(groups(rows, index).items())):
        x, y = xy(grp, step, value)
        ax.plot(x, y, marker="o", color=color_for(n), label=rf"$\sigma_{{{int(i) + 1}}}$")
    if target is not None:
        ax.axhline(target, ls="--", c="k", lw=1, label="target")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("iteration $k$")
    ax.set_ylabel(r"$\sigma_i(X_k)$")
    if legend:
        ax.legend(ncols=2)
    return ax


def spectral_distance(
    rows: Rows,
    ax: plt.Axes | None = None,
    *,
    step: str = "step",
    value: str = "rho",
    series: str | None = None,
    ylabel: str = r"$\rho_k = \max_i |1 - \lambda_i(X_k X_k^\top)|$",
    labels: dict[str, str] | None = None,
) -> plt.Axes:
    """The spectral distance ``rho_k`` of ``B_k = X_k X_k^T`` to the identity against ``k``, log scale.

    One line per value of ``series`` (e.g. the schedule), or a single line.  Non-positive values (a
    distance that is exactly zero) are masked by the log scale.  Legend entries read ``labels[value]``,
    else ``QUANTITY_LABELS[value]`` for the quantities of ``nsiter.records`` (``"polar_err_2"`` reads
    ``||X_k - U V^T||_2``), else the value itself.
    """
    require(rows, step, value, *([series] if series else []))
    ax = new_axes(ax)
    for n, (name, grp) in enumerate(groups(rows, series).items()):
        x, y = xy(grp, step, value)
        text = None if name is None else {**QUANTITY_LABELS, **(labels or {})}.get(str(name), str(name))
        ax.plot(x, y, marker="o", color=color_for(n), label=text)
    ax.set_yscale("log", nonpositive="mask")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("iteration $k$")
    ax.set_ylabel(ylabel)
    if series:
        ax.legend()
    return ax
