"""What iterating one odd polynomial forever does: fixed points, cycles, the attracting band.

A fixed iteration ``x_{n+1} = p(x_n)`` (Muon's ``p(x) = 3.4445 x - 4.7750 x^3 + 2.0315 x^5``) need not
converge: ``p(1) = 0.701``, and almost every orbit of Muon's map ends on an attracting 4-cycle
``0.682 -> 1.134 -> 0.753 -> 1.047`` (multiplier ``-0.1428``) around a repelling 2-cycle, inside the band
Jordan aims for ("Muon: An optimizer for hidden layers", 2024, ``[0.7, 1.3]``; its low point 0.682 is just
below).  ``fixed_points``, ``periodic_points`` (every cycle of a small period, by root finding on
``p^k(x) = x``), ``cycles``, ``attractor`` and ``convergence_bound`` describe the long-run behaviour.

Solving ``p^k(x) = x`` as a polynomial of degree ``deg(p)^k`` finds every cycle but costs seconds at
``k = 3`` and is hopeless beyond, so attracting cycles are found the way the iteration meets them:

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

One stability rule (``stability``) serves fixed points and cycles alike: a fixed point is a cycle of
period 1.  The polynomial evaluated is the one the iteration runs: its float coefficients, which are exact
binary rationals.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from fractions import Fraction
from typing import Any

import mpmath
import numpy as np
from mpmath import iv

from nsiter._interval import (
    PREC,
    StepMap,
    endpoints,
    image_enclosure,
    interval_precision,
    odd_horner,
    odd_horner_derivative,
    positive_real_roots,
    round_down,
    round_up,
)
from nsiter.checks import DIVERGENCE_THRESHOLD, check_interval
from nsiter.polynomial import OddPolynomial
from nsiter.registry import load_schedule
from nsiter.schedule import Schedule

__all__ = [
    "BAND_STOP",
    "MAX_CYCLE_DEGREE",
    "MAX_CYCLE_PERIOD",
    "SUPERATTRACTING",
    "Attractor",
    "Cycle",
    "FixedPoint",
    "attractor",
    "convergence_bound",
    "cycles",
    "find_cycles",
    "fixed_points",
    "periodic_points",
    "prove_cycle",
    "repeated_attractor",
    "stability",
]

MAX_CYCLE_PERIOD = 1000  # longest period the orbit search reads off (and prove_cycle accepts)
MAX_CYCLE_DEGREE = 125  # largest degree of p^k whose roots periodic_points computes (Muon: period 3, ~4 s)
_DPS = 80  # digits of the Newton refinement
_RADIUS = mpmath.mpf(10) ** -40  # relative radius of the Krawczyk interval
SUPERATTRACTING = 1e-12  # |multiplier| below this (over the whole enclosure) is reported "superattracting"
BAND_STOP = 1e-14  # attractor: the bands stopped changing when both ends moved less than this (relative)
_SAME = 1e-9  # two orbits found numerically are one cycle when their smallest points agree to this (relative)


def stability(lo: float, hi: float | None = None) -> str:
    """The one stability verdict of a fixed point or cycle from its multiplier ``m = (p^k)'(x*)``.

    ``lo, hi`` enclose the multiplier (a float multiplier ``m`` is the point enclosure ``(m, m)``):
    ``"superattracting"`` when inside ``(-SUPERATTRACTING, SUPERATTRACTING)``, ``"attracting"`` inside
    ``(-1, 1)``, ``"repelling"`` outside ``[-1, 1]``, else ``"neutral"`` (the enclosure meets ``+-1``: undecided).

    Example:
        >>> stability(-0.1428), stability(-1.5), stability(0.0), stability(-0.2, 1.0)
        ('attracting', 'repelling', 'superattracting', 'neutral')
    """
    hi = lo if hi is None else hi
    if lo > -SUPERATTRACTING and hi < SUPERATTRACTING:
        return "superattracting"
    if lo > -1 and hi < 1:
        return "attracting"
    if lo > 1 or hi < -1:
        return "repelling"
    return "neutral"


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
    with interval_precision(PREC):
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
                    with mpmath.workprec(PREC):  # exact negation of _PREC-bit endpoints
                        radius = round_up(max(max(-endpoints(d)[0], endpoints(d)[1]) for d in far))
                    m_lo, m_hi = endpoints(mult_iv)
                    encl = (round_down(m_lo), round_up(m_hi))
    stability_ = stability(*encl) if proof else stability(float(mult))
    start = min(range(period), key=lambda i: orbit[i])
    points = tuple(float(v) for v in orbit[start:] + orbit[:start])
    return Cycle(period, points, float(mult), encl, stability_, proof, radius, time.perf_counter() - t0)


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
            ``[lo, hi]`` (``0 < lo <= hi``, ``nsiter.checks.check_interval``).
        starts: number of starting points.
        transient: iterations before the period is read off.
        max_period: longest period looked for (at most ``MAX_CYCLE_PERIOD``).
        tol: an orbit has period ``k`` when ``|x_k - x_0| <= tol max(1, |x_0|)`` after the transient.

    Returns:
        The distinct cycles found, sorted by period then smallest point; ``share`` says which fraction of
        the starts reached each.  Orbits that leave every bound (``|x| > DIVERGENCE_THRESHOLD``) or have not
        settled into a
        period ``<= max_period`` are not reported: a chaotic band gives ``()``.  The search is an
        estimate (a cycle with a tiny basin or a multiplier near ``+-1`` can be missed); what it reports is
        proved.
    """
    for name, v in (("starts", starts), ("transient", transient)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    max_period = _check_period(max_period)
    lo, hi = check_interval(lo, hi)
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
        same = [i for i, c in enumerate(found) if _same_cycle(c, cyc)]
        if same:
            counts[same[0]] += len(members)
        else:
            found.append(cyc)
            counts.append(len(members))
    return tuple(replace(c, share=n / n_starts) for c, n in zip(found, counts, strict=True))


@dataclass(frozen=True)
class FixedPoint:
    """A fixed point ``x* = p(x*) >= 0`` with multiplier ``p'(x*)`` (a double) and its ``stability``."""

    x: float
    multiplier: float
    stability: str  # "superattracting" | "attracting" | "neutral" | "repelling"


def fixed_points(p: OddPolynomial) -> list[FixedPoint]:
    """All non-negative fixed points of ``p``: ``0`` and the positive roots of ``p(x)/x = 1``."""
    coeffs = list(p.coefficients)
    coeffs[0] -= 1.0
    pts = [0.0] + [float(mpmath.sqrt(t)) for t in positive_real_roots(coeffs)]
    out = []
    for v in pts:
        m = float(p.derivative(v))
        out.append(FixedPoint(v, m, stability(m)))
    return out


def periodic_points(p: OddPolynomial, period: int = 2) -> list[tuple[tuple[float, ...], float, str]]:
    """All positive cycles of exact period ``period`` (2 or more), by the roots of ``p^k(x) = x``.

    This is exhaustive but costs a root finder on a polynomial of degree ``deg(p)^period``, so the degree
    is bounded by ``MAX_CYCLE_DEGREE`` (quintics: period <= 3); ``cycles`` proves what this finds and
    ``nsiter.dynamics.find_cycles`` finds attracting cycles of any period by iterating orbits.

    Returns ``[(orbit, multiplier, stability), ...]`` with ``orbit`` sorted increasing; the multiplier is
    ``prod p'(x_i)`` over the orbit (floating point).
    """
    if isinstance(period, bool) or not isinstance(period, int) or period < 2:
        raise ValueError(f"period must be an integer >= 2, got {period!r}")
    if p.degree**period > MAX_CYCLE_DEGREE:
        raise ValueError(
            f"period {period} needs the roots of a degree-{p.degree}^{period} polynomial, above "
            f"MAX_CYCLE_DEGREE = {MAX_CYCLE_DEGREE}; attracting cycles of any period: nsiter.dynamics.find_cycles"
        )
    q = p
    for _ in range(period - 1):
        q = p.compose(q)
    coeffs = list(q.coefficients)
    coeffs[0] -= 1.0
    fixed = [f.x for f in fixed_points(p)]
    seen: list[tuple[float, ...]] = []
    out = []
    for t in positive_real_roots(coeffs):
        x0 = float(mpmath.sqrt(t))
        if any(abs(x0 - f) < _SAME * max(1, f) for f in fixed):
            continue
        orbit = [x0]
        for _ in range(period - 1):
            orbit.append(float(p(orbit[-1])))
        key = tuple(sorted(orbit))
        if any(all(abs(a - b) < _SAME * max(1, abs(b)) for a, b in zip(key, s, strict=True)) for s in seen):
            continue
        seen.append(key)
        m = math.prod(float(p.derivative(v)) for v in orbit)
        out.append((key, m, stability(m)))
    return out


def cycles(
    p: OddPolynomial,
    lo: float = 1e-3,
    hi: float = 1.0,
    max_period: int = 2,
    band: tuple[float, float] | None = None,
) -> tuple[Cycle, ...]:
    """Proved periodic orbits of ``p`` that matter for starts in ``[lo, hi]``.

    Two sources, every cycle then proved by Krawczyk's test (``nsiter.dynamics.prove_cycle``):

    - the attracting cycles of any period (up to 256) that orbits from ``[lo, hi]`` end on
      (``nsiter.dynamics.find_cycles``; period 1 is an attracting fixed point);
    - all cycles of period ``2..max_period`` (repelling ones too) inside ``band`` (default: the attracting
      band of ``[lo, hi]``, see ``attractor``), from the roots of ``p^k(x) = x`` (``periodic_points``).

    Sorted by period, then smallest point.
    """
    lo, hi = check_interval(lo, hi)
    if isinstance(max_period, bool) or not isinstance(max_period, int) or max_period < 1:
        raise ValueError(f"max_period must be a positive integer, got {max_period!r}")
    found = list(find_cycles(p, lo, hi))
    for period in range(2, max_period + 1):
        for orbit, _, _ in periodic_points(p, period):
            if band is not None and not (band[0] - _SAME <= orbit[0] and orbit[-1] <= band[1] + _SAME):
                continue
            cyc = prove_cycle(p, orbit[0], period)
            if not any(_same_cycle(c, cyc) for c in found):
                found.append(cyc)
    return tuple(sorted(found, key=lambda c: (c.period, c.points[0])))


def _same_cycle(a: Cycle, b: Cycle) -> bool:
    """One cycle found twice: same period, smallest points within ``_SAME`` (relative)."""
    return a.period == b.period and abs(a.points[0] - b.points[0]) <= _SAME * max(1.0, abs(a.points[0]))


@dataclass(frozen=True)
class Attractor:
    """Long-run behaviour of iterating one polynomial from an interval.

    Attributes:
        kind: ``"converges"`` (the band shrinks to one attracting fixed point), ``"cycle"`` (an attracting
            periodic orbit of period >= 2 is proved) or ``"band"`` (an invariant band on which no orbit from
            the starts settled into a period <= 256: chaotic or very slow).
        band: the certified image ``p^n([lo, hi])`` after ``n = iterations`` steps (interval arithmetic,
            rounded outward): every orbit from ``[lo, hi]`` is inside it at step ``n``.  ``n`` is where the
            bands stopped changing by more than ``BAND_STOP`` (relative), a stopping rule, so the band is an
            estimate of the limit ``J = p(J)``; ``invariant`` says whether it is also proved to trap.
        iterations: how many image steps were taken.
        invariant: ``p(band) ⊆ band`` is proved (interval arithmetic): every later iterate stays inside too.
        fixed_points: all non-negative fixed points with stability.
        cycles: proved cycles (``cycles``): the attracting ones reached from ``[lo, hi]`` (any period; period 1
            is an attracting fixed point) and all of period 2..``max_period`` inside the band.
        error: ``max |1 - y|`` over the band (an estimate of the error the iteration cannot go below).
        converged: the stopping rule was met within ``max_iter`` steps.
        seconds: wall time of the whole analysis.
    """

    kind: str
    band: tuple[float, float]
    iterations: int
    fixed_points: tuple[FixedPoint, ...]
    cycles: tuple[Cycle, ...] = field(default_factory=tuple)
    error: float = math.nan
    converged: bool = True
    seconds: float = math.nan
    invariant: bool = False

    def __repr__(self) -> str:
        """One line: kind, band, error, proved cycles by period (the fields hold the rest)."""
        periods = ", ".join(f"{c.period} ({c.stability})" for c in self.cycles) or "none"
        return (
            f"Attractor({self.kind}, band [{self.band[0]:.6g}, {self.band[1]:.6g}]"
            f"{' invariant' if self.invariant else ''}, error {self.error:.4g}, {self.iterations} steps, "
            f"cycles of period {periods})"
        )

    @property
    def attracting_cycles(self) -> tuple[Cycle, ...]:
        return tuple(c for c in self.cycles if c.attracting)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "band": list(self.band),
            "iterations": self.iterations,
            "error": self.error,
            "converged": self.converged,
            "invariant": self.invariant,
            "seconds": self.seconds,
            "fixed_points": [asdict(f) for f in self.fixed_points],
            "cycles": [c.to_dict() for c in self.cycles],
        }


