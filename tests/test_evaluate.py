"""The evaluator against independent references: float64 SVD, the scalar map, the plain Muon loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nsiter import matrices
from nsiter.baselines import dtype_floor
from nsiter.evaluate import orthogonalize
from nsiter.measure import polar_factor
from nsiter.polynomial import OddPolynomial
from nsiter.records import trajectory
from nsiter.registry import load_schedule
from nsiter.schedule import Normalization, Provenance, Schedule

USER = Provenance("user", "tests/test_evaluate.py")


@pytest.fixture(scope="module")
def floors():
    """Measured orthogonality floors (nsiter.baselines.dtype_floor) at n = 64, the tests' tolerances."""
    return {name: dtype_floor(name, 64) for name in ("fp32", "bf16", "fp16")}


def spectral(A: torch.Tensor) -> float:
    return float(torch.linalg.matrix_norm(A.to(torch.float64), 2).max())


def muon_reference(G: torch.Tensor, steps: int = 5, eps: float = 1e-7, dtype=torch.bfloat16) -> torch.Tensor:
    """The plain loop of Muon's zeropower_via_newtonschulz5 (KellerJordan/Muon, muon.py), written out."""
    a, b, c = (3.4445, -4.7750, 2.0315)
    X = G.to(dtype)
    X = X / (X.norm() + eps)
    if G.size(0) > G.size(1):
        X = X.T
    for _ in range(steps):
        A = X @ X.T
        B = b * A + c * A @ A
        X = a * X + B @ X
    if G.size(0) > G.size(1):
        X = X.T
    return X


@pytest.mark.parametrize("shape", [(96, 64), (64, 96), (80, 80)])
def test_float64_cubic_converges_to_svd_polar_factor(shape):
    # Classical Newton–Schulz converges quadratically once sigma is near 1; 30 steps from sigma >= 0.1/||G||_F
    # (about 0.02 here) bring the error to float64 rounding (Higham, Functions of Matrices, Thm 8.19).
    G = matrices.uniform(*shape, 0.1, seed=1)
    X = orthogonalize(G, "cubic", dtype=torch.float64, steps=30)
    assert X.dtype == torch.float64 and X.shape == G.shape
    assert spectral(X - polar_factor(G)) < 1e-10


def test_polar_express_float64_matches_scalar_error_bound():
    # The distance to the polar factor is max_i |1 - phi(sigma_i)|, evaluated here with the scalar map.
    sched = load_schedule("polar-express")
    G = matrices.log_uniform(64, 48, 1e-3, seed=2)
    X = orthogonalize(G, sched, dtype=torch.float64)
    s = torch.linalg.svdvals(G).numpy()
    x0 = s / (sched.normalization.scale * np.linalg.norm(s) + sched.normalization.eps)
    expected = np.max(np.abs(1 - sched.apply(x0)))
    assert spectral(X - polar_factor(G)) == pytest.approx(expected, rel=1e-9, abs=1e-13)


MIXED = Schedule(
    "mixed-degrees",
    (
        OddPolynomial([1.7]),
        OddPolynomial([1.5, -0.5]),
        OddPolynomial([3.4445, -4.7750, 2.0315]),
        OddPolynomial([35 / 16, -35 / 16, 21 / 16, -5 / 16]),
        OddPolynomial([2.0, -1.5, 0.8, -0.2, 0.03]),
    ),
    USER,
    Normalization("frobenius", 1.3, 0.0),
)


