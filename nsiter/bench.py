"""Benchmark the evaluator: its default, each of its paths, the plain loop, bare matmuls, the SVD, the peer.

For each shape and dtype, ``run_benchmark`` times (median of ``repeats`` calls after a warm-up, minimum
also recorded; the variants are interleaved call by call, in an order shuffled each round (seeded),
so that a shared machine's load and cold caches hit them alike, and the 1-minute load average is
recorded with each row), all in one process:

- ``ours``: ``nsiter.orthogonalize(G, schedule, dtype=...)``, the default (``method="auto"``, measured
  kernels), normalization included; ``plan`` says what it ran (:func:`nsiter.evaluate.evaluation_plan`);
- ``standard_full``, ``standard_sym``, ``gram_full``, ``gram_sym``: each method with full or blocked
  symmetric products (``gram_*`` keep ``R, Q`` in :func:`nsiter.gram.default_gram_dtype`);
- ``gram_low`` (where the X side runs narrower than that default, e.g. native bf16): the Gram form with
  ``R, Q`` in the X side's own precision and the schedule's restarts;  ``ours_vs_best_own`` compares the
  default with the fastest of these own paths whose rounding error is within the accuracy gate's tolerance
  (:data:`nsiter.plan.GRAM_TOLERANCE`) of the standard form's, named in ``best_own``;
- ``reference``: the plain loop (normalize, transpose, ``A = X@X.T; B = b*A + c*A@A; X = a*X + B@X``,
  generalized to the schedule's per-step coefficients and degrees) in the dtype's own GEMM;
- ``plain_emulated`` (bf16/fp16 only): the same loop with float32 GEMMs and every result rounded to the
  dtype — the same arithmetic as the emulated evaluator, so on CPUs whose native bf16 GEMM is a slow
  scalar path this is the fair loop to compare with;
- ``bare``: the standard method's matrix products alone (``torch.mm``/``bmm`` with ``out=`` on preallocated
  operands) in the GEMM dtype actually used — the ceiling for the standard flop count;
- ``svd``: the polar factor ``U V^T`` from ``torch.linalg.svd`` in float32 (LAPACK has no bf16 SVD);
- ``peer`` (fp16 and bf16 rows, when ``gram-newton-schulz`` is installed and every step is a quintic): the
  Gram Newton–Schulz package's pure-torch path (``ns_use_kernels=False``, no ``torch.compile``) with the
  same coefficients, the schedule's restarts (or the package's default, after step 2); it computes in
  float16, and for bf16 rows its one cast is changed to bfloat16 (:func:`_peer`);
- ``speedup_vs_plain_best``: against the faster of the plain loop's native and emulated arithmetic.

Every row states the rounding error of each variant: the 2-norm distance (largest over the batch) to the
float64 run of the same schedule (standard form), from one extra untimed call.

FLOP counts: ``gflop`` is the standard form's count with full products (``nsiter.cost.method_flops``:
per step of degree ``2l + 1``, ``4 m^2 n + 2 (l - 1) m^3`` on the small side ``m <= n``), the work of
the plain loop; ``gflop_ours`` is what the default plan executes.  ``ratio_to_bare`` above 1 means the
default beats the GEMM ceiling of the plain loop's flops by doing fewer of them.
"""

from __future__ import annotations

import copy
import math
import os
import random
import statistics
import time
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from nsiter._io import atomic_write_csv
from nsiter.cost import method_flops
from nsiter.dtypes import short_name, torch_dtype
from nsiter.evaluate import evaluation_plan, orthogonalize, resolve_schedule
from nsiter.gram import default_gram_dtype
from nsiter.kernels import device_name
from nsiter.plan import GRAM_TOLERANCE
from nsiter.rounding import rounding_error
from nsiter.schedule import Schedule

__all__ = [
    "COLUMNS",
    "DEFAULT_SHAPES",
    "QUICK_SHAPES",
    "VARIANTS",
    "BenchShape",
    "format_table",
    "parse_shape",
    "reference_loop",
    "run_benchmark",
    "schedule_flops",
    "write_csv",
]

