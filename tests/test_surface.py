"""What a notebook user meets: one-line reprs that say what an object is, and tables on request."""

from __future__ import annotations

import pytest

import nsiter
from nsiter.analysis import analyze


@pytest.mark.parametrize("name", nsiter.available_schedules())
def test_schedule_repr_is_one_line_naming_the_schedule(name):
    s = nsiter.load_schedule(name)
    text = repr(s)
    assert "\n" not in text and len(text) <= 200, text
    assert text.startswith(f"Schedule({name!r}, {len(s)} ")
    assert s.normalization.norm in text and s.provenance.kind in text
    if s.restarts:
        assert f"restarts={s.restarts}" in text


def test_analysis_repr_states_the_final_certified_band():
    res = analyze("muon", 1e-3)
    text = repr(res)
    assert "\n" not in text and len(text) <= 200
    assert (
        f"{res.final.lo:.6g}" in text and f"{res.final.hi:.6g}" in text and f"{res.final_error:.4g}" in text
    )
    html = res._repr_html_()
    assert html.count("<tr>") == len(res.bands) + 1  # header + one row per band (input included)
    df = res.to_pandas()
    assert list(df["error"]) == res.errors


def test_trajectory_and_measurement_reprs_are_one_line_over_their_rows():
    """A 64x32 trajectory printed 17,627 characters; now one line naming what it is, its table on request."""
    import torch

    from nsiter._display import MAX_HTML_ROWS
    from nsiter.matrices import log_uniform
    from nsiter.measure import Case, measure

    G = torch.stack([log_uniform(64, 32, 1e-3, seed=s) for s in range(3)])
    tr = nsiter.trajectory(G, "muon", dtype=torch.float32)
    text = repr(tr)
    assert "\n" not in text and len(text) <= 200, text
    worst = max(r["polar_err_2"] for r in tr.rows if r["step"] == 5)
    assert text.startswith("Trajectory('muon', float32, shape (3, 64, 32): 3 matrices, steps 0..5")
    assert f"worst polar_err_2 {worst:.4g} at step 5" in text
    html = tr._repr_html_()
    assert html.count("<tr>") == len(tr.rows) + 1 and f"{tr.rows[-1]['rho']:.4g}" in html
    assert list(tr.to_pandas().columns) == ["schedule", "dtype", *tr.rows[0]]

    m = measure("muon", [Case.of(G[i], f"g{i}") for i in range(3)], dtype="float32", every_step=True)
    text = repr(m)
    assert text == "Measurement('muon', float32, exact normalization: 3 matrices, steps 0..5)", text
    assert len(m.to_pandas()) == len(m.rows) == 3 * 6
    # a long table shows its first MAX_HTML_ROWS rows and counts the rest
    many = measure(
        "muon", [Case.of(log_uniform(8, 8, 1e-2, seed=s), "s") for s in range(12)], every_step=True
    )
    assert len(many.rows) == 72 > MAX_HTML_ROWS
    html = many._repr_html_()
    assert html.count("<tr>") == MAX_HTML_ROWS + 1 and f"{72 - MAX_HTML_ROWS} more rows" in html


def test_attractor_and_plan_reprs_are_one_line():
    from nsiter.dynamics import attractor
    from nsiter.plan import evaluation_plan

    att = attractor(nsiter.load_schedule("muon")[0])
    text = repr(att)
    assert "\n" not in text and len(text) <= 200, text
    assert text.startswith("Attractor(cycle, ") and "4 (attracting)" in text  # Muon's proved 4-cycle
    plan = evaluation_plan((64, 256), "muon", dtype="float32", method="standard")
    assert repr(plan) == f"Plan(64x256: {plan.label}; given)"
