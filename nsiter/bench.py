"""Benchmark the evaluator against the machine's matmul ceiling, the plain loop and the SVD.

For each shape and dtype, ``run_benchmark`` times (median of ``repeats`` calls after a warm-up, minimum
also recorded; the variants are interleaved call by call so that a shared machine's load hits them
alike, and the 1-minute load average is recorded with each row):

- ``ours``: ``nsiter.orthogonalize(G, schedule, dtype=...)``, normalization included;
- ``bare``: the same matrix products with nothing else (``torch.matmul(..., out=...)`` on
  preallocated operands of the right shapes) — the ceiling for this product count;
- ``reference``: the plain loop (normalize, transpose, ``A = X@X.T; B = b*A + c*A@A; X = a*X + B@X``,
  generalized to the schedule's per-step coefficients and degrees), unfused, allocating each temporary;
- ``svd``: the polar factor ``U V^T`` from ``torch.linalg.svd`` in float32 (LAPACK has no bf16 SVD).

FLOP count (``schedule_flops``): on the small side ``m <= n``, a step of degree ``2l + 1`` costs the
Gram product ``2 m^2 n``, ``l - 1`` Horner products ``2 m^3`` each and the update ``2 m^2 n``, i.e.
``4 m^2 n + 2 (l - 1) m^3`` multiply-adds counted as 2 flops, times the batch.  Element-wise work
(normalization, scaling) is not counted.  Achieved FLOP/s is that count over the measured time.

On CPUs without native bf16/fp16 GEMM (AVX2 only) the evaluator emulates bf16 (float32 GEMMs, results
rounded); the ``bare`` ceiling is then measured with the GEMMs actually used (float32), and the
reference loop runs in true bf16 — the column ``kernel`` says which.  Cases whose predicted time
exceeds the per-case budget are not run and say so in ``note`` instead of reporting a number.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nsiter._io import atomic_write_csv
from nsiter.dtypes import short_name, torch_dtype
from nsiter.evaluate import _emulation, orthogonalize, resolve_schedule
from nsiter.schedule import Schedule

__all__ = [
    "DEFAULT_SHAPES",
    "QUICK_SHAPES",
    "BenchShape",
    "format_table",
    "parse_shape",
    "reference_loop",
    "run_benchmark",
    "schedule_flops",
    "write_csv",
]

DEFAULT_SHAPES = ("1024x1024", "1024x4096", "2048x2048", "4096x4096", "16x512x512")
QUICK_SHAPES = ("256x256", "256x1024", "4x128x128")
COLUMNS = (
    "shape",
    "dtype",
    "kernel",
    "schedule",
    "steps",
    "gflop",
    "ours_ms",
    "ours_tflops",
    "bare_ms",
    "bare_tflops",
    "ratio_to_bare",
    "reference_ms",
    "speedup_vs_reference",
    "svd_ms",
    "speedup_vs_svd",
    "ours_min_ms",
    "bare_min_ms",
    "reference_min_ms",
    "repeats",
    "load_1min",
    "device",
    "torch",
    "threads",
    "note",
)


@dataclass(frozen=True)
class BenchShape:
    """``batch x m x n`` (``batch`` is None for a single matrix)."""

    batch: int | None
    m: int
    n: int

    @property
    def count(self) -> int:
        return self.batch or 1

    def __str__(self) -> str:
        return f"{self.batch}x{self.m}x{self.n}" if self.batch else f"{self.m}x{self.n}"


def parse_shape(text: str) -> BenchShape:
    """Parse ``"MxN"`` or ``"BxMxN"`` (positive integers)."""
    parts = str(text).strip().lower().split("x")
    try:
        dims = [int(p) for p in parts]
    except ValueError as err:
        raise ValueError(f"shape must be MxN or BxMxN with integers, got {text!r}") from err
    if len(dims) not in (2, 3) or any(d < 1 for d in dims):
        raise ValueError(f"shape must be MxN or BxMxN with positive integers, got {text!r}")
    return BenchShape(None, *dims) if len(dims) == 2 else BenchShape(*dims)


def schedule_flops(schedule: Schedule, m: int, n: int, batch: int = 1) -> int:
    """Matmul flops of one ``orthogonalize`` call: ``sum_k 4 s^2 t + 2 (l_k - 1) s^3`` per matrix (s <= t)."""
    s, t = min(m, n), max(m, n)
    per = 0
    for p in schedule.steps:
        l = len(p.coefficients) - 1  # noqa: E741 - degree 2l + 1, as in the docstring
        if l >= 1:
            per += 4 * s * s * t + 2 * (l - 1) * s**3
    return per * batch


def reference_loop(G: torch.Tensor, schedule: Schedule, dtype: torch.dtype) -> torch.Tensor:
    """The plain loop of Muon's ``zeropower_via_newtonschulz5`` with the schedule's coefficients, unfused."""
    norm = schedule.normalization
    X = G.to(dtype)
    X = X / (X.norm(dim=(-2, -1), keepdim=True) * norm.scale + norm.eps)
    tall = G.size(-2) > G.size(-1)
    if tall:
        X = X.mT
    for p in schedule.steps:
        c = p.coefficients
        if len(c) == 1:
            X = c[0] * X
            continue
        A = X @ X.mT
        B = c[1] * A
        P = A
        for cj in c[2:]:
            P = P @ A
            B = B + cj * P
        X = c[0] * X + B @ X
    if tall:
        X = X.mT
    return X


def _bare(
    schedule: Schedule, shape: BenchShape, dtype: torch.dtype, device: torch.device
) -> Callable[[], Any]:
    """The schedule's matrix products alone, on preallocated operands and outputs."""
    s, t = min(shape.m, shape.n), max(shape.m, shape.n)
    lead = (shape.batch,) if shape.batch else ()
    gen = torch.Generator().manual_seed(0)
    X = (torch.randn(*lead, s, t, generator=gen) / math.sqrt(s * t)).to(device, dtype)
    A = X @ X.mT
    outA, outB, outX = torch.empty_like(A), torch.empty_like(A), torch.empty_like(X)
    counts = [len(p.coefficients) - 1 for p in schedule.steps]

    def run() -> None:
        for l in counts:  # noqa: E741
            if l < 1:
                continue
            torch.matmul(X, X.mT, out=outA)
            for _ in range(l - 1):
                torch.matmul(A, A, out=outB)
            torch.matmul(A, X, out=outX)

    return run


