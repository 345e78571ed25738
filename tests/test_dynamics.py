"""Cycles of repeated maps: found by orbit iteration, proved by Krawczyk's test, checked independently."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest

from nsiter.dynamics import (
    MAX_CYCLE_PERIOD,
    attractor,
    convergence_bound,
    find_cycles,
    fixed_points,
    periodic_points,
    prove_cycle,
    repeated_attractor,
)
from nsiter.polynomial import OddPolynomial
from nsiter.registry import available_schedules, load_schedule
from nsiter.symbolic import newton_schulz

MUON = OddPolynomial([3.4445, -4.7750, 2.0315])  # KellerJordan/Muon muon.py


def float_orbit_tail(
    p: OddPolynomial, n_starts: int = 4000, iters: int = 20_000, keep: int = 512
) -> np.ndarray:
    """Independent check: iterate the float map for a long time from starts in (0, 1]; the last iterates."""
    x = np.concatenate([np.geomspace(1e-6, 1.0, n_starts // 2), np.linspace(1e-3, 1.0, n_starts // 2)])
    for _ in range(iters):
        x = p(x)
    tail = [x]
    for _ in range(keep - 1):
        tail.append(p(tail[-1]))
    return np.array(tail)


def mp_cycle_point(p: OddPolynomial, x0: float, period: int, dps: int = 100) -> mpmath.mpf:
    """Independent check: mpmath's findroot on p^k(x) - x from the reported double."""
    with mpmath.workdps(dps):
        coeffs = [mpmath.mpf(c) for c in p.coefficients]

        def pk(x):
            for _ in range(period):
                x = sum(c * x ** (2 * k + 1) for k, c in enumerate(coeffs))
            return x

        root = mpmath.findroot(lambda x: pk(x) - x, mpmath.mpf(x0))
        assert abs(pk(root) - root) < mpmath.mpf(10) ** (-dps + 5)
        return root


def test_muon_attracting_four_cycle_is_proved():
    (cyc,) = find_cycles(MUON, 1e-3, 1.0)
    assert cyc.period == 4 and cyc.proof == "krawczyk" and cyc.stability == "attracting"
    lo_m, hi_m = cyc.multiplier_enclosure
    assert -1 < lo_m <= cyc.multiplier <= hi_m < 1 and hi_m - lo_m < 1e-15
    assert cyc.share == 1.0  # every start in [1e-3, 1] ends on it
    # the orbit in iteration order from its smallest point, and the points are distinct (exact period 4)
    pts = cyc.points
    assert pts[0] == min(pts) and len({round(v, 6) for v in pts}) == 4
    for a, b in zip(pts, pts[1:] + pts[:1], strict=True):
        assert float(MUON(a)) == pytest.approx(b, rel=1e-14)
    # independent 1: p^4(x*) = x* to 100 digits, within the proved radius of the reported double
    root = mp_cycle_point(MUON, pts[0], 4)
    assert abs(root - pts[0]) <= cyc.radius < 1e-15
    # the multiplier from the mpmath orbit lies in the enclosure
    with mpmath.workdps(100):
        m, x = mpmath.mpf(1), root
        for _ in range(4):
            m *= sum((2 * k + 1) * mpmath.mpf(c) * x ** (2 * k) for k, c in enumerate(MUON.coefficients))
            x = sum(mpmath.mpf(c) * x ** (2 * k + 1) for k, c in enumerate(MUON.coefficients))
        assert lo_m <= m <= hi_m
    # independent 2: the float map iterated 20000 times from 4000 starts sits on the same four points
    tail = float_orbit_tail(MUON)
    assert np.allclose(tail[4], tail[0], rtol=0, atol=1e-12)  # period 4 ...
    assert not np.allclose(tail[2], tail[0], rtol=0, atol=1e-3)  # ... not 2 (nor 1)
    seen = np.unique(np.round(tail[:4].ravel(), 9))
    np.testing.assert_allclose(seen, np.round(sorted(pts), 9), rtol=0, atol=2e-9)


