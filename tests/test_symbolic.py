"""The Newton–Schulz family derived exactly; checked against closed forms independent of the derivation."""

from __future__ import annotations

from fractions import Fraction
from math import comb

import mpmath
import numpy as np
import pytest
import sympy as sp

from nsiter.dynamics import convergence_bound
from nsiter.polynomial import OddPolynomial
from nsiter.schedule import Provenance, Schedule
from nsiter.symbolic import compose_exact, newton_schulz, newton_schulz_family, pade_iteration, x


def closed_form(degree: int) -> list[Fraction]:
    """Integrate p'(x) = c_l (1 - x^2)^l with c_l = (2l+1) binom(2l, l) / 4^l term by term."""
    l = (degree - 1) // 2  # noqa: E741
    c = Fraction((2 * l + 1) * comb(2 * l, l), 4**l)
    return [c * (-1) ** k * comb(l, k) / (2 * k + 1) for k in range(l + 1)]


def test_published_low_degrees():
    # Higham, Functions of Matrices (2008), §8.3; Björck & Bowie (1971): cubic and quintic Newton–Schulz
    assert newton_schulz(3).exact == (Fraction(3, 2), Fraction(-1, 2))
    assert newton_schulz(5).exact == (Fraction(15, 8), Fraction(-10, 8), Fraction(3, 8))
    assert newton_schulz(7).exact == (Fraction(35, 16), Fraction(-35, 16), Fraction(21, 16), Fraction(-5, 16))


@pytest.mark.parametrize("degree", [3, 5, 7, 9, 11])
def test_exact_rationals_match_closed_form(degree):
    p = newton_schulz(degree)
    assert p.exact == tuple(closed_form(degree))
    # fixes 1 exactly and p'(1) = 0 (exact rational arithmetic)
    assert sum(p.exact) == 1
    assert sum((2 * k + 1) * c for k, c in enumerate(p.exact)) == 0


@pytest.mark.parametrize("degree", [3, 5, 7, 9, 11])
def test_order_and_error_constant(degree):
    m = newton_schulz_family(degree)
    l = m.l  # noqa: E741
    assert m.order == l + 1
    assert m.derivative_constant == sp.Rational((2 * l + 1) * comb(2 * l, l), 4**l)
    assert m.error_constant == m.derivative_constant * 2**l / (l + 1)
    # numerically, at 200 digits: (1 - p(1 - e)) / e^(l+1) -> C as e -> 0
    with mpmath.workdps(200):
        e = mpmath.mpf("1e-12")
        xv = 1 - e
        val = sum(
            mpmath.mpf(c.numerator) / c.denominator * xv ** (2 * k + 1)
            for k, c in enumerate(m.polynomial.exact)
        )
        ratio = (1 - val) / e ** (l + 1)
        assert abs(ratio - mpmath.mpf(str(m.error_constant.p)) / m.error_constant.q) < 1e-9


def test_convergence_bounds_closed_forms():
    assert newton_schulz_family(3).convergence_bound == sp.sqrt(3)
    assert sp.simplify(newton_schulz_family(5).convergence_bound - sp.sqrt(sp.Rational(7, 3))) == 0


@pytest.mark.parametrize("degree", [3, 5, 7, 9])
def test_convergence_interval_by_iteration(degree):
    m = newton_schulz_family(degree)
    b = float(sp.N(m.convergence_bound, 30))
    b_num, certified = convergence_bound(m.polynomial)
    assert certified and abs(b_num - b) < 1e-12
    p = m.polynomial
    inside = np.linspace(1e-3, b * (1 - 1e-6), 20001)
    outside = np.linspace(b * (1 + 1e-6), b * 1.05, 2001)
    xi, xo = inside.copy(), outside.copy()
    for _ in range(200):
        xi, xo = p(xi), np.clip(p(xo), -1e6, 1e6)
    assert np.max(np.abs(xi - 1)) < 1e-12
    assert np.all(np.abs(xo - 1) > 0.5)  # just past b nothing converges to 1


def test_pade_family_known_members():
    # [0/1]: 2x/(1+x^2); [1/1]: Halley's x(3+x^2)/(1+3x^2) (Higham 2008, Table 5.1 / §8.3)
    assert sp.simplify(pade_iteration(0, 1) - 2 * x / (1 + x**2)) == 0
    assert sp.simplify(pade_iteration(1, 1) - x * (3 + x**2) / (1 + 3 * x**2)) == 0
    # every Padé iteration fixes 1 with zero derivative there
    for l, m in [(1, 2), (2, 1), (2, 2), (3, 0)]:  # noqa: E741
        r = pade_iteration(l, m)
        assert sp.simplify(r.subs(x, 1)) == 1
        assert sp.simplify(sp.diff(r, x).subs(x, 1)) == 0


def test_compose_exact_matches_substitution():
    s = Schedule.repeated("c", newton_schulz(3), 3, Provenance("derived", "t"))
    p = 3 * x / 2 - x**3 / 2
    ref = sp.expand(p.subs(x, p.subs(x, p)))
    assert sp.expand(compose_exact(s).as_expr() - ref) == 0
    # floats are read as their printed decimals
    muon = Schedule.repeated("m", OddPolynomial([3.4445, -4.7750, 2.0315]), 2, Provenance("user", "t"))
    poly = compose_exact(muon)
    assert poly.eval(1) == sp.Rational(701, 1000) * (
        sp.Rational(34445, 10000)
        - sp.Rational(4775, 1000) * sp.Rational(701, 1000) ** 2
        + sp.Rational(20315, 10000) * sp.Rational(701, 1000) ** 4
    )


@pytest.mark.parametrize("bad", [4, 0, -3, 1, 2.0, "5", True])
def test_bad_degrees(bad):
    with pytest.raises(ValueError, match="degree"):
        newton_schulz(bad)


@pytest.mark.parametrize(("l", "m"), [(2, 0), (1, 1), (0, 2), (2, 1), (1, 2), (3, 0)])
def test_every_pade_iteration_truncates_to_the_quintic(l, m):  # noqa: E741
    """Their series in xi agree with (1 - xi)^(-1/2) to order l + m >= 2, so the degree-2 truncation is
    the quintic Newton-Schulz polynomial (15/8, -10/8, 3/8) exactly."""
    from nsiter.symbolic import pade_xi_truncation

    assert pade_xi_truncation(l, m, 2) == [Fraction(15, 8), Fraction(-10, 8), Fraction(3, 8)]
    assert pade_xi_truncation(l, m, 1) == [Fraction(3, 2), Fraction(-1, 2)]


def test_taylor_coefficients_of_a_rational_iteration():
    """[0/1] is x / (1 - xi/2) = 2x / (1 + x^2) = 2x - 2x^3 + 2x^5 - ...: exact Taylor coefficients."""
    from nsiter.symbolic import pade_iteration, taylor_odd_coefficients

    assert taylor_odd_coefficients(pade_iteration(0, 1), 7) == [2, -2, 2, -2]
    assert taylor_odd_coefficients(pade_iteration(2, 0), 5) == [
        Fraction(15, 8),
        Fraction(-10, 8),
        Fraction(3, 8),
    ]
