"""Certified bands against dense evaluation (>= 1e6 points), fixed points, attractors, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nsiter.analysis import (
    analyze,
    attractor,
    convergence_bound,
    critical_points,
    fixed_points,
    image_interval,
    periodic_points,
)
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
    for band in res.steps[1:]:
        y = s[band.step - 1](y)
        mn, mx = y.min(), y.max()
        scale = max(1.0, abs(band.hi))
        # enclosure (dense values are rounded doubles: allow a few ulps of the composed map)
        assert band.lo <= mn + 1e-12 * scale and mx <= band.hi + 1e-12 * scale, (name, band.step)
        # tightness: the certified extremes are attained up to the grid's resolution
        assert mn - band.lo < 1e-6 * scale and band.hi - mx < 1e-6 * scale, (name, band.step)
        assert band.error == pytest.approx(max(abs(1 - band.lo), abs(1 - band.hi)))


def test_monotone_and_critical_points_of_muon():
    # p'(x) = 3.4445 - 14.325 x^2 + 10.1575 x^4: roots from the quadratic formula in t = x^2
    a, b, c = 10.1575, -14.325, 3.4445
    t = sorted([(-b - math.sqrt(b * b - 4 * a * c)) / (2 * a), (-b + math.sqrt(b * b - 4 * a * c)) / (2 * a)])
    np.testing.assert_allclose(critical_points(MUON), np.sqrt(t), rtol=1e-14)
    res = analyze(load_schedule("muon"), 1e-3)
    assert not res.steps[1].monotone and res.steps[1].critical_points[0] == pytest.approx(math.sqrt(t[0]))
    # the first step's maximum is attained at the first critical point
    assert res.steps[1].hi == pytest.approx(float(MUON(math.sqrt(t[0]))), rel=1e-15)


def test_multiple_roots_of_the_derivative():
    # quintic: p'(x) = 15/8 (1 - x^2)^2 has a double root at 1; degree 7 a triple one
    for d in (5, 7, 9):
        p = newton_schulz(d)
        assert critical_points(p) == pytest.approx([1.0], abs=1e-12)
        lo, hi = image_interval(p, 0.5, 1.4)
        ends = [float(p(0.5)), float(p(1.4)), 1.0]  # endpoints and the critical point x = 1
        assert lo == pytest.approx(min(ends), rel=1e-15) and hi == pytest.approx(max(ends), rel=1e-15)


def test_muon_fixed_points_and_band():
    # p(x) = x  <=>  2.0315 t^2 - 4.775 t + 2.4445 = 0 with t = x^2
    disc = 4.775**2 - 4 * 2.0315 * 2.4445
    ts = [(4.775 - math.sqrt(disc)) / (2 * 2.0315), (4.775 + math.sqrt(disc)) / (2 * 2.0315)]
    fps = fixed_points(MUON)
    assert [f.x for f in fps] == pytest.approx([0.0, *np.sqrt(ts)], rel=1e-13)
    assert all(f.stability == "repelling" for f in fps)
    assert MUON(1.0) == pytest.approx(0.701)  # so 1 is not a fixed point
    att = attractor(MUON, 1e-3, 1.0)
    assert att.kind == "band" and att.converged
    # dense iteration: long-run orbits of 1e5 starting points fill the band and stay inside it
    y = np.geomspace(1e-3, 1.0, 100_000)
    for _ in range(60):
        y = MUON(y)
    hull = (y.min(), y.max())
    assert att.band[0] <= hull[0] + 1e-12 and hull[1] <= att.band[1] + 1e-12
    assert hull[0] - att.band[0] < 1e-3 and att.band[1] - hull[1] < 1e-3
    # the 2-cycle inside the band is repelling: p(p(x)) = x, p(x) != x
    (orbit, mult, stab) = periodic_points(MUON, 2)[0]
    assert MUON(MUON(orbit[0])) == pytest.approx(orbit[0], rel=1e-12) and stab == "repelling"
    assert mult == pytest.approx(MUON.derivative(orbit[0]) * MUON.derivative(orbit[1]))


def test_convergent_iteration_attractor():
    att = attractor(newton_schulz(5), 1e-3, 1.0)
    assert att.kind == "converges" and att.band[0] == pytest.approx(1.0, abs=1e-12)
    fp = {round(f.x, 12): f.stability for f in att.fixed_points}
    assert fp[1.0] == "superattracting" and fp[0.0] == "repelling"


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
        (1.0, 1.0, "lo < hi"),
        (2.0, 1.0, "lo < hi"),
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


def test_convergence_bound_rejects_non_convergent():
    with pytest.raises(ValueError, match=r"p\(1\) = 0\.70(1|09)"):
        convergence_bound(MUON)
