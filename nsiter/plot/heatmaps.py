"""Heatmaps of Gram matrices: ``|X_k X_k^T|`` and the deviation of ``B_k = X_k X_k^T`` from the identity."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from nsiter.plot.style import DIVERGING, SEQUENTIAL, new_axes

__all__ = ["gram_heatmap", "identity_deviation_heatmap"]


def _matrix(matrix: Any) -> np.ndarray:
    a = np.asarray(matrix, dtype=float)
    if a.ndim != 2 or 0 in a.shape:
        raise ValueError(f"expected a non-empty 2-D matrix, got shape {a.shape}")
    return a


def _ticks(n: int, most: int = 12) -> list[int]:
    """0-based positions of the 1-based index labels: every index up to ``most``, else 1 and the multiples of
    a round step (1, 5, 10, 15, 20, 24 for 24), so that the labels never run together."""
    if n <= most:
        return list(range(n))
    steps = (2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000)
    step = next((s for s in steps if n / s <= most - 2), -(-n // (most - 2)))
    ticks = [0, *(i for i in range(step - 1, n, step) if i > step / 2)]
    if n - 1 - ticks[-1] > step / 2:
        ticks.append(n - 1)
    return ticks


def _draw(ax: plt.Axes, a: np.ndarray, cmap: str, vmin: float, vmax: float, label: str, colorbar: bool):
    im = ax.imshow(a, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest", aspect="equal")
    ax.grid(False)
    ax.set_xlabel("column $j$")
    ax.set_ylabel("row $i$")
    for axis, n in ((ax.xaxis, a.shape[1]), (ax.yaxis, a.shape[0])):
        ticks = _ticks(n)
        axis.set_ticks(ticks, [str(i + 1) for i in ticks], fontsize=7)
    if colorbar:
        ax.figure.colorbar(im, ax=ax, shrink=0.8, label=label)
    return im


def gram_heatmap(
    matrix: Any,
    ax: plt.Axes | None = None,
    *,
    vmin: float = 0.0,
    vmax: float = 1.0,
    label: str = r"$|X_k X_k^\top|_{ij}$",
    colorbar: bool = True,
) -> plt.Axes:
    """Heatmap of a non-negative matrix such as ``|X_k X_k^T|`` on a fixed scale ``[vmin, vmax]``.

    For a wide ``X`` (m <= n) with orthonormal rows ``X X^T = I``; for a tall one ``X X^T`` is the
    orthogonal projector onto the column space (rank n), so the experiment chooses the Gram side.
    """
    a = _matrix(matrix)
    ax = new_axes(ax, figsize=(3.6, 3.2))
    _draw(ax, a, SEQUENTIAL, vmin, vmax, label, colorbar)
    return ax


def identity_deviation_heatmap(
    matrix: Any,
    ax: plt.Axes | None = None,
    *,
    limit: float | None = None,
    label: str = r"$(B_k - I)_{ij}$",
    colorbar: bool = True,
) -> plt.Axes:
    """Heatmap of a Gram matrix ``B`` centred at the identity: draws ``B - I`` on ``[-limit, limit]``.

    The diverging palette is white where ``B`` equals the identity, red above and blue below.  ``limit``
    defaults to ``max |B - I|`` (so the scale is symmetric and nothing saturates).
    """
    a = _matrix(matrix)
    if a.shape[0] != a.shape[1]:
        raise ValueError(f"B must be square, got shape {a.shape}")
    dev = a - np.eye(a.shape[0])
    lim = float(np.nanmax(np.abs(dev))) if limit is None else float(limit)
    if not lim > 0:
        lim = 1.0
    ax = new_axes(ax, figsize=(3.6, 3.2))
    _draw(ax, dev, DIVERGING, -lim, lim, label, colorbar)
    return ax
