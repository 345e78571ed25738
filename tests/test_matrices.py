"""Seeded test matrices: prescribed spectra, orthonormal factors, determinism, the spec parser."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch

from nsiter import matrices


def svals(G: torch.Tensor) -> np.ndarray:
    return torch.linalg.svdvals(G).numpy()


@pytest.mark.parametrize("shape", [(30, 20), (20, 30), (25, 25)])
def test_with_spectrum_has_the_prescribed_singular_values(shape):
    k = min(shape)
    sigma = np.linspace(2.0, 0.5, k)
    G = matrices.with_spectrum(*shape, sigma, seed=0)
    assert G.shape == shape and G.dtype == torch.float64
    np.testing.assert_allclose(svals(G), sigma, rtol=1e-12)


def test_haar_factor_is_orthonormal():
    Q = matrices.haar_orthonormal(40, 25, torch.Generator().manual_seed(1))
    torch.testing.assert_close(Q.T @ Q, torch.eye(25, dtype=torch.float64), atol=1e-13, rtol=0)


def test_log_uniform_and_uniform_grids():
    s = svals(matrices.log_uniform(20, 12, 1e-3, seed=2))
    np.testing.assert_allclose(s, np.logspace(0, -3, 12), rtol=1e-10)
    assert s[-1] == pytest.approx(1e-3, rel=1e-10)  # the endpoint an analysis on [lo, 1] speaks about
    np.testing.assert_allclose(
        svals(matrices.uniform(12, 20, 0.1, seed=2)), np.linspace(1, 0.1, 12), rtol=1e-10
    )


def test_same_seed_same_bytes_different_seed_different_matrix():
    a = matrices.log_uniform(16, 8, 1e-2, seed=3)
    b = matrices.log_uniform(16, 8, 1e-2, seed=3)
    c = matrices.log_uniform(16, 8, 1e-2, seed=4)
    assert a.numpy().tobytes() == b.numpy().tobytes()
    assert not torch.equal(a, c)
    g1 = matrices.gradient_like(16, 24, seed=3)
    assert g1.numpy().tobytes() == matrices.gradient_like(16, 24, seed=3).numpy().tobytes()


def test_batch_matrices_share_the_spectrum_but_not_the_factors():
    G = matrices.uniform(10, 6, 0.2, seed=5, batch=3)
    assert G.shape == (3, 10, 6)
    for i in range(3):
        np.testing.assert_allclose(svals(G[i]), np.linspace(1, 0.2, 6), rtol=1e-12)
    assert not torch.equal(G[0], G[1])


def test_rank_deficient_has_exact_rank():
    s = svals(matrices.rank_deficient(20, 15, 6, seed=6, lo=0.1))
    np.testing.assert_allclose(s[:6], np.logspace(0, -1, 6), rtol=1e-12)
    assert s[6:].max() < 1e-14


def test_clustered_values_lie_in_their_clusters():
    s = svals(matrices.clustered(30, 30, (1e-2, 1.0), seed=7, spread=0.05))
    assert np.all((np.abs(s - 1) <= 0.05 + 1e-12) | (np.abs(s - 1e-2) <= 5e-4 + 1e-14))
    assert np.sum(s > 0.5) == 15


def test_gradient_like_is_normalized_and_heavy_tailed():
    s = svals(matrices.gradient_like(64, 96, seed=8))
    assert s[0] == pytest.approx(1.0, rel=1e-12)
    assert s[0] / s[7] > 3  # power-law head (i^-1 for the low-rank part) above a noise floor
    assert s[-1] > 0  # the noise makes it full rank


def test_hilbert_matches_its_closed_form_inverse():
    # H_3^{-1} = [[9, -36, 30], [-36, 192, -180], [30, -180, 180]] (Hilbert 1894; Higham, ASNA, sec. 28.1).
    H = matrices.hilbert(3)
    assert H[1, 2].item() == float(Fraction(1, 4))
    inv = torch.tensor([[9, -36, 30], [-36, 192, -180], [30, -180, 180]], dtype=torch.float64)
    torch.testing.assert_close(H @ inv, torch.eye(3, dtype=torch.float64), atol=1e-12, rtol=0)


@pytest.mark.parametrize(
    ("spec", "lo"),
    [("logunif:1e-3", 1e-3), ("unif:0.25", 0.25), ("rank:4", 0.0), ("rank:4:0.5", 0.0)],
)
def test_spectrum_spec_builds_the_named_spectrum(spec, lo):
    G = matrices.spectrum_spec(spec).generate(12, 10, seed=0)
    s = svals(G)
    assert s[0] == pytest.approx(1.0, rel=1e-12)
    assert s[-1] == pytest.approx(lo, abs=1e-12)


def test_spectrum_spec_other_kinds_and_batch():
    assert matrices.spectrum_spec("cluster:1e-3,1:0.1").generate(8, 8, 0).shape == (8, 8)
    assert matrices.spectrum_spec("grad").generate(8, 12, 0, batch=2).shape == (2, 8, 12)
    H = matrices.spectrum_spec("hilbert").generate(5, 5, 0)
    torch.testing.assert_close(H, matrices.hilbert(5))


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "logunif",
        "logunif:0",
        "logunif:-1",
        "logunif:abc",
        "logunif:2",
        "unif:nan",
        "rank:x",
        "grad:3",
        "wat:1",
        "cluster:",
        "cluster:1:2",
    ],
)
def test_bad_spectrum_specs_raise(spec):
    with pytest.raises(ValueError):
        matrices.spectrum_spec(spec).generate(8, 8, 0)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="sigma"):
        matrices.with_spectrum(4, 3, [1.0, 0.5], seed=0)
    with pytest.raises(ValueError, match="m must"):
        matrices.log_uniform(0, 3)
    with pytest.raises(ValueError, match="seed"):
        matrices.log_uniform(4, 3, seed=-1)
    with pytest.raises(ValueError, match="rank"):
        matrices.rank_deficient(4, 3, 5)
    with pytest.raises(ValueError, match="square"):
        matrices.spectrum_spec("hilbert").generate(4, 3, 0)


def test_measured_spectrum_spec_uses_recorded_training_spectrum():
    # the shipped momentum spectra of experiments/train_muon.py, resampled to min(m, n) values
    from nsiter.spectra import measured_spectrum

    G = matrices.spectrum_spec("measured").generate(48, 32, seed=3)
    want = np.sort(measured_spectrum().resampled(32))[::-1]
    got = torch.linalg.svdvals(G).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-14)
    assert torch.equal(
        G, matrices.spectrum_spec("measured").generate(48, 32, seed=3)
    )  # same seed, same bytes
