"""Small data-shaping helpers shared by the plot modules (grouping rows; no science)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

Rows = Sequence[Mapping[str, Any]]


def require(rows: Rows, *keys: str) -> None:
    """Raise ``ValueError`` naming the missing column if ``rows`` is empty or lacks a key."""
    if not rows:
        raise ValueError("no rows to plot")
    missing = [k for k in keys if k not in rows[0]]
    if missing:
        raise ValueError(f"rows lack column(s) {missing}; they have {sorted(rows[0])}")


def groups(rows: Rows, key: str | None) -> dict[Any, list[Mapping[str, Any]]]:
    """Rows grouped by ``key`` (first-seen order); one group ``None`` when ``key`` is None."""
    out: dict[Any, list[Mapping[str, Any]]] = {}
    for r in rows:
        out.setdefault(None if key is None else r[key], []).append(r)
    return out


def xy(rows: Iterable[Mapping[str, Any]], x: str, y: str) -> tuple[np.ndarray, np.ndarray]:
    """The ``(x, y)`` columns as float arrays, sorted by x; missing values become NaN."""
    pts = sorted((float(r[x]), np.nan if r.get(y) is None else float(r[y])) for r in rows)
    arr = np.array(pts, dtype=float).reshape(-1, 2)
    return arr[:, 0], arr[:, 1]


def matrix_from_rows(rows: Rows, i: str = "i", j: str = "j", value: str = "value") -> np.ndarray:
    """Pivot tidy ``(i, j, value)`` rows back into a dense matrix."""
    require(rows, i, j, value)
    n = 1 + max(int(r[i]) for r in rows)
    m = 1 + max(int(r[j]) for r in rows)
    out = np.full((n, m), np.nan)
    for r in rows:
        out[int(r[i]), int(r[j])] = float(r[value])
    return out


def matrix_to_rows(matrix: Any, **extra: Any) -> list[dict[str, Any]]:
    """A dense matrix as tidy ``(i, j, value)`` rows (with ``extra`` columns on every row)."""
    a = np.asarray(matrix, dtype=float)
    if a.ndim != 2:
        raise ValueError(f"expected a 2-D matrix, got shape {a.shape}")
    return [
        {**extra, "i": i, "j": j, "value": float(a[i, j])}
        for i in range(a.shape[0])
        for j in range(a.shape[1])
    ]
