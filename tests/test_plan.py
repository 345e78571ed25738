"""The planning module: every decision of ``method="auto"`` with its reason, the measured accuracy gate, the timed
choice (injected timings: no test depends on the machine's speed) and the plan cache file."""

from __future__ import annotations

import json

import pytest
import torch

from nsiter import kernels
from nsiter import plan as planning
from nsiter.cost import gram_side_flops, method_flops, standard_flops
from nsiter.evaluate import orthogonalize
from nsiter.kernels import clear_cache
from nsiter.measure import rounding_errors
from nsiter.plan import GRAM_TOLERANCE, evaluation_plan, gate_matrices, plan_cache_path
from nsiter.registry import load_schedule


@pytest.fixture
def tuned(tmp_path, monkeypatch):
    """Tuning on, with the rule table's kernels (no GEMM probe) and a private cache; ``set(medians)`` injects
    the plan timings by candidate label."""
    monkeypatch.setenv("NSITER_KERNEL_CACHE", str(tmp_path / "kernels.json"))
    clear_cache()
    planning._plans.clear()
    monkeypatch.setenv("NSITER_TUNE", "on")
    monkeypatch.setattr(
        planning,
        "kernel_choice",
        lambda device, dt, m, **kw: kernels.rule_choice(device, dt, kernels.size_class(m)),
    )
    timings: dict[str, float] = {}
    calls = []

    def fake(sched, dt, device, batch, m, n, plans):
        calls.append(sorted(plans))
        return {k: timings.get(k, 10.0) for k in plans}, f"{m}x{n}"

    monkeypatch.setattr(planning, "_time_plans", fake)
    yield timings, calls
    planning._plans.clear()
    clear_cache()


def test_flop_counts_are_one_function():
    # the planner, the benchmark and the budget search count with nsiter.cost: both forms, by hand for Muon
    muon, m, n = load_schedule("muon"), 64, 256
    assert standard_flops(muon, m, n) == method_flops(muon, m, n) == 5 * (4 * m * m * n + 2 * m**3)
    x, g = gram_side_flops(muon, m, n, ())
    assert (x, g) == (2 * m * m * n, 2 * m * m * n + 17 * 2 * m**3)
    assert x + g == method_flops(muon, m, n, method="gram", restarts=())


def test_the_gate_is_the_rounding_error_of_the_kernel_that_would_run():
    # the reasons quote the measured ratio; recomputed here independently from the gate's matrices
    muon = load_schedule("muon")
    plan = evaluation_plan((256, 1024), muon, dtype="bf16")
    assert plan.method == "gram" and plan.gram_dtype == "float32"
    G = gate_matrices(64, 256)
    exact = orthogonalize(G, muon, dtype=torch.float64, method="standard")
    std = rounding_errors(orthogonalize(G, muon, dtype="bf16", method="standard", emulate=True), exact)
    rs = plan.restarts
    gram = rounding_errors(
        orthogonalize(G, muon, dtype="bf16", method="gram", gram_dtype="float32", restarts=rs, emulate=True),
        exact,
    )
    worst = max(g / s for g, s in zip(gram, std, strict=True))
    assert worst <= GRAM_TOLERANCE
    assert f"up to {worst:.3g}x the standard form's" in plan.explain()


def test_timing_picks_the_fastest_admitted_plan_and_the_file_keeps_it(tuned):
    timings, calls = tuned
    muon = load_schedule("muon")
    timings.update({"standard": 5.0})  # every Gram candidate at the default 10 ms: the standard form wins
    p = evaluation_plan((256, 1024), muon, dtype="bf16")
    assert (p.method, p.source) == ("standard", "measured") and len(calls) == 1
    assert "standard" in calls[0] and len(calls[0]) >= 2  # the standard form and the admitted Gram plans
    stored = json.loads(plan_cache_path().read_text())["entries"]
    assert [e["method"] for e in stored.values()] == ["standard"]
    # a new process (nothing in memory) reads the file: no timing again
    planning._plans.clear()
    again = evaluation_plan((256, 1024), muon, dtype="bf16")
    assert again.method == "standard" and len(calls) == 1 and "plan cache file" in again.explain()


def test_a_close_call_goes_to_the_fewest_flops(tuned):
    timings, _ = tuned
    muon = load_schedule("muon")
    gram = "gram (R, Q float32; restarts [2, 3])"
    timings.update({"standard": 10.0, gram: 10.0 * (1 + planning.CLOSE / 2)})  # Gram slower, within CLOSE
    p = evaluation_plan((256, 1024), muon, dtype="bf16")
    assert p.method == "gram" and "fewest flops" in p.explain()


def test_a_stored_plan_that_is_not_admitted_is_measured_again(tuned):
    _, calls = tuned
    muon = load_schedule("muon")
    evaluation_plan((256, 1024), muon, dtype="bf16")
    path = plan_cache_path()
    data = json.loads(path.read_text())
    for e in data[
        "entries"
    ].values():  # a hand-edited entry: bf16 R, Q without restarts (the gate refuses it)
        e.update(method="gram", gram_dtype="bfloat16", restarts=[])
    path.write_text(json.dumps(data))
    planning._plans.clear()
    evaluation_plan((256, 1024), muon, dtype="bf16")
    assert len(calls) == 2
    path.write_text("[1, 2")  # corrupt: measured again, never a traceback
    planning._plans.clear()
    evaluation_plan((256, 1024), muon, dtype="bf16")
    assert len(calls) == 3


def test_given_choices_are_not_second_guessed():
    muon = load_schedule("muon")
    p = evaluation_plan((1024, 1024), muon, method="gram", gram_dtype="bf16", restarts=(2,))
    assert (p.method, p.gram_dtype, p.restarts, p.source) == ("gram", "bfloat16", (2,), "given")
    with pytest.raises(ValueError, match="q_order"):
        evaluation_plan((64, 256), muon, q_order="xy")
    with pytest.raises(ValueError, match="method"):
        evaluation_plan((64, 256), muon, method="fast")
