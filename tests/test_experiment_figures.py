"""The experiments' figures show every row they are given: nothing dropped off scale, one panel per matrix,
Turbo-Muon's scalar analysis labelled as no certificate (drawn from small synthetic tables, no compute)."""

from __future__ import annotations

from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest

from experiments import gram_restarts, schedules_compared, train_muon


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def _points(ax) -> np.ndarray:
    return np.concatenate([c.get_offsets() for c in ax.collections if len(c.get_offsets())])


def test_gram_restarts_plot_draws_every_placement_and_counts_the_off_scale_ones():
    inf = float("inf")
    values = [(0.1, 0.2), (5.0, 3.0), (inf, 2.0), (2e3, 1.0), (0.5, inf), (inf, inf), (float("nan"), 1.0)]
    rows = [{"dtype": dt, "measured": m, "predicted": p} for dt in ("fp16", "bf16") for m, p in values]
    fig = gram_restarts.plot({"placements": rows}, None)
    (ax,) = fig.axes
    pts = _points(ax)
    assert len(pts) == len(rows)  # every placement is drawn
    assert np.all(np.isfinite(pts)) and np.all(pts <= ax.get_xlim()[1]) and np.all(pts <= ax.get_ylim()[1])
    assert np.sum(pts[:, 0] >= gram_restarts.LIMITS[1]) == 2 * 4  # measured off scale (inf, 2e3, NaN)
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    # per dtype: 5 off scale, of them 4 with an inf; 3 on the right strip, 1 on the top one, 1 in the corner
    assert (
        sum("5 off scale" in t and "4 inf" in t and "3 right, 1 top, 1 in the corner" in t for t in legend)
        == 2
    )
    assert ax.get_title() and "nsiter.restarts" not in ax.get_ylabel()


def test_train_muon_spectra_one_panel_per_matrix_one_line_per_step():
    rows = [
        {"task": t, "param": p, "step": s, "rows": 4, "cols": 4, "x": 2.0**-i / s}
        for t, params in (("a", ("w1", "w2", "w3")), ("b", ("v1",)))
        for p in params
        for s in (1, 10)
        for i in range(4)
    ]
    fig = train_muon._spectra_figure(rows)
    assert len(fig.axes) == 4
    assert sorted(ax.get_title() for ax in fig.axes) == [
        "a: w1 (4x4)",
        "a: w2 (4x4)",
        "a: w3 (4x4)",
        "b: v1 (4x4)",
    ]
    assert all(len(ax.get_lines()) == 2 for ax in fig.axes)


def test_schedules_compared_marks_turbo_muon_as_not_certified():
    rows = [
        {
            "schedule": n,
            "step": k,
            "matmuls": 3 * k,
            "certified_error": 1 - 0.05 * k,
            "measured_error": 1 - 0.04 * k,
            "certified_diverged": False,
            "measured_diverged": False,
            "normalization": norm,
        }
        for n, norm in (("muon", "spectral (exact)"), ("turbo-muon", "aol"))
        for k in range(5)
    ]

    fig = schedules_compared.plot({"main": rows}, SimpleNamespace(params={"lo": 1e-3}))
    (aol,) = [ax for ax in fig.axes if "AOL" in ax.get_title()]
    legend = " ".join(t.get_text() for t in aol.get_legend().get_texts())
    assert "not certified for the schedule as run" in legend and "scalar 0.80" in legend
