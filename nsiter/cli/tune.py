"""``nsiter tune``: measure the kernel decisions ahead of time (native or emulated GEMM, symmetric blocks), and
with ``--shapes`` the plans of those shapes (method, R/Q precision, restarts: :mod:`nsiter.plan`)."""

from __future__ import annotations

import argparse
import os
import stat
import time
from pathlib import Path

from nsiter.checks import short_repr
from nsiter.cli import CliError, emit_json

SIZES = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096)  # the size classes a decision is made for


def _sizes(text: str) -> list[int]:
    out = []
    for part in text.split(","):
        part = part.strip()
        if part not in {str(s) for s in SIZES}:
            raise argparse.ArgumentTypeError(
                f"size classes are {','.join(map(str, SIZES))}, got {part[:30]!r}"
            )
        out.append(int(part))
    return out


def _check_cache(path: Path) -> None:
    """Refuse a kernel cache that is not a regular file (a FIFO or device is never read, so decisions stored
    there are lost) or that the write would refuse (a folder, a read-only or ``/proc`` folder, a long name)."""
    from nsiter._io import check_writable

    where = f"NSITER_KERNEL_CACHE={short_repr(str(path), 200)}"
    try:
        kind = os.stat(path).st_mode
    except FileNotFoundError:
        kind = None
    except OSError as err:  # a link loop, a name over the limit
        raise CliError(f"{where}: {os.strerror(err.errno).lower()}") from None
    if kind is not None and not stat.S_ISREG(kind):
        raise CliError(f"{where} is not a regular file: the decisions could not be stored there")
    try:
        check_writable(path, parents=True)
    except ValueError as err:
        raise CliError(f"{where}: {getattr(err, 'strerror', None) or err}") from None


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tune",
        help="measure the kernel decisions (native/emulated GEMM, symmetric blocks) into the kernel cache",
        description="Runs the noise-robust kernel probe (nsiter.kernels: interleaved medians, close calls "
        "measured again, scalar native GEMMs detected at size 256) for each dtype and size class and "
        "stores the decisions in the kernel cache (NSITER_KERNEL_CACHE); --verify measures every stored "
        "entry of this machine again and replaces those that differ.  Prints each decision and the time "
        "taken.  Run it on a quiet machine: a loaded one makes slow decisions.",
    )
    p.add_argument("--dtypes", default="bf16,fp16,fp32", help="comma-separated: bf16, fp16, fp32")
    p.add_argument(
        "--sizes",
        type=_sizes,
        default=list(SIZES[:-1]),
        help="comma-separated size classes (default 16..2048)",
    )
    p.add_argument("--verify", action="store_true", help="measure the stored entries again instead")
    p.add_argument(
        "--shapes",
        default="",
        help="also plan these MxN or BxMxN shapes (comma-separated) for --schedule: the accuracy gate and the "
        "timed choice among the admitted plans, stored beside the kernel cache (plans.json)",
    )
    p.add_argument(
        "--schedule", default="muon", help="registry name or schedule file for --shapes (default muon)"
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nsiter.bench import parse_shape
    from nsiter.dtypes import dtype_name
    from nsiter.evaluate import evaluation_plan, resolve_schedule
    from nsiter.kernels import cache_path, clear_cache, kernel_choice, tuning_enabled, verify_cache

    if not tuning_enabled():
        raise CliError("NSITER_TUNE is off: decisions come from the rule table, nothing to measure")
    dtypes = [dtype_name(d) for d in args.dtypes.split(",") if d.strip()]  # bad names fail before work
    shapes = [parse_shape(s) for s in args.shapes.split(",") if s.strip()]  # ValueError: exit 2, before work
    sched = resolve_schedule(args.schedule) if shapes else None
    if any(d == "float64" for d in dtypes):
        raise CliError("float64 has no decision to tune (always native): use bf16, fp16, fp32")
    path = cache_path()
    if path is not None:  # the decisions are the product: a cache that cannot take them is refused first
        _check_cache(path)
    t0 = time.perf_counter()
    if args.verify:
        rows = verify_cache()
    else:
        clear_cache()  # measure afresh what the file does not hold; keep what it does
        rows = []
        for d in dtypes:
            for cls in args.sizes:
                c = kernel_choice("cpu", d, cls)
                rows.append({"dtype": d, "size_class": cls, "decision": c.label, "source": c.source})
        for shape in shapes:
            for d in dtypes:
                lead = (shape.batch,) if shape.batch else ()
                p = evaluation_plan((*lead, shape.m, shape.n), sched, dtype=d)
                rows.append({"dtype": d, "shape": str(shape), "plan": p.label, "source": p.source})
    seconds = time.perf_counter() - t0
    if args.json:
        emit_json({"cache": str(path) if path else None, "seconds": seconds, "rows": rows})
        return 0
    for r in rows:
        print("  ".join(f"{k}={v}" for k, v in r.items()))
    print(f"tuned in {seconds:.1f} s; cache: {path if path else 'off (this process only)'}")
    return 0