def test_muon_attractor_reports_the_cycle_and_the_repelling_two_cycle():
    att = attractor(MUON)
    assert att.kind == "cycle"
    two, four = att.cycles
    assert (two.period, two.stability, four.period, four.stability) == (2, "repelling", 4, "attracting")
    assert two.multiplier_enclosure[1] < -1 and two.proof == "krawczyk"
    # the attracting band contains the cycle; the cycle's own band is what orbits visit for ever
    assert att.band[0] <= four.band[0] < four.band[1] <= att.band[1]
    assert four.band == pytest.approx((0.6819193208062, 1.1342676403825), abs=1e-12)
    d = att.to_dict()
    assert d["cycles"][1]["period"] == 4 and d["cycles"][1]["proof"] == "krawczyk"
    assert len(d["cycles"][1]["multiplier_enclosure"]) == 2 and d["seconds"] > 0


def test_prove_cycle_rejects_a_wrong_period_and_proves_repelling_cycles():
    # a fixed point solves p^2(x) = x too, but its two orbit enclosures coincide: not an exact 2-cycle
    fp = next(f.x for f in fixed_points(MUON) if 0.5 < f.x < 1)
    wrong = prove_cycle(MUON, fp, 2)
    assert wrong.proof == "" and math.isnan(wrong.radius) and math.isnan(wrong.multiplier_enclosure[0])
    # the same point with period 1 is proved repelling, multiplier p'(x*) enclosed
    right = prove_cycle(MUON, fp, 1)
    assert right.proof == "krawczyk" and right.stability == "repelling"
    lo_m, hi_m = right.multiplier_enclosure
    assert (
        lo_m <= float(MUON.derivative(fp)) * (1 - 1e-14) and float(MUON.derivative(fp)) * (1 + 1e-14) <= hi_m
    )


def test_superattracting_fixed_point_of_the_classical_cubic():
    (cyc,) = find_cycles(load_schedule("cubic")[0], 1e-3, 1.0)
    assert cyc.period == 1 and cyc.points == (1.0,) and cyc.stability == "superattracting"
    assert cyc.proof == "krawczyk" and abs(cyc.multiplier_enclosure[0]) < 1e-70  # p'(1) = 0 exactly


@pytest.mark.parametrize("name", available_schedules())
def test_every_registry_schedules_repeated_last_step(name):
    p = load_schedule(name)[-1]
    att = repeated_attractor(name)
    attracting = att.attracting_cycles
    assert all(c.proof == "krawczyk" for c in att.cycles)
    tail = float_orbit_tail(p, n_starts=1000, iters=5000, keep=300)
    if not attracting:  # no period <= 256 found: the float orbits do not settle either
        assert att.kind == "band"
        assert len(np.unique(np.round(tail[:, 0], 8))) > 256
        return
    (cyc,) = attracting  # one attracting cycle per registry map, reached from every start
    assert cyc.share == 1.0
    # independently: long float orbits end on the proved points, with the proved period
    k = cyc.period
    assert np.allclose(tail[k], tail[0], rtol=0, atol=1e-9)
    np.testing.assert_allclose(
        np.unique(np.round(tail[:k].ravel(), 8)), np.round(sorted(cyc.points), 8), atol=2e-8
    )
    root = mp_cycle_point(p, cyc.points[0], k, dps=60)
    assert abs(root - cyc.points[0]) <= cyc.radius


def test_chaotic_band_has_positive_lyapunov_estimate():
    # nsiter-3step's last step repeated: no attracting cycle; a positive Lyapunov exponent (float estimate)
    p = load_schedule("nsiter-3step")[-1]
    assert find_cycles(p, 1e-3, 1.0) == ()
    x, s = 0.5, 0.0
    for _ in range(1000):
        x = float(p(x))
    for _ in range(20_000):
        s += math.log(abs(float(p.derivative(x))))
        x = float(p(x))
    assert s / 20_000 > 0.3


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"starts": 0}, "starts must be a positive integer, got 0"),
        ({"transient": -1}, "transient"),
        ({"max_period": 0}, "period must be an integer in 1..1000, got 0"),
        ({"max_period": MAX_CYCLE_PERIOD + 1}, "1001"),
    ],
)
def test_find_cycles_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        find_cycles(MUON, 1e-3, 1.0, **kwargs)


