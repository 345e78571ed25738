"""``nsiter schedules``: the registry of published schedules with their sources."""

from __future__ import annotations

import argparse

from nsiter.cli import emit_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "schedules",
        help="list registry schedules with their sources",
        description="List the published schedules shipped with nsiter (nsiter/registry/data): steps, "
        "degrees, matrix products, slope at zero, normalization and the paper or repository each comes from.",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nsiter.registry import available_schedules, load_schedule

    rows = []
    for name in available_schedules():
        s = load_schedule(name)
        rows.append(
            {
                "name": s.name,
                "steps": len(s),
                "degrees": sorted({p.degree for p in s}),
                "matmuls": s.matmuls,
                "slope_at_zero": s.slope_at_zero,
                "normalization": s.normalization.to_dict(),
                "kind": s.provenance.kind,
                "source": s.provenance.source,
                "reference": s.provenance.reference,
            }
        )
    if args.json:
        emit_json(rows)
        return 0
    width = max(len(r["name"]) for r in rows)
    print(f"{'name':<{width}}  steps  matmuls  source")
    for r in rows:
        print(f"{r['name']:<{width}}  {r['steps']:>5}  {r['matmuls']:>7}  {r['source']}")
        if r["reference"]:
            print(f"{'':<{width}}  {'':>5}  {'':>7}  {r['reference']}")
    return 0
