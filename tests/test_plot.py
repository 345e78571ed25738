"""Every plot function runs headless and draws what it should (lines, heatmap shape and colour limits)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.collections import PolyCollection

from nsiter import plot
from nsiter.plot import style


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def test_style_palette_is_okabe_ito_and_vector_text():
    style.use_style()
    # Okabe & Ito (2008) "Color Universal Design": the eight colours, blue first here
    assert len(set(style.OKABE_ITO)) == 8
    assert matplotlib.rcParams["axes.prop_cycle"].by_key()["color"] == list(style.OKABE_ITO)
    assert matplotlib.rcParams["pdf.fonttype"] == 42


def test_singular_value_trajectories_one_line_per_index_and_target():
    rows = [{"step": k, "index": i, "sigma": 1 - 0.5**k / (i + 1)} for k in range(6) for i in range(4)]
    ax = plot.singular_value_trajectories(rows)
    lines = ax.get_lines()
    assert len(lines) == 5  # 4 singular indices + the target line
    target = [ln for ln in lines if ln.get_linestyle() == "--"]
    assert len(target) == 1 and set(target[0].get_ydata()) == {1.0}
    first = lines[0]
    np.testing.assert_array_equal(first.get_xdata(), np.arange(6))
    np.testing.assert_allclose(first.get_ydata(), [1 - 0.5**k for k in range(6)])


def test_spectral_distance_log_scale_one_line_per_series():
    rows = [{"step": k, "rho": 10.0**-k, "schedule": s} for s in ("a", "b") for k in range(5)]
    ax = plot.spectral_distance(rows, series="schedule")
    assert ax.get_yscale() == "log"
    assert len(ax.get_lines()) == 2
    np.testing.assert_allclose(ax.get_lines()[1].get_ydata(), 10.0 ** -np.arange(5))


def test_gram_heatmap_shape_and_fixed_colour_limits():
    m = np.abs(np.random.default_rng(0).standard_normal((6, 6)))
    ax = plot.gram_heatmap(m)
    (im,) = ax.get_images()
    assert im.get_array().shape == (6, 6)
    assert im.get_clim() == (0.0, 1.0)
    np.testing.assert_array_equal(im.get_array(), m)


def test_identity_deviation_heatmap_is_centred_at_identity():
    b = np.eye(5) + 0.01 * np.arange(25).reshape(5, 5) / 25
    ax = plot.identity_deviation_heatmap(b)
    (im,) = ax.get_images()
    lo, hi = im.get_clim()
    assert lo == -hi and hi == pytest.approx(np.max(np.abs(b - np.eye(5))))
    np.testing.assert_allclose(im.get_array(), b - np.eye(5))
    assert im.get_cmap().name == style.DIVERGING
    ax2 = plot.identity_deviation_heatmap(np.eye(3), limit=0.05)
    assert ax2.get_images()[0].get_clim() == (-0.05, 0.05)
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        plot.identity_deviation_heatmap(np.ones((2, 3)))


def test_scalar_map_curves_and_shaded_bands():
    x = np.linspace(0, 1.2, 50)
    curves = [{"step": k, "x": v, "y": float(np.tanh(3 * k * v))} for k in (1, 2, 3) for v in x]
    bands = [{"step": k, "lo": float(np.tanh(3 * k * 0.1)), "hi": 1.0} for k in (1, 2, 3)]
    ax = plot.scalar_map(curves, bands, interval=(0.1, 1.0))
    data = [ln for ln in ax.get_lines() if len(ln.get_xdata()) == 50]
    assert len(data) == 3
    polys = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(polys) == 3
    # the first band spans y in [tanh(0.3), 1] over x in [0.1, 1]
    verts = polys[0].get_paths()[0].vertices
    assert verts[:, 1].min() == pytest.approx(np.tanh(0.3)) and verts[:, 1].max() == pytest.approx(1.0)
    assert verts[:, 0].min() == pytest.approx(0.1) and verts[:, 0].max() == pytest.approx(1.0)


def test_schedule_comparison_certified_and_measured_per_schedule():
    rows = [
        {"schedule": s, "step": k, "matmuls": 3 * k, "certified_error": 2.0**-k, "measured_error": 3.0**-k}
        for s in ("muon", "cubic", "quintic")
        for k in range(1, 6)
    ]
    ax = plot.schedule_comparison(rows, x="matmuls")
    lines = ax.get_lines()
    assert len(lines) == 6  # 3 schedules x (certified, measured)
    assert sum(ln.get_linestyle() == "-" for ln in lines) == 3
    assert ax.get_yscale() == "log"
    np.testing.assert_array_equal(lines[0].get_xdata(), [3, 6, 9, 12, 15])
    assert lines[0].get_color() == lines[1].get_color()  # one colour per schedule
    rows[0]["measured_error"] = None  # a missing measurement is a gap, not a zero
    ax2 = plot.schedule_comparison(rows, certified=None)
    muon = plot.series_styles(["muon", "cubic", "quintic"])["muon"]["color"]
    (line,) = [ln for ln in ax2.get_lines() if ln.get_color() == muon]
    assert len(ax2.get_lines()) == 3 and np.isnan(line.get_ydata()[0])


def test_dtype_floors_one_line_per_dtype_with_reference():
    rows = [
        {"dtype": d, "n": n, "floor": u * np.sqrt(n), "u": u}
        for d, u in (("float32", 2.0**-24), ("bfloat16", 2.0**-8))
        for n in (16, 64, 256)
    ]
    ax = plot.dtype_floors(rows, reference="u")
    assert len(ax.get_lines()) == 4
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"


def test_plot_functions_draw_on_a_given_axes_and_reject_missing_columns():
    _fig, axes = plt.subplots(1, 2)
    rows = [{"step": 0, "index": 0, "sigma": 0.5}, {"step": 1, "index": 0, "sigma": 0.9}]
    assert plot.singular_value_trajectories(rows, axes[1]) is axes[1]
    assert not axes[0].get_lines()
    with pytest.raises(ValueError, match="sigma"):
        plot.singular_value_trajectories([{"step": 0, "index": 0}])
    with pytest.raises(ValueError, match="no rows"):
        plot.spectral_distance([])


def test_matrix_rows_round_trip():
    m = np.arange(12.0).reshape(3, 4)
    np.testing.assert_array_equal(plot.matrix_from_rows(plot.matrix_to_rows(m, step=5)), m)


def test_records_drop_into_the_plots_unchanged():
    import torch

    from nsiter import trajectory
    from nsiter.matrices import log_uniform

    tr = trajectory(log_uniform(12, 5, 1e-2, seed=0), "muon", dtype=torch.float32)
    ax = plot.singular_value_trajectories(tr.singular_values)
    assert len(ax.get_lines()) == 5 + 1  # one line per singular index of a 12x5 matrix, plus the target
    rho = [r for r in tr.long() if r["quantity"] == "max_abs_lambda_minus_1"]
    ax2 = plot.spectral_distance(rho, value="value")
    np.testing.assert_allclose(ax2.get_lines()[0].get_ydata(), [r["value"] for r in rho])


def test_schedule_comparison_marks_where_a_series_leaves_the_axes():
    """A diverged run (inf, or flagged) and an off-scale value get the series' open marker on the top edge and a
    note in that series' own legend entry, not a silent stop and not a floating label."""
    rows = [
        {"schedule": "a", "step": k, "certified_error": 0.5**k, "measured_error": [0.9, 2.0, 56.0][k]}
        for k in range(3)
    ] + [
        {
            "schedule": "b",
            "step": k,
            "certified_error": [0.9, 1.5, None][k],
            "certified_diverged": True,
            "measured_error": [0.9, float("inf"), float("inf")][k],
        }
        for k in range(3)
    ]
    ax = plot.schedule_comparison(rows, top=10.0)
    assert not ax.texts
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "a (measured 56 at step 2)" in legend
    assert "b (certified diverged at step 2; measured diverged at step 1)" in legend
    assert "open: off the top edge" in legend
    edge = [ln for ln in ax.get_lines() if ln.get_markerfacecolor() == "white"]
    assert len(edge) == 3 and all(ln.get_ydata()[0] == 10.0 for ln in edge)
    assert ax.get_ylim()[1] == 10.0
    calm = plot.schedule_comparison(
        [{"schedule": "c", "step": k, "certified_error": 0.5**k} for k in range(3)]
    )
    assert "open: off the top edge" not in [t.get_text() for t in calm.get_legend().get_texts()]


