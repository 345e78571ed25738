"""The example notebooks are stored executed (readable on GitHub) and their stored outputs are current."""

from __future__ import annotations

import importlib.util
import re

import nbformat
import pytest

from experiments.common import REPO

EXAMPLES = REPO / "examples"
NOTEBOOKS = ("convergence.ipynb", "coefficient_search.ipynb")
NUMBER = re.compile(
    r"(?<![\w.])[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?"
)  # not digits inside a word or hash


def _execute_module():
    spec = importlib.util.spec_from_file_location("nsiter_examples_execute", EXAMPLES / "execute.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def _text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def test_every_example_notebook_is_listed():
    assert sorted(p.name for p in EXAMPLES.glob("*.ipynb")) == sorted(NOTEBOOKS)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_stored_executed_and_clean(name):
    nb = nbformat.read(EXAMPLES / name, as_version=4)
    cells = _code_cells(nb)
    assert [c.execution_count for c in cells] == list(range(1, len(cells) + 1))  # run top to bottom, once
    outputs = [o for c in cells for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert not [o for o in outputs if o.output_type == "stream" and o.name == "stderr"]  # no warnings
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the plots are there to read
    assert all(c.outputs for c in cells if "print(" in c.source or c.source.rstrip().endswith(";"))
    raw = (EXAMPLES / name).read_text()
    for leak in (str(REPO), "/tmp/", "/home/", "/root/"):  # no absolute paths
        assert leak not in raw
    assert all("execution" not in c.metadata for c in cells)  # no timestamps


# A measured bf16 error is max|1 - sigma| of an iterate whose singular values sigma ~ 1 carry bf16 rounding
# (unit roundoff u = 2^-8), so two CPUs differ in it by a multiple of u in absolute terms, not relatively.
# Measured spread (128 x 128 log-uniform, seed 0, the 15-product schedules, muon and polar-express-5):
# native bf16 GEMM against float32 GEMM rounded to bf16 (the AVX-512 bf16 and the AVX2 paths), AMD EPYC
# Zen 5: at most 0.73 u (polar-express-gram, 2.81e-01 against 2.78e-01); 0.39 u for nsiter-5step
# (1.508e-01 against 1.524e-01).  2 u bounds it with room and still catches a stale notebook (a change of
# schedule moves these errors by 10 u and more).
MEASURED_ATOL = 2 * 2.0**-8
EPS64 = 2.0**-52


def _last_place(token: str) -> float:
    """One unit in the last printed digit of ``token`` (0 for an integer: compared exactly)."""
    mantissa, _, exponent = token.lower().partition("e")
    decimals = len(mantissa.partition(".")[2])
    if "." not in mantissa and not exponent:
        return 0.0
    return 10.0 ** (int(exponent or 0) - decimals)


def _numbers(text: str) -> list[tuple[str, bool]]:
    """Every number in ``text`` and whether it is a measured one: printed after the word "measured" on
    its line, or in a column under it (the header of a table: the last line above that has the word)."""
    out, column = [], None
    for line in text.splitlines():
        if "measured" in line:
            column = line.index("measured")
        elif not line.strip():
            column = None
        out += [(m.group(), column is not None and m.start() > column) for m in NUMBER.finditer(line)]
    return out


def _same_numbers(stored: str, fresh: str) -> bool:
    """The text outside numbers exactly; certified and exact numbers (float64 or interval arithmetic, a few
    float64 ulps apart between CPUs) to one unit in the last printed digit; measured ones to MEASURED_ATOL."""
    if NUMBER.sub("#", stored) != NUMBER.sub("#", fresh):
        return False
    for (a, measured), (b, _) in zip(_numbers(stored), _numbers(fresh), strict=True):
        x, y = float(a), float(b)
        tol = max(_last_place(a), _last_place(b)) + 4 * EPS64 * max(abs(x), abs(y))
        if abs(x - y) > tol + (MEASURED_ATOL if measured else 0.0):
            return False
    return True


def test_number_comparison_tells_measured_from_certified():
    table = "   name  certified  measured bf16\n   a-5   1.300e-01      1.524e-01\n"
    assert _same_numbers(table, table.replace("1.524e-01", "1.508e-01"))  # measured: within 2 u
    assert not _same_numbers(table, table.replace("1.524e-01", "1.824e-01"))  # a stale notebook
    assert not _same_numbers(table, table.replace("1.300e-01", "1.302e-01"))  # certified: 2 units apart
    assert _same_numbers(table, table.replace("1.300e-01", "1.301e-01"))  # one unit: rounding of last bits
    assert not _same_numbers(table, table.replace("a-5", "a-6"))  # integers (names, counts) exactly
    assert not _same_numbers(table, table.replace("name", "nom"))  # text exactly
    line = "p: certified 0.141, measured bf16 0.210"
    assert _same_numbers(line, line.replace("0.210", "0.209")) and not _same_numbers(
        line, line.replace("0.141", "0.139")
    )
    assert [m for _, m in _numbers(line)] == [False, True]  # 0.141 | 0.210 (the 16 of bf16 is not a number)
    assert _last_place("1.3004e-01") == pytest.approx(1e-5) and _last_place("15") == 0.0


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_stored_outputs_match_a_fresh_run(name):
    # Re-execute (headless) and compare the printed text with the stored one (see _same_numbers): the
    # stored notebooks come from one CPU, the fresh run from any (AVX2, AVX-512, AVX-512 with bf16).
    stored = nbformat.read(EXAMPLES / name, as_version=4)
    fresh = _execute_module().execute(EXAMPLES / name)
    pairs = list(zip(_code_cells(stored), _code_cells(fresh), strict=True))
    for old, new in pairs:
        assert [o.output_type for o in old.outputs] == [o.output_type for o in new.outputs]
        assert _same_numbers(_text(old), _text(new)), (_text(old), _text(new))
    text = "".join(_text(c) for _, c in pairs)
    if name == "convergence.ipynb":
        assert "inside certified" in text and "measured bf16" in text
    else:
        assert "certified final error" in text and "nsiter-5step" in text
