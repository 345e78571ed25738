"""The test matrices of two widely shared Muon demonstrations (five steps in bf16 on 10x6 and 12x5 matrices with
log-spaced singular values): their spectra, shared by the experiments that redraw them."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["notes_spectrum"]


def notes_spectrum(params: Mapping[str, Any]):
    """The demonstrations' test spectrum: ``factor * logspace(sigma_lo, sigma_hi)`` with ``min(shape)``
    values, float64 (``params``: an experiment's ``shape``, ``sigma_lo``, ``sigma_hi``, ``factor``)."""
    import torch

    lo, hi = math.log10(params["sigma_lo"]), math.log10(params["sigma_hi"])
    return params["factor"] * torch.logspace(lo, hi, min(params["shape"]), dtype=torch.float64)
