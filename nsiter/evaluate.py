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
``method="auto"`` choosing by accuracy, then flops.  How the products run — the dtype's own GEMM or an
emulation (float32 GEMMs whose every result is rounded to the working dtype), full or blocked symmetric
products — is decided by measurement (:mod:`nsiter.kernels`); :func:`evaluation_plan` says what ran.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from nsiter.checks import check_bool, check_real
from nsiter.dtypes import dtype_name, largest_finite, torch_dtype, unit_roundoff
from nsiter.gram import (
    GRAM_TOLERANCE,
    METHODS,
    apply_q,
    default_gram_dtype,
    gram_magnitude,
    gram_matrix,
    gram_steps,
    method_decision,
)
from nsiter.kernels import KernelChoice, Products, gemm_path, kernel_choice
from nsiter.registry import load_schedule
from nsiter.schedule import Normalization, Schedule, check_restarts

__all__ = [
    "Plan",
    "evaluation_path",
    "evaluation_plan",
    "iterates",
    "normalize",
    "orthogonalize",
    "resolve_schedule",
    "validate_matrix",
]

_POWER_ITERATIONS = 32
# a Gram side wider than the X side, where not probed: float64/float32 GEMM time, measured 2.4-2.5 (AVX2)
WIDE_GRAM_COST = 2.5


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
    both formulas are evaluated and ``torch.where`` picks per matrix, giving the same bits as the branch.
    """
    work = _work_dtype(G.dtype, dtype)
    Gw = G.to(work)
    amax = Gw.abs().amax(dim=(-2, -1), keepdim=True)  # max|G|; NaN/Inf propagate
    fast = None
    if normalization.norm != "spectral":
        # Fast path: ||G||_F straight from G, valid when its squares neither overflow (size finite) nor
        # leave the normal range (max|G| >= tiny^0.4); one host sync decides, else the scaled formula.
        size = torch.linalg.vector_norm(Gw, dim=(-2, -1), keepdim=True)
        ok = torch.isfinite(size) & ((amax >= torch.finfo(work).tiny ** 0.4) | (amax == 0))
        denom = size if normalization.norm == "aol" else normalization.scale * size + normalization.eps
        factor = torch.where(denom > 0, 1.0 / denom, torch.zeros_like(denom))
        if not check_finite:  # no sync: the scaled formula below as well, selected per matrix
            fast = torch.mul(Gw, factor)
        elif bool(ok.all()):
            return torch.mul(Gw, factor, out=torch.empty(Gw.shape, dtype=dtype, device=Gw.device))
    if check_finite and not bool(torch.isfinite(amax).all()):  # one host sync on CUDA
        _raise_nonfinite(G)
    amax = torch.where(amax > 0, amax, torch.ones_like(amax))
    Y = Gw / amax
    if normalization.norm == "spectral":
        size = _spectral_estimate(Y)
    else:
        size = torch.linalg.matrix_norm(Y, ord="fro", keepdim=True)
    if normalization.norm == "aol":  # scale-free pre-normalization; scale and eps act in _aol
        denom = size
    else:
        denom = normalization.scale * size + normalization.eps / amax
    factor = torch.where(denom > 0, 1.0 / denom, torch.zeros_like(denom))
    scaled = torch.mul(Y, factor)
    if fast is not None:
        scaled = torch.where(ok, fast, scaled)
    return scaled.to(dtype, memory_format=torch.contiguous_format)


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


@dataclass(frozen=True)
class Plan:
    """How one evaluation runs: what ``orthogonalize`` chose for a (device, dtype, shape, schedule).

    Attributes:
        method: ``"standard"`` or ``"gram"`` (``"auto"`` resolved).
        kernel: the :class:`nsiter.kernels.KernelChoice` (native or emulated GEMM, symmetric products).
        gram_dtype: canonical name of the precision of ``R`` and ``Q`` (Gram form only; else None).
        restarts: the Gram form's restart positions (after these 1-based steps).
        m, n: the small and the large side.
        reasons: why, one sentence per decision (GEMM path, products, R/Q precision, restarts, method).
    """

    method: str
    kernel: KernelChoice
    gram_dtype: str | None
    restarts: tuple[int, ...]
    m: int
    n: int
    reasons: tuple[str, ...] = ()

    def explain(self) -> str:
        """The label and the reasons, one per line: why did this run the Gram form (or not)?"""
        return "\n".join([self.label, *(f"- {r}" for r in self.reasons)])

    @property
    def label(self) -> str:
        """E.g. ``"gram (R, Q float32; restarts 2), bfloat16 emulated, symmetric/128"``."""
        if self.method == "gram":
            rs = f"; restarts {','.join(map(str, self.restarts))}" if self.restarts else ""
            return f"gram (R, Q {self.gram_dtype}{rs}), {self.kernel.label}"
        return f"standard, {self.kernel.label}"


def _wide_cost(choice: KernelChoice) -> float:
    """Time per flop of a Gram side one precision wider than the X side, over the X side's: the probe's
    float64/float32 ratio for float32 work, its emulated/native ratio (float32 over the dtype's own GEMM)
    for native bf16/fp16, else :data:`WIDE_GRAM_COST`."""
    if choice.float64_cost is not None:
        return choice.float64_cost
    if not choice.emulated and choice.native_ms and choice.emulated_ms:
        return max(1.0, choice.emulated_ms / choice.native_ms)
    return WIDE_GRAM_COST


def evaluation_plan(
    shape: Sequence[int],
    schedule: Schedule | str | Path = "muon",
    *,
    dtype: Any = torch.bfloat16,
    device: torch.device | str = "cpu",
    method: str = "auto",
    restarts: Sequence[int] | None = None,
    gram_dtype: Any = None,
    gram_tolerance: float = GRAM_TOLERANCE,
    emulate: bool | None = None,
    symmetric: bool | int | None = None,
    steps: int | None = None,
) -> Plan:
    """The plan ``orthogonalize`` follows for an input of ``shape`` (``(..., m, n)``) with these options.

    Records, the benchmark and experiments store ``Plan.label`` next to their numbers.  The first call
    for a (device, dtype, size class) may run the kernel probe (:func:`nsiter.kernels.kernel_choice`).
    """
    if len(shape) < 2 or min(shape[-2:]) < 1:
        raise ValueError(f"expected a shape (..., m, n), got {tuple(shape)}")
    sched = resolve_schedule(schedule, steps=steps)
    dt = _check_dtype(dtype)
    m, n = min(shape[-2:]), max(shape[-2:])
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    choice = kernel_choice(device, dt, m, emulate=emulate, symmetric=symmetric)
    batch = math.prod(shape[:-2])
    key = (
        str(torch.device(device)),
        dt,
        m,
        n,
        batch,
        tuple(tuple(p.coefficients) for p in sched.steps),
        sched.restarts,
        sched.normalization.scale,
        method,
        None if restarts is None else tuple(restarts),
        None if gram_dtype is None else dtype_name(gram_dtype),
        gram_tolerance,
        choice,
    )
    plan = _plans.get(key)
    if plan is None:
        if len(_plans) >= _PLAN_CACHE_SIZE:
            _plans.clear()
        plan = _plans[key] = _decide(
            sched, dt, m, n, batch, choice, device, method, restarts, gram_dtype, gram_tolerance
        )
    return plan


_plans: dict[tuple, Plan] = {}  # plans by (device, dtype, shape, schedule digest, options, kernel choice)
_PLAN_CACHE_SIZE = 1024


def _decide(
    sched: Schedule,
    dt: torch.dtype,
    m: int,
    n: int,
    batch: int,
    choice: KernelChoice,
    device: torch.device | str,
    method: str,
    restarts: Sequence[int] | None,
    gram_dtype: Any,
    gram_tolerance: float,
) -> Plan:
    """The decisions behind :func:`evaluation_plan`, each with its reason."""
    why = [f"products: {choice.label} ({choice.source})"]
    gdt = dtype_name(gram_dtype) if gram_dtype is not None else default_gram_dtype(dt, choice.gemm, device)
    why.append(f"R, Q in {gdt} ({'given' if gram_dtype is not None else 'nsiter.gram.default_gram_dtype'})")
    x_side = "float32" if choice.emulated and dtype_name(dt) in ("bfloat16", "float16") else dtype_name(dt)
    if restarts is not None:
        rs = check_restarts(restarts, len(sched))
        why.append(f"restarts {list(rs)} given")
    elif unit_roundoff(gdt) <= unit_roundoff(dt) ** 2 and unit_roundoff(x_side) <= unit_roundoff(gdt):
        # a schedule's stored restarts are placed for R, Q in the working precision (nsiter.restarts); a
        # Gram side kept at the square of that precision, and applied (Q X) in it, loses nothing to them
        # and skips their two m x n products each.  Where Q X runs in the working precision (a native
        # bf16 X side) they stay: without them Polar Express 8 measured 3.09 against 0.90 with them
        # (bf16, spectrum to 1e-10; issue 19).  Pass restarts= to force them.
        rs = ()
        why.append(f"no restarts: R, Q and Q X in {gdt}, the square of {dtype_name(dt)}'s precision")
    else:
        rs = sched.restarts
        why.append(f"the schedule's restarts {list(rs)}")
    if method == "auto":
        wide = torch_dtype(gdt).itemsize > torch_dtype(x_side).itemsize
        cost = _wide_cost(choice) if wide else 1.0
        method, reason = method_decision(
            sched,
            m,
            n,
            dt,
            gram_dtype=gdt,
            restarts=rs,
            symmetric_block=choice.symmetric_block,
            tolerance=gram_tolerance,
            gram_cost=cost,
            batch=batch,
        )
        why.append(f"{method}: {reason}" + (f" (Gram side weighed {cost:.2f}x per flop)" if wide else ""))
    else:
        why.append(f"{method}: given")
    if method == "standard":
        return Plan("standard", choice, None, (), m, n, tuple(why))
    if largest_finite(gdt) < 1e6:  # float16 R, Q: guard the range (fp16 overflows at 65504)
        peak = gram_magnitude(sched, rs)
        if 2 * peak > largest_finite(gdt):
            raise ValueError(
                f"gram_dtype {gdt}: Q reaches about {peak:.3g} (nsiter.gram.gram_magnitude), beyond half "
                f"the format's range {largest_finite(gdt):g}; add restarts or keep R, Q in float32"
            )
    return Plan("gram", choice, gdt, tuple(rs), m, n, tuple(why))


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
    yield from _run(
        G,
        schedule,
        dtype=dtype,
        norm=norm,
        steps=steps,
        emulate=emulate,
        check_finite=check_finite,
        method=method,
        restarts=restarts,
        gram_dtype=gram_dtype,
        gram_tolerance=gram_tolerance,
        symmetric=symmetric,
        record=True,
    )


def _run(
    G: torch.Tensor,
    schedule: Schedule | str | Path,
    *,
    dtype: Any,
    norm: str | Normalization | None,
    steps: int | None,
    emulate: bool | None,
    check_finite: bool,
    method: str,
    restarts: Sequence[int] | None,
    gram_dtype: Any,
    gram_tolerance: float,
    symmetric: bool | int | None,
    record: bool,
    plan: Plan | None = None,
) -> Iterator[torch.Tensor]:
    """The evaluation; with ``record=False`` the Gram form yields only ``X_0`` and the final iterate."""
    sched = resolve_schedule(schedule, norm=norm, steps=steps)
    dt = _check_dtype(dtype)
    if plan is None:
        plan = evaluation_plan(
            G.shape,
            sched,
            dtype=dt,
            device=G.device,
            method=method,
            restarts=restarts,
            gram_dtype=gram_dtype,
            gram_tolerance=gram_tolerance,
            emulate=emulate,
            symmetric=symmetric,
        )
    elif (plan.m, plan.n) != (G.shape[-2], G.shape[-1]) or plan.kernel.dtype != dtype_name(dt):
        raise ValueError(
            f"plan is for {plan.m} x {plan.n} {plan.kernel.dtype} matrices, got {G.shape[-2]} x {G.shape[-1]} "
            f"{dtype_name(dt)} (wide side last)"
        )
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
            A = ops.rx(ops.sym(X, X.mT, A))
        X, A = _aol(X, A, sched.normalization)
        ops.rx(X)
        ops.rg(A) if plan.method == "gram" else ops.rx(A)
    yield X.view(b, m, n)
    if plan.method == "gram":
        out = torch.empty_like(X)
        base, Q = X, None
        for base, Q in gram_steps(X, sched.steps, ops, restarts=plan.restarts, R=A):
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
            ops.rx(X.mul_(c[0]))
            have_gram = False
            yield X
            continue
        if not have_gram:
            ops.rx(ops.sym(X, X.mT, A))  # A = X X^T
        have_gram = False
        if len(c) == 2:  # cubic: X <- c_0 X + c_1 A X
            ops.rx(ops.mm(A, X, Y, C=X, beta=c[0], alpha=c[1]))
        else:  # Horner in A: B = c_{l-1} A + c_l A^2, then B <- c_j A + B A for j = l-2, ..., 1
            Bk, spare = ops.rx(ops.sym(A, A, B, C=A, beta=c[-2], alpha=c[-1])), B2
            for cj in reversed(c[1:-2]):
                ops.rx(ops.sym(Bk, A, spare, C=A, beta=cj))
                Bk, spare = spare, Bk
            ops.rx(ops.mm(Bk, X, Y, C=X, beta=c[0]))  # X <- c_0 X + B X
        X, Y = Y, X
        yield X


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
            (default): the Gram form where :func:`nsiter.gram.gram_accurate` keeps its rounding within
            ``gram_tolerance`` and the flop model (:func:`nsiter.gram.choose_method`) says it is cheaper.
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
        gram_tolerance: the accuracy rule's tolerance (see :func:`nsiter.gram.gram_accurate`).
        symmetric: blocked symmetric products (``None``: where the probe measured that they pay;
            ``True``/``False``; or a block size).
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
    check_real(gram_tolerance, "gram_tolerance", low=0.0, low_open=True)
    if plan is not None and not isinstance(plan, Plan):
        raise ValueError(f"plan must be a Plan (nsiter.evaluation_plan) or None, got {type(plan).__name__}")
    W, layout = wide_batch(G)
    with torch.no_grad():  # the kernel writes into reused buffers (out=): not differentiable
        *_, last = _run(
            W,
            schedule,
            dtype=dtype,
            norm=norm,
            steps=steps,
            emulate=emulate,
            check_finite=check_finite,
            method=method,
            restarts=restarts,
            gram_dtype=gram_dtype,
            gram_tolerance=gram_tolerance,
            symmetric=symmetric,
            record=False,
            plan=plan,
        )
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
