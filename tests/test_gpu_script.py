"""benchmarks/gpu.sh's dry run: the device script's code on the CPU with tiny shapes, and the table it writes.

No timing is asserted: only that every section ran, every number is finite, every correctness check passed, the
device is recorded in every row, and the dry run wrote into a temporary directory, not over committed results.
"""

from __future__ import annotations

import csv
import importlib.util
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu.sh"


def _columns() -> tuple[str, ...]:
    spec = importlib.util.spec_from_file_location("nsiter_gpu_script", ROOT / "benchmarks" / "gpu.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return module.COLUMNS


@pytest.fixture(scope="module")
def dry_run():
    env = {**os.environ, "PYTHON": sys.executable, "NSITER_GPU_DRY_RUN": "1"}
    proc = subprocess.run(
        ["bash", str(SCRIPT)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    found = re.search(r"wrote (\S+\.csv)", proc.stdout)
    assert found, proc.stdout[-2000:]
    path = Path(found.group(1))
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        header, rows = tuple(reader.fieldnames or ()), list(reader)
    yield proc.stdout, path, header, rows
    shutil.rmtree(path.parent, ignore_errors=True)


def test_dry_run_writes_into_a_temporary_directory(dry_run):
    _, path, _, _ = dry_run
    assert ROOT not in path.resolve().parents  # never over benchmarks/results/
    assert path.name == "bench_cpu_dry_run.csv"


def test_dry_run_table_has_every_section_and_the_device(dry_run):
    stdout, _, header, rows = dry_run
    assert header == _columns()
    sections = {r["section"] for r in rows}
    assert {"device", "tests", "check", "peak", "orthogonalize", "muon"} <= sections
    if importlib.util.find_spec("triton") is not None:  # the kernels under Triton's interpreter
        assert "kernels" in sections
        assert any(r["section"] == "check" and r["variant"].startswith("triton syrk") for r in rows)
    devices = {r["device"] for r in rows}
    assert len(devices) == 1 and devices.pop().startswith("cpu (")
    assert "DRY RUN" in stdout
    assert not any(r["note"].startswith("failed") for r in rows), [r for r in rows if "failed" in r["note"]]


def test_dry_run_numbers_are_finite_and_every_check_passes(dry_run):
    _, _, _, rows = dry_run
    for r in rows:
        for key in ("ms", "min_ms", "tflops", "fraction_of_peak", "speedup", "err", "bound"):
            if r[key] != "":
                value = float(r[key])
                assert math.isfinite(value) and value >= 0, (key, r)
        assert r["ok"] != "False", r
    checks = [r for r in rows if r["section"] == "check" and r["ok"] == "True"]
    assert len(checks) >= 20  # every path of orthogonalize, each kernel, each dtype
    timed = {(r["section"], r["variant"]) for r in rows if r["ms"] != ""}
    for variant in ("default", "plain loop", "bare GEMMs", "gram, symmetric", "SVD polar (float32)"):
        assert ("orthogonalize", variant) in timed
    assert {("muon", "nsiter"), ("muon", "nsiter_loop"), ("peak", "bare bf16 GEMM")} <= timed
