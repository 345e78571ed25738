"""Gradient-based search of the composed error (torch autograd), in the spirit of Cesista et al.'s JAX
search ("Squeezing 1-2% efficiency gains out of Muon by optimizing the Newton–Schulz coefficients", 2025,
https://leloykun.github.io/ponder/muon-opt-coeffs/).

The coefficients of all ``T`` steps are free parameters.  On ``N`` log-spaced points ``x`` in ``[lo, hi]``
(the spectrum distribution) the loss is

    L = (1 - w) mean_x |phi_T(x) - 1| + w softmax_tau(|phi_T(x) - 1|) + rho sum_t relu(|phi_t(x)| - bound)^2

where ``softmax_tau`` is the log-sum-exp smooth maximum (``w`` trades mean against worst error) and the
penalty keeps every intermediate step bounded.  With ``max_error = W`` the worst error becomes a
constraint instead: ``1e4 relu(max_x |phi_T(x) - 1| - W)^2`` is added, and only iterates whose error
on the whole interval (float64 interval propagation, not just the samples) is at most ``W`` can be
returned.  ``W``
below the greedy minimax error is infeasible (the greedy composition minimizes the worst case among all
compositions of the same degrees, Amsel et al. 2025, Thm. 4.1) and raises ``ValueError``; with
``worst_weight = 0`` this traces the trade-off between mean and worst error.  With ``matrix=True`` the loss is instead measured on real
matrices through a differentiable copy of the Gram-form iteration run in ``dtype`` (bfloat16 by default),
so the gradient sees low-precision rounding; the evaluator itself writes into work buffers and cannot be
differentiated.  Adam, initialized at the greedy minimax schedule (optionally with a safety factor).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from nsiter.checks import (
    check_interval,
    check_positive,
    check_positive_int,
    check_real,
    check_seed,
    short_repr,
)
from nsiter.dtypes import dtype_name, torch_dtype
from nsiter.polynomial import OddPolynomial
from nsiter.schedule import Schedule
from nsiter.search._core import (
    Diagnostics,
    schedule_error_fast,
    search_result,
)
from nsiter.search.minimax import greedy_minimax

__all__ = ["gradient_search"]


def gradient_search(
    steps: int = 5,
    degree: int = 5,
    *,
    lo: float = 1e-3,
    hi: float = 1.0,
    iters: int = 300,
    lr: float = 1e-4,
    worst_weight: float = 0.5,
    tau: float = 0.01,
    bound: float = 2.0,
    penalty: float = 10.0,
    points: int = 512,
    safety: float = 1.01,
    max_error: float | None = None,
    matrix: bool = False,
    size: int = 64,
    dtype: Any = "bfloat16",
    seed: int = 0,
    name: str | None = None,
    progress: Callable[[int], Any] | None = None,
) -> tuple[Schedule, Diagnostics]:
    """Minimize a mean/worst blend of ``|phi_T(x) - 1|`` over log-spaced ``x in [lo, hi]`` by Adam.

    Args:
        steps, degree: shape of the schedule (``steps`` steps of one odd degree).
        lo, hi: the spectrum range.
        iters, lr: Adam iterations and learning rate (relative: parameters are multiplicative updates of
            the greedy initialization).
        worst_weight: ``w`` in the loss (0: mean error only, 1: smooth worst error only).
        tau: temperature of the smooth maximum.
        bound, penalty: every ``|phi_t(x)|`` above ``bound`` is penalized by ``penalty * excess^2``.
        points: number of log-spaced sample points.
        safety: safety factor of the greedy initialization.
        max_error: constrain the sampled worst error ``max_x |phi_T(x) - 1|`` to at most this (scalar mode).
        matrix: measure the loss on ``size x size`` matrices in ``dtype`` instead of on scalars.
        seed: seed of the matrices (matrix mode).
        name: schedule name.
        progress: callable ``progress(i)`` after each iteration.

    Returns:
        ``(schedule, diagnostics)``; metrics ``loss``, ``initial_loss``, ``final_error`` (float64 worst
        error on ``[lo, hi]`` by interval propagation) and ``initial_error``.
    """
    import torch

    t0 = time.perf_counter()
    lo, hi = check_interval(lo, hi)
    steps = check_positive_int(steps, "steps")
    iters = check_positive_int(iters, "iters")
    lr = check_positive(lr, "lr")
    worst_weight = check_real(worst_weight, "worst_weight", low=0.0, high=1.0)
    if matrix:  # the measurement's inputs, before the search
        seed = check_seed(seed)
        size = check_positive_int(size, "size")
        if dtype_name(dtype) not in ("bfloat16", "float32", "float64"):
            raise ValueError(f"dtype must be bfloat16, float32 or float64, got {short_repr(dtype)}")
    init, init_diag = greedy_minimax(steps, degree, lo=lo, hi=hi, safety=safety)
    if max_error is not None:
        max_error = check_positive(max_error, "max_error")
        if matrix:
            raise ValueError(
                "max_error constrains the scalar composed error; it cannot be combined with matrix=True"
            )
        optimal, optimal_diag = greedy_minimax(steps, degree, lo=lo, hi=hi)
        best_error = optimal_diag.metrics["final_error"]
        if max_error < best_error:
            raise ValueError(
                f"max_error={max_error!r} is below {best_error:.6g}, the smallest worst-case "
                f"error any {steps}-step degree-{degree} schedule reaches on [{lo:g}, {hi:g}] (greedy minimax)"
            )
        if init_diag.metrics["final_error"] > max_error:  # start from a feasible point
            init, init_diag = optimal, optimal_diag
    base = torch.tensor([p.coefficients for p in init.steps], dtype=torch.float64)
    # multiplicative parameterization c = c_greedy * exp(theta): keeps every coefficient's sign
    theta = torch.zeros_like(base, requires_grad=True)
    x = torch.logspace(math.log10(lo), math.log10(hi), points, dtype=torch.float64)
    if matrix:
        from nsiter.evaluate import polynomial_step
        from nsiter.matrices import log_uniform

        work = torch_dtype(dtype)
        G = log_uniform(size, size, lo, seed, hi=hi)
        U, S, Vh = torch.linalg.svd(G)
        X0 = (G / S[0]).to(work)

    def coefficients() -> torch.Tensor:
        return base * torch.exp(theta)

    def loss_fn() -> torch.Tensor:
        c = coefficients()
        pen = torch.zeros((), dtype=torch.float64)
        if matrix:
            X = X0
            for t in range(steps):
                X = polynomial_step(X, c[t].to(work))
            vals = torch.einsum("ij,ik,kj->j", U, X.to(torch.float64), Vh.mT)
            dev = (vals - 1).abs()
        else:
            y = x
            for t in range(steps):
                y2 = y * y
                acc = c[t, -1] * torch.ones_like(y)
                for k in range(c.shape[1] - 2, -1, -1):
                    acc = acc * y2 + c[t, k]
                y = acc * y
                pen = pen + torch.relu(y.abs() - bound).pow(2).sum()
            dev = (y - 1).abs()
        smooth_max = tau * torch.logsumexp(dev / tau, dim=0) - tau * math.log(dev.numel())
        if max_error is not None:
            pen = pen + 1e4 * torch.relu(dev.max() - max_error).pow(2) / penalty
            feasible[0] = bool(dev.max() <= max_error)
        return (1 - worst_weight) * dev.mean() + worst_weight * smooth_max + penalty * pen

    feasible = [True]
    opt = torch.optim.Adam([theta], lr=lr)
    with torch.no_grad():
        initial = float(loss_fn())
    losses = []
    best = (math.inf, theta.detach().clone())
    for i in range(iters):
        opt.zero_grad()
        loss = loss_fn()
        if not torch.isfinite(loss):
            break
        value = float(loss.detach())
        if (
            value < best[0]
            and feasible[0]
            and (max_error is None or _within(coefficients().detach(), max_error, lo, hi))
        ):
            best = (value, theta.detach().clone())
        loss.backward()
        opt.step()
        losses.append(value)
        if progress is not None:
            progress(i + 1)
    with torch.no_grad():
        theta.copy_(best[1])
        final = float(loss_fn())
        coef = coefficients().numpy()
    polys = tuple(OddPolynomial([float(v) for v in row]) for row in coef)
    params = {
        "steps": steps,
        "degree": degree,
        "lo": lo,
        "hi": hi,
        "iters": iters,
        "lr": lr,
        "worst_weight": worst_weight,
        "tau": tau,
        "bound": bound,
        "penalty": penalty,
        "points": points,
        "safety": safety,
        "max_error": max_error,
        "matrix": bool(matrix),
        "size": size,
        "dtype": str(dtype),
        "seed": int(seed),
    }
    composed = x.numpy()  # phi_T on the log-spaced samples
    for p in polys:
        composed = p(composed)
    return search_result(
        "gradient",
        name or f"gradient-d{degree}-{steps}",
        polys,
        source="nsiter.search.gradient.gradient_search (Adam on the composed error)",
        reference="https://leloykun.github.io/ponder/muon-opt-coeffs/",
        parameters=params,
        description=f"gradient-optimized {steps}-step degree-{degree} schedule on [{lo:g}, {hi:g}]",
        lo=lo,
        hi=hi,
        started=t0,
        metrics={
            "loss": final,
            "initial_loss": initial,
            "mean_error": float(np.mean(np.abs(composed - 1))),  # on the log-spaced samples
            "initial_error": init_diag.metrics["final_error"],
            "loss_curve": [float(v) for v in np.asarray(losses)[:: max(1, len(losses) // 50)]],
        },
        iterations=len(losses),
        converged=len(losses) == iters,
    )


def _within(coef, max_error: float, lo: float, hi: float) -> bool:
    """Whether the schedule with coefficient rows ``coef`` keeps ``max |phi_T - 1| <= max_error`` on
    ``[lo, hi]`` (float64 interval propagation, with a relative margin of 1e-9 so that the certified
    bound of :func:`nsiter.analysis.certified_error`, rounded outward, also meets it)."""
    polys = [OddPolynomial([float(v) for v in row]) for row in coef.tolist()]
    return schedule_error_fast(polys, lo, hi) <= max_error * (1 - 1e-9)
