"""The prepared device run: device, CUDA tests, correctness of every path against float64, timings, Muon step.

Run on a lent GPU with ``benchmarks/gpu.sh`` (no installation: the checkout on ``PYTHONPATH``); it stops
starting new sections after ``--budget`` seconds (default 420, so it ends within 8 minutes on an H100/H200).

1. **device**: GPU name, torch, CUDA, triton and python versions.
2. **tests**: ``pytest -q tests/test_cuda.py tests/test_triton_kernels.py`` (exit status and summary line).
3. **check**: every path against float64 on small shapes: ``orthogonalize`` standard and Gram, full and
   blocked symmetric products, native and emulated GEMMs (rounding error ``err``: 2-norm distance to the float64
   run of the same schedule; ``ok`` when ``err <= 3 err_plain + 16 u``, ``err_plain`` the plain loop's error in
   the same dtype, the rule of ``tests/test_cuda.py``), and each Triton kernel (``ok`` when every entry is within
   :func:`nsiter.triton_kernels.error_bound`; symmetric outputs also exactly symmetric).
4. **peak**: a bare bf16 ``8192^3`` GEMM (``torch.mm``, CUDA events, median): the rate every TFLOP/s is
   compared with (``fraction_of_peak``).
5. **orthogonalize**: :func:`nsiter.bench.run_benchmark` at 4096x4096, 4096x16384, 8x1024x4096, 64x128x512
   and 1024x1024 in bf16 and fp16: the default, each method with full and symmetric products, the plain loop
   (native and emulated), bare GEMMs of the plain loop's flops, the float32 SVD polar factor (where
   ``b m n min(m, n) <= 2048^3``: 1024x1024 and 64x128x512; a 4096-square SVD takes seconds), the Gram peer's
   torch path (fp16 rows, when installed); ``tflops`` is the plain loop's flop count over the time; rounding
   errors where ``b m n min(m, n) <= 1024 * 4096 * 1024`` (the 2-norms need SVDs in float64).
6. **kernels**: the Triton kernels against the torch calls the evaluator makes today (``X X^T`` by
   ``torch.mm`` and by nsiter's blocked :func:`nsiter.kernels.symmetric_mm`, ``c_1 A + c_2 A^2`` by ``addmm``,
   ``c_0 X + B X`` by ``addmm``) at each shape's Gram size, bf16; ``speedup`` is torch's time over triton's.
7. **muon**: ``benchmarks/muon_step.py`` (12 transformer blocks of width 256; compiled step included).

Every result is one row of a long table written as CSV to ``benchmarks/results/bench_<device>.csv`` (device in
the name and in every row).  ``--dry-run`` (or ``NSITER_GPU_DRY_RUN=1``) runs the same code on the CPU with
tiny shapes in seconds, the Triton kernels under their interpreter with float32 operands, no pytest, and
writes into a new temporary directory unless ``--out`` names a file.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DRY = "--dry-run" in sys.argv[1:] or os.environ.get("NSITER_GPU_DRY_RUN", "") not in ("", "0")
if DRY:  # before anything imports triton: its kernels run under the interpreter on the CPU
    os.environ["TRITON_INTERPRET"] = "1"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import muon_step  # noqa: E402
import torch  # noqa: E402

from nsiter import triton_kernels as tk  # noqa: E402
from nsiter._io import atomic_write_csv  # noqa: E402
from nsiter.bench import reference_loop, run_benchmark  # noqa: E402
from nsiter.dtypes import short_name, torch_dtype, unit_roundoff  # noqa: E402
from nsiter.evaluate import orthogonalize  # noqa: E402
from nsiter.kernels import device_name, symmetric_mm  # noqa: E402
from nsiter.registry import load_schedule  # noqa: E402

COLUMNS = (
    "section",
    "variant",
    "shape",
    "dtype",
    "ms",
    "min_ms",
    "tflops",
    "fraction_of_peak",
    "speedup",
    "err",
    "bound",
    "ok",
    "compile_s",
    "note",
    "device",
    "torch",
    "triton",
)
SHAPES = ("4096x4096", "4096x16384", "8x1024x4096", "64x128x512", "1024x1024")
DRY_SHAPES = ("64x64", "48x160", "2x32x96", "4x16x48", "40x40")
DTYPES = ("bf16", "fp16")
ERROR_MAX = 1024 * 4096 * 1024  # rounding errors in the timing rows only where m n min(m, n) is at most this
SPEEDUP_MIN = 1.05  # a Triton kernel counts as faster than torch's call from this ratio of medians on


def triton_version() -> str:
    try:
        import triton
    except ImportError:
        return "not installed"
    return triton.__version__


def slug(text: str) -> str:
    """``"NVIDIA H100 80GB HBM3"`` -> ``"nvidia-h100-80gb-hbm3"``."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_ms(fn: Callable[[], Any], device: torch.device, repeats: int, warmup: int = 1) -> list[float]:
    """Milliseconds of ``repeats`` calls after ``warmup``: CUDA events on a GPU, ``perf_counter`` elsewhere."""
    for _ in range(warmup):
        fn()
    _sync(device)
    out = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize(device)
            out.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            out.append(1e3 * (time.perf_counter() - t0))
    return out


