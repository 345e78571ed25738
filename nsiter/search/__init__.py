"""Coefficient search: one entry point, interchangeable objectives, schedules as results.

    schedule, diagnostics = nsiter.search.search("minimax", lo=1e-3, steps=5)

Every objective returns a :class:`~nsiter.schedule.Schedule` (provenance kind ``search`` with the
parameters that produced it) and a :class:`Diagnostics` (metrics, per-step intervals, timings).

========== ====================================================== ==================================
objective  what it optimizes                                      function
========== ====================================================== ==================================
minimax    greedy per-step minimax on [lo, hi] (Polar Express)    :func:`minimax.greedy_minimax`
max-slope  Jordan: max p'(0), attracting band in 1 +- delta       :func:`slope.max_slope`
band       CANS delta-orthogonalization (widest [lo*, hi])        :func:`slope.band_schedule`
budget     best greedy schedule within a matmul budget            :func:`budget.budget_search`
gradient   mean/worst composed error on a spectrum (torch)        :func:`gradient.gradient_search`
calibrate  safety factor from measured low-precision runs         :func:`calibrate.calibrate`
========== ====================================================== ==================================

One argument convention for every objective: its defining parameter first (``steps``, ``delta`` or
``budget``), then ``degree`` (or ``degrees``), then keyword-only ``lo``, ``hi`` and the rest::

    greedy_minimax(5, 5, lo=1e-3)      calibrate(5, 5, lo=1e-3)      gradient_search(5, 5, lo=1e-3)
    max_slope(0.3, 5, steps=5)         band_schedule(0.3, 1, 5)      budget_search(15, (3, 5), lo=1e-3)

The torch-based objectives (``gradient``, ``calibrate``) import torch only when called.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from nsiter.schedule import Schedule
from nsiter.search._core import Diagnostics, image_interval_fast, propagate_fast, schedule_error_fast
from nsiter.search.budget import budget_search
from nsiter.search.minimax import greedy_minimax, optimal_cubic, remez_odd, with_safety_factor
from nsiter.search.slope import band_schedule, max_slope

__all__ = [
    "OBJECTIVES",
    "Diagnostics",
    "band_schedule",
    "budget_search",
    "greedy_minimax",
    "image_interval_fast",
    "max_slope",
    "optimal_cubic",
    "propagate_fast",
    "remez_odd",
    "schedule_error_fast",
    "search",
    "with_safety_factor",
]

# objective name -> (module, function)
OBJECTIVES: dict[str, tuple[str, str]] = {
    "minimax": ("nsiter.search.minimax", "greedy_minimax"),
    "max-slope": ("nsiter.search.slope", "max_slope"),
    "band": ("nsiter.search.slope", "band_schedule"),
    "budget": ("nsiter.search.budget", "budget_search"),
    "gradient": ("nsiter.search.gradient", "gradient_search"),
    "calibrate": ("nsiter.search.calibrate", "calibrate"),
}


def __dir__() -> list[str]:
    return sorted({*__all__, "budget", "calibrate", "gradient", "minimax", "slope"})


def search(objective: str, **params: Any) -> tuple[Schedule, Diagnostics]:
    """Run the search ``objective`` (a key of ``OBJECTIVES``) with keyword ``params``.

    Raises ``ValueError`` for an unknown objective, unknown parameters, or infeasible constraints (the
    message says which constraint cannot be met).
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown search objective {objective!r}; choose one of {sorted(OBJECTIVES)}")
    module, func = OBJECTIVES[objective]
    fn = getattr(importlib.import_module(module), func)
    allowed = set(inspect.signature(fn).parameters)
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {unknown} for objective {objective!r}; accepted: {sorted(allowed)}"
        )
    return fn(**params)
