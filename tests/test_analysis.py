"""Certified bands against dense evaluation (>= 1e6 points) and 50-digit sampling, limits, bad input."""

from __future__ import annotations

import inspect
import json
import math

import mpmath
import numpy as np
import pytest

from nsiter.analysis import (
    MAX_ANALYZE_STEPS,
    analyze,
    certified_error,
    critical_points,
    decimal_up,
    image_interval,
    steps_to,
)
from nsiter.dynamics import attractor
from nsiter.polynomial import OddPolynomial
from nsiter.registry import available_schedules, load_schedule
from nsiter.symbolic import newton_schulz

MUON = OddPolynomial([3.4445, -4.7750, 2.0315])  # KellerJordan/Muon muon.py


def dense_grid(lo: float, hi: float, n: int = 1_000_000) -> np.ndarray:
    """Half log-spaced, half linear points, endpoints included."""
    return np.unique(np.concatenate([np.geomspace(lo, hi, n // 2), np.linspace(lo, hi, n // 2)]))


@pytest.mark.parametrize("name", available_schedules())
@pytest.mark.parametrize("interval", [(1e-3, 1.0), (1e-2, 1.0)])
def test_bands_enclose_and_match_dense_sampling(name, interval):
    s = load_schedule(name)
    res = analyze(s, *interval)
    y = dense_grid(*interval)
    for band in res.bands[1:]:
        y = s[band.step - 1](y)
        mn, mx = y.min(), y.max()
        scale = max(1.0, abs(band.hi))
        # enclosure (dense values are rounded doubles: allow a few ulps of the composed map)
        assert band.lo <= mn + 1e-12 * scale and mx <= band.hi + 1e-12 * scale, (name, band.step)
        # tightness: the certified extremes are attained up to the grid's resolution
        assert mn - band.lo < 1e-6 * scale and band.hi - mx < 1e-6 * scale, (name, band.step)
        # the error is carried in high precision; the double endpoints and 1 - lo in doubles each round
        # by at most an ulp of numbers below 2
        float_error = max(abs(1 - band.lo), abs(1 - band.hi))
        assert abs(band.error - float_error) <= 2**-50, (name, band.step)
        assert band.error >= band.error_mp  # the double is the high-precision error rounded up


def test_monotone_and_critical_points_of_muon():
    # p'(x) = 3.4445 - 14.325 x^2 + 10.1575 x^4: roots from the quadratic formula in t = x^2
    a, b, c = 10.1575, -14.325, 3.4445
    t = sorted([(-b - math.sqrt(b * b - 4 * a * c)) / (2 * a), (-b + math.sqrt(b * b - 4 * a * c)) / (2 * a)])
    np.testing.assert_allclose(critical_points(MUON), np.sqrt(t), rtol=1e-14)
    res = analyze(load_schedule("muon"), 1e-3)
    assert not res.bands[1].monotone and res.bands[1].critical_points[0] == pytest.approx(math.sqrt(t[0]))
    # the first step's maximum is attained at the first critical point
    assert res.bands[1].hi == pytest.approx(float(MUON(math.sqrt(t[0]))), rel=1e-15)


def test_multiple_roots_of_the_derivative():
    # quintic: p'(x) = 15/8 (1 - x^2)^2 has a double root at 1; degree 7 a triple one
    for d in (5, 7, 9):
        p = newton_schulz(d)
        assert critical_points(p) == pytest.approx([1.0], abs=1e-12)
        lo, hi = image_interval(p, 0.5, 1.4)
        ends = [float(p(0.5)), float(p(1.4)), 1.0]  # endpoints and the critical point x = 1
        assert lo == pytest.approx(min(ends), rel=1e-15) and hi == pytest.approx(max(ends), rel=1e-15)


def test_polar_express_reaches_machine_precision_and_slope():
    res = analyze(load_schedule("polar-express"), 1e-3)
    assert res.final_error < 1e-12
    s = load_schedule("polar-express")
    assert res.slope_at_zero == pytest.approx(math.prod(p.coefficients[0] for p in s))


def test_divergence_is_reported():
    bad = OddPolynomial([3.0, 2.0])  # grows without bound
    from nsiter.schedule import Provenance, Schedule

    res = analyze(Schedule.repeated("bad", bad, 40, Provenance("user", "t")), 0.5)
    assert res.diverged and "diverges" in res.message
    flip = Schedule.repeated("flip", OddPolynomial([1.5, -0.5]), 2, Provenance("user", "t"))
    res = analyze(flip, 0.5, 2.0)  # p(2) = -1: singular values flip sign
    assert res.diverged and "<= 0" in res.message


@pytest.mark.parametrize(
    ("lo", "hi", "match"),
    [
        (0.0, 1.0, "lo must be > 0"),
        (-1.0, 1.0, "lo"),
        (2.0, 1.0, "lo <= hi"),
        (float("nan"), 1.0, "nan"),
        (1e-3, float("inf"), "inf"),
        ("a", 1.0, "'a'"),
    ],
)
def test_bad_intervals(lo, hi, match):
    with pytest.raises(ValueError, match=match):
        analyze(load_schedule("muon"), lo, hi)
    with pytest.raises(ValueError, match=match):
        image_interval(MUON, lo, hi)


def test_a_point_interval_is_the_image_of_a_point():
    """One rule everywhere (nsiter.checks): 0 < lo <= hi.  A point band maps to the point p(x)."""
    res = analyze(load_schedule("muon"), 0.5, 0.5, steps=2)
    x1 = float(MUON(0.5))
    assert res.bands[1].lo <= x1 <= res.bands[1].hi and res.bands[1].hi - res.bands[1].lo < 1e-15
    assert res.bands[2].lo <= float(MUON(x1)) <= res.bands[2].hi


# ------------------------------------------------------------------- errors below the unit roundoff
def _worst_error_by_iteration(coeffs, lo, steps, dps=1200):
    """Independent reference: iterate the scalar map at the worst point ``lo`` with ``dps`` digits.

    For the classical maps p(x) >= x on [0, 1] with p(1) = 1 and p increasing there, phi_k is increasing
    on [lo, 1] with phi_k(1) = 1, so the worst error over [lo, 1] is 1 - phi_k(lo).  Plain iteration of x
    keeps 1 - x only while it is above 10^-dps: enough digits for the errors tested (down to 1e-500)."""
    with mpmath.workdps(dps):
        x = mpmath.mpf(lo)
        out = []
        for _ in range(steps):
            x = sum(mpmath.mpf(c) * x ** (2 * k + 1) for k, c in enumerate(coeffs))
            out.append(1 - x)
        return out


@pytest.mark.parametrize(
    ("name", "coeffs", "lo", "steps"),
    [("cubic", (1.5, -0.5), 1e-6, 44), ("quintic", (1.875, -1.25, 0.375), 1e-6, 28)],
)
def test_certified_errors_far_below_unit_roundoff(name, coeffs, lo, steps):
    res = analyze(name, lo, steps=steps)
    ref = _worst_error_by_iteration(coeffs, lo, steps)
    for band, r in zip(res.bands[1:], ref, strict=True):
        # certified: never below the true error; tight: within the 300-bit interval arithmetic's slack
        with mpmath.workdps(1200):
            assert r <= band.error_mp <= r * (1 + mpmath.mpf(10) ** -60), (band.step, r, band.error_mp)
        assert band.deficit == band.error_mp and band.excess == 0  # the band is [1 - deficit, 1] exactly
    assert ref[-1] < mpmath.mpf(10) ** -300  # far below any double's reach ...
    assert res.final_error == 5e-324  # ... so the double field holds the smallest subnormal, still a bound
    assert res.final_error_mp == res.errors_mp[-1] and res.errors[-2] >= float(res.errors_mp[-2])


def test_cubic_from_1e6_over_40_steps_stays_tight_below_double_resolution():
    # `nsiter analyze cubic --lo 1e-6 --steps 40` used to end at 2.2e-16 and 1.1e-16 (float band endpoints)
    res = analyze("cubic", 1e-6, steps=40)
    ref = _worst_error_by_iteration((1.5, -0.5), 1e-6, 40, dps=200)
    assert res.errors[-1] < 1e-30 and res.errors[-1] == pytest.approx(float(ref[-1]), rel=1e-15)
    assert res.errors[-2] == pytest.approx(float(ref[-2]), rel=1e-15) and res.errors[-2] < 2**-52


def test_error_strings_round_up():
    for v in (
        mpmath.mpf("2.96698145456229905e-32"),
        mpmath.mpf(1) / 3,
        -mpmath.mpf(1) / 3,
        mpmath.mpf(10) ** -5000,
    ):
        s = decimal_up(v)
        assert mpmath.mpf(s) >= v and mpmath.mpf(s) - v <= abs(v) * mpmath.mpf(10) ** -15, (s, v)
    assert decimal_up(mpmath.mpf(0)) == "0"
    tiny = mpmath.mpf(2) ** -(10**9)  # beyond decimal digits: a power of two bounds it
    assert decimal_up(tiny) == f"2^{-(10**9) + 1}" and decimal_up(-tiny) == f"-2^{-(10**9)}"


def test_analyze_inputs_names_lists_and_limits():
    by_name = analyze("muon")  # a registry name, lo defaults to attractor's 1e-3
    assert by_name.lo == inspect.signature(attractor).parameters["lo"].default == 1e-3
    assert by_name.errors == analyze(load_schedule("muon"), 1e-3).errors
    assert analyze([[3.4445, -4.7750, 2.0315]] * 5).errors == by_name.errors
    with pytest.raises(ValueError, match="MAX_ANALYZE_STEPS"):
        analyze("muon", steps=10**6)  # refused before any work
    with pytest.raises(ValueError, match="MAX_ANALYZE_STEPS"):
        analyze("muon", steps=MAX_ANALYZE_STEPS + 1)  # the limit is the boundary, not a loose bound
    with pytest.raises(ValueError, match="steps must be a positive integer, got 0"):
        analyze("muon", steps=0)
    with pytest.raises(ValueError, match="unknown schedule 'no-such'"):
        analyze("no-such")


def test_analysis_reports_the_repeated_maps_cycle():
    res = analyze("muon", repeated=True)
    assert res.attractor is not None and res.attractor.kind == "cycle"
    d = res.to_dict()
    four = next(c for c in d["attractor"]["cycles"] if c["period"] == 4)
    assert four["stability"] == "attracting" and four["proof"] == "krawczyk"
    assert -1 < four["multiplier_enclosure"][0] <= four["multiplier_enclosure"][1] < 0
    json.dumps(d)  # JSON-ready: the high-precision fields are decimal strings
    assert (
        d["final_error_mp"] == decimal_up(res.final_error_mp) and "attractor" not in analyze("muon").to_dict()
    )
    # a tuned schedule: its last step repeated for ever converges to the superattracting fixed point 1
    pe = analyze("polar-express", repeated=True).attractor
    assert pe.kind == "converges" and pe.attracting_cycles[0].points == (1.0,)


def test_certified_error_takes_every_schedule_form():
    # a registry name, a Schedule and a coefficient list give the same certificate (names promised everywhere)
    sched = load_schedule("muon")
    by_name = certified_error("muon", 1e-3)
    assert by_name == certified_error(sched, 1e-3)
    assert by_name == certified_error([p.coefficients for p in sched.steps], 1e-3)
    assert by_name == analyze(sched, 1e-3).final_error


# ------------------------------------------------------------------- which coefficients are certified
def _grid_worst(coeff_steps, xs) -> mpmath.mpf:
    """max |1 - phi(x)| over ``xs`` at 60 digits, for steps given as rationals (floats are binary rationals)."""
    worst = mpmath.mpf(0)
    with mpmath.workdps(60):
        cs = [[mpmath.mpf(c.numerator) / c.denominator for c in step] for step in coeff_steps]
        for x in xs:
            y = mpmath.mpf(x)
            for c in cs:
                t = y * y
                y = y * (c[0] + t * (c[1] + t * c[2])) if len(c) == 3 else y * (c[0] + t * c[1])
            worst = max(worst, abs(1 - y))
    return worst


def test_certificate_for_the_float64_values_or_the_exact_rationals():
    """cans-5-nemo stores its printed 4-decimal rationals, which no double equals: the two certificates
    differ (by about 3e-13 relative), each bounds its own composition on a dense grid (60 digits), and the
    grid maxima move the same way.  Where the rationals are dyadic (jiacheng-6: numerators over 1024) both
    certificates are the same number."""
    from fractions import Fraction

    s = load_schedule("cans-5-nemo")
    as_float, as_exact = certified_error(s), certified_error(s, coefficients="exact")
    assert as_float != as_exact and 1e-14 < abs(as_float - as_exact) / as_exact < 1e-12
    xs = np.geomspace(1e-3, 1.0, 4001)
    g_float = _grid_worst([[Fraction(c) for c in p.coefficients] for p in s], xs)
    g_exact = _grid_worst([list(p.exact) for p in s], xs)
    assert g_float <= as_float and g_exact <= as_exact and as_exact - g_exact < 1e-3  # 4001 points
    assert (g_float > g_exact) == (as_float > as_exact)
    j = load_schedule("jiacheng-6")
    assert all(Fraction(c) == e for p in j for c, e in zip(p.coefficients, p.exact, strict=True))
    assert certified_error(j, coefficients="exact") == certified_error(j)
    with pytest.raises(ValueError, match="stores floats only"):
        certified_error(load_schedule("polar-express"), coefficients="exact")
    with pytest.raises(ValueError, match="coefficients must be one of"):
        analyze(s, 1e-3, 1.0, coefficients="rational")


def _mp_value(p: OddPolynomial, x: mpmath.mpf) -> mpmath.mpf:
    return sum(mpmath.mpf(c) * x ** (2 * k + 1) for k, c in enumerate(p.coefficients))


@pytest.mark.parametrize("name", ["muon", "polar-express", "cans-5", "deepseek-v4", "jiacheng-6"])
@pytest.mark.parametrize("interval", [(1e-3, 1.0), (0.5, 1.2), (0.93, 1.07)])
def test_image_interval_contains_every_50_digit_sample(name, interval):
    """The certified image contains p(x) at 2001 grid points and at every critical point, each evaluated at
    50 digits independently of nsiter (mpmath, plain power sums), and is tight to a few units of 1e-16."""
    lo, hi = interval
    for p in dict.fromkeys(load_schedule(name)):
        a, b = image_interval(p, lo, hi)
        with mpmath.workdps(50):
            xs = [mpmath.mpf(lo) + (mpmath.mpf(hi) - lo) * k / 2000 for k in range(2001)]
            dp = [(2 * k + 1) * mpmath.mpf(c) for k, c in enumerate(p.coefficients)]
            for t in mpmath.polyroots(dp[::-1], maxsteps=200, extraprec=200):
                if abs(mpmath.im(t)) < 1e-30 and mpmath.re(t) > 0 and lo < mpmath.sqrt(mpmath.re(t)) < hi:
                    xs.append(mpmath.sqrt(mpmath.re(t)))
            ys = [_mp_value(p, x) for x in xs]
            assert a <= min(ys) and max(ys) <= b, (p, a, b, min(ys), max(ys))
            assert min(ys) - a <= 4e-16 * max(1, abs(a)) and b - max(ys) <= 4e-16 * max(1, abs(b))


def test_image_interval_is_an_enclosure_below_fifty_digits():
    """``p(x) = 2x - x^3`` at ``x = 1e-300`` is ``2e-300 - 1e-900``: 50-digit values rounded to doubles
    report ``2e-300`` as the minimum, above the true one; the interval enclosure stays below it."""
    p = OddPolynomial([2.0, -1.0])
    a, _ = image_interval(p, 1e-300, 1.0)
    with mpmath.workdps(1000):
        exact = _mp_value(p, mpmath.mpf(1e-300))
        assert exact < 2 * mpmath.mpf(1e-300)
        assert mpmath.mpf(a) <= exact


@pytest.mark.parametrize("name", ["polar-express", "polar-express-5", "muon", "cans-5"])
def test_lo_is_the_interval_the_polynomials_see_in_every_schedule_function(name):
    """analyze, steps_to and certified_error read ``[lo, hi]`` alike: the singular values of ``X_0``.

    A scaled schedule (Polar Express divides by 1.01 ||G||) is certified for ``sigma / ||G||`` in ``[lo, 1]``
    on ``normalization.polynomial_interval``; dense sampling of ``phi_T(x / scale)`` stays inside that
    certificate and comes within the sampling resolution of it.
    """
    s = load_schedule(name)
    lo = 1e-3
    a = analyze(s, lo)
    assert (a.bands[0].lo, a.bands[0].hi) == (lo, 1.0)  # no scaling inside: the given interval is X_0's
    assert certified_error(s, lo) == a.final_error
    assert steps_to(s, lo, a.final_error * (1 + 1e-9)) <= len(s)
    a_lo, a_hi = s.normalization.polynomial_interval(lo, 1.0)
    assert (a_lo, a_hi) == (lo / s.normalization.scale, 1.0 / s.normalization.scale)
    converted = certified_error(s, a_lo, a_hi)
    x = np.geomspace(lo, 1.0, 200_001) / s.normalization.scale
    sampled = float(np.max(np.abs(1 - s.apply(x))))
    rounding = 4 * len(s) * np.finfo(float).eps  # float64 Horner per step, results near 1
    assert sampled <= converted + rounding
    assert sampled >= converted * (1 - 1e-3) - rounding
    assert (converted == certified_error(s, lo)) == (s.normalization.scale == 1.0)


def test_polynomial_interval_refuses_aol():
    with pytest.raises(ValueError, match="aol"):
        load_schedule("turbo-muon").normalization.polynomial_interval(1e-3, 1.0)
    with pytest.raises(ValueError, match="lo"):
        load_schedule("muon").normalization.polynomial_interval(0.0, 1.0)
