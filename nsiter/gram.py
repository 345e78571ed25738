"""Gram Newton–Schulz: the iteration run on the small Gram matrix ``R = X X^T``, with restarts.

Write each step's odd polynomial as ``p_k(x) = x q_k(x^2)`` with ``q_k(y) = c_0 + c_1 y + ... + c_l y^l``.
The standard step is ``X_{k+1} = q_k(R_k) X_k`` with ``R_k = X_k X_k^T`` (``m x m``, ``m <= n``).  Since
``q_k(R_k)`` is a polynomial in the symmetric ``R_k``, it is symmetric and commutes with ``R_k``, so

    R_{k+1} = X_{k+1} X_{k+1}^T = q_k(R_k) R_k q_k(R_k)^T = q_k(R_k) R_k q_k(R_k),
    X_{k+1} = q_k(R_k) X_k = Q_{k+1} X_0   with   Q_{k+1} = q_k(R_k) Q_k,  Q_0 = I.

The Gram form iterates ``(R_k, Q_k)`` (``m x m`` only) and touches the ``m x n`` matrix twice: once for
``R_0 = X_0 X_0^T`` and once for ``X_T = Q_T X_0``.  Per step of degree ``2l + 1``: ``l - 1`` products for
``W = q_k(R_k) - c_0 I`` (Horner), one for ``Q <- c_0 Q + W Q`` and two for
``R <- q(R) (R q(R))`` (each fused as ``c_0 C + W C``), all ``m x m``; the last step skips the ``R``
update.  Against ``4 m^2 n + 2 (l - 1) m^3`` flops per standard step this pays when ``n / m`` is large
(see :func:`nsiter.cost.method_flops`).  Every ``R_k``, ``Q_k`` and the ``W``-products are polynomials in ``R_0``,
hence symmetric: :mod:`nsiter.kernels` computes them as blocked symmetric products.

A *restart after step r* sets ``X <- Q X``, ``R <- X X^T``, ``Q <- I`` before step ``r + 1``: rounding
errors of ``R`` (eigenvalues perturbed by about ``u ||R||``, negative ones among them) are amplified by
the following steps' slopes ``q_k(0)^2``, and a restart starts them afresh at the cost of two ``m x n``
products.  Positions come from the caller (``restarts=``) or the schedule (``Schedule.restarts``).

Method: Zhang, Amsel, Chen & Dao, "Gram Newton–Schulz" (2026; the ``gram-newton-schulz`` package,
Dao-AILab), written here from the formulas above for any odd degree per step, batched ``(b, m, n)``,
with an optional wider precision for ``R`` and ``Q`` (``gram_dtype``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from nsiter.dtypes import dtype_name
from nsiter.kernels import Products
from nsiter.polynomial import OddPolynomial
from nsiter.schedule import Schedule, check_restarts

__all__ = [
    "Q_ORDERS",
    "apply_q",
    "default_gram_dtype",
    "gram_magnitude",
    "gram_matrix",
    "gram_steps",
]

Q_ORDERS = ("zq", "qz")  # Q <- c_0 Q + W Q, or Q <- c_0 Q + Q W (gram_steps)


def default_gram_dtype(dtype: Any, gemm: str, device: str = "cpu") -> str:
    """The precision kept for ``R`` and ``Q``: float32 for bf16/fp16 work on CPUs, float64 for float32
    work, else the working dtype itself (native low-precision GEMMs on GPUs, where float32 products
    cost far more and the rounding model or a measurement gates the Gram form).

    On CPUs float32 is the square of the working precision (``2^-24 <= (2^-8)^2``), so the Gram form
    is no less accurate than the standard form on every CPU kind: where
    the X side is emulated its GEMMs are float32 anyway, and where it runs natively (AVX-512 bf16) the
    bf16 Gram side was measured further from float64 than the standard form (1.4x on Muon's 6-step
    agreement test, 48x24 and 16x40; tests/test_optim.py).  ``gemm`` is ``"native"`` or ``"emulated"``.
    """
    name = dtype_name(dtype)
    if gemm not in ("native", "emulated"):
        raise ValueError(f"gemm must be 'native' or 'emulated', got {gemm!r}")
    if name == "float32":
        return "float64"
    if name in ("bfloat16", "float16") and (gemm == "emulated" or torch.device(device).type == "cpu"):
        return "float32"
    return name


def gram_magnitude(schedule: Schedule | Sequence[OddPolynomial], restarts: Sequence[int] = ()) -> float:
    """Largest ``|Q_k|`` eigenvalue the Gram form reaches in exact arithmetic: ``max |phi_k(x) / x|`` over
    normalized singular values ``x`` in ``(0, 1/scale]`` and steps ``k`` (restarts reset ``Q`` to ``I``).

    ``Q_k`` is a polynomial in ``R_0`` with eigenvalues ``prod_j q_j(phi_{j-1}(x)^2)``, which tends to the
    slope at zero ``prod_j c_{0,j}`` as ``x -> 0``: about 500 for Muon's 5 steps, 6.4e3 for Polar
    Express's 8 and 7.9e4 for DeepSeek-V4's 10, beyond float16's 65504.  The standard form's
    intermediates stay below 19 for every registry schedule.  An estimate by dense sampling (geometric
    below 1e-3, 2e4 points above), not a certified bound; rounding (negative eigenvalues of ``R``) can
    only make ``Q`` larger.
    """
    steps = list(schedule.steps if isinstance(schedule, Schedule) else schedule)
    cuts = set(check_restarts(list(restarts), len(steps)))
    scale = schedule.normalization.scale if isinstance(schedule, Schedule) else 1.0
    x = np.concatenate([np.geomspace(1e-12, 1e-3, 2000), np.linspace(1e-3, 1.0, 20001)]) / scale
    q_all, worst = np.ones_like(x), 1.0
    for k, p in enumerate(steps, start=1):
        q = np.polyval(np.asarray(p.coefficients, dtype=float)[::-1], x * x)
        q_all *= q
        x = x * q
        worst = max(worst, float(np.abs(q_all).max()))
        if k in cuts:
            q_all = np.ones_like(x)
    return worst


def gram_matrix(X: torch.Tensor, ops: Products, out: torch.Tensor) -> torch.Tensor:
    """``R = X X^T`` on the Gram side (``X`` cast to the Gram compute dtype when that is wider)."""
    Xg = X if X.dtype == ops.gram_compute else X.to(ops.gram_compute)
    return ops.round_gram(ops.symmetric_product(Xg, Xg.mT, out))


def apply_q(Q: torch.Tensor | None, X: torch.Tensor, ops: Products, out: torch.Tensor) -> torch.Tensor:
    """``Q X`` on the X side (rounded as the path requires); ``X`` itself when ``Q`` is the identity."""
    if Q is None:
        return X
    Qx = Q if Q.dtype == X.dtype else Q.to(X.dtype)
    return ops.round_x(ops.fused_product(Qx, X, out))


def gram_steps(
    X: torch.Tensor,
    steps: Sequence[OddPolynomial],
    ops: Products,
    *,
    restarts: Sequence[int] = (),
    R: torch.Tensor | None = None,
    q_order: str = "zq",
) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    """Run the Gram form; after every step yield ``(X, Q)`` with the iterate ``X_k = Q X`` (``Q`` None:
    the identity).  ``X`` is ``(m, n)`` or ``(b, m, n)`` with ``m <= n`` in ``ops.compute``; ``R`` may be
    given (``X X^T`` already computed, e.g. rescaled by AOL).  The yielded tensors are work buffers.

    ``q_order`` is the side on which ``W = q_k(R_k) - c_0 I`` multiplies ``Q``: ``"zq"``,
    ``Q <- c_0 Q + W Q``, or ``"qz"``, ``Q <- c_0 Q + Q W`` (the published kernel's order: Zhang, Amsel,
    Chen & Dao 2026, ``gram-newton-schulz``).  ``W`` and ``Q`` are polynomials in ``R_0``, so both
    compute the same matrix in exact arithmetic with the same flops; in floating point a rounding error
    ``E`` of ``Q`` is carried as ``P E`` or ``E P`` by the later steps' product ``P``.
    """
    if q_order not in Q_ORDERS:
        raise ValueError(f"q_order must be one of {Q_ORDERS}, got {q_order!r}")
    cuts = set(check_restarts(list(restarts), len(steps)))
    gshape = (*X.shape[:-1], X.shape[-2])

    def new() -> torch.Tensor:
        return torch.empty(gshape, dtype=ops.gram_compute, device=X.device)

    if R is None:
        R = gram_matrix(X, ops, new())
    W, W2, T = new(), new(), new()
    Qbuf = [new(), new()]
    Q: torch.Tensor | None = None
    Xspare: torch.Tensor | None = None
    for k, p in enumerate(steps, start=1):
        c = [float(v) for v in p.coefficients]
        need_r = k < len(steps) and k not in cuts
        if len(c) == 1:  # q = c_0: Q <- c_0 Q, R <- c_0^2 R
            if Q is None:
                Q = Qbuf[0]
                Q.zero_().diagonal(dim1=-2, dim2=-1).fill_(c[0])
            else:
                Q.mul_(c[0])
            ops.round_gram(Q)
            if need_r:
                ops.round_gram(R.mul_(c[0] ** 2))
        else:
            # W = q(R) - c_0 I = c_1 R + ... + c_l R^l by Horner: W <- c_j R + W R
            if len(c) == 2:
                Wk = ops.round_gram(W.copy_(R).mul_(c[1]))
            else:
                Wk, spare = ops.round_gram(ops.symmetric_product(R, R, W, C=R, beta=c[-2], alpha=c[-1])), W2
                for cj in reversed(c[1:-2]):
                    ops.round_gram(ops.symmetric_product(Wk, R, spare, C=R, beta=cj))
                    Wk, spare = spare, Wk
            if Q is None:  # Q = q(R) = W + c_0 I
                Q = Qbuf[0]
                Q.copy_(Wk).diagonal(dim1=-2, dim2=-1).add_(c[0])
                ops.round_gram(Q)
            else:  # Q <- q(R) Q = c_0 Q + W Q ("zq"), or Q q(R) = c_0 Q + Q W ("qz")
                other = Qbuf[1] if Q is Qbuf[0] else Qbuf[0]
                left, right = (Wk, Q) if q_order == "zq" else (Q, Wk)
                Q = ops.round_gram(ops.symmetric_product(left, right, other, C=Q, beta=c[0]))
            if need_r:  # R <- q(R) R q(R): T = c_0 R + R W, then R = c_0 T + W T
                ops.round_gram(ops.symmetric_product(R, Wk, T, C=R, beta=c[0]))
                ops.round_gram(ops.symmetric_product(Wk, T, R, C=T, beta=c[0]))
        if k in cuts:  # restart: X <- Q X, R <- X X^T, Q <- I
            if Xspare is None:
                Xspare = torch.empty_like(X)
            X, Xspare = apply_q(Q, X, ops, Xspare), X
            R = gram_matrix(X, ops, R)
            Q = None
        yield X, Q
