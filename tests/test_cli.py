"""CLI end to end: derive, schedules, analyze; every bad input exits 2 with one line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from nsiter.cli import main
from nsiter.polynomial import OddPolynomial
from nsiter.registry import available_schedules
from nsiter.schedule import Provenance, Schedule


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_derive_json_and_text(capsys):
    code, out, _ = run(capsys, "derive", "--degree", "5", "--json")
    data = json.loads(out)
    assert code == 0
    assert data["coefficients"] == ["15/8", "-5/4", "3/8"] and data["order"] == 3
    assert data["convergence_bound_float"] == pytest.approx((7 / 3) ** 0.5, rel=1e-15)
    code, out, _ = run(capsys, "derive", "--degree", "3")
    assert code == 0 and "3/2, -1/2" in out and "sqrt(3)" in out
    code, out, _ = run(capsys, "derive", "--degree", "3", "--latex")
    assert out.strip() == r"p(x) = - \frac{x^{3}}{2} + \frac{3 x}{2}"


def test_schedules_lists_registry_with_sources(capsys):
    code, out, _ = run(capsys, "schedules", "--json")
    rows = json.loads(out)
    assert code == 0 and [r["name"] for r in rows] == available_schedules()
    assert all(r["source"] and r["reference"] for r in rows)
    muon = next(r for r in rows if r["name"] == "muon")
    assert muon["steps"] == 5 and muon["matmuls"] == 15


def test_analyze_json_matches_library(capsys):
    code, out, _ = run(capsys, "analyze", "muon", "--lo", "1e-2", "--json")
    data = json.loads(out)
    assert code == 0 and len(data["bands"]) == 6
    from nsiter.analysis import analyze
    from nsiter.registry import load_schedule

    assert data["final_error"] == analyze(load_schedule("muon"), 1e-2).final_error
    assert data["attractor"]["kind"] == "cycle"  # the attracting 4-cycle of Muon's map


def test_analyze_user_file_and_steps(capsys, tmp_path):
    s = Schedule.repeated("mine", OddPolynomial([2.0, -1.5, 0.5]), 3, Provenance("user", "test"))
    path = s.save(tmp_path / "mine.json")
    code, out, _ = run(capsys, "analyze", str(path), "--lo", "0.1", "--steps", "6", "--json")
    assert code == 0 and len(json.loads(out)["bands"]) == 7
    code, out, _ = run(capsys, "analyze", str(path), "--lo", "0.1")
    assert code == 0 and "attractor: converges" in out


@pytest.mark.parametrize(
    "argv",
    [
        ["derive", "--degree", "4"],
        ["derive", "--degree", "0"],
        ["derive", "--degree", "-3"],
        ["derive", "--degree", "x"],
        ["analyze", "muon", "--lo", "1", "--hi", "0.5"],
        ["analyze", "muon", "--lo", "0"],
        ["analyze", "muon", "--lo", "-1"],
        ["analyze", "muon", "--lo", "nan"],
        ["analyze", "muon", "--lo", "1e-3", "--hi", "inf"],
        ["analyze", "no-such-schedule", "--lo", "1e-3"],
        ["analyze", "muon", "--lo", "1e-3", "--steps", "0"],
        ["bogus-command"],
        [],
    ],
)
def test_bad_input_exits_2_with_one_line(capsys, argv):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("nsiter: error: ")


def test_malformed_json_file(capsys, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "nsiter.schedule/1", "name": "x", "steps": [')
    code, _, err = run(capsys, "analyze", str(bad), "--lo", "1e-3")
    assert code == 2 and "malformed" in err and len(err.strip().splitlines()) == 1


def test_console_script_subprocess():
    proc = subprocess.run(
        [sys.executable, "-m", "nsiter", "derive", "--degree", "6"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (
        proc.returncode == 2
        and proc.stderr.strip() == "nsiter: error: degree must be an odd integer >= 3, got 6"
    )
