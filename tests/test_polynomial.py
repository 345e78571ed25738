"""Odd polynomials and schedules: algebra, JSON round trip, bad input."""

from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nsiter import Normalization, OddPolynomial, Provenance, Schedule

PROV = Provenance("user", "tests")
finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)


def test_horner_matches_numpy_polynomial():
    p = OddPolynomial([3.4445, -4.7750, 2.0315])
    xs = np.linspace(-1.5, 1.5, 101)
    ref = np.polynomial.polynomial.polyval(xs, [0, 3.4445, 0, -4.7750, 0, 2.0315])
    np.testing.assert_allclose(p(xs), ref, rtol=1e-13, atol=1e-13)
    dref = np.polynomial.polynomial.polyval(xs, [3.4445, 0, 3 * -4.7750, 0, 5 * 2.0315])
    np.testing.assert_allclose(p.derivative(xs), dref, rtol=1e-13, atol=1e-13)


@given(st.lists(finite, min_size=1, max_size=5), st.floats(min_value=-2, max_value=2))
def test_oddness(coeffs, x):
    p = OddPolynomial(coeffs)
    assert p(-x) == -p(x)


def test_exact_composition_is_exact():
    cubic = OddPolynomial(exact=["3/2", "-1/2"])
    pp = cubic.compose(cubic)
    assert pp.exact is not None and pp.degree == 9
    # p(p(x)) at x = 1/2, in exact rationals: p(1/2) = 11/16
    half = Fraction(1, 2)
    inner = Fraction(3, 2) * half - Fraction(1, 2) * half**3
    outer = Fraction(3, 2) * inner - Fraction(1, 2) * inner**3
    value = sum(c * half ** (2 * k + 1) for k, c in enumerate(pp.exact))
    assert value == outer


@settings(max_examples=30)
@given(
    st.lists(finite.map(lambda v: v / 1e6), min_size=1, max_size=3),
    st.lists(finite.map(lambda v: v / 1e6), min_size=1, max_size=3),
)
def test_float_composition_matches_evaluation(a, b):
    p, q = OddPolynomial(a), OddPolynomial(b)
    xs = np.linspace(-1, 1, 21)
    np.testing.assert_allclose(p.compose(q)(xs), p(q(xs)), rtol=1e-9, atol=1e-12)


def test_scaled_input_is_p_of_x_over_s():
    p = OddPolynomial([2.0, -1.5, 0.5])
    q = p.scaled_input(1.01)
    xs = np.linspace(0, 1.2, 13)
    np.testing.assert_allclose(q(xs), p(xs / 1.01), rtol=1e-14)


def test_schedule_composed_equals_apply_and_slope():
    steps = (OddPolynomial([3.0, -2.0]), OddPolynomial([1.875, -1.25, 0.375]))
    s = Schedule("two", steps, PROV)
    xs = np.linspace(0, 1, 17)
    np.testing.assert_allclose(s.composed()(xs), s.apply(xs), rtol=1e-12, atol=1e-15)
    assert s.slope_at_zero == 3.0 * 1.875
    assert s.matmuls == 2 + 3  # cubic step 2, quintic step 3


@settings(max_examples=50)
@given(
    st.lists(st.lists(finite, min_size=1, max_size=4), min_size=1, max_size=6),
    st.integers(min_value=1, max_value=4),
)
def test_json_round_trip_lossless(step_coeffs, rep):
    steps = tuple(OddPolynomial(c) for c in step_coeffs) * rep
    s = Schedule(
        "x",
        steps,
        Provenance("search", "hypothesis", parameters={"lo": 1e-3}),
        Normalization("frobenius", 1.01, 1e-7),
    )
    back = Schedule.from_json(s.to_json())
    assert back == s
    assert all(a.coefficients == b.coefficients for a, b in zip(back, s, strict=True))