def attractor(
    p: OddPolynomial, lo: float = 1e-3, hi: float = 1.0, max_iter: int = 500, max_period: int = 2
) -> Attractor:
    """Iterate the certified image band of ``[lo, hi]`` under ``p`` until it stops changing, and classify it.

    The band sequence ``J_{k+1} = p(J_k)`` is enclosed by interval arithmetic (``nsiter.analysis.image_interval``,
    rounded outward) until two bands agree to ``BAND_STOP`` (relative): the last one estimates the limit
    ``J = p(J)``, the attracting band, and one more enclosure checks ``p(J) ⊆ J`` (``invariant``).  Inside
    it, ``cycles`` lists the proved attracting cycles of any
    period reached from ``[lo, hi]`` and every cycle of period ``2..max_period`` (root finding on a degree
    ``deg(p)^period`` polynomial, bounded by ``MAX_CYCLE_DEGREE``).  A band that shrinks to a point is an
    attracting fixed point.  Muon's map has an attracting 4-cycle around a repelling 2-cycle.
    """
    t0 = time.perf_counter()
    lo, hi = check_interval(lo, hi)
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"max_iter must be a positive integer, got {max_iter!r}")
    if isinstance(max_period, bool) or not isinstance(max_period, int) or max_period < 1:
        raise ValueError(f"max_period must be a positive integer, got {max_period!r}")
    if max_period >= 2 and p.degree**max_period > MAX_CYCLE_DEGREE:
        raise ValueError(
            f"max_period = {max_period} needs roots of degree {p.degree}^{max_period} > MAX_CYCLE_DEGREE = "
            f"{MAX_CYCLE_DEGREE} (attracting cycles of any period are found without it)"
        )
    m = StepMap(p)
    cur = (lo, hi)
    it, converged = 0, False
    for it in range(1, max_iter + 1):
        new = image_enclosure(m, *cur)
        if new[0] <= 0 or new[1] > DIVERGENCE_THRESHOLD:
            raise ValueError(
                f"iterating p from [{lo}, {hi}] leaves (0, {DIVERGENCE_THRESHOLD:g}): band {new} after {it} steps"
            )
        done = all(abs(a - b) <= BAND_STOP * max(1.0, abs(b)) for a, b in zip(new, cur, strict=True))
        cur = new
        if done:
            converged = True
            break
    fps = tuple(fixed_points(p))
    found = cycles(p, lo, hi, max_period, band=cur)
    width = cur[1] - cur[0]
    if width <= 1e-12 * max(1.0, cur[1]):
        kind = "converges"
    elif any(c.attracting and c.proved and c.period >= 2 for c in found):
        kind = "cycle"
    else:
        kind = "band"
    err = max(abs(1 - cur[0]), abs(1 - cur[1]))
    image = image_enclosure(m, *cur)
    invariant = cur[0] <= image[0] and image[1] <= cur[1]
    return Attractor(kind, cur, it, fps, found, err, converged, time.perf_counter() - t0, invariant)


