"""The experiment framework: caching by input hash, atomic lossless CSV, resume after interruption,
caching by machine, and hostile cache files (each detected and recomputed, or refused before the work)."""

from __future__ import annotations

import json
import math
import signal
import sys
import types
from pathlib import Path

import pytest

from experiments import common, tables

CASE_SECONDS = 60  # each case answers in about a second; generous for the shared, loaded machine


@pytest.fixture
def alarm():
    def hung(signum, frame):
        raise TimeoutError(f"no answer within {CASE_SECONDS} s")

    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(CASE_SECONDS)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def _toy(
    calls: list[str], fail_at: int | None = None, *, dependent: bool = True, independent_units: int = 0
) -> types.ModuleType:
    """A throw-away experiment module: three units, one figure, one macro, one LaTeX table.

    ``dependent``: its MACHINE_DEPENDENT; the first ``independent_units`` units are declared
    machine-independent.
    """
    mod = types.ModuleType("experiments_toy")
    mod.__file__ = __file__
    mod.NAME = "toy"
    mod.PARAMS = {"n": 3, "scale": 0.5}
    mod.QUICK = {"n": 2}
    mod.MACHINE_DEPENDENT = dependent

    def compute(ctx):
        rows = []
        for i in range(ctx.params["n"]):
            if fail_at is not None and i == fail_at:
                raise KeyboardInterrupt  # an interruption in the middle of the run

            def unit(i=i):
                calls.append(f"unit{i}")
                return [{"i": i, "x": ctx.params["scale"] * i / 3, "tag": f"t{i}", "ok": i % 2 == 0}]

            rows += ctx.unit(("u", i), unit, machine_dependent=dependent and i >= independent_units)
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


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_machine_independent_experiment_is_reused_byte_for_byte_on_a_new_machine(tmp_path, monkeypatch):
    _patch_source(monkeypatch, "v1")
    monkeypatch.delenv(common.MACHINE_TAG_ENV, raising=False)
    calls: list[str] = []
    assert not common.run_experiment(_toy(calls, dependent=False), root=tmp_path, verbose=False).cached
    before = _snapshot(tmp_path)
    monkeypatch.setenv(common.MACHINE_TAG_ENV, "another-machine")
    calls.clear()
    res = common.run_experiment(_toy(calls, dependent=False), root=tmp_path, verbose=False)
    assert res.cached and calls == []
    assert _snapshot(tmp_path) == before  # every output, the metadata included, keeps its bytes
    meta = json.loads((tmp_path / "experiments" / "results" / "toy.json").read_text())
    assert "tag" not in meta["machine"] and meta["machine_dependent"] is False  # the machine that computed it


def test_new_machine_recomputes_only_the_machine_dependent_units(tmp_path, monkeypatch):
    _patch_source(monkeypatch, "v1")
    monkeypatch.delenv(common.MACHINE_TAG_ENV, raising=False)
    calls: list[str] = []
    res = common.run_experiment(_toy(calls, independent_units=1), root=tmp_path, verbose=False)
    assert (res.units_computed, res.units_reused) == (3, 0) and calls == ["unit0", "unit1", "unit2"]
    results = tmp_path / "experiments" / "results"
    before = _snapshot(tmp_path)
    stored = json.loads((results / "toy.units.json").read_text())
    assert list(stored["units"]) == ["u/0"] and "tag" not in stored["units"]["u/0"]["machine"]

    calls.clear()  # the same machine: everything cached
    assert common.run_experiment(_toy(calls, independent_units=1), root=tmp_path, verbose=False).cached
    assert calls == [] and _snapshot(tmp_path) == before

    monkeypatch.setenv(common.MACHINE_TAG_ENV, "another-machine")
    res = common.run_experiment(_toy(calls, independent_units=1), root=tmp_path, verbose=False)
    assert not res.cached and calls == ["unit1", "unit2"] and (res.units_computed, res.units_reused) == (2, 1)
    after = _snapshot(tmp_path)
    assert after["experiments/results/toy.units.json"] == before["experiments/results/toy.units.json"]
    assert after["experiments/results/toy.csv"] == before["experiments/results/toy.csv"]  # same numbers here
    meta = json.loads((results / "toy.json").read_text())
    assert (
        meta["machine"]["tag"] == "another-machine" and meta["machine_independent_units"] == "toy.units.json"
    )

    monkeypatch.setattr(common, "_nsiter_digest", lambda: "changed")  # a library change: nothing is reused
    calls.clear()
    common.run_experiment(_toy(calls, independent_units=1), root=tmp_path, verbose=False)
    assert calls == ["unit0", "unit1", "unit2"]


