"""The evaluator benchmark table, rendered from the committed CSVs in benchmarks/results/.

The benchmark itself (``nsiter bench``, ``nsiter/bench.py``) is heavy and hardware-specific, so it is not
rerun here: this experiment reads ``benchmarks/results/bench_*.csv`` (quick runs excluded), keeps the
main columns, and writes one LaTeX table per device.  Changing a committed CSV changes the input hash.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python experiments/NAME.py`: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.common import read_csv

NAME = "benchmark_table"
PARAMS = {
    "pattern": "benchmarks/results/bench_*.csv",
    "columns": [
        "device",
        "torch",
        "schedule",
        "shape",
        "dtype",
        "ours_ms",
        "ours_tflops",
        "bare_tflops",
        "ratio_to_bare",
        "speedup_vs_reference",
        "speedup_vs_svd",
    ],
}
QUICK: dict = {}
INPUTS = ("benchmarks/results/bench_*.csv",)


def compute(ctx) -> list[dict]:
    rows = []
    for path in sorted(ctx.repo.glob(ctx.params["pattern"])):
        if path.stem.endswith("_quick"):
            continue
        for r in read_csv(path):
            rows.append({"file": path.name, **{c: r.get(c) for c in ctx.params["columns"]}})
    ctx.progress(f"{len(rows)} benchmark rows")
    return rows or [{"file": None, **{c: None for c in ctx.params["columns"]}}]


def latex(tables) -> dict:
    from experiments.common import latex_table

    rows = [r for r in tables["main"] if r["file"] is not None]

    def f(digits):
        return lambda v: "--" if v is None else f"{float(v):.{digits}f}"

    cols = [
        ("shape", "shape", None),
        ("dtype", "dtype", None),
        ("ours_ms", "ms/call", f(2)),
        ("ours_tflops", "TFLOP/s", f(2)),
        ("ratio_to_bare", "vs bare matmuls", f(2)),
        ("speedup_vs_reference", "vs reference loop", f(2)),
        ("speedup_vs_svd", "vs SVD", f(1)),
    ]
    if not rows:
        return {"table": r"\emph{No benchmark results are committed under benchmarks/results/.}" + "\n"}
    blocks = []
    for device in dict.fromkeys(r["device"] for r in rows):
        sel = [r for r in rows if r["device"] == device]
        dev, sched = (str(v).replace("_", r"\_") for v in (device, sel[0]["schedule"]))
        head = rf"\multicolumn{{{len(cols)}}}{{l}}{{\textbf{{{dev}}} (torch {sel[0]['torch']}, \texttt{{{sched}}})}} \\"
        body = latex_table(sel, cols).splitlines()
        start = body.index(r"\midrule") + 1
        blocks.append([head, r"\midrule", *body[start : body.index(r"\bottomrule")]])
    table = latex_table([], cols).splitlines()  # header and rules only
    mid = table.index(r"\midrule")
    lines = table[:mid]
    for block in blocks:
        lines += [r"\midrule", *block]
    lines += table[mid + 1 :]
    return {"table": "\n".join(lines)}


def numbers(tables) -> dict:
    rows = [r for r in tables["main"] if r["file"] is not None]
    return {"benchDevices": len({r["device"] for r in rows}), "benchRows": len(rows)}


if __name__ == "__main__":
    from experiments.__main__ import main

    sys.exit(main([NAME, *sys.argv[1:]]))
