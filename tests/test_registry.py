"""Registry of published schedules: integrity, lossless JSON, published values, and their mathematics.

The coefficient literals below are the independent reference: they are typed from the cited sources
(repository + path + commit, or paper + algorithm), not copied from the registry files.
"""

from __future__ import annotations

import json
from fractions import Fraction
from math import comb, inf, sqrt

import numpy as np
import pytest

from nsiter.polynomial import OddPolynomial
from nsiter.registry import available_schedules, load_schedule, registry_dir
from nsiter.schedule import Schedule
from nsiter.symbolic import newton_schulz
from tests.published import PE5_PRINTED, PE_PRINTED, TURBO_MUON, TURBO_MUON_7_DECIMALS, TURBO_MUON_V0

OURS = (
    "cubic",
    "quintic",
    "muon",
    "polar-express",
    "polar-express-5",
    "cesista-5",
    "jiacheng-6",
    "turbo-muon",
    "turbo-muon-v0-rowscale",
    "deepseek-v4",
    "polar-express-gram",
    "relaxed-cubic-5",
    "cans-5-nemo",
)
ALL = available_schedules()

# ---------------------------------------------------------------------------------------------- sources
# KellerJordan/Muon muon.py (commit 00ba60d3), zeropower_via_newtonschulz5: a, b, c = (3.4445, -4.7750, 2.0315)
MUON = (3.4445, -4.7750, 2.0315)


# KellerJordan/modded-nanogpt records/track_2_medium/2025-02-14_GPT2MediumOptCoeffs/1baa66b2-...txt
# (commit 074a1976), @leloykun's record "Tuned Muon Newton-Schulz coefficients".
CESISTA = [
    ("4.0848", "-6.8946", "2.9270"),
    ("3.9505", "-6.3029", "2.6377"),
    ("3.7418", "-5.5913", "2.3037"),
    ("2.8769", "-3.1427", "1.2046"),
    ("2.8366", "-3.0525", "1.2012"),
]

# modula-systems/modula _sources/algorithms/newton-schulz.rst.txt, "Jiacheng's six-step": numerators / 1024.
JIACHENG_1024 = [
    (3955, -8306, 5008),
    (3735, -6681, 3463),
    (3799, -6499, 3211),
    (4019, -6385, 2906),
    (2677, -3029, 1162),
    (2172, -1833, 682),
]

# The first Turbo-Muon set (flash-newton-schulz commit b73111d0 = Emerging-Optimizers "aol"), tests/published.py
AOL = TURBO_MUON_V0

# DeepSeek-V4 report (as quoted by secondary sources): 8 Muon steps, then 2 steps of (2, -1.5, 0.5).
DEEPSEEK_TAIL = (Fraction(2), Fraction(-3, 2), Fraction(1, 2))


def _fr(triple) -> tuple[Fraction, ...]:
    return tuple(Fraction(v) for v in triple)


def _p1(exact) -> Fraction:
    """p(1) = sum_k c_k."""
    return sum(exact, Fraction(0))


def _dp1(exact) -> Fraction:
    """p'(1) = sum_k (2k + 1) c_k."""
    return sum(((2 * k + 1) * c for k, c in enumerate(exact)), Fraction(0))


def _d2p1(exact) -> Fraction:
    """p''(1) = sum_k (2k + 1)(2k) c_k."""
    return sum(((2 * k + 1) * (2 * k) * c for k, c in enumerate(exact)), Fraction(0))


def _binomial_newton_schulz(degree: int) -> tuple[Fraction, ...]:
    """x * sum_{j<=l} binom(2j, j)/4^j (1 - x^2)^j: the truncated binomial series of (1 - xi)^(-1/2), xi = 1 - x^2.

    Expanding (1 - x^2)^j = sum_i binom(j, i) (-x^2)^i gives the coefficient of x^(2i+1).
    """
    ell = (degree - 1) // 2
    out = [Fraction(0)] * (ell + 1)
    for j in range(ell + 1):
        w = Fraction(comb(2 * j, j), 4**j)
        for i in range(j + 1):
            out[i] += w * comb(j, i) * (-1) ** i
    return tuple(out)


