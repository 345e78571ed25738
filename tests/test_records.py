"""Trajectories: recorded quantities against their definitions and independent computations."""

from __future__ import annotations

import csv
import itertools

import numpy as np
import pytest
import torch

from nsiter import matrices
from nsiter.evaluate import orthogonalize
from nsiter.measure import QUANTITIES, polar_factor
from nsiter.polynomial import OddPolynomial
from nsiter.records import trajectory
from nsiter.schedule import Normalization, Provenance, Schedule

USER = Provenance("user", "tests/test_records.py")


def test_rows_are_tidy_and_complete():
    G = matrices.log_uniform(24, 40, 1e-2, seed=0)
    tr = trajectory(G, "muon", dtype=torch.float32)
    T = 5
    # one row per (matrix, step), a column per quantity: Measurement.rows' shape
    assert [(r["matrix"], r["step"]) for r in tr.rows] == [(0, k) for k in range(T + 1)]
    assert all(list(r) == ["matrix", "step", *QUANTITIES] for r in tr.rows)
    assert len(tr.singular_values) == (T + 1) * 24
    # the long form holds the same numbers, one per (matrix, step, quantity)
    long = tr.long()
    assert len(long) == (T + 1) * len(QUANTITIES)
    assert all(r["value"] == tr.value(r["quantity"], r["step"]) for r in long)
    assert tr.table("long") == long
    assert not tr.diverged and tr.message == ""
    assert tr.schedule == "muon" and tr.dtype == "float32" and tr.shape == (24, 40)


def test_final_is_the_orthogonalize_result():
    G = matrices.gradient_like(40, 24, seed=1, dtype=torch.float32)
    tr = trajectory(G, "polar-express-5")
    assert torch.equal(tr.final, orthogonalize(G, "polar-express-5"))


def test_quantities_match_their_definitions():
    G = matrices.log_uniform(32, 20, 1e-2, seed=2)
    tr = trajectory(G, "quintic", dtype=torch.float64)
    for k in range(len(tr.rows)):
        s = np.array(tr.sigmas(k))
        lam = s**2
        # rho = 1 - lambda_min(X X^T) on the small side; ||X X^T - I||_2 = max |lambda - 1| (by eigvalsh).
        assert tr.value("rho", k) == pytest.approx(1 - lam.min(), abs=1e-13)
        assert tr.value("max_abs_lambda_minus_1", k) == pytest.approx(np.abs(lam - 1).max(), abs=1e-13)
        assert tr.value("orth_err_2", k) == pytest.approx(tr.value("max_abs_lambda_minus_1", k), abs=1e-12)
        assert tr.value("orth_err_fro", k) == pytest.approx(np.sqrt(np.sum((lam - 1) ** 2)), abs=1e-12)
        assert tr.value("sigma_max", k) == pytest.approx(s[0], rel=1e-15)
        assert tr.value("sigma_min", k) == pytest.approx(s[-1], rel=1e-15)
        # X_k and U V^T share singular vectors, so ||X_k - U V^T||_2 = max |sigma_i - 1|.
        assert tr.value("polar_err_2", k) == pytest.approx(np.abs(s - 1).max(), abs=1e-12)
        assert tr.value("polar_err_fro", k) == pytest.approx(np.sqrt(np.sum((s - 1) ** 2)), abs=1e-12)


def test_cubic_trajectory_reaches_the_polar_factor():
    G = matrices.uniform(48, 32, 0.1, seed=3)
    tr = trajectory(G, "cubic", dtype=torch.float64, steps=30)
    errs = [row["polar_err_2"] for row in tr.rows]
    assert errs[-1] < 1e-10
    assert all(b <= a + 1e-15 for a, b in itertools.pairwise(errs))  # monotone on (0, 1]


def test_batch_rows_carry_the_matrix_index():
    G = matrices.log_uniform(16, 24, 1e-2, seed=4, batch=3)
    tr = trajectory(G, "muon", dtype=torch.float64)
    for i in range(3):
        single = trajectory(G[i], "muon", dtype=torch.float64)
        for k in range(6):
            np.testing.assert_allclose(tr.sigmas(k, matrix=i), single.sigmas(k), rtol=1e-12, atol=1e-14)
    assert {r["matrix"] for r in tr.rows} == {0, 1, 2}


def test_rank_deficient_polar_factor_is_a_partial_isometry():
    # Odd polynomials keep zero singular values at zero, so the iteration converges to U_r V_r^T.
    G = matrices.rank_deficient(24, 16, 10, seed=5, lo=0.2)
    P = polar_factor(G)
    s = torch.linalg.svdvals(P)
    assert torch.allclose(s[:10], torch.ones(10, dtype=torch.float64), atol=1e-12)
    assert float(s[10:].max()) < 1e-12
    tr = trajectory(G, "cubic", dtype=torch.float64, steps=30)
    assert tr.value("polar_err_2", 30) < 1e-10
    assert tr.value("rho", 30) == pytest.approx(1.0, abs=1e-12)  # lambda_min = 0


def test_divergence_is_reported():
    # p(x) = 3x + 2x^3 has no fixed point in (0, inf): singular values blow up.
    bad = Schedule.repeated("blow-up", OddPolynomial([3.0, 2.0]), 8, USER, normalization=Normalization())
    tr = trajectory(matrices.uniform(16, 16, 0.5, seed=6), bad, dtype=torch.float32)
    assert tr.diverged
    assert "diverge" in tr.message or "non-finite" in tr.message


def test_csv_round_trip(tmp_path):
    G = matrices.log_uniform(12, 12, 1e-2, seed=7)
    tr = trajectory(G, "muon", dtype=torch.float64)
    path = tr.to_csv(tmp_path / "steps.csv")
    with path.open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(tr.rows)
    for row, rec in zip(rows, tr.rows, strict=True):
        assert all(float(row[q]) == rec[q] for q in QUANTITIES)  # repr precision: exact round trip
        assert row["schedule"] == "muon"
    long = tr.to_csv(tmp_path / "long.csv", table="long")
    with long.open() as fh:
        assert [float(r["value"]) for r in csv.DictReader(fh)] == [r["value"] for r in tr.long()]
    sv = tr.to_csv(tmp_path / "sv.csv", table="singular_values")
    with sv.open() as fh:
        assert len(list(csv.DictReader(fh))) == len(tr.singular_values)
    with pytest.raises(ValueError, match="table"):
        tr.to_csv(tmp_path / "x.csv", table="nope")


def test_to_pandas_has_the_same_rows():
    tr = trajectory(matrices.log_uniform(8, 12, 1e-2, seed=8), "muon", dtype=torch.float64)
    df = tr.to_pandas()  # pandas comes with seaborn, a dependency
    assert len(df) == len(tr.rows) and list(df.columns[:2]) == ["schedule", "dtype"]


def test_unknown_quantity_is_rejected():
    with pytest.raises(ValueError, match="quantities"):
        trajectory(torch.ones(4, 4), "muon", quantities=("sigma_max", "entropy"))


def test_quantity_subset_records_only_those():
    G = matrices.log_uniform(12, 20, 1e-2, seed=10)
    tr = trajectory(G, "muon", dtype=torch.float64, quantities=("sigma_min", "polar_err_2"))
    full = trajectory(G, "muon", dtype=torch.float64)
    assert all(list(r) == ["matrix", "step", "sigma_min", "polar_err_2"] for r in tr.rows)
    assert tr.value("polar_err_2", 5) == full.value("polar_err_2", 5)
