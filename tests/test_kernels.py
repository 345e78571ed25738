"""Measured kernel dispatch and blocked symmetric products: same arithmetic both ways, exact flop counts."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from nsiter import kernels
from nsiter.cost import symmetric_product_flops
from nsiter.evaluate import evaluation_plan, orthogonalize
from nsiter.kernels import (
    CLOSE,
    DECISIVE_SIZE,
    KernelChoice,
    Products,
    cache_path,
    check_entry,
    clear_cache,
    gemm_path,
    kernel_choice,
    rule_choice,
    size_class,
    symmetric_mm,
    verify_cache,
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


@pytest.fixture
def tuning(private_cache, monkeypatch):
    """Measured decisions (the suite runs with ``NSITER_TUNE=off``, tests/conftest.py)."""
    monkeypatch.setenv("NSITER_TUNE", "on")
    return private_cache


class Timed:
    """A stand-in for a timed product: calling it does nothing, its time is ``ms`` (injected timings)."""

    def __init__(self, ms: float):
        self.ms = ms

    def __call__(self) -> None:
        pass


@pytest.fixture
def injected(tuning, monkeypatch):
    """Inject GEMM timings: ``set(native, emulated)`` maps a probe size to (native ms, emulated ms)."""
    table: dict[int, tuple[float, float]] = {}
    monkeypatch.setattr(
        kernels,
        "_gemm_pair",
        lambda device, dtype, size: {"native": Timed(table[size][0]), "emulated": Timed(table[size][1])},
    )
    monkeypatch.setattr(kernels, "_once_ms", lambda fn, device: fn.ms)

    def median_ms(fns, device, rounds):  # symmetric probes: full products 1 ms, blocked 2 ms
        return {
            k: [fn.ms if isinstance(fn, Timed) else 1.0 + (k != "full")] * rounds for k, fn in fns.items()
        }

    monkeypatch.setattr(kernels, "_median_ms", median_ms)
    return table


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
    assert torch.equal(ops.round_x(T.clone()), expected)
    assert ops.compute == torch.float32 and ops.round_to == torch.bfloat16


def test_probe_decides_and_cache_file_round_trips(tuning, monkeypatch):
    private_cache = tuning
    c = kernel_choice("cpu", "bf16", 24)
    assert c.source == "probe" and c.gemm in ("native", "emulated")
    assert c.emulated_ms is not None and c.decisive_ratio > 0  # measured
    assert c.native_ms is not None or c.decisive_ratio >= 4  # native timed unless scalar at 256
    assert c.probe_size == 32 and c.rounds >= 5
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
    # float32 entries measure what a float64 Gram side costs per flop (a timing: only its form is asserted)
    f64 = kernel_choice("cpu", "fp32", 200).float64_cost
    assert math.isfinite(f64) and f64 > 0


def test_cache_off(tuning, monkeypatch):
    private_cache = tuning
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


def _entry(**kw):
    """A valid bf16 cache entry for size class 128 (as the probe writes it), with ``kw`` changed."""
    good = asdict(
        KernelChoice("cpu", "bfloat16", 128, "native", 32, "probe", 1.0, 2.0, 3.0, 2.5, None, 128, 5, 0.4)
    )
    return {**good, **kw}


KEY = "cpu|some cpu; AVX512; 2 threads|torch 2.13|bfloat16|128"
INVALID = [
    ({"triton": True}, "triton"),  # Triton kernels run on CUDA only
    ({"triton": "yes"}, "triton"),
    ({"triton": None}, "triton"),
    ({"symmetric_block": -1}, "symmetric_block"),
    ({"symmetric_block": 0}, "symmetric_block"),
    ({"symmetric_block": "abc"}, "symmetric_block"),
    ({"symmetric_block": 64.5}, "symmetric_block"),
    ({"symmetric_block": True}, "symmetric_block"),
    ({"symmetric_block": 48}, "symmetric_block"),  # not a multiple of 32
    ({"symmetric_block": 128}, "symmetric_block"),  # a whole size class: not a block
    ({"gemm": "banana"}, "gemm"),
    ({"gemm": None}, "gemm"),
    ({"native_ms": math.nan}, "native_ms"),
    ({"emulated_ms": math.inf}, "emulated_ms"),
    ({"full_ms": -1.0}, "full_ms"),
    ({"symmetric_ms": "fast"}, "symmetric_ms"),
    ({"decisive_ratio": False}, "decisive_ratio"),
    ({"rounds": 0}, "rounds"),
    ({"probe_size": 2.5}, "probe_size"),
    ({"source": "guess"}, "source"),
    ({"dtype": "float16"}, "entry is for"),
    ({"device": "cuda"}, "entry is for"),
    ({"size_class": 256}, "entry is for"),
    ({"extra": 1}, "extra"),
]


@pytest.mark.parametrize(("change", "message"), INVALID)
def test_invalid_cache_entries_are_named(change, message):
    assert check_entry(KEY, _entry()) == KernelChoice(**_entry())
    with pytest.raises(ValueError, match=message):
        check_entry(KEY, _entry(**change))
    missing = _entry()
    del missing["gemm"]
    with pytest.raises(ValueError, match="gemm"):
        check_entry(KEY, missing)
    with pytest.raises(ValueError, match="object"):
        check_entry(KEY, [1, 2])
    with pytest.raises(ValueError, match="gemm"):  # float32 has no emulated path
        check_entry(KEY.replace("bfloat16", "float32"), _entry(dtype="float32", gemm="emulated"))


@pytest.mark.parametrize(("change", "message"), [c for c in INVALID if c[1] != "entry is for"])
def test_an_invalid_entry_is_measured_again_never_used(injected, private_cache, change, message):
    # The entry stored under this machine's key for bf16, size class 128: ignored with a warning, measured
    # again (injected timings: native 2x faster at every size) and replaced; the result is finite.
    path = private_cache
    injected.update({DECISIVE_SIZE: (1.0, 2.0), 128: (1.0, 2.0)})
    key = kernels._key(torch.device("cpu"), "bfloat16", 128)
    path.write_text(json.dumps({"version": kernels._CACHE_VERSION, "entries": {key: _entry(**change)}}))
    with pytest.warns(RuntimeWarning, match=message):
        c = kernel_choice("cpu", "bf16", 100)
    assert c.source == "probe" and c.gemm == "native"
    stored = json.loads(path.read_text())["entries"][key]
    assert check_entry(key, stored) == c
    G = torch.randn(100, 300, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(orthogonalize(G, "muon")).all()


def test_a_scalar_native_gemm_is_never_chosen(injected):
    # measured on a loaded 2-core AMD EPYC: fp16 at size class 256 timed 21.7 ms native against 25.8 emulated (here at
    # class 128: a smaller probe that native wins by 19%); at the decisive size 256 a scalar fp16 GEMM is 30x
    # slower than emulation: never native, at any size
    injected.update({DECISIVE_SIZE: (67.0, 2.2), 64: (0.01, 0.02), 128: (21.7, 25.8)})
    for m in (64, 128):
        c = kernel_choice("cpu", "fp16", m)
        assert c.gemm == "emulated" and c.decisive_ratio == pytest.approx(67.0 / 2.2)
        assert c.native_ms is None  # not timed again at the class size: its loss is known


class ColdStart(Timed):
    """A product whose first call pays a one-time set-up (``cold`` ms) and then runs in ``ms``."""

    def __init__(self, cold: float, ms: float):
        super().__init__(cold)
        self.warm = ms

    def __call__(self) -> None:
        self.ms = self.warm


def test_a_cold_first_call_does_not_make_a_fast_native_gemm_scalar(injected, monkeypatch):
    # An Intel Xeon with AMX: oneDNN's first bf16 product at 256 took 2.7 ms (kernel set-up), later ones
    # 0.045 ms against 0.113 ms emulated.  Timing the first call called native bf16 scalar (ratio 15.6) and
    # pinned the 2.5-4x slower emulation at every size; the warm-up call is not timed.
    injected.update({64: (0.5, 1.0)})
    pair = {"native": ColdStart(2.7, 0.045), "emulated": Timed(0.113)}
    sizes = {}
    monkeypatch.setattr(
        kernels,
        "_gemm_pair",
        lambda device, dtype, size: (
            pair
            if size == DECISIVE_SIZE
            else sizes.setdefault(
                size, {"native": Timed(injected[size][0]), "emulated": Timed(injected[size][1])}
            )
        ),
    )
    c = kernel_choice("cpu", "bf16", 64)
    assert c.decisive_ratio == pytest.approx(0.045 / 0.113) and c.gemm == "native"


def test_close_calls_are_measured_again_and_go_to_emulation(injected):
    # native within CLOSE of emulation: re-measured (5 + 9 rounds) and, still close, emulated; a decisive
    # native win (3.8x, bf16 GEMMs on AVX-512 bf16) is native
    close = 1.0 / (1 + CLOSE / 2)
    injected.update({DECISIVE_SIZE: (1.0, 3.8), 32: (close, 1.0), 64: (1.0, 3.8)})
    c = kernel_choice("cpu", "bf16", 32)
    assert c.gemm == "emulated" and c.rounds == 14
    d = kernel_choice("cpu", "bf16", 64)
    assert d.gemm == "native" and d.rounds == 5 and d.decisive_ratio == pytest.approx(1 / 3.8)


def test_verify_measures_every_entry_again(injected, private_cache):
    path = private_cache
    injected.update({DECISIVE_SIZE: (67.0, 2.2), 32: (0.01, 0.02)})
    pinned = kernel_choice("cpu", "fp16", 20, emulate=False)  # as a loaded probe would have pinned it
    key = kernels._key(torch.device("cpu"), "float16", 32)
    path.write_text(
        json.dumps(
            {"version": kernels._CACHE_VERSION, "entries": {key: {**asdict(pinned), "source": "probe"}}}
        )
    )
    clear_cache()
    assert kernel_choice("cpu", "fp16", 20).gemm == "native"  # the file is trusted until verified
    (row,) = verify_cache()
    assert row["stored"].startswith("float16 native") and row["measured"].startswith("float16 emulated")
    assert not row["agree"]
    assert kernel_choice("cpu", "fp16", 20).gemm == "emulated"
    assert json.loads(path.read_text())["entries"][key]["gemm"] == "emulated"
    assert [r["agree"] for r in verify_cache()] == [True]


def test_tuning_off_is_the_rule_table(private_cache, monkeypatch):
    monkeypatch.setenv("NSITER_TUNE", "off")
    for dtype, gemm in (("bf16", "emulated"), ("fp16", "emulated"), ("fp32", "native")):
        for m, block in ((20, None), (200, None), (300, 128), (600, 256), (2000, 512)):
            c = kernel_choice("cpu", dtype, m)
            assert (c.gemm, c.symmetric_block, c.source) == (gemm, block, "rule")
    assert rule_choice("cuda", "bf16", 1024).gemm == "native"
    assert not private_cache.exists()  # nothing measured, nothing written


def test_cache_path_expands_the_home_directory(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NSITER_KERNEL_CACHE", "~/k.json")
    assert cache_path() == tmp_path / "k.json"
    assert cache_path() != Path("~/k.json")  # not a literal ./~/ folder