# ------------------------------------------------------------------------------------- integrity
def test_every_published_name_is_listed():
    missing = set(OURS) - set(ALL)
    assert not missing, f"registry lacks {sorted(missing)}"


@pytest.mark.parametrize("name", ALL)
def test_registry_file_loads_with_provenance_and_roundtrips(name):
    path = registry_dir() / f"{name}.json"
    s = load_schedule(name)
    assert s.name == name, "file stem and schedule name must agree"
    assert s.provenance.source.strip() and s.provenance.reference.strip()
    assert Schedule.from_json(s.to_json()) == s
    # lossless: what the loader kept re-serializes to exactly the stored JSON object
    assert s.to_dict() == json.loads(path.read_text())
    assert load_schedule(path) == s
    assert all(np.isfinite(c) for p in s for c in p.coefficients)


# ------------------------------------------------------------------------------- published values
def test_muon_matches_kellerjordan_muon():
    s = load_schedule("muon")
    assert len(s) == 5 and all(p.coefficients == MUON for p in s)
    assert all(p.exact == _fr(("3.4445", "-4.7750", "2.0315")) for p in s)
    n = s.normalization
    assert (n.norm, n.scale, n.eps) == ("frobenius", 1.0, 1e-7)


def test_polar_express_stores_the_coefficients_the_published_code_uses():
    s = load_schedule("polar-express")
    assert len(s) == 8
    for k, (a, b, c) in enumerate(PE_PRINTED[:-1]):
        # bit-for-bit the arithmetic of Algorithm 1's safety-factor line
        assert s[k].coefficients == (a / 1.01, b / 1.01**3, c / 1.01**5), k
    assert s[7].coefficients == PE_PRINTED[7] and s[7].exact == _fr(("15/8", "-5/4", "3/8"))
    n = s.normalization
    assert (n.norm, n.scale, n.eps) == ("frobenius", 1.01, 1e-7)
    params = s.provenance.parameters
    assert params["published_coefficients"] == [list(t) for t in PE_PRINTED]
    assert (params["l"], params["safety_factor"], params["steps"], params["degree"]) == (1e-3, 1.01, 8, 5)


def test_polar_express_safety_factor_is_p_of_x_over_1_01():
    """Sec. 4.4: each stored step is the printed polynomial evaluated at x / 1.01 (all but the last)."""
    s = load_schedule("polar-express")
    x = np.linspace(-1.2, 1.2, 2001)
    for k, printed in enumerate(PE_PRINTED[:-1]):
        expected = OddPolynomial(printed).scaled_input(1.01)(x)
        np.testing.assert_allclose(s[k](x), expected, rtol=1e-14, atol=1e-14)
        # and directly: p(x / 1.01) for the printed p
        np.testing.assert_allclose(s[k](x), OddPolynomial(printed)(x / 1.01), rtol=1e-13, atol=1e-13)


def test_polar_express_5_matches_modded_nanogpt():
    s = load_schedule("polar-express-5")
    assert [p.coefficients for p in s] == PE5_PRINTED
    n = s.normalization
    assert (n.norm, n.scale, n.eps) == ("frobenius", 1.02, 1e-6)


def test_cesista_5_matches_modded_nanogpt_record():
    s = load_schedule("cesista-5")
    assert [p.exact for p in s] == [_fr(t) for t in CESISTA]
    assert [p.coefficients for p in s] == [tuple(float(v) for v in t) for t in CESISTA]
    n = s.normalization
    assert (n.norm, n.scale, n.eps) == ("frobenius", 1.0, 1e-7)


