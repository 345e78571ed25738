"""Seeded test matrices with prescribed singular values.

Every generator builds ``G = U diag(sigma) V^T`` in float64 on the CPU from a ``torch.Generator``
seeded explicitly, so the same arguments give the same bytes on every run; ``U`` and ``V`` are Haar
(uniformly) distributed orthonormal factors from the QR factorization of a Gaussian matrix with the
sign correction of Mezzadri, "How to generate random matrices from the classical compact groups",
Notices AMS 54 (2007).  ``dtype`` and ``device`` convert the result at the end.

Spectra are deterministic grids where possible (``log_uniform`` and ``uniform`` place the singular
values at the quantiles of their distribution, endpoints included), so that the smallest singular
value is exactly the ``lo`` that a certified scalar analysis on ``[lo, 1]`` speaks about.

``spectrum_spec("logunif:1e-3")`` parses the command-line form used by ``nsiter run``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from nsiter.checks import check_interval, check_real, check_seed, short_repr
from nsiter.spectra import SpectraSource, measured_spectrum

__all__ = [
    "SpectrumSpec",
    "clustered",
    "gradient_like",
    "haar_orthonormal",
    "hilbert",
    "log_uniform",
    "measured_matrix",
    "rank_deficient",
    "spectrum_spec",
    "uniform",
    "with_spectrum",
]


MAX_ENTRIES = 2**28  # entries of all the matrices of one call (2 GiB in float64): checked before the work


def _check_shape(m: int, n: int, batch: int | None = None) -> None:
    """Positive integer sides (and ``batch``), at most :data:`MAX_ENTRIES` entries in all: a generator
    builds its matrices one by one (and factors each), so the count bounds both memory and time."""
    for name, v in (("m", m), ("n", n), ("batch", 1 if batch is None else batch)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {short_repr(v)}")
    entries = int(m) * int(n) * (1 if batch is None else int(batch))
    if entries > MAX_ENTRIES:
        what = f"{m}x{n}" if batch is None else f"{batch}x{m}x{n}"
        raise ValueError(f"{what} has {entries} entries, above the limit MAX_ENTRIES = 2**28 = {MAX_ENTRIES}")


def _check_seed(seed: int) -> int:
    return check_seed(seed)  # one rule everywhere: 0 <= seed < 2**63 (nsiter.checks)


def haar_orthonormal(n: int, k: int, gen: torch.Generator) -> torch.Tensor:
    """An ``n x k`` matrix (k <= n) with Haar-distributed orthonormal columns (QR with Mezzadri's sign fix)."""
    Z = torch.randn(n, k, generator=gen, dtype=torch.float64)
    Q, R = torch.linalg.qr(Z)
    d = torch.sign(torch.diagonal(R))
    d = torch.where(d == 0, torch.ones_like(d), d)
    return Q * d


def with_spectrum(
    m: int,
    n: int,
    sigma: Sequence[float] | torch.Tensor,
    seed: int = 0,
    *,
    batch: int | None = None,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """``G = U diag(sigma) V^T`` of shape ``(m, n)`` (or ``(batch, m, n)``) with random orthonormal U, V.

    ``sigma`` has ``min(m, n)`` non-negative finite entries (any order; they are the singular values).
    With ``batch``, each matrix has its own factors and the same ``sigma``.
    """
    _check_shape(m, n, batch)
    seed = _check_seed(seed)
    s = torch.as_tensor(sigma, dtype=torch.float64).flatten()
    k = min(m, n)
    if s.numel() != k:
        raise ValueError(f"sigma must have min(m, n) = {k} entries, got {s.numel()}")
    if not bool(torch.isfinite(s).all()) or bool((s < 0).any()):
        raise ValueError("sigma must be finite and non-negative")
    gen = torch.Generator().manual_seed(seed)
    count = 1 if batch is None else batch
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"batch must be a positive integer, got {batch!r}")
    mats = []
    for _ in range(count):
        U = haar_orthonormal(m, k, gen)
        V = haar_orthonormal(n, k, gen)
        mats.append((U * s) @ V.T)
    G = mats[0] if batch is None else torch.stack(mats)
    return G.to(device=device, dtype=dtype)


def log_uniform(m: int, n: int, lo: float = 1e-3, seed: int = 0, *, hi: float = 1.0, **kw) -> torch.Tensor:
    """Singular values log-spaced from ``hi`` down to ``lo`` (quantiles of the log-uniform law on [lo, hi])."""
    _check_shape(m, n)
    check_interval(lo, hi)
    k = min(m, n)
    sigma = torch.logspace(math.log10(hi), math.log10(lo), k, dtype=torch.float64)
    return with_spectrum(m, n, sigma, seed, **kw)


def uniform(m: int, n: int, lo: float = 1e-3, seed: int = 0, *, hi: float = 1.0, **kw) -> torch.Tensor:
    """Singular values evenly spaced from ``hi`` down to ``lo``."""
    _check_shape(m, n)
    check_interval(lo, hi)
    sigma = torch.linspace(hi, lo, min(m, n), dtype=torch.float64)
    return with_spectrum(m, n, sigma, seed, **kw)


def clustered(
    m: int,
    n: int,
    centers: Sequence[float] = (1e-3, 1.0),
    seed: int = 0,
    *,
    spread: float = 0.01,
    **kw,
) -> torch.Tensor:
    """Singular values split evenly among ``centers``, each ``c (1 + spread u)`` with ``u ~ U[-1, 1]``."""
    _check_shape(m, n)
    centers = [float(c) for c in centers]
    if not centers or any(not math.isfinite(c) or c <= 0 for c in centers):
        raise ValueError(f"cluster centers must be positive and finite, got {centers!r}")
    if not (math.isfinite(spread) and 0 <= spread < 1):
        raise ValueError(f"spread must be in [0, 1), got {spread!r}")
    k = min(m, n)
    gen = torch.Generator().manual_seed(_check_seed(seed) + 1_000_003)
    idx = torch.arange(k) * len(centers) // k
    c = torch.tensor(centers, dtype=torch.float64)[idx]
    u = 2 * torch.rand(k, generator=gen, dtype=torch.float64) - 1
    return with_spectrum(m, n, c * (1 + spread * u), seed, **kw)


def rank_deficient(m: int, n: int, rank: int, seed: int = 0, *, lo: float = 1e-2, **kw) -> torch.Tensor:
    """``rank`` singular values log-spaced in ``[lo, 1]``, the other ``min(m, n) - rank`` exactly zero."""
    _check_shape(m, n)
    k = min(m, n)
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank <= k:
        raise ValueError(f"rank must be an integer in [0, {k}], got {rank!r}")
    check_interval(lo, 1.0)
    sigma = torch.zeros(k, dtype=torch.float64)
    if rank:
        sigma[:rank] = torch.logspace(0.0, math.log10(lo), rank, dtype=torch.float64)
    return with_spectrum(m, n, sigma, seed, **kw)


def gradient_like(
    m: int,
    n: int,
    seed: int = 0,
    *,
    rank: int | None = None,
    decay: float = 1.0,
    noise: float = 0.05,
    batch: int | None = None,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Heavy-tailed low rank plus noise, a stand-in for a stochastic gradient: ``L + noise N / sqrt(max(m, n))``.

    ``L`` has ``rank`` (default ``max(1, min(m, n) // 8)``) singular values ``i^(-decay)``, i = 1..rank
    (a power law, as observed for gradients of large layers); ``N`` is i.i.d. standard Gaussian, whose
    spectrum is Marchenko–Pastur with edge about ``1 + sqrt(min/max)`` after the scaling.  The result
    is divided by its largest singular value so ``||G||_2 = 1``.
    """
    _check_shape(m, n, batch)
    seed = _check_seed(seed)
    k = min(m, n)
    r = max(1, k // 8) if rank is None else rank
    if isinstance(r, bool) or not isinstance(r, int) or not 1 <= r <= k:
        raise ValueError(f"rank must be an integer in [1, {k}], got {rank!r}")
    decay = check_real(decay, "decay", low=0.0)
    noise = check_real(noise, "noise", low=0.0)
    gen = torch.Generator().manual_seed(seed)
    count = 1 if batch is None else batch
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"batch must be a positive integer, got {batch!r}")
    s = torch.arange(1, r + 1, dtype=torch.float64) ** (-decay)
    mats = []
    for _ in range(count):
        U = haar_orthonormal(m, r, gen)
        V = haar_orthonormal(n, r, gen)
        G = (U * s) @ V.T + noise / math.sqrt(max(m, n)) * torch.randn(
            m, n, generator=gen, dtype=torch.float64
        )
        mats.append(G / torch.linalg.matrix_norm(G, ord=2))
    out = mats[0] if batch is None else torch.stack(mats)
    return out.to(device=device, dtype=dtype)


def hilbert(
    n: int, *, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None
) -> torch.Tensor:
    """The Hilbert matrix ``H_ij = 1 / (i + j + 1)`` (0-based), condition number ~ e^(3.5 n).

    Hilbert, "Ein Beitrag zur Theorie des Legendre'schen Polynoms", Acta Math. 18 (1894); a classic
    ill-conditioned test matrix (Higham, *Accuracy and Stability of Numerical Algorithms*, sec. 28.1).
    """
    _check_shape(n, n)
    i = torch.arange(n, dtype=torch.float64)
    return (1.0 / (i[:, None] + i[None, :] + 1)).to(device=device, dtype=dtype)


@dataclass(frozen=True)
class SpectrumSpec:
    """A parsed ``--spectrum`` argument; ``generate(m, n, seed, batch=...)`` builds the matrix."""

    text: str
    kind: str
    make: Callable[..., torch.Tensor]

    def generate(self, m: int, n: int, seed: int = 0, *, batch: int | None = None) -> torch.Tensor:
        """A float64 CPU tensor of shape ``(m, n)`` or ``(batch, m, n)``."""
        return self.make(m, n, seed, batch)


def _float(text: str, spec: str) -> float:
    try:
        v = float(text)
    except ValueError as err:
        raise ValueError(f"bad number {text!r} in spectrum {spec!r}") from err
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"spectrum {spec!r}: expected a positive finite number, got {text!r}")
    return v


def _hilbert_batch(m: int, n: int, seed: int, batch: int | None) -> torch.Tensor:
    _check_seed(seed)  # the Hilbert matrix takes no randomness, but a bad seed is still refused
    _check_shape(m, n, batch)
    if m != n:
        raise ValueError(f"the Hilbert matrix is square: got shape {m}x{n}")
    H = hilbert(n)
    return H if batch is None else H.expand(batch, n, n).clone()


def spectrum_spec(text: str) -> SpectrumSpec:
    """Parse a spectrum description.

    Forms: ``logunif:LO`` (log-spaced in [LO, 1]), ``unif:LO`` (evenly spaced in [LO, 1]),
    ``cluster:C1,C2,...[:SPREAD]`` (clusters around the centers), ``rank:R[:LO]`` (rank R, rest zero),
    ``grad`` (heavy-tailed low rank plus noise), ``hilbert`` (square only), ``measured[:CSV]`` (a
    momentum spectrum recorded in training, default the shipped ``nsiter.spectra.DEFAULT_SPECTRA``).
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"empty spectrum spec: {text!r}")
    kind, _, rest = text.strip().partition(":")
    parts = rest.split(":") if rest else []

    def arity(lo: int, hi: int) -> None:
        if not lo <= len(parts) <= hi:
            raise ValueError(f"spectrum {text!r}: {kind} takes {lo}..{hi} ':'-separated arguments")

    if kind == "logunif":
        arity(1, 1)
        lo = _float(parts[0], text)
        check_interval(lo, 1.0)
        return SpectrumSpec(text, kind, lambda m, n, s, b: log_uniform(m, n, lo, s, batch=b))
    if kind == "unif":
        arity(1, 1)
        lo = _float(parts[0], text)
        check_interval(lo, 1.0)
        return SpectrumSpec(text, kind, lambda m, n, s, b: uniform(m, n, lo, s, batch=b))
    if kind == "cluster":
        arity(1, 2)
        centers = [_float(c, text) for c in parts[0].split(",") if c.strip()]
        if not centers:
            raise ValueError(f"spectrum {text!r}: cluster needs at least one center")
        try:
            spread = float(parts[1]) if len(parts) > 1 else 0.01
        except ValueError as err:
            raise ValueError(f"bad spread {parts[1]!r} in spectrum {text!r}") from err
        if not (math.isfinite(spread) and 0 <= spread < 1):
            raise ValueError(f"spectrum {text!r}: spread must be in [0, 1), got {parts[1]!r}")
        return SpectrumSpec(
            text, kind, lambda m, n, s, b: clustered(m, n, centers, s, spread=spread, batch=b)
        )
    if kind == "rank":
        arity(1, 2)
        try:
            r = int(parts[0])
        except ValueError as err:
            raise ValueError(f"spectrum {text!r}: rank must be an integer, got {parts[0]!r}") from err
        lo = _float(parts[1], text) if len(parts) > 1 else 1e-2
        return SpectrumSpec(text, kind, lambda m, n, s, b: rank_deficient(m, n, r, s, lo=lo, batch=b))
    if kind == "grad":
        arity(0, 0)
        return SpectrumSpec(text, kind, lambda m, n, s, b: gradient_like(m, n, s, batch=b))
    if kind == "hilbert":
        arity(0, 0)
        return SpectrumSpec(text, kind, _hilbert_batch)
    if kind == "measured":  # momentum spectra recorded in training (nsiter.spectra)
        arity(0, 1)
        source = parts[0] if parts else None
        measured_spectrum(source)  # read and check the file now, not at the first matrix

        def make(m: int, n: int, s: int, b: int | None) -> torch.Tensor:
            return measured_matrix(source, shape=(m, n), seed=s, batch=b, dtype=torch.float64)

        return SpectrumSpec(text, kind, make)
    raise ValueError(
        f"unknown spectrum kind {kind!r} in {text!r}: expected logunif:LO, unif:LO, cluster:C1,C2[:SPREAD], "
        "rank:R[:LO], grad, hilbert or measured[:CSV]"
    )


def measured_matrix(
    source: SpectraSource = None,
    *,
    shape: tuple[int, int] | None = None,
    seed: int = 0,
    batch: int | None = None,
    dtype: torch.dtype = torch.float32,
    **filters: Any,
) -> torch.Tensor:
    """A matrix with a recorded spectrum: ``U diag(x) V^T`` with seeded Haar factors (:func:`with_spectrum`).

    With ``shape=None`` the matrix has the recorded shape and exactly the recorded ``x`` (Frobenius norm 1, so
    the Frobenius normalization of a schedule sees ``x`` itself).  With another ``shape`` the spectrum is
    :meth:`MeasuredSpectrum.resampled` to ``min(shape)`` values (same smallest and largest value).
    """
    spec = measured_spectrum(source, **filters)  # nsiter.spectra
    m, n = spec.shape if shape is None else shape
    x = spec.x if shape is None else spec.resampled(min(m, n))
    return with_spectrum(m, n, torch.as_tensor(x.copy()), seed, batch=batch, dtype=dtype)
