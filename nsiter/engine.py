"""The evaluator's engine: normalization and the two forms' steps, run as a :class:`nsiter.plan.Plan` says.

:func:`nsiter.evaluate.orthogonalize` is the front door; :mod:`nsiter.plan` decides how a call runs (method,
precisions, restarts, kernels) and runs candidate plans through :func:`run_plan` when it measures them; this
module holds what both need and decides nothing.  The formulas are in :mod:`nsiter.evaluate`'s docstring.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from nsiter.dtypes import torch_dtype
from nsiter.gram import apply_q, gram_matrix, gram_steps
from nsiter.kernels import Products
from nsiter.registry import load_schedule
from nsiter.schedule import Normalization, Schedule

__all__ = [
    "from_wide_batch",
    "normalize",
    "resolve_schedule",
    "run_plan",
    "validate_matrix",
    "wide_batch",
]

_POWER_ITERATIONS = 32


def resolve_schedule(
    schedule: Schedule | str | Path,
    *,
    norm: str | Normalization | None = None,
    steps: int | None = None,
) -> Schedule:
    """Load ``schedule`` (a ``Schedule``, registry name or path) and apply the ``norm``/``steps`` overrides.

    ``norm`` is a ``Normalization`` or one of its norm names (keeping the schedule's scale and eps);
    ``steps`` truncates the schedule or repeats its last polynomial (``Schedule.truncated``).
    """
    sched = load_schedule(schedule)
    if norm is not None:
        if isinstance(norm, Normalization):
            sched = replace(sched, normalization=norm)
        elif isinstance(norm, str):
            sched = replace(sched, normalization=replace(sched.normalization, norm=norm))
        else:
            raise ValueError(f"norm must be a Normalization or a norm name, got {norm!r}")
    if steps is not None:
        sched = sched.truncated(steps)
    return sched


def validate_matrix(G: torch.Tensor, *, check_finite: bool = True) -> None:
    """Raise ``ValueError`` naming the problem unless ``G`` is a finite real floating tensor ``(..., m, n)``.

    Accepted: dense (strided) tensors holding data (not on the ``meta`` device, not nested) of dtype float16,
    bfloat16, float32 or float64 (the formats :mod:`nsiter.dtypes` names).  Refused by name: sparse layouts
    (COO, CSR, CSC, BSR, BSC: densify with ``G.to_dense()``), ``meta`` tensors, nested tensors, quantized, bool,
    integer and complex dtypes, and the 8- and 4-bit float formats (float8_e4m3fn, float8_e5m2, ...: no GEMM of
    the iteration runs in them; upcast first).

    ``check_finite=False`` skips the pass over the entries (``normalize`` detects NaN/Inf from ``max|G|``,
    which it computes anyway).
    """
    if not isinstance(G, torch.Tensor):
        raise ValueError(f"expected a torch.Tensor of shape (..., m, n), got {type(G).__name__}")
    if G.layout != torch.strided:
        raise ValueError(f"expected a dense (strided) tensor, got layout {G.layout} (use G.to_dense())")
    if G.is_nested:
        raise ValueError("expected a dense tensor of shape (..., m, n), got a nested tensor")
    if G.is_meta:
        raise ValueError(
            f"tensor on the meta device holds no data (shape {tuple(G.shape)}): materialize it first"
        )
    if G.is_quantized:
        raise ValueError(f"quantized dtype {G.dtype} is not supported (dequantize first: G.dequantize())")
    if G.is_complex():
        raise ValueError(f"complex dtype {G.dtype} is not supported (real floating tensors only)")
    if not G.is_floating_point():
        raise ValueError(f"expected a floating dtype, got {G.dtype}")
    if G.dtype not in _MATRIX_DTYPES:
        raise ValueError(
            f"dtype {G.dtype} is not supported: expected float16, bfloat16, float32 or float64 (upcast first)"
        )
    if G.ndim < 2:
        raise ValueError(f"expected a matrix of shape (..., m, n), got shape {tuple(G.shape)}")
    if G.numel() == 0:
        raise ValueError(f"matrix has a zero-size dimension: shape {tuple(G.shape)}")
    if check_finite and not bool(torch.isfinite(G).all()):
        _raise_nonfinite(G)


_MATRIX_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _raise_nonfinite(G: torch.Tensor) -> None:
    bad = int((~torch.isfinite(G)).sum())
    kind = "NaN" if bool(torch.isnan(G).any()) else "Inf"
    raise ValueError(f"matrix has {kind} entries ({bad} non-finite of {G.numel()})")


def _check_dtype(dtype: Any) -> torch.dtype:
    """The torch dtype for ``dtype`` (a torch dtype or a name such as ``"bf16"``); ``ValueError`` otherwise."""
    if isinstance(dtype, torch.dtype) and not dtype.is_floating_point:
        raise ValueError(f"dtype must be a real floating dtype, got {dtype!r}")
    return torch_dtype(dtype)


def _work_dtype(*dtypes: torch.dtype) -> torch.dtype:
    """The widest of float32 and ``dtypes``: the precision in which norms are taken."""
    out = torch.float32
    for d in dtypes:
        out = torch.promote_types(out, d)
    return out


def _spectral_estimate(Y: torch.Tensor, iterations: int = _POWER_ITERATIONS) -> torch.Tensor:
    """Power-iteration estimate of ``||Y||_2`` per matrix of ``Y`` (b, m, n); a lower bound, shape (b, 1, 1).

    32 iterations cost ``128 m n`` flops (under 2% of one quintic step at ``m >= 1024``); singular values
    below ``0.9 sigma_max`` are damped by ``0.9^64 ~ 1e-3``, so the estimate is within about 1% below
    ``sigma_max`` even when the top of the spectrum is clustered.

    Starts from a fixed pseudo-random vector (seed 0, so results are deterministic) and iterates
    ``v <- Y^T Y v / ||Y^T Y v||`` (Golub & Van Loan, *Matrix Computations*, 4th ed., sec. 8.2.1).
    """
    gen = torch.Generator().manual_seed(0)
    v = torch.randn(Y.shape[-1], 1, generator=gen, dtype=torch.float64).to(Y.device, Y.dtype)
    v = v.expand(Y.shape[0], -1, -1)
    for _ in range(iterations):
        w = Y.mT @ (Y @ v)
        v = w / torch.linalg.vector_norm(w, dim=-2, keepdim=True).clamp_min(torch.finfo(Y.dtype).tiny)
    return torch.linalg.vector_norm(Y @ v, dim=-2, keepdim=True)


def normalize(
    G: torch.Tensor, normalization: Normalization, dtype: torch.dtype, *, check_finite: bool = True
) -> torch.Tensor:
    """``X_0 = G / (scale ||G|| + eps)`` per matrix, computed in float32 or wider, returned in ``dtype``.

    ``G`` is (b, m, n).  The Frobenius norm is taken from ``G`` directly when its squares stay in the
    normal float range; otherwise (entries near the float range, or tiny ones) it is taken of
    ``G / max|G|`` and the formula is rewritten exactly as
    ``X_0 = (G / a) / (scale ||G / a|| + eps / a)`` with ``a = max|G|``.  An all-zero matrix maps to
    zeros; NaN or Inf entries raise ``ValueError`` (unless ``check_finite=False``).  For ``norm="aol"``
    this returns the Frobenius-normalized matrix; the AOL rescaling
    (Prach & Lampert 2022, arXiv:2208.03160; Turbo-Muon) reuses the first step's Gram matrix and is
    applied in ``iterates``.  For ``norm="spectral"`` the power-iteration estimate is a lower bound on
    ``sigma_max``, so ``sigma_max(X_0)`` can slightly exceed ``1/scale``.

    With ``check_finite=False`` no value reaches the host (capturable, compilable with ``fullgraph=True``):
    each matrix is divided by ``a`` = 1 where its squares stay in range (an exact no-op) and by ``max|G|``
    elsewhere, one formula for both, giving the same bits as the branch the check takes.  Whether the squares
    stay in range is read from ``max|G|`` alone: ``max|G|^2 m n`` below the format's largest value, and
    ``max|G|`` at least ``tiny^0.4`` (or zero).
    """
    work = _work_dtype(G.dtype, dtype)
    Gw = G.to(work)
    amax = Gw.abs().amax(dim=(-2, -1), keepdim=True)  # max|G|; NaN/Inf propagate
    info = torch.finfo(work)
    if normalization.norm == "spectral":  # the power iteration always runs on G / max|G|
        ok = torch.zeros_like(amax, dtype=torch.bool)
    else:
        entries = Gw.shape[-2] * Gw.shape[-1]
        ok = ((amax <= math.sqrt(info.max / entries)) & (amax >= info.tiny**0.4)) | (amax == 0)
    a = torch.where(ok | (amax == 0), torch.ones_like(amax), amax)  # NaN stays NaN: it propagates
    # with the check, one host sync (on CUDA) decides: every matrix in range is finite too (NaN and Inf fail
    # the comparisons), and needs no division (x / 1 = x exactly); only otherwise is finiteness asked
    all_ok = check_finite and bool(ok.all())
    if check_finite and not all_ok and not bool(torch.isfinite(amax).all()):
        _raise_nonfinite(G)
    Y = Gw if all_ok else Gw / a
    if normalization.norm == "spectral":
        size = _spectral_estimate(Y)
    else:
        size = torch.linalg.vector_norm(Y, dim=(-2, -1), keepdim=True)
    if normalization.norm == "aol":  # scale-free pre-normalization; scale and eps act in _aol
        denom = size
    else:
        denom = normalization.scale * size + normalization.eps / a
    factor = torch.where(denom > 0, 1.0 / denom, torch.zeros_like(denom))
    return torch.mul(Y, factor, out=torch.empty(Y.shape, dtype=dtype, device=Y.device))


def _aol(X: torch.Tensor, A: torch.Tensor, normalization: Normalization) -> tuple[torch.Tensor, torch.Tensor]:
    """AOL row scaling ``X <- D X``, ``A <- D A D`` with ``D_ii = max(sum_j |A_ij|, eps)^(-1/2) / scale``.

    For any ``X``, ``||D X||_2 <= 1`` when ``scale >= 1`` (Prach & Lampert 2022, arXiv:2208.03160,
    Theorem 1, applied to ``X^T``); Turbo-Muon (Boissin et al. 2025, arXiv:2512.04632) uses it as a
    tighter normalization that reuses the first step's Gram matrix.  Here ``eps`` is a floor on the
    row sums (the Turbo-Muon convention), not an additive term.  AOL changes the polar factor: the
    iteration converges to ``polar(D X)``, which differs from ``polar(X)`` unless ``D`` is a multiple of I.
    """
    rows = A.abs().sum(dim=-1, keepdim=True)
    d = rows.clamp_min(normalization.eps).rsqrt() / normalization.scale
    d = torch.where(rows > 0, d, torch.zeros_like(d))
    X.mul_(d)
    A.mul_(d).mul_(d.mT)
    return X, A


def run_plan(
    G: torch.Tensor, sched: Schedule, plan: Any, dt: torch.dtype, *, check_finite: bool, record: bool
) -> Iterator[torch.Tensor]:
    """Run ``sched`` on ``G`` (b, m, n), ``m <= n``, as ``plan`` says: yield ``X_0``, then every iterate
    (``record=True``) or only the last one (the Gram form with ``record=False``).  The yielded tensors are
    work buffers.  ``plan`` is a :class:`nsiter.plan.Plan` (its method, kernel, gram_dtype, restarts and
    q_order are read).  No planning, no probe: :mod:`nsiter.plan` decides, this runs."""
    ops = Products(plan.kernel, dt, G.device, plan.gram_dtype)
    X = normalize(G, sched.normalization, dt, check_finite=check_finite)
    if X.dtype != ops.compute:
        X = X.to(ops.compute)
    b, m, n = X.shape
    if b == 1:  # plain addmm is faster than a batch of one
        X = X[0]
    A = None
    if sched.normalization.norm == "aol":  # the first step reuses the rescaled Gram matrix
        A = X.new_empty((*X.shape[:-1], m), dtype=ops.gram_compute if plan.method == "gram" else X.dtype)
        if plan.method == "gram":
            A = gram_matrix(X, ops, A)
        else:
            A = ops.round_x(ops.symmetric_product(X, X.mT, A))
        X, A = _aol(X, A, sched.normalization)
        ops.round_x(X)
        ops.round_gram(A) if plan.method == "gram" else ops.round_x(A)
    yield X.view(b, m, n)
    if plan.method == "gram":
        out = torch.empty_like(X)
        base, Q = X, None
        for base, Q in gram_steps(X, sched.steps, ops, restarts=plan.restarts, R=A, q_order=plan.q_order):
            if record:
                yield apply_q(Q, base, ops, out).view(b, m, n)
        if not record:
            yield apply_q(Q, base, ops, out).view(b, m, n)
        return
    yield from (Y.view(b, m, n) for Y in _standard_steps(X, sched.steps, ops, A))


def _standard_steps(
    X: torch.Tensor, steps: Sequence[Any], ops: Products, A: torch.Tensor | None
) -> Iterator[torch.Tensor]:
    """The standard step ``X <- c_0 X + (c_1 A + ... + c_l A^l) X``, ``A = X X^T``, on reused buffers."""
    m = X.shape[-2]
    Y = torch.empty_like(X)
    have_gram = A is not None
    if A is None:
        A = X.new_empty((*X.shape[:-1], m))
    B, B2 = torch.empty_like(A), torch.empty_like(A)
    for p in steps:
        c = [float(v) for v in p.coefficients]
        if len(c) == 1:  # degree 1: X <- c_0 X
            ops.round_x(X.mul_(c[0]))
            have_gram = False
            yield X
            continue
        if not have_gram:
            ops.round_x(ops.symmetric_product(X, X.mT, A))  # A = X X^T
        have_gram = False
        if len(c) == 2:  # cubic: X <- c_0 X + c_1 A X
            ops.round_x(ops.fused_product(A, X, Y, C=X, beta=c[0], alpha=c[1]))
        else:  # Horner in A: B = c_{l-1} A + c_l A^2, then B <- c_j A + B A for j = l-2, ..., 1
            Bk, spare = ops.round_x(ops.symmetric_product(A, A, B, C=A, beta=c[-2], alpha=c[-1])), B2
            for cj in reversed(c[1:-2]):
                ops.round_x(ops.symmetric_product(Bk, A, spare, C=A, beta=cj))
                Bk, spare = spare, Bk
            ops.round_x(ops.fused_product(Bk, X, Y, C=X, beta=c[0]))  # X <- c_0 X + B X
        X, Y = Y, X
        yield X


def wide_batch(G: torch.Tensor) -> tuple[torch.Tensor, tuple[tuple[int, ...], bool]]:
    """``G`` (..., m, n) as the (b, m', n') stack the kernel iterates on, wide side last (``m' <= n'``),
    and the layout :func:`from_wide_batch` needs to undo it."""
    *batch, m, n = G.shape
    wide = G.mT if m > n else G
    return wide.reshape(-1, *wide.shape[-2:]), (tuple(batch), m > n)


def from_wide_batch(
    X: torch.Tensor, layout: tuple[tuple[int, ...], bool], dtype: torch.dtype
) -> torch.Tensor:
    """Undo :func:`wide_batch` on an iterate ``X`` (b, m', n'): the input's shape, in ``dtype``, contiguous."""
    batch, transposed = layout
    out = X.reshape(*batch, *X.shape[-2:])
    return (out.mT if transposed else out).to(dtype, memory_format=torch.contiguous_format)
