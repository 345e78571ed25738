"""Run a schedule of odd polynomials on real matrices: the batched Newton–Schulz evaluator.

A step with coefficients ``(c_0, c_1, ..., c_l)`` applies the odd polynomial
``p(x) = c_0 x + c_1 x^3 + ... + c_l x^(2l+1)`` to the singular values of ``X``:

    A = X X^T                                   (Gram matrix on the small side, m <= n)
    B = c_1 A + c_2 A^2 + ... + c_l A^l          (Horner: B <- c_k A + B A, fused in one addmm)
    X <- c_0 X + B X                             (one addmm)

so a step of degree ``2l + 1`` costs ``l + 1`` matrix products (``Schedule.matmuls``).  Because the
polynomial is odd, ``p(U S V^T) = U p(S) V^T`` (Higham, *Functions of Matrices*, SIAM 2008, ch. 8):
the iteration acts on singular values only and converges to the polar factor ``U V^T`` when the
composed scalar map sends every normalized singular value to 1.  Muon's quintic step is this kernel
with ``(3.4445, -4.7750, 2.0315)`` (Jordan et al. 2024, https://kellerjordan.github.io/posts/muon/).

Before the first step ``X_0 = G / (scale ||G|| + eps)`` (``Normalization``), computed in float32 (or
``G``'s precision if higher) *before* casting to the working dtype, so that inputs near the float32
range do not overflow in bfloat16.  The same code runs on CPU and CUDA; the working dtype is chosen
by the caller (bfloat16 by default).  Work buffers are allocated once per call and reused (``out=``);
each product folds its scalar multiply-add into the GEMM (``addmm``/``baddbmm`` with ``beta``/``alpha``).

Two methods compute the same function: the standard form above and the Gram form
(:mod:`nsiter.gram`: iterate on ``R = X X^T`` and accumulate ``Q``, ``X_T = Q X_0``), with
``method="auto"`` choosing in :mod:`nsiter.plan` (flops, a measured rounding error, then time).  How the products run — the dtype's own GEMM or an
emulation (float32 GEMMs whose every result is rounded to the working dtype), full or blocked symmetric
products — is decided by measurement (:mod:`nsiter.kernels`); :func:`evaluation_plan` says what ran.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from nsiter.checks import check_bool
from nsiter.dtypes import dtype_name
from nsiter.engine import (
    _check_dtype,
    from_wide_batch,
    normalize,
    resolve_schedule,
    run_plan,
    validate_matrix,
    wide_batch,
)
from nsiter.kernels import gemm_path
from nsiter.plan import GRAM_TOLERANCE, Plan, PlanOptions, evaluation_plan, plan_options
from nsiter.schedule import Normalization, Schedule

__all__ = [
    "Plan",
    "evaluation_path",
    "evaluation_plan",
    "from_wide_batch",
    "iterates",
    "normalize",
    "orthogonalize",
    "polynomial_step",
    "resolve_schedule",
    "validate_matrix",
    "wide_batch",
]


def evaluation_path(device: torch.device | str, dtype: Any, shape: Sequence[int] = (1024, 1024)) -> str:
    """``"native"`` or ``"emulated"``: how ``orthogonalize`` multiplies ``dtype`` matrices of ``shape`` on
    ``device`` by default (float32 and float64 are always native), decided by measurement
    (:func:`nsiter.kernels.gemm_path`; the default shape stands for large matrices).  Experiments and
    benchmarks record it; :func:`evaluation_plan` says the method and products too."""
    return gemm_path(device, dtype, tuple(shape))


def polynomial_step(X: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """One step ``X <- c_0 X + (c_1 A + c_2 A^2 + ...) X`` with ``A = X X^T``, out of place.

    The same formula as ``iterates`` (Horner in ``A``), without its reused buffers, so autograd can
    differentiate through it in ``X`` and in the coefficient tensor ``c`` (shape ``(l + 1,)``).  The
    gradient-based search (``nsiter.search.gradient``) runs real matrix iterations through it.
    """
    if c.shape[0] == 1:
        return c[0] * X
    A = X @ X.mT
    B = c[-1] * A
    for k in range(c.shape[0] - 2, 0, -1):
        B = c[k] * A + B @ A
    return c[0] * X + B @ X


def iterates(
    G: torch.Tensor,
    schedule: Schedule | str | Path = "muon",
    *,
    dtype: Any = torch.bfloat16,
    norm: str | Normalization | None = None,
    steps: int | None = None,
    emulate: bool | None = None,
    check_finite: bool = True,
    method: str = "auto",
    restarts: Sequence[int] | None = None,
    gram_dtype: Any = None,
    gram_tolerance: float = GRAM_TOLERANCE,
    symmetric: bool | int | None = None,
    q_order: str = "zq",
) -> Iterator[torch.Tensor]:
    """Yield ``X_0, X_1, ..., X_T`` as (b, m, n) tensors, wide side last (``m <= n``).

    The tensors yielded are work buffers that later steps overwrite: copy what you keep.  ``G`` must
    already be validated and reshaped to (b, m, n) with ``m <= n`` (``orthogonalize`` does this).
    Options as for :func:`orthogonalize`; the last tensor is ``orthogonalize``'s result (same kernels,
    same order of operations).  For the Gram form ``X_k = Q_k X_0`` is rebuilt at every step for
    recording only (one extra ``m x n`` product per step).

    When emulated the buffers are float32 holding ``dtype`` values: every X-side GEMM result is rounded
    to ``dtype``, so each product sees ``dtype`` inputs, accumulates in float32 and rounds its output once,
    the arithmetic of a bf16 GEMM with float32 accumulation (summation order aside).
    """
    if isinstance(G, torch.Tensor):  # the buffers are written in place (out=): no autograd history to keep
        G = G.detach()
    options = plan_options(method, restarts, gram_dtype, gram_tolerance, emulate, symmetric, q_order)
    yield from _run(G, schedule, dtype=dtype, norm=norm, steps=steps, check_finite=check_finite, options=options,
                    record=True)  # fmt: skip


def _run(
    G: torch.Tensor,
    schedule: Schedule | str | Path,
    *,
    dtype: Any,
    norm: str | Normalization | None,
    steps: int | None,
    check_finite: bool,
    options: PlanOptions | None,
    record: bool,
    plan: Plan | None = None,
) -> Iterator[torch.Tensor]:
    """The evaluation; with ``record=False`` the Gram form yields only ``X_0`` and the final iterate."""
    sched = resolve_schedule(schedule, norm=norm, steps=steps)
    dt = _check_dtype(dtype)
    if plan is None:
        plan = evaluation_plan(G.shape, sched, dtype=dt, device=G.device, options=options or PlanOptions())
    elif (plan.m, plan.n) != (G.shape[-2], G.shape[-1]) or plan.kernel.dtype != dtype_name(dt):
        raise ValueError(
            f"plan is for {plan.m} x {plan.n} {plan.kernel.dtype} matrices, got {G.shape[-2]} x {G.shape[-1]} "
            f"{dtype_name(dt)} (wide side last)"
        )
    yield from run_plan(G, sched, plan, dt, check_finite=check_finite, record=record)


def orthogonalize(
    G: torch.Tensor,
    schedule: Schedule | str | Path = "muon",
    *,
    dtype: Any = torch.bfloat16,
    method: str = "auto",
    restarts: Sequence[int] | None = None,
    norm: str | Normalization | None = None,
    steps: int | None = None,
    emulate: bool | None = None,
    check_finite: bool = True,
    gram_dtype: Any = None,
    gram_tolerance: float = GRAM_TOLERANCE,
    symmetric: bool | int | None = None,
    plan: Plan | None = None,
    q_order: str = "zq",
) -> torch.Tensor:
    """Approximate the polar factor ``U V^T`` of ``G = U S V^T`` by a Newton–Schulz schedule.

    Args:
        G: real floating tensor of shape ``(..., m, n)``, tall or wide, on any device.  The iteration
            runs on the side that makes the Gram matrix small (``min(m, n)`` square) and transposes back.
        schedule: a ``Schedule``, a registry name (``"muon"``, ``"polar-express"``, ...), a path to
            a schedule JSON file or a list of coefficient tuples.  Each step may have any odd degree.
        dtype: the working precision of the matrix products (bfloat16 by default; ``torch.float16``,
            ``"bf16"``, ``"fp16"``, ``"fp32"``, ... accepted).
        method: ``"standard"`` (``X <- q(X X^T) X`` every step), ``"gram"`` (the Gram form,
            :mod:`nsiter.gram`: iterate on ``R = X X^T`` and ``Q``, ``X_T = Q X_0``) or ``"auto"``
            (default): the plan :func:`evaluation_plan` makes (:mod:`nsiter.plan`: the Gram form where it
            needs fewer weighted flops, its measured rounding error on hard spectra is within
            ``gram_tolerance`` of the standard form's, and, with tuning on, it times faster).
        restarts: Gram-form restarts after these 1-based steps (default: ``schedule.restarts``).
        norm: override the schedule's normalization (``"frobenius"``, ``"spectral"``, ``"aol"`` or a
            ``Normalization``).
        steps: run this many steps instead (truncate, or repeat the last polynomial).
        emulate: run bf16/fp16 as float32 GEMMs whose every result is rounded to ``dtype`` (see
            ``iterates``); ``None`` (default) decides by measurement (:mod:`nsiter.kernels`).
        check_finite: raise on NaN/Inf entries (detected from ``max|G|``, which normalization computes
            anyway; on CUDA this costs one host synchronization per call).  ``False`` skips the check
            for training loops that guard gradients elsewhere; non-finite entries then propagate.  With
            the check on, a result with non-finite entries (the schedule diverged on this input, e.g. a
            schedule without safety factor whose bands leave their design interval under rounding)
            raises a ``RuntimeWarning``.
        gram_dtype: precision of the Gram form's ``R`` and ``Q`` (default
            :func:`nsiter.gram.default_gram_dtype`: float32 for bf16/fp16 on CPUs or wherever emulated,
            float64 for float32 work, else ``dtype``).
        gram_tolerance: the accuracy gate's tolerance: a Gram plan whose measured rounding error exceeds
            this times the standard form's is not run by ``method="auto"`` (:mod:`nsiter.plan`).
        symmetric: blocked symmetric products (``None``: where the probe measured that they pay;
            ``True``/``False``; or a block size).
        q_order: the Gram form's ``Q`` update: ``"zq"`` (``Q <- c_0 Q + W Q``, default: the more accurate
            in the ordering study, ``experiments/q_ordering.py``) or ``"qz"`` (``Q <- c_0 Q + Q W``, the
            published kernel's order); see :func:`nsiter.gram.gram_steps`.
        plan: a :class:`Plan` from :func:`evaluation_plan` for this shape and dtype, decided ahead: no planning
            (and no kernel probe) at call time, so ``method``, ``restarts``, ``gram_dtype``, ``gram_tolerance``,
            ``emulate`` and ``symmetric`` are ignored.  With ``check_finite=False`` the call then makes no host
            synchronization: it can be captured in a CUDA graph and compiled with ``torch.compile(...,
            fullgraph=True)`` (tests/test_compile.py).

    Returns:
        ``X_T = phi_T(X_0)`` with ``X_0 = G / (scale ||G|| + eps)``: same shape, dtype and device as
        ``G``, contiguous, computed under ``torch.no_grad()`` (not differentiable).  An all-zero
        matrix gives zeros.  :func:`evaluation_plan` says which method and kernels ran.

    Raises:
        ValueError: non-floating or complex dtype, fewer than 2 dims, a zero-size dim, NaN/Inf entries,
            an unknown schedule, method or a bad override.
    """
    validate_matrix(G, check_finite=False)  # normalize checks finiteness from max|G|
    _check_dtype(dtype)
    check_bool(check_finite, "check_finite")
    if plan is not None and not isinstance(plan, Plan):
        raise ValueError(f"plan must be a Plan (nsiter.evaluation_plan) or None, got {type(plan).__name__}")
    options = (
        None
        if plan is not None
        else plan_options(method, restarts, gram_dtype, gram_tolerance, emulate, symmetric, q_order)
    )
    W, layout = wide_batch(G)
    with torch.no_grad():  # the kernel writes into reused buffers (out=): not differentiable
        *_, last = _run(W, schedule, dtype=dtype, norm=norm, steps=steps, check_finite=check_finite,
                        options=options, record=False, plan=plan)  # fmt: skip
    # the schedule diverged on this input: one reduction, no temporary (NaN/Inf propagate into the sum)
    if check_finite and not bool(
        torch.isfinite(last.sum(dtype=torch.float32 if last.itemsize < 4 else None))
    ):
        name = schedule.name if isinstance(schedule, Schedule) else str(schedule)
        warnings.warn(
            f"schedule {name!r} diverged on this input: the result has non-finite entries "
            "(nsiter.trajectory says at which step)",
            RuntimeWarning,
            stacklevel=2,
        )
    return from_wide_batch(last, layout, G.dtype)
