"""Precision-aware calibration: choose the safety factor from measured low-precision runs.

Polar Express replaces every step but the last by ``x -> p(x / s)`` with ``s = 1.01`` chosen by hand
(Amsel et al. 2025, Sec. 4.4); modded-nanogpt uses 1.02, others 1.05 or 1.1.  Here ``s`` is chosen from
measurements instead: for each candidate ``s`` the greedy minimax schedule is built, run by the evaluator
(:func:`nsiter.evaluate.orthogonalize`) in the requested dtype on seeded matrices with log-uniform
singular values in ``[lo, hi]``, and scored by the measured error ``||X_T - U V^T||_2`` (float64 SVD
reference); the factor with the smallest worst measured error wins (ties: the smaller certified error).

Measurement convention.  The certified bound speaks about ``sigma / ||G|| in [lo, hi]``; to test exactly
that, the matrices are normalized by their exact spectral norm (``X_0 = G / (s_norm sigma_max)``, with
the schedule's own normalization scale ``s_norm``), so low-precision effects are isolated from the
norm estimate.  ``measure`` is what the search results table uses for every schedule.

torch is imported when these functions run, never at import of :mod:`nsiter.search`.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from nsiter.schedule import Normalization, Schedule
from nsiter.search._core import Diagnostics, check_interval, check_positive_int, schedule_error_fast
from nsiter.search.minimax import greedy_minimax

__all__ = ["CONVENTIONAL_FACTORS", "CRITERIA", "calibrate", "measure", "measure_sizes"]

CONVENTIONAL_FACTORS = (1.01, 1.02, 1.05, 1.1)
# what ``calibrate`` can minimize: keys of ``measure_sizes``' result
CRITERIA = ("mean_max_direction_error", "max_direction_error", "spectral_error", "mean_error")
DEFAULT_FACTORS = (1.0, 1.001, 1.002, 1.005, 1.01, 1.02, 1.05, 1.1)


def _dtype(name: Any):
    import torch

    if isinstance(name, torch.dtype):
        return name
    table = {
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
        "float16": torch.float16,
        "fp16": torch.float16,
        "float32": torch.float32,
        "fp32": torch.float32,
        "float64": torch.float64,
    }
    if name not in table:
        raise ValueError(f"dtype must be one of {sorted(table)}, got {name!r}")
    return table[name]


def measure(
    schedule: Schedule,
    *,
    lo: float = 1e-3,
    hi: float = 1.0,
    size: int = 128,
    seeds: Sequence[int] = (0, 1),
    dtype: Any = "bfloat16",
    device: str = "cpu",
    emulate: bool | None = None,
) -> dict[str, Any]:
    """Measured error of ``schedule`` in ``dtype`` on ``size x size`` log-uniform spectra in ``[lo, hi]``.

    ``emulate`` is passed to :func:`nsiter.evaluate.orthogonalize` (``False``: the backend's native
    low-precision GEMM even where it is slow).  Returns a dict (float64 references from the generating SVD ``G = U diag(sigma) V^T``):

    - ``spectral_error``: ``max_seeds ||X_T - U V^T||_2``;
    - ``mean_error``: ``mean_i |1 - u_i^T X_T v_i|`` (mean over seeds too);
    - ``max_direction_error``: ``max_i |1 - u_i^T X_T v_i|``, worst over seeds; ``mean_max_direction_error``
      and ``median_max_direction_error``: the mean and median over seeds of each run's ``max_i`` (less
      noisy than the worst run);
    - ``max_singular_error``: ``max_i |sigma_i(X_T) - 1|``, worst over seeds (the measured counterpart of
      the certified ``max |1 - phi_T|``: in exact arithmetic ``sigma_i(X_T) = phi_T(sigma_i)``), and
      ``mean_max_singular_error``, its mean over seeds;
    - ``runs``: per seed, ``{"seed", "max_direction_error", "max_singular_error"}`` (for paired
      comparisons).  A run that does not stay finite ends the measurement: every error is ``inf`` and
      ``runs`` stops at that seed.
    """
    import torch

    from nsiter.evaluate import orthogonalize

    lo, hi = check_interval(lo, hi)
    size = check_positive_int(size, "size")
    dt = _dtype(dtype)
    spectral, mean = 0.0, 0.0
    per_run = []
    for seed in seeds:
        G, U, Vh, polar, smax, fro = _reference(size, lo, hi, int(seed))
        # exact spectral normalization with the schedule's own scale: X_0 = G / (scale * sigma_max)
        norm = Normalization("frobenius", scale=schedule.normalization.scale * smax / fro, eps=0.0)
        X = orthogonalize(G.to(device), replace(schedule, normalization=norm), dtype=dt, emulate=emulate).to(
            "cpu", torch.float64
        )
        if not bool(torch.isfinite(X).all()):
            inf = math.inf
            keys = ("spectral_error", "mean_error", "max_direction_error", "mean_max_direction_error")
            keys += ("median_max_direction_error", "max_singular_error", "mean_max_singular_error")
            bad = {"seed": int(seed), "max_direction_error": inf, "max_singular_error": inf}
            return {**dict.fromkeys(keys, inf), "runs": [*per_run, bad]}
        spectral = max(spectral, float(torch.linalg.matrix_norm(X - polar, ord=2)))
        diag = torch.einsum("ij,ik,kj->j", U, X, Vh.mT)  # u_j^T X v_j
        dev = (1.0 - diag).abs()
        mean += float(dev.mean()) / len(seeds)
        sv = float((torch.linalg.svdvals(X) - 1.0).abs().max())
        per_run.append({"seed": int(seed), "max_direction_error": float(dev.max()), "max_singular_error": sv})
    worst = [r["max_direction_error"] for r in per_run]
    sing = [r["max_singular_error"] for r in per_run]
    return {
        "spectral_error": spectral,
        "mean_error": mean,
        "max_direction_error": max(worst),
        "mean_max_direction_error": float(np.mean(worst)),
        "median_max_direction_error": float(np.median(worst)),
        "max_singular_error": max(sing),
        "mean_max_singular_error": float(np.mean(sing)),
        "runs": per_run,
    }


@functools.lru_cache(maxsize=128)
def _reference(size: int, lo: float, hi: float, seed: int):
    """The seeded test matrix and its float64 references, computed once per case: ``G`` (log-uniform
    singular values ``hi ... lo``), ``U``, ``V^T``, the polar factor, ``sigma_max`` and ``||G||_F``.
    Callers only read them (``orthogonalize`` normalizes a copy)."""
    import torch

    from nsiter.matrices import log_uniform

    G = log_uniform(size, size, lo, seed, hi=hi)
    U, S, Vh = torch.linalg.svd(G)
    return G, U, Vh, U @ Vh, float(S[0]), float(torch.linalg.matrix_norm(G))


def measure_sizes(schedule: Schedule, sizes: int | Sequence[int], **kw: Any) -> dict[str, float]:
    """:func:`measure` at each size (``kw``: its other arguments), aggregated: the worst (``max_*``,
    ``spectral_error``) over sizes, and the mean over sizes of the averages (``mean_*``; every size has
    the same seeds, so this is the mean over all runs)."""
    runs = [measure(schedule, size=n, **kw) for n in ([sizes] if isinstance(sizes, int) else sizes)]
    out = {}
    for key in runs[0]:
        if key in ("runs", "median_max_direction_error"):
            continue
        values = [r[key] for r in runs]
        worst = key.startswith("max_") or key == "spectral_error"
        out[key] = float(max(values) if worst else sum(values) / len(values))
    return out


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
        with its measured and certified errors.
    """
    t0 = time.perf_counter()
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {', '.join(CRITERIA)}, got {criterion!r}")
    sizes = [size] if isinstance(size, int) else list(size)
    sizes = [check_positive_int(n, "size") for n in sizes]
    cands = sorted({float(f) for f in (*factors, *CONVENTIONAL_FACTORS)})
    if any(not math.isfinite(f) or f < 1 for f in cands):
        raise ValueError(f"safety factors must be finite and >= 1, got {list(factors)!r}")
    table = []
    best = None
    for k, f in enumerate(cands, start=1):
        sched, _ = greedy_minimax(lo, hi, steps, degree, cushion=cushion, safety=f)
        agg = measure_sizes(sched, sizes, lo=lo, hi=hi, seeds=seeds, dtype=dtype, device=device)
        m = {
            k: agg[k]
            for k in ("spectral_error", "mean_error", "max_direction_error", "mean_max_direction_error")
        }
        cert = schedule_error_fast(sched, lo, hi)
        row = {"safety": f, "certified_error": cert, **m}
        table.append(row)
        key = (m[criterion], cert)
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
    sched = replace(
        sched,
        name=name or f"calibrated-d{degree}-{steps}",
        provenance=replace(
            sched.provenance,
            source="nsiter.search.calibrate.calibrate (safety factor from measured runs)",
            parameters={**sched.provenance.parameters, "calibration": params},
        ),
    )
    diag = Diagnostics("calibrate", parameters=params)
    chosen = next(r for r in table if r["safety"] == factor)
    diag.metrics = {
        "safety": factor,
        "final_error": chosen["certified_error"],
        "measured": {k: chosen[k] for k in CRITERIA},
        "table": table,
        "conventional": [r for r in table if r["safety"] in CONVENTIONAL_FACTORS],
        "matmuls": sched.matmuls(),
    }
    diag.iterations = [len(cands)]
    diag.seconds = time.perf_counter() - t0
    diag.notes.append(f"criterion {criterion}; measured {np.size(seeds)} seed(s) of sizes {sizes} in {dtype}")
    return sched, diag
