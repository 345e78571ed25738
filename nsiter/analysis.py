"""Certified scalar analysis: what a schedule does to singular values.

Every odd polynomial acts on each singular value separately, so a schedule maps an interval ``[lo, hi]``
of normalized singular values step by step.  The image of an interval under a continuous ``p`` is the
interval between the smallest and largest value of ``p`` on it, attained at an endpoint or at a critical
point.  Critical points are the positive roots of ``p'(x) = sum_k (2k+1) c_k x^(2k)``, found as roots of
a polynomial in ``t = x^2`` with ``mpmath.polyroots`` at 50 significant digits; the extreme values are
evaluated at that precision and rounded *outward* to doubles, so each band encloses the true image (no
grid sampling anywhere).  Bands compose exactly: ``phi_k([lo, hi]) = p_k(phi_{k-1}([lo, hi]))``.

For a repeated polynomial, ``fixed_points``, ``periodic_points`` and ``attractor`` describe the long-run
behaviour; Muon's ``(3.4445, -4.7750, 2.0315)`` has ``p(1) = 0.701``, so it does not converge to 1 but
is trapped in a band around it (Jordan, "Muon: An optimizer for hidden layers", 2024, aims for
``[0.7, 1.3]``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from typing import Any

import mpmath
import numpy as np

from nsiter.polynomial import OddPolynomial
from nsiter.schedule import Schedule

__all__ = [
    "Attractor",
    "FixedPoint",
    "ScheduleAnalysis",
    "StepBand",
    "analyze",
    "attractor",
    "check_interval",
    "convergence_bound",
    "critical_points",
    "fixed_points",
    "image_interval",
    "periodic_points",
]

DPS = 50  # working precision (decimal digits) for roots and extreme values
_IMAG_TOL = 1e-20  # roots with |imag| below this (relative) count as real; extra candidates are harmless


def check_interval(lo: Any, hi: Any) -> tuple[float, float]:
    """Validate an interval of normalized singular values: finite reals with ``0 < lo < hi``."""
    for name, v in (("lo", lo), ("hi", hi)):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise ValueError(f"{name} must be a real number, got {v!r}")
        if not math.isfinite(float(v)):
            raise ValueError(f"{name} must be finite, got {v!r}")
    lo, hi = float(lo), float(hi)
    if lo <= 0:
        raise ValueError(f"lo must be > 0 (the smallest normalized singular value), got {lo!r}")
    if lo >= hi:
        raise ValueError(f"need lo < hi, got lo={lo!r}, hi={hi!r}")
    return lo, hi


def _mp_eval(coeffs: Sequence[float], xv: mpmath.mpf) -> mpmath.mpf:
    x2 = xv * xv
    acc = mpmath.mpf(coeffs[-1])
    for c in reversed(coeffs[:-1]):
        acc = acc * x2 + mpmath.mpf(c)
    return acc * xv


def _poly_rem(a: list[Fraction], b: list[Fraction]) -> list[Fraction]:
    """Remainder of ascending-coefficient polynomials over Q."""
    a = list(a)
    while len(a) >= len(b):
        if a[-1] != 0:
            f = a[-1] / b[-1]
            shift = len(a) - len(b)
            for i, c in enumerate(b):
                a[shift + i] -= f * c
        a.pop()
    while a and a[-1] == 0:
        a.pop()
    return a


def _squarefree(coeffs: list[Fraction]) -> list[Fraction]:
    """``q / gcd(q, q')`` exactly over Q: same roots, all simple (so root finding converges fast)."""
    d = [k * c for k, c in enumerate(coeffs)][1:]
    a, b = coeffs, d
    while b:
        a, b = b, _poly_rem(a, b)
    if len(a) <= 1:
        return coeffs
    # exact division coeffs / a
    num, out = list(coeffs), [Fraction(0)] * (len(coeffs) - len(a) + 1)
    for i in range(len(out) - 1, -1, -1):
        out[i] = num[i + len(a) - 1] / a[-1]
        for j, c in enumerate(a):
            num[i + j] -= out[i] * c
    return out


def _mpq(c: Fraction) -> mpmath.mpf:
    return mpmath.mpf(c.numerator) / c.denominator


def _positive_real_roots(coeffs_ascending: Sequence[Any]) -> list[mpmath.mpf]:
    """Real positive roots of ``sum_k a_k t^k`` (mpmath, DPS digits).

    Multiple roots (the classical family's ``p'`` has ``(1 - x^2)^l``) are first reduced to simple ones by
    the exact square-free part over the rationals (floats are exact binary rationals).
    """
    coeffs = [Fraction(c) for c in coeffs_ascending]
    while len(coeffs) > 1 and coeffs[-1] == 0:
        coeffs.pop()
    if len(coeffs) < 2:
        return []
    with mpmath.workdps(DPS):
        try:
            roots = mpmath.polyroots([_mpq(c) for c in reversed(coeffs)], maxsteps=100, extraprec=2 * DPS)
        except mpmath.libmp.NoConvergence:
            sf = _squarefree(coeffs)
            roots = mpmath.polyroots([_mpq(c) for c in reversed(sf)], maxsteps=400, extraprec=4 * DPS)
        out = []
        for r in roots:
            r = mpmath.mpc(r)
            if abs(r.imag) <= _IMAG_TOL * max(1, abs(r.real)) and r.real > 0:
                out.append(mpmath.mpf(r.real))
        out.sort()
        # a multiple root found as a cluster counts once
        return [r for i, r in enumerate(out) if i == 0 or r - out[i - 1] > mpmath.mpf(10) ** (-DPS // 2) * r]


def critical_points(p: OddPolynomial, lo: float = 0.0, hi: float = math.inf) -> list[float]:
    """Positive critical points of ``p`` strictly inside ``(lo, hi)``: roots of ``p'`` via ``t = x^2``."""
    dcoeffs = [(2 * k + 1) * c for k, c in enumerate(p.coefficients)]
    pts = [float(mpmath.sqrt(t)) for t in _positive_real_roots(dcoeffs)]
    return [c for c in pts if lo < c < hi]


def _image_mp(p: OddPolynomial, lo: float, hi: float) -> tuple[mpmath.mpf, mpmath.mpf, list[float]]:
    crit = critical_points(p, lo, hi)
    with mpmath.workdps(DPS):
        vals = [_mp_eval(p.coefficients, mpmath.mpf(v)) for v in (lo, hi, *crit)]
        return min(vals), max(vals), crit


def _down(v: mpmath.mpf) -> float:
    f = float(v)
    return math.nextafter(f, -math.inf) if f > v else f


def _up(v: mpmath.mpf) -> float:
    f = float(v)
    return math.nextafter(f, math.inf) if f < v else f


def image_interval(p: OddPolynomial, lo: float, hi: float) -> tuple[float, float]:
    """The exact image ``p([lo, hi])`` as ``(min, max)``, rounded outward to doubles.

    Args:
        p: an odd polynomial.
        lo, hi: the input interval, ``0 < lo < hi``.

    Returns:
        ``(min p, max p)`` over ``[lo, hi]``, from the endpoints and the critical points inside.
    """
    lo, hi = check_interval(lo, hi)
    mn, mx, _ = _image_mp(p, lo, hi)
    return _down(mn), _up(mx)


@dataclass(frozen=True)
class StepBand:
    """The certified band after step ``k`` (``k = 0`` is the input interval).

    Attributes:
        step: ``k``.
        lo, hi: ``phi_k([lo_0, hi_0])``, rounded outward.
        error: ``max |1 - phi_k(x)|`` over the input interval (``max(|1 - lo|, |1 - hi|)``).
        slope_at_zero: ``phi_k'(0)``.
        monotone: ``p_k`` has no critical point inside the band it is applied to.
        overshoot: ``max(0, hi - 1)``.
        critical_points: critical points of ``p_k`` inside the band it is applied to.
    """

    step: int
    lo: float
    hi: float
    error: float
    slope_at_zero: float
    monotone: bool
    overshoot: float
    critical_points: tuple[float, ...] = ()


@dataclass(frozen=True)
class ScheduleAnalysis:
    """Per-step certified bands of a schedule on an input interval.  ``steps[0]`` is the input."""

    schedule: str
    lo: float
    hi: float
    steps: tuple[StepBand, ...]
    diverged: bool = False
    message: str = ""

    @property
    def final(self) -> StepBand:
        return self.steps[-1]

    @property
    def final_error(self) -> float:
        return self.steps[-1].error

    @property
    def slope_at_zero(self) -> float:
        return self.steps[-1].slope_at_zero

    @property
    def errors(self) -> list[float]:
        return [s.error for s in self.steps]

    def rows(self) -> list[dict[str, Any]]:
        """Tidy rows, one per step."""
        out = []
        for s in self.steps:
            row = asdict(s)
            row["critical_points"] = list(s.critical_points)
            row["schedule"] = self.schedule
            out.append(row)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "schedule": self.schedule,
            "lo": self.lo,
            "hi": self.hi,
            "diverged": self.diverged,
            "message": self.message,
            "final_error": self.final_error,
            "slope_at_zero": self.slope_at_zero,
            "steps": self.rows(),
        }


def analyze(schedule: Schedule, lo: float, hi: float = 1.0, steps: int | None = None) -> ScheduleAnalysis:
    """Certified per-step image bands and worst-case errors of ``schedule`` on ``[lo, hi]``.

    Args:
        schedule: the schedule (``nsiter.load_schedule`` gives registry ones).
        lo, hi: the interval of normalized input singular values, ``0 < lo < hi``.
        steps: analyse the first ``steps`` steps (repeating the last polynomial beyond the schedule).

    Returns:
        A ``ScheduleAnalysis``; ``diverged`` is set (and the analysis stops) if a band leaves every bound
        (``|value| > 1e100``) or reaches zero/negative values, i.e. some singular value is sent to 0 or
        flips sign.
    """
    lo, hi = check_interval(lo, hi)
    if steps is not None:
        schedule = schedule.truncated(steps)
    bands = [StepBand(0, lo, hi, max(abs(1 - lo), abs(1 - hi)), 1.0, True, max(0.0, hi - 1))]
    cur_lo, cur_hi, slope = lo, hi, 1.0
    diverged, message = False, ""
    for k, p in enumerate(schedule.steps, start=1):
        mn, mx, crit = _image_mp(p, cur_lo, cur_hi)
        cur_lo, cur_hi = _down(mn), _up(mx)
        slope *= p.slope_at_zero
        bands.append(
            StepBand(
                k,
                cur_lo,
                cur_hi,
                max(abs(1 - cur_lo), abs(1 - cur_hi)),
                slope,
                not crit,
                max(0.0, cur_hi - 1),
                tuple(crit),
            )
        )
        if not math.isfinite(cur_hi) or abs(cur_hi) > 1e100 or abs(cur_lo) > 1e100:
            diverged, message = True, f"band exceeds 1e100 after step {k}: diverges"
            break
        if cur_lo <= 0:
            diverged = True
            message = f"band reaches {cur_lo:.3g} <= 0 after step {k}: singular values collapse or flip sign"
            break
    return ScheduleAnalysis(schedule.name, lo, hi, tuple(bands), diverged, message)


# --------------------------------------------------------------------------------- repeated maps
@dataclass(frozen=True)
class FixedPoint:
    """A fixed point ``x* = p(x*) >= 0`` with multiplier ``p'(x*)`` and its stability."""

    x: float
    multiplier: float
    stability: str  # "superattracting" | "attracting" | "neutral" | "repelling"


def _stability(m: float) -> str:
    if abs(m) < 1e-12:
        return "superattracting"
    if abs(m) < 1 - 1e-12:
        return "attracting"
    if abs(m) <= 1 + 1e-12:
        return "neutral"
    return "repelling"


def fixed_points(p: OddPolynomial) -> list[FixedPoint]:
    """All non-negative fixed points of ``p``: ``0`` and the positive roots of ``p(x)/x = 1``."""
    coeffs = list(p.coefficients)
    coeffs[0] -= 1.0
    pts = [0.0] + [float(mpmath.sqrt(t)) for t in _positive_real_roots(coeffs)]
    out = []
    for v in pts:
        m = float(p.derivative(v))
        out.append(FixedPoint(v, m, _stability(m)))
    return out


def periodic_points(p: OddPolynomial, period: int = 2) -> list[tuple[tuple[float, ...], float, str]]:
    """Positive cycles of exact period ``period`` (2 or more) with multiplier and stability.

    Returns ``[(orbit, multiplier, stability), ...]`` with ``orbit`` sorted increasing; the multiplier is
    ``prod p'(x_i)`` over the orbit.
    """
    if isinstance(period, bool) or not isinstance(period, int) or period < 2:
        raise ValueError(f"period must be an integer >= 2, got {period!r}")
    q = p
    for _ in range(period - 1):
        q = p.compose(q)
    coeffs = list(q.coefficients)
    coeffs[0] -= 1.0
    fixed = [f.x for f in fixed_points(p)]
    seen: list[tuple[float, ...]] = []
    out = []
    for t in _positive_real_roots(coeffs):
        x0 = float(mpmath.sqrt(t))
        if any(abs(x0 - f) < 1e-9 * max(1, f) for f in fixed):
            continue
        orbit = [x0]
        for _ in range(period - 1):
            orbit.append(float(p(orbit[-1])))
        key = tuple(sorted(orbit))
        if any(all(abs(a - b) < 1e-9 * max(1, abs(b)) for a, b in zip(key, s, strict=True)) for s in seen):
            continue
        seen.append(key)
        m = math.prod(float(p.derivative(v)) for v in orbit)
        out.append((key, m, _stability(m)))
    return out


@dataclass(frozen=True)
class Attractor:
    """Long-run behaviour of iterating one polynomial from an interval.

    Attributes:
        kind: ``"converges"`` (to one attracting fixed point), ``"cycle"`` (an attracting periodic orbit) or
            ``"band"`` (an invariant band, no attracting cycle of period <= ``max_period`` inside it).
        band: the limit ``J = p(J)`` of the certified image bands of ``[lo, hi]``.
        iterations: how many image steps until the band stopped changing (relative 1e-14).
        fixed_points: all non-negative fixed points with stability.
        cycles: positive cycles of period 2..``max_period`` inside the band.
        error: ``max |1 - y|`` over the band: the error the iteration can never go below.
    """

    kind: str
    band: tuple[float, float]
    iterations: int
    fixed_points: tuple[FixedPoint, ...]
    cycles: tuple[tuple[tuple[float, ...], float, str], ...] = field(default_factory=tuple)
    error: float = math.nan
    converged: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "band": list(self.band),
            "iterations": self.iterations,
            "error": self.error,
            "converged": self.converged,
            "fixed_points": [asdict(f) for f in self.fixed_points],
            "cycles": [{"orbit": list(o), "multiplier": m, "stability": s} for o, m, s in self.cycles],
        }


def attractor(
    p: OddPolynomial, lo: float = 1e-3, hi: float = 1.0, max_iter: int = 500, max_period: int = 2
) -> Attractor:
    """Iterate the certified image band of ``[lo, hi]`` under ``p`` to its limit and classify it.

    The band sequence ``J_{k+1} = p(J_k)`` is computed exactly (``image_interval``); its limit ``J`` with
    ``p(J) = J`` is the attracting band.  Cycles of period 2..``max_period`` inside ``J`` are listed with
    their multipliers (the cycle equation has degree ``deg(p)^period``, so keep ``max_period`` small).  A
    band that shrinks to a point is an attracting fixed point.
    """
    lo, hi = check_interval(lo, hi)
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"max_iter must be a positive integer, got {max_iter!r}")
    cur = (lo, hi)
    it, converged = 0, False
    for it in range(1, max_iter + 1):
        new = image_interval(p, *cur)
        if new[0] <= 0 or new[1] > 1e100:
            raise ValueError(f"iterating p from [{lo}, {hi}] leaves (0, 1e100): band {new} after {it} steps")
        done = all(abs(a - b) <= 1e-14 * max(1.0, abs(b)) for a, b in zip(new, cur, strict=True))
        cur = new
        if done:
            converged = True
            break
    fps = tuple(fixed_points(p))
    cycles = tuple(
        c
        for period in range(2, max_period + 1)
        for c in periodic_points(p, period)
        if cur[0] - 1e-9 <= c[0][0] and c[0][-1] <= cur[1] + 1e-9
    )
    width = cur[1] - cur[0]
    if width <= 1e-12 * max(1.0, cur[1]):
        kind = "converges"
    elif any(s in ("attracting", "superattracting") for _, _, s in cycles):
        kind = "cycle"
    else:
        kind = "band"
    err = max(abs(1 - cur[0]), abs(1 - cur[1]))
    return Attractor(kind, cur, it, fps, cycles, err, converged)