def test_bad_cycle_inputs():
    with pytest.raises(ValueError, match="finite"):
        prove_cycle(MUON, float("nan"), 2)
    with pytest.raises(ValueError, match="True"):
        prove_cycle(MUON, 0.7, True)
    with pytest.raises(ValueError, match="lo"):
        find_cycles(MUON, 0.0, 1.0)


def test_attractor_band_is_certified_to_trap_only_when_proved():
    """``invariant`` is a proof: ``image_interval`` of the band lies inside it.  From [0.5, 0.6] the cubic's
    first band [0.6875, 0.792] is not invariant (its image moves up towards 1); Muon's limit band is."""
    from nsiter.analysis import image_interval

    muon = attractor(MUON, 1e-3, 1.0)
    a, b = image_interval(MUON, *muon.band)
    assert muon.invariant and muon.band[0] <= a and b <= muon.band[1]
    cubic = OddPolynomial([1.5, -0.5])
    first = attractor(cubic, 0.5, 0.6, max_iter=1)
    assert first.band == pytest.approx((0.6875, 0.792), abs=1e-3)
    assert not first.converged and not first.invariant
    assert attractor(cubic, 0.5, 0.6).invariant


def test_convergence_bound_certifies_only_what_it_proves():
    """A map with ``p(1) = 1 - 1e-13`` passes the float checks, but 1 is not its fixed point: its orbits
    converge next to 1, not to 1, so the bound is returned and not certified.  The cubic's is proved."""
    from nsiter.dynamics import convergence_bound

    assert convergence_bound(OddPolynomial([1.5, -0.5])) == (pytest.approx(math.sqrt(3), rel=1e-16), True)
    near = OddPolynomial([1.5, -0.5 - 1e-13])
    assert abs(float(near(1.0)) - 1) < 1e-12
    b, certified = convergence_bound(near)
    assert b == pytest.approx(math.sqrt(3), rel=1e-12) and not certified


def test_muon_fixed_points_and_band():
    # p(x) = x  <=>  2.0315 t^2 - 4.775 t + 2.4445 = 0 with t = x^2
    disc = 4.775**2 - 4 * 2.0315 * 2.4445
    ts = [(4.775 - math.sqrt(disc)) / (2 * 2.0315), (4.775 + math.sqrt(disc)) / (2 * 2.0315)]
    fps = fixed_points(MUON)
    assert [f.x for f in fps] == pytest.approx([0.0, *np.sqrt(ts)], rel=1e-13)
    assert all(f.stability == "repelling" for f in fps)
    assert MUON(1.0) == pytest.approx(0.701)  # so 1 is not a fixed point
    att = attractor(MUON, 1e-3, 1.0)
    assert att.kind == "cycle" and att.converged  # the attracting 4-cycle (tests/test_dynamics.py)
    assert [(c.period, c.stability, c.proof) for c in att.cycles] == [
        (2, "repelling", "krawczyk"),
        (4, "attracting", "krawczyk"),
    ]
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
    # the same 2-cycle, proved: the root-finding orbit lies within its rounding of the proved one
    proved = att.cycles[0]
    assert sorted(proved.points) == pytest.approx(orbit, rel=1e-11)
    lo_m, hi_m = proved.multiplier_enclosure
    assert lo_m <= proved.multiplier <= hi_m < -1 and proved.multiplier == pytest.approx(mult, rel=1e-10)
    # no ValueError blow-up: period 4 needs a degree-625 polynomial, refused before any work
    with pytest.raises(ValueError, match="MAX_CYCLE_DEGREE"):
        attractor(MUON, 1e-3, 1.0, max_period=4)
    with pytest.raises(ValueError, match="MAX_CYCLE_DEGREE"):
        periodic_points(MUON, 4)


def test_convergent_iteration_attractor():
    att = attractor(newton_schulz(5), 1e-3, 1.0)
    assert att.kind == "converges" and att.band[0] == pytest.approx(1.0, abs=1e-12)
    fp = {round(f.x, 12): f.stability for f in att.fixed_points}
    assert fp[1.0] == "superattracting" and fp[0.0] == "repelling"


def test_convergence_bound_rejects_non_convergent():
    with pytest.raises(ValueError, match=r"p\(1\) = 0\.70(1|09)"):
        convergence_bound(MUON)