def test_jiacheng_6_matches_modula_fractions_over_1024():
    s = load_schedule("jiacheng-6")
    assert [p.exact for p in s] == [tuple(Fraction(v, 1024) for v in t) for t in JIACHENG_1024]
    assert s.normalization.eps == 0.0


def test_turbo_muon_matches_the_current_flash_newton_schulz_set():
    s = load_schedule("turbo-muon")
    assert [p.exact for p in s] == [_fr(t) for t in TURBO_MUON]
    assert [p.coefficients for p in s] == [tuple(float(v) for v in t) for t in TURBO_MUON]
    n = s.normalization
    assert (n.norm, n.scale, n.eps) == ("aol", 1.0, 1e-7)
    assert "cdb03db" in s.provenance.source
    # the set as first printed is kept under a name that says what it is, with the same normalization
    s7 = load_schedule("turbo-muon-7-decimals")
    assert [p.exact for p in s7] == [_fr(t) for t in TURBO_MUON_7_DECIMALS]
    assert s7.normalization == n and "46d13a30" in s7.provenance.source


def test_turbo_muon_v0_keeps_the_first_aol_set():
    s = load_schedule("turbo-muon-v0-rowscale")
    assert [p.exact for p in s] == [_fr(t) for t in AOL]
    assert s.normalization.norm == "aol"


def test_turbo_muon_first_step_changes_the_sign_of_singular_values_near_one():
    """A property of the published 'aol' numbers (reported caveat): p_1(1) = 4.0098 - 7.0585 + 2.4635 < 0.

    p_1(x)/x = a + b t + c t^2 with t = x^2 vanishes at t* = (-b - sqrt(b^2 - 4ac)) / (2c), x* ~ 0.8837, so
    singular values in (x*, 1] come out negative after AOL preconditioning (which only bounds sigma <= 1).
    """
    a, b, c = _fr(AOL[0])
    assert _p1((a, b, c)) == Fraction(-5852, 10000)
    x_star = sqrt((-float(b) - sqrt(float(b * b - 4 * a * c))) / (2 * float(c)))
    assert 0.88 < x_star < 0.89
    s = load_schedule("turbo-muon-v0-rowscale")
    assert s.apply(0.5) > 0 and s.apply(1.0) < 0


def test_deepseek_v4_hybrid():
    s = load_schedule("deepseek-v4")
    assert len(s) == 10
    assert all(p.coefficients == MUON for p in s[:8])
    assert all(p.exact == DEEPSEEK_TAIL for p in s[8:])
    tail = DEEPSEEK_TAIL
    # fixed point at 1 with zero derivative (quadratic convergence), p''(1) = 6b + 20c = -9 + 10 = 1, p'(0) = 2
    assert (_p1(tail), _dp1(tail), _d2p1(tail), tail[0]) == (1, 0, 1, 2)


@pytest.mark.parametrize(("name", "degree"), [("cubic", 3), ("quintic", 5)])
def test_classical_newton_schulz_exact_rationals(name, degree):
    literal = {3: ("3/2", "-1/2"), 5: ("15/8", "-5/4", "3/8")}[degree]  # Bjorck & Bowie (1971); Higham (2008)
    s = load_schedule(name)
    assert s.is_exact and all(p.exact == _fr(literal) for p in s)
    assert s[0].exact == _binomial_newton_schulz(degree)
    assert _p1(s[0].exact) == 1 and _dp1(s[0].exact) == 0
    assert s.provenance.kind == "derived"


