"""The measurement layer: float64 references, the divergence rule, and agreement with the scalar maps."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch

from nsiter import matrices
from nsiter.analysis import certified_error
from nsiter.measure import (
    DIVERGENCE_THRESHOLD,
    Case,
    diverged,
    log_uniform_cases,
    measure,
    measured_errors,
    polar_factor,
)
from nsiter.polynomial import OddPolynomial
from nsiter.schedule import Provenance, Schedule
from nsiter.search import greedy_minimax

USER = Provenance("user", "tests/test_measure.py")


def test_float64_run_is_the_scalar_map_on_the_spectrum():
    """In float64 the singular values of X_T are phi_T(sigma_i) (exact spectral normalization), so the
    measured worst error meets the certified one at the spectrum's endpoints lo and 1."""
    plain, _ = greedy_minimax(4, 5, lo=1e-3, hi=1.0)
    m = measured_errors(plain, sizes=24, seeds=(0,), dtype="float64")
    y = np.logspace(0, -3, 24)
    for p in plain.steps:
        y = p(y)
    # rounding, to first order: forming X_0 = U S V^T moves each singular value by at most about n u
    # (Weyl; ||X_0|| = 1), and step k's three products add at most about 3 n u sum|c_k| more; the rest of
    # the schedule amplifies an error made before step k by at most L_k, the largest slope of the
    # composed steps k..T on the image of [0, 1] (sampled densely).  The bound does not depend on the
    # BLAS's summation order, which differs between CPUs (an Intel AMX Xeon measured 2.1e-11 here).
    n, u = 24, 2.0**-53

    def max_slope(k):
        x = np.linspace(0.0, 1.0, 200_001)
        for p in plain.steps[:k]:
            x = p(x)
        t = np.linspace(0.0, x.max(), 200_001)
        y = t.copy()
        for p in plain.steps[k:]:
            y = p(y)
        return np.abs(np.diff(y) / np.diff(t)).max()

    sums = [float(np.abs(p.coefficients).sum()) for p in plain.steps]
    lipschitz = [max_slope(k) for k in range(len(plain.steps) + 1)]
    tol = 3 * n * u * (lipschitz[0] + sum(s * lk for s, lk in zip(sums, lipschitz[1:], strict=True)))
    assert tol < 1e-8  # still far below the error being checked (0.546)
    assert m["max_singular_error"] == pytest.approx(np.abs(y - 1).max(), abs=tol)
    assert m["max_direction_error"] == pytest.approx(np.abs(y - 1).max(), abs=tol)
    cert = certified_error(plain)
    assert m["max_direction_error"] <= cert + tol
    assert m["mean_max_direction_error"] == m["max_direction_error"] and len(m["runs"]) == 1


def test_summary_statistics_are_those_of_the_runs():
    sched = Schedule.from_coefficients([(3.4445, -4.7750, 2.0315)] * 5)
    m = measure(sched, log_uniform_cases([16, (12, 20)], seeds=(0, 1), lo=1e-2), dtype="float32")
    finals = m.final_rows()
    assert [r["matrix"] for r in finals] == [0, 1, 2, 3] and [r["seed"] for r in finals] == [0, 1, 0, 1]
    worst = [r["max_direction_error"] for r in finals]
    s = m.summary()
    assert s["max_direction_error"] == max(worst)
    assert s["mean_max_direction_error"] == pytest.approx(sum(worst) / 4, rel=1e-15)
    assert s["spectral_error"] == max(r["polar_err_2"] for r in finals)


def test_a_diverging_run_is_infinite_by_the_one_rule():
    blowup = Schedule("blowup", (OddPolynomial([3.0, 10.0]),) * 40, USER)  # p(1) = 13: escapes to inf
    m = measured_errors(blowup, sizes=8, seeds=(0, 1), dtype="bfloat16")
    assert m["max_direction_error"] == m["mean_max_singular_error"] == math.inf
    assert all(r["max_direction_error"] == math.inf for r in m["runs"])
    assert diverged(math.nan) and diverged(math.inf) and diverged(2 * DIVERGENCE_THRESHOLD)
    assert not diverged(DIVERGENCE_THRESHOLD)


def test_every_step_rows_start_at_the_normalized_input():
    G = matrices.log_uniform(10, 30, 1e-2, seed=4)
    m = measure("muon", G, dtype="float64", normalization="schedule", every_step=True)
    assert [r["step"] for r in m.rows] == list(range(6))
    x0 = G / (torch.linalg.matrix_norm(G) + 1e-7)
    assert m.rows[0]["sigma_max"] == pytest.approx(float(torch.linalg.matrix_norm(x0, 2)), rel=1e-14)


def test_polar_factor_agrees_with_scipy():
    """Independent reference: scipy.linalg.polar (its own SVD-based implementation)."""
    for shape in [(12, 7), (7, 12)]:
        G = matrices.gradient_like(*shape, seed=2, dtype=torch.float64)
        ours = polar_factor(G).numpy()
        A = G.numpy()
        ref = scipy.linalg.polar(A)[0] if shape[0] >= shape[1] else scipy.linalg.polar(A.T)[0].T
        assert np.abs(ours - ref).max() < 50 * np.finfo(float).eps * math.sqrt(max(shape))


def test_bad_input_names_the_value():
    with pytest.raises(ValueError, match="normalization"):
        measure("muon", log_uniform_cases(8, (0,)), normalization="l1")
    with pytest.raises(ValueError, match="quantities"):
        measure("muon", log_uniform_cases(8, (0,)), quantities=("bogus",))
    with pytest.raises(ValueError, match="int8"):
        measure("muon", log_uniform_cases(8, (0,)), dtype="int8")
    with pytest.raises(ValueError, match="batch"):
        measure("muon", torch.randn(2, 4, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="Case"):
        measure("muon", [3])
    assert Case.of(torch.eye(3)).label == "3x3"
