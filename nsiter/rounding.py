"""The one measured rounding error: the 2-norm distance of a run to the float64 run of the same schedule.

``||X - X^(float64)||_2``, per matrix of a batch (:func:`rounding_errors`) or the largest over the batch
(:func:`rounding_error`), in float64; a matrix with a NaN or Inf entry is at distance ``inf`` (a run that
overflowed is infinitely wrong, never silently dropped).  The reference is the *same schedule* run in float64
with the standard form, not the polar factor: this isolates the rounding of the working precision from the
schedule's own approximation error (which :mod:`nsiter.measure` reports against the SVD polar factor).

The planner's accuracy gate (:mod:`nsiter.plan`), the benchmark (:mod:`nsiter.bench`), the experiments and the
tests all call these; :mod:`nsiter.measure` re-exports them as part of the measurement layer.
"""

from __future__ import annotations

import math

import torch

__all__ = ["rounding_error", "rounding_errors"]


def rounding_errors(X: torch.Tensor, reference: torch.Tensor) -> list[float]:
    """``||X_i - R_i||_2`` for each matrix of ``X`` (``(m, n)`` or ``(..., m, n)``) and its float64 reference
    ``R`` (same shape), ``inf`` where ``X_i`` has a non-finite entry.

    >>> import torch
    >>> rounding_errors(torch.eye(2)[None].repeat(2, 1, 1) * torch.tensor([1.0, 1.5])[:, None, None], torch.eye(2))
    [0.0, 0.5]
    """
    if X.shape[-2:] != reference.shape[-2:]:
        raise ValueError(
            f"run and reference differ in shape: {tuple(X.shape)} against {tuple(reference.shape)}"
        )
    D = X.to(reference.device, torch.float64)
    finite = torch.isfinite(D).flatten(-2).all(dim=-1).reshape(-1)
    D = torch.where(torch.isfinite(D), D, 0.0) - reference.to(torch.float64)
    norms = torch.linalg.matrix_norm(D, ord=2).reshape(-1)
    return [float(v) if ok else math.inf for v, ok in zip(norms.tolist(), finite.tolist(), strict=True)]


def rounding_error(X: torch.Tensor, reference: torch.Tensor) -> float:
    """The largest of :func:`rounding_errors` over the batch: one number for a run."""
    return max(rounding_errors(X, reference))
