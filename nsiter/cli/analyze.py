"""``nsiter analyze SCHEDULE [--lo LO] [--tol T]``: certified per-step bands, errors, cycles, step counts."""

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
        "--lo", type=positive_float, default=1e-3, help="smallest normalized singular value, 0 < lo <= hi"
    )
    p.add_argument("--hi", type=finite_float, default=1.0, help="largest normalized singular value")
    p.add_argument(
        "--steps",
        type=positive_int,
        default=None,
        help="number of steps, at most nsiter.schedule.MAX_STEPS (default: the schedule's; the last step "
        "repeats beyond it)",
    )
    p.add_argument(
        "--tol",
        default=None,
        help="also print how many steps (repeating the last) bring the certified error to <= TOL "
        "(accepts values below doubles, e.g. 1e-400)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def _cycle_line(c) -> str:
    pts = ", ".join(f"{v:.10g}" for v in c.points)
    lo_m, hi_m = c.multiplier_enclosure
    proof = f"proved by {c.proof}" if c.proof else "NOT proved"
    share = f"; {c.share:.0%} of starts" if c.share == c.share else ""
    return (
        f"  {c.stability} cycle of period {c.period}: ({pts}), multiplier {c.multiplier:.6g} "
        f"in [{lo_m:.17g}, {hi_m:.17g}] ({proof}, {1e3 * c.seconds:.1f} ms{share})"
    )


def _print_attractor(att, title: str) -> None:
    fps = ", ".join(f"{f.x:.10g} ({f.stability}, p'={f.multiplier:.4g})" for f in att.fixed_points)
    print(
        f"{title}: {att.kind}, band [{att.band[0]:.12g}, {att.band[1]:.12g}] (max |1 - y| on it {att.error:.4g}) "
        f"after {att.iterations} iterations, {att.seconds:.2f} s"
    )
    print(f"  fixed points: {fps}")
    if not att.attracting_cycles:
        print("  no orbit from the starts settled into a cycle of period <= 256")
    for c in att.cycles:
        print(_cycle_line(c))


def run(args: argparse.Namespace) -> int:
    from nsiter.analysis import analyze, decimal_up, steps_to
    from nsiter.registry import load_schedule

    schedule = load_schedule(args.schedule)
    result = analyze(schedule, args.lo, args.hi, steps=args.steps, repeated=True)
    out = result.to_dict()
    if args.tol is not None:
        k = steps_to(schedule, args.lo, args.tol, args.hi)
        out["steps_to"] = {"tol": args.tol, "steps": k}
    repeated = len(set(schedule.steps)) == 1
    att = result.attractor
    if args.json:
        emit_json(out)
        return 0
    print(f"{schedule.name}: certified bands on [{args.lo:g}, {args.hi:g}]  ({schedule.provenance.source})")
    slope = "phi_k'(0)"  # the slope of the composed map at 0
    print(f"{'step':>4}  {'lo':>22}  {'hi':>22}  {'max|1-phi|':>14}  {slope:>10}  monotone")
    for s in result.bands:
        print(
            f"{s.step:>4}  {s.lo:>22.17g}  {s.hi:>22.17g}  {decimal_up(s.error_mp, 5):>14}  "
            f"{s.slope_at_zero:>10.4g}  {'yes' if s.monotone else 'no'}"
        )
    if result.diverged:
        print(f"DIVERGES: {result.message}")
    if args.tol is not None:
        k = out["steps_to"]["steps"]
        reached = (
            f"{k} steps" if k is not None else "not reached (within the step limit, or the bands diverge)"
        )
        print(f"steps to certified error <= {args.tol}: {reached}")
    if att is not None:
        _print_attractor(att, "attractor" if repeated else "repeating the last step forever")
    return 0
