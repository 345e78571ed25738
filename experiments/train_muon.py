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

Two more comparisons on the same problems:

- **MuonClip** (``clip``): modular addition with a Muon step large enough (lr 0.05, no weight decay) that the
  attention logits keep growing; Muon alone vs Muon with QK-Clip (Kimi K2, arXiv:2507.20534, Sec. 2.1) at
  threshold ``tau``.  ``train_muon.logits.csv``: the largest logit ``q.k/sqrt(d)`` over all heads and the loss at
  every step.
- **Evaluation method** (``methods``): Muon (Jordan's coefficients) with the Newton–Schulz schedule evaluated
  the standard way or in the Gram form (``nsiter.evaluate.orthogonalize(method=...)``); the same seeds, so the
  loss curves can be compared with the seed-to-seed spread, and the median wall time of ``optimizer.step()``.
  ``train_muon.methods.csv``: one row per run.

Outputs: loss curves (``train_muon.csv``), per-run summary (``train_muon.summary.csv``: steps to the
target loss, final loss, held-out loss/accuracy, wall time), and the singular-value spectra of the
momentum matrices Muon orthogonalized (``train_muon.spectra.csv``, readable by
``nsiter.spectra.load_spectra`` / ``measured_interval`` / ``measured_matrix``); the two tables above.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python experiments/NAME.py`: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import statistics
from collections.abc import Sequence

import torch

from experiments.training import train
from nsiter import available_schedules, load_schedule
from nsiter.stats import paired_difference


def _search_arms() -> list[str]:
    """The search's registry winners with Muon's matmul budget (first by name), if any."""
    budget = load_schedule("muon").matmuls
    found = [n for n in available_schedules() if n.startswith("nsiter-")]
    same = [n for n in found if load_schedule(n).matmuls == budget]
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
    "clip": {
        "task": "modadd",
        "optimizer": "muon:muon",
        "lr": 0.05,
        "steps": 300,
        "taus": [None, 30.0],
        "seeds": [0, 1, 2],
    },
    "methods": {"optimizer": "muon:muon", "methods": ["standard", "gram"]},
}
QUICK = {
    "optimizers": ["adamw", "muon:muon"],
    "tasks": {
        "modadd": {"steps": 12, "target": 2.38, "config": {"p": 11, "d": 16, "heads": 2}},
        "teacher": {"steps": 12, "target": 2.25, "config": {"dim": 8, "width": 16, "depth": 2, "batch": 32}},
    },
    "seeds": [0],
    "spectra_steps": [1, 10],
    "clip": {
        "task": "modadd",
        "optimizer": "muon:muon",
        "lr": 0.1,
        "steps": 12,
        "taus": [None, 1.5],
        "seeds": [0],
    },
}

LABELS = {"adamw": "AdamW", "muon:muon": "Muon (Jordan)", "muon:polar-express-5": "Muon (Polar Express 5)"}


def _label(opt: str) -> str:
    return LABELS.get(opt, "Muon (" + opt.split(":", 1)[-1] + ")")


def _train(p: dict, task: str, opt: str, seed: int, **extra):
    """One training run with the benchmark's shared settings (``extra``: what the table varies)."""
    spec = p["tasks"][task]
    return train(
        task,
        opt,
        seed=seed,
        steps=spec["steps"],
        lr=p["lr"],
        adam_lr=p["adam_lr"],
        weight_decay=p["weight_decay"],
        config=spec["config"],
        dtype=p["ns_dtype"],
        **extra,
    )


def _run(ctx, task: str, opt: str, seed: int) -> list[dict]:
    p = ctx.params
    spec = p["tasks"][task]
    record = p["spectra_steps"] if (opt == p["spectra_optimizer"] and seed == p["spectra_seed"]) else ()
    res = _train(p, task, opt, seed, record_spectra_at=[s for s in record if s <= spec["steps"]])
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


def _run_clip(ctx, tau: float | None, seed: int) -> list[dict]:
    """Muon with or without QK-Clip at ``tau``: the largest attention logit and the loss at every step."""
    p, c = ctx.params, ctx.params["clip"]
    spec = p["tasks"][c["task"]]
    res = train(
        c["task"],
        c["optimizer"],
        seed=seed,
        steps=c["steps"],
        lr=c["lr"],
        adam_lr=p["adam_lr"],
        config=spec["config"],
        dtype=p["ns_dtype"],
        qk_clip_tau=tau,
    )
    return [
        {"table": "logits", "tau": tau, "seed": seed, "step": t + 1, "max_logit": m, "loss": v}
        for t, (m, v) in enumerate(zip(res.max_logits, res.losses, strict=True))
    ]


def _run_method(ctx, task: str, method: str, seed: int) -> list[dict]:
    """Muon with the schedule evaluated by ``method``: steps to target, final loss, optimizer-step time."""
    p = ctx.params
    spec = p["tasks"][task]
    opt = p["methods"]["optimizer"]
    res = _train(p, task, opt, seed, method=method)
    return [
        {
            "table": "methods",
            "task": task,
            "optimizer": opt,
            "method": method,
            "seed": seed,
            "steps_to_target": res.steps_to(spec["target"]),
            "final_loss": statistics.fmean(res.losses[-10:]),
            "step_ms_median": 1e3 * statistics.median(res.step_seconds),
            "seconds": res.seconds,
        }
    ]


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
        for tau in p["clip"]["taus"]:
            for seed in p["clip"]["seeds"]:
                rows += ctx.unit(("clip", tau, seed), lambda u=tau, s=seed: _run_clip(ctx, u, s))
        for task in p["tasks"]:
            for method in p["methods"]["methods"]:
                for seed in p["seeds"]:
                    rows += ctx.unit(
                        ("method", task, method, seed),
                        lambda t=task, m=method, s=seed: _run_method(ctx, t, m, s),
                    )
    finally:
        torch.set_num_threads(threads)
    tables: dict[str, list[dict]] = {"main": [], "summary": [], "spectra": [], "logits": [], "methods": []}
    for r in rows:
        name = r.pop("table")
        tables["main" if name == "curves" else name].append(r)
    return tables


def clip_table(rows: list[dict], steps: Sequence[int]) -> list[dict]:
    """Per threshold (None: no clip) and chosen step: the median and range over seeds of the largest logit and
    the median loss."""
    out = []
    for tau in dict.fromkeys(r["tau"] for r in rows):
        for step in steps:
            at = [r for r in rows if r["tau"] == tau and r["step"] == step]
            if not at:
                continue
            logits = [r["max_logit"] for r in at]
            out.append(
                {
                    "tau": tau,
                    "step": step,
                    "max_logit_median": statistics.median(logits),
                    "max_logit_min": min(logits),
                    "max_logit_max": max(logits),
                    "loss_median": statistics.median(r["loss"] for r in at),
                }
            )
    return out


def method_table(rows: list[dict]) -> list[dict]:
    """Per (task, method): median and range over seeds of the final loss, median optimizer-step time, and the
    final loss paired with the same seed's first method (the seed-to-seed spread is the min-max range)."""
    out = []
    for task in dict.fromkeys(r["task"] for r in rows):
        methods = list(dict.fromkeys(r["method"] for r in rows if r["task"] == task))
        base = {r["seed"]: r["final_loss"] for r in rows if r["task"] == task and r["method"] == methods[0]}
        for method in methods:
            runs = [r for r in rows if r["task"] == task and r["method"] == method]
            finals = [r["final_loss"] for r in runs]
            d = paired_difference({r["seed"]: r["final_loss"] for r in runs}, base)
            out.append(
                {
                    "task": task,
                    "method": method,
                    "seeds": len(runs),
                    "final_median": statistics.median(finals),
                    "final_min": min(finals),
                    "final_max": max(finals),
                    "paired_median": None if d is None or method == methods[0] else d.median,
                    "step_ms": statistics.median(r["step_ms_median"] for r in runs),
                }
            )
    return out


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
        o: {r["seed"]: r["steps_to_target"] for r in rows if r["task"] == task and r["optimizer"] == o}
        for o in (opt, base)
    }
    d = paired_difference(steps[opt], steps[base])
    if opt == base or d is None:
        return {"paired_median": None, "paired_min": None, "paired_max": None}
    return {"paired_median": d.median, "paired_min": int(d.min), "paired_max": int(d.max)}


def _spectra_figure(spectra: list[dict]):
    """One panel per momentum matrix (a row per task), its normalized spectrum at each recorded step."""
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.ticker import NullFormatter

    from nsiter.plot.style import SERIES_COLORS

    tasks = list(dict.fromkeys(r["task"] for r in spectra))
    params = {t: list(dict.fromkeys(r["param"] for r in spectra if r["task"] == t)) for t in tasks}
    steps = sorted({r["step"] for r in spectra})
    ncols = max(len(v) for v in params.values())
    fig, axes = plt.subplots(
        len(tasks), ncols, figsize=(2.3 * ncols, 2.3 * len(tasks) + 0.6), layout="constrained", squeeze=False
    )
    for row, task in zip(axes, tasks, strict=True):
        for ax, param in zip(row, params[task], strict=False):
            sel = [r for r in spectra if r["task"] == task and r["param"] == param]
            for k, step in enumerate(steps):
                xs = np.sort([r["x"] for r in sel if r["step"] == step])[::-1]
                if xs.size:
                    ax.plot(
                        np.arange(1, xs.size + 1), xs, color=SERIES_COLORS[k], lw=1.2, label=f"step {step}"
                    )
            ax.set_yscale("log")
            ax.yaxis.set_minor_formatter(NullFormatter())
            ax.set_title(
                f"{task}: {param.removesuffix('.weight')} ({sel[0]['rows']}x{sel[0]['cols']})", fontsize=8
            )
            ax.set_xlabel("index $i$", fontsize=8)
            ax.tick_params(labelsize=7)
        row[0].set_ylabel(r"$\sigma_i / \|U\|_F$")
        for ax in row[len(params[task]) :]:
            ax.remove()
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(steps), fontsize=8)
    fig.suptitle(
        f"Momentum matrices Muon orthogonalized: singular values (descending) at {len(steps)} training steps",
        fontsize=10,
    )
    return fig


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
        figs["spectra"] = _spectra_figure(spectra)

    logits = tables.get("logits", [])
    if logits:
        fig3, (ax_l, ax_s) = plt.subplots(1, 2, figsize=(8.8, 3.3), layout="constrained")
        for tau in dict.fromkeys(r["tau"] for r in logits):
            label = "Muon" if tau is None else rf"MuonClip ($\tau = {tau:g}$)"
            for ax, column in ((ax_l, "max_logit"), (ax_s, "loss")):
                runs: dict[int, list[float]] = {}
                for r in logits:
                    if r["tau"] == tau:
                        runs.setdefault(r["seed"], []).append(r[column])
                y = np.array(list(runs.values()))
                steps = np.arange(1, y.shape[1] + 1)
                (line,) = ax.plot(steps, np.median(y, axis=0), label=label)
                ax.fill_between(steps, y.min(axis=0), y.max(axis=0), color=line.get_color(), alpha=0.2, lw=0)
            if tau is not None:
                ax_l.axhline(tau, color="0.4", ls="--", lw=0.8)
        ax_l.set_xlabel("step")
        ax_l.set_ylabel(r"largest attention logit $\max_h S^h_{\max}$")
        ax_s.set_xlabel("step")
        ax_s.set_ylabel("training loss")
        ax_s.set_yscale("log")
        task = ctx.params["clip"]["task"]
        ax_l.set_title(f"{task}, Muon lr {ctx.params['clip']['lr']:g} (median, min-max over seeds)")
        ax_l.legend()
        figs["clip"] = fig3
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
    logits = tables.get("logits", [])
    for tau in dict.fromkeys(r["tau"] for r in logits):
        stem = "trainClipFree" if tau is None else "trainClip"
        runs = [r for r in logits if r["tau"] == tau]
        last = max(r["step"] for r in runs)
        out[stem + "FinalLogit"] = statistics.median(r["max_logit"] for r in runs if r["step"] == last)
        out[stem + "PeakLogit"] = max(r["max_logit"] for r in runs)
        out[stem + "FinalLoss"] = statistics.median(r["loss"] for r in runs if r["step"] == last)
        if tau is not None:
            out["trainClipTau"] = tau
    for m in method_table(tables.get("methods", [])):
        stem = "train" + _macro(m["task"]) + _macro(m["method"])
        out[stem + "StepMs"] = m["step_ms"]
        out[stem + "FinalLoss"] = m["final_median"]
    if tables.get("spectra"):
        lo, hi = measured_interval(tables["spectra"])
        out["trainSpectrumLo"], out["trainSpectrumHi"] = lo, hi
        lo10, _ = measured_interval(tables["spectra"], quantile=0.1)
        out["trainSpectrumLoTenth"] = lo10
    return out


def latex(tables) -> dict:
    from experiments.tables import latex_table, tex_number

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
    out = {"table": latex_table(rows, cols, align="llrrrrr")}
    logits = tables.get("logits", [])
    if logits:
        last = max(r["step"] for r in logits)
        marks = sorted({1, *range(50, last + 1, 50), last})
        clip_rows = clip_table(logits, marks)
        for r in clip_rows:
            r["run"] = "Muon" if r["tau"] is None else f"MuonClip, $\\tau = {r['tau']:g}$"
            r["logit"] = f"{r['max_logit_median']:.1f} [{r['max_logit_min']:.1f}, {r['max_logit_max']:.1f}]"
            r["loss"] = f"${tex_number(r['loss_median'], 2)}$"
        clip_cols = [("run", "optimizer", None), ("step", "step", None), ("logit", "largest logit", None)]
        out["clip"] = latex_table(clip_rows, [*clip_cols, ("loss", "loss", None)], align="lrrr")
    methods = method_table(tables.get("methods", []))
    if methods:
        for r in methods:
            r["final"] = (
                f"${tex_number(r['final_median'], 2)}$ [${tex_number(r['final_min'], 2)}$, "
                f"${tex_number(r['final_max'], 2)}$]"
            )
            r["paired"] = "" if r["paired_median"] is None else f"${tex_number(r['paired_median'], 2)}$"
            r["ms"] = f"{r['step_ms']:.2f}"
        method_cols = [("task", "task", None), ("method", "evaluation", None), ("final", "final loss", None)]
        method_cols += [("paired", "vs first (same seed)", None), ("ms", "step (ms)", None)]
        out["methods"] = latex_table(methods, method_cols, align="llrrr")
    return out


if __name__ == "__main__":
    from experiments.__main__ import main

    sys.exit(main([NAME, *sys.argv[1:]]))
