"""Training benchmark: AdamW vs Muon with different Newton–Schulz schedules, on two small CPU problems.

Tasks (``experiments.training``, generated from the seed): modular addition mod 23 with a one-block
transformer (full batch), and teacher-student classification with a 3-hidden-layer MLP (batches of 256).
Optimizers: AdamW; Muon with Jordan's coefficients (``muon``), with Polar Express in its 5-step form
(``polar-express-5``, the same 15 matmuls), with the classical quintic Newton–Schulz truncated to the same
5 steps (``quintic@5``, a control whose small singular values converge slowly), and with the best
same-cost schedule of the coefficient search when the registry has one (``nsiter-*``).  Several seeds each.

Learning rates come from a one-seed sweep (AdamW over {1e-3, 3e-3, 1e-2, 3e-2}: 1e-2 best on both tasks;
Muon over {0.01, 0.02, 0.05} with its auxiliary AdamW at 1e-2: 0.02).  Newton–Schulz runs in bfloat16,
as in Muon (at these sizes, <= 192 x 48, bf16 costs the CPU about 1.5x the time of float32).

Outputs: loss curves (``train_muon.csv``), per-run summary (``train_muon.summary.csv``: steps to the
target loss, final loss, held-out loss/accuracy, wall time), and the singular-value spectra of the
momentum matrices Muon orthogonalized (``train_muon.spectra.csv``, readable by
``nsiter.spectra.load_spectra`` / ``measured_interval`` / ``measured_matrix``).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python experiments/NAME.py`: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import statistics

import torch

from experiments.training import train
from nsiter import available_schedules, load_schedule


def _search_arms() -> list[str]:
    """The search's registry winners with Muon's matmul budget (first by name), if any."""
    budget = load_schedule("muon").matmuls()
    found = [n for n in available_schedules() if n.startswith("nsiter-")]
    same = [n for n in found if load_schedule(n).matmuls() == budget]
    return [f"muon:{n}" for n in same[:1]]


NAME = "train_muon"
PARAMS = {
    "optimizers": ["adamw", "muon:muon", "muon:polar-express-5", "muon:quintic@5", *_search_arms()],
    "tasks": {
        "modadd": {"steps": 150, "target": 0.1, "config": {"p": 23, "d": 48, "heads": 4}},
        "teacher": {
            "steps": 200,
            "target": 0.2,
            "config": {"dim": 32, "width": 64, "depth": 3, "batch": 256},
        },
    },
    "seeds": [0, 1, 2, 3, 4],
    "lr": 0.02,
    "adam_lr": 0.01,
    "weight_decay": 0.0,
    "ns_dtype": "bfloat16",
    "threads": 1,
    "spectra_optimizer": "muon:muon",
    "spectra_seed": 0,
    "spectra_steps": [1, 10, 50, 150],
}
QUICK = {
    "optimizers": ["adamw", "muon:muon"],
    "tasks": {
        "modadd": {"steps": 12, "target": 2.38, "config": {"p": 11, "d": 16, "heads": 2}},
        "teacher": {"steps": 12, "target": 2.25, "config": {"dim": 8, "width": 16, "depth": 2, "batch": 32}},
    },
    "seeds": [0],
    "spectra_steps": [1, 10],
}

LABELS = {"adamw": "AdamW", "muon:muon": "Muon (Jordan)", "muon:polar-express-5": "Muon (Polar Express 5)"}


def _label(opt: str) -> str:
    return LABELS.get(opt, "Muon (" + opt.split(":", 1)[-1] + ")")


def _run(ctx, task: str, opt: str, seed: int) -> list[dict]:
    p = ctx.params
    spec = p["tasks"][task]
    record = p["spectra_steps"] if (opt == p["spectra_optimizer"] and seed == p["spectra_seed"]) else ()
    res = train(
        task,
        opt,
        seed=seed,
        steps=spec["steps"],
        lr=p["lr"],
        adam_lr=p["adam_lr"],
        weight_decay=p["weight_decay"],
        config=spec["config"],
        dtype=p["ns_dtype"],
        record_spectra_at=[s for s in record if s <= spec["steps"]],
    )
    final = statistics.fmean(res.losses[-10:])
    rows = [
        {"table": "curves", "task": task, "optimizer": opt, "seed": seed, "step": t, "loss": v}
        for t, v in enumerate(res.losses)
    ]
    rows.append(
        {
            "table": "summary",
            "task": task,
            "optimizer": opt,
            "seed": seed,
            "steps": spec["steps"],
            "target": spec["target"],
            "steps_to_target": res.steps_to(spec["target"]),
            "final_loss": final,
            "val_loss": res.val_loss,
            "val_accuracy": res.val_accuracy,
            "seconds": res.seconds,
            "cpu_seconds": res.cpu_seconds,
        }
    )
    rows += [{"table": "spectra", **r} for r in res.spectra]
    return rows


def compute(ctx) -> dict:
    p = ctx.params
    threads = torch.get_num_threads()
    torch.set_num_threads(p["threads"])
    try:
        rows: list[dict] = []
        for task in p["tasks"]:
            for opt in p["optimizers"]:
                for seed in p["seeds"]:
                    rows += ctx.unit((task, opt, seed), lambda t=task, o=opt, s=seed: _run(ctx, t, o, s))
    finally:
        torch.set_num_threads(threads)
    tables: dict[str, list[dict]] = {"main": [], "summary": [], "spectra": []}
    for r in rows:
        name = r.pop("table")
        tables["main" if name == "curves" else name].append(r)
    return tables


def _summary(rows: list[dict]) -> list[dict]:
    """Per (task, optimizer): median and range over seeds of steps-to-target, final loss and wall time."""
    out = []
    keys = list(dict.fromkeys((r["task"], r["optimizer"]) for r in rows))
    for task, opt in keys:
        runs = [r for r in rows if r["task"] == task and r["optimizer"] == opt]
        reached = [r["steps_to_target"] for r in runs if r["steps_to_target"] is not None]
        finals = [r["final_loss"] for r in runs]
        out.append(
            {
                "task": task,
                "optimizer": opt,
                "seeds": len(runs),
                "reached": len(reached),
                "steps_median": statistics.median(reached) if reached else None,
                "steps_min": min(reached) if reached else None,
                "steps_max": max(reached) if reached else None,
                "final_median": statistics.median(finals),
                "final_min": min(finals),
                "final_max": max(finals),
                "val_acc_median": statistics.median(r["val_accuracy"] for r in runs),
                "seconds_median": statistics.median(r["seconds"] for r in runs),
                "cpu_median": statistics.median(r["cpu_seconds"] for r in runs),
                **_paired(rows, task, opt),
            }
        )
    return out


def _paired(rows: list[dict], task: str, opt: str, base: str = "muon:muon") -> dict:
    """Steps-to-target minus the same seed's with Jordan's coefficients (same init, data and batches)."""
    steps = {
        (r["optimizer"], r["seed"]): r["steps_to_target"]
        for r in rows
        if r["task"] == task and r["optimizer"] in (opt, base)
    }
    diffs = [
        steps[(opt, s)] - steps[(base, s)]
        for (o, s) in steps
        if o == opt and steps.get((base, s)) is not None and steps[(opt, s)] is not None
    ]
    if opt == base or not diffs:
        return {"paired_median": None, "paired_min": None, "paired_max": None}
    return {"paired_median": statistics.median(diffs), "paired_min": min(diffs), "paired_max": max(diffs)}


def plot(tables, ctx):
    import matplotlib.pyplot as plt
    import numpy as np

    from nsiter.plot import use_style

    use_style()
    curves = tables["main"]
    tasks = list(dict.fromkeys(r["task"] for r in curves))
    opts = list(dict.fromkeys(r["optimizer"] for r in curves))
    fig, axes = plt.subplots(
        1, len(tasks), figsize=(4.4 * len(tasks), 3.3), layout="constrained", squeeze=False
    )
    for ax, task in zip(axes[0], tasks, strict=True):
        for opt in opts:
            runs: dict[int, list[float]] = {}
            for r in curves:
                if r["task"] == task and r["optimizer"] == opt:
                    runs.setdefault(r["seed"], []).append(r["loss"])
            if not runs:
                continue
            y = np.array(list(runs.values()))
            steps = np.arange(1, y.shape[1] + 1)
            (line,) = ax.plot(steps, np.median(y, axis=0), label=_label(opt))
            ax.fill_between(steps, y.min(axis=0), y.max(axis=0), color=line.get_color(), alpha=0.2, lw=0)
        target = ctx.params["tasks"][task]["target"]
        ax.axhline(target, color="0.4", ls="--", lw=0.8)
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("training loss")
        ax.set_title(f"{task} (median, min-max over {len(ctx.params['seeds'])} seeds)")
    axes[0][0].legend()
    figs = {"": fig}

    spectra = tables.get("spectra", [])
    if spectra:
        stasks = list(dict.fromkeys(r["task"] for r in spectra))
        fig2, axes2 = plt.subplots(
            1, len(stasks), figsize=(4.4 * len(stasks), 3.3), layout="constrained", squeeze=False
        )
        for ax, task in zip(axes2[0], stasks, strict=True):
            steps = sorted({r["step"] for r in spectra if r["task"] == task})
            for k, step in enumerate(steps):
                mats: dict[str, list[float]] = {}
                for r in spectra:
                    if r["task"] == task and r["step"] == step:
                        mats.setdefault(r["param"], []).append(r["x"])
                for j, xs in enumerate(mats.values()):
                    xs = np.sort(np.array(xs))[::-1]
                    ax.plot(
                        np.arange(1, len(xs) + 1) / len(xs),
                        xs,
                        color=plt.rcParams["axes.prop_cycle"].by_key()["color"][k],
                        lw=0.9,
                        alpha=0.8,
                        label=f"step {step}" if j == 0 else None,
                    )
            ax.set_yscale("log")
            ax.set_xlabel("singular index / min(m, n)")
            ax.set_ylabel(r"$\sigma_i / \|U\|_F$")
            ax.set_title(f"{task}: momentum spectra (one line per matrix)")
            ax.legend()
        figs["spectra"] = fig2
    return figs


_DIGITS = ("Zero", "One", "Two", "Three", "Four", "Five", "Six", "Seven", "Eight", "Nine")


def _macro(text: str) -> str:
    """``"polar-express-5"`` -> ``"PolarExpressFive"`` (LaTeX macro names are letters only)."""
    for d, word in enumerate(_DIGITS):
        text = text.replace(str(d), f" {word} ")
    words = text.replace(":", " ").replace("-", " ").replace("@", " at ").split()
    return "".join(w.capitalize() for w in words if w.isalpha())


def numbers(tables) -> dict:
    from nsiter.spectra import measured_interval

    out: dict[str, object] = {}
    for s in _summary(tables["summary"]):
        stem = "train" + _macro(s["task"]) + _macro(s["optimizer"].replace("muon:", ""))
        out[stem + "Steps"] = "--" if s["steps_median"] is None else s["steps_median"]
        out[stem + "Final"] = s["final_median"]
        if s["paired_median"] is not None:
            out[stem + "PairedSteps"] = s["paired_median"]
    if tables.get("spectra"):
        lo, hi = measured_interval(tables["spectra"])
        out["trainSpectrumLo"], out["trainSpectrumHi"] = lo, hi
        lo10, _ = measured_interval(tables["spectra"], quantile=0.1)
        out["trainSpectrumLoTenth"] = lo10
    return out


def latex(tables) -> dict:
    from experiments.common import latex_table, tex_number

    rows = _summary(tables["summary"])
    for r in rows:
        r["label"] = _label(r["optimizer"])
        if r["steps_median"] is None:
            r["steps"] = f"-- (0/{r['seeds']})"
        else:
            r["steps"] = f"{r['steps_median']:g} [{r['steps_min']}, {r['steps_max']}]"
            if r["reached"] < r["seeds"]:
                r["steps"] += f" ({r['reached']}/{r['seeds']})"
        r["final"] = (
            f"${tex_number(r['final_median'], 2)}$ [${tex_number(r['final_min'], 2)}$, ${tex_number(r['final_max'], 2)}$]"
        )
        r["time"] = f"{r['seconds_median']:.1f}"
        r["cpu"] = f"{r['cpu_median']:.1f}"
        r["paired"] = (
            ""
            if r["paired_median"] is None
            else f"{r['paired_median']:+g} [{r['paired_min']:+d}, {r['paired_max']:+d}]"
        )
    cols = [
        ("task", "task", None),
        ("label", "optimizer", None),
        ("steps", "steps to target", None),
        ("paired", "vs Jordan (same seed)", None),
        ("final", "final loss", None),
        ("time", "wall (s)", None),
        ("cpu", "CPU (s)", None),
    ]
    return {"table": latex_table(rows, cols, align="llrrrrr")}


if __name__ == "__main__":
    from experiments.__main__ import main

    sys.exit(main([NAME, *sys.argv[1:]]))
