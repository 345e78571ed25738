"""Every experiment runs in --quick mode, writes its outputs, and its numbers obey the mathematics."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from experiments import common, tables
from nsiter import load_schedule
from nsiter.analysis import certified_error


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """One quick run of every experiment into a temporary root (never the repository)."""
    root = tmp_path_factory.mktemp("quick")
    results = common.run_all(quick=True, root=root, verbose=False)
    return root, {r.name: r for r in results}


def _tables(root, name):
    meta = json.loads((root / "experiments" / "results" / f"{name}.json").read_text())
    out = {}
    for t, info in meta["tables"].items():
        out[t] = tables.read_csv(root / "experiments" / "results" / info["file"])
    return meta, out


def test_every_experiment_writes_csv_metadata_and_figures(quick):
    root, results = quick
    modules = common.discover()
    assert set(results) == set(modules)
    for name, module in modules.items():
        meta, tables = _tables(root, name)
        assert meta["quick"] and meta["seed"] == getattr(module, "SEED", 0)
        assert meta["parameters"] == {**module.PARAMS, **module.QUICK}
        assert {"python", "numpy", "torch", "nsiter"} <= set(meta["versions"])
        assert all(rows for rows in tables.values()), name
        for fig in meta.get("figures", []):
            assert (root / "figures" / fig).stat().st_size > 1000, fig
        if hasattr(module, "plot") and name != "benchmark_table":
            assert any(f.endswith(".pdf") for f in meta["figures"]), name
        if hasattr(module, "numbers"):
            assert (root / "paper" / "generated" / f"{name}.tex").is_file()


def test_rerun_is_cached(quick):
    root, _ = quick
    again = common.run_all(quick=True, root=root, verbose=False)
    assert all(r.cached for r in again)


def test_scalar_maps_bands_enclose_the_sampled_maps(quick):
    root, _ = quick
    meta, t = _tables(root, "scalar_maps")
    lo, hi = meta["parameters"]["lo"], meta["parameters"]["hi"]
    for band in t["bands"]:
        ys = [
            r["y"]
            for r in t["curves"]
            if r["schedule"] == band["schedule"] and r["step"] == band["step"] and lo <= r["x"] <= hi
        ]
        if ys:  # certified bands contain every sampled value of phi_k on [lo, hi]
            assert band["lo"] <= min(ys) and max(ys) <= band["hi"]


def test_family_steps_reach_the_tolerance_exactly_then(quick):
    root, _ = quick
    meta, t = _tables(root, "family")
    lo, tol = meta["parameters"]["lo"], meta["parameters"]["tol"]
    cubic = next(r for r in t["members"] if r["degree"] == 3)
    assert cubic["coefficients"] == "3/2 -1/2" and cubic["order"] == 2
    sched = load_schedule("cubic")  # (3/2, -1/2) repeated; p is increasing on [0, 1] with p(1) = 1
    k = cubic["steps_to_tol"]
    # the experiment counts steps from the certified bands (nsiter.analysis); here they are recounted by
    # plain float evaluation at the worst point x = lo: an off-by-one or a wrong count fails
    assert isinstance(k, int) and k > 1
    assert 1 - sched.apply(lo, k) <= tol < 1 - sched.apply(lo, k - 1)
    assert cubic["convergence_bound_float"] == pytest.approx(math.sqrt(3))


def test_claims_check_numbers(quick):
    root, _ = quick
    _, t = _tables(root, "claims_check")
    muon = next(r for r in t["pade"] if r["iteration"] == "muon")
    assert muon["value_at_1"] == pytest.approx(3.4445 - 4.7750 + 2.0315, abs=1e-12)
    for r in t["pade"]:
        if r["iteration"] != "muon":
            assert r["value_at_1"] == pytest.approx(1.0, abs=1e-12)  # every Padé iteration fixes 1
    quintic = next(r for r in t["pade"] if r["iteration"] == "[2/0]")
    assert (quintic["xi_trunc_c1"], quintic["xi_trunc_c3"], quintic["xi_trunc_c5"]) == pytest.approx(
        (15 / 8, -10 / 8, 3 / 8)
    )
    # Frobenius normalization: sigma_max(X_0) <= ||X_0||_F = 1
    assert all(r["x0_sigma_max"] <= 1 for r in t["measured"])
    proj = sorted(r["eigenvalue"] for r in t["projector"] if r["gram"].startswith("X X"))
    assert max(abs(v) for v in proj[:4]) < 1e-12  # 10x10 Gram of a 10x6 iterate has rank <= 6
    assert {r["verdict"].split(" ")[0] for r in t["verdicts"]} <= {"confirmed", "refuted"}


def test_muon_singular_values_start_from_the_normalized_spectrum(quick):
    root, _ = quick
    meta, t = _tables(root, "muon_singular_values")
    p = meta["parameters"]
    sigma = p["factor"] * np.logspace(np.log10(p["sigma_lo"]), np.log10(p["sigma_hi"]), min(p["shape"]))
    expected = np.sort(sigma / np.linalg.norm(sigma))[::-1]
    got = [r["sigma"] for r in t["singular_values"] if r["step"] == 0]
    np.testing.assert_allclose(got, expected, rtol=2**-7)  # X_0 is rounded to bfloat16


def test_dtype_floors_order_by_precision(quick):
    root, _ = quick
    _, t = _tables(root, "dtype_floors")
    floor = {r["dtype"]: r["orth_err_2"] for r in t["main"]}
    assert floor["float64"] < floor["float32"] < floor["float16"] < floor["bfloat16"]
    for r in t["main"]:
        assert r["orth_err_2"] >= r["unit_roundoff"] / 10


def test_schedules_compared_certified_matches_analysis(quick):
    from nsiter.analysis import analyze

    root, _ = quick
    meta, t = _tables(root, "schedules_compared")
    rows = [r for r in t["main"] if r["schedule"] == "muon"]
    a = analyze(load_schedule("muon"), meta["parameters"]["lo"], meta["parameters"]["hi"])
    assert [r["certified_error"] for r in rows] == pytest.approx(a.errors)
    assert [r["matmuls"] for r in rows] == [3 * k for k in range(len(rows))]
    # float64 runs of an unscaled schedule stay inside the certified band, up to the normalization's eps
    for r in rows:
        assert r["reference_error"] <= r["certified_error"] + 1e-6
    # a scaled schedule (Polar Express: x -> x / 1.01 first) is certified on its polynomial interval
    # [lo / 1.01, hi / 1.01], and its float64 runs stay inside that band too
    pe = [r for r in t["main"] if r["schedule"] == "polar-express"]
    assert pe[0]["scale"] == 1.01
    lo, hi = meta["parameters"]["lo"], meta["parameters"]["hi"]
    assert pe[-1]["certified_error"] == pytest.approx(certified_error("polar-express", lo / 1.01, hi / 1.01))
    for r in pe:
        assert r["reference_error"] <= r["certified_error"] + 1e-6
