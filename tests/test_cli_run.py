"""``nsiter run`` and ``nsiter bench`` end to end; bad input exits 2 with one line."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

import nsiter.cli
from nsiter.registry import load_schedule


@pytest.fixture(autouse=True)
def commands(monkeypatch):
    # run and bench are registered in nsiter.cli.COMMANDS by the lead; make sure they are here either way.
    names = tuple(dict.fromkeys((*nsiter.cli.COMMANDS, "run", "bench")))
    monkeypatch.setattr(nsiter.cli, "COMMANDS", names)


def run(capsys, *argv):
    code = nsiter.cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_run_json_follows_the_scalar_map(capsys):
    # fp64, so sigma_max of X_k is max_i |phi_k(x_i)| over the normalized singular values x_i: on the
    # log-spaced grid of nsiter.matrices.log_uniform (sigma_i = 10^(-3 i / (k - 1))).
    code, out, _ = run(
        capsys,
        "run",
        "cubic",
        "--shape",
        "48x32",
        "--spectrum",
        "logunif:1e-3",
        "--dtype",
        "fp64",
        "--steps",
        "6",
        "--json",
    )
    assert code == 0
    data = json.loads(out)
    rows = data["steps"]["0"]
    assert [r["step"] for r in rows] == list(range(7))
    s = np.logspace(0, -3, 32)
    x0 = s / np.linalg.norm(s)  # cubic: Frobenius, no eps, scale 1
    cubic = load_schedule("cubic")
    for k, row in enumerate(rows):
        phi = np.abs(cubic.apply(x0, k))
        assert row["sigma_max"] == pytest.approx(phi.max(), rel=1e-10)
        assert row["sigma_min"] == pytest.approx(phi.min(), rel=1e-9)
    assert data["diverged"] is False


def test_run_text_table_and_csv(capsys, tmp_path):
    out_csv = tmp_path / "run.csv"
    code, out, _ = run(
        capsys, "run", "muon", "--shape", "32x16", "--spectrum", "grad", "--batch", "2", "--out", str(out_csv)
    )
    assert code == 0
    assert "muon on 2x32x16 grad" in out and "matrix 1" in out and "|X-UV^T|_2" in out
    with out_csv.open() as fh:
        rows = list(csv.DictReader(fh))
    assert {r["matrix"] for r in rows} == {"0", "1"} and {r["step"] for r in rows} == {
        str(k) for k in range(6)
    }


def test_run_reports_divergence(capsys, tmp_path):
    bad = tmp_path / "bad.json"
    sched = load_schedule("cubic")
    from dataclasses import replace

    from nsiter.polynomial import OddPolynomial

    replace(sched, name="blow-up", steps=(OddPolynomial([3.0, 2.0]),) * 8).save(bad)
    code, out, _ = run(
        capsys, "run", str(bad), "--shape", "16x16", "--spectrum", "unif:0.5", "--dtype", "fp32"
    )
    assert code == 0 and "diverged" in out


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "no-such-schedule"],
        ["run", "muon", "--shape", "12"],
        ["run", "muon", "--shape", "0x4"],
        ["run", "muon", "--spectrum", "logunif:0"],
        ["run", "muon", "--spectrum", "bogus"],
        ["run", "muon", "--dtype", "int8"],
        ["run", "muon", "--seed", "-1"],
        ["run", "muon", "--steps", "0"],
        ["run", "muon", "--batch", "x"],
        ["run", "muon", "--shape", "4x5", "--spectrum", "hilbert"],
        ["bench", "--shapes", "12"],
        ["bench", "--dtypes", "fp8"],
        ["bench", "--repeats", "0"],
    ],
)
def test_bad_input_exits_2_with_one_line(capsys, argv):
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert err.startswith("nsiter: error:") and err.count("\n") == 1


def test_bench_quick_writes_csv(capsys, tmp_path):
    out_csv = tmp_path / "bench.csv"
    code, out, _ = run(
        capsys,
        "bench",
        "--shapes",
        "32x64,2x16x16",
        "--dtypes",
        "fp32",
        "--repeats",
        "1",
        "--svd-max",
        "21",
        "--out",
        str(out_csv),
    )
    assert code == 0 and "vs bare" in out and "wrote" in out
    with out_csv.open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["shape"] for r in rows] == ["32x64", "2x16x16"]
    # flop count: 5 quintic steps, each 4 m^2 n + 2 m^3 on the small side (see nsiter.bench)
    assert float(rows[0]["gflop"]) == pytest.approx(5 * (4 * 32**2 * 64 + 2 * 32**3) / 1e9)
    # the SVD is timed only when it costs at most a 21-square one: 2 x 16^3 = 8192 <= 21^3 < 32^2 x 64
    assert rows[0]["svd_ms"] == "" and "svd not measured" in rows[0]["note"]
    assert float(rows[1]["svd_ms"]) > 0