DEFAULT_SHAPES = ("1024x1024", "1024x4096", "512x4096", "8x256x1024")
QUICK_SHAPES = ("256x256", "256x1024", "128x1024", "4x64x256")
VARIANTS = (
    "ours",
    "standard_full",
    "standard_sym",
    "gram_full",
    "gram_sym",
    "gram_low",
    "reference",
    "plain_emulated",
    "bare",
    "svd",
    "peer",
)
_ERRORS = tuple(v for v in VARIANTS if v not in ("bare", "svd"))
COLUMNS = (
    "shape",
    "dtype",
    "kernel",
    "plan",
    "schedule",
    "steps",
    "gflop",
    "gflop_ours",
    *(f"{v}_ms" for v in VARIANTS),
    "ours_tflops",
    "bare_tflops",
    "ratio_to_bare",
    "speedup_vs_reference",
    "speedup_vs_plain_emulated",
    "speedup_vs_plain_best",
    "speedup_vs_peer",
    "speedup_vs_svd",
    "ours_vs_best_own",
    "best_own",
    *(f"{v}_err" for v in _ERRORS),
    *(f"{v}_min_ms" for v in VARIANTS),
    "repeats",
    "load_1min",
    "device",
    "torch",
    "threads",
    "note",
)
_OWN = ("standard_full", "standard_sym", "gram_full", "gram_sym", "gram_low")


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
    if not all(p.isascii() and p.isdigit() for p in parts):  # no "1_000", full-width or other scripts' digits
        raise ValueError(f"shape must be MxN or BxMxN with integers, got {text!r}")
    dims = [int(p) for p in parts]
    if len(dims) not in (2, 3) or any(d < 1 for d in dims):
        raise ValueError(f"shape must be MxN or BxMxN with positive integers, got {text!r}")
    return BenchShape(None, *dims) if len(dims) == 2 else BenchShape(*dims)


def schedule_flops(schedule: Schedule, m: int, n: int, batch: int = 1) -> int:
    """Matmul flops of the plain loop: ``sum_k 4 s^2 t + 2 (l_k - 1) s^3`` per matrix (s <= t); the standard
    form with full products in :func:`nsiter.cost.method_flops`."""
    return method_flops(schedule, m, n, batch=batch, method="standard")


def reference_loop(G: torch.Tensor, schedule: Schedule, dtype: Any, *, emulate: bool = False) -> torch.Tensor:
    """The plain loop of Muon's ``zeropower_via_newtonschulz5`` with the schedule's coefficients, unfused.

    With ``emulate`` the loop runs in float32 and rounds every result (products, scalings, sums) to
    ``dtype``: the native low-precision loop's arithmetic with float32 GEMMs.
    """
    dtype = torch_dtype(dtype)
    norm = schedule.normalization
    if emulate:
        work = torch.float32

        def r(T: torch.Tensor) -> torch.Tensor:
            return T.to(dtype).to(work)

    else:
        work = dtype

        def r(T: torch.Tensor) -> torch.Tensor:
            return T

    X = r(G.to(work))
    X = r(X / r(r(X.norm(dim=(-2, -1), keepdim=True) * norm.scale) + norm.eps))
    tall = G.size(-2) > G.size(-1)
    if tall:
        X = X.mT
    for p in schedule.steps:
        c = p.coefficients
        if len(c) == 1:
            X = r(c[0] * X)
            continue
        A = r(X @ X.mT)
        B = r(c[1] * A)
        P = A
        for cj in c[2:]:
            P = r(P @ A)
            B = r(B + r(cj * P))
        X = r(r(c[0] * X) + r(B @ X))
    if tall:
        X = X.mT
    return X