def test_exact_round_trip_and_repeat_compression(tmp_path):
    p = OddPolynomial(exact=["15/8", "-5/4", "3/8"])
    s = Schedule.repeated("q", p, 7, PROV)
    data = json.loads(s.to_json())
    assert len(data["steps"]) == 1 and data["steps"][0]["repeat"] == 7
    path = s.save(tmp_path / "q.json")
    back = Schedule.load(path)
    assert back == s and back[0].exact == (Fraction(15, 8), Fraction(-5, 4), Fraction(3, 8))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"coefficients": []}, "at least one"),
        ({"coefficients": [1.0, float("nan")]}, "nan"),
        ({"coefficients": [1.0, float("inf")]}, "inf"),
        ({"coefficients": ["a"]}, "'a'"),
        ({"coefficients": [1.5], "exact": ["3/2", "1"]}, "exact has 2"),
        ({"coefficients": [1.4], "exact": ["3/2"]}, "disagrees"),
        ({"exact": ["3/x"]}, "3/x"),
        ({"exact": [0.5]}, "0.5"),
        ({}, "neither"),
    ],
)
def test_bad_polynomials(kwargs, match):
    with pytest.raises(ValueError, match=match):
        OddPolynomial(**kwargs)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("{not json", "malformed"),
        ("[]", "JSON object"),
        ('{"format": "other"}', "format"),
        ('{"format": "nsiter.schedule/1", "name": "a", "steps": []}', "provenance"),
        (
            '{"format": "nsiter.schedule/1", "name": "a", "provenance": {"kind": "user", "source": "t"}, "steps": []}',
            "non-empty",
        ),
        (
            '{"format": "nsiter.schedule/1", "name": "a", "provenance": {"kind": "user", "source": ""}, "steps": [{"coefficients": [1]}]}',
            "source",
        ),
        (
            '{"format": "nsiter.schedule/1", "name": "a", "provenance": {"kind": "blog", "source": "t"}, "steps": [{"coefficients": [1]}]}',
            "blog",
        ),
        (
            '{"format": "nsiter.schedule/1", "name": "a", "provenance": {"kind": "user", "source": "t"}, "steps": [{"coefficients": [1], "repeat": 0}]}',
            "repeat",
        ),
        (
            '{"format": "nsiter.schedule/1", "name": "a", "provenance": {"kind": "user", "source": "t"}, "steps": [{"coef": [1]}]}',
            "coef",
        ),
        (
            '{"format": "nsiter.schedule/1", "name": "a", "provenance": {"kind": "user", "source": "t"}, "steps": [{"coefficients": [1]}], "normalization": {"norm": "l1"}}',
            "l1",
        ),
        (
            '{"format": "nsiter.schedule/1", "name": "a", "provenance": {"kind": "user", "source": "t"}, "steps": [{"coefficients": [1]}], "normalization": {"scale": -1}}',
            "-1",
        ),
    ],
)
def test_malformed_schedule_json(text, match):
    with pytest.raises(ValueError, match=match):
        Schedule.from_json(text)


def test_truncate_extends_with_last_step():
    s = Schedule("s", (OddPolynomial([3.0, -2.0]), OddPolynomial([1.5, -0.5])), PROV)
    assert len(s.truncated(5)) == 5 and s.truncated(5)[4] == s[1]
    assert s.truncated(1).steps == (s[0],)
    with pytest.raises(ValueError, match="0"):
        s.truncated(0)


def test_one_matmul_count():
    """Degree 2l+1 costs l+1 products (A = X X^T, l-1 Horner products, B X); a scaling (degree 1) none."""
    from nsiter.polynomial import step_matmuls

    assert [step_matmuls(d) for d in (1, 3, 5, 7, 9)] == [0, 2, 3, 4, 5]
    user = Provenance("user", "tests")
    s = Schedule("mixed", (OddPolynomial([2.0]), OddPolynomial([1.5, -0.5]), OddPolynomial([1, 2, 3])), user)
    assert s.matmuls == 0 + 2 + 3 == sum(p.matmuls for p in s)
    for bad in (0, 2, -3, 3.0, True):
        with pytest.raises(ValueError, match="odd"):
            step_matmuls(bad)
