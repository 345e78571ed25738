"""Triton kernels for the Newton–Schulz products on CUDA: symmetric products and fused GEMM epilogues.

Three products make up every step of the evaluator (:mod:`nsiter.evaluate`, :mod:`nsiter.gram`):

    A = X X^T                          a symmetric product (BLAS ``syrk``):            :func:`syrk`
    B = c_{l-1} A + c_l A A            a symmetric product of commuting symmetric     :func:`symmetric_mm`
    B <- c_j A + B A                   matrices, with an ``addmm``-like epilogue
    X <- c_0 X + B X                   a general product with the same epilogue:     :func:`addmm`

:func:`symmetric_mm` computes ``out = beta C + alpha P Q`` for a product known to be symmetric (``Q = P^T``,
or ``P``, ``Q`` commuting symmetric, ``C`` symmetric): only the output tiles on and above the diagonal run a
GEMM, each writes its tile and the transposed tile below the diagonal, so the lower triangle is the exact
mirror of the upper one (``out == out^T`` bit for bit: on a diagonal tile the entries computed below the
diagonal are discarded and the transposed ones from above it stored there).  That is
``(T + 1) / (2 T)`` of the full product's tiles for ``T`` tiles per side.  :func:`addmm` is the general
``out = beta C + alpha P Q``.  Operands are ``(m, k)`` or batched ``(b, m, k)``, in float16, bfloat16 or
float32; products accumulate in float32 (float32 operands as IEEE float32 products, never TF32), the
epilogue runs in float32 and the result is rounded once to the output dtype (the input's, or
``out_dtype``): the arithmetic of cuBLAS's ``addmm`` with float32 compute.

Pure-torch reference of each kernel (``P, Q, C`` float64 copies of the operands, ``dt`` the output dtype)::

    syrk(X)                          == (X @ X.mT).to(dt)
    symmetric_mm(P, Q, C=C, ...)     == (S.triu() + S.triu(1).mT).to(dt)  with  S = beta * C + alpha * P @ Q
    addmm(P, Q, C=C, ...)            == (beta * C + alpha * P @ Q).to(dt)

up to float32 rounding, bounded entrywise by :func:`error_bound`.

**Where they run.**  On CUDA tensors only (:func:`triton_available`); ``import nsiter`` and this module never
import triton, the kernels are compiled at their first call.  With ``TRITON_INTERPRET=1`` set before the
first call, Triton's interpreter runs them on CPU tensors: the tests use it.  In triton 3.6 (and, by
report, 3.9) the interpreter's ``tl.dot`` on bfloat16 operands returns garbage (a 16x16 product off by
2.6e10), so interpreter tests give float32 (or float16) operands holding bfloat16-representable values; its
float32-to-bfloat16 conversion rounds toward zero (:func:`error_bound` allows for it).

Symmetric tiles mirrored and fused epilogues are the design of the Gram Newton–Schulz kernels (Zhang, Amsel,
Chen & Dao 2026, github.com/Dao-AILab/gram-newton-schulz) and of BLAS ``syrk``; written here from those
formulas in plain ``triton.language``.  Whether they beat cuBLAS at a shape is measured by
``benchmarks/gpu.py``; the evaluator does not call them yet.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from typing import Any

import torch

from nsiter.dtypes import unit_roundoff

__all__ = [
    "DTYPES",
    "addmm",
    "error_bound",
    "interpreting",
    "symmetric_mm",
    "syrk",
    "triton_available",
]

DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def interpreting() -> bool:
    """True when ``TRITON_INTERPRET`` asks for Triton's interpreter (kernels run on the CPU, in numpy)."""
    return os.environ.get("TRITON_INTERPRET", "").strip().lower() in ("1", "true", "on", "yes")


def triton_available(device: torch.device | str) -> bool:
    """Whether the kernels of this module can run on ``device``: triton importable and a CUDA device (any
    device under the interpreter, ``TRITON_INTERPRET=1``).  Never imports triton."""
    device = torch.device(device)
    if importlib.util.find_spec("triton") is None:
        return False
    if interpreting():
        return True
    return device.type == "cuda" and torch.cuda.is_available()


