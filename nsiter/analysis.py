"""Certified bands: what a schedule does to an interval of singular values.

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
neighbourhood across which ``p'`` provably changes sign, and its image enclosed by the mean-value form
(the primitives live in ``nsiter._interval``).  ``steps_to`` counts the steps to a certified error,
``certified_error`` is the worst error after a schedule, and ``image_interval`` is one step's band rounded
outward to doubles.

What iterating one polynomial forever does (fixed points, cycles, the attracting band) is
``nsiter.dynamics``; ``analyze(..., repeated=True)`` attaches it to the bands.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import mpmath
import numpy as np

from nsiter._display import html_table
from nsiter._interval import (
    PREC,
    End,
    StepMap,
    endpoints,
    image_enclosure,
    image_ends,
    interval_precision,
    positive_real_roots,
    round_down,
    round_up,
)
from nsiter.checks import DIVERGENCE_THRESHOLD, check_interval
from nsiter.dynamics import Attractor, attractor
from nsiter.dynamics import (
    fixed_points as fixed_points,  # moved to nsiter.dynamics; examples/convergence.ipynb
)
from nsiter.polynomial import OddPolynomial
from nsiter.registry import load_schedule
from nsiter.schedule import Schedule

__all__ = [
    "COEFFICIENTS",
    "MAX_ANALYZE_STEPS",
    "ScheduleAnalysis",
    "StepBand",
    "analyze",
    "certified_error",
    "critical_points",
    "decimal_up",
    "image_interval",
    "steps_to",
]

MAX_ANALYZE_STEPS = 5000  # most steps ``analyze`` and ``steps_to`` follow (checked before any work)


def critical_points(p: OddPolynomial, lo: float = 0.0, hi: float = math.inf) -> list[float]:
    """Positive critical points of ``p`` strictly inside ``(lo, hi)``: roots of ``p'`` via ``t = x^2``.

    Located at ``DPS`` digits and rounded to the nearest doubles (the certified bands widen each one to a
    neighbourhood where ``p'`` provably changes sign).
    """
    dcoeffs = [(2 * k + 1) * c for k, c in enumerate(p.coefficients)]
    pts = [float(mpmath.sqrt(t)) for t in positive_real_roots(dcoeffs)]
    return [c for c in pts if lo < c < hi]


def image_interval(p: OddPolynomial, lo: float, hi: float) -> tuple[float, float]:
    """Certified image ``p([lo, hi])`` as ``(a, b)``, rounded outward to doubles: ``a <= p(x) <= b`` on it.

    The same enclosure as one step of ``analyze`` (interval arithmetic at ``PREC`` bits, critical points
    widened to neighbourhoods where ``p'`` provably changes sign, their images by the mean-value form).

    Args:
        p: an odd polynomial (its float64 coefficients, exact binary rationals).
        lo, hi: the input interval, ``0 < lo <= hi``.

    Returns:
        ``(a, b)``: the smallest double ``a`` below ``min p`` and the largest ``b`` above ``max p`` that the
        enclosure proves; the endpoints and critical points inside decide them.

    Example:
        >>> from nsiter import OddPolynomial
        >>> image_interval(OddPolynomial([1.5, -0.5]), 0.5, 1.0)
        (0.6875, 1.0)
    """
    lo, hi = check_interval(lo, hi)
    return image_enclosure(StepMap(p), lo, hi)


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


_DECIMAL_MAG = 10**7  # beyond |v| = 2^+-1e7 decimal_up writes a power of two


def decimal_up(v: mpmath.mpf, digits: int = 17) -> str:
    """``v`` as a scientific decimal string rounded up (towards +inf) to ``digits`` significant digits.

    Works down to ``1e-3000000``; beyond (quadratic convergence gets there in ~40 more steps) a bound
    ``"2^-N"`` with ``|v| <= 2^-N`` for positive ``v`` (``"-2^-N"`` for negative).  The comparison with
    ``v`` runs at ``PREC + 40`` bits, so the
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
    def _from_ends(cls, step: int, lo: End, hi: End, slope: float, crit: Sequence[float] = ()) -> StepBand:
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

    @property
    def rows(self) -> list[dict[str, Any]]:
        """Tidy rows, one per step (``bands[k].to_row()`` with the schedule's name): an attribute, as
        ``Trajectory.rows`` and ``Measurement.rows`` are."""
        return [{**s.to_row(), "schedule": self.schedule} for s in self.bands]

    def to_pandas(self) -> Any:
        """The per-step rows as a ``pandas.DataFrame`` (pandas is imported on call)."""
        import pandas as pd

        return pd.DataFrame(self.rows)

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
        rows = [
            {
                "step": b.step,
                "lo": f"{b.lo:.6g}",
                "hi": f"{b.hi:.6g}",
                "certified error": b.error,
                "slope at 0": b.slope_at_zero,
            }
            for b in self.bands
        ]
        return html_table(repr(self), rows)

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
            "bands": self.rows,
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
    maps: dict[OddPolynomial, StepMap] = {}
    with interval_precision(PREC):
        lo_end, hi_end = End.of_double(lo), End.of_double(hi)
        yield StepBand._from_ends(0, lo_end, hi_end, 1.0), ""
        slope = 1.0
        for k in range(1, steps + 1):
            p = schedule[min(k, len(schedule)) - 1]
            m = maps.get(p)
            if m is None:
                m = maps[p] = StepMap(p, _rational_coefficients(p, coefficients))
            lo_end, hi_end, crit = image_ends(m, lo_end, hi_end)
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
        lo, hi: the interval, ``0 < lo <= hi``, of the singular values the first polynomial sees: those of
            ``X_0``, after the schedule's normalization (``lo = 1e-3`` as ``attractor``), as everywhere in
            nsiter; ``schedule.normalization.polynomial_interval`` converts ``sigma / ||G||`` bounds.
        steps: analyse the first ``steps`` steps, repeating the last polynomial beyond the schedule (at most
            ``MAX_ANALYZE_STEPS``, checked before any work); default: the schedule's length.
        repeated: also describe iterating the last step for ever from ``[lo, hi]`` (``attractor``: its
            band and proved cycles, e.g. Muon's attracting 4-cycle); about 0.1-0.3 s more.
        coefficients: which coefficients the certificate is for: ``"float"`` (default), the float64
            values the evaluator runs, or ``"exact"``, the stored exact rationals (e.g. the printed decimals
            of a published set, which no double equals); ``ValueError`` if a step has none.  The attractor
            always uses the float64 values.

    Example:
        >>> res = analyze("muon", 1e-3)
        >>> res
        ScheduleAnalysis('muon' on [0.001, 1]: 5 steps, band [0.470544, 1.20237], certified error 0.5295)
        >>> round(res.final.lo, 4), round(res.final.hi, 4)
        (0.4705, 1.2024)

    Returns:
        A ``ScheduleAnalysis``; ``diverged`` is set (and the analysis stops) if a band leaves every bound
        (``|value| > DIVERGENCE_THRESHOLD``, ``nsiter.checks``) or reaches zero/negative values, i.e. some
        singular value is sent to 0 or
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
        lo, hi: the interval the first polynomial sees, ``0 < lo <= hi`` (as for :func:`analyze`).
        tol: the target error, ``> 0``: a float, or a string / ``mpmath.mpf`` for targets below doubles.
        max_steps: give up after this many steps (at most ``MAX_ANALYZE_STEPS``).

    Example:
        >>> steps_to("cubic", 1e-3, 1e-12), steps_to("cubic", 1e-6, "1e-400"), steps_to("muon", 1e-3, 1e-3)
        (22, 44, None)

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


def certified_error(
    schedule: Schedule | str | Sequence[Any],
    lo: float = 1e-3,
    hi: float = 1.0,
    *,
    coefficients: str = "float",
) -> float:
    """Certified worst ``|1 - phi_T(x)|`` over ``x in [lo, hi]``: :func:`analyze`'s final error as a float.

    ``schedule`` is anything :func:`nsiter.load_schedule` takes (a ``Schedule``, registry name, path or
    list of coefficient tuples).  ``lo, hi`` are the interval the first polynomial sees, as for
    :func:`analyze` and :func:`steps_to`.  For inputs ``G`` known by ``sigma / ||G|| in [a, b]``, a
    schedule that divides by ``scale * ||G||`` (Polar Express: 1.01) runs its polynomials on
    ``schedule.normalization.polynomial_interval(a, b)`` = ``[a / scale, b / scale]``.  The bound is
    for the float64 coefficients (``coefficients="float"``, what runs) or the stored exact rationals
    (``"exact"``).  A diverging schedule gives ``inf``.

    Example:
        >>> f"{certified_error('polar-express', 1e-3):.3g}", f"{certified_error('muon', 1e-3):.4f}"
        ('1.86e-15', '0.5295')
        >>> pe = load_schedule("polar-express")
        >>> f"{certified_error(pe, *pe.normalization.polynomial_interval(1e-3, 1.0)):.3g}"
        '3.12e-15'
    """
    res = analyze(schedule, lo, hi, coefficients=coefficients)
    if res.diverged:
        return float("inf")
    return float(res.final_error)