class Run:
    """The rows of one device run and what every row shares."""

    def __init__(self, device: torch.device, budget_s: float):
        self.device = device
        self.rows: list[dict[str, Any]] = []
        self.common = {"device": device_name(device), "torch": torch.__version__, "triton": triton_version()}
        self.start = time.perf_counter()
        self.budget_s = budget_s
        self.peak: float | None = None

    def add(self, **row: Any) -> dict[str, Any]:
        full = dict.fromkeys(COLUMNS)
        full.update(self.common)
        full.update(row)
        if full["tflops"] is not None and self.peak:
            full["fraction_of_peak"] = full["tflops"] / self.peak
        self.rows.append(full)
        return full

    def left(self) -> float:
        return self.budget_s - (time.perf_counter() - self.start)


def section_tests(run: Run) -> None:
    if DRY:
        run.add(section="tests", variant="pytest", note="dry run: tests not run")
        return
    cmd = [sys.executable, "-m", "pytest", "-q", "tests/test_cuda.py", "tests/test_triton_kernels.py"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    print("\n".join(lines[-15:]))
    run.add(section="tests", variant="pytest", ok=proc.returncode == 0, note=lines[-1] if lines else "")


def _distance(X: torch.Tensor, ref: torch.Tensor) -> float:
    D = X.double() - ref
    return float(torch.linalg.matrix_norm(D, 2).max()) if bool(torch.isfinite(D).all()) else math.inf


def section_check(run: Run) -> None:
    """Every path of ``orthogonalize`` and every Triton kernel against float64."""
    dev = run.device
    sched = load_schedule("muon")
    shapes = [(40, 72), (2, 24, 56)] if DRY else [(256, 1024), (8, 128, 512), (1000, 1000)]
    gen = torch.Generator().manual_seed(0)
    for shape in shapes:
        G = torch.randn(*shape, generator=gen).to(dev)
        exact = orthogonalize(G.double(), sched, dtype=torch.float64, method="standard")
        text = "x".join(map(str, shape))
        for dt in ("bf16", "fp16", "fp32"):
            plain = _distance(reference_loop(G, sched, dt), exact)
            tol = 3 * plain + 16 * unit_roundoff(dt)
            run.add(section="check", variant="plain loop", shape=text, dtype=dt, err=plain)
            for method in ("standard", "gram"):
                for sym in (False, True):
                    for emulate in (False, True) if dt != "fp32" else (False,):
                        X = orthogonalize(G, sched, dtype=dt, method=method, symmetric=sym, emulate=emulate)
                        err = _distance(X, exact)
                        name = f"{method}, {'symmetric' if sym else 'full'}, {'emulated' if emulate else 'native'}"
                        run.add(
                            section="check",
                            variant=name,
                            shape=text,
                            dtype=dt,
                            err=err,
                            bound=tol,
                            ok=err <= tol,
                        )
    if not tk.triton_available(dev):
        run.add(section="check", variant="triton", note=f"triton kernels not available on {dev}")
        return
    # the interpreter's tl.dot is wrong on bf16 operands: there float32 operands carry the bf16 values
    operand = {"bf16": "fp32" if tk.interpreting() else "bf16", "fp16": "fp16", "fp32": "fp32"}
    sizes = [(7, 9), (33, 40)] if DRY else [(130, 70), (520, 1000)]
    for m, k in sizes:
        for dt in ("bf16", "fp16", "fp32"):
            values, odt = torch_dtype(dt), torch_dtype(dt)
            adt = torch_dtype(operand[dt])
            X = torch.randn(2, m, k, generator=gen).to(values).to(adt).to(dev)
            A = (X @ X.mT).to(values).to(adt)
            cases = {
                "syrk X X^T": (tk.syrk(X, out_dtype=odt), X, X.mT, None, 0.0, 1.0),
                "symmetric_mm c1 A + c2 A^2": (
                    tk.symmetric_mm(A, A, C=A.to(odt), beta=-4.775, alpha=2.0315, out_dtype=odt),
                    A, A, A.to(odt), -4.775, 2.0315,
                ),
                "addmm c0 X + B X": (
                    tk.addmm(A, X, C=X.to(odt), beta=3.4445, out_dtype=odt), A, X, X.to(odt), 3.4445, 1.0,
                ),
            }  # fmt: skip
            for name, (out, P, Q, C, beta, alpha) in cases.items():
                ref, bound = tk.error_bound(P, Q, C, beta=beta, alpha=alpha, out_dtype=odt)
                excess = float(((out.double().cpu() - ref).abs() - bound).max())
                ok = excess <= 0 and (name.startswith("addmm") or torch.equal(out, out.mT))
                run.add(
                    section="check", variant=f"triton {name}", shape=f"2x{m}x{k}", dtype=dt,
                    err=float((out.double().cpu() - ref).abs().max()), bound=float(bound.max()), ok=ok,
                    note=f"operands {operand[dt]}",
                )  # fmt: skip


def section_peak(run: Run) -> None:
    n = 256 if DRY else 8192
    A = torch.randn(n, n, device=run.device, dtype=torch.bfloat16)
    out = torch.empty_like(A)
    t = time_ms(lambda: torch.mm(A, A, out=out), run.device, repeats=5 if DRY else 20, warmup=2)
    med = statistics.median(t)
    run.peak = 2 * n**3 / med / 1e9
    run.add(section="peak", variant="bare bf16 GEMM", shape=f"{n}x{n}x{n}", dtype="bf16", ms=med, min_ms=min(t),
            tflops=run.peak)  # fmt: skip
    print(f"bare bf16 {n}^3 GEMM: {run.peak:.1f} TFLOP/s")


_BENCH = {
    "ours": "default",
    "standard_full": "standard, full",
    "standard_sym": "standard, symmetric",
    "gram_full": "gram, full",
    "gram_sym": "gram, symmetric",
    "reference": "plain loop",
    "plain_emulated": "plain loop, emulated",
    "bare": "bare GEMMs",
    "svd": "SVD polar (float32)",
    "peer": "gram-newton-schulz torch path",
}


def section_orthogonalize(run: Run, shapes: tuple[str, ...]) -> None:
    for shape in shapes:
        if run.left() < 0:
            run.add(section="orthogonalize", shape=shape, note="not run: time budget spent")
            continue
        dims = [int(v) for v in shape.split("x")]
        b, m, n = ([1, *dims] if len(dims) == 2 else dims)[-3:]
        errors = b * m * n * min(m, n) <= ERROR_MAX
        rows = run_benchmark(
            [shape], DTYPES, "muon", repeats=3 if DRY else 5, device=run.device,
            case_budget_s=20.0, errors=errors, progress=print,  # SVD timed where m n min(m, n) <= 2048^3
        )  # fmt: skip
        for r in rows:
            for key, label in _BENCH.items():
                ms = r.get(f"{key}_ms")
                if ms is None:
                    continue
                tflops = r["gflop"] / ms if key != "svd" else None
                run.add(
                    section="orthogonalize", variant=label, shape=shape, dtype=r["dtype"], ms=ms,
                    min_ms=r.get(f"{key}_min_ms"), tflops=tflops, err=r.get(f"{key}_err"),
                    speedup=r["ours_ms"] / ms if r.get("ours_ms") else None,
                    note=(r["plan"] if key == "ours" else "") + ("" if errors else "; errors: see section check"),
                )  # fmt: skip
            if r.get("note"):
                run.add(
                    section="orthogonalize", variant="note", shape=shape, dtype=r["dtype"], note=r["note"]
                )


def _kernel_pairs(X: torch.Tensor, A: torch.Tensor, b: int, m: int, n: int) -> dict[str, tuple]:
    """Per product: (flops of the full product, the Triton call, {torch's calls}), on preallocated outputs."""
    out_a, out_x = torch.empty_like(A), torch.empty_like(X)
    block = max(32, m // 4)
    return {
        "syrk X X^T": (
            2 * b * m * m * n,
            lambda: tk.syrk(X, out_a),
            {"torch bmm": lambda: torch.bmm(X, X.mT, out=out_a),
             f"nsiter blocked/{block}": lambda: symmetric_mm(X, X.mT, out_a, block=block)},
        ),
        "symmetric_mm c1 A + c2 A^2": (
            2 * b * m**3,
            lambda: tk.symmetric_mm(A, A, out_a, C=A, beta=-4.775, alpha=2.0315),
            {"torch baddbmm": lambda: torch.baddbmm(A, A, A, beta=-4.775, alpha=2.0315, out=out_a)},
        ),
        "addmm c0 X + B X": (
            2 * b * m * m * n,
            lambda: tk.addmm(A, X, out_x, C=X, beta=3.4445),
            {"torch baddbmm": lambda: torch.baddbmm(X, A, X, beta=3.4445, out=out_x)},
        ),
    }  # fmt: skip


def section_kernels(run: Run, shapes: tuple[str, ...]) -> None:
    dev = run.device
    if not tk.triton_available(dev):
        run.add(section="kernels", note=f"triton kernels not available on {dev}")
        return
    dt = torch.float32 if tk.interpreting() else torch.bfloat16  # the interpreter: float32 operands
    reps = 3 if DRY else 10
    for shape in shapes:
        if run.left() < 0:
            run.add(section="kernels", shape=shape, note="not run: time budget spent")
            continue
        dims = [int(v) for v in shape.split("x")]
        b, m, n = ([1, *dims] if len(dims) == 2 else dims)[-3:]
        m, n = min(m, n), max(m, n)
        gen = torch.Generator().manual_seed(0)
        X = (torch.randn(b, m, n, generator=gen) / math.sqrt(n)).to(dev, dt)
        pairs = _kernel_pairs(X, X @ X.mT, b, m, n)
        for name, (flops, ours, others) in pairs.items():
            t_ours = time_ms(ours, dev, reps)
            med = statistics.median(t_ours)
            best = None
            for other, fn in others.items():
                t = statistics.median(time_ms(fn, dev, reps))
                best = t if best is None else min(best, t)
                run.add(section="kernels", variant=other, shape=shape, dtype=short_name(dt), ms=t,
                        tflops=flops / t / 1e9, note=name)  # fmt: skip
            faster = best / med >= SPEEDUP_MIN
            run.add(
                section="kernels", variant=f"triton {name}", shape=shape, dtype=short_name(dt), ms=med,
                min_ms=min(t_ours), tflops=flops / med / 1e9, speedup=best / med,
                note=f"faster than torch (>= {SPEEDUP_MIN}x)" if faster else "not faster than torch",
            )  # fmt: skip


def section_muon(run: Run) -> None:
    if run.left() < 0:
        run.add(section="muon", note="not run: time budget spent")
        return
    kw: dict[str, Any] = {"layers": 1, "d": 32, "rounds": 2, "warmup": 1} if DRY else {"rounds": 20}
    compile_step = not DRY and run.left() > 150  # inductor's compile of the step takes a minute or more
    rows = muon_step.run(device=run.device, compile_step=compile_step, peer=not DRY, progress=print, **kw)
    print(muon_step.format_rows(rows))
    for r in rows:
        run.add(section="muon", variant=r["variant"], shape=r["shapes"], dtype="bf16", ms=r["ms"],
                min_ms=r["min_ms"], speedup=r["speedup_vs_torch"], err=r["err"], compile_s=r["compile_s"],
                note=r["note"])  # fmt: skip


def write(rows: list[dict[str, Any]], path: Path) -> Path:
    cells = ({k: ("" if r.get(k) is None else r[k]) for k in COLUMNS} for r in rows)
    return atomic_write_csv(path, COLUMNS, cells, parents=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--dry-run", action="store_true", help="CPU, tiny shapes, seconds (also NSITER_GPU_DRY_RUN=1)"
    )
    ap.add_argument("--out", default=None, help="CSV path (default benchmarks/results/bench_<device>.csv)")
    ap.add_argument("--budget", type=float, default=420.0, help="seconds after which no new section starts")
    ap.add_argument("--skip-tests", action="store_true")
    args = ap.parse_args(argv)
    if DRY:
        device = torch.device("cpu")
    elif torch.cuda.is_available():
        device = torch.device("cuda")
    else:
        print("no CUDA device: run with --dry-run (or NSITER_GPU_DRY_RUN=1) to check the script on the CPU")
        return 2
    run = Run(device, args.budget)
    cuda = torch.version.cuda or "none"
    print(f"device: {run.common['device']}; torch {torch.__version__} (CUDA {cuda}); triton {run.common['triton']}; "
          f"python {platform.python_version()}{'; DRY RUN' if DRY else ''}")  # fmt: skip
    run.add(
        section="device",
        variant=run.common["device"],
        note=f"CUDA {cuda}; python {platform.python_version()}",
    )
    shapes = DRY_SHAPES if DRY else SHAPES
    sections: list[tuple[str, Callable[[], None]]] = [
        ("tests", lambda: None if args.skip_tests else section_tests(run)),
        ("check", lambda: section_check(run)),
        ("peak", lambda: section_peak(run)),
        ("orthogonalize", lambda: section_orthogonalize(run, shapes)),
        ("kernels", lambda: section_kernels(run, shapes)),
        ("muon", lambda: section_muon(run)),
    ]
    for name, fn in sections:
        t0 = time.perf_counter()
        print(f"== {name}")
        try:
            fn()
        except Exception as exc:  # one broken section must not cost the others' numbers on a lent machine
            run.add(section=name, note=f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
            print(f"{name} failed: {type(exc).__name__}: {exc}")
        print(f"== {name}: {time.perf_counter() - t0:.1f} s")
    if args.out:
        path = Path(args.out)
    elif DRY:
        path = Path(tempfile.mkdtemp(prefix="nsiter-gpu-dry-")) / "bench_cpu_dry_run.csv"
    else:
        path = HERE / "results" / f"bench_{slug(run.common['device'])}.csv"
    bad = [r for r in run.rows if r["ok"] is False]
    print(f"{len(run.rows)} rows, {len(bad)} not ok; wrote {write(run.rows, path)}")
    for r in bad:
        print(
            f"not ok: {r['section']} {r['variant']} {r['shape']} {r['dtype']}: err {r['err']} bound {r['bound']}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