@functools.lru_cache(maxsize=2)
def _kernels(interpret: bool) -> dict[str, Any]:
    """The jitted kernels, built at first use (``triton.jit`` reads ``TRITON_INTERPRET`` when it decorates,
    so interpreter and compiled kernels are cached apart, keyed by ``interpret``)."""
    import triton
    import triton.language as tl

    @triton.jit
    def _symmetric(
        P, Q, C, Out, M, K,
        sPb, sPm, sPk, sQb, sQk, sQn, sCb, sCm, sCn, sOb, sOm, sOn,
        alpha, beta,
        HAS_C: tl.constexpr, IEEE: tl.constexpr, BM: tl.constexpr, BK: tl.constexpr,
    ):  # fmt: skip
        # out[i, j] = beta C[i, j] + alpha sum_k P[i, k] Q[k, j] on tiles i <= j, mirrored below
        # program pid -> upper tile (ti, tj), ti <= tj: column tj holds programs tj (tj + 1) / 2 + ti
        pid = tl.program_id(0)
        b = tl.program_id(1).to(tl.int64)
        tj = ((tl.sqrt(8.0 * pid + 1.0) - 1.0) * 0.5).to(tl.int32)
        tj = tl.where((tj + 1) * (tj + 2) // 2 <= pid, tj + 1, tj)  # the float root rounded either way
        tj = tl.where(tj * (tj + 1) // 2 > pid, tj - 1, tj)
        ti = pid - tj * (tj + 1) // 2
        rm = ti * BM + tl.arange(0, BM)
        rn = tj * BM + tl.arange(0, BM)
        rk = tl.arange(0, BK)
        acc = tl.full((BM, BM), 0.0, tl.float32)
        for k0 in range(0, K, BK):
            kk = k0 + rk
            a = tl.load(
                P + b * sPb + rm[:, None] * sPm + kk[None, :] * sPk,
                mask=(rm[:, None] < M) & (kk[None, :] < K),
                other=0.0,
            )
            q = tl.load(
                Q + b * sQb + kk[:, None] * sQk + rn[None, :] * sQn,
                mask=(kk[:, None] < K) & (rn[None, :] < M),
                other=0.0,
            )
            if IEEE:
                acc = tl.dot(a, q, acc, input_precision="ieee")
            else:
                acc = tl.dot(a, q, acc)
        acc = acc * alpha
        inside = (rm[:, None] < M) & (rn[None, :] < M)
        if HAS_C:
            c = tl.load(C + b * sCb + rm[:, None] * sCm + rn[None, :] * sCn, mask=inside, other=0.0)
            acc += beta * c.to(tl.float32)
        res = acc.to(Out.dtype.element_ty)
        upper = rm[:, None] <= rn[None, :]
        strict = rm[:, None] < rn[None, :]
        tl.store(Out + b * sOb + rm[:, None] * sOm + rn[None, :] * sOn, res, mask=inside & upper)
        tl.store(Out + b * sOb + rn[None, :] * sOm + rm[:, None] * sOn, res, mask=inside & strict)

    @triton.jit
    def _general(
        P, Q, C, Out, M, N, K,
        sPb, sPm, sPk, sQb, sQk, sQn, sCb, sCm, sCn, sOb, sOm, sOn,
        alpha, beta,
        HAS_C: tl.constexpr, IEEE: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
    ):  # fmt: skip
        # out[i, j] = beta C[i, j] + alpha sum_k P[i, k] Q[k, j]
        pid = tl.program_id(0)
        b = tl.program_id(1).to(tl.int64)
        tn = (N + BN - 1) // BN
        rm = (pid // tn) * BM + tl.arange(0, BM)
        rn = (pid % tn) * BN + tl.arange(0, BN)
        rk = tl.arange(0, BK)
        acc = tl.full((BM, BN), 0.0, tl.float32)
        for k0 in range(0, K, BK):
            kk = k0 + rk
            a = tl.load(
                P + b * sPb + rm[:, None] * sPm + kk[None, :] * sPk,
                mask=(rm[:, None] < M) & (kk[None, :] < K),
                other=0.0,
            )
            q = tl.load(
                Q + b * sQb + kk[:, None] * sQk + rn[None, :] * sQn,
                mask=(kk[:, None] < K) & (rn[None, :] < N),
                other=0.0,
            )
            if IEEE:
                acc = tl.dot(a, q, acc, input_precision="ieee")
            else:
                acc = tl.dot(a, q, acc)
        acc = acc * alpha
        inside = (rm[:, None] < M) & (rn[None, :] < N)
        if HAS_C:
            c = tl.load(C + b * sCb + rm[:, None] * sCm + rn[None, :] * sCn, mask=inside, other=0.0)
            acc += beta * c.to(tl.float32)
        tl.store(
            Out + b * sOb + rm[:, None] * sOm + rn[None, :] * sOn, acc.to(Out.dtype.element_ty), mask=inside
        )

    # only builtins inside the kernels (tl.full, not the jitted tl.zeros or tl.cdiv): a jitted library function
    # is an interpreter function only if triton was imported under TRITON_INTERPRET=1, which a test cannot promise.
    # The interpreter turns an int argument into a 1-element numpy array, which numpy >= 2.4 refuses to
    # convert back to an int for ``range``; a constexpr passes through as the int itself
    loop_bound = tl.constexpr if interpret else int
    return {"symmetric": _symmetric, "general": _general, "cdiv": triton.cdiv, "bound": loop_bound}


def _config(k: int, dtype: torch.dtype, n: int) -> dict[str, int]:
    """Tile sizes: small tiles under the interpreter (its cost grows with the tile), else 128 x 128 tiles of
    depth 64 (32 for float32), 64 x 64 where the output is at most 256 wide; 8 warps, 3 stages."""
    if interpreting():
        return {"BM": 32, "BN": 32, "BK": 32}
    big = n > 256
    return {
        "BM": 128 if big else 64,
        "BN": 128 if big else 64,
        "BK": 32 if dtype == torch.float32 else 64,
        "num_warps": 8 if big else 4,
        "num_stages": 3,
    }


def _as3(T: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(T, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(T).__name__}")
    if T.ndim == 2:
        return T.unsqueeze(0)
    if T.ndim != 3:
        raise ValueError(f"{name} must have shape (m, k) or (b, m, k), got {tuple(T.shape)}")
    return T


def _check(P: torch.Tensor, Q: torch.Tensor, C: torch.Tensor | None, out_dtype: Any) -> torch.dtype:
    for name, T in (("P", P), ("Q", Q), ("C", C)):
        if T is None:
            continue
        if not isinstance(T, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(T).__name__}")
        if T.dtype not in DTYPES:
            raise ValueError(f"{name} has dtype {T.dtype}: the kernels take float16, bfloat16 or float32")
        if T.device != P.device:
            raise ValueError(f"{name} is on {T.device}, P on {P.device}: all operands on one device")
    if not triton_available(P.device):
        raise ValueError(
            f"the Triton kernels run on CUDA tensors (or under TRITON_INTERPRET=1), got device {P.device}"
            + ("" if importlib.util.find_spec("triton") else " and triton is not installed")
        )
    if P.shape[-1] != Q.shape[-2]:
        raise ValueError(f"inner dimensions differ: P {tuple(P.shape)}, Q {tuple(Q.shape)}")
    dt = P.dtype if out_dtype is None else out_dtype
    if dt not in DTYPES:
        raise ValueError(f"out_dtype must be float16, bfloat16 or float32, got {out_dtype!r}")
    return dt


def _prepare(
    P: torch.Tensor,
    Q: torch.Tensor,
    out: torch.Tensor | None,
    C: torch.Tensor | None,
    out_dtype: Any,
    m: int,
    n: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor, tuple[int, ...]]:
    dt = _check(P, Q, C, out_dtype)
    P3, Q3 = _as3(P, "P"), _as3(Q, "Q")
    C3 = None if C is None else _as3(C, "C")
    if C3 is not None and C3.shape[-2:] != (m, n):
        raise ValueError(f"C must be (..., {m}, {n}), got {tuple(C.shape)}")
    operands = [("P", P, P3), ("Q", Q, Q3)] + ([("C", C, C3)] if C is not None else [])
    batch = max(T3.shape[0] for _, _, T3 in operands)
    for name, _, T3 in operands:
        if T3.shape[0] not in (1, batch):
            raise ValueError(f"{name} has batch {T3.shape[0]}, expected 1 or {batch}")
    lead = (batch,) if any(T.ndim == 3 for _, T, _ in operands) else ()
    if out is None:
        out = torch.empty((*lead, m, n), dtype=dt, device=P.device)
    elif out.shape != (*lead, m, n) or out.dtype != dt:
        raise ValueError(f"out must be {(*lead, m, n)} {dt}, got {tuple(out.shape)} {out.dtype}")
    O3 = _as3(out, "out")
    return P3, Q3, O3, C3, out, (batch,)


def _strides(T: torch.Tensor | None) -> tuple[int, int, int]:
    if T is None:
        return (0, 0, 0)
    return (T.stride(0) if T.shape[0] > 1 else 0, T.stride(1), T.stride(2))


def symmetric_mm(
    P: torch.Tensor,
    Q: torch.Tensor,
    out: torch.Tensor | None = None,
    *,
    C: torch.Tensor | None = None,
    beta: float = 0.0,
    alpha: float = 1.0,
    out_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """``out = beta C + alpha P Q`` for a product known to be symmetric, upper tiles computed and mirrored.

    The caller promises symmetry: ``Q = P^T`` (then see :func:`syrk`), or ``P``, ``Q`` polynomials in one
    symmetric matrix (``A A``, ``B_k A`` of Horner's rule, ``q(R) R``), and ``C`` symmetric.  Only the entries
    on and above the diagonal of ``P Q`` and ``C`` are read; the result is exactly symmetric.

    Args:
        P: ``(m, k)`` or ``(b, m, k)``.
        Q: ``(k, m)`` or ``(b, k, m)`` (any strides: ``X.mT`` is not copied).
        out: optional output ``(m, m)`` / ``(b, m, m)`` in ``out_dtype``, not aliasing ``P``, ``Q`` or ``C``.
        C, beta, alpha: the epilogue (``C`` None: ``out = alpha P Q``).
        out_dtype: output dtype (default ``P``'s): float16, bfloat16 or float32.

    Returns:
        ``out``; reference ``(beta C + alpha P Q).to(out_dtype)`` in float64, the upper triangle mirrored.
    """
    m = P.shape[-2]
    if Q.shape[-1] != m:
        raise ValueError(f"a symmetric product needs Q of shape (..., k, {m}), got {tuple(Q.shape)}")
    P3, Q3, O3, C3, out, (batch,) = _prepare(P, Q, out, C, out_dtype, m, m)
    k = P.shape[-1]
    cfg = _config(k, P.dtype, m)
    kern = _kernels(interpreting())
    tiles = kern["cdiv"](m, cfg["BM"])
    extra = {key: cfg[key] for key in ("num_warps", "num_stages") if key in cfg}
    kern["symmetric"][(tiles * (tiles + 1) // 2, batch)](
        P3, Q3, C3 if C3 is not None else O3, O3, m, kern["bound"](k),
        *_strides(P3), *_strides(Q3), *_strides(C3), *_strides(O3),
        float(alpha), float(beta),
        HAS_C=C3 is not None, IEEE=P.dtype == torch.float32, BM=cfg["BM"], BK=cfg["BK"], **extra,
    )  # fmt: skip
    return out


def syrk(
    X: torch.Tensor, out: torch.Tensor | None = None, *, out_dtype: torch.dtype | None = None
) -> torch.Tensor:
    """``X X^T`` for ``X`` of shape ``(m, k)`` or ``(b, m, k)``: BLAS ``syrk``, upper tiles mirrored.

    Reference: ``(X.double() @ X.double().mT).to(out_dtype)`` up to float32 accumulation; exactly symmetric.
    """
    return symmetric_mm(X, X.mT, out, out_dtype=out_dtype)


def addmm(
    P: torch.Tensor,
    Q: torch.Tensor,
    out: torch.Tensor | None = None,
    *,
    C: torch.Tensor | None = None,
    beta: float = 0.0,
    alpha: float = 1.0,
    out_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """``out = beta C + alpha P Q``, batched, the epilogue fused: the step's ``X <- c_0 X + B X``.

    Args:
        P: ``(m, k)`` or ``(b, m, k)``; Q: ``(k, n)`` or ``(b, k, n)``; C: ``(m, n)`` or ``(b, m, n)`` or None.
        out: optional output, not aliasing the operands.
        beta, alpha: the epilogue's scalars (torch's ``addmm`` convention).
        out_dtype: output dtype (default ``P``'s).

    Returns:
        ``out``; reference ``(beta C + alpha P Q).to(out_dtype)`` computed in float64.
    """
    m, n = P.shape[-2], Q.shape[-1]
    P3, Q3, O3, C3, out, (batch,) = _prepare(P, Q, out, C, out_dtype, m, n)
    k = P.shape[-1]
    cfg = _config(k, P.dtype, max(m, n))
    kern = _kernels(interpreting())
    grid = (kern["cdiv"](m, cfg["BM"]) * kern["cdiv"](n, cfg["BN"]), batch)
    extra = {key: cfg[key] for key in ("num_warps", "num_stages") if key in cfg}
    kern["general"][grid](
        P3, Q3, C3 if C3 is not None else O3, O3, m, n, kern["bound"](k),
        *_strides(P3), *_strides(Q3), *_strides(C3), *_strides(O3),
        float(alpha), float(beta),
        HAS_C=C3 is not None, IEEE=P.dtype == torch.float32, BM=cfg["BM"], BN=cfg["BN"], BK=cfg["BK"], **extra,
    )  # fmt: skip
    return out


def error_bound(
    P: torch.Tensor,
    Q: torch.Tensor,
    C: torch.Tensor | None = None,
    *,
    beta: float = 0.0,
    alpha: float = 1.0,
    out_dtype: torch.dtype,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The float64 reference ``beta C + alpha P Q`` and an entrywise bound on any kernel result's distance to it.

    With float32 accumulation in any order over the inner dimension ``k``, the epilogue in float32 and one
    rounding to ``out_dtype`` (unit roundoff ``u_out``)::

        |out - ref| <= (k + 2) u_32 (|alpha| |P| |Q| + |beta| |C|) + r u_out |ref|

    (Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed., eq. 3.13: ``|fl(a^T b) - a^T b| <= gamma_k
    |a|^T |b|``, ``gamma_k <= (k + 1) u`` here, plus one rounding each for ``alpha``, ``beta`` and the sum).
    ``r = 1`` for round to nearest; ``r = 2`` for bfloat16 under the interpreter, which converts float32 to
    bfloat16 toward zero (triton 3.6's ``cast_impl``).  Returns float64 CPU tensors ``(ref, bound)``.
    """
    P64, Q64 = P.detach().double().cpu(), Q.detach().double().cpu()
    ref = alpha * (P64 @ Q64)
    mag = abs(alpha) * (P64.abs() @ Q64.abs())
    if C is not None:
        C64 = C.detach().double().cpu()
        ref = ref + beta * C64
        mag = mag + abs(beta) * C64.abs()
    r = 2.0 if (interpreting() and out_dtype == torch.bfloat16) else 1.0
    k = P.shape[-1]
    return ref, (k + 2) * unit_roundoff("float32") * mag + r * unit_roundoff(out_dtype) * ref.abs()
