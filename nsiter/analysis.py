"""Certified scalar analysis: what a schedule does to singular values.

Every odd polynomial acts on each singular value separately, so a schedule maps an interval ``[lo, hi]``
of normalized singular values step by step.  The image of an interval under a continuous ``p`` is the
interval between the smallest and largest value of ``p`` on it, attained at an endpoint or at a critical
point.  Critical points are the positive roots of ``p'(x) = sum_k (2k+1) c_k x^(2k)``, found as roots of
a polynomial in ``t = x^2`` with ``mpmath.polyroots`` at 50 significant digits (no grid sampling anywhere).
Bands compose exactly: ``phi_k([lo, hi]) = p_k(phi_{k-1}([lo, hi]))``.

``analyze`` carries the bands in ``PREC``-bit interval arithmetic (``mpmath.iv``, rounded outward), with
endpoints next to 1 held by their deviation ``d = 1 - x`` and mapped by ``q(d) = 1 - p(1 - d)`` expanded
with exact rational coefficients: certified errors stay tight far below the unit roundoff (the cubic from
``1e-6`` reaches ``3e-32`` after 40 steps and ``1e-500`` after 44).  Each critical point is widened to a
neighbourhood across which ``p'`` provably changes sign, and its image enclosed by the mean-value form.
``steps_to`` counts the steps to a certified error.  ``image_interval`` is the plain double version
(50-digit values rounded outward).

For a repeated polynomial, ``fixed_points``, ``periodic_points``, ``cycles`` and ``attractor`` describe
the long-run behaviour, with cycles proved by Krawczyk's test (``nsiter.dynamics``).  Muon's
``(3.4445, -4.7750, 2.0315)`` has ``p(1) = 0.701``, so it does not converge to 1: almost every orbit ends
on an attracting 4-cycle ``0.682 -> 1.134 -> 0.753 -> 1.047`` (multiplier ``-0.1428``) around a
repelling 2-cycle, inside the band Jordan aims for ("Muon: An optimizer for hidden layers", 2024,
``[0.7, 1.3]``; its low point 0.682 is just below).
"""

from __future__ import annotations

import html
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from typing import Any

import mpmath
import numpy as np
from mpmath import iv

from nsiter.checks import check_interval
from nsiter.dynamics import (
    DIVERGENCE_THRESHOLD,
    Cycle,
    endpoints,
    find_cycles,
    interval_precision,
    odd_horner,
    odd_horner_derivative,
    prove_cycle,
    round_down,
    round_up,
)
from nsiter.polynomial import OddPolynomial
from nsiter.registry import load_schedule
from nsiter.restarts import gram_restarts
from nsiter.schedule import Schedule

__all__ = [
    "COEFFICIENTS",
    "MAX_ANALYZE_STEPS",
    "MAX_CYCLE_DEGREE",
    "Attractor",
    "Cycle",
    "FixedPoint",
    "ScheduleAnalysis",
    "StepBand",
    "analyze",
    "attractor",
    "check_interval",
    "convergence_bound",
    "critical_points",
    "cycles",
    "decimal_up",
    "fixed_points",
    "gram_restarts",
    "image_interval",
    "periodic_points",
    "repeated_attractor",
    "steps_to",
]

DPS = 50  # working precision (decimal digits) for roots and extreme values
PREC = 300  # bits of the interval arithmetic that carries the bands of ``analyze`` (about 90 digits)
MAX_ANALYZE_STEPS = 5000  # most steps ``analyze`` and ``steps_to`` follow (checked before any work)
_IMAG_TOL = 1e-20  # roots with |imag| below this (relative) count as real; extra candidates are harmless


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
    return round_down(mn), round_up(mx)


# ------------------------------------------------------------------------- bands carried in high precision
COEFFICIENTS = ("float", "exact")  # which coefficients a certificate is for


def _rational_coefficients(p: OddPolynomial, coefficients: str) -> list[Fraction]:
    """The coefficients a certificate is for, as rationals: the float64 values (binary rationals, what runs)
    or the stored exact rationals (``ValueError`` when a step has none)."""
    if coefficients == "float":
        return [Fraction(c) for c in p.coefficients]
    if p.exact is None:
        raise ValueError(f"coefficients='exact' needs exact rationals, but step {p!r} stores floats only")
    return list(p.exact)


