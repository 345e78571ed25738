"""Periodic orbits of a repeated odd polynomial, found by iterating orbits and proved by interval arithmetic.

A fixed iteration ``x_{n+1} = p(x_n)`` (Muon's ``p(x) = 3.4445 x - 4.7750 x^3 + 2.0315 x^5``) need not
converge: almost every orbit of Muon's map ends on an attracting cycle of period 4.  Solving
``p^k(x) = x`` as a polynomial of degree ``deg(p)^k`` finds every cycle but costs seconds at ``k = 3``
and is hopeless beyond, so attracting cycles are found the way the iteration meets them:

1. **Search** (floating point, an estimate): iterate many starts in ``[lo, hi]`` past a transient, then
   read each orbit's period as the first ``k`` with ``|x_k - x_0|`` below a tolerance.
2. **Refine**: Newton's method on ``F(x) = p^k(x) - x`` at 80 digits (``mpmath``), with
   ``F'(x) = prod_i p'(x_i) - 1`` along the orbit ``x_i = p^i(x)``.
3. **Prove** (interval arithmetic, ``mpmath.iv``): Krawczyk's test on a small interval ``X`` around the
   refined point ``c``.  With ``Y = 1 / F'(c)``, the Krawczyk operator
   ``K(X) = c - Y F(c) + (1 - Y F'(X)) (X - c)`` contains every zero of ``F`` in ``X``, and
   ``K(X) ⊂ int X`` proves that ``F`` has exactly one zero in ``X`` (Krawczyk, "Newton-Algorithmen zur
   Bestimmung von Nullstellen mit Fehlerschranken", Computing 4, 1969; Moore, Kearfott & Cloud,
   *Introduction to Interval Analysis*, SIAM 2009, §8.2).  The orbit of the enclosure gives enclosures of
   all ``k`` points; pairwise disjoint ones prove the period is exactly ``k``; the product of ``p'`` over
   them encloses the multiplier ``(p^k)'(x*) = prod_i p'(x_i)``, and ``|multiplier| < 1`` over the whole
   enclosure proves the cycle attracting.

The polynomial evaluated is the one the iteration runs: its float coefficients, which are exact binary
rationals.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import mpmath
import numpy as np
from mpmath import iv

from nsiter.polynomial import OddPolynomial

__all__ = [
    "DIVERGENCE_THRESHOLD",
    "MAX_CYCLE_PERIOD",
    "Cycle",
    "endpoints",
    "find_cycles",
    "interval_precision",
    "odd_horner",
    "odd_horner_derivative",
    "prove_cycle",
    "round_down",
    "round_up",
]

# The one divergence rule of nsiter: a value (a singular value, a band endpoint) whose modulus passes this has
# left every band a Newton-Schulz map works on, and the orbit escapes.  Used by the certified analysis, the
# orbit search and every measured run (nsiter.measure.diverged).
DIVERGENCE_THRESHOLD = 1e3
MAX_CYCLE_PERIOD = 1000  # longest period the orbit search reads off (and prove_cycle accepts)
_PREC = 300  # bits of the interval arithmetic (about 90 digits)
_DPS = 80  # digits of the Newton refinement
_RADIUS = mpmath.mpf(10) ** -40  # relative radius of the Krawczyk interval
SUPERATTRACTING = 1e-12  # |multiplier| below this (over the whole enclosure) is reported "superattracting"


@contextmanager
def interval_precision(bits: int) -> Iterator[None]:
    """Set ``mpmath.iv``'s working precision to ``bits`` for a block (``iv`` has no ``workprec``)."""
    old = iv.prec
    iv.prec = bits
    try:
        yield
    finally:
        iv.prec = old


def endpoints(x: Any) -> tuple[mpmath.mpf, mpmath.mpf]:
    """The exact endpoints of an ``mpmath.iv`` interval as ``mpf`` (no rounding)."""
    a, b = x._mpi_
    return mpmath.mp.make_mpf(a), mpmath.mp.make_mpf(b)


