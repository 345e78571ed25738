"""The evaluator benchmark table, rendered from the committed CSVs in benchmarks/results/.

The benchmark itself (``nsiter bench``, ``nsiter/bench.py``) is heavy and hardware-specific, so it is not
rerun here: this experiment reads ``benchmarks/results/bench_*.csv`` (quick runs excluded), keeps the
main columns, and writes one LaTeX table per device.  Changing a committed CSV changes the input hash.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python experiments/NAME.py`: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.tables import read_csv

NAME = "benchmark_table"
PARAMS = {
    "pattern": "benchmarks/results/bench_*.csv",
    "columns": [
        "device",
        "torch",
        "schedule",
        "shape",
        "dtype",
        "plan",
        "ours_ms",
        "ours_tflops",
        "bare_tflops",
        "ratio_to_bare",
        "speedup_vs_reference",
        "speedup_vs_plain_emulated",
        "speedup_vs_plain_best",
        "speedup_vs_svd",
        "ours_err",
        "reference_err",
        "plain_emulated_err",
        "gram_low_err",
        "standard_full_err",
    ],
}
QUICK: dict = {}
INPUTS = ("benchmarks/results/bench_*.csv",)
MACHINE_DEPENDENT = False  # renders committed CSVs, which record their own machine


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
    from experiments.tables import latex_table, tex_number

    rows = [dict(r) for r in tables["main"] if r["file"] is not None]

    def f(digits):
        return lambda v: "--" if v in (None, "") else f"{float(v):.{digits}f}"

    def e(v):
        return "--" if v in (None, "") else f"${tex_number(float(v), 2)}$"

    for r in (
        rows
    ):  # the plain loop in the arithmetic our path uses: emulated where that exists (bf16/fp16 on CPUs)
        r["vs_plain"] = _vs_plain(r)
        r["plain_err"] = r["plain_emulated_err"] if _plain_is_emulated(r) else r["reference_err"]
        r["method"] = _method(r.get("plan"))

    cols = [
        ("shape", "shape", None),
        ("dtype", "dtype", None),
        ("method", "method", None),
        ("ours_ms", "ms/call", f(1)),
        ("ours_tflops", "TFLOP/s", f(2)),
        ("ratio_to_bare", "vs bare matmuls", f(2)),
        ("vs_plain", "vs plain loop", f(2)),
        ("speedup_vs_svd", "vs SVD", f(1)),
        ("ours_err", "error", e),
        ("plain_err", "error, plain loop", e),
    ]
    if not rows:
        return {"table": r"\emph{No benchmark results are committed under benchmarks/results/.}" + "\n"}
    blocks = []
    for key in dict.fromkeys((r["device"], r["schedule"]) for r in rows):  # one block per device and schedule
        sel = [r for r in rows if (r["device"], r["schedule"]) == key]
        dev, sched = (str(v).replace("_", r"\_") for v in key)
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


def _method(plan: str | None) -> str:
    """``"gram (R, Q float32), bfloat16 emulated, symmetric/256"`` -> ``"gram (R, Q fp32)"``."""
    if not plan:
        return "--"
    text = str(plan)
    head = text[: text.index(")") + 1] if text.startswith("gram") and ")" in text else text.split(",")[0]
    return head.replace("bfloat16", "bf16").replace("float", "fp")


def _plain_is_emulated(r: dict) -> bool:
    """Is the faster plain loop the emulated one (where both were timed)?"""
    emu, native = r.get("speedup_vs_plain_emulated"), r.get("speedup_vs_reference")
    if emu in (None, ""):
        return False
    return native in (None, "") or float(emu) <= float(native)


def _vs_plain(r: dict) -> float | None:
    """Speedup over the faster plain loop (native or emulated arithmetic): ``speedup_vs_plain_best`` where
    the CSV has it, else the smaller of the two speedups recorded."""
    best = r.get("speedup_vs_plain_best")
    if best not in (None, ""):
        return float(best)
    vals = [
        float(v)
        for v in (r.get("speedup_vs_plain_emulated"), r.get("speedup_vs_reference"))
        if v not in (None, "")
    ]
    return min(vals) if vals else None


def _aspect(shape: str) -> float:
    m, n = (int(x) for x in str(shape).split("x")[-2:])
    return max(m, n) / min(m, n)


def numbers(tables) -> dict:
    rows = [r for r in tables["main"] if r["file"] is not None]
    out: dict = {"benchDevices": len({r["device"] for r in rows}), "benchRows": len(rows)}
    rated = [r for r in rows if _vs_plain(r) is not None and r.get("plan")]
    groups = {
        "benchGram": [r for r in rated if str(r["plan"]).startswith("gram")],
        "benchSquare": [r for r in rated if _aspect(r["shape"]) == 1],
        "benchLowAspect": [r for r in rated if r["dtype"] in ("bf16", "fp16") and _aspect(r["shape"]) >= 4],
        "benchSingleAspect": [r for r in rated if r["dtype"] == "fp32" and _aspect(r["shape"]) >= 4],
    }
    for key, sel in list(groups.items()):  # the same groups on machines whose bf16/fp16 run natively
        groups[key.replace("bench", "benchNative")] = [
            r for r in sel if "native" in str(r["plan"]) and r["dtype"] != "fp32"
        ]
        groups[key] = [r for r in sel if "native" not in str(r["plan"]) or r["dtype"] == "fp32"]
    for name, sel in groups.items():  # ranges of the speedup over the faster plain loop
        if sel:
            out[name + "Min"] = min(_vs_plain(r) for r in sel)
            out[name + "Max"] = max(_vs_plain(r) for r in sel)
    # machines whose bf16 runs natively: the bare bf16 GEMM rate over float32's (median over the shapes of a
    # file), and the worst error of the Gram form with R, Q in bf16 over the standard form's
    native = [r for r in rows if r["dtype"] == "bf16" and "native" in str(r["plan"])]
    fp32 = {(r["file"], r["shape"]): r for r in rows if r["dtype"] == "fp32"}
    gains = [
        float(r["bare_tflops"]) / float(fp32[r["file"], r["shape"]]["bare_tflops"])
        for r in native
        if (r["file"], r["shape"]) in fp32 and r.get("bare_tflops") not in (None, "")
    ]
    if gains:
        out["benchNativeGemmRatio"] = statistics.median(gains)
    low = [
        float(r["gram_low_err"]) / float(r["standard_full_err"])
        for r in native
        if r.get("gram_low_err") not in (None, "")
    ]
    if low:
        out["benchNativeGramLowWorst"] = max(low)
    return out


if __name__ == "__main__":
    from experiments.__main__ import main

    sys.exit(main([NAME, *sys.argv[1:]]))
