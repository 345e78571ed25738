"""Precision-aware calibration: choose the safety factor from measured low-precision runs.

Polar Express replaces every step but the last by ``x -> p(x / s)`` with ``s = 1.01`` chosen by hand
(Amsel et al. 2025, Sec. 4.4); modded-nanogpt uses 1.02, others 1.05 or 1.1.  Here ``s`` is chosen from
measurements instead: for each candidate ``s`` the greedy minimax schedule is built, run by the evaluator
(:func:`nsiter.evaluate.orthogonalize`) in the requested dtype on seeded matrices with log-uniform
singular values in ``[lo, hi]``, and scored by the measured error ``||X_T - U V^T||_2`` (float64 SVD
reference); the factor with the smallest worst measured error wins (ties: the smaller estimated error, :func:`nsiter.search._core.schedule_error_fast`).

Measurement convention.  The certified bound speaks about ``sigma / ||G|| in [lo, hi]``; to test exactly
that, the matrices are normalized by their exact spectral norm (``X_0 = G / (s_norm sigma_max)``, with
the schedule's own normalization scale ``s_norm``), so low-precision effects are isolated from the
norm estimate (:func:`nsiter.measure.measured_errors`, also what the search results table uses).

torch is imported when these functions run, never at import of :mod:`nsiter.search`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from nsiter.checks import check_positive_int, check_safety, check_seed
from nsiter.dtypes import dtype_name
from nsiter.schedule import Schedule
from nsiter.search._core import Diagnostics, schedule_error_fast, search_result
from nsiter.search.minimax import greedy_minimax

__all__ = ["CONVENTIONAL_FACTORS", "CRITERIA", "calibrate"]

CONVENTIONAL_FACTORS = (1.01, 1.02, 1.05, 1.1)
# what ``calibrate`` can minimize: keys of ``nsiter.measure.measured_errors``' result
CRITERIA = ("mean_max_direction_error", "max_direction_error", "spectral_error", "mean_error")
DEFAULT_FACTORS = (1.0, 1.001, 1.002, 1.005, 1.01, 1.02, 1.05, 1.1)


def calibrate(
    steps: int = 5,
    degree: int = 5,
    *,
    lo: float = 1e-3,
    hi: float = 1.0,
    cushion: float = 0.0,
    factors: Sequence[float] = DEFAULT_FACTORS,
    size: int | Sequence[int] = (32, 64, 128),
    seeds: Sequence[int] = tuple(range(8)),
    dtype: Any = "bfloat16",
    device: str = "cpu",
    criterion: str = "mean_max_direction_error",
    name: str | None = None,
    progress: Callable[[int], Any] | None = None,
) -> tuple[Schedule, Diagnostics]:
    """Pick the safety factor of a greedy minimax schedule from measured ``dtype`` runs.

    Args:
        steps, degree, lo, hi, cushion: the greedy minimax schedule (``greedy_minimax``).
        factors: candidate safety factors (``>= 1``); the conventional 1.01, 1.02, 1.05, 1.1 are always
            measured too, for comparison.
        size, seeds, dtype, device: the measurement (see :func:`measure`); ``size`` may list several
            sizes (worst over sizes and seeds).  Few seeds can miss rare blow-ups: without a safety factor
            the 5-step schedule diverges on some seeds (32x32 and 64x64), so the defaults measure 8 seeds of
            three sizes.
        criterion: ``mean_max_direction_error`` (default: each run's worst direction error, averaged
            over the runs; a run that diverges makes it infinite), ``max_direction_error`` (the worst
            run: noisier), ``spectral_error`` or ``mean_error``.
        name: schedule name (default ``calibrated-d<degree>-<steps>``).
        progress: optional callable ``progress(k)`` after each factor.

    Returns:
        the schedule with the chosen factor, and diagnostics whose ``metrics["table"]`` lists every factor
        with its measured and estimated errors.
    """
    from nsiter.measure import measured_errors  # torch: loaded when the objective runs

    t0 = time.perf_counter()
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {', '.join(CRITERIA)}, got {criterion!r}")
    sizes = [size] if isinstance(size, int) else list(size)
    sizes = [check_positive_int(n, "size") for n in sizes]
    seeds = [check_seed(s) for s in seeds]  # the measurement's inputs, before the first schedule is built
    if not seeds:
        raise ValueError("seeds must list at least one seed")
    dtype = dtype_name(dtype)
    cands = sorted({check_safety(f, "safety factor") for f in (*factors, *CONVENTIONAL_FACTORS)})
    table = []
    best = None
    for k, f in enumerate(cands, start=1):
        sched, _ = greedy_minimax(steps, degree, lo=lo, hi=hi, cushion=cushion, safety=f)
        agg = measured_errors(sched, sizes=sizes, lo=lo, hi=hi, seeds=seeds, dtype=dtype, device=device)
        m = {
            k: agg[k]
            for k in ("spectral_error", "mean_error", "max_direction_error", "mean_max_direction_error")
        }
        estimate = schedule_error_fast(sched, lo, hi)
        row = {"safety": f, "estimated_error": estimate, **m}
        table.append(row)
        key = (m[criterion], estimate)
        if best is None or key < best[0]:
            best = (key, f, sched)
        if progress is not None:
            progress(k)
    _, factor, sched = best
    params = {
        "steps": steps,
        "degree": degree,
        "lo": lo,
        "hi": hi,
        "cushion": float(cushion),
        "factors": cands,
        "size": sizes,
        "seeds": [int(s) for s in seeds],
        "dtype": str(dtype),
        "device": device,
        "criterion": criterion,
        "safety": factor,
    }
    chosen = next(r for r in table if r["safety"] == factor)
    return search_result(
        "calibrate",
        name or f"calibrated-d{degree}-{steps}",
        sched.steps,
        source="nsiter.search.calibrate.calibrate (safety factor from measured runs)",
        reference=sched.provenance.reference,
        parameters=params,
        provenance_parameters={**sched.provenance.parameters, "calibration": params},
        description=sched.description,
        lo=lo,
        hi=hi,
        started=t0,
        metrics={
            "safety": factor,
            "final_error": chosen["estimated_error"],
            "measured": {k: chosen[k] for k in CRITERIA},
            "table": table,
            "conventional": [r for r in table if r["safety"] in CONVENTIONAL_FACTORS],
        },
        iterations=len(cands),
        notes=[f"criterion {criterion}; measured {np.size(seeds)} seed(s) of sizes {sizes} in {dtype}"],
    )
