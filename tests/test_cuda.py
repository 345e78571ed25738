"""The CUDA path: the same code as on the CPU, checked where a GPU exists (skipped here and in CI).

Run on a lent GPU machine with the benchmark (``nsiter bench``): the Gram form and the standard form
are the same function in float64 on the device too, and in bf16/fp16 a GPU run has the rounding error
of the CPU run of the same arithmetic (``gram_dtype`` fixed on both), up to summation order.
"""

from __future__ import annotations

import pytest
import torch

from nsiter.dtypes import unit_roundoff
from nsiter.evaluate import evaluation_plan, orthogonalize

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def _matrix(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("shape", [(64, 256), (256, 64), (3, 48, 200)])
@pytest.mark.parametrize("restarts", [(), (2,), (1, 3)])
def test_cuda_float64_gram_is_the_standard_form_and_the_cpu_result(shape, restarts):
    G = _matrix(*shape)
    cpu = orthogonalize(G, "muon", dtype=torch.float64, method="standard")
    std = orthogonalize(G.cuda(), "muon", dtype=torch.float64, method="standard")
    gram = orthogonalize(G.cuda(), "muon", dtype=torch.float64, method="gram", restarts=restarts)
    # five quintic steps of slope <= 3.5 on inputs of norm 1: relative 1e-12 leaves 4000 u per step
    assert _rel(gram.cpu(), cpu) <= 1e-12 and _rel(std.cpu(), cpu) <= 1e-12


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
@pytest.mark.parametrize(("method", "gram_dtype"), [("standard", None), ("gram", "float32")])
def test_cuda_low_precision_error_matches_the_cpus_same_arithmetic(dtype, method, gram_dtype):
    G = _matrix(128, 512, seed=1).float()
    exact = orthogonalize(G.double(), "polar-express-5", dtype=torch.float64, method="standard")
    kw = {"dtype": dtype, "method": method, "gram_dtype": gram_dtype}
    cpu = orthogonalize(G, "polar-express-5", **kw)
    gpu = orthogonalize(G.cuda(), "polar-express-5", **kw).cpu()
    e_cpu = float(torch.linalg.matrix_norm(cpu.double() - exact, ord=2))
    e_gpu = float(torch.linalg.matrix_norm(gpu.double() - exact, ord=2))
    # products of dtype-rounded operands accumulated in float32 on both; only the summation order differs
    assert e_gpu <= 3 * e_cpu + 16 * unit_roundoff(dtype)
    assert torch.isfinite(gpu).all()


def test_cuda_plans_native_products_and_the_working_precision_gram_side():
    plan = evaluation_plan((1024, 4096), "muon", dtype="bf16", device="cuda", method="gram")
    assert plan.kernel.device == "cuda" and plan.kernel.gemm == "native"
    assert plan.gram_dtype == "bfloat16"  # R, Q stay bf16 on GPUs (nsiter.gram.default_gram_dtype)


@pytest.mark.parametrize("method", ["standard", "gram"])
def test_cuda_triton_symmetric_products_are_the_same_arithmetic(method):
    # a plan whose symmetric products run in nsiter.triton_kernels (what the probe picks where they are faster)
    # against the same plan on torch's products: products of bf16 operands accumulated in float32 and rounded
    # once, so the two runs differ by summation order only, far below the run's own rounding error
    pytest.importorskip("triton")
    from dataclasses import replace

    from nsiter.engine import run_plan
    from nsiter.evaluate import resolve_schedule
    from nsiter.measure import rounding_error

    sched = resolve_schedule("polar-express-5")
    G = _matrix(4, 128, 512).cuda()
    plan = evaluation_plan(G.shape, sched, dtype="bf16", device="cuda", method=method)
    fast = replace(plan, kernel=replace(plan.kernel, triton=True, symmetric_block=None))
    slow = replace(plan, kernel=replace(plan.kernel, triton=False, symmetric_block=None))
    exact = orthogonalize(G, sched, dtype=torch.float64, method="standard")
    a, b = (
        list(run_plan(G, sched, p, torch.bfloat16, check_finite=False, record=False))[-1].clone()
        for p in (fast, slow)
    )
    assert "triton" in fast.label
    assert rounding_error(a, exact) <= 1.5 * rounding_error(b, exact) + 64 * unit_roundoff("bf16")
    assert _rel(a.double(), b.double()) <= 0.05