def odd_horner(coeffs: Sequence[Any], x: Any) -> Any:
    """``p(x) = x (c_0 + x^2 (c_1 + ...))`` for any number type (mpf, iv.mpf)."""
    x2 = x * x
    acc = coeffs[-1]
    for c in reversed(coeffs[:-1]):
        acc = acc * x2 + c
    return acc * x


def odd_horner_derivative(coeffs: Sequence[Any], x: Any) -> Any:
    """``p'(x) = sum_k (2k+1) c_k x^(2k)``."""
    x2 = x * x
    n = len(coeffs)
    acc = (2 * n - 1) * coeffs[-1]
    for k in range(n - 2, -1, -1):
        acc = acc * x2 + (2 * k + 1) * coeffs[k]
    return acc


@dataclass(frozen=True)
class Cycle:
    """A periodic orbit ``x_0 -> x_1 -> ... -> x_{k-1} -> x_0`` of ``p`` (period 1: a fixed point).

    Attributes:
        period: ``k``, the exact period when ``proof`` is set (the enclosures are pairwise disjoint).
        points: the orbit in iteration order, starting from its smallest point (nearest doubles).
        multiplier: ``(p^k)'(x_0) = prod_i p'(x_i)`` (nearest double).
        multiplier_enclosure: ``(lo, hi)`` containing the exact multiplier, rounded outward; ``(nan, nan)``
            when the proof failed.
        stability: ``"superattracting"`` (enclosure inside ``+-1e-12``), ``"attracting"`` (inside
            ``(-1, 1)``), ``"repelling"`` (outside ``[-1, 1]``) or ``"neutral"`` (undecided: the enclosure
            meets ``+-1``); without a proof it is read off the float multiplier.
        proof: ``"krawczyk"`` when a unique cycle point is proved in ``points[0] +- radius``, else ``""``.
        radius: every exact cycle point lies within ``radius`` of its double (``nan`` without a proof).
        seconds: time spent refining and proving this cycle.
        share: fraction of the search's starting points that ended on this cycle (``nan`` when the cycle
            came from elsewhere); an estimate of its basin, not a proof.
    """

    period: int
    points: tuple[float, ...]
    multiplier: float
    multiplier_enclosure: tuple[float, float]
    stability: str
    proof: str
    radius: float
    seconds: float
    share: float = math.nan

    @property
    def band(self) -> tuple[float, float]:
        """``(min, max)`` over the cycle's points."""
        return min(self.points), max(self.points)

    @property
    def proved(self) -> bool:
        return bool(self.proof)

    @property
    def attracting(self) -> bool:
        return self.stability in ("attracting", "superattracting")

    def to_dict(self) -> dict[str, Any]:
        return {
            "period": self.period,
            "points": list(self.points),
            "band": list(self.band),
            "multiplier": self.multiplier,
            "multiplier_enclosure": list(self.multiplier_enclosure),
            "stability": self.stability,
            "proof": self.proof,
            "radius": self.radius,
            "seconds": self.seconds,
            "share": self.share,
        }


def _check_period(period: Any) -> int:
    if isinstance(period, bool) or not isinstance(period, int) or not 1 <= period <= MAX_CYCLE_PERIOD:
        raise ValueError(f"period must be an integer in 1..{MAX_CYCLE_PERIOD}, got {period!r}")
    return period


def _float_stability(m: float) -> str:
    if abs(m) < SUPERATTRACTING:
        return "superattracting"
    if abs(m) < 1:
        return "attracting"
    if abs(m) > 1:
        return "repelling"
    return "neutral"


def _interval_stability(lo: float, hi: float) -> str:
    if lo > -SUPERATTRACTING and hi < SUPERATTRACTING:
        return "superattracting"
    if lo > -1 and hi < 1:
        return "attracting"
    if lo > 1 or hi < -1:
        return "repelling"
    return "neutral"


