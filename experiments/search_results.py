"""Search results vs published schedules per budget: certified and measured bf16 errors at equal matmul counts.

For every budget of ``k`` quintic steps (``3k`` matrix products) the table lists the nsiter search winner
(``nsiter-<k>step``, greedy minimax with safety factor 1.01, registry) and every published schedule with
the same matmul count: Polar Express (Algorithm 1, truncated to ``k``), Muon/Jordan (repeated), and the
fixed-length ones (modded-nanogpt Polar Express, Cesista, CANS at 5; Jiacheng's at 6).  Errors:

- ``certified_error``: worst ``|1 - phi_T|`` for ``sigma/||G||`` in ``[lo, hi]`` (``nsiter.analysis``,
  through the schedule's own normalization scale; ``nsiter.search.certified_error``);
- ``measured_*``: bfloat16 runs of the evaluator on seeded square log-uniform spectra in ``[lo, hi]``
  (``nsiter.search.calibrate.measure``, every size and seed): worst and mean per-direction
  ``|1 - u_i^T X_T v_i|`` and the spectral distance to the polar factor (worst over runs), and the
  median over runs of each run's worst direction (``measured_typical_max_error``, less noisy).
"""

from __future__ import annotations

import numpy as np

from nsiter import available_schedules, load_schedule
from nsiter.search import certified_error
from nsiter.search.calibrate import measure

NAME = "search_results"
PARAMS = {
    "budgets": [3, 4, 5, 6, 7],
    "lo": 1e-3,
    "hi": 1.0,
    "sizes": [64, 128],
    "seeds": [0, 1, 2, 3, 4, 5, 6, 7],
    "dtype": "bfloat16",
    "repeatable": ["polar-express", "muon"],  # published for any step count
    "fixed": ["polar-express-5", "cesista-5", "cans-5", "jiacheng-6"],  # published at their own length
}
QUICK = {"budgets": [3, 5], "sizes": [16], "seeds": [0], "fixed": ["polar-express-5"]}


def _candidates(k: int, p: dict) -> list[tuple[str, str]]:
    known = set(available_schedules())
    out = [(f"nsiter-{k}step", "nsiter")] if f"nsiter-{k}step" in known else []
    out += [(n, "published") for n in p["repeatable"] if n in known]
    for n in p["fixed"]:
        if n in known and len(load_schedule(n)) == k:
            out.append((n, "published"))
    return out


def compute(ctx) -> list[dict]:
    p = ctx.params
    rows = []
    for k in p["budgets"]:
        for name, kind in _candidates(k, p):

            def unit(name=name, kind=kind, k=k) -> list[dict]:
                sched = load_schedule(name).truncated(k)
                runs = [
                    measure(sched, lo=p["lo"], hi=p["hi"], size=n, seeds=p["seeds"], dtype=p["dtype"])
                    for n in p["sizes"]
                ]
                m = {
                    "max_direction_error": max(r["max_direction_error"] for r in runs),
                    "mean_error": sum(r["mean_error"] for r in runs) / len(runs),
                    "spectral_error": max(r["spectral_error"] for r in runs),
                    "typical": float(np.median([r["median_max_direction_error"] for r in runs])),
                }
                return [
                    {
                        "steps": k,
                        "matmuls": sched.matmuls(),
                        "schedule": name,
                        "kind": kind,
                        "certified_error": certified_error(sched, p["lo"], p["hi"]),
                        "measured_max_error": m["max_direction_error"],
                        "measured_typical_max_error": m["typical"],
                        "measured_mean_error": m["mean_error"],
                        "measured_spectral_error": m["spectral_error"],
                    }
                ]

            rows += ctx.unit((k, name), unit)
        ctx.progress(f"{k} steps done")
    return rows


def _best(rows: list[dict], k: int, kind: str, key: str) -> dict:
    return min((r for r in rows if r["steps"] == k and r["kind"] == kind), key=lambda r: r[key])


def plot(tables, ctx):
    import matplotlib.pyplot as plt

    from nsiter.plot import use_style

    use_style()
    rows = tables["main"]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), layout="constrained")
    for ax, key, title in zip(
        axes,
        ("certified_error", "measured_max_error"),
        ("certified, $[10^{-3}, 1]$", "measured bf16 (worst)"),
        strict=True,
    ):
        series = {}
        for r in rows:  # the nsiter winners (one schedule per budget) form one series
            label = "nsiter search" if r["kind"] == "nsiter" else r["schedule"]
            series.setdefault(label, []).append((r["matmuls"], max(r[key], 1e-12)))
        for label, pts in series.items():
            pts.sort()
            style = "o-" if label == "nsiter search" else "s--"
            ax.plot([a for a, _ in pts], [b for _, b in pts], style, label=label, ms=4)
        ax.set_yscale("log")
        ax.set_xlabel("matrix products")
        ax.set_title(title)
    axes[0].set_ylabel(r"$\max |1 - \varphi_T|$")
    axes[1].legend(fontsize=7)
    return fig


def numbers(tables) -> dict:
    rows = tables["main"]
    out = {}
    for k in sorted({r["steps"] for r in rows}):
        if not any(r["kind"] == "nsiter" for r in rows if r["steps"] == k):
            continue
        ours = _best(rows, k, "nsiter", "certified_error")
        pub = _best(rows, k, "published", "certified_error")
        word = "abcdefghij"[k]
        out[f"searchOursCert{word}"] = ours["certified_error"]
        out[f"searchPubCert{word}"] = pub["certified_error"]
    return out


def latex(tables) -> dict:
    from experiments.common import latex_table, tex_number

    rows = sorted(tables["main"], key=lambda r: (r["steps"], r["kind"] != "nsiter", r["certified_error"]))

    def num(x):
        return f"${tex_number(float(x))}$"

    cols = [
        ("steps", "steps", None),
        ("matmuls", "matmuls", None),
        ("schedule", "schedule", None),
        ("certified_error", "certified", num),
        ("measured_max_error", "bf16 worst", num),
        ("measured_mean_error", "bf16 mean", num),
    ]
    return {"table": latex_table(rows, cols)}
