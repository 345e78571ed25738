"""Search-internal helpers: the diagnostics object, the result every objective returns, a fast float64 interval map.

The certified numbers of nsiter come from :mod:`nsiter.analysis` (interval arithmetic).  Searches
evaluate thousands of candidate polynomials, so they use :func:`image_interval_fast`, the same idea in
plain float64: the image of ``[lo, hi]`` under a polynomial is ``[min, max]`` of its values at the two
endpoints and at the critical points inside (roots of ``p'``, an even polynomial, found as the roots in
``y = x^2`` of ``sum_k (2k+1) c_k y^k``).  Tests check it against :func:`nsiter.analysis.image_interval`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nsiter.polynomial import OddPolynomial
from nsiter.schedule import Provenance, Schedule

__all__ = [
    "Diagnostics",
    "image_interval_fast",
    "propagate_fast",
    "schedule_error_fast",
    "search_result",
]


@dataclass
class Diagnostics:
    """What a search did, returned next to its schedule (``search(...) -> (Schedule, Diagnostics)``).

    Attributes:
        objective: the objective's name (``minimax``, ``max-slope``, ``band``, ``gradient``, ...).
        parameters: every parameter the search ran with (JSON-ready); also stored in the provenance.
        metrics: result metrics, e.g. ``final_error`` (worst ``|1 - phi_T|`` on the search interval),
            ``slope_at_zero``, ``matmuls``; per objective more (``band``, ``loss``...).
        intervals: per step ``{"lo", "hi", "error", ...}``: the interval each step maps to (float64
            estimates; :func:`nsiter.analysis.analyze` certifies them).
        iterations: the search's inner iterations in total: Remez exchanges summed over the steps
            (``minimax``, ``band``; per step in ``intervals``), optimizer steps (``gradient``), Remez solves
            over all degree-sequence prefixes (``budget``), safety factors tried (``calibrate``); 0 for
            closed forms (``max-slope``).
        converged: whether every inner solve met its tolerance.
        seconds: wall time of the search.
        notes: free-form remarks (which convention was used, warnings).
    """

    objective: str
    parameters: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    intervals: list[dict[str, Any]] = field(default_factory=list)
    iterations: int = 0
    converged: bool = True
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "objective": self.objective,
            "parameters": dict(self.parameters),
            "metrics": dict(self.metrics),
            "intervals": [dict(s) for s in self.intervals],
            "iterations": self.iterations,
            "converged": self.converged,
            "seconds": self.seconds,
            "notes": list(self.notes),
        }


def _coefficients(p: OddPolynomial | Sequence[float]) -> np.ndarray:
    return np.asarray(p.coefficients if isinstance(p, OddPolynomial) else p, dtype=float)


def critical_points_fast(p: OddPolynomial | Sequence[float], lo: float, hi: float) -> np.ndarray:
    """Critical points of the odd polynomial ``p`` strictly inside ``(lo, hi)``, ``0 <= lo``, sorted.

    ``p'(x) = sum_k (2k+1) c_k x^(2k)`` is a polynomial of degree ``l`` in ``y = x^2``; its real roots
    ``y > 0`` give ``x = sqrt(y)``.  Each root is polished by two Newton steps on ``p'`` in ``x``.
    """
    c = _coefficients(p)
    d = np.array([(2 * k + 1) * ck for k, ck in enumerate(c)])
    while d.size > 1 and d[-1] == 0:
        d = d[:-1]
    if d.size <= 1:
        return np.empty(0)
    ys = np.roots(d[::-1])
    ys = ys[np.abs(ys.imag) <= 1e-9 * np.maximum(1.0, np.abs(ys.real))].real
    ys = ys[ys > 0]
    xs = np.sqrt(ys)
    # polish: two Newton steps on p'(x); p''(x) = x * sum_{k>=1} (2k+1)(2k) c_k x^(2k-2)
    dd = np.array([(2 * k + 1) * (2 * k) * ck for k, ck in enumerate(c)])[1:]
    for _ in range(2):
        x2 = xs * xs
        f = np.polynomial.polynomial.polyval(x2, d)
        g = xs * np.polynomial.polynomial.polyval(x2, dd) if dd.size else np.zeros_like(xs)
        safe = np.where(g != 0, g, 1.0)
        xs = np.where(g != 0, xs - f / safe, xs)
    xs = np.sort(xs[(xs > lo) & (xs < hi)])
    return xs


def image_interval_fast(p: OddPolynomial | Sequence[float], lo: float, hi: float) -> tuple[float, float]:
    """``(min, max)`` of ``p`` on ``[lo, hi]`` in float64 (endpoints + critical points).

    Search-internal fast estimate of :func:`nsiter.analysis.image_interval` (the certified enclosure).
    """
    c = _coefficients(p)
    xs = np.concatenate([[lo, hi], critical_points_fast(c, lo, hi)])
    x2 = xs * xs
    vals = xs * np.polynomial.polynomial.polyval(x2, c)
    return float(vals.min()), float(vals.max())


def propagate_fast(steps: Sequence[OddPolynomial], lo: float, hi: float) -> list[tuple[float, float]]:
    """Image intervals ``phi_k([lo, hi])`` for ``k = 1..T`` (each the exact image of the previous)."""
    out = []
    a, b = lo, hi
    for p in steps:
        a, b = image_interval_fast(p, a, b)
        out.append((a, b))
    return out


def interval_error(lo: float, hi: float) -> float:
    """Worst ``|1 - y|`` over ``y in [lo, hi]``: the error of a step whose image is ``[lo, hi]``."""
    return max(abs(1.0 - lo), abs(hi - 1.0))


def schedule_error_fast(schedule: Schedule | Sequence[OddPolynomial], lo: float, hi: float) -> float:
    """Worst ``|1 - phi_T(x)|`` over ``x in [lo, hi]`` (float64 fast path)."""
    steps = schedule.steps if isinstance(schedule, Schedule) else schedule
    return interval_error(*propagate_fast(steps, lo, hi)[-1])


def search_result(
    objective: str,
    name: str,
    polys: Sequence[OddPolynomial],
    *,
    source: str,
    reference: str,
    parameters: dict[str, Any],
    description: str,
    lo: float,
    hi: float,
    started: float,
    metrics: dict[str, Any] | None = None,
    intervals: list[dict[str, Any]] | None = None,
    provenance_parameters: dict[str, Any] | None = None,
    restarts: Sequence[int] = (),
    iterations: int = 0,
    converged: bool = True,
    notes: Sequence[str] = (),
) -> tuple[Schedule, Diagnostics]:
    """The end of every search: the schedule with its provenance, and its diagnostics.

    The schedule is ``polys`` under ``name`` (provenance kind ``search``, ``source``, ``reference`` and the
    ``parameters``, or ``provenance_parameters`` when they say more).  The diagnostics carry the per-step
    float64 images of ``[lo, hi]`` (``propagate_fast``: ``intervals`` rows get ``lo``, ``hi`` and ``error``
    of each image, or only ``error`` when the objective passes rows of its own), the common metrics
    ``final_error`` (estimated ``max |1 - phi_T|``), ``slope_at_zero`` and ``matmuls``, then ``metrics``
    (which may override them), and the wall time since ``started`` (``time.perf_counter()``).
    """
    sched = Schedule(
        name,
        tuple(polys),
        Provenance(
            kind="search",
            source=source,
            reference=reference,
            parameters=parameters if provenance_parameters is None else provenance_parameters,
        ),
        description=description,
        restarts=restarts,
    )
    images = propagate_fast(sched.steps, lo, hi)
    if intervals is None:
        intervals = [
            {"degree": p.degree, "lo": a, "hi": b} for p, (a, b) in zip(sched.steps, images, strict=True)
        ]
    for row, (a, b) in zip(intervals, images, strict=True):
        row["error"] = interval_error(a, b)
    diag = Diagnostics(objective, parameters=parameters, intervals=intervals, iterations=int(iterations))
    diag.metrics = {
        "final_error": intervals[-1]["error"],
        "slope_at_zero": sched.slope_at_zero,
        "matmuls": sched.matmuls,
        **(metrics or {}),
    }
    diag.converged = bool(converged)
    diag.notes.extend(notes)
    diag.seconds = time.perf_counter() - started
    return sched, diag
