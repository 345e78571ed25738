"""``nsiter search OBJECTIVE ... --out schedule.json``: coefficient search with interchangeable objectives.

    nsiter search minimax --lo 1e-3 --steps 5 --out pe5.json
    nsiter search max-slope --delta 0.3 --out jordan.json --json
    nsiter search band --delta 0.99 --band-steps 1 --steps 5 --out cans5.json
    nsiter search budget --budget 15 --degrees 3,5,7 --out b15.json
    nsiter search calibrate --steps 5 --dtype bfloat16 --out cal5.json
    nsiter search gradient --steps 5 --iters 300 --out grad5.json
    nsiter search restarts polar-express --dtype fp16 --max-restarts 2 --json

The output file is a schedule (``restarts`` writes none unless ``--out`` is given) (usable by name/path in ``nsiter analyze`` / ``nsiter run``) whose
provenance carries the objective, its parameters and the result metrics.  Long searches show a tqdm
progress bar on stderr.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import replace
from typing import Any

from nsiter.cli import CliError, emit_json, finite_float, nonnegative_int, positive_float, positive_int
from nsiter.search.calibrate import CRITERIA


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from err


def _floats(text: str) -> list[float]:
    try:
        vals = [float(v) for v in text.split(",") if v.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from err
    if not vals or not all(math.isfinite(v) for v in vals):
        raise argparse.ArgumentTypeError(f"expected finite numbers, got {text!r}")
    return vals


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="where to write the schedule JSON")
    p.add_argument("--name", default=None, help="schedule name (default: derived from the objective)")
    p.add_argument("--json", action="store_true", help="print the diagnostics as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "search", help="search coefficients (minimax, max-slope, band, budget, calibrate, gradient)"
    )
    objs = p.add_subparsers(dest="objective", metavar="OBJECTIVE", parser_class=type(p))
    objs.required = True

    q = objs.add_parser("minimax", help="greedy per-step minimax (Polar Express construction)")
    q.add_argument("--lo", type=positive_float, default=1e-3)
    q.add_argument("--hi", type=positive_float, default=1.0)
    q.add_argument("--steps", type=positive_int, default=8)
    q.add_argument("--degree", type=_ints, default=[5], help="odd degree, or one per step: 5 or 3,5,5")
    q.add_argument(
        "--cushion", type=finite_float, default=0.0, help="relative floor on lo (Polar Express 0.024)"
    )
    q.add_argument(
        "--safety", type=positive_float, default=1.0, help="safety factor p(x/s), all but last step"
    )
    q.add_argument("--safety-last", action="store_true", help="apply the safety factor to the last step too")
    q.add_argument("--interval", choices=("exact", "symmetric"), default="exact")
    _common(q)

    q = objs.add_parser("max-slope", help="Jordan's objective: max p'(0) with the band inside 1 +- delta")
    q.add_argument("--delta", type=positive_float, default=0.3)
    q.add_argument("--degree", type=positive_int, default=5)
    q.add_argument("--escape", type=finite_float, default=1e-3)
    q.add_argument("--steps", type=positive_int, default=5)
    q.add_argument("--lo", type=positive_float, default=1e-3)
    _common(q)

    q = objs.add_parser("band", help="CANS delta-orthogonalization: widest [lo*, hi] into 1 +- delta")
    q.add_argument("--delta", type=positive_float, default=0.3)
    q.add_argument("--band-steps", type=positive_int, default=1)
    q.add_argument("--degree", type=positive_int, default=5)
    q.add_argument("--steps", type=positive_int, default=None)
    q.add_argument("--hi", type=positive_float, default=1.0)
    q.add_argument(
        "--lo", type=positive_float, default=None, help="require this left end (error if infeasible)"
    )
    _common(q)

    q = objs.add_parser("budget", help="best greedy schedule within a matmul budget, mixing degrees")
    q.add_argument("--budget", type=positive_int, required=True, help="matrix products allowed")
    q.add_argument("--lo", type=positive_float, default=1e-3)
    q.add_argument("--hi", type=positive_float, default=1.0)
    q.add_argument("--degrees", type=_ints, default=[3, 5, 7])
    q.add_argument("--cushion", type=finite_float, default=0.0)
    q.add_argument("--safety", type=positive_float, default=1.0)
    q.add_argument("--exact-budget", action="store_true")
    q.add_argument("--max-steps", type=positive_int, default=12)
    q.add_argument(
        "--dtype",
        default=None,
        help="precision-aware: among sequences certified below --floor, keep the most accurate measured in this dtype",
    )
    q.add_argument("--floor", type=positive_float, default=None, help="default: the dtype's unit roundoff")
    q.add_argument(
        "--sizes", type=_ints, default=None, help="matrix sizes of the measurement (default 64,128)"
    )
    q.add_argument("--seeds", type=_ints, default=None, help="seeds of the measurement (default 100-131)")
    _common(q)

    q = objs.add_parser("calibrate", help="safety factor from measured low-precision runs")
    q.add_argument("--steps", type=positive_int, default=5)
    q.add_argument("--degree", type=positive_int, default=5)
    q.add_argument("--lo", type=positive_float, default=1e-3)
    q.add_argument("--hi", type=positive_float, default=1.0)
    q.add_argument("--cushion", type=finite_float, default=0.0)
    q.add_argument("--factors", type=_floats, default=None, help="candidate safety factors, comma-separated")
    q.add_argument("--size", type=_ints, default=[32, 64, 128], help="matrix sizes, comma-separated")
    q.add_argument("--seeds", type=_ints, default=list(range(8)))
    q.add_argument("--dtype", default="bfloat16")
    q.add_argument("--device", default="cpu")
    q.add_argument(
        "--criterion",
        default="mean_max_direction_error",
        choices=CRITERIA,
    )
    _common(q)

    q = objs.add_parser("gradient", help="Adam on the composed error over a spectrum (torch)")
    q.add_argument("--steps", type=positive_int, default=5)
    q.add_argument("--degree", type=positive_int, default=5)
    q.add_argument("--lo", type=positive_float, default=1e-3)
    q.add_argument("--hi", type=positive_float, default=1.0)
    q.add_argument("--iters", type=positive_int, default=300)
    q.add_argument("--lr", type=positive_float, default=1e-4)
    q.add_argument("--worst-weight", type=finite_float, default=0.5)
    q.add_argument(
        "--max-error", type=positive_float, default=None, help="constrain the worst error (scalar mode)"
    )
    q.add_argument("--safety", type=positive_float, default=1.01)
    q.add_argument("--matrix", action="store_true", help="loss measured on matrices in --dtype")
    q.add_argument("--size", type=positive_int, default=64)
    q.add_argument("--dtype", default="bfloat16")
    q.add_argument("--seed", type=int, default=0)
    _common(q)

    q = objs.add_parser(
        "restarts", help="Gram-form restart placement from the rounding model (nsiter.restarts)"
    )
    q.add_argument("schedule", help="registry name or schedule file")
    q.add_argument("--dtype", default="float16", help="working dtype (fp16, bf16, ...)")
    q.add_argument("--gram-dtype", default=None, help="dtype of R and Q (default: --dtype)")
    q.add_argument("--max-restarts", type=nonnegative_int, default=2)
    q.add_argument(
        "--lo", type=_nonnegative_float, default=1e-3, help="smallest singular value (0: rank deficient)"
    )
    q.add_argument("--hi", type=positive_float, default=1.0)
    q.add_argument(
        "--tol", type=positive_float, default=2.0, help="allowed factor over the standard form's error"
    )
    q.add_argument("--out", default=None, help="write the schedule with the most accurate placement here")
    q.add_argument("--json", action="store_true", help="print the result (every placement) as JSON")
    q.set_defaults(func=run_restarts)

    p.set_defaults(func=run)


def _nonnegative_float(text: str) -> float:
    value = finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return value


def run_restarts(args: argparse.Namespace) -> int:
    """``nsiter search restarts``: print (or ``--json``) the placements the rounding model prefers."""
    from nsiter import load_schedule
    from nsiter.restarts import describe, gram_restarts

    sched = load_schedule(args.schedule)
    res = gram_restarts(
        sched,
        dtype=args.dtype,
        gram_dtype=args.gram_dtype,
        max_restarts=args.max_restarts,
        lo=args.lo,
        hi=args.hi,
        tol=args.tol,
    )
    if args.out is not None:
        try:
            sched.with_restarts(res.best.restarts).save(args.out)
        except OSError as err:
            raise CliError(f"cannot write {args.out!r}: {err.strerror}") from err
    if args.json:
        emit_json({**res.to_dict(), "out": args.out})
        return 0
    print(describe(res))
    if args.out is not None:
        print(f"  -> {args.out}")
    return 0


def _params(args: argparse.Namespace) -> dict[str, Any]:
    skip = {"command", "objective", "func", "out", "json", "no_progress"}
    params = {k: v for k, v in vars(args).items() if k not in skip and v is not None}
    if args.objective == "minimax":
        d = params.pop("degree")
        params["degree"] = d[0] if len(d) == 1 else d
    if args.objective == "calibrate":
        params["seeds"] = tuple(params["seeds"])
        params["size"] = tuple(params["size"])
    if args.objective == "budget":  # unset: budget_search's defaults
        for key in ("seeds", "sizes"):
            if key in params:
                params[key] = tuple(params[key])
    return params


def _scalars(metrics: dict[str, Any]) -> dict[str, Any]:
    """The JSON-friendly scalar (and short list) metrics stored in the schedule's provenance."""
    out = {}
    for k, v in metrics.items():
        if isinstance(v, (int, float, str, bool)) or (
            isinstance(v, list) and len(v) <= 16 and k != "loss_curve"
        ):
            out[k] = v
    return out