def repeated_attractor(
    schedule: Schedule | OddPolynomial | str | Sequence[Any], lo: float = 1e-3, hi: float = 1.0, **kw: Any
) -> Attractor:
    """What iterating a schedule's last polynomial forever does: ``attractor`` of ``schedule[-1]``.

    For a fixed iteration (``"muon"``, ``"cubic"``, ``"quintic"``) this is the iteration itself; for a
    tuned schedule it answers "what if the last step is repeated beyond the schedule".  The starts are
    ``[lo, hi]`` (default ``[1e-3, 1]``); ``kw`` goes to ``attractor``.
    """
    p = schedule if isinstance(schedule, OddPolynomial) else load_schedule(schedule)[-1]
    return attractor(p, lo, hi, **kw)


def convergence_bound(p: OddPolynomial) -> tuple[float, bool]:
    """The largest ``b`` such that iterating ``p`` converges to 1 from every start in ``(0, b)``.

    Requires ``p(1) = 1`` with ``|p'(1)| < 1`` and ``p'(0) > 1``.  ``b`` is the smaller of the first zero
    of ``p`` past 1 (it maps to the fixed point 0) and the first fixed point past 1; neither converges to 1,
    so no larger ``b`` can work (``b`` is located at 50 digits and rounded to the nearest double).

    Returns ``(b, certified)``; ``certified`` means the following proof was checked exactly, by Sturm's
    theorem over the rationals (the float coefficients are exact binary rationals; ``sympy``'s
    ``Poly.count_roots``), for every start in ``(0, b-]`` with ``b-`` the double below ``b``: ``p(1) = 1``
    and ``-1 < p'(1) < 1`` exactly; ``p(x) - x`` and ``1 - p(x)`` have no root in ``(0, 1)``; ``p(x) - x``
    and ``p(x)`` have none in ``(1, b-]``.  Then orbits in ``(0, 1)`` increase to 1 (``x < p(x) <= 1``), and
    orbits in ``(1, b-]`` have ``0 < p(x) < x``, so they decrease to 1 or drop into ``(0, 1]``.

    Example:
        >>> from nsiter import OddPolynomial
        >>> convergence_bound(OddPolynomial([1.5, -0.5]))  # the cubic converges on (0, sqrt(3))
        (1.7320508075688772, True)
    """
    one = float(p(1.0))
    if abs(one - 1) > 1e-12:
        raise ValueError(f"1 is not a fixed point of p: p(1) = {one!r}")
    if abs(p.derivative(1.0)) >= 1:
        raise ValueError(f"the fixed point 1 is not attracting: p'(1) = {float(p.derivative(1.0))!r}")
    if p.slope_at_zero <= 1:
        raise ValueError(f"0 must be repelling for convergence from near 0: p'(0) = {p.slope_at_zero!r}")
    fps = [f.x for f in fixed_points(p) if f.x > 0 and abs(f.x - 1) > 1e-9]
    zeros = [float(mpmath.sqrt(t)) for t in positive_real_roots(p.coefficients)]
    past = [v for v in zeros + fps if v > 1 + 1e-9]
    b = min(past) if past else math.inf
    return b, _proves_convergence(p, b)