def _dev_coefficients(fr: list[Fraction]) -> list[Fraction]:
    """Exact ascending coefficients of ``q(d) = 1 - p(1 - d)`` from the odd coefficients ``fr`` of ``p``."""
    q = [Fraction(0)] * (2 * len(fr))
    for k, c in enumerate(fr):
        e = 2 * k + 1
        for j in range(e + 1):
            q[j] -= Fraction(c) * math.comb(e, j) * (-1) ** j
    q[0] += 1
    return q


class _StepMap:
    """One polynomial as the band propagation uses it, prepared once: interval coefficients of ``p`` and of
    ``q(d) = 1 - p(1 - d)``, and the positive critical points (``1`` exactly when ``p'(1) = 0`` over Q)."""

    def __init__(self, p: OddPolynomial, coefficients: str = "float") -> None:
        fr = _rational_coefficients(p, coefficients)
        # dyadic rationals are exact at PREC bits; other rationals (decimals) are enclosed outward by iv
        self.coeffs = [iv.mpf(c.numerator) / c.denominator for c in fr]
        self.dev = [iv.mpf(c.numerator) / c.denominator for c in _dev_coefficients(fr)]
        dcoeffs = [(2 * k + 1) * c for k, c in enumerate(fr)]
        self.critical_at_one = sum(dcoeffs) == 0
        with mpmath.workdps(DPS):
            roots = [mpmath.sqrt(t) for t in _positive_real_roots(dcoeffs)]
        if self.critical_at_one:  # the exact root 1 is handled exactly; polyroots' copies of it are dropped
            roots = [r for r in roots if abs(r - 1) > mpmath.mpf(10) ** (-DPS // 2)]
        self.critical = [(c, self._radius(c)) for c in roots]

    def _radius(self, c: mpmath.mpf) -> mpmath.mpf:
        """The smallest of ``10^-40, 10^-30, 10^-20, 10^-12`` (relative) across which ``p'`` provably changes
        sign (interval evaluation at both ends), so a root of ``p'`` lies within it; ``10^-12`` if none does
        (a root of even multiplicity is no extremum; a cluster of close roots stays inside it)."""
        for e in (40, 30, 20, 12):
            r = mpmath.mpf(10) ** -e * max(1, c)
            left, right = (endpoints(odd_horner_derivative(self.coeffs, iv.mpf(c) + s)) for s in (-r, r))
            if (left[1] < 0 < right[0]) or (right[1] < 0 < left[0]):
                return r
        return mpmath.mpf(10) ** -12 * max(1, c)

    def image(self, x: _End) -> tuple[Any, Any]:
        """``(p(x), 1 - p(x))`` enclosed: through ``q`` when ``x`` is held by its deviation, else directly."""
        if x.dev:
            d = iv.mpf(x.v)
            acc = self.dev[-1]
            for c in reversed(self.dev[:-1]):
                acc = acc * d + c
            return 1 - acc, acc
        y = odd_horner(self.coeffs, iv.mpf(x.v))
        return y, 1 - y

    def critical_image(self, c: mpmath.mpf, r: mpmath.mpf) -> tuple[Any, Any]:
        """``(p(x), 1 - p(x))`` enclosed for all ``x`` within ``r`` of ``c`` (a root of ``p'`` located to
        ``DPS`` digits): the mean-value form ``p(c) + p'(C) (C - c)``."""
        dx = iv.mpf([-r, r])
        y = odd_horner(self.coeffs, iv.mpf(c)) + odd_horner_derivative(self.coeffs, iv.mpf(c) + dx) * dx
        return y, 1 - y


@dataclass(frozen=True)
class _End:
    """A band endpoint held exactly: the value ``v``, or (``dev``) the deviation ``v = 1 - value``, so values
    next to 1 keep every digit of their distance to 1 (``|v| <= 1/2`` in that form)."""

    dev: bool
    v: mpmath.mpf

    @classmethod
    def of_double(cls, x: float) -> _End:
        """An input endpoint; ``1 - x`` is exact for doubles in ``[1/2, 3/2]`` (Sterbenz's lemma)."""
        return cls(True, 1 - mpmath.mpf(x)) if 0.5 <= x <= 1.5 else cls(False, mpmath.mpf(x))

    @classmethod
    def lower(cls, y: Any, d: Any) -> _End:
        """The lower end of the enclosures ``y`` of a value and ``d`` of ``1 - value``."""
        dv = endpoints(d)[1]
        return cls(True, dv) if abs(dv) <= 0.5 else cls(False, endpoints(y)[0])

    @classmethod
    def upper(cls, y: Any, d: Any) -> _End:
        dv = endpoints(d)[0]
        return cls(True, dv) if abs(dv) <= 0.5 else cls(False, endpoints(y)[1])

    def value(self) -> Any:
        """The value as an ``iv`` interval."""
        return 1 - iv.mpf(self.v) if self.dev else iv.mpf(self.v)

    def deviation(self) -> Any:
        """``1 - value`` as an ``iv`` interval."""
        return iv.mpf(self.v) if self.dev else 1 - iv.mpf(self.v)


def _image_ends(m: _StepMap, lo: _End, hi: _End) -> tuple[_End, _End, list[float]]:
    """Outward enclosure of ``p([lo, hi])``: min and max over the endpoints and the critical points inside."""
    a, b = endpoints(lo.value())[0], endpoints(hi.value())[1]
    inside = [(c, r) for c, r in m.critical if a < c + r and c - r < b]
    crit = [c for c, _ in inside]
    images = [m.image(lo), m.image(hi), *(m.critical_image(c, r) for c, r in inside)]
    if m.critical_at_one and a < 1 < b:
        images.append(m.image(_End(True, mpmath.mpf(0))))
        crit.append(mpmath.mpf(1))
    # order by the value's bound, ties (below PREC bits) broken exactly by the deviation's bound
    low = min(images, key=lambda t: (endpoints(t[0])[0], -endpoints(t[1])[1]))
    high = max(images, key=lambda t: (endpoints(t[0])[1], -endpoints(t[1])[0]))
    return _End.lower(*low), _End.upper(*high), sorted(float(c) for c in crit)


_DECIMAL_MAG = 10**7  # beyond |v| = 2^+-1e7 decimal_up writes a power of two


def decimal_up(v: mpmath.mpf, digits: int = 17) -> str:
    """``v`` as a scientific decimal string rounded up (towards +inf) to ``digits`` significant digits.

    Works down to ``1e-3000000``; beyond (quadratic convergence gets there in ~40 more steps) a bound
    ``"2^-N"`` with ``|v| <= 2^-N`` for positive ``v`` (``"-2^-N"`` for negative).  The comparison with ``v`` runs at ``PREC + 40`` bits, so the
    string is an upper bound up to a relative ``2^-PREC`` (far below its last digit).
    """
    if v == 0 or not mpmath.isfinite(v):
        return "0" if v == 0 else str(v)
    sign, _, exp, bc = v._mpf_  # 2^(exp + bc - 1) <= |v| < 2^(exp + bc)
    if abs(exp + bc) > _DECIMAL_MAG:  # the digits of 10^(huge) cost too much: a power of two bounds v
        return f"-2^{exp + bc - 1}" if sign else f"2^{exp + bc}"
    with mpmath.workprec(PREC + 40):
        mant, _, exp = mpmath.nstr(v, digits, min_fixed=1, max_fixed=0, strip_zeros=False).partition("e")
        e = int(exp or 0)
        scale = mpmath.mpf(10) ** e
        m = mpmath.mpf(mant)
        if m * scale < v:
            m += mpmath.mpf(10) ** -(digits - 1)
            if abs(m) >= 10:
                m, e = m / 10, e + 1
        digits_str = mpmath.nstr(m, digits, strip_zeros=False)
    return f"{digits_str}e{e:+d}"


@dataclass(frozen=True)
class StepBand:
    """The certified band after step ``k`` (``k = 0`` is the input interval).

    Attributes:
        step: ``k``.
        lo, hi: ``phi_k([lo_0, hi_0])``, rounded outward to doubles.
        error: ``max |1 - phi_k(x)|`` over the input interval, rounded up to a double; tight down to the
            smallest double (``error_mp`` goes further).
        slope_at_zero: ``phi_k'(0)``.
        monotone: ``p_k`` has no critical point inside the band it is applied to.
        overshoot: ``max(0, hi - 1)``, rounded up.
        critical_points: critical points of ``p_k`` inside the band it is applied to.
        deficit, excess: ``1 - lo`` and ``hi - 1`` of the exact band as ``mpmath.mpf`` (``PREC`` bits, any
            exponent), rounded outward: ``phi_k >= 1 - deficit`` and ``phi_k <= 1 + excess`` on the interval.
        error_mp: ``max(|deficit|, |excess|)``: the certified worst error at full precision.
    """

    step: int
    lo: float
    hi: float
    error: float
    slope_at_zero: float
    monotone: bool
    overshoot: float
    critical_points: tuple[float, ...] = ()
    deficit: mpmath.mpf = field(default=mpmath.mpf(0), compare=False)
    excess: mpmath.mpf = field(default=mpmath.mpf(0), compare=False)
    error_mp: mpmath.mpf = field(default=mpmath.mpf(0), compare=False)

    @classmethod
    def _from_ends(cls, step: int, lo: _End, hi: _End, slope: float, crit: Sequence[float] = ()) -> StepBand:
        with mpmath.workprec(PREC):  # the endpoints have <= PREC bits: negation and abs stay exact
            deficit = endpoints(lo.deviation())[1]  # upper bound of 1 - lo
            excess = -endpoints(hi.deviation())[0]  # upper bound of hi - 1
            err = max(abs(deficit), abs(excess))
        return cls(
            step,
            round_down(endpoints(lo.value())[0]),
            round_up(endpoints(hi.value())[1]),
            round_up(err),
            slope,
            not crit,
            round_up(max(mpmath.mpf(0), excess)),
            tuple(crit),
            deficit,
            excess,
            err,
        )

    def to_row(self) -> dict[str, Any]:
        """A JSON-ready row; the high-precision fields as decimal strings rounded up (17 digits)."""
        row = {
            f: getattr(self, f)
            for f in ("step", "lo", "hi", "error", "slope_at_zero", "monotone", "overshoot")
        }
        row["critical_points"] = list(self.critical_points)
        row["error_mp"] = decimal_up(self.error_mp)
        row["deficit"] = decimal_up(self.deficit)
        row["excess"] = decimal_up(self.excess)
        return row


@dataclass(frozen=True)
class ScheduleAnalysis:
    """Per-step certified bands of a schedule on an input interval.  ``bands[0]`` is the input."""

    schedule: str
    lo: float
    hi: float
    bands: tuple[StepBand, ...]
    diverged: bool = False
    message: str = ""
    attractor: Attractor | None = None  # of the last step repeated for ever (analyze(..., repeated=True))
    attractor_error: str = (
        ""  # why it could not be computed (the repeated band leaves (0, DIVERGENCE_THRESHOLD))
    )

    @property
    def final(self) -> StepBand:
        return self.bands[-1]

    @property
    def final_error(self) -> float:
        """Certified worst error after the last step, rounded up to a double (see ``final_error_mp``)."""
        return self.bands[-1].error

    @property
    def final_error_mp(self) -> mpmath.mpf:
        """Certified worst error after the last step at full precision (below the smallest double too)."""
        return self.bands[-1].error_mp

    @property
    def slope_at_zero(self) -> float:
        return self.bands[-1].slope_at_zero

    @property
    def errors(self) -> list[float]:
        return [s.error for s in self.bands]

    @property
    def errors_mp(self) -> list[mpmath.mpf]:
        return [s.error_mp for s in self.bands]

    def rows(self) -> list[dict[str, Any]]:
        """Tidy rows, one per step."""
        return [{**s.to_row(), "schedule": self.schedule} for s in self.bands]

    def to_pandas(self) -> Any:
        """The per-step rows as a ``pandas.DataFrame`` (pandas is imported on call)."""
        import pandas as pd

        return pd.DataFrame(self.rows())

    def __repr__(self) -> str:
        """One line: the schedule, the input interval, the final certified band and error."""
        f = self.final
        tail = (
            "diverged" if self.diverged else f"band [{f.lo:.6g}, {f.hi:.6g}], certified error {f.error:.4g}"
        )
        return (
            f"ScheduleAnalysis({self.schedule!r} on [{self.lo:g}, {self.hi:g}]: "
            f"{len(self.bands) - 1} steps, {tail})"
        )

    def _repr_html_(self) -> str:
        """A per-step table for notebooks: band, certified error and slope at zero."""
        head = "".join(f"<th>{h}</th>" for h in ("step", "lo", "hi", "certified error", "slope at 0"))
        body = "".join(
            f"<tr><td>{b.step}</td><td>{b.lo:.6g}</td><td>{b.hi:.6g}</td><td>{b.error:.4g}</td>"
            f"<td>{b.slope_at_zero:.4g}</td></tr>"
            for b in self.bands
        )
        return f"<p>{html.escape(repr(self))}</p><table><tr>{head}</tr>{body}</table>"

    def to_dict(self) -> dict[str, Any]:
        out = {
            "schedule": self.schedule,
            "lo": self.lo,
            "hi": self.hi,
            "diverged": self.diverged,
            "message": self.message,
            "final_error": self.final_error,
            "final_error_mp": decimal_up(self.final_error_mp),
            "slope_at_zero": self.slope_at_zero,
            "bands": self.rows(),
        }
        if self.attractor is not None:
            out["attractor"] = self.attractor.to_dict()
        if self.attractor_error:
            out["attractor_error"] = self.attractor_error
        return out


def _check_steps(steps: Any, what: str = "steps") -> int:
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"{what} must be a positive integer, got {steps!r}")
    if steps > MAX_ANALYZE_STEPS:
        raise ValueError(f"{what} = {steps} exceeds the limit MAX_ANALYZE_STEPS = {MAX_ANALYZE_STEPS}")
    return int(steps)


def _bands(
    schedule: Schedule, lo: float, hi: float, steps: int, coefficients: str = "float"
) -> Iterator[tuple[StepBand, str]]:
    """Yield the certified band after steps ``0, 1, ..., steps`` (the last polynomial repeats), with a
    divergence message ("" while bounded) that ends the sequence."""
    maps: dict[OddPolynomial, _StepMap] = {}
    with interval_precision(PREC):
        lo_end, hi_end = _End.of_double(lo), _End.of_double(hi)
        yield StepBand._from_ends(0, lo_end, hi_end, 1.0), ""
        slope = 1.0
        for k in range(1, steps + 1):
            p = schedule[min(k, len(schedule)) - 1]
            m = maps.get(p)
            if m is None:
                m = maps[p] = _StepMap(p, coefficients)
            lo_end, hi_end, crit = _image_ends(m, lo_end, hi_end)
            slope *= p.slope_at_zero
            band = StepBand._from_ends(k, lo_end, hi_end, slope, crit)
            top, bottom = endpoints(hi_end.value())[1], endpoints(lo_end.value())[0]
            if (
                not mpmath.isfinite(top)
                or abs(top) > DIVERGENCE_THRESHOLD
                or abs(bottom) > DIVERGENCE_THRESHOLD
            ):
                yield band, f"band exceeds {DIVERGENCE_THRESHOLD:g} after step {k}: diverges"
                return
            if bottom <= 0:
                yield (
                    band,
                    f"band reaches {band.lo:.3g} <= 0 after step {k}: singular values collapse or flip sign",
                )
                return
            yield band, ""


def analyze(
    schedule: Schedule | str | Sequence[Any],
    lo: float = 1e-3,
    hi: float = 1.0,
    steps: int | None = None,
    *,
    repeated: bool = False,
    coefficients: str = "float",
) -> ScheduleAnalysis:
    """Certified per-step image bands and worst-case errors of ``schedule`` on ``[lo, hi]``.

    The bands are carried in ``PREC``-bit interval arithmetic (``mpmath.iv``), endpoints next to 1 through
    their deviation ``d = 1 - x`` and ``q(d) = 1 - p(1 - d)`` expanded with exact rational coefficients, so
    a certified error of ``1e-300`` (or ``1e-10^6``) is as tight as one of ``1e-3``; the float fields are
    those bands rounded outward.  The critical points come from ``mpmath.polyroots`` at ``DPS`` digits,
    each widened to a ``10^-40`` neighbourhood whose image is enclosed by the mean-value form.

    Args:
        schedule: a ``Schedule``, a registry name, a schedule file path or a list of coefficient tuples
            (``nsiter.load_schedule``).
        lo, hi: the interval of normalized input singular values, ``0 < lo < hi`` (``lo = 1e-3`` as
            ``attractor``).
        steps: analyse the first ``steps`` steps, repeating the last polynomial beyond the schedule (at most
            ``MAX_ANALYZE_STEPS``, checked before any work); default: the schedule's length.
        repeated: also describe iterating the last step for ever from ``[lo, hi]`` (``attractor``: its
            band and proved cycles, e.g. Muon's attracting 4-cycle); about 0.1-0.3 s more.
        coefficients: which coefficients the certificate is for: ``"float"`` (default), the float64
            values the evaluator runs, or ``"exact"``, the stored exact rationals (e.g. the printed decimals
            of a published set, which no double equals); ``ValueError`` if a step has none.  The attractor
            always uses the float64 values.

    Returns:
        A ``ScheduleAnalysis``; ``diverged`` is set (and the analysis stops) if a band leaves every bound
        (``|value| > DIVERGENCE_THRESHOLD``, ``nsiter.dynamics``) or reaches zero/negative values, i.e. some singular value is sent to 0 or
        flips sign.
    """
    lo, hi = check_interval(lo, hi)
    schedule = load_schedule(schedule)
    steps = _check_steps(len(schedule) if steps is None else steps)
    if coefficients not in COEFFICIENTS:
        raise ValueError(f"coefficients must be one of {COEFFICIENTS}, got {coefficients!r}")
    bands, messages = zip(*_bands(schedule, lo, hi, steps, coefficients), strict=True)
    att, att_error = None, ""
    if repeated:
        try:
            att = attractor(schedule[-1], lo, hi)
        except ValueError as err:
            att_error = str(err)
    return ScheduleAnalysis(schedule.name, lo, hi, bands, bool(messages[-1]), messages[-1], att, att_error)


def _check_tol(tol: Any) -> mpmath.mpf:
    """A positive finite target error as ``mpf`` (strings such as ``"1e-400"`` go below doubles)."""
    if isinstance(tol, bool) or not isinstance(tol, (int, float, str, np.integer, np.floating, mpmath.mpf)):
        raise ValueError(f"tol must be a positive number, got {tol!r}")
    try:
        value = mpmath.mpf(tol.strip() if isinstance(tol, str) else tol)
    except (ValueError, TypeError) as err:
        raise ValueError(f"tol must be a positive number, got {tol!r}") from err
    if not mpmath.isfinite(value) or value <= 0:
        raise ValueError(f"tol must be a positive finite number, got {tol!r}")
    return value


def steps_to(
    schedule: Schedule | str | Sequence[Any],
    lo: float,
    tol: float | str | mpmath.mpf,
    hi: float = 1.0,
    max_steps: int = MAX_ANALYZE_STEPS,
) -> int | None:
    """Steps until the certified worst error ``max |1 - phi_k(x)|`` over ``[lo, hi]`` is ``<= tol``.

    The schedule's last polynomial repeats beyond its length, so a fixed iteration (``"cubic"``) runs as
    long as needed.  The error is the one ``analyze`` certifies (``error_mp``, any size: ``tol = "1e-400"``
    works).

    Args:
        schedule: as for ``analyze``.
        lo, hi: the input interval, ``0 < lo < hi``.
        tol: the target error, ``> 0``: a float, or a string / ``mpmath.mpf`` for targets below doubles.
        max_steps: give up after this many steps (at most ``MAX_ANALYZE_STEPS``).

    Returns:
        The smallest ``k`` (``0`` when ``[lo, hi]`` already is within ``tol`` of 1), or ``None`` when the
        target is not met within ``max_steps`` steps or the bands diverge (Muon's map never gets below its
        attracting band's error).
    """
    lo, hi = check_interval(lo, hi)
    target = _check_tol(tol)
    max_steps = _check_steps(max_steps, "max_steps")
    schedule = load_schedule(schedule)
    for band, message in _bands(schedule, lo, hi, max_steps):
        if message:
            return None
        if band.error_mp <= target:
            return band.step
    return None


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


MAX_CYCLE_DEGREE = 125  # largest degree of p^k whose roots periodic_points computes (Muon: period 3, ~4 s)


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
            if band is not None and not (band[0] - 1e-9 <= orbit[0] and orbit[-1] <= band[1] + 1e-9):
                continue
            cyc = prove_cycle(p, orbit[0], period)
            if not any(_same_cycle(c, cyc) for c in found):
                found.append(cyc)
    return tuple(sorted(found, key=lambda c: (c.period, c.points[0])))


def _same_cycle(a: Cycle, b: Cycle) -> bool:
    return a.period == b.period and abs(a.points[0] - b.points[0]) <= 1e-9 * max(1.0, abs(a.points[0]))


@dataclass(frozen=True)
class Attractor:
    """Long-run behaviour of iterating one polynomial from an interval.

    Attributes:
        kind: ``"converges"`` (the band shrinks to one attracting fixed point), ``"cycle"`` (an attracting
            periodic orbit of period >= 2 is proved) or ``"band"`` (an invariant band on which no orbit from
            the starts settled into a period <= 256: chaotic or very slow).
        band: the limit ``J = p(J)`` of the certified image bands of ``[lo, hi]``: it contains every cycle
            reached and bounds every late iterate.
        iterations: how many image steps until the band stopped changing (relative 1e-14).
        fixed_points: all non-negative fixed points with stability.
        cycles: proved cycles (``cycles``): the attracting ones reached from ``[lo, hi]`` (any period; period 1
            is an attracting fixed point) and all of period 2..``max_period`` inside the band.
        error: ``max |1 - y|`` over the band: the error the iteration can never go below.
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
            "seconds": self.seconds,
            "fixed_points": [asdict(f) for f in self.fixed_points],
            "cycles": [c.to_dict() for c in self.cycles],
        }


def attractor(
    p: OddPolynomial, lo: float = 1e-3, hi: float = 1.0, max_iter: int = 500, max_period: int = 2
) -> Attractor:
    """Iterate the certified image band of ``[lo, hi]`` under ``p`` to its limit and classify it.

    The band sequence ``J_{k+1} = p(J_k)`` is computed exactly (``image_interval``); its limit ``J`` with
    ``p(J) = J`` is the attracting band.  Inside it, ``cycles`` lists the proved attracting cycles of any
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
    cur = (lo, hi)
    it, converged = 0, False
    for it in range(1, max_iter + 1):
        new = image_interval(p, *cur)
        if new[0] <= 0 or new[1] > DIVERGENCE_THRESHOLD:
            raise ValueError(
                f"iterating p from [{lo}, {hi}] leaves (0, {DIVERGENCE_THRESHOLD:g}): band {new} after {it} steps"
            )
        done = all(abs(a - b) <= 1e-14 * max(1.0, abs(b)) for a, b in zip(new, cur, strict=True))
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
    return Attractor(kind, cur, it, fps, found, err, converged, time.perf_counter() - t0)


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


def certified_error(
    schedule: Schedule | str | Sequence[Any],
    lo: float = 1e-3,
    hi: float = 1.0,
    *,
    coefficients: str = "float",
) -> float:
    """Certified worst ``|1 - phi_T|`` for inputs with ``sigma / ||G|| in [lo, hi]``.

    ``schedule`` is anything :func:`nsiter.load_schedule` takes (a ``Schedule``, registry name, path or
    list of coefficient tuples).

    The schedule's normalization divides by ``scale * ||G||``, so the polynomials see
    ``[lo / scale, hi / scale]``; the bound comes from :func:`analyze` (mpmath, rounded outward), for the
    float64 coefficients (``coefficients="float"``, what runs) or the stored exact rationals (``"exact"``).
    ``aol`` normalization is not a scalar map: ``ValueError``.  A diverging schedule gives ``inf``.
    """
    schedule = load_schedule(schedule)
    if schedule.normalization.norm == "aol":
        raise ValueError(
            f"schedule {schedule.name!r} uses 'aol' normalization, which has no scalar certificate"
        )
    s = schedule.normalization.scale
    res = analyze(schedule, lo / s, hi / s, coefficients=coefficients)
    if res.diverged:
        return float("inf")
    return float(res.final_error)