def _bare(
    schedule: Schedule, shape: BenchShape, dtype: torch.dtype, device: torch.device
) -> Callable[[], Any]:
    """The standard form's matrix products alone, on preallocated operands and outputs."""
    s, t = min(shape.m, shape.n), max(shape.m, shape.n)
    lead = (shape.batch,) if shape.batch else ()
    gen = torch.Generator().manual_seed(0)
    X = (torch.randn(*lead, s, t, generator=gen) / math.sqrt(s * t)).to(device, dtype)
    A = X @ X.mT
    outA, outB, outX = torch.empty_like(A), torch.empty_like(A), torch.empty_like(X)
    counts = [len(p.coefficients) - 1 for p in schedule.steps]
    mm = torch.bmm if shape.batch else torch.mm  # matmul(out=) has per-call overhead on small CPU matrices

    def run() -> None:
        for l in counts:  # noqa: E741
            if l < 1:
                continue
            mm(X, X.mT, out=outA)
            for _ in range(l - 1):
                mm(A, A, out=outB)
            mm(A, X, out=outX)

    return run


def _svd_polar(G: torch.Tensor) -> torch.Tensor:
    U, _, Vh = torch.linalg.svd(G, full_matrices=False)
    return U @ Vh


def _peer(
    schedule: Schedule,
) -> tuple[Callable[[torch.dtype], Callable[[torch.Tensor], torch.Tensor]] | None, str]:
    """The ``gram-newton-schulz`` package's torch path with the schedule's coefficients, as a function of the
    dtype it computes in, or a reason.

    The package always casts to float16.  For a bfloat16 row the benchmark runs the package's own functions
    with that one cast changed: their code is unchanged, but the name ``torch`` they look up resolves to a view
    of torch whose ``float16`` is ``bfloat16`` (nothing of the package is copied)."""
    try:
        from gram_newton_schulz import GramNewtonSchulz
    except ImportError:
        return None, "peer not measured: gram-newton-schulz is not installed"
    if any(len(p.coefficients) != 3 for p in schedule.steps):
        return None, "peer not measured: it runs quintic steps only"
    if schedule.normalization.norm != "frobenius":
        return None, "peer not measured: it normalizes by the Frobenius norm only"
    restarts = list(schedule.restarts) or [2]
    peer = GramNewtonSchulz(
        ns_epsilon=schedule.normalization.eps,
        ns_use_kernels=False,
        ns_coefficients=[[float(c) for c in p.coefficients] for p in schedule.steps],
        gram_newton_schulz_reset_iterations=restarts,
        compile_kwargs=None,
    )

    def in_dtype(dtype: torch.dtype) -> Callable[[torch.Tensor], torch.Tensor]:
        if dtype == torch.float16:
            return peer
        view = _TorchWithHalfAs(dtype)
        moved = copy.copy(peer)
        for attr in ("_gram_torch", "_standard_torch"):
            fn = getattr(peer, attr)
            setattr(moved, attr, types.FunctionType(fn.__code__, {**fn.__globals__, "torch": view}, fn.__name__,
                                                    fn.__defaults__, fn.__closure__))  # fmt: skip
        return moved

    note = f"peer: torch path, the row's dtype (float16 as published), restarts after steps {restarts}"
    if schedule.normalization.scale != 1.0:
        note += (
            f" (it normalizes without the schedule's scale {schedule.normalization.scale}: its error is "
            "taken against the float64 run with scale 1)"
        )
    return in_dtype, note


class _TorchWithHalfAs:
    """torch, except that ``float16`` names another dtype (the peer's cast, changed for a bfloat16 row)."""

    def __init__(self, dtype: torch.dtype):
        self._dtype = dtype

    def __getattr__(self, name: str) -> Any:
        return self._dtype if name == "float16" else getattr(torch, name)


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
    torch.mm(X, X, out=out)
    best = min(_time(lambda: torch.mm(X, X, out=out), device) for _ in range(3))
    return 2 * size**3 / max(best, 1e-9)


