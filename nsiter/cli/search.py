"""``nsiter search OBJECTIVE ... --out schedule.json``: coefficient search with interchangeable objectives.

    nsiter search minimax --lo 1e-3 --steps 5 --out pe5.json
    nsiter search max-slope --delta 0.3 --out jordan.json --json
    nsiter search band --delta 0.99 --band-steps 1 --steps 5 --out cans5.json
    nsiter search budget --budget 15 --degrees 3,5,7 --out b15.json
    nsiter search budget --budget 9 --shape 1024x4096 --dtype bf16 --out g9.json   (Gram form, restarts counted)
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

from nsiter._io import check_writable
from nsiter.cli import (
    CliError,
    bounded_int,
    check_device,
    check_memory,
    echo,
    emit_json,
    finite_float,
    matrix_shape,
    nonnegative_float,
    nonnegative_int,
    positive_float,
    seed,
    seed_list,
)
from nsiter.search.budget import MAX_PREFIXES
from nsiter.search.calibrate import CRITERIA

# Limits on the inputs that size a search, checked before it starts.  Published schedules have at most
# 10 steps and degree 7; a minimax step of degree 63 takes ~0.02 s.
MAX_SEARCH_STEPS = 64
MAX_SEARCH_DEGREE = 63
MAX_ITERS = 100_000  # gradient: Adam iterations (scalar mode ~1 ms each)
MAX_BUDGET = 1000  # budget: matrix products (standard form) or MxN products (--shape)
MAX_BUDGET_STEPS = 16  # budget: longest degree sequence
MAX_RESTARTS = 4  # budget --shape: restarts per sequence (placements grow as steps^restarts)
MAX_MATRIX_SIZE = 4096  # calibrate / gradient / budget measurements: n x n matrices
MAX_FACTORS = 256  # calibrate: candidate safety factors
MEASURE_BUFFERS = 16  # float64 n x n copies a measurement holds (matrix, SVD factors, references, iterate)


def _ints(text: str) -> list[int]:
    try:
        vals = [int(v) for v in text.split(",") if v.strip()] if len(text) <= 200 else None
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {echo(text)}") from err
    if not vals:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers (at most 200 characters), got {echo(text)}"
        )
    return vals


def _degrees(text: str) -> list[int]:
    vals = _ints(text)
    bad = [d for d in vals if not (3 <= d <= MAX_SEARCH_DEGREE and d % 2 == 1)]
    if bad:
        raise argparse.ArgumentTypeError(
            f"degrees must be odd integers in 3..{MAX_SEARCH_DEGREE}, got {echo(text)}"
        )
    return vals


def _sizes(text: str) -> list[int]:
    vals = _ints(text)
    if any(not 1 <= n <= MAX_MATRIX_SIZE for n in vals):
        raise argparse.ArgumentTypeError(
            f"matrix sizes must be integers in 1..{MAX_MATRIX_SIZE}, got {echo(text)}"
        )
    return vals


def _floats(text: str) -> list[float]:
    try:
        vals = [float(v) for v in text.split(",") if v.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {echo(text)}") from err
    if not vals or not all(math.isfinite(v) for v in vals):
        raise argparse.ArgumentTypeError(f"expected finite numbers, got {echo(text)}")
    if len(vals) > MAX_FACTORS:
        raise argparse.ArgumentTypeError(f"{len(vals)} values exceed the limit of {MAX_FACTORS}")
    return vals


_steps = bounded_int(1, MAX_SEARCH_STEPS)
_degree = bounded_int(3, MAX_SEARCH_DEGREE)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--out", required=True, help="where to write the schedule JSON (checked before the search)"
    )
    p.add_argument("--name", default=None, help="schedule name (default: derived from the objective)")
    p.add_argument("--json", action="store_true", help="print the diagnostics as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def _objective(objs: argparse._SubParsersAction, name: str, summary: str) -> argparse.ArgumentParser:
    return objs.add_parser(name, help=summary, description=summary[0].upper() + summary[1:] + ".")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "search",
        help="search coefficients (minimax, max-slope, band, budget, calibrate, gradient) or restarts",
        description="Search with one of seven objectives: six coefficient searches (minimax, max-slope, band, "
        "budget, calibrate, gradient) that write a schedule file whose provenance records the objective, its "
        "parameters and the result metrics, and restarts, which places the Gram form's restarts for an "
        "existing schedule.  `nsiter search OBJECTIVE --help` lists each objective's options.",
    )
    objs = p.add_subparsers(dest="objective", metavar="OBJECTIVE", parser_class=type(p))
    objs.required = True

    q = _objective(
        objs, "minimax", "greedy per-step minimax (the Polar Express construction, Amsel et al. 2025)"
    )
    q.add_argument("--lo", type=positive_float, default=1e-3, help="left end of the singular-value interval")
    q.add_argument("--hi", type=positive_float, default=1.0, help="right end of the interval")
    q.add_argument("--steps", type=_steps, default=8, help=f"number of steps, 1..{MAX_SEARCH_STEPS}")
    q.add_argument("--degree", type=_degrees, default="5", help="odd degree, or one per step: 5 or 3,5,5")
    q.add_argument(
        "--cushion", type=finite_float, default=0.0, help="relative floor on lo (Polar Express 0.024)"
    )
    q.add_argument(
        "--safety", type=positive_float, default=1.0, help="safety factor p(x/s), all but last step"
    )
    q.add_argument("--safety-last", action="store_true", help="apply the safety factor to the last step too")
    q.add_argument(
        "--interval",
        choices=("exact", "symmetric"),
        default="exact",
        help="how each step's interval is propagated",
    )
    _common(q)

    q = _objective(
        objs, "max-slope", "Jordan's objective: max p'(0) with the attracting band inside 1 +- delta"
    )
    q.add_argument("--delta", type=positive_float, default=0.3, help="half-width of the band around 1")
    q.add_argument("--degree", type=_degree, default=5, help=f"odd degree, 3..{MAX_SEARCH_DEGREE}")
    q.add_argument("--escape", type=finite_float, default=1e-3, help="start of the escape from 0")
    q.add_argument("--steps", type=_steps, default=5, help=f"number of steps, 1..{MAX_SEARCH_STEPS}")
    q.add_argument("--lo", type=positive_float, default=1e-3, help="interval of the reported errors")
    _common(q)

    q = _objective(objs, "band", "CANS delta-orthogonalization: the widest [lo*, hi] mapped into 1 +- delta")
    q.add_argument("--delta", type=positive_float, default=0.3, help="half-width of the target band around 1")
    q.add_argument(
        "--band-steps",
        type=_steps,
        default=1,
        help=f"steps that map [lo*, hi] into the band, 1..{MAX_SEARCH_STEPS}",
    )
    q.add_argument("--degree", type=_degree, default=5, help=f"odd degree, 3..{MAX_SEARCH_DEGREE}")
    q.add_argument("--steps", type=_steps, default=None, help="total steps (default: --band-steps)")
    q.add_argument("--hi", type=positive_float, default=1.0, help="right end of the interval")
    q.add_argument(
        "--lo", type=positive_float, default=None, help="require this left end (error if infeasible)"
    )
    _common(q)

    q = _objective(objs, "budget", "best greedy schedule within a matmul budget, mixing degrees")
    q.add_argument(
        "--budget",
        type=positive_float,
        required=True,
        help=f"matrix products allowed (an integer, at most {MAX_BUDGET}); with --shape, MxN products",
    )
    q.add_argument("--lo", type=positive_float, default=1e-3, help="left end of the interval")
    q.add_argument("--hi", type=positive_float, default=1.0, help="right end of the interval")
    q.add_argument("--degrees", type=_degrees, default="3,5,7", help="odd step degrees to mix")
    q.add_argument("--cushion", type=finite_float, default=0.0, help="relative floor on lo")
    q.add_argument("--safety", type=positive_float, default=1.0, help="safety factor of the inner steps")
    q.add_argument("--exact-budget", action="store_true", help="only sequences costing exactly --budget")
    q.add_argument(
        "--max-steps",
        type=bounded_int(1, MAX_BUDGET_STEPS),
        default=12,
        help=f"longest degree sequence, 1..{MAX_BUDGET_STEPS}; with --budget, at most {MAX_PREFIXES} "
        "sequence prefixes may be explored",
    )
    q.add_argument(
        "--dtype",
        default=None,
        help="precision-aware: among sequences estimated below --floor, keep the most accurate measured in "
        "this dtype (default: estimated error only)",
    )
    q.add_argument(
        "--floor",
        type=positive_float,
        default=None,
        help="estimated error below which rounding decides (default: the dtype's unit roundoff)",
    )
    q.add_argument(
        "--sizes",
        type=_sizes,
        default=None,
        help=f"matrix sizes of the measurement, each 1..{MAX_MATRIX_SIZE} (default: 64,128)",
    )
    q.add_argument(
        "--seeds", type=seed_list, default=None, help="seeds of the measurement (default: 100-131)"
    )
    q.add_argument(
        "--shape",
        type=matrix_shape,
        default=None,
        help="MxN (M <= N): cost the sequences in the Gram form on this shape, each with the restarts its "
        "rounding needs in --dtype (default bf16), in units of MxN products",
    )
    q.add_argument(
        "--max-restarts",
        type=bounded_int(0, MAX_RESTARTS),
        default=None,
        help=f"with --shape: restarts per sequence, 0..{MAX_RESTARTS} (default 2)",
    )
    q.add_argument(
        "--restart-tolerance",
        type=positive_float,
        default=None,
        help="with --shape: rounding error allowed, times the standard form's (default 2)",
    )
    _common(q)

    q = _objective(objs, "calibrate", "safety factor from measured low-precision runs")
    q.add_argument("--steps", type=_steps, default=5, help=f"number of steps, 1..{MAX_SEARCH_STEPS}")
    q.add_argument("--degree", type=_degree, default=5, help=f"odd degree, 3..{MAX_SEARCH_DEGREE}")
    q.add_argument("--lo", type=positive_float, default=1e-3, help="left end of the interval")
    q.add_argument("--hi", type=positive_float, default=1.0, help="right end of the interval")
    q.add_argument("--cushion", type=finite_float, default=0.0, help="relative floor on lo")
    q.add_argument(
        "--factors",
        type=_floats,
        default=None,
        help=f"candidate safety factors, comma-separated, at most {MAX_FACTORS} (default: the library's grid)",
    )
    q.add_argument(
        "--size",
        type=_sizes,
        default="32,64,128",
        help=f"matrix sizes, comma-separated, each 1..{MAX_MATRIX_SIZE}",
    )
    q.add_argument("--seeds", type=seed_list, default="0,1,2,3,4,5,6,7", help="matrix seeds, comma-separated")
    q.add_argument("--dtype", default="bfloat16", help="precision of the measured runs")
    q.add_argument("--device", default="cpu", help="torch device of the measured runs: cpu or cuda[:INDEX]")
    q.add_argument(
        "--criterion",
        default="mean_max_direction_error",
        choices=CRITERIA,
        help="the measured error to minimize",
    )
    _common(q)

    q = _objective(objs, "gradient", "Adam on the composed error over a spectrum (torch autograd)")
    q.add_argument("--steps", type=_steps, default=5, help=f"number of steps, 1..{MAX_SEARCH_STEPS}")
    q.add_argument("--degree", type=_degree, default=5, help=f"odd degree, 3..{MAX_SEARCH_DEGREE}")
    q.add_argument("--lo", type=positive_float, default=1e-3, help="left end of the interval")
    q.add_argument("--hi", type=positive_float, default=1.0, help="right end of the interval")
    q.add_argument(
        "--iters", type=bounded_int(1, MAX_ITERS), default=300, help=f"Adam iterations, 1..{MAX_ITERS}"
    )
    q.add_argument("--lr", type=positive_float, default=1e-4, help="Adam learning rate")
    q.add_argument(
        "--worst-weight", type=finite_float, default=0.5, help="weight of the worst error in the loss"
    )
    q.add_argument(
        "--max-error", type=positive_float, default=None, help="constrain the worst error (scalar mode)"
    )
    q.add_argument("--safety", type=positive_float, default=1.01, help="safety factor of the result")
    q.add_argument("--matrix", action="store_true", help="loss measured on matrices in --dtype")
    q.add_argument(
        "--size",
        type=bounded_int(1, MAX_MATRIX_SIZE),
        default=64,
        help=f"matrix size (--matrix), 1..{MAX_MATRIX_SIZE}",
    )
    q.add_argument("--dtype", default="bfloat16", help="precision of the matrix mode")
    q.add_argument("--seed", type=seed, default=0, help="matrix seed (--matrix), 0 <= seed < 2**63")
    _common(q)

    q = objs.add_parser(
        "restarts",
        help="Gram-form restart placement from the rounding model (nsiter.restarts)",
        description="Predict, for every placement of at most --max-restarts restarts, the rounding error of "
        "SCHEDULE's Gram form in --dtype (a rounding model evaluated in mpmath, fitted to measured fp16/bf16 "
        "runs: an estimate, not a certificate) and print the most accurate placement and the cheapest one "
        "within --restart-tolerance times the standard form's error.  Each restart costs two m x n products.",
    )
    q.add_argument("schedule", help="registry name or schedule file")
    q.add_argument("--dtype", default="float16", help="working dtype (fp16, bf16, ...)")
    q.add_argument("--gram-dtype", default=None, help="dtype of R and Q (default: --dtype)")
    q.add_argument("--max-restarts", type=nonnegative_int, default=2, help="at most this many restarts")
    q.add_argument(
        "--lo",
        type=nonnegative_float,
        default=0.0,
        help="smallest singular value (default 0: exact zeros and every small direction, as method=auto "
        "decides)",
    )
    q.add_argument("--hi", type=positive_float, default=1.0, help="largest normalized singular value")
    q.add_argument(
        "--restart-tolerance",
        type=positive_float,
        default=2.0,
        help="allowed factor of the modelled error over the standard form's (default 2)",
    )
    q.add_argument("--out", default=None, help="write the schedule with the most accurate placement here")
    q.add_argument("--json", action="store_true", help="print the result (every placement) as JSON")
    q.set_defaults(func=run_restarts)

    p.set_defaults(func=run)


def _check_work(args: argparse.Namespace) -> None:
    """Limits that need several arguments together, checked before the search (and its progress bar)."""
    check_writable(args.out)
    if args.objective == "budget":
        if args.budget > MAX_BUDGET:
            raise CliError(f"--budget must be at most {MAX_BUDGET}, got {args.budget:g}")
        if args.shape is None:  # the library checks the rest (an integer budget, the shape, the tolerance)
            if args.budget == int(args.budget):
                args.budget = int(args.budget)
            for flag in ("max_restarts", "restart_tolerance"):
                if getattr(args, flag) is not None:
                    raise CliError(f"--{flag.replace('_', '-')} applies with --shape only")
    sizes = {"calibrate": args.__dict__.get("size"), "gradient": None, "budget": args.__dict__.get("sizes")}
    if args.objective == "gradient" and args.matrix:
        sizes["gradient"] = [args.size]
    biggest = max(sizes.get(args.objective) or [0])
    if biggest:
        check_memory(MEASURE_BUFFERS * 8 * biggest**2, f"a measurement on {biggest}x{biggest} matrices")
    if args.objective == "calibrate":
        check_device(args.device)


def run_restarts(args: argparse.Namespace) -> int:
    """``nsiter search restarts``: print (or ``--json``) the placements the rounding model prefers."""
    from nsiter import load_schedule
    from nsiter.restarts import describe, gram_restarts

    sched = load_schedule(args.schedule)
    if args.out is not None:
        check_writable(args.out)
    res = gram_restarts(
        sched,
        dtype=args.dtype,
        gram_dtype=args.gram_dtype,
        max_restarts=args.max_restarts,
        lo=args.lo,
        hi=args.hi,
        restart_tolerance=args.restart_tolerance,
    )
    if args.out is not None:
        sched.with_restarts(res.best.restarts).save(args.out)
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

    _check_work(args)
    params = _params(args)
    bars: list[Any] = []  # the progress bar opens at the first report, after the library checked its input
    if args.objective in ("budget", "calibrate", "gradient") and not args.no_progress:
        total = {"gradient": params.get("iters"), "calibrate": None, "budget": None}[args.objective]
        last = [0]

        def progress(n: int) -> None:
            if not bars:
                from tqdm import tqdm

                bars.append(tqdm(total=total, desc=f"search {args.objective}", file=sys.stderr, leave=False))
            bars[0].update(n - last[0])
            last[0] = n

        params["progress"] = progress
    try:
        schedule, diag = search(args.objective, **params)
    finally:
        for bar in bars:
            bar.close()
    prov = schedule.provenance
    stored = {**prov.parameters, "objective": args.objective, "metrics": _scalars(diag.metrics)}
    schedule = replace(schedule, provenance=replace(prov, parameters=stored))
    schedule.save(args.out)
    if args.json:
        emit_json({"schedule": schedule.to_dict(), "diagnostics": diag.to_dict(), "out": args.out})
        return 0
    m = diag.metrics
    print(f"{schedule.name}: {len(schedule)} steps, {schedule.matmuls} matmuls, objective {args.objective}")
    for key in (
        "final_error",
        "slope_at_zero",
        "lo_star",
        "band_lo",
        "band_hi",
        "attractor",
        "safety",
        "sequence",
        "restarts",
        "cost",
    ):
        if key in m:
            print(f"  {key}: {m[key]}")
    for i, p in enumerate(schedule.steps, start=1):
        print(f"  step {i}: {', '.join(repr(c) for c in p.coefficients)}")
    print(f"  {diag.seconds:.3f} s -> {args.out}")
    return 0
