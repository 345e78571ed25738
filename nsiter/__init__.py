"""nsiter: Newton-Schulz orthogonalization iterations.

Exact derivation of the classical family, certified analysis of what a schedule does to singular
values, coefficient search, a batched bf16 evaluator and the Muon optimizer.  Heavy dependencies
(sympy, torch) load on first use of the names that need them, so ``import nsiter`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

from nsiter.polynomial import OddPolynomial
from nsiter.registry import available_schedules, load_schedule
from nsiter.schedule import Normalization, Provenance, Schedule

__version__ = "0.1.0"

# public name -> module that defines it (imported lazily)
_LAZY = {
    "newton_schulz": "nsiter.symbolic",
    "newton_schulz_family": "nsiter.symbolic",
    "compose_exact": "nsiter.symbolic",
    "analyze": "nsiter.analysis",
    "image_interval": "nsiter.analysis",
    "fixed_points": "nsiter.dynamics",
    "attractor": "nsiter.dynamics",
    "certified_error": "nsiter.analysis",
    "steps_to": "nsiter.analysis",
    "repeated_attractor": "nsiter.dynamics",
    "orthogonalize": "nsiter.evaluate",
    "trajectory": "nsiter.records",
    "Muon": "nsiter.optim",
    "MuonWithAuxAdam": "nsiter.optim",
}

# submodules reachable as attributes after ``import nsiter`` (``nsiter.search.search(...)``), loaded on first use
SUBMODULES = (
    "analysis",
    "baselines",
    "bench",
    "checks",
    "dtypes",
    "dynamics",
    "evaluate",
    "gram",
    "kernels",
    "matrices",
    "measure",
    "optim",
    "plot",
    "polynomial",
    "records",
    "registry",
    "restarts",
    "schedule",
    "search",
    "spectra",
    "stats",
    "symbolic",
    "triton_kernels",
)

__all__ = [
    "Normalization",
    "OddPolynomial",
    "Provenance",
    "Schedule",
    "available_schedules",
    "load_schedule",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    if name in SUBMODULES:
        return importlib.import_module(f"nsiter.{name}")
    raise AttributeError(f"module 'nsiter' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*__all__, *SUBMODULES})