@pytest.mark.parametrize("name", ["muon", "polar-express", "quintic", MIXED])
def test_singular_values_follow_the_scalar_map(name):
    # p(U S V^T) = U p(S) V^T (Higham 2008, Thm 1.13 for odd polynomials of X X^T X): in float64 the
    # singular values of X_k are |phi_k(sigma_i(X_0))|, and sigma(X_0) = sigma(G) / (scale ||G||_F + eps).
    sched = load_schedule(name)
    G = matrices.log_uniform(40, 56, 1e-2, seed=3)
    tr = trajectory(G, sched, dtype=torch.float64)
    s = np.sort(torch.linalg.svdvals(G).numpy())[::-1]
    norm = sched.normalization
    if norm.norm == "frobenius":
        x0 = s / (norm.scale * np.linalg.norm(s) + norm.eps)
        np.testing.assert_allclose(tr.sigmas(0), x0, rtol=1e-12, atol=1e-15)
    x0 = np.array(tr.sigmas(0))
    for k in range(1, len(sched) + 1):
        expected = np.sort(np.abs(sched.apply(x0, k)))[::-1]
        np.testing.assert_allclose(tr.sigmas(k), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("method", ["standard", "gram"])
def test_batch_equals_loop(dtype, method):
    # Each matrix of a batch goes through GEMMs of the same shapes as alone (bmm is a loop of the same
    # per-matrix products), with the same normalization: the arithmetic is identical, so the results are.
    G = matrices.gradient_like(48, 32, seed=4, batch=6).to(torch.float32).reshape(2, 3, 48, 32)
    kw = {"dtype": dtype, "method": method, "symmetric": 8}
    X = orthogonalize(G, "polar-express-5", **kw)
    loop = torch.stack([orthogonalize(G[i, j], "polar-express-5", **kw) for i in range(2) for j in range(3)])
    assert X.shape == G.shape
    assert torch.equal(X.reshape(6, 48, 32), loop)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
@pytest.mark.parametrize("method", ["standard", "gram"])
def test_transpose_equivariance(dtype, method):
    # f(G^T) = f(G)^T: both run on the same contiguous wide orientation, so exactly.
    G = matrices.log_uniform(72, 40, 1e-2, seed=5, dtype=torch.float32)
    A = orthogonalize(G, "muon", dtype=dtype, method=method)
    B = orthogonalize(G.T.contiguous(), "muon", dtype=dtype, method=method)
    assert torch.equal(A, B.T)


@pytest.mark.parametrize(
    ("name", "dtype"), [("fp32", torch.float32), ("bf16", torch.bfloat16), ("fp16", torch.float16)]
)
def test_converged_result_within_measured_floor(name, dtype, floors):
    # 40 cubic steps converge in exact arithmetic, so the distance left is rounding: the dtype's floor.
    G = matrices.uniform(64, 48, 0.1, seed=6, dtype=torch.float32)
    X = orthogonalize(G, "cubic", dtype=dtype, steps=40)
    eye = torch.eye(48, dtype=torch.float64)
    Xd = X.to(torch.float64)
    assert spectral(Xd.T @ Xd - eye) <= 2 * floors[name].orth_err_2
    assert spectral(Xd - polar_factor(G)) <= 2 * floors[name].polar_err_2


@pytest.mark.parametrize("shape", [(128, 64), (64, 128)])
def test_muon_matches_reference_loop(shape, floors):
    G = matrices.gradient_like(*shape, seed=7, dtype=torch.float32)
    # Same function: in float64 the two agree to rounding.
    exact = orthogonalize(G.double(), "muon", dtype=torch.float64)
    assert spectral(exact - muon_reference(G.double(), dtype=torch.float64)) < 1e-12
    # In bf16 both are within rounding of the exact map; ours (fused multiply-adds, one rounding per
    # product) is no further from it than the plain loop, up to the measured bf16 floor.
    ours = orthogonalize(G, "muon")
    ref = muon_reference(G)
    assert ours.dtype == torch.float32
    err_ours, err_ref = spectral(ours - exact), spectral(ref - exact)
    assert err_ours <= max(2 * err_ref, floors["bf16"].polar_err_2)
    # and both are bf16 results: each is off the exact map by more than float32 rounding would explain
    assert min(err_ours, err_ref) > 100 * torch.finfo(torch.float32).eps


@pytest.mark.parametrize("norm", ["frobenius", "spectral", "aol"])
def test_all_zero_gives_zeros(norm):
    for dtype in (torch.float32, torch.bfloat16):
        X = orthogonalize(torch.zeros(2, 16, 24), "muon", dtype=dtype, norm=norm)
        assert X.shape == (2, 16, 24) and bool((X == 0).all())


def test_zero_eps_zero_matrix_has_no_nan():
    assert bool((orthogonalize(torch.zeros(8, 8), "cubic", steps=3) == 0).all())  # cubic has eps = 0


@pytest.mark.parametrize("norm", ["frobenius", "spectral", "aol"])
def test_huge_entries_are_normalized_before_bf16(norm):
    # 1e30 squared overflows float32; the normalization must not, and orthogonalize is scale invariant.
    G = matrices.log_uniform(32, 48, 1e-2, seed=8, dtype=torch.float32)
    big = orthogonalize(G * 1e30, "muon", norm=norm)
    assert bool(torch.isfinite(big).all())
    assert spectral(big - orthogonalize(G, "muon", norm=norm)) <= 8 * torch.finfo(torch.bfloat16).eps


def test_spectral_normalization_puts_sigma_max_near_one():
    G = matrices.log_uniform(64, 32, 1e-2, seed=9)
    tr = trajectory(G, "cubic", dtype=torch.float64, norm="spectral", steps=1)
    assert tr.sigmas(0)[0] == pytest.approx(1.0, abs=1e-3)


def test_aol_bounds_the_spectral_norm():
    # Prach & Lampert 2022, Thm 1: ||D X||_2 <= 1 for the AOL scaling D.
    G = matrices.gradient_like(48, 80, seed=10)
    tr = trajectory(G, "turbo-muon", dtype=torch.float64)
    assert tr.sigmas(0)[0] <= 1 + 1e-12
    # tighter than the Frobenius bound it replaces: sigma_max(X_0) = ||G||_2 / ||G||_F there (0.79 here),
    # and AOL's rescaling lifts both ends of the spectrum (0.974 and 1.5x the smallest, this seed)
    frob = trajectory(G, "turbo-muon", dtype=torch.float64, norm="frobenius")
    G64 = G.double()
    eps = load_schedule("turbo-muon").normalization.eps  # X_0 = G / (||G||_F + eps)
    assert frob.sigmas(0)[0] == pytest.approx(float(spectral(G64) / (G64.norm() + eps)), rel=1e-12)
    assert tr.sigmas(0)[0] > 1.2 * frob.sigmas(0)[0]
    assert tr.sigmas(0)[-1] > 1.2 * frob.sigmas(0)[-1]


def test_output_keeps_dtype_shape_and_layout():
    G = torch.randn(3, 40, 24, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    X = orthogonalize(G, "muon", dtype=torch.float32)
    assert X.dtype == torch.float64 and X.shape == G.shape and X.is_contiguous() and X.device == G.device
    assert orthogonalize(G.to(torch.bfloat16), "muon").dtype == torch.bfloat16


def test_steps_override_truncates_and_repeats():
    G = matrices.uniform(24, 16, 0.1, seed=11)
    cubic = load_schedule("cubic")
    three = Schedule.repeated("c3", cubic[0], 3, USER, normalization=cubic.normalization)
    torch.testing.assert_close(
        orthogonalize(G, "cubic", dtype=torch.float64, steps=3), orthogonalize(G, three, dtype=torch.float64)
    )


@pytest.mark.parametrize(
    ("G", "match"),
    [
        (torch.ones(4, 4, dtype=torch.int64), "floating"),
        (torch.ones(4, 4, dtype=torch.complex64), "complex"),
        (torch.ones(4), "shape"),
        (torch.ones(0, 4), "zero-size"),
        (torch.ones(2, 0, 4), "zero-size"),
        (torch.tensor([[1.0, float("nan")], [0.0, 1.0]]), "NaN"),
        (torch.tensor([[1.0, float("inf")], [0.0, 1.0]]), "Inf"),
        (np.ones((4, 4)), "torch.Tensor"),
    ],
)
def test_bad_input_raises_value_error(G, match):
    with pytest.raises(ValueError, match=match):
        orthogonalize(G, "muon")
    with pytest.raises(ValueError, match=match):
        trajectory(G, "muon")


def test_bad_options_raise_value_error():
    G = torch.ones(4, 4)
    with pytest.raises(ValueError, match="dtype"):
        orthogonalize(G, "muon", dtype=torch.int32)
    with pytest.raises(ValueError, match="no-such-schedule"):
        orthogonalize(G, "no-such-schedule")
    with pytest.raises(ValueError, match="norm"):
        orthogonalize(G, "muon", norm="nuclear")
    with pytest.raises(ValueError, match="steps"):
        orthogonalize(G, "muon", steps=0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_emulated_low_precision_matches_native(dtype, floors):
    # Emulation: float32 GEMMs with every result rounded to dtype.  Its outputs are dtype-representable
    # and within the dtype's measured floor of the native dtype GEMM path.
    G = matrices.log_uniform(48, 40, 1e-2, seed=12, dtype=torch.float32)
    emu = orthogonalize(G, "polar-express-5", dtype=dtype, emulate=True)
    nat = orthogonalize(G, "polar-express-5", dtype=dtype, emulate=False)
    assert torch.equal(emu, emu.to(dtype).to(torch.float32))
    name = "bf16" if dtype == torch.bfloat16 else "fp16"
    assert spectral(emu - nat) <= 2 * floors[name].polar_err_2
    with pytest.raises(ValueError, match="emulate"):
        orthogonalize(G, "muon", emulate="yes")


def test_check_finite_false_lets_non_finite_values_through():
    G = torch.ones(6, 4)
    G[2, 1] = float("nan")
    X = orthogonalize(G, "muon", check_finite=False)
    assert bool(torch.isnan(X).any())


def test_input_requiring_grad_is_accepted():
    G = torch.randn(12, 8, generator=torch.Generator().manual_seed(13), requires_grad=True)
    X = orthogonalize(G, "muon", dtype=torch.float32)
    assert not X.requires_grad and bool(torch.isfinite(X).all())
    assert trajectory(G, "muon", dtype=torch.float32).final.shape == (12, 8)


def test_divergence_warns_instead_of_returning_silent_nonfinite():
    # (3, 2): p(x) = 3x + 2x^3 grows without bound, so 40 steps overflow float32

    bad = Schedule.repeated("grows", OddPolynomial([3.0, 2.0]), 40, Provenance("user", "test"))
    G = torch.randn(8, 6, generator=torch.Generator().manual_seed(0))
    with pytest.warns(RuntimeWarning, match="'grows' diverged"):
        X = orthogonalize(G, bad, dtype=torch.float32)
    assert not torch.isfinite(X).all()


def test_polynomial_step_is_the_evaluator_step_and_differentiable():
    from nsiter.evaluate import polynomial_step

    sched = load_schedule("polar-express").truncated(2)
    G = torch.randn(6, 9, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ref = orthogonalize(G, sched, dtype=torch.float64)
    X = G / (sched.normalization.scale * torch.linalg.matrix_norm(G) + sched.normalization.eps)
    for p in sched:
        X = polynomial_step(X, torch.tensor(p.coefficients, dtype=torch.float64))
    torch.testing.assert_close(X, ref, rtol=1e-12, atol=1e-12)
    # autograd agrees with finite differences in both the iterate and the coefficients
    c = torch.tensor([3.4445, -4.7750, 2.0315], dtype=torch.float64, requires_grad=True)
    X0 = (G / torch.linalg.matrix_norm(G)).requires_grad_(True)
    assert torch.autograd.gradcheck(polynomial_step, (X0, c))
