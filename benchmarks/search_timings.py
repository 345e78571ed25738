"""Timings of every coefficient-search objective (issue: "report timings of every objective").

    python benchmarks/search_timings.py [--repeats 3] [--out benchmarks/results/search_timings_cpu.csv]

Each objective runs with the parameters the README and the search-results experiment use; the fast ones
are timed ``--repeats`` times (best kept), the long ones once.  The ratio column divides by the 10-step
minimax time measured in the same process, so runs on different machines compare by ratio.  The target
"a 10-step minimax schedule in under 0.1 s" is printed, never asserted.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from nsiter._io import atomic_write_csv, check_writable
from nsiter.kernels import device_name
from nsiter.search import search

CASES = [  # (label, objective, parameters, timed repeatedly)
    ("minimax, 10 quintic steps", "minimax", {"lo": 1e-3, "steps": 10, "degree": 5}, True),
    ("minimax, 8 steps of degree 9", "minimax", {"lo": 1e-3, "steps": 8, "degree": 9}, True),
    ("max-slope (Jordan, delta 0.3)", "max-slope", {"delta": 0.3}, False),
    (
        "band (CANS, delta 0.99, 5 steps)",
        "band",
        {"delta": 0.99, "band_steps": 1, "degree": 5, "steps": 5},
        True,
    ),
    ("budget, 15 matmuls", "budget", {"budget": 15}, False),
    ("budget, 21 matmuls", "budget", {"budget": 21, "cushion": 0.02, "safety": 1.01}, False),
    (
        "budget, 21 matmuls, precision-aware bf16",
        "budget",
        {"budget": 21, "cushion": 0.02, "safety": 1.01, "dtype": "bfloat16"},
        False,
    ),
    ("calibrate, 5 steps (8 factors x 24 runs)", "calibrate", {"steps": 5, "cushion": 0.02}, False),
    ("gradient, scalar, 300 iterations", "gradient", {"steps": 5, "iters": 300}, False),
    (
        "gradient, mean under max_error, 1500 iterations",
        "gradient",
        {"steps": 5, "worst_weight": 0.0, "max_error": 0.1533, "iters": 1500, "lr": 3e-3, "points": 4096},
        False,
    ),
    (
        "gradient, matrix mode 64x64 bf16, 30 iterations",
        "gradient",
        {"steps": 5, "iters": 30, "matrix": True},
        False,
    ),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="benchmarks/results/search_timings_cpu.csv")
    args = ap.parse_args()
    try:
        check_writable(args.out, parents=True)  # before the timings, not after
    except ValueError as err:
        ap.error(str(err))
    device = device_name("cpu")
    rows = []
    for label, objective, params, repeat in CASES:
        best = float("inf")
        for _ in range(args.repeats if repeat else 1):
            t0 = time.perf_counter()
            search(objective, **params)
            best = min(best, time.perf_counter() - t0)
        rows.append({"objective": label, "seconds": best})
        print(f"{label:52s} {best:9.4f} s", flush=True)
    base = rows[0]["seconds"]
    load = os.getloadavg()[0]
    for r in rows:
        r |= {
            "ratio_to_minimax10": r["seconds"] / base,
            "device": device,
            "torch": torch.__version__,
            "load_1min": load,
        }
    print(f"10-step minimax: {base:.4f} s (target < 0.1 s) on {device}; 1-minute load {load:.2f}")
    out = atomic_write_csv(args.out, list(rows[0]), rows, parents=True)
    print(f"-> {out}")


if __name__ == "__main__":
    main()
