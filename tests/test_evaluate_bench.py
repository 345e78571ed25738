"""The benchmark's pieces: the plain reference loop computes our function, flop counts, budgets."""

from __future__ import annotations

import pytest
import torch

from nsiter import matrices
from nsiter.bench import (
    COLUMNS,
    BenchShape,
    parse_shape,
    reference_loop,
    run_benchmark,
    schedule_flops,
)
from nsiter.evaluate import orthogonalize
from nsiter.registry import load_schedule


@pytest.mark.parametrize("name", ["muon", "polar-express", "cubic", "jiacheng-6"])
@pytest.mark.parametrize("shape", [(40, 24), (24, 40), (2, 16, 20)])
def test_reference_loop_computes_the_same_function(name, shape):
    sched = load_schedule(name)
    G = matrices.log_uniform(shape[-2], shape[-1], 1e-2, seed=0, batch=shape[0] if len(shape) == 3 else None)
    ours = orthogonalize(G, sched, dtype=torch.float64)
    ref = reference_loop(G, sched, torch.float64)
    assert float((ours - ref).abs().max()) < 1e-12


@pytest.mark.parametrize("name", ["muon", "cubic", "polar-express", "jiacheng-6"])
def test_flops_of_square_matrices_are_two_n_cubed_per_product(name):
    # On square n x n input each of the schedule's matmuls (Schedule.matmuls) costs 2 n^3 flops.
    sched = load_schedule(name)
    assert schedule_flops(sched, 64, 64) == sched.matmuls * 2 * 64**3
    assert schedule_flops(sched, 64, 64, batch=3) == 3 * schedule_flops(sched, 64, 64)
    assert schedule_flops(sched, 32, 128) == schedule_flops(sched, 128, 32)


def test_parse_shape():
    assert parse_shape("1024x4096") == BenchShape(None, 1024, 4096)
    assert parse_shape("16x512x512") == BenchShape(16, 512, 512)
    assert str(parse_shape("16X512x256")) == "16x512x256"
    for bad in ("", "12", "1x2x3x4", "0x4", "ax4", "-1x3"):
        with pytest.raises(ValueError, match="shape"):
            parse_shape(bad)


def test_reference_loop_emulated_is_the_emulated_evaluator_function():
    # the plain loop with float32 GEMMs and every result rounded: dtype values, within the bf16 floor of
    # the native-dtype loop's distance to float64 (same schedule, same arithmetic model)
    G = matrices.log_uniform(24, 40, 1e-2, seed=1)
    sched = load_schedule("muon")
    emu = reference_loop(G, sched, "bf16", emulate=True)
    assert emu.dtype == torch.float32 and torch.equal(emu, emu.to(torch.bfloat16).float())
    exact = reference_loop(G.double(), sched, torch.float64)
    nat = reference_loop(G, sched, torch.bfloat16)
    d_emu = float(torch.linalg.matrix_norm(emu.double() - exact, 2))
    d_nat = float(torch.linalg.matrix_norm(nat.double() - exact, 2))
    assert d_emu <= 2 * d_nat and d_nat <= 2 * d_emu


def test_run_benchmark_rows_and_budget_notes():
    rows = run_benchmark(["16x24"], ["bf16"], "muon", 2, svd_max=8)
    assert len(rows) == 1 and set(rows[0]) == set(COLUMNS)
    r = rows[0]
    for v in ("ours", "standard_full", "standard_sym", "gram_full", "gram_sym", "bare", "reference"):
        assert r[f"{v}_ms"] > 0
    assert r["plain_emulated_ms"] > 0  # bf16: the emulated plain loop is timed too
    assert r["ratio_to_bare"] == pytest.approx(r["bare_ms"] / r["ours_ms"])
    assert r["speedup_vs_plain_emulated"] == pytest.approx(r["plain_emulated_ms"] / r["ours_ms"])
    assert r["svd_ms"] is None and "svd not measured" in r["note"]
    assert r["plan"].startswith(("standard", "gram")) and "bfloat16" in r["kernel"]
    # every variant that ran states its rounding error against the float64 run; bf16 errors are
    # above float32 rounding and below the bf16 floor's order of magnitude
    for v in ("ours", "standard_full", "gram_sym", "reference", "plain_emulated"):
        assert 1e-6 < r[f"{v}_err"] < 1.0
    # a budget far below one call's predicted time: nothing is run, and the note says so
    rows = run_benchmark(["64x64"], ["fp32"], "muon", 2, case_budget_s=1e-9, svd=False, errors=False)
    assert rows[0]["ours_ms"] is None and "ours not measured: predicted" in rows[0]["note"]


def test_run_benchmark_rejects_bad_arguments():
    with pytest.raises(ValueError, match="repeats"):
        run_benchmark(["8x8"], ["fp32"], "muon", 0)
    with pytest.raises(ValueError, match="dtype"):
        run_benchmark(["8x8"], ["int8"], "muon", 1)
    with pytest.raises(ValueError, match="case_budget_s"):
        run_benchmark(["8x8"], ["fp32"], "muon", 1, case_budget_s=-1.0)


def test_cli_checks_out_before_running(tmp_path, capsys):
    from nsiter.cli import main

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    # a folder that cannot be created (its parent is a file): exit 2 at once, nothing benchmarked
    assert main(["bench", "--shapes", "4096x4096", "--out", str(blocker / "x.csv")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nsiter: error: cannot write") and err.count("\n") == 1
