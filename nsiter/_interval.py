"""Interval arithmetic shared by the band analysis (``nsiter.analysis``) and the dynamics (``nsiter.dynamics``).

One home for the rigorous primitives: the working precisions, outward rounding to doubles, Horner's rule
for odd polynomials on any number type, the positive real roots of a polynomial at ``DPS`` digits, and the
enclosure of the image ``p([lo, hi])`` of one interval under one odd polynomial (``StepMap``,
``image_ends``, ``image_enclosure``).

The image of an interval under a continuous ``p`` lies between the smallest and the largest value of ``p``
at the endpoints and at the critical points inside.  Critical points are the positive roots of
``p'(x) = sum_k (2k+1) c_k x^(2k)``, found as roots of a polynomial in ``t = x^2`` with
``mpmath.polyroots`` at ``DPS`` digits; each is widened to a neighbourhood across which ``p'`` provably
changes sign, and its image enclosed by the mean-value form.  All values are ``mpmath.iv`` intervals at
``PREC`` bits, rounded outward, and endpoints next to 1 are held by their deviation ``d = 1 - x`` and
mapped by ``q(d) = 1 - p(1 - d)`` expanded with exact rational coefficients, so enclosures stay tight far
below the unit roundoff (Moore, Kearfott & Cloud, *Introduction to Interval Analysis*, SIAM 2009).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import mpmath
from mpmath import iv

from nsiter.polynomial import OddPolynomial

DPS = 50  # working precision (decimal digits) for roots and extreme values
PREC = 300  # bits of the interval arithmetic (about 90 digits)
_IMAG_TOL = 1e-20  # roots with |imag| below this (relative) count as real; extra candidates are harmless


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


def round_down(v: mpmath.mpf) -> float:
    """The largest double ``<= v`` (outward rounding of a lower endpoint)."""
    f = float(v)
    return math.nextafter(f, -math.inf) if f > v else f


def round_up(v: mpmath.mpf) -> float:
    """The smallest double ``>= v`` (outward rounding of an upper endpoint)."""
    f = float(v)
    return math.nextafter(f, math.inf) if f < v else f


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


# ------------------------------------------------------------------------------------ roots at DPS digits
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


def positive_real_roots(coeffs_ascending: Sequence[Any]) -> list[mpmath.mpf]:
    """Real positive roots of ``sum_k a_k t^k`` (``mpmath.polyroots``, ``DPS`` digits): located, not proved.

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


# ------------------------------------------------------------------------ the image of one interval, enclosed
def dev_coefficients(fr: list[Fraction]) -> list[Fraction]:
    """Exact ascending coefficients of ``q(d) = 1 - p(1 - d)`` from the odd coefficients ``fr`` of ``p``."""
    q = [Fraction(0)] * (2 * len(fr))
    for k, c in enumerate(fr):
        e = 2 * k + 1
        for j in range(e + 1):
            q[j] -= Fraction(c) * math.comb(e, j) * (-1) ** j
    q[0] += 1
    return q


class StepMap:
    """One polynomial as the enclosures use it, prepared once: interval coefficients of ``p`` and of
    ``q(d) = 1 - p(1 - d)``, and the positive critical points (``1`` exactly when ``p'(1) = 0`` over Q).

    ``rationals`` are the coefficients the enclosure is for (default: ``p``'s float64 values, exact binary
    rationals).  It is built at ``PREC`` bits; use it inside ``interval_precision(PREC)``.
    """

    def __init__(self, p: OddPolynomial, rationals: list[Fraction] | None = None) -> None:
        fr = [Fraction(c) for c in p.coefficients] if rationals is None else rationals
        with interval_precision(PREC):
            # dyadic rationals are exact at PREC bits; other rationals (decimals) are enclosed outward by iv
            self.coeffs = [iv.mpf(c.numerator) / c.denominator for c in fr]
            self.dev = [iv.mpf(c.numerator) / c.denominator for c in dev_coefficients(fr)]
            dcoeffs = [(2 * k + 1) * c for k, c in enumerate(fr)]
            self.critical_at_one = sum(dcoeffs) == 0
            with mpmath.workdps(DPS):
                roots = [mpmath.sqrt(t) for t in positive_real_roots(dcoeffs)]
            if (
                self.critical_at_one
            ):  # the exact root 1 is handled exactly; polyroots' copies of it are dropped
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

    def image(self, x: End) -> tuple[Any, Any]:
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
class End:
    """A band endpoint held exactly: the value ``v``, or (``dev``) the deviation ``v = 1 - value``, so values
    next to 1 keep every digit of their distance to 1 (``|v| <= 1/2`` in that form)."""

    dev: bool
    v: mpmath.mpf

    @classmethod
    def of_double(cls, x: float) -> End:
        """An input endpoint; ``1 - x`` is exact for doubles in ``[1/2, 3/2]`` (Sterbenz's lemma)."""
        return cls(True, 1 - mpmath.mpf(x)) if 0.5 <= x <= 1.5 else cls(False, mpmath.mpf(x))

    @classmethod
    def lower(cls, y: Any, d: Any) -> End:
        """The lower end of the enclosures ``y`` of a value and ``d`` of ``1 - value``."""
        dv = endpoints(d)[1]
        return cls(True, dv) if abs(dv) <= 0.5 else cls(False, endpoints(y)[0])

    @classmethod
    def upper(cls, y: Any, d: Any) -> End:
        dv = endpoints(d)[0]
        return cls(True, dv) if abs(dv) <= 0.5 else cls(False, endpoints(y)[1])

    def value(self) -> Any:
        """The value as an ``iv`` interval."""
        return 1 - iv.mpf(self.v) if self.dev else iv.mpf(self.v)

    def deviation(self) -> Any:
        """``1 - value`` as an ``iv`` interval."""
        return iv.mpf(self.v) if self.dev else 1 - iv.mpf(self.v)


def image_ends(m: StepMap, lo: End, hi: End) -> tuple[End, End, list[float]]:
    """Outward enclosure of ``p([lo, hi])``: min and max over the endpoints and the critical points inside."""
    a, b = endpoints(lo.value())[0], endpoints(hi.value())[1]
    inside = [(c, r) for c, r in m.critical if a < c + r and c - r < b]
    crit = [c for c, _ in inside]
    images = [m.image(lo), m.image(hi), *(m.critical_image(c, r) for c, r in inside)]
    if m.critical_at_one and a < 1 < b:
        images.append(m.image(End(True, mpmath.mpf(0))))
        crit.append(mpmath.mpf(1))
    # order by the value's bound, ties (below PREC bits) broken exactly by the deviation's bound
    low = min(images, key=lambda t: (endpoints(t[0])[0], -endpoints(t[1])[1]))
    high = max(images, key=lambda t: (endpoints(t[0])[1], -endpoints(t[1])[0]))
    return End.lower(*low), End.upper(*high), sorted(float(c) for c in crit)


def image_enclosure(m: StepMap, lo: float, hi: float) -> tuple[float, float]:
    """``p([lo, hi])`` enclosed and rounded outward to doubles: ``a <= p(x) <= b`` for every ``x`` in it."""
    with interval_precision(PREC):
        low, high, _ = image_ends(m, End.of_double(lo), End.of_double(hi))
        return round_down(endpoints(low.value())[0]), round_up(endpoints(high.value())[1])