def convergence_bound(p: OddPolynomial) -> tuple[float, bool]:
    """The largest ``b`` such that iterating ``p`` converges to 1 from every start in ``(0, b)``.

    Requires ``p(1) = 1`` with ``|p'(1)| < 1`` and ``p'(0) > 1``.  ``b`` is the smaller of the first zero
    of ``p`` past 1 (it maps to the fixed point 0) and the first fixed point past 1; neither converges to 1,
    so no larger ``b`` can work.  Returns ``(b, certified)``; ``certified`` means the proof below holds:
    no fixed point in ``(0, 1) U (1, b)`` and ``max p <= 1`` on ``(0, 1]`` (``image_interval``).  Then
    orbits in ``(0, 1)`` increase to 1 (``x < p(x) <= 1``), and orbits in ``(1, b)`` have
    ``0 < p(x) < x``, so they decrease to 1 or drop into ``(0, 1]``.
    """
    one = float(p(1.0))
    if abs(one - 1) > 1e-12:
        raise ValueError(f"1 is not a fixed point of p: p(1) = {one!r}")
    if abs(p.derivative(1.0)) >= 1:
        raise ValueError(f"the fixed point 1 is not attracting: p'(1) = {float(p.derivative(1.0))!r}")
    if p.slope_at_zero <= 1:
        raise ValueError(f"0 must be repelling for convergence from near 0: p'(0) = {p.slope_at_zero!r}")
    fps = [f.x for f in fixed_points(p) if f.x > 0 and abs(f.x - 1) > 1e-9]
    zeros = [float(mpmath.sqrt(t)) for t in _positive_real_roots(p.coefficients)]
    past = [v for v in zeros + fps if v > 1 + 1e-9]
    b = min(past) if past else math.inf
    certified = not any(v < 1 for v in fps) and image_interval(p, 1e-300, 1.0)[1] <= 1.0 + 1e-15
    return b, certified


def certified_error(schedule: Schedule, lo: float = 1e-3, hi: float = 1.0) -> float:
    """Certified worst ``|1 - phi_T|`` for inputs with ``sigma / ||G|| in [lo, hi]``.

    The schedule's normalization divides by ``scale * ||G||``, so the polynomials see
    ``[lo / scale, hi / scale]``; the bound comes from :func:`analyze` (mpmath, rounded outward).  ``aol``
    normalization is not a scalar map: ``ValueError``.  A diverging schedule gives ``inf``.
    """
    if schedule.normalization.norm == "aol":
        raise ValueError(
            f"schedule {schedule.name!r} uses 'aol' normalization, which has no scalar certificate"
        )
    s = schedule.normalization.scale
    res = analyze(schedule, lo / s, hi / s)
    if res.diverged:
        return float("inf")
    return float(res.final_error)
