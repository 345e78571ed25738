"""``nsiter run``: run a schedule on a seeded test matrix and print what it does, step by step."""

from __future__ import annotations

import argparse

from nsiter.cli import CliError, emit_json, nonnegative_int, positive_int

DTYPES = ("bf16", "fp16", "fp32", "fp64")


def _shape(text: str) -> tuple[int, int]:
    parts = text.lower().split("x")
    try:
        m, n = (int(p) for p in parts)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"shape must be MxN with positive integers, got {text!r}") from err
    if m < 1 or n < 1:
        raise argparse.ArgumentTypeError(f"shape must be MxN with positive integers, got {text!r}")
    return m, n


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="run a schedule on a seeded test matrix and print the per-step table",
        description="Run SCHEDULE (registry name or JSON file) on a seeded matrix with a prescribed spectrum "
        "and print, per step, the extreme singular values, rho = 1 - lambda_min, ||XX^T - I|| and the "
        "distance to the exact polar factor.",
    )
    p.add_argument("schedule", metavar="SCHEDULE", help="registry name or path to a schedule JSON file")
    p.add_argument("--shape", type=_shape, default=(512, 256), help="MxN (default 512x256)")
    p.add_argument(
        "--spectrum",
        default="logunif:1e-3",
        help="logunif:LO, unif:LO, cluster:C1,C2[:SPREAD], rank:R[:LO], grad, hilbert (default logunif:1e-3)",
    )
    p.add_argument("--dtype", choices=DTYPES, default="bf16", help="working precision (default bf16)")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="matrix seed (default 0)")
    p.add_argument("--batch", type=positive_int, default=None, help="run a batch of B matrices")
    p.add_argument("--steps", type=positive_int, default=None, help="override the number of steps")
    p.add_argument(
        "--norm", choices=("frobenius", "spectral", "aol"), default=None, help="override the normalization"
    )
    p.add_argument("--out", default=None, help="write the tidy per-step records to this CSV file")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:

    from nsiter.matrices import spectrum_spec
    from nsiter.records import trajectory

    spec = spectrum_spec(args.spectrum)
    m, n = args.shape
    G = spec.generate(m, n, args.seed, batch=args.batch)  # float64; normalized before the cast to --dtype
    tr = trajectory(G, args.schedule, dtype=args.dtype, steps=args.steps, norm=args.norm)
    if args.out:
        try:
            tr.to_csv(args.out)
        except OSError as err:
            raise CliError(f"cannot write {args.out!r}: {err.strerror}") from err
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
                "steps": {str(i): tr.wide(i) for i in matrices},
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
        f"{tr.dtype}, {len(tr.wide(0)) - 1} steps"
    )
    for i in matrices:
        if len(matrices) > 1:
            print(f"matrix {i}")
        print("  ".join(f"{h:>11}" for _, h in cols))
        for row in tr.wide(i):
            print("  ".join(f"{row['step']:>11d}" if k == "step" else f"{row[k]:>11.4e}" for k, _ in cols))
    if tr.diverged:
        print(f"diverged: {tr.message}")
    if args.out:
        print(f"wrote {args.out}")
    return 0