def run(args: argparse.Namespace) -> int:
    from nsiter.search import search

    params = _params(args)
    bar = None
    if args.objective in ("budget", "calibrate", "gradient") and not args.no_progress:
        from tqdm import tqdm

        total = {"gradient": params.get("iters"), "calibrate": None, "budget": None}[args.objective]
        bar = tqdm(total=total, desc=f"search {args.objective}", file=sys.stderr, leave=False)
        last = [0]

        def progress(n: int) -> None:
            bar.update(n - last[0])
            last[0] = n

        params["progress"] = progress
    try:
        schedule, diag = search(args.objective, **params)
    finally:
        if bar is not None:
            bar.close()
    prov = schedule.provenance
    stored = {**prov.parameters, "objective": args.objective, "metrics": _scalars(diag.metrics)}
    schedule = replace(schedule, provenance=replace(prov, parameters=stored))
    try:
        schedule.save(args.out)
    except OSError as err:
        raise CliError(f"cannot write {args.out!r}: {err.strerror}") from err
    if args.json:
        emit_json({"schedule": schedule.to_dict(), "diagnostics": diag.to_dict(), "out": args.out})
        return 0
    m = diag.metrics
    print(f"{schedule.name}: {len(schedule)} steps, {schedule.matmuls()} matmuls, objective {args.objective}")
    for key in (
        "final_error",
        "slope_at_zero",
        "lo_star",
        "band_lo",
        "band_hi",
        "attractor",
        "safety",
        "sequence",
    ):
        if key in m:
            print(f"  {key}: {m[key]}")
    for i, p in enumerate(schedule.steps, start=1):
        print(f"  step {i}: {', '.join(repr(c) for c in p.coefficients)}")
    print(f"  {diag.seconds:.3f} s -> {args.out}")
    return 0
