"""The experiment framework: caching by input hash, atomic lossless CSV, resume after interruption."""

from __future__ import annotations

import json
import math
import sys
import types

import pytest

from experiments import common, tables


def _toy(calls: list[str], fail_at: int | None = None) -> types.ModuleType:
    """A throw-away experiment module: three units, one figure, one macro, one LaTeX table."""
    mod = types.ModuleType("experiments_toy")
    mod.__file__ = __file__
    mod.NAME = "toy"
    mod.PARAMS = {"n": 3, "scale": 0.5}
    mod.QUICK = {"n": 2}

    def compute(ctx):
        rows = []
        for i in range(ctx.params["n"]):
            if fail_at is not None and i == fail_at:
                raise KeyboardInterrupt  # an interruption in the middle of the run

            def unit(i=i):
                calls.append(f"unit{i}")
                return [{"i": i, "x": ctx.params["scale"] * i / 3, "tag": f"t{i}", "ok": i % 2 == 0}]

            rows += ctx.unit(("u", i), unit)
        return {"main": rows, "extra": [{"i": 0, "y": None}]}

    def plot(tables, ctx):
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots()
        ax.plot([r["i"] for r in tables["main"]], [r["x"] for r in tables["main"]])
        return fig

    def numbers(tables):
        return {"toyCount": len(tables["main"]), "toyLast": tables["main"][-1]["x"]}

    mod.compute, mod.plot, mod.numbers = compute, plot, numbers
    sys.modules[mod.__name__] = mod
    return mod


def _patch_source(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setattr(common.inspect, "getsource", lambda module: text)


def test_csv_round_trip_is_lossless(tmp_path):
    rows = [{"a": 0.1 + 0.2, "b": 3, "c": "x,y", "d": None, "e": True, "f": 1e-300, "g": math.inf}]
    path = tmp_path / "t.csv"
    tables.write_csv(path, rows)
    assert tables.read_csv(path) == rows
    first = path.read_bytes()
    tables.write_csv(path, rows)
    assert path.read_bytes() == first  # same data, same bytes


def test_cache_hit_and_invalidation(tmp_path, monkeypatch):
    _patch_source(monkeypatch, "v1")
    calls: list[str] = []
    mod = _toy(calls)
    res = common.run_experiment(mod, root=tmp_path, verbose=False)
    assert not res.cached and calls == ["unit0", "unit1", "unit2"]
    results = tmp_path / "experiments" / "results"
    meta = json.loads((results / "toy.json").read_text())
    assert meta["parameters"] == {"n": 3, "scale": 0.5} and "numpy" in meta["versions"]
    assert (tmp_path / "figures" / "toy.pdf").stat().st_size > 0
    assert (tmp_path / "figures" / "toy.png").stat().st_size > 0
    assert tables.read_csv(results / "toy.extra.csv") == [{"i": 0, "y": None}]
    tex = (tmp_path / "paper" / "generated" / "toy.tex").read_text()
    assert r"\newcommand{\toyCount}{3}" in tex
    assert not (results / ".partial" / f"toy-{meta['input_hash'][:16]}").exists()

    calls.clear()
    assert common.run_experiment(mod, root=tmp_path, verbose=False).cached and calls == []

    _patch_source(monkeypatch, "v2")  # the script changed: recompute
    assert not common.run_experiment(mod, root=tmp_path, verbose=False).cached and len(calls) == 3

    calls.clear()  # a tampered CSV is not trusted
    (results / "toy.csv").write_text("i,x\n0,9\n")
    assert not common.run_experiment(mod, root=tmp_path, verbose=False).cached and len(calls) == 3


def test_quick_mode_uses_its_own_parameters_and_root(tmp_path, monkeypatch):
    _patch_source(monkeypatch, "v1")
    calls: list[str] = []
    common.run_experiment(_toy(calls), quick=True, root=tmp_path, verbose=False)
    meta = json.loads((tmp_path / "experiments" / "results" / "toy.json").read_text())
    assert meta["quick"] and meta["parameters"]["n"] == 2 and calls == ["unit0", "unit1"]


def test_interrupted_run_resumes_completed_units(tmp_path, monkeypatch):
    _patch_source(monkeypatch, "v1")
    calls: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        common.run_experiment(_toy(calls, fail_at=2), root=tmp_path, verbose=False)
    assert calls == ["unit0", "unit1"]
    assert not (tmp_path / "experiments" / "results" / "toy.csv").exists()
    calls.clear()
    common.run_experiment(_toy(calls), root=tmp_path, verbose=False)
    assert calls == ["unit2"]  # units 0 and 1 came from the saved partial results
    rows = tables.read_csv(tmp_path / "experiments" / "results" / "toy.csv")
    assert [r["i"] for r in rows] == [0, 1, 2] and rows[1]["x"] == 0.5 * 1 / 3


def test_tex_number_and_bad_macro():
    assert tables.tex_number(0.0123) == "0.0123"
    assert tables.tex_number(1.234e-5) == r"1.23\times10^{-5}"
    assert tables.tex_number(7) == "7"
    with pytest.raises(ValueError, match="toy_1"):
        tables.macros_tex("toy", {"toy_1": 1.0})


def test_unknown_experiment_name_is_rejected():
    with pytest.raises(ValueError, match="no-such-experiment"):
        common.run_all(["no-such-experiment"], verbose=False)