def run_benchmark(
    shapes: Sequence[str | BenchShape] = DEFAULT_SHAPES,
    dtypes: Sequence[str | torch.dtype] = ("bf16", "fp16", "fp32"),
    schedule: Schedule | str = "muon",
    repeats: int = 5,
    *,
    warmup: int = 1,
    device: torch.device | str | None = None,
    svd: bool = True,
    svd_max: int = 2048,
    case_budget_s: float = 60.0,
    reference: bool = True,
    errors: bool = True,
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Time the default ``orthogonalize`` against its own paths, the plain loops, bare matmuls, the SVD and
    the Gram peer; one row per (shape, dtype) with every time, ratio and rounding error (``COLUMNS``).

    Args:
        shapes: ``"MxN"`` / ``"BxMxN"`` strings or ``BenchShape``.
        dtypes: ``"bf16"``, ``"fp16"``, ``"fp32"``, ... or torch dtypes.
        schedule: registry name, path or ``Schedule``.
        repeats: timed calls per variant (median reported); reduced for a case whose predicted time
            exceeds ``case_budget_s`` (at least 1), and a variant is skipped with a note when one call of
            it is predicted to exceed the budget.
        warmup: untimed calls per variant first.
        device: defaults to CUDA when available, else CPU.
        svd, svd_max: time the SVD polar factor only when ``batch m n min(m, n) <= svd_max^3``.
        reference: time the plain loops too.
        errors: compute every variant's rounding error (one untimed call each, plus the float64 run).
        progress: called with a one-line message per case (e.g. ``print``).
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
    dts = [torch_dtype(d) for d in dtypes]
    peer, peer_note = _peer(sched)
    rates: dict[torch.dtype, float] = {}
    rows = []
    for shape in parsed:
        lead = (shape.batch,) if shape.batch else ()
        G = torch.randn(*lead, shape.m, shape.n, generator=torch.Generator().manual_seed(0)).to(dev)
        exact = orthogonalize(G.double(), sched, dtype=torch.float64, method="standard") if errors else None
        for dtype in dts:
            rows.append(
                _case(shape, G, exact, dtype, sched, dev, rates, repeats, warmup, svd, svd_max,
                      case_budget_s, reference, peer, peer_note)
            )  # fmt: skip
            if progress is not None:
                r = rows[-1]
                progress(
                    f"{shape} {short_name(dtype)}: ours {_fmt(r['ours_ms'])} ms ({r['plan']}), "
                    f"x plain {_fmt(r['speedup_vs_reference'])}, "
                    f"x plain emulated {_fmt(r['speedup_vs_plain_emulated'])}"
                )
    return rows


def _case(
    shape: BenchShape,
    G: torch.Tensor,
    exact: torch.Tensor | None,
    dtype: torch.dtype,
    sched: Schedule,
    dev: torch.device,
    rates: dict[torch.dtype, float],
    repeats: int,
    warmup: int,
    svd: bool,
    svd_max: int,
    case_budget_s: float,
    reference: bool,
    peer: Callable[[torch.Tensor], torch.Tensor] | None,
    peer_note: str,
) -> dict[str, Any]:
    dname = short_name(dtype)
    plan = evaluation_plan(G.shape, sched, dtype=dtype, device=dev)
    emulated = plan.kernel.emulated
    gemm_dtype = torch.float32 if emulated else dtype
    for d in {gemm_dtype, dtype, torch.float16, torch.float32}:
        if d not in rates:
            rates[d] = _probe_rate(d, dev)
    flops = schedule_flops(sched, shape.m, shape.n, shape.count)
    block = plan.kernel.symmetric_block or None
    row: dict[str, Any] = dict.fromkeys(COLUMNS)
    row.update(
        shape=str(shape),
        dtype=dname,
        kernel=plan.kernel.label,
        plan=plan.label,
        schedule=sched.name,
        steps=len(sched),
        gflop=flops / 1e9,
        gflop_ours=method_flops(
            sched, shape.m, shape.n, batch=shape.count, method=plan.method, restarts=plan.restarts,
            symmetric_block=block,
        ) / 1e9,
        device=device_name(dev),
        torch=torch.__version__,
        threads=torch.get_num_threads(),
    )  # fmt: skip
    notes = []
    sym_block = plan.kernel.symmetric_block or True

    def ours(
        method: str = "auto", symmetric: bool | int | None = None, **kw: Any
    ) -> Callable[[], torch.Tensor]:
        return lambda: orthogonalize(G, sched, dtype=dtype, method=method, symmetric=symmetric, **kw)

    variants: dict[str, Callable[[], Any]] = {
        "ours": ours(),
        "standard_full": ours("standard", False),
        "standard_sym": ours("standard", sym_block),
        "gram_full": ours("gram", False),
        "gram_sym": ours("gram", sym_block),
        "bare": _bare(sched, shape, gemm_dtype, dev),
    }
    x_side = torch.float32 if emulated and dtype in (torch.bfloat16, torch.float16) else dtype
    if x_side != torch_dtype(
        default_gram_dtype(dtype, plan.kernel.gemm, dev)
    ):  # R, Q in the X side's precision
        variants["gram_low"] = ours("gram", False, gram_dtype=x_side, restarts=sched.restarts)
    rate = rates[gemm_dtype]
    predicted: dict[str, float | None] = {k: flops / rate for k in variants}
    if reference:
        variants["reference"] = lambda: reference_loop(G, sched, dtype)
        predicted["reference"] = flops / rates[dtype]
        if dtype in (torch.bfloat16, torch.float16):
            variants["plain_emulated"] = lambda: reference_loop(G, sched, dtype, emulate=True)
            predicted["plain_emulated"] = flops / rates[torch.float32]
    if peer is not None and dtype in (torch.float16, torch.bfloat16):
        variants["peer"] = lambda: peer(dtype)(G)
        predicted["peer"] = method_flops(sched, shape.m, shape.n, batch=shape.count, method="gram",
                                         restarts=list(sched.restarts) or [2]) / rates[dtype]  # fmt: skip
        notes.append(peer_note)
    elif peer is None and dtype in (torch.float16, torch.bfloat16):
        notes.append(peer_note)
    svd_cost = shape.count * shape.m * shape.n * min(shape.m, shape.n)  # SVD flops ~ C m n min(m, n)
    if svd and svd_cost <= svd_max**3:
        variants["svd"] = lambda: _svd_polar(G.to(torch.float32))
        predicted["svd"] = None
    elif svd:
        notes.append(f"svd not measured (batch m n min(m, n) > {svd_max}^3)")
    for name in list(variants):
        p = predicted[name]
        if p is not None and p * (warmup + 1) > case_budget_s:
            notes.append(f"{name} not measured: predicted {p:.3g} s per call")
            del variants[name]
    known = [p for k, p in predicted.items() if k in variants and p is not None]
    per_round = sum(known) if known else 0.0
    reps = repeats
    if per_round > 0:
        reps = max(1, min(repeats, int(case_budget_s / per_round) - (warmup if per_round < 5.0 else 0)))
    times: dict[str, list[float]] = {k: [] for k in variants}
    outputs: dict[str, Any] = {}
    for name, fn in variants.items():  # a call predicted to take seconds needs no warm-up
        for _ in range(warmup if per_round < 5.0 else 0):
            outputs[name] = fn()
    svd_cap = max(1, reps // 2)  # SVD is slow and only needed to an order of magnitude
    order = random.Random(0)
    for _ in range(reps):  # shuffled each round: no variant always runs right after the SVD (whose MKL
        names = list(variants)  # threads keep spinning for a while) or the peer
        order.shuffle(names)
        for name in names:
            if name == "svd" and len(times["svd"]) >= svd_cap:
                continue
            times[name].append(_time(variants[name], dev))
    med = {k: statistics.median(v) for k, v in times.items() if v}
    for k, v in times.items():
        if v:
            row[f"{k}_ms"] = 1e3 * med[k]
            row[f"{k}_min_ms"] = 1e3 * min(v)
    if exact is not None:
        for name in _ERRORS:
            if name in variants:
                out = outputs.get(name)
                ref = exact
                if name == "peer" and sched.normalization.scale != 1.0:  # the peer's own function
                    unscaled = replace(sched, normalization=replace(sched.normalization, scale=1.0))
                    ref = orthogonalize(G.double(), unscaled, dtype=torch.float64, method="standard")
                row[f"{name}_err"] = rounding_error(out if out is not None else variants[name](), ref)
    if "ours" in med:
        row["ours_tflops"] = flops / med["ours"] / 1e12
        for other, col in (
            ("bare", "ratio_to_bare"),
            ("reference", "speedup_vs_reference"),
            ("plain_emulated", "speedup_vs_plain_emulated"),
            ("peer", "speedup_vs_peer"),
            ("svd", "speedup_vs_svd"),
        ):
            if other in med:
                row[col] = med[other] / med["ours"]
        plain = [med[k] for k in ("reference", "plain_emulated") if k in med]
        if plain:
            row["speedup_vs_plain_best"] = min(plain) / med["ours"]
        # the fastest own path among the admissible ones: rounding error within the accuracy gate's
        # tolerance of the standard form's (every own path when errors are not computed)
        std_err = row.get("standard_full_err")
        own = {
            k: med[k]
            for k in _OWN
            if k in med
            and (std_err is None or (row.get(f"{k}_err") or 0.0) <= GRAM_TOLERANCE * max(std_err, 1e-300))
        }
        if own:
            best = min(own, key=own.get)
            row["ours_vs_best_own"] = own[best] / med["ours"]
            row["best_own"] = best
    if "bare" in med:
        row["bare_tflops"] = flops / med["bare"] / 1e12
    row["repeats"] = reps
    row["load_1min"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    row["note"] = "; ".join(notes)
    return row


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """Two fixed-width tables (times and ratios; rounding errors), plans and notes underneath."""
    timing = [
        ("shape", "shape"),
        ("dtype", "dtype"),
        ("ours_ms", "ours ms"),
        ("ratio_to_bare", "vs bare"),
        ("speedup_vs_reference", "x plain"),
        ("speedup_vs_plain_emulated", "x plain emu"),
        ("speedup_vs_peer", "x peer"),
        ("speedup_vs_svd", "x svd"),
        ("speedup_vs_plain_best", "x best plain"),
        ("ours_vs_best_own", "vs best own"),
        ("best_own", "best own"),
        ("standard_full_ms", "std ms"),
        ("standard_sym_ms", "std sym ms"),
        ("gram_full_ms", "gram ms"),
        ("gram_sym_ms", "gram sym ms"),
        ("gram_low_ms", "gram low ms"),
        ("reference_ms", "plain ms"),
        ("plain_emulated_ms", "plain emu ms"),
        ("peer_ms", "peer ms"),
        ("svd_ms", "svd ms"),
        ("repeats", "reps"),
    ]
    errs = [("shape", "shape"), ("dtype", "dtype"), *((f"{v}_err", f"err {v}") for v in _ERRORS)]
    lines = [
        _grid(rows, timing),
        "",
        "rounding error (2-norm distance to the float64 run):",
        _grid(rows, errs),
    ]
    if rows:
        load = max((r["load_1min"] for r in rows if r.get("load_1min") is not None), default=None)
        lines.append(
            f"device: {rows[0]['device']}; torch {rows[0]['torch']}; schedule {rows[0]['schedule']}; "
            f"max 1-min load average {_fmt(load)}"
        )
        for r in rows:
            lines.append(f"{r['shape']} {r['dtype']}: ours = {r['plan']}")
            if r.get("note"):
                lines.append(f"{r['shape']} {r['dtype']}: {r['note']}")
    return "\n".join(lines)


def _grid(rows: Sequence[dict[str, Any]], cols: Sequence[tuple[str, str]]) -> str:
    cells = [[h for _, h in cols]] + [[_fmt(r.get(k)) for k, _ in cols] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(cols))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)) for line in cells]
    if rows:
        lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write_csv(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Write rows (``COLUMNS``) atomically; floats with ``repr`` precision."""
    cells = ({k: ("" if r.get(k) is None else r.get(k)) for k in COLUMNS} for r in rows)
    return atomic_write_csv(path, COLUMNS, cells, parents=True)