def test_series_styles_are_distinct_and_grouped_by_family():
    names = [f"s{i}" for i in range(14)]
    family = {n: f"f{i % 3}" for i, n in enumerate(names)}
    st = plot.series_styles(names, family)
    assert len({(s["color"], s["marker"]) for s in st.values()}) == 14
    assert all(s["marker"] == st[f"s{i % 3}"]["marker"] for i, s in enumerate(st[n] for n in names))
    assert list(st)[:5] == ["s0", "s12", "s3", "s6", "s9"]  # the family order of the mapping, then names
    with pytest.raises(ValueError, match="distinct"):
        plot.series_styles([f"t{i}" for i in range(12)])  # one family, more members than colours


def test_edge_markers_that_share_an_x_are_spread_apart():
    """Two series leaving the axes at the same x: one open marker each, at different display positions."""
    rows = [
        {"schedule": s, "step": k, "certified_error": 0.5**k, "measured_error": [0.9, 0.8, v][k]}
        for s, v in (("a", 68.6), ("b", float("inf")))
        for k in range(3)
    ]
    ax = plot.schedule_comparison(rows, top=10.0)
    ax.figure.canvas.draw()
    edge = [ln for ln in ax.get_lines() if ln.get_markerfacecolor() == "white"]
    assert len(edge) == 2
    xs = [ln.get_transform().transform((ln.get_xdata()[0], ln.get_ydata()[0]))[0] for ln in edge]
    assert abs(xs[0] - xs[1]) > 5  # points apart, not stacked
    assert {ln.get_markeredgecolor() for ln in edge} == {
        st["color"] for st in plot.series_styles(["a", "b"]).values()
    }


def test_spectral_distance_names_the_recorded_quantities():
    rows = [
        {"step": k, "value": 2.0**-k, "quantity": q}
        for q in ("max_abs_lambda_minus_1", "other")
        for k in range(3)
    ]
    ax = plot.spectral_distance(rows, value="value", series="quantity", labels={"other": "mine"})
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert texts == [plot.QUANTITY_LABELS["max_abs_lambda_minus_1"], "mine"]
    assert not any("_" in t and "$" not in t for t in texts)  # no raw column name


@pytest.mark.parametrize("n", [5, 12, 13, 24, 64, 1000])
def test_heatmap_index_labels_never_run_together(n):
    """At most 12 labels, 1-based, increasing, always the first index; every index when there are <= 12."""
    ax = plot.identity_deviation_heatmap(np.eye(n))
    for axis in (ax.xaxis, ax.yaxis):
        labels = [int(t.get_text()) for t in axis.get_ticklabels()]
        assert labels[0] == 1 and labels == sorted(set(labels)) and len(labels) <= 12
        assert labels == list(range(1, n + 1)) if n <= 12 else min(np.diff(labels)) >= 2