def _svd_polar(G: torch.Tensor) -> torch.Tensor:
    U, _, Vh = torch.linalg.svd(G, full_matrices=False)
    return U @ Vh


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn: Callable[[], Any], device: torch.device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


def _probe_rate(dtype: torch.dtype, device: torch.device, size: int = 256) -> float:
    """Measured flop rate of one ``size``-square matmul in ``dtype`` (after one warm-up), for predictions."""
    gen = torch.Generator().manual_seed(1)
    X = torch.randn(size, size, generator=gen).to(device, dtype)
    out = torch.empty_like(X)
    torch.matmul(X, X, out=out)
    best = min(_time(lambda: torch.matmul(X, X, out=out), device) for _ in range(3))
    return 2 * size**3 / max(best, 1e-9)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cap = torch.backends.cpu.get_cpu_capability()
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            model = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), model)
    except OSError:
        pass
    return f"cpu ({model}; {cap}; {torch.get_num_threads()} threads)"


def run_benchmark(
    shapes: Sequence[str | BenchShape] = DEFAULT_SHAPES,
    dtypes: Sequence[str | torch.dtype] = ("bf16", "fp32"),
    schedule: Schedule | str = "muon",
    repeats: int = 5,
    *,
    warmup: int = 1,
    device: torch.device | str | None = None,
    svd: bool = True,
    svd_max: int = 2048,
    case_budget_s: float = 60.0,
    reference: bool = True,
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Time ``orthogonalize`` against bare matmuls, the plain loop and the SVD; one row per (shape, dtype).

    Args:
        shapes: ``"MxN"`` / ``"BxMxN"`` strings or ``BenchShape``.
        dtypes: ``"bf16"``, ``"fp32"``, ... or torch dtypes.
        schedule: registry name, path or ``Schedule``.
        repeats: timed calls per variant (median reported); reduced for a case whose predicted time
            exceeds ``case_budget_s`` (at least 1), and the case is skipped with a note when even one
            call of each variant is predicted to exceed it.
        warmup: untimed calls per variant first.
        device: defaults to CUDA when available, else CPU.
        svd, svd_max: time the SVD polar factor only when ``batch m n min(m, n) <= svd_max^3``, i.e. when
            it costs at most an ``svd_max``-square SVD (else a note).
        reference: time the plain loop too.
        progress: called with a one-line message per case (e.g. ``print``).

    Returns:
        Rows with the keys of ``COLUMNS``; times in ms, rates in TFLOP/s, ``None`` where not measured.
    """
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive integer, got {repeats!r}")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be a non-negative integer, got {warmup!r}")
    if not (math.isfinite(case_budget_s) and case_budget_s > 0):
        raise ValueError(f"case_budget_s must be positive, got {case_budget_s!r}")
    sched = resolve_schedule(schedule)
    dev = (
        torch.device(device)
        if device is not None
        else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    )
    parsed = [s if isinstance(s, BenchShape) else parse_shape(s) for s in shapes]
    dts = [(short_name(d), torch_dtype(d)) for d in dtypes]
    rates: dict[torch.dtype, float] = {}
    rows = []
    for shape in parsed:
        for dname, dtype in dts:
            emulated = _emulation(dtype, dev, None)
            gemm_dtype = torch.float32 if emulated else dtype
            for d in {gemm_dtype, dtype}:
                if d not in rates:
                    rates[d] = _probe_rate(d, dev)
            flops = schedule_flops(sched, shape.m, shape.n, shape.count)
            row: dict[str, Any] = dict.fromkeys(COLUMNS)
            row.update(
                shape=str(shape),
                dtype=dname,
                kernel=f"{dname} emulated (fp32 GEMM; results rounded to {dname})" if emulated else dname,
                schedule=sched.name,
                steps=len(sched),
                gflop=flops / 1e9,
                device=_device_name(dev),
                torch=torch.__version__,
                threads=torch.get_num_threads(),
            )
            notes = []
            lead = (shape.batch,) if shape.batch else ()
            G = torch.randn(*lead, shape.m, shape.n, generator=torch.Generator().manual_seed(0)).to(dev)
            variants: dict[str, Callable[[], Any]] = {
                "ours": lambda G=G, dtype=dtype: orthogonalize(G, sched, dtype=dtype),
                "bare": _bare(sched, shape, gemm_dtype, dev),
            }
            predicted = {"ours": flops / rates[gemm_dtype], "bare": flops / rates[gemm_dtype]}
            if reference:
                variants["reference"] = lambda G=G, dtype=dtype: reference_loop(G, sched, dtype)
                predicted["reference"] = flops / rates[dtype]
            svd_cost = shape.count * shape.m * shape.n * min(shape.m, shape.n)  # SVD flops ~ C m n min(m, n)
            if svd and svd_cost <= svd_max**3:
                variants["svd"] = lambda G=G: _svd_polar(G.to(torch.float32))
                predicted["svd"] = None
            elif svd:
                notes.append(f"svd not measured (batch m n min(m, n) > {svd_max}^3)")
            for name in list(variants):
                p = predicted[name]
                if p is not None and p * (warmup + 1) > case_budget_s:
                    notes.append(
                        f"{name} not measured: predicted {p:.3g} s per call "
                        f"(probe {rates[gemm_dtype if name != 'reference' else dtype] / 1e9:.3g} GFLOP/s)"
                    )
                    del variants[name]
            known = [p for k, p in predicted.items() if k in variants and p is not None]
            per_round = sum(known) if known else 0.0
            reps = repeats
            if per_round > 0:
                reps = max(
                    1, min(repeats, int(case_budget_s / per_round) - (warmup if per_round < 5.0 else 0))
                )
            times: dict[str, list[float]] = {k: [] for k in variants}
            for fn in variants.values():  # a call predicted to take seconds needs no warm-up
                for _ in range(warmup if per_round < 5.0 else 0):
                    fn()
            svd_cap = max(1, reps // 2)  # SVD is slow and only needed to an order of magnitude
            for _ in range(reps):
                for name, fn in variants.items():
                    if name == "svd" and len(times["svd"]) >= svd_cap:
                        continue
                    times[name].append(_time(fn, dev))
            med = {k: statistics.median(v) for k, v in times.items() if v}
            if "ours" in med:
                row["ours_ms"] = 1e3 * med["ours"]
                row["ours_tflops"] = flops / med["ours"] / 1e12
            if "bare" in med:
                row["bare_ms"] = 1e3 * med["bare"]
                row["bare_tflops"] = flops / med["bare"] / 1e12
            if "ours" in med and "bare" in med:
                row["ratio_to_bare"] = med["bare"] / med["ours"]
            if "reference" in med:
                row["reference_ms"] = 1e3 * med["reference"]
                if "ours" in med:
                    row["speedup_vs_reference"] = med["reference"] / med["ours"]
            if "svd" in med:
                row["svd_ms"] = 1e3 * med["svd"]
                if "ours" in med:
                    row["speedup_vs_svd"] = med["svd"] / med["ours"]
            for k in ("ours", "bare", "reference"):
                if times.get(k):
                    row[f"{k}_min_ms"] = 1e3 * min(times[k])
            row["repeats"] = reps
            row["load_1min"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
            row["note"] = "; ".join(notes)
            rows.append(row)
            if progress is not None:
                progress(
                    f"{shape} {dname}: ours {_fmt(row['ours_ms'])} ms, ratio to bare {_fmt(row['ratio_to_bare'])}"
                )
    return rows


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """A fixed-width text table of the main columns, notes listed underneath."""
    cols = [
        ("shape", "shape"),
        ("dtype", "dtype"),
        ("ours_ms", "ours ms"),
        ("ours_tflops", "TFLOP/s"),
        ("bare_tflops", "bare TFLOP/s"),
        ("ratio_to_bare", "vs bare"),
        ("reference_ms", "ref ms"),
        ("speedup_vs_reference", "x ref"),
        ("svd_ms", "svd ms"),
        ("speedup_vs_svd", "x svd"),
        ("repeats", "reps"),
    ]
    cells = [[h for _, h in cols]] + [[_fmt(r.get(k)) for k, _ in cols] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(cols))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)) for line in cells]
    if rows:
        lines.insert(1, "  ".join("-" * w for w in widths))
        load = max((r["load_1min"] for r in rows if r.get("load_1min") is not None), default=None)
        lines.append(
            f"device: {rows[0]['device']}; torch {rows[0]['torch']}; schedule {rows[0]['schedule']}; "
            f"max 1-min load average {_fmt(load)}"
        )
        for r in rows:
            if r.get("kernel") != r.get("dtype"):
                lines.append(f"{r['shape']} {r['dtype']}: kernel {r['kernel']}")
            if r.get("note"):
                lines.append(f"{r['shape']} {r['dtype']}: {r['note']}")
    return "\n".join(lines)


def write_csv(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Write rows (``COLUMNS``) atomically; floats with ``repr`` precision."""
    cells = ({k: ("" if r.get(k) is None else r.get(k)) for k in COLUMNS} for r in rows)
    return atomic_write_csv(path, COLUMNS, cells, parents=True)
