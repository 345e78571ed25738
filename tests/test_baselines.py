"""Polar-decomposition baselines agree with each other; measured dtype floors are consistent."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nsiter import matrices
from nsiter.baselines import dtype_floor, dtype_floors, polar_newton, polar_qdwh, polar_scipy
from nsiter.measure import polar_factor


@pytest.fixture(scope="module")
def floors():
    return dtype_floors(48)


@pytest.mark.parametrize("shape", [(30, 20), (20, 30), (24, 24)])
def test_all_polar_baselines_agree(shape):
    G = matrices.log_uniform(*shape, 1e-3, seed=0)
    P = polar_factor(G)
    # the polar factor is the unique orthonormal-column factor with G = U H, H symmetric PSD (Higham 2008, Thm 8.1)
    np.testing.assert_allclose(polar_scipy(G), P.numpy(), atol=1e-10)
    for scaling in ("1inf", "fro", "none"):
        Q, its = polar_newton(G, scaling=scaling)
        assert float((Q - P).abs().max()) < 1e-10
        assert its <= 50
    Q, its = polar_qdwh(G)
    assert float((Q - P).abs().max()) < 1e-10
    assert its <= 6  # QDWH needs at most 6 iterations for kappa <= 1e16 (Nakatsukasa, Bai & Gygi 2010)


def test_scaled_newton_beats_unscaled():
    # Scaling cuts the iteration count on ill-conditioned input (Higham 2008, sec. 8.6).
    G = matrices.log_uniform(20, 20, 1e-6, seed=1)
    assert polar_newton(G, scaling="1inf")[1] < polar_newton(G, scaling="none")[1]


def test_polar_factor_properties():
    G = matrices.log_uniform(25, 15, 1e-2, seed=2)
    P = polar_factor(G)
    torch.testing.assert_close(P.T @ P, torch.eye(15, dtype=torch.float64), atol=1e-13, rtol=0)
    H = P.T @ G  # symmetric positive definite
    torch.testing.assert_close(H, H.T, atol=1e-13, rtol=0)
    assert float(torch.linalg.eigvalsh(H).min()) > 0


def test_floors_are_ordered_by_precision(floors):
    f = {k: v.orth_err_2 for k, v in floors.items()}
    assert f["float64"] < f["float32"] < f["float16"] < f["bfloat16"]


def test_floors_are_a_modest_multiple_of_unit_roundoff(floors):
    # Rounding X to the dtype alone moves the eigenvalues of X X^T by up to about 2u, and n of them make one
    # reach u; a backward-stable step keeps the error within a small multiple of u sqrt(n) (Higham, ASNA,
    # sec. 3.5 for matrix products).  Measured at n = 16..128 (AMD EPYC): orth_err_2 = 2-9 u and
    # polar_err_2 = 0.5-8 u sqrt(n); the windows below are about one order of magnitude wide.
    for fl in floors.values():
        u, root_n = fl.unit_roundoff, np.sqrt(fl.n)
        assert u <= fl.orth_err_2 <= 3 * u * root_n
        assert 0.25 * u * root_n <= fl.polar_err_2 <= 12 * u * root_n


def test_floor_is_reproducible_and_named():
    a, b = dtype_floor("bf16", 32, seeds=(0,)), dtype_floor(torch.bfloat16, 32, seeds=(0,))
    assert a == b and a.dtype == "bfloat16"  # the canonical name, as records store it


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="dtype"):
        dtype_floor("fp8", 8)
    with pytest.raises(ValueError, match="tail"):
        dtype_floor("fp32", 8, steps=4, tail=5)
    with pytest.raises(ValueError, match="scaling"):
        polar_newton(torch.eye(3), scaling="spectral")
    with pytest.raises(ValueError, match="NaN"):
        polar_factor(torch.tensor([[float("nan")]]))