@pytest.mark.parametrize(("name", "steps"), [("cubic", 20), ("quintic", 13)])
def test_classical_default_length_is_first_to_reach_1e_3_on_1e_3_to_1(name, steps):
    """Stated rule: smallest k with max |1 - phi_k| <= 1e-3 on [1e-3, 1].

    p' = c (1 - x^2)^l >= 0 and p(1) = 1, so phi_k is increasing on [0, 1] and the worst point is x = 1e-3.
    """
    s = load_schedule(name)
    assert len(s) == steps
    x = np.linspace(0.0, 1.0, 10001)
    assert np.all(s[0].derivative(x) >= 0)
    dense = np.geomspace(1e-3, 1.0, 20001)
    assert np.max(np.abs(1 - s.apply(dense))) == pytest.approx(1 - s.apply(1e-3), abs=1e-15)
    # minimality: `steps` reaches 1e-3 and one step fewer does not; fails if the stored length is wrong
    assert 1 - s.apply(1e-3) <= 1e-3 < 1 - s.apply(1e-3, steps - 1)
    # independent reference: the exact rational coefficients of nsiter.symbolic in 50-digit arithmetic
    # (not the registry's floats, not float64), and neither count is a rounding-level call
    import mpmath

    exact = newton_schulz(s[0].degree).exact
    with mpmath.workdps(50):
        c = [mpmath.mpf(q.numerator) / q.denominator for q in exact]
        x, errs = mpmath.mpf(1) / 1000, []
        for _ in range(steps):
            x = x * mpmath.polyval(c[::-1], x * x)
            errs.append(1 - x)
        assert errs[-1] <= mpmath.mpf(1) / 1000 < errs[-2]
        assert errs[-1] < 0.1e-3 and errs[-2] > 5e-3  # far from the threshold on both sides


def test_muon_is_not_a_fixed_point_iteration_at_one():
    """Modula docs: 3.4445 - 4.7750 + 2.0315 = 0.701 != 1, so Muon's quintic does not converge to 1."""
    p = load_schedule("muon")[0]
    assert _p1(p.exact) == Fraction(701, 1000)
    assert sum(p.coefficients) == pytest.approx(0.701, abs=1e-15)


def test_polar_express_final_steps_approach_the_classical_quintic():
    quintic = np.array([15 / 8, -5 / 4, 3 / 8])
    a = [t[0] for t in PE_PRINTED]
    assert np.all(np.diff(a) <= 0)  # slope at zero decreases to 15/8
    gaps = [np.max(np.abs(np.array(t) - quintic)) for t in PE_PRINTED]
    assert gaps[-2] < 2e-6 and gaps[-1] == 0
    assert gaps[3] > gaps[4] > gaps[5] > gaps[6]


@pytest.mark.parametrize("name", OURS)
def test_matmul_counts(name):
    """A degree-2l+1 step costs l + 1 products: 2 per cubic step, 3 per quintic step."""
    s = load_schedule(name)
    per_step = {1: 2, 2: 3}
    assert s.matmuls == sum(per_step[len(p.coefficients) - 1] for p in s)
    expected = {"cubic": 40, "quintic": 39, "muon": 15, "polar-express": 24, "deepseek-v4": 30}
    if name in expected:
        assert s.matmuls == expected[name]


@pytest.mark.parametrize("name", [n for n in OURS if n != "turbo-muon-v0-rowscale"])
def test_no_singular_value_changes_sign(name):
    """On (0, 1/scale] every step keeps singular values positive (no polar factor of the wrong matrix)."""
    s = load_schedule(name)
    y = np.linspace(0.0, 1.0 / s.normalization.scale, 100001)[1:]
    for p in s:
        y = p(y)
        assert np.all(y > 0)


# ------------------------------------------------- re-derivation of the Polar Express coefficients
def _remez_odd_quintic(lo: float, hi: float) -> tuple[float, float, float]:
    """Best odd quintic a x + b x^3 + c x^5 approximating 1 on [lo, hi] (Chebyshev alternation, 4 points).

    Solve p(x_i) + (-1)^i E = 1 at lo < q < r < hi, then move q, r to the interior extrema of p
    (roots of p'(x) = a + 3 b x^2 + 5 c x^4), until E settles (Amsel et al. 2025, Sec. 4.2 / App. D).
    """
    if lo / hi >= 1 - 5e-6:  # the interval has collapsed: the (rescaled) Pade quintic
        return 15 / 8 / hi, -5 / 4 / hi**3, 3 / 8 / hi**5
    q, r = (3 * lo + hi) / 4, (lo + 3 * hi) / 4
    err, prev = inf, None
    while prev is None or abs(prev - err) > 1e-15:
        prev = err
        pts = (lo, q, r, hi)
        m = np.array([[x, x**3, x**5, (-1) ** i] for i, x in enumerate(pts)])
        a, b, c, err = np.linalg.solve(m, np.ones(4))
        disc = sqrt(9 * b * b - 20 * a * c)
        q, r = sqrt((-3 * b - disc) / (10 * c)), sqrt((-3 * b + disc) / (10 * c))
    return float(a), float(b), float(c)