def test_a_machine_dependent_unit_in_a_machine_independent_experiment_is_refused(tmp_path, monkeypatch):
    _patch_source(monkeypatch, "v1")
    mod = _toy([], dependent=False)

    def compute(ctx):
        return ctx.unit("bf16 timing", lambda: [{"x": 1}])

    mod.compute = compute
    with pytest.raises(ValueError, match="bf16 timing"):
        common.run_experiment(mod, root=tmp_path, verbose=False)
    mod.MACHINE_DEPENDENT = "yes"
    with pytest.raises(ValueError, match="'yes'"):
        common.run_experiment(mod, root=tmp_path, verbose=False)


def _valid_meta(meta_path: Path) -> dict:
    return json.loads(meta_path.read_text())


# (what is written into experiments/results/toy.json after a good run): each is recomputed, never trusted
HOSTILE_METADATA = {
    "a list": lambda m: b"[1, 2, 3]",
    "a number": lambda m: b"3.5",
    "binary": lambda m: bytes(range(256)) * 4,
    "utf-16 garbage": lambda m: "\ufeff{\u0000".encode("utf-16"),
    "truncated": lambda m: json.dumps(m).encode()[: len(json.dumps(m)) // 2],
    "empty": lambda m: b"",
    "deeply nested": lambda m: b"[" * 100_000 + b"]" * 100_000,
    "right hash, no tables": lambda m: json.dumps({**m, "tables": {}}).encode(),
    "right hash, tables missing": lambda m: json.dumps(
        {k: v for k, v in m.items() if k != "tables"}
    ).encode(),
    "right hash, tables a list": lambda m: json.dumps({**m, "tables": ["main"]}).encode(),
    "table without sha256": lambda m: json.dumps(
        {**m, "tables": {t: {"file": e["file"], "rows": e["rows"]} for t, e in m["tables"].items()}}
    ).encode(),
    "table sha256 a number": lambda m: json.dumps(
        {**m, "tables": {t: {**e, "sha256": 7} for t, e in m["tables"].items()}}
    ).encode(),
    "table entry a string": lambda m: json.dumps({**m, "tables": {t: "x" for t in m["tables"]}}).encode(),
    "table name escaping the folder": lambda m: json.dumps(
        {**m, "tables": {"../../../etc/passwd": {"sha256": "0" * 64}}}
    ).encode(),
    "input hash a list": lambda m: json.dumps({**m, "input_hash": [m["input_hash"]]}).encode(),
    "figures not a list of names": lambda m: json.dumps({**m, "figures": [1, "../x.png"]}).encode(),
}


@pytest.mark.usefixtures("alarm")
@pytest.mark.parametrize("case", sorted(HOSTILE_METADATA))
def test_hostile_metadata_is_recomputed(tmp_path, monkeypatch, case):
    _patch_source(monkeypatch, "v1")
    calls: list[str] = []
    common.run_experiment(_toy(calls), root=tmp_path, verbose=False)
    meta_path = tmp_path / "experiments" / "results" / "toy.json"
    good = _valid_meta(meta_path)
    meta_path.write_bytes(HOSTILE_METADATA[case](good))
    calls.clear()
    res = common.run_experiment(_toy(calls), root=tmp_path, verbose=False)
    if case == "figures not a list of names":  # the tables are intact: reused; the figures are redrawn
        assert res.cached and calls == [] and _valid_meta(meta_path)["figures"] == ["toy.pdf", "toy.png"]
    else:
        assert not res.cached and calls == ["unit0", "unit1", "unit2"]
    assert _valid_meta(meta_path)["tables"] == good["tables"]  # repaired, same results
    assert not (tmp_path / "etc").exists()


# (what an interrupted run's saved unit 0 is replaced with): each is recomputed; the intact unit 1 is resumed
HOSTILE_UNITS = {
    "truncated": lambda text: text[: len(text) // 2],
    "empty": lambda text: "",
    "binary": lambda text: "\x00\xff" * 10,
    "a list": lambda text: "[]",
    "rows not a list": lambda text: json.dumps({**json.loads(text), "rows": "abc"}),
    "rows not dicts": lambda text: json.dumps({**json.loads(text), "rows": [1, 2]}),
    "another unit's label": lambda text: json.dumps({**json.loads(text), "unit": "u/9"}),
}


@pytest.mark.usefixtures("alarm")
@pytest.mark.parametrize("case", sorted(HOSTILE_UNITS))
def test_hostile_saved_unit_after_an_interrupt_is_recomputed(tmp_path, monkeypatch, case):
    _patch_source(monkeypatch, "v1")
    calls: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        common.run_experiment(_toy(calls, fail_at=2), root=tmp_path, verbose=False)
    saved = sorted((tmp_path / "experiments" / "results" / ".partial").rglob("*.json"))
    unit0 = next(p for p in saved if json.loads(p.read_text())["unit"] == "u/0")
    unit0.write_bytes(HOSTILE_UNITS[case](unit0.read_text()).encode("latin-1"))
    calls.clear()
    common.run_experiment(_toy(calls), root=tmp_path, verbose=False)
    assert calls == ["unit0", "unit2"]  # unit 1 resumed
    rows = tables.read_csv(tmp_path / "experiments" / "results" / "toy.csv")
    assert [r["i"] for r in rows] == [0, 1, 2] and rows[0]["tag"] == "t0"


# (what experiments/results/toy.units.json is replaced with before a run on a new machine): recomputed
HOSTILE_STORE = {
    "a list": lambda d: [],
    "another input hash": lambda d: {**d, "input_hash": "0" * 64},
    "units a list": lambda d: {**d, "units": [1]},
    "rows not a list": lambda d: {**d, "units": {"u/0": {**d["units"]["u/0"], "rows": "x"}}},
    "no machine": lambda d: {**d, "units": {"u/0": {"rows": d["units"]["u/0"]["rows"]}}},
}


@pytest.mark.usefixtures("alarm")
@pytest.mark.parametrize("case", sorted(HOSTILE_STORE))
def test_hostile_unit_store_is_recomputed(tmp_path, monkeypatch, case):
    _patch_source(monkeypatch, "v1")
    monkeypatch.delenv(common.MACHINE_TAG_ENV, raising=False)
    calls: list[str] = []
    common.run_experiment(_toy(calls, independent_units=1), root=tmp_path, verbose=False)
    store = tmp_path / "experiments" / "results" / "toy.units.json"
    store.write_text(json.dumps(HOSTILE_STORE[case](json.loads(store.read_text()))))
    monkeypatch.setenv(common.MACHINE_TAG_ENV, "another-machine")
    calls.clear()
    common.run_experiment(_toy(calls, independent_units=1), root=tmp_path, verbose=False)
    assert calls == ["unit0", "unit1", "unit2"]
    assert list(json.loads(store.read_text())["units"]) == ["u/0"]  # rewritten whole


# output roots that cannot take the outputs (relative to tmp_path; "file" is a regular file there)
BAD_ROOTS = {
    "a file": "file",
    "under a file": "file/sub",
    "results folder a file": "root-a",
    "figures folder a file": "root-b",
}


@pytest.mark.usefixtures("alarm")
@pytest.mark.parametrize("case", sorted(BAD_ROOTS))
def test_output_root_that_cannot_take_the_outputs_is_refused_before_the_work(tmp_path, monkeypatch, case):
    _patch_source(monkeypatch, "v1")
    (tmp_path / "file").write_text("keep me")
    (tmp_path / "root-a" / "experiments").mkdir(parents=True)
    (tmp_path / "root-a" / "experiments" / "results").write_text("keep me")
    (tmp_path / "root-b").mkdir()
    (tmp_path / "root-b" / "figures").write_text("keep me")
    root = tmp_path / BAD_ROOTS[case]
    calls: list[str] = []
    with pytest.raises(ValueError, match="not a"):
        common.run_experiment(_toy(calls), root=root, verbose=False)
    assert calls == [] and (tmp_path / "file").read_text() == "keep me"


@pytest.mark.usefixtures("alarm")
def test_cli_refuses_an_out_file_in_one_line_before_the_work(tmp_path, monkeypatch, capsys):
    from experiments import __main__ as cli

    monkeypatch.setattr(cli, "run_all", lambda *a, **k: pytest.fail("the work started"))
    (tmp_path / "f").write_text("keep me")
    assert cli.main(["--out", str(tmp_path / "f"), "family"]) == 2
    err = capsys.readouterr().err
    assert err == f"experiments: error: output folder {tmp_path / 'f'} exists and is not a folder\n"
    assert (tmp_path / "f").read_text() == "keep me"


def test_progress_is_one_line_per_experiment_or_a_line_per_unit(tmp_path, monkeypatch, capsys):
    _patch_source(monkeypatch, "v1")
    common.run_experiment(_toy([]), root=tmp_path, prefix="[1/1] ")
    lines = capsys.readouterr().err.splitlines()  # not a terminal: no updating line
    assert len(lines) == 1 and lines[0].startswith("[1/1] toy: computed in ")
    assert lines[0].endswith("(3 of 3 units computed, 0 reused)")
    common.run_experiment(_toy([]), root=tmp_path)
    assert capsys.readouterr().err == "toy: cached\n"
    common.run_experiment(_toy([]), root=tmp_path, force=True, detail=True)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 5 and lines[0] == "toy: computing" and lines[1].startswith("toy: u/0: 1 rows in ")