def _newton(coeffs: list[mpmath.mpf], x: mpmath.mpf, period: int) -> mpmath.mpf:
    """Refine a cycle point: Newton on ``p^k(x) - x`` (``_DPS`` digits, at most 60 steps)."""
    tol = mpmath.mpf(10) ** (-_DPS + 10)
    for _ in range(60):
        y, d = x, mpmath.mpf(1)
        for _ in range(period):
            d *= odd_horner_derivative(coeffs, y)
            y = odd_horner(coeffs, y)
        if d == 1:
            break
        step = (y - x) / (d - 1)
        x -= step
        if abs(step) <= tol * max(1, abs(x)):
            break
    return x


def prove_cycle(p: OddPolynomial, x: float, period: int) -> Cycle:
    """Refine ``x`` to a cycle of ``p`` of period ``period`` and prove it with Krawczyk's test.

    Args:
        p: the polynomial iterated.
        x: an approximate point of the cycle (from orbit iteration or root finding).
        period: ``k``, the period (``1`` for a fixed point), at most ``MAX_CYCLE_PERIOD``.

    Returns:
        A ``Cycle``; ``proof == "krawczyk"`` when ``K(X) ⊂ int X`` held for ``X = c +- 1e-40 |c|`` (a unique
        zero of ``p^k(x) - x`` in ``X``) and the ``k`` orbit enclosures are pairwise disjoint (exact period
        ``k``); the multiplier enclosure and stability then hold for the exact cycle.  Otherwise
        ``proof == ""`` and the numbers are floating-point estimates.
    """
    period = _check_period(period)
    x = float(x)
    if not math.isfinite(x):
        raise ValueError(f"cycle point must be finite, got {x!r}")
    t0 = time.perf_counter()
    with mpmath.workdps(_DPS):
        mcoeffs = [mpmath.mpf(c) for c in p.coefficients]
        c = _newton(mcoeffs, mpmath.mpf(x), period)
        orbit, mult = [c], mpmath.mpf(1)
        for _ in range(period):
            mult *= odd_horner_derivative(mcoeffs, orbit[-1])
            orbit.append(odd_horner(mcoeffs, orbit[-1]))
        orbit.pop()
    proof, radius, encl = "", math.nan, (math.nan, math.nan)
    with interval_precision(_PREC):
        icoeffs = [iv.mpf(c) for c in p.coefficients]
        r = _RADIUS * max(1, abs(c))
        big_x = iv.mpf(c) + iv.mpf([-r, r])
        ic = iv.mpf(c)
        fc = ic
        for _ in range(period):
            fc = odd_horner(icoeffs, fc)
        fc -= ic
        dfx, z = iv.mpf(1), big_x
        for _ in range(period):
            dfx *= odd_horner_derivative(icoeffs, z)
            z = odd_horner(icoeffs, z)
        dfx -= 1
        dfc = mult - 1
        if dfc != 0:
            y = iv.mpf(1 / dfc)  # any real works in Krawczyk's operator; 1 / F'(c) makes it contract
            k = ic - y * fc + (1 - y * dfx) * (big_x - ic)
            if endpoints(big_x)[0] < endpoints(k)[0] and endpoints(k)[1] < endpoints(big_x)[1]:
                # orbit of the enclosure K(X) of the cycle point; disjoint enclosures <=> exact period
                z, encs, mult_iv = k, [], iv.mpf(1)
                for _ in range(period):
                    encs.append(z)
                    mult_iv *= odd_horner_derivative(icoeffs, z)
                    z = odd_horner(icoeffs, z)
                ends = sorted(endpoints(e) for e in encs)
                if all(ends[i][1] < ends[i + 1][0] for i in range(len(ends) - 1)):
                    proof = "krawczyk"
                    # distance from each double to the far end of its point's enclosure
                    far = [iv.mpf(float(v)) - e for e, v in zip(encs, orbit, strict=True)]
                    with mpmath.workprec(_PREC):  # exact negation of _PREC-bit endpoints
                        radius = round_up(max(max(-endpoints(d)[0], endpoints(d)[1]) for d in far))
                    m_lo, m_hi = endpoints(mult_iv)
                    encl = (round_down(m_lo), round_up(m_hi))
    stability = _interval_stability(*encl) if proof else _float_stability(float(mult))
    start = min(range(period), key=lambda i: orbit[i])
    points = tuple(float(v) for v in orbit[start:] + orbit[:start])
    return Cycle(period, points, float(mult), encl, stability, proof, radius, time.perf_counter() - t0)


