"""The Gram form computes the standard form's function; flop counts are exact; auto is accuracy first."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from torch.overrides import TorchFunctionMode

from nsiter import matrices
from nsiter.cost import method_flops
from nsiter.evaluate import evaluation_plan, iterates, orthogonalize
from nsiter.gram import default_gram_dtype, gram_magnitude
from nsiter.measure import rounding_error, rounding_errors
from nsiter.plan import gate_matrices as plan_gate_matrices
from nsiter.polynomial import OddPolynomial
from nsiter.registry import load_schedule
from tests.test_evaluate import MIXED as EVALUATE_MIXED

# tests/test_evaluate.py's degrees 1, 3, 5, 7 and 9, then a cubic: the last step's R update is skipped
MIXED = replace(EVALUATE_MIXED, steps=(*EVALUATE_MIXED.steps, OddPolynomial([1.5, -0.5])))


def rel(A: torch.Tensor, B: torch.Tensor) -> float:
    return float(torch.linalg.matrix_norm(A - B, 2).max() / torch.linalg.matrix_norm(B, 2).max())


@pytest.mark.parametrize("shape", [(24, 72), (72, 24), (3, 20, 56), (2, 2, 56, 20)])
@pytest.mark.parametrize("restarts", [(), (1,), (3,), (2, 4), (1, 2, 3, 4, 5)])
@pytest.mark.parametrize("symmetric", [False, 8])
def test_gram_form_is_the_standard_function_in_float64(shape, restarts, symmetric):
    # X_T = Q_T X_0 with Q_{k+1} = q_k(R_k) Q_k, R_{k+1} = q_k(R_k) R_k q_k(R_k): the same polynomial of
    # X_0 as the standard steps, for every degree (1, 3, 5, 7, 9) and every restart placement.
    G = matrices.log_uniform(shape[-2], shape[-1], 1e-2, seed=1, batch=math.prod(shape[:-2]) or None)
    G = G.reshape(shape).to(torch.float64)
    std = orthogonalize(G, MIXED, dtype=torch.float64, method="standard", symmetric=False)
    gram = orthogonalize(G, MIXED, dtype=torch.float64, method="gram", restarts=restarts, symmetric=symmetric)
    assert gram.shape == G.shape
    assert rel(gram, std) < 1e-12


@pytest.mark.parametrize("name", ["muon", "polar-express", "turbo-muon", "nsiter-21mm-bf16"])
def test_gram_form_registry_schedules_float64(name):
    # turbo-muon: AOL normalization reuses R_0; nsiter-21mm-bf16 mixes quintic and cubic steps
    G = matrices.log_uniform(32, 80, 1e-2, seed=2, dtype=torch.float64)
    std = orthogonalize(G, name, dtype=torch.float64, method="standard")
    assert rel(orthogonalize(G, name, dtype=torch.float64, method="gram"), std) < 1e-12
    assert rel(orthogonalize(G, name, dtype=torch.float64, method="gram", restarts=[2]), std) < 1e-12


def test_schedule_restarts_are_used_and_overridable():
    G = matrices.log_uniform(16, 48, 1e-2, seed=3)
    sched = load_schedule("muon").with_restarts([2])
    # stored restarts are placed for R, Q in the working precision: used there, overridable
    assert evaluation_plan(G.shape, sched, dtype="fp32", method="gram", gram_dtype="fp32").restarts == (2,)
    plan = evaluation_plan(G.shape, sched, dtype="fp32", method="gram", gram_dtype="fp32", restarts=[])
    assert plan.restarts == ()
    # a Gram side at the square of the working precision skips them unless asked, where Q X also runs in that
    # precision (emulated bf16: float32 X side, float32 R, Q); where Q is rounded to the working dtype for Q X
    # (float32 work with float64 R, Q; a native bf16 X side) they stay
    assert evaluation_plan(G.shape, sched, dtype="bf16", method="gram", emulate=True).restarts == ()
    assert evaluation_plan(G.shape, sched, dtype="bf16", method="gram", emulate=False).restarts == (2,)
    assert evaluation_plan(G.shape, sched, dtype="fp32", method="gram").restarts == (2,)
    assert evaluation_plan(G.shape, sched, dtype="fp32", method="gram", restarts=[2]).restarts == (2,)
    kw = {"dtype": "bf16", "method": "gram", "gram_dtype": "bf16", "emulate": True, "symmetric": False}
    a = orthogonalize(G, sched, **kw)
    b = orthogonalize(G, "muon", restarts=[2], **kw)
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="restart"):
        orthogonalize(G, "muon", method="gram", restarts=[5])
    with pytest.raises(ValueError, match="method"):
        orthogonalize(G, "muon", method="fast")


def test_iterates_rebuild_the_gram_iterates():
    # For recording, X_k = Q_k X_0 at every step: in float64 the standard iterates, step by step.
    G = matrices.log_uniform(20, 50, 1e-2, seed=4, dtype=torch.float64)[None]
    std = [X.clone() for X in iterates(G, MIXED, dtype=torch.float64, method="standard")]
    gram = [X.clone() for X in iterates(G, MIXED, dtype=torch.float64, method="gram", restarts=[3])]
    assert len(std) == len(gram) == len(MIXED) + 1
    for a, b in zip(std, gram, strict=True):
        assert rel(b, a) < 1e-12


class CountFlops(TorchFunctionMode):
    """Counts 2 m k n per GEMM actually called (matmul, mm, bmm, addmm, baddbmm)."""

    def __init__(self):
        super().__init__()
        self.flops = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name in ("matmul", "mm", "bmm", "__matmul__", "addmm", "baddbmm"):
            P, Q = (args[1], args[2]) if name in ("addmm", "baddbmm") else (args[0], args[1])
            batch = math.prod(P.shape[:-2]) if P.ndim > 2 else 1
            self.flops += 2 * batch * P.shape[-2] * P.shape[-1] * Q.shape[-1]
        return func(*args, **kwargs)


@pytest.mark.parametrize("method", ["standard", "gram"])
@pytest.mark.parametrize("block", [None, 8, 12])
@pytest.mark.parametrize("restarts", [(), (2,), (1, 4)])
def test_flop_count_is_what_runs(method, block, restarts):
    G = matrices.log_uniform(40, 96, 1e-2, seed=5, batch=2)
    sym = block if block is not None else False
    orthogonalize(G, MIXED, dtype=torch.float32, method=method, restarts=restarts, symmetric=sym)  # probes
    with CountFlops() as counter:
        orthogonalize(G, MIXED, dtype=torch.float32, method=method, restarts=restarts, symmetric=sym)
    rs = restarts if method == "gram" else ()
    assert counter.flops == method_flops(
        MIXED, 40, 96, batch=2, method=method, restarts=rs, symmetric_block=block
    )


def test_flop_closed_forms():
    # Muon, 5 quintic steps, full products.  Standard: 5 (4 m^2 n + 2 m^3).  Gram: R_0 and Q X cost
    # 2 m^2 n each; step 1 R^2 + two R-update products, steps 2-4 four products, step 5 R^2 and Q: 17 m^3 products.
    muon = load_schedule("muon")
    m, n = 64, 256
    assert method_flops(muon, m, n) == 5 * (4 * m * m * n + 2 * m**3)
    assert method_flops(muon, m, n, method="gram", restarts=()) == 4 * m * m * n + 17 * 2 * m**3
    # a restart after step 2 costs Q X and X X^T, saves step 2's R update and step 3's Q product
    assert method_flops(muon, m, n, method="gram", restarts=[2]) == 8 * m * m * n + 14 * 2 * m**3
    assert method_flops(muon, n, m, batch=3, method="gram") == 3 * method_flops(muon, m, n, method="gram")
    assert muon.restarts and method_flops(muon, m, n, method="gram") == method_flops(
        muon, m, n, method="gram", restarts=muon.restarts
    )  # the schedule's stored restarts by default


def test_auto_picks_by_flops_then_measured_accuracy():
    # tests run with NSITER_TUNE=off: the rule table's kernels (bf16 emulated on CPUs) and, among the Gram plans
    # the measured accuracy gate admits, the one with the fewest weighted flops
    muon = load_schedule("muon")
    assert default_gram_dtype("bf16", "emulated") == "float32"
    wide = evaluation_plan((1024, 4096), muon, dtype="bf16")
    assert (wide.method, wide.gram_dtype, wide.source) == ("gram", "float32", "rule")
    assert "measured rounding error" in wide.explain()
    square = evaluation_plan((1024, 1024), muon, dtype="bf16")  # the Gram form does more flops on a square
    assert square.method == "standard" and "can pay" in square.explain()
    tiny = evaluation_plan((4, 64), muon, dtype="bf16")  # too small to pay for the gate: standard, at once
    assert tiny.method == "standard" and "not worth planning" in tiny.explain()
    # float64 work has no more precise reference for the gate: standard, unless asked for
    assert evaluation_plan((256, 4096), muon, dtype="fp64").method == "standard"
    assert evaluation_plan((256, 4096), muon, dtype="fp64", method="gram").method == "gram"
    with pytest.raises(ValueError, match="gram_tolerance"):
        evaluation_plan((64, 256), muon, gram_tolerance=-1.0)


def test_the_gate_refuses_what_it_measures_as_inaccurate():
    # R, Q in bf16 without restarts: spurious eigenvalues of R grow through the steps; the gate measures this
    # on its hard spectra (orders of magnitude over the standard form) and refuses, whatever the flops say.
    # The rounding model of nsiter.restarts predicts the same direction (9e4 against 0.075), but only ranks.
    muon = load_schedule("muon")
    plan = evaluation_plan((1024, 4096), muon, dtype="bf16", gram_dtype="bf16", restarts=())
    assert plan.method == "standard" and "refused" in plan.explain()
    # a tolerance of 0 refuses every Gram plan (no run is exactly as accurate as another on these spectra)
    assert evaluation_plan((1024, 4096), muon, dtype="bf16", gram_tolerance=0.0).method == "standard"
    # the gate's own numbers: the standard and the refused Gram form run on the gate's matrices
    G = plan_gate_matrices(64, 256)
    exact = orthogonalize(G, muon, dtype=torch.float64, method="standard")
    std = rounding_errors(orthogonalize(G, muon, dtype="bf16", method="standard", emulate=True), exact)
    bad = rounding_errors(
        orthogonalize(G, muon, dtype="bf16", method="gram", gram_dtype="bf16", restarts=(), emulate=True),
        exact,
    )
    assert max(b / s for b, s in zip(bad, std, strict=True)) > 2.0


def test_auto_rejects_the_restarts_that_fail_below_1e_3():
    # Polar Express's 8 steps, R and Q in bf16: restarts after (2, 3) are modelled at 1.9x the standard form on
    # [1e-3, 1] (nsiter.restarts) but measure several times the standard form's error on spectra below 1e-3;
    # the gate measures down to 1e-10 and exact zeros, and auto keeps the standard form.
    pe = load_schedule("polar-express")
    from nsiter.restarts import predict_error, standard_error

    narrow = predict_error(pe, (2, 3), dtype="bf16", lo=1e-3).error / standard_error(
        pe, dtype="bf16", lo=1e-3
    )
    assert narrow <= 2.0  # what the model said on [1e-3, 1] alone
    assert (
        evaluation_plan((96, 384), pe, dtype="bf16", gram_dtype="bf16", restarts=(2, 3)).method == "standard"
    )
    G = matrices.log_uniform(96, 384, 1e-10, seed=3)
    gram = error_to_float64(G, pe, dtype="bf16", method="gram", gram_dtype="bf16", restarts=(2, 3))
    std = error_to_float64(G, pe, dtype="bf16", method="standard")
    assert gram > 2.0 * std


def error_to_float64(G, name, **kw):
    exact = orthogonalize(G.double(), name, dtype=torch.float64, method="standard")
    return rounding_error(orthogonalize(G, name, **kw), exact)


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
@pytest.mark.parametrize("name", ["muon", "polar-express"])
def test_wide_gram_side_is_no_less_accurate_than_standard(dtype, name):
    # Why float32 R, Q is the CPU default: R, Q in float32 keep what bf16/fp16 X resolves.  Rounding error =
    # 2-norm distance to the float64 run of the same schedule, largest over 2 matrices with spectra
    # log-uniform in [1e-3, 1]; measured here the standard form's is 1.19-1.44x the Gram form's.
    G = matrices.log_uniform(64, 256, 1e-3, seed=6, batch=2)
    kw = {"dtype": dtype, "emulate": True, "symmetric": False}
    std = error_to_float64(G, name, method="standard", **kw)
    wide = error_to_float64(G, name, method="gram", gram_dtype="fp32", **kw)
    assert wide <= std


@pytest.mark.parametrize(
    ("dtype", "name", "restarts"),
    [("fp16", "polar-express", [2]), ("fp32", "muon", []), ("fp32", "polar-express", [2])],
)
def test_gram_side_in_working_precision_loses_accuracy(dtype, name, restarts):
    # With R, Q in the working precision the following steps amplify the rounding of R (eigenvalues
    # perturbed by ~u ||R||, negative ones among them) past the standard form's error: measured 10-600x
    # (fp16 Polar Express with the peer's restart after step 2; float32 Muon, float32 Polar Express
    # restarted after step 2), the reason auto requires a wider Gram side.
    G = matrices.log_uniform(64, 256, 1e-6, seed=6, batch=2)
    kw = {"dtype": dtype, "emulate": True, "symmetric": False}
    std = error_to_float64(G, name, method="standard", **kw)
    low = error_to_float64(G, name, method="gram", gram_dtype=dtype, restarts=restarts, **kw)
    assert low > 4 * std


@pytest.mark.parametrize("name", ["polar-express", "polar-express-5", "jiacheng-6", "cesista-5"])
def test_fp16_gram_form_stays_in_range(name):
    # fp16 overflows at 65504; Q = prod q_k(R) grows like the schedule's slope at 0 (~1e4 for Polar
    # Express) on a nearly rank-deficient input, which float32 R, Q hold; the fp16 output is finite.
    G = matrices.log_uniform(48, 192, 1e-9, seed=7)
    X = orthogonalize(G.to(torch.float16), name, dtype="fp16", method="gram", emulate=True)
    assert X.dtype == torch.float16 and bool(torch.isfinite(X).all())


def test_q_magnitude_and_the_fp16_guard():
    # Q's eigenvalues tend to the slope at zero, prod_k c_{0,k}, for the smallest singular values
    muon = load_schedule("muon")
    assert gram_magnitude(muon) == pytest.approx(3.4445**5, rel=1e-6)
    assert gram_magnitude(muon, [2]) == pytest.approx(3.4445**3, rel=1e-6)  # restarts reset Q
    deepseek = load_schedule("deepseek-v4")
    assert gram_magnitude(deepseek) > 65504  # beyond float16's range without a restart
    G = matrices.log_uniform(16, 48, 1e-3, seed=8)
    with pytest.raises(ValueError, match="65504"):
        orthogonalize(G, deepseek, dtype="fp16", method="gram", gram_dtype="fp16")
    # the range guard is necessary, not sufficient (rounding makes Q larger); float32 R, Q are the default
    X = orthogonalize(G, deepseek, dtype="fp16", method="gram", emulate=True)
    assert bool(torch.isfinite(X).all())
