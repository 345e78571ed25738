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
