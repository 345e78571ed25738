"""Reference polar decompositions and the orthogonality floor of each floating-point format.

- ``polar_factor`` (:mod:`nsiter.measure`, the one float64 SVD reference): ``U V^T`` from a float64 SVD.
- ``polar_scipy``: ``scipy.linalg.polar`` (also SVD based), an independent implementation.
- ``polar_newton``: Higham's scaled Newton iteration ``X <- (mu X + (mu X)^{-T}) / 2`` with the
  1,inf-norm or Frobenius scaling (N. J. Higham, "Computing the polar decomposition — with
  applications", SIAM J. Sci. Stat. Comput. 7 (1986); *Functions of Matrices*, SIAM 2008, sec. 8.6).
- ``polar_qdwh``: the QR-based dynamically weighted Halley iteration (Y. Nakatsukasa, Z. Bai,
  F. Gygi, "Optimizing Halley's iteration for computing the matrix polar decomposition", SIAM J.
  Matrix Anal. Appl. 31 (2010), doi:10.1137/090774999).
- ``dtype_floor``: how orthogonal a converged iteration gets when every product is rounded to a
  given dtype, measured with a plain cubic Newton–Schulz loop written out here (independent of the
  evaluator) — the dtype-dependent tolerances of the tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from nsiter.dtypes import DTYPE_NAMES, dtype_name, torch_dtype, unit_roundoff
from nsiter.measure import polar_factor

__all__ = [
    "DtypeFloor",
    "dtype_floor",
    "dtype_floors",
    "polar_newton",
    "polar_qdwh",
    "polar_scipy",
]


def _as_float64_matrix(G: torch.Tensor | np.ndarray, what: str = "G") -> torch.Tensor:
    G = torch.as_tensor(G)
    if not G.is_floating_point() or G.ndim < 2 or G.numel() == 0:
        raise ValueError(
            f"{what} must be a non-empty real floating (..., m, n) array, got {G.dtype} {tuple(G.shape)}"
        )
    if not bool(torch.isfinite(G).all()):
        raise ValueError(f"{what} has NaN or Inf entries")
    return G.to(torch.float64)


def polar_scipy(G: np.ndarray | torch.Tensor) -> np.ndarray:
    """``scipy.linalg.polar(G, side="right")[0]`` for one matrix (``G = U P``, U with orthonormal columns or rows)."""
    import scipy.linalg

    A = _as_float64_matrix(G).numpy()
    if A.ndim != 2:
        raise ValueError(f"polar_scipy takes one matrix, got shape {A.shape}")
    if A.shape[0] >= A.shape[1]:
        return scipy.linalg.polar(A, side="right")[0]
    return scipy.linalg.polar(A.T, side="right")[0].T


def _square_core(G: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, bool]:
    """Reduce tall/wide ``G`` to a square ``R`` with ``G = Q R`` (tall case); polar(G) = Q polar(R)."""
    m, n = G.shape
    if m == n:
        return G, None, False
    if m < n:
        R, Q, _ = _square_core(G.T)
        return R, Q, True
    Q, R = torch.linalg.qr(G)
    return R, Q, False


def polar_newton(
    G: torch.Tensor, *, scaling: str = "1inf", tol: float = 1e-14, max_iter: int = 100
) -> tuple[torch.Tensor, int]:
    """Scaled Newton iteration for the polar factor (Higham 1986), float64; returns (factor, iterations).

    ``X_{k+1} = (mu_k X_k + mu_k^{-1} X_k^{-T}) / 2`` on the square core ``R`` of ``G = Q R``, with
    ``mu = (||X^{-1}||_1 ||X^{-1}||_inf / (||X||_1 ||X||_inf))^{1/4}`` (``scaling="1inf"``),
    ``mu = (||X^{-1}||_F / ||X||_F)^{1/2}`` (``"fro"``) or ``mu = 1`` (``"none"``); scaling stops once
    ``||X_{k+1} - X_k||_F <= 1e-2 ||X_{k+1}||_F`` (Higham, *Functions of Matrices*, Alg. 8.20).
    """
    if scaling not in ("1inf", "fro", "none"):
        raise ValueError(f"scaling must be '1inf', 'fro' or 'none', got {scaling!r}")
    A = _as_float64_matrix(G)
    if A.ndim != 2:
        raise ValueError(f"polar_newton takes one matrix, got shape {tuple(A.shape)}")
    X, Q, transposed = _square_core(A)
    scale_on = scaling != "none"
    iterations = 0
    while iterations < max_iter:
        iterations += 1
        Xinv = torch.linalg.inv(X)
        mu = 1.0
        if scale_on:
            if scaling == "1inf":
                num = torch.linalg.matrix_norm(Xinv, 1) * torch.linalg.matrix_norm(Xinv, math.inf)
                den = torch.linalg.matrix_norm(X, 1) * torch.linalg.matrix_norm(X, math.inf)
                mu = float((num / den) ** 0.25)
            else:
                mu = float((torch.linalg.matrix_norm(Xinv) / torch.linalg.matrix_norm(X)) ** 0.5)
        Xn = 0.5 * (mu * X + Xinv.T / mu)
        delta = float(torch.linalg.matrix_norm(Xn - X) / torch.linalg.matrix_norm(Xn))
        X = Xn
        if delta <= 1e-2:
            scale_on = False
        if delta <= tol:
            break
    out = X if Q is None else Q @ X
    return (out.T if transposed else out), iterations


def polar_qdwh(G: torch.Tensor, *, tol: float = 1e-14, max_iter: int = 20) -> tuple[torch.Tensor, int]:
    """QDWH polar factor (Nakatsukasa, Bai & Gygi 2010), float64; returns (factor, iterations).

    ``X_0 = G / ||G||_2``, ``l_0 = sigma_min(X_0)`` (from ``svdvals``: a baseline, not a fast path);
    ``X_{k+1} = (b/c) X + (a - b/c) / sqrt(c) Q_1 Q_2^T`` with ``[sqrt(c) X; I] = [Q_1; Q_2] R`` and the
    dynamical weights ``a = h(l)``, ``b = (a - 1)^2 / 4``, ``c = a + b - 1``,
    ``l <- l (a + b l^2) / (1 + c l^2)``.
    """
    A = _as_float64_matrix(G)
    if A.ndim != 2:
        raise ValueError(f"polar_qdwh takes one matrix, got shape {tuple(A.shape)}")
    transposed = A.shape[0] < A.shape[1]
    if transposed:
        A = A.T
    s = torch.linalg.svdvals(A)
    X = A / s[0]
    ell = float(s[-1] / s[0])
    if ell <= 0:
        raise ValueError("polar_qdwh needs a full-rank matrix")
    n = X.shape[1]
    eye = torch.eye(n, dtype=torch.float64)
    iterations = 0
    while iterations < max_iter:
        iterations += 1
        l2 = ell * ell
        gamma = (4 * (1 - l2) / (l2 * l2)) ** (1 / 3)
        a = math.sqrt(1 + gamma) + 0.5 * math.sqrt(8 - 4 * gamma + 8 * (2 - l2) / (l2 * math.sqrt(1 + gamma)))
        b = (a - 1) ** 2 / 4
        c = a + b - 1
        Qf, _ = torch.linalg.qr(torch.cat([math.sqrt(c) * X, eye]))
        Q1, Q2 = Qf[: X.shape[0]], Qf[X.shape[0] :]
        Xn = (b / c) * X + (a - b / c) / math.sqrt(c) * (Q1 @ Q2.T)
        ell = min(1.0, ell * (a + b * l2) / (1 + c * l2))
        delta = float(torch.linalg.matrix_norm(Xn - X))
        X = Xn
        if delta <= tol ** (1 / 3) and abs(1 - ell) <= 10 * tol:
            break
    return (X.T if transposed else X), iterations


@dataclass(frozen=True)
class DtypeFloor:
    """Orthogonality reached by a converged cubic Newton–Schulz loop run in ``dtype``.

    ``orth_err_2 = ||X X^T - I||_2`` and ``polar_err_2 = ||X - U V^T||_2`` (float64 measurement of the
    last iterates, maximum over the last ``tail`` steps and over ``seeds``); ``unit_roundoff`` is
    ``u = eps / 2`` of the dtype, for comparison (the floor is a small multiple of ``u sqrt(n)``).
    ``dtype`` is the canonical name (``"bfloat16"``, as records store it; ``nsiter.dtypes.dtype_name``).
    """

    dtype: str
    n: int
    orth_err_2: float
    polar_err_2: float
    unit_roundoff: float

    def to_dict(self) -> dict[str, float | int | str]:
        return {
            "dtype": self.dtype,
            "n": self.n,
            "orth_err_2": self.orth_err_2,
            "polar_err_2": self.polar_err_2,
            "unit_roundoff": self.unit_roundoff,
        }


def dtype_floor(
    dtype: torch.dtype | str,
    n: int = 64,
    *,
    m: int | None = None,
    steps: int = 40,
    tail: int = 8,
    seeds: tuple[int, ...] = (0, 1),
    lo: float = 0.1,
) -> DtypeFloor:
    """Measure the orthogonality floor of ``dtype`` on ``m x n`` matrices (``m = n`` by default).

    Method: ``G`` with singular values evenly spaced in ``[lo, 1]`` (``nsiter.matrices.uniform``);
    ``X_0 = G`` rounded to ``dtype`` (``sigma_max = 1``); ``steps`` steps of the classical cubic
    ``X <- 3/2 X - 1/2 X X^T X`` (Kovarik 1970; Björck & Bowie 1971), every product in ``dtype``.
    In exact arithmetic ``||X X^T - I||`` falls below ``1e-30`` after 40 steps at ``lo = 0.1``, so
    what remains is rounding error: the floor.  Reported as the maximum over the last ``tail``
    iterates and over ``seeds``.
    """
    from nsiter.matrices import uniform

    name, dtype = dtype_name(dtype), torch_dtype(dtype)
    rows = n if m is None else m
    if not 1 <= tail <= steps:
        raise ValueError(f"need 1 <= tail <= steps, got tail={tail}, steps={steps}")
    orth = polar = 0.0
    for seed in seeds:
        G = uniform(rows, n, lo, seed)
        W = G if rows <= n else G.T
        P = polar_factor(W)
        X = W.to(dtype)
        eye = torch.eye(W.shape[0], dtype=torch.float64)
        for k in range(steps):
            X = 1.5 * X - 0.5 * ((X @ X.T) @ X)
            if k >= steps - tail:
                Xd = X.to(torch.float64)
                orth = max(orth, float(torch.linalg.matrix_norm(Xd @ Xd.T - eye, 2)))
                polar = max(polar, float(torch.linalg.matrix_norm(Xd - P, 2)))
    return DtypeFloor(name, n, orth, polar, unit_roundoff(dtype))


def dtype_floors(n: int = 64, **kw) -> dict[str, DtypeFloor]:
    """``dtype_floor`` for float64, float32, bfloat16 and float16, keyed by the canonical name."""
    return {dtype_name(d): dtype_floor(d, n, **kw) for d in DTYPE_NAMES}
