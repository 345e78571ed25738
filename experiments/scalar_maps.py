"""Scalar maps: a schedule's composed maps phi_k(x) on normalized singular values, certified bands shaded.

For each schedule, ``phi_k = p_k o ... o p_1`` is sampled on a log grid (for drawing only) and the
certified image ``phi_k([lo, hi])`` of the input interval comes from ``nsiter.analysis.analyze``
(endpoints and critical points, no grid).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python experiments/NAME.py`: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from nsiter import load_schedule
from nsiter.analysis import analyze

NAME = "scalar_maps"
PARAMS = {
    "schedules": ["muon", "polar-express-5", "quintic"],
    "steps": 5,
    "shown": [1, 5],  # the maps drawn: phi_1 = p_1 and the final phi_T
    "lo": 1e-3,
    "hi": 1.0,
    "points": 1500,
}
QUICK = {"schedules": ["muon"], "points": 40}
MACHINE_DEPENDENT = False  # float64 samples of polynomials and certified bands: no measurement


def compute(ctx) -> dict:
    p = ctx.params
    xs = np.geomspace(p["lo"] / 10, p["hi"] * 1.05, p["points"])
    curves, bands = [], []
    for name in p["schedules"]:
        sched = load_schedule(name).truncated(p["steps"])
        for k in p["shown"]:
            ys = sched.apply(xs, k)
            curves += [
                {"schedule": name, "step": k, "x": float(a), "y": float(b)}
                for a, b in zip(xs, ys, strict=True)
            ]
        for band in analyze(sched, p["lo"], p["hi"]).bands[1:]:
            bands.append(
                {"schedule": name, "step": band.step, "lo": band.lo, "hi": band.hi, "error": band.error}
            )
        ctx.progress(f"{name}: {p['steps']} steps")
    return {"curves": curves, "bands": bands}


def plot(tables, ctx):
    import matplotlib.pyplot as plt

    from nsiter.plot import scalar_map, use_style

    use_style()
    names = list(dict.fromkeys(r["schedule"] for r in tables["curves"]))
    fig, axes = plt.subplots(
        1, len(names), figsize=(4.2 * len(names), 3.4), layout="constrained", squeeze=False
    )
    for ax, name in zip(axes[0], names, strict=True):
        curves = [r for r in tables["curves"] if r["schedule"] == name]
        bands = [r for r in tables["bands"] if r["schedule"] == name and r["step"] in ctx.params["shown"]]
        scalar_map(curves, bands, ax, interval=(ctx.params["lo"], ctx.params["hi"]), logx=True)
        ax.set_title(name)
        ax.set_ylim(-0.05, 1.45)
    return fig


def numbers(tables) -> dict:
    last = max(r["step"] for r in tables["bands"])
    muon = next(r for r in tables["bands"] if r["schedule"] == "muon" and r["step"] == last)
    return {"scalarMuonBandLo": muon["lo"], "scalarMuonBandHi": muon["hi"], "scalarSteps": last}


if __name__ == "__main__":
    from experiments.__main__ import main

    sys.exit(main([NAME, *sys.argv[1:]]))