def _proves_convergence(p: OddPolynomial, b: float) -> bool:
    """The proof of ``convergence_bound``, checked exactly by counting real roots (Sturm sequences over Q)."""
    import sympy as sp  # exact real-root counting; loaded only here

    fr = [Fraction(c) for c in p.coefficients]
    slope_at_one = sum((2 * k + 1) * c for k, c in enumerate(fr))
    if sum(fr) != 1 or not -1 < slope_at_one < 1:
        return False
    x = sp.Symbol("x")
    poly = sp.Poly(
        sum(sp.Rational(c.numerator, c.denominator) * x ** (2 * k + 1) for k, c in enumerate(fr)),
        x,
        domain="QQ",
    )
    gap = sp.Poly(
        sum(sp.Rational(c.numerator, c.denominator) * x ** (2 * k) for k, c in enumerate(fr)) - 1, x
    )
    below = sp.Rational(math.nextafter(b, 0)) if math.isfinite(b) else None
    # on [0, 1]: p(x)/x - 1 and 1 - p(x) vanish only at 1 (both are positive at 0: p'(0) > 1, p(0) = 0)
    if gap.count_roots(0, 1) != 1 or (1 - poly).count_roots(0, 1) != 1:
        return False
    # on [1, b-]: p(x)/x - 1 vanishes only at 1 (negative past it: p'(1) < 1), p(x) nowhere (p(1) = 1)
    return gap.count_roots(1, below) == 1 and poly.count_roots(1, below) == 0
