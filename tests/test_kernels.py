"""Measured kernel dispatch and blocked symmetric products: same arithmetic both ways, exact flop counts."""

from __future__ import annotations

import json

import pytest
import torch

from nsiter.evaluate import evaluation_plan, orthogonalize
from nsiter.kernels import (
    KernelChoice,
    Products,
    cache_path,
    clear_cache,
    gemm_path,
    kernel_choice,
    size_class,
    symmetric_mm,
    symmetric_product_flops,
)
from nsiter.schedule import Schedule


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    """A cache file of this test's own, and no decisions remembered from other tests."""
    path = tmp_path / "kernels.json"
    monkeypatch.setenv("NSITER_KERNEL_CACHE", str(path))
    clear_cache()
    yield path
    clear_cache()


def small_integers(*shape, seed=0, high=3):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(-high, high + 1, shape, generator=g).to(torch.float32)


@pytest.mark.parametrize("block", [1, 3, 4, 8, 13])
def test_symmetric_product_of_integers_is_exact(block):
    # Small integers multiply and add exactly in float32, so the blocked product (upper blocks computed,
    # the rest mirrored) must equal the full product bit for bit: X X^T, A^2 and A p(A) with beta, alpha.
    X = small_integers(13, 20)
    A = X @ X.T
    out = torch.empty(13, 13)
    assert torch.equal(symmetric_mm(X, X.T, out, block=block), X @ X.T)
    assert torch.equal(symmetric_mm(A, A, out, block=block), A @ A)
    P = 3 * A + A @ A  # a polynomial in A: commutes with A, so A P is symmetric
    expected = 2.0 * A + 0.5 * (A @ P)
    assert torch.equal(symmetric_mm(A, P, out, block=block, C=A, beta=2.0, alpha=0.5), expected)
    assert torch.equal(out, out.T)


def test_symmetric_product_batched_is_exact():
    X = small_integers(3, 10, 17, seed=1)
    out = torch.empty(3, 10, 10)
    A = X @ X.mT
    assert torch.equal(symmetric_mm(X, X.mT, out, block=4), A)
    assert torch.equal(symmetric_mm(A, A, out, block=4, C=A, beta=-1.0), A @ A - A)


@pytest.mark.parametrize(("m", "blocks"), [(64, 2), (64, 8), (96, 3), (1024, 8)])
def test_symmetric_flops_closed_form(m, blocks):
    # k row blocks of s = m / k rows: sum_i 2 s (m - i s) n = m^2 n (1 + 1/k), half the full product as k grows
    n = 40
    assert symmetric_product_flops(m, n, m // blocks) == m * m * n * (blocks + 1) // blocks
    assert symmetric_product_flops(m, n, None) == 2 * m * m * n
    assert symmetric_product_flops(m, n, m) == 2 * m * m * n


def test_size_class():
    assert [size_class(m) for m in (1, 16, 17, 100, 128, 129, 1024)] == [16, 16, 32, 128, 128, 256, 1024]
    with pytest.raises(ValueError, match="0"):
        size_class(0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_native_and_emulated_compute_the_same_arithmetic(dtype):
    # Entries +-1/8 and 0, normalized and rounded to dtype: every product of dtype values is exact in
    # float32 and the sums of 16 of them too, so both paths round the same float32 numbers once: equal.
    X = small_integers(8, 16, high=1) / 8
    sched = Schedule.from_coefficients([(1.5, -0.5)] * 3)
    emu = orthogonalize(X, sched, dtype=dtype, emulate=True, method="standard")
    nat = orthogonalize(X, sched, dtype=dtype, emulate=False, method="standard")
    assert torch.equal(emu, nat)
    assert torch.equal(emu, emu.to(dtype).to(torch.float32))  # dtype-representable


def test_rounding_in_place_is_torch_rounding():
    ops = Products(
        kernel_choice("cpu", "bf16", 16, emulate=True, symmetric=False), "bf16", torch.device("cpu")
    )
    T = torch.randn(7, 9, generator=torch.Generator().manual_seed(3))
    expected = T.to(torch.bfloat16).to(torch.float32)
    assert torch.equal(ops.rx(T.clone()), expected)
    assert ops.compute == torch.float32 and ops.round_to == torch.bfloat16


def test_probe_decides_and_cache_file_round_trips(private_cache, monkeypatch):
    c = kernel_choice("cpu", "bf16", 24)
    assert c.source == "probe" and c.gemm in ("native", "emulated")
    assert c.native_ms is not None and c.emulated_ms is not None  # measured, both ways
    data = json.loads(private_cache.read_text())
    (key,) = data["entries"]
    assert key.endswith("|bfloat16|32") and torch.__version__ in key
    clear_cache()
    again = kernel_choice("cpu", "bfloat16", 30)  # same size class, from the file
    assert again.source == "cache file" and again.gemm == c.gemm
    # a corrupt file is ignored and rewritten
    private_cache.write_text("{not json")
    clear_cache()
    assert kernel_choice("cpu", torch.bfloat16, 24).source == "probe"
    assert set(json.loads(private_cache.read_text())) == {"version", "entries"}
    # the capability string alone decides nothing: a claimed AVX-512 CPU is probed again
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    assert kernel_choice("cpu", "bf16", 24).source == "probe"
    # float64 GEMMs take longer per flop than float32 ones (half the SIMD lanes): what auto weighs
    assert kernel_choice("cpu", "fp32", 200).float64_cost > 1.0


def test_cache_off(private_cache, monkeypatch):
    monkeypatch.setenv("NSITER_KERNEL_CACHE", "off")
    assert cache_path() is None
    kernel_choice("cpu", "fp16", 20)
    assert not private_cache.exists()


def test_overrides_and_rules(private_cache):
    c = kernel_choice("cpu", "bf16", 40, emulate=True, symmetric=8)
    assert c.gemm == "emulated" and c.symmetric_block == 8 and c.emulated
    assert kernel_choice("cpu", "bf16", 40, emulate=False, symmetric=False).gemm == "native"
    # float32/float64 are always native (emulate=True changes only low precision)
    f = kernel_choice("cpu", "fp32", 40, emulate=True)
    assert f.gemm == "native" and gemm_path("cpu", torch.float64, (3, 40, 50)) == "native"
    assert isinstance(f, KernelChoice) and "float32 native" in f.label
    for bad in ({"emulate": "yes"}, {"symmetric": 0}, {"symmetric": 2.5}):
        with pytest.raises(ValueError):
            kernel_choice("cpu", "bf16", 40, **bad)
    with pytest.raises(ValueError, match="shape"):
        gemm_path("cpu", "bf16", (5,))


def test_plan_records_the_path_that_ran(private_cache):
    plan = evaluation_plan((2, 48, 16), "muon", dtype="fp16", emulate=True, symmetric=False)
    assert plan.kernel.gemm == "emulated" and (plan.m, plan.n) == (16, 48)
    assert plan.label.endswith("float16 emulated, full")
