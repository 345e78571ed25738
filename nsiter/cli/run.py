"""``nsiter run``: run a schedule on a seeded test matrix and print what it does, step by step."""

from __future__ import annotations

import argparse

from nsiter._io import check_writable
from nsiter.cli import (
    bounded_int,
    check_memory,
    emit_json,
    matrix_shape,
    positive_int,
    seed,
)
from nsiter.schedule import MAX_STEPS

DTYPES = ("bf16", "fp16", "fp32", "fp64")
# float64 copies of an m x n matrix that `nsiter run` holds at once, per matrix of the batch: the generated
# input and its singular factors, the working iterate and its float64 copy, the SVD of every step and the
# Gram matrix of the orthogonality error.  Measured peak resident memory above the interpreter's, fp64,
# 3 steps: 13.7 copies at 1024x1024, 14.9 at 2048x1024 (2-core AVX2 CPU); 16 is a slight over-estimate.
RUN_BUFFERS = 16


def run_bytes(m: int, n: int, batch: int | None) -> int:
    """Estimated peak memory of ``nsiter run`` on ``batch`` matrices of shape ``m x n`` (float64 buffers)."""
    return (batch or 1) * m * n * 8 * RUN_BUFFERS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="run a schedule on a seeded test matrix and print the per-step table",
        description="Run SCHEDULE (registry name or JSON file) on a seeded matrix with a prescribed spectrum "
        "and print, per step, the extreme singular values, rho = 1 - lambda_min, ||XX^T - I|| and the "
        "distance to the exact polar factor.  The memory the run needs (about "
        f"{RUN_BUFFERS} float64 copies of each matrix) is checked against half the available memory "
        "before anything is allocated.",
    )
    p.add_argument("schedule", metavar="SCHEDULE", help="registry name or path to a schedule JSON file")
    p.add_argument("--shape", type=matrix_shape, default="512x256", help="MxN")
    p.add_argument(
        "--spectrum",
        default="logunif:1e-3",
        help="logunif:LO, unif:LO, cluster:C1,C2[:SPREAD], rank:R[:LO], grad, hilbert, measured[:CSV]",
    )
    p.add_argument("--dtype", choices=DTYPES, default="bf16", help="working precision")
    p.add_argument("--seed", type=seed, default=0, help="matrix seed, 0 <= seed < 2**63")
    p.add_argument(
        "--batch", type=positive_int, default=None, help="run a batch of B matrices (default: one matrix)"
    )
    p.add_argument(
        "--steps",
        type=bounded_int(1, MAX_STEPS),
        default=None,
        help="override the number of steps (default: the schedule's; the last step repeats beyond it)",
    )
    p.add_argument(
        "--norm",
        choices=("frobenius", "spectral", "aol"),
        default=None,
        help="override the normalization (default: the schedule's)",
    )
    p.add_argument("--out", default=None, help="write the tidy per-step records to this CSV file")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    m, n = args.shape
    what = f"{args.batch} matrices" if args.batch else "one matrix"
    check_memory(run_bytes(m, n, args.batch), f"a run on {what} of shape {m}x{n}")
    if args.out:
        check_writable(args.out)  # before torch loads and the matrix is built

    from nsiter.matrices import spectrum_spec
    from nsiter.records import trajectory
    from nsiter.registry import load_schedule

    spec = spectrum_spec(args.spectrum)
    schedule = load_schedule(args.schedule)  # a bad name or file fails before the matrix is built
    if args.steps is not None:
        schedule = schedule.truncated(args.steps)
    G = spec.generate(m, n, args.seed, batch=args.batch)  # float64; normalized before the cast to --dtype
    tr = trajectory(G, schedule, dtype=args.dtype, norm=args.norm)
    if args.out:
        tr.to_csv(args.out)
    matrices = sorted({r["matrix"] for r in tr.rows})
    if args.json:
        emit_json(
            {
                "schedule": tr.schedule,
                "dtype": tr.dtype,
                "shape": list(tr.shape),
                "spectrum": args.spectrum,
                "seed": args.seed,
                "diverged": tr.diverged,
                "message": tr.message,
                "steps": {
                    str(i): [{k: v for k, v in r.items() if k != "matrix"} for r in tr.matrix_rows(i)]
                    for i in matrices
                },
            }
        )
        return 0
    cols = [
        ("step", "step"),
        ("sigma_min", "sigma_min"),
        ("sigma_max", "sigma_max"),
        ("rho", "rho"),
        ("orth_err_2", "|XX^T-I|_2"),
        ("orth_err_fro", "|XX^T-I|_F"),
        ("polar_err_2", "|X-UV^T|_2"),
    ]
    print(
        f"{tr.schedule} on {'x'.join(map(str, tr.shape))} {args.spectrum} (seed {args.seed}), "
        f"{tr.dtype}, {len(tr.matrix_rows(0)) - 1} steps"
    )
    for i in matrices:
        if len(matrices) > 1:
            print(f"matrix {i}")
        print("  ".join(f"{h:>11}" for _, h in cols))
        for row in tr.matrix_rows(i):
            print("  ".join(f"{row['step']:>11d}" if k == "step" else f"{row[k]:>11.4e}" for k, _ in cols))
    if tr.diverged:
        print(f"diverged: {tr.message}")
    if args.out:
        print(f"wrote {args.out}")
    return 0
