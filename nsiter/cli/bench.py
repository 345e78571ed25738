"""``nsiter bench``: the evaluator against its own paths, the plain loops, bare matmuls, the SVD and the peer."""

from __future__ import annotations

import argparse
import os

from nsiter._io import check_writable
from nsiter.cli import CliError, bounded_float, bounded_int, check_memory, echo, emit_json
from nsiter.cli.run import run_bytes

MAX_THREADS = 4 * (os.cpu_count() or 1)  # 100000 made libgomp fail to create threads and crash

MAX_CASE_SECONDS = 86400.0  # --budget: one day per case
MAX_REPEATS = 10000  # --repeats
MAX_SVD = 65536  # --svd-max
MAX_CASES = 64  # shapes x dtypes: with --budget, what bounds the whole run


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="benchmark orthogonalize against its paths, the plain loop, bare matmuls, SVD and the Gram peer",
        description="Times nsiter.orthogonalize (median after warm-up, interleaved) on each shape and dtype "
        "with each method (standard, gram; full or symmetric products), the plain loop (native and "
        "emulated), the same matmuls alone, the SVD polar factor and the gram-newton-schulz package when "
        "installed; states every variant's rounding error and prints the table; with --out, also writes it as "
        "CSV (nothing is written without --out).",
    )
    p.add_argument("--schedule", default="muon", help="registry name or schedule file (default muon)")
    p.add_argument(
        "--shapes",
        default=None,
        help="comma-separated MxN or BxMxN (default: 1024x1024,1024x4096,512x4096,8x256x1024)",
    )
    p.add_argument("--dtypes", default="bf16,fp16,fp32", help="comma-separated: bf16, fp16, fp32, fp64")
    p.add_argument(
        "--repeats",
        type=bounded_int(1, MAX_REPEATS),
        default=5,
        help=f"timed calls per variant (median), at most {MAX_REPEATS}",
    )
    p.add_argument(
        "--budget",
        type=bounded_float(0.0, MAX_CASE_SECONDS),
        default=60.0,
        help=f"seconds allowed per case, at most {MAX_CASE_SECONDS:g} (default 60)",
    )
    p.add_argument(
        "--svd-max",
        type=bounded_int(0, MAX_SVD),
        default=2048,
        help=f"skip the SVD when it costs more than an N x N one, N in 0..{MAX_SVD} (default 2048)",
    )
    p.add_argument("--no-reference", action="store_true", help="do not time the plain reference loops")
    p.add_argument("--no-errors", action="store_true", help="skip the rounding errors (no float64 run)")
    p.add_argument(
        "--threads",
        type=bounded_int(1, MAX_THREADS),
        default=None,
        help=f"torch CPU threads, 1..{MAX_THREADS} (4x this machine's CPUs) (default: torch's choice)",
    )
    p.add_argument("--quick", action="store_true", help="small shapes, 3 repeats (a sanity check)")
    p.add_argument(
        "--out",
        default=None,
        help="also write the rows to this CSV file (missing folders are created); checked before running",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    out = None if args.out is None else check_writable(args.out, parents=True)  # before torch loads (seconds)
    import torch

    from nsiter.bench import (
        DEFAULT_SHAPES,
        QUICK_SHAPES,
        format_table,
        parse_shape,
        run_benchmark,
        write_csv,
    )
    from nsiter.dtypes import dtype_name

    if args.shapes is not None:
        shapes = [parse_shape(s) for s in args.shapes.split(",") if s.strip()]
        if not shapes:
            raise CliError(f"--shapes needs at least one MxN or BxMxN, got {echo(args.shapes)}")
    else:
        shapes = [parse_shape(s) for s in (QUICK_SHAPES if args.quick else DEFAULT_SHAPES)]
    dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    if not dtypes:
        raise CliError(f"--dtypes needs at least one of bf16, fp16, fp32, fp64, got {echo(args.dtypes)}")
    for d in dtypes:
        dtype_name(d)  # bad names fail here, before any work
    if len(shapes) * len(dtypes) > MAX_CASES:
        raise CliError(
            f"{len(shapes)} shapes x {len(dtypes)} dtypes make {len(shapes) * len(dtypes)} cases, above the "
            f"limit MAX_CASES = {MAX_CASES}"
        )
    for s in shapes:  # the benchmark holds about as many float64 copies of a case as a run: before any work
        check_memory(run_bytes(s.m, s.n, s.batch), f"a benchmark case of shape {s}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    repeats = min(args.repeats, 3) if args.quick else args.repeats
    progress = None if args.json else (lambda msg: print(msg, flush=True))
    rows = run_benchmark(
        shapes,
        dtypes,
        args.schedule,
        repeats,
        svd_max=args.svd_max,
        case_budget_s=args.budget,
        reference=not args.no_reference,
        errors=not args.no_errors,
        progress=progress,
    )
    if out is not None:
        write_csv(rows, out)
    if args.json:
        emit_json({"csv": None if out is None else str(out), "rows": rows})
    else:
        print(format_table(rows))
        if out is not None:
            print(f"wrote {out}")
    return 0
