"""``nsiter bench``: time the evaluator against bare matmuls, the plain loop and the SVD."""

from __future__ import annotations

import argparse
from pathlib import Path

from nsiter.cli import emit_json, positive_float, positive_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="benchmark orthogonalize against bare matmuls, the plain loop and SVD",
        description="Times nsiter.orthogonalize (median after warm-up) on each shape and dtype, with the "
        "same matmuls alone, the plain reference loop and the SVD polar factor; writes a CSV under "
        "benchmarks/results/ and prints the table.",
    )
    p.add_argument("--schedule", default="muon", help="registry name or schedule file (default muon)")
    p.add_argument(
        "--shapes", default=None, help="comma-separated MxN or BxMxN (default: 1024x1024,...,16x512x512)"
    )
    p.add_argument("--dtypes", default="bf16,fp32", help="comma-separated: bf16, fp16, fp32, fp64")
    p.add_argument("--repeats", type=positive_int, default=5, help="timed calls per variant (median)")
    p.add_argument(
        "--budget", type=positive_float, default=60.0, help="seconds allowed per case (default 60)"
    )
    p.add_argument(
        "--svd-max",
        type=int,
        default=2048,
        help="skip the SVD when it costs more than an N x N one (default 2048)",
    )
    p.add_argument("--no-reference", action="store_true", help="do not time the plain reference loop")
    p.add_argument(
        "--threads", type=positive_int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    p.add_argument("--quick", action="store_true", help="small shapes, 3 repeats (a sanity check)")
    p.add_argument(
        "--out", default=None, help="CSV path (default benchmarks/results/bench_<device>[_quick].csv)"
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from nsiter.bench import DEFAULT_SHAPES, QUICK_SHAPES, format_table, parse_shape, run_benchmark, write_csv

    if args.shapes:
        shapes = [parse_shape(s) for s in args.shapes.split(",") if s.strip()]
    else:
        shapes = [parse_shape(s) for s in (QUICK_SHAPES if args.quick else DEFAULT_SHAPES)]
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
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
        progress=progress,
    )
    device = "cuda" if torch.cuda.is_available() else "cpu"
    out = (
        Path(args.out)
        if args.out
        else Path("benchmarks/results") / f"bench_{device}{'_quick' if args.quick else ''}.csv"
    )
    write_csv(rows, out)
    if args.json:
        emit_json({"csv": str(out), "rows": rows})
    else:
        print(format_table(rows))
        print(f"wrote {out}")
    return 0