def round_down(v: mpmath.mpf) -> float:
    """The largest double ``<= v`` (outward rounding of a lower endpoint)."""
    f = float(v)
    return math.nextafter(f, -math.inf) if f > v else f


def round_up(v: mpmath.mpf) -> float:
    """The smallest double ``>= v`` (outward rounding of an upper endpoint)."""
    f = float(v)
    return math.nextafter(f, math.inf) if f < v else f


def find_cycles(
    p: OddPolynomial,
    lo: float,
    hi: float,
    *,
    starts: int = 2000,
    transient: int = 2000,
    max_period: int = 256,
    tol: float = 1e-10,
) -> tuple[Cycle, ...]:
    """The attracting cycles that orbits from ``[lo, hi]`` end on, each refined and proved (``prove_cycle``).

    Args:
        p: the polynomial iterated.
        lo, hi: starting points are ``starts`` values, half log-spaced and half evenly spaced in
            ``[lo, hi]`` (``0 < lo < hi``).
        starts: number of starting points.
        transient: iterations before the period is read off.
        max_period: longest period looked for (at most ``MAX_CYCLE_PERIOD``).
        tol: an orbit has period ``k`` when ``|x_k - x_0| <= tol max(1, |x_0|)`` after the transient.

    Returns:
        The distinct cycles found, sorted by period then smallest point; ``share`` says which fraction of
        the starts reached each.  Orbits that leave every bound (``|x| > DIVERGENCE_THRESHOLD``) or have not settled into a
        period ``<= max_period`` are not reported: a chaotic band gives ``()``.  The search is an
        estimate (a cycle with a tiny basin or a multiplier near ``+-1`` can be missed); what it reports is
        proved.
    """
    for name, v in (("starts", starts), ("transient", transient)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    max_period = _check_period(max_period)
    if not (0 < lo < hi) or not math.isfinite(hi):
        raise ValueError(f"need 0 < lo < hi finite, got lo={lo!r}, hi={hi!r}")
    x = np.unique(
        np.concatenate([np.geomspace(lo, hi, starts - starts // 2), np.linspace(lo, hi, starts // 2)])
    )
    n_starts = len(x)
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(transient):
            x = p(x)
            x = x[np.isfinite(x) & (np.abs(x) <= DIVERGENCE_THRESHOLD)]
        orbit = [x]
        for _ in range(max_period):
            orbit.append(p(orbit[-1]))
        traj = np.array(orbit)  # (max_period + 1, n): the orbits after the transient
        traj = traj[:, np.all(np.isfinite(traj) & (np.abs(traj) <= DIVERGENCE_THRESHOLD), axis=0)]
    period = np.zeros(traj.shape[1], dtype=int)
    for k in range(1, max_period + 1):
        hit = (period == 0) & (np.abs(traj[k] - traj[0]) <= tol * np.maximum(1.0, np.abs(traj[0])))
        period[hit] = k
    groups: dict[tuple[int, float], list[float]] = {}
    for j in np.flatnonzero(period):
        k = int(period[j])
        smallest = float(traj[:k, j].min())
        groups.setdefault((k, round(smallest, 7)), []).append(smallest)
    found: list[Cycle] = []
    counts: list[int] = []
    for (k, _), members in sorted(groups.items()):
        cyc = prove_cycle(p, members[0], k)
        same = [
            i
            for i, c in enumerate(found)
            if c.period == k and abs(c.points[0] - cyc.points[0]) <= 1e-9 * max(1.0, abs(c.points[0]))
        ]
        if same:
            counts[same[0]] += len(members)
        else:
            found.append(cyc)
            counts.append(len(members))
    return tuple(replace(c, share=n / n_starts) for c, n in zip(found, counts, strict=True))
