"""Step counts to a certified error: classical Newton–Schulz maps against an independent mpmath iteration.

Sources for the iterations (the counts themselves are computed here, independently, not typed in):

- Cubic Newton–Schulz ``x -> (3x - x^3)/2``: Kovarik, "Some iterative methods for improving
  orthonormality", SIAM J. Numer. Anal. 7 (1970); Björck & Bowie, "An iterative algorithm for computing
  the best estimate of an orthogonal matrix", SIAM J. Numer. Anal. 8 (1971); Higham, *Functions of
  Matrices*, SIAM 2008, ch. 8 (the Newton–Schulz iteration for the unitary polar factor, the [1/0]
  member of the Padé family; the quintic ``(15x - 10x^3 + 3x^5)/8`` is the [2/0] member).
- Chen & Chow, "A stable scaling of Newton–Schulz for improving the sign function computation of a
  Hermitian matrix", ANL/MCS-P5059-0114 (2014), §3 eqs. (3.3)-(3.6): on ``[a, 1]`` the scaled cubic
  ``(3 alpha x - alpha^3 x^3) / 2`` with ``alpha = sqrt(3 / (1 + a + a^2))`` maps ``[a, 1]`` onto
  ``[g(a), 1]`` (equioscillation ``g(a) = g(1)``, maximum ``g(1/alpha) = 1``).  Their abstract: "the number
  of iterations is reduced by half compared with standard Newton-Schulz".  We found no table of counts we
  could read, so the counts below come from their endpoint recurrence iterated in mpmath, and the halving
  is checked as their stated claim.

For these maps ``p`` increases on ``[0, 1]`` with ``p(x) >= x`` and ``p(1) = 1`` (the scaled cubic maps
``[a, 1]`` onto ``[g(a), 1]``), so the worst point over ``[lo, 1]`` is ``lo`` and the reference count is the
first ``k`` with ``1 - phi_k(lo) <= tol`` for the scalar iteration at ``lo`` (250 digits).
"""

from __future__ import annotations

import json

import mpmath
import pytest

from nsiter.analysis import MAX_ANALYZE_STEPS, analyze, steps_to
from nsiter.cli import main
from nsiter.schedule import Schedule

CUBIC = (1.5, -0.5)
QUINTIC = (1.875, -1.25, 0.375)


def _poly(coeffs):
    return lambda x: sum(mpmath.mpf(c) * x ** (2 * k + 1) for k, c in enumerate(coeffs))


def _chen_chow_next(a):
    alpha = mpmath.sqrt(3 / (1 + a + a * a))
    return (3 * alpha * a - alpha**3 * a**3) / 2


def reference_count(step, lo, tol, max_steps=500):
    """First k with 1 - x_k <= tol for x_{k+1} = step(x_k), x_0 = lo, at 250 digits."""
    with mpmath.workdps(250):
        x, target = mpmath.mpf(lo), mpmath.mpf(tol)
        for k in range(max_steps + 1):
            if 1 - x <= target:
                return k
            x = step(x)
    raise AssertionError("reference did not converge")


def chen_chow_schedule(lo, steps=60):
    """The scaled cubic steps for [lo, 1] (float coefficients of the mpmath recurrence)."""
    with mpmath.workdps(50):
        a, out = mpmath.mpf(lo), []
        for _ in range(steps):
            alpha = mpmath.sqrt(3 / (1 + a + a * a))
            out.append((float(3 * alpha / 2), float(-(alpha**3) / 2)))
            a = _chen_chow_next(a)
    return Schedule.from_coefficients(out, name="chen-chow")


@pytest.mark.parametrize("lo", [1e-1, 1e-3, 1e-6])
@pytest.mark.parametrize("tol", [1e-8, 1e-16, "1e-100"])
def test_classical_counts_match_scalar_iteration(lo, tol):
    cubic = steps_to("cubic", lo, tol)
    quintic = steps_to("quintic", lo, tol)
    assert cubic == reference_count(_poly(CUBIC), lo, tol)
    assert quintic == reference_count(_poly(QUINTIC), lo, tol)
    # sanity of the orders: the quintic (3 products) needs fewer steps than the cubic (2 products)
    assert quintic < cubic


def test_counts_for_the_issue_example():
    # the cubic from lo = 1e-6: 38 steps to 1e-8, 40 to 1e-16; 42 to 1e-100 (quadratic convergence)
    assert [steps_to("cubic", 1e-6, t) for t in (1e-8, 1e-16, "1e-100")] == [38, 40, 42]
    assert [steps_to("quintic", 1e-6, t) for t in (1e-8, 1e-16, "1e-100")] == [25, 26, 27]
    # and agree with analyze: the error after k steps is <= tol, after k - 1 it is not
    res = analyze("cubic", 1e-6, steps=40)
    assert res.errors_mp[40] <= 1e-16 < res.errors_mp[39]


@pytest.mark.parametrize("lo", [1e-3, 1e-6, 1e-9])
@pytest.mark.parametrize("tol", [1e-8, 1e-12])
def test_chen_chow_scaled_cubic(lo, tol):
    sched = chen_chow_schedule(lo)
    k = steps_to(sched, lo, tol)
    assert k == reference_count(_chen_chow_next, lo, tol)
    # Chen & Chow's claim: about half the iterations of the unscaled cubic
    plain = steps_to("cubic", lo, tol)
    assert k <= 0.55 * plain


def test_zero_steps_and_never():
    assert steps_to("cubic", 1 - 1e-9, 1e-8) == 0
    # Muon's map never gets closer than its attracting band allows
    assert steps_to("muon", 1e-3, 0.1, max_steps=200) is None


@pytest.mark.parametrize("tol", [0, -1.0, float("nan"), float("inf"), "abc", True, None, [1e-3]])
def test_bad_tol(tol):
    with pytest.raises(ValueError, match="tol must be a positive"):
        steps_to("cubic", 1e-3, tol)


def test_bad_max_steps():
    with pytest.raises(ValueError, match="MAX_ANALYZE_STEPS"):
        steps_to("cubic", 1e-3, 1e-8, max_steps=MAX_ANALYZE_STEPS + 1)
    with pytest.raises(ValueError, match="max_steps must be a positive integer"):
        steps_to("cubic", 1e-3, 1e-8, max_steps=0)


def test_cli_tol(capsys):
    code = main(["analyze", "cubic", "--lo", "1e-6", "--tol", "1e-100", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["steps_to"] == {"tol": "1e-100", "steps": 42}
    code = main(["analyze", "cubic", "--lo", "1e-6", "--steps", "40", "--tol", "1e-30"])
    text = capsys.readouterr().out
    assert code == 0 and "steps to certified error <= 1e-30: 40 steps" in text and "phi_k'(0)" in text
    assert "2.9670e-32" in text  # the last row's error (rounded up), not 1.1e-16
    code = main(["analyze", "cubic", "--tol", "0"])
    _, err = capsys.readouterr()
    assert (
        code == 2 and err.startswith("nsiter: error: tol must be a positive") and len(err.splitlines()) == 1
    )