def _polar_express(lo: float, steps: int, cushion: float, safety: float = 1.0) -> list[tuple[float, ...]]:
    """Amsel et al. (2025) offline stage: optimal step on [max(l, cushion u), u], recentred, safety x/s."""
    hi, out = 1.0, []
    for t in range(steps):
        p = OddPolynomial(_remez_odd_quintic(max(lo, cushion * hi), hi))
        if cushion * hi > lo:  # recentre so that 1 - p(l) = p(u) - 1
            p = OddPolynomial([2 * c / (p(lo) + p(hi)) for c in p.coefficients])
        if t < steps - 1:
            p = p.scaled_input(safety)
        out.append(p.coefficients)
        lo = float(p(lo))
        hi = 2 - lo
    return out


def test_printed_polar_express_list_follows_appendix_g():
    """Appendix G defaults: l = 1e-3, cushion = 0.02407327424182761, no safety factor inside the recursion."""
    s = load_schedule("polar-express")
    params = s.provenance.parameters
    assert params["cushion"] == 0.02407327424182761 and params["l"] == 1e-3
    got = _polar_express(1e-3, 8, 0.02407327424182761)
    np.testing.assert_allclose(np.array(got), np.array(PE_PRINTED), rtol=1e-7)


def test_modded_nanogpt_polar_express_5_follows_the_recursion_with_safety_1_02():
    """l = 1e-3, 5 steps, cushion 0.02, safety 1.02 inside the recursion for all but the last step."""
    params = load_schedule("polar-express-5").provenance.parameters
    assert (params["l"], params["cushion"], params["safety_factor"]) == (1e-3, 0.02, 1.02)
    got = _polar_express(1e-3, 5, 0.02, 1.02)
    np.testing.assert_allclose(np.array(got), np.array(PE5_PRINTED), rtol=1e-12)


# ------------------------------------------------------------------------------------- bad input
def test_unknown_name_raises_value_error_naming_it():
    with pytest.raises(ValueError, match="no-such-schedule"):
        load_schedule("no-such-schedule")


def test_non_string_raises_value_error():
    with pytest.raises(ValueError, match="123"):
        load_schedule(123)


def test_malformed_json_file_raises_value_error(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "nsiter.schedule/1", "steps": [')
    with pytest.raises(ValueError, match="malformed"):
        load_schedule(bad)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(format="other/9"), "format"),
        (lambda d: d["provenance"].update(source=""), "source"),
        (lambda d: d.pop("steps"), "steps"),
        (lambda d: d["steps"][0].update(coefficients=[3.0, -0.5], exact=["3/2", "-1/2"]), "disagrees"),
        (lambda d: d["steps"][0].update(repeat=0), "repeat"),
        (lambda d: d.update(colour="red"), "unknown keys"),
    ],
)
def test_invalid_schedule_file_raises_value_error(tmp_path, mutate, message):
    data = json.loads((registry_dir() / "cubic.json").read_text())
    mutate(data)
    path = tmp_path / "user.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=message):
        load_schedule(path)


def test_user_file_loads_by_path(tmp_path):
    s = load_schedule("quintic").truncated(3)
    path = s.save(tmp_path / "mine.json")
    assert load_schedule(str(path)) == s and len(load_schedule(path)) == 3
