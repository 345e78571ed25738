"""``nsiter analyze SCHEDULE --lo LO``: certified per-step bands and worst-case errors."""

from __future__ import annotations

import argparse

from nsiter.cli import emit_json, finite_float, positive_float, positive_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "analyze",
        help="certified singular-value bands of a schedule on [lo, hi]",
        description="Map the interval [lo, hi] of normalized singular values through every step of SCHEDULE "
        "with interval arithmetic (endpoints and critical points at 50 digits, rounded outward): the "
        "certified band after each step, its worst-case error max|1 - phi_k|, the slope at zero and, for a "
        "repeated step, its fixed points, cycles and attracting band.",
    )
    p.add_argument("schedule", help="registry name or path to a schedule JSON file")
    p.add_argument(
        "--lo", type=positive_float, required=True, help="smallest normalized singular value, 0 < lo <= hi"
    )
    p.add_argument("--hi", type=finite_float, default=1.0, help="largest normalized singular value")
    p.add_argument(
        "--steps",
        type=positive_int,
        default=None,
        help="number of steps, at most nsiter.schedule.MAX_STEPS (default: the schedule's; the last step "
        "repeats beyond it)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nsiter.analysis import analyze, attractor
    from nsiter.registry import load_schedule

    schedule = load_schedule(args.schedule)
    result = analyze(schedule, args.lo, args.hi, steps=args.steps)
    out = result.to_dict()
    repeated = len(set(schedule.steps)) == 1
    att = None
    if repeated and not result.diverged:
        try:
            att = attractor(schedule[0], args.lo, args.hi)
        except ValueError as err:
            out["attractor_error"] = str(err)
        else:
            out["attractor"] = att.to_dict()
    if args.json:
        emit_json(out)
        return 0
    print(f"{schedule.name}: certified bands on [{args.lo:g}, {args.hi:g}]  ({schedule.provenance.source})")
    print(f"{'step':>4}  {'lo':>22}  {'hi':>22}  {'max|1-phi|':>12}  {'phi_k(0)':>10}  monotone")
    for s in result.steps:
        print(
            f"{s.step:>4}  {s.lo:>22.17g}  {s.hi:>22.17g}  {s.error:>12.4e}  {s.slope_at_zero:>10.4g}  "
            f"{'yes' if s.monotone else 'no'}"
        )
    if result.diverged:
        print(f"DIVERGES: {result.message}")
    if att is not None:
        fps = ", ".join(f"{f.x:.10g} ({f.stability}, p'={f.multiplier:.4g})" for f in att.fixed_points)
        print(f"fixed points: {fps}")
        print(
            f"attractor: {att.kind}, band [{att.band[0]:.12g}, {att.band[1]:.12g}] "
            f"(error floor {att.error:.4g}) after {att.iterations} iterations"
        )
        for orbit, mult, stab in att.cycles:
            print(f"  cycle {tuple(round(v, 10) for v in orbit)}: multiplier {mult:.4g} ({stab})")
    return 0
