"""Search results vs published schedules per budget: certified and measured bf16 errors at equal matmul counts.

For every budget of ``k`` quintic steps (``3k`` matrix products) the table lists the nsiter search
winners with that many products (registry: ``nsiter-<k>step``, greedy minimax with safety factor 1.01,
and at 21 products ``nsiter-21mm-bf16``, the precision-aware budget winner) and every published schedule
with the same matmul count: Polar Express (Algorithm 1's 8-step list truncated to ``k``: what a user who
runs fewer steps gets), Muon/Jordan (repeated), and the fixed-length ones (modded-nanogpt Polar Express,
Cesista, CANS at 5; Jiacheng's at 6).  The published *generators* are also re-run for each budget
(kind ``rerun``, Frobenius normalization with scale 1 and eps 1e-7, as the winners), both through
``nsiter.search``'s ``minimax`` objective:

- ``polar-express-rerun``: Polar Express's recursion (Amsel et al. 2025, arXiv:2505.16932, Algorithm 2 and
  ``optimal_composition`` of NoahAmsel/PolarExpress): cushion 0.02 with recentering, safety 1.01 on all
  but the last step, and its interval bookkeeping ``lo' = p(lo)``, ``hi' = 2 - lo'``
  (``interval="symmetric"``).  The winners ``nsiter-<k>step`` differ from it only in taking the exact image
  of the interval (``interval="exact"``).
- ``cans-rerun``: the CANS construction (Grishina, Smirnov & Rakhuba 2025, arXiv:2506.10935): the minimax
  step on the current interval, whose exact image is the next, no cushion and no safety factor (nsiter's
  ``band`` objective with ``band_steps=1`` and ``lo* = lo`` gives the same polynomials; at 5 steps on
  ``[1e-3, 1]`` they round to ``cans-5-nemo``'s 4 decimals).

Every measured verdict is a paired comparison (``nsiter.stats``): per-run differences of the worst
direction error on the same matrices, significant when ``|mean| > 2`` standard errors
(``nsiter.stats.SIGNIFICANCE_SE``), under both bf16 arithmetics; otherwise "no significant difference".

- ``certified_error``: worst ``|1 - phi_T|`` for ``sigma/||G||`` in ``[lo, hi]`` (``nsiter.analysis``,
  through the schedule's own normalization scale: ``certified_error`` on
  ``Normalization.polynomial_interval(lo, hi)``);
- measured: bfloat16 runs of the evaluator on seeded square log-uniform spectra in ``[lo, hi]``
  (``nsiter.measure.measured_errors``; sizes x seeds runs per schedule, the same matrices for every
  schedule).  Per run: the worst direction error ``max_i |1 - u_i^T X_T v_i|`` (distance to the polar
  factor along each singular pair) and the worst singular-value error ``max_i |sigma_i(X_T) - 1|`` (the
  measured counterpart of the certified error).  The table gives their mean over runs (with the standard
  error of the worst direction error), the worst run, the mean error over directions, and the paired
  difference of every nsiter schedule against the best published one (same runs: mean and standard
  error of the per-run differences).

The seeds (0-31) are disjoint from the ones the precision-aware budget search selected its winner on
(100-131), and the 21-product winner is regenerated from its registry parameters here (``regenerated``).
Every run is made twice: with the evaluator's default bf16 arithmetic on this CPU (float32 GEMMs rounded
to bf16, see ``nsiter.evaluate``) and with the backend's native bf16 GEMM (``native_*`` columns), so that
no conclusion rests on the emulation.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python experiments/NAME.py`: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import math

import numpy as np

from experiments.tables import tex_number
from nsiter import available_schedules, load_schedule
from nsiter.analysis import certified_error
from nsiter.measure import measured_errors
from nsiter.stats import SIGNIFICANCE_SE, mean_and_se, paired_difference

NAME = "search_results"
PARAMS = {
    "budgets": [3, 4, 5, 6, 7],
    "lo": 1e-3,
    "hi": 1.0,
    "sizes": [64, 128],
    "seeds": list(range(32)),
    "dtype": "bfloat16",
    "repeatable": ["polar-express", "muon"],  # published for any step count
    "fixed": ["polar-express-5", "cesista-5", "cans-5", "cans-5-nemo", "polar-express-gram", "jiacheng-6"],
    # (published at their own length)
    "regenerate": ["nsiter-21mm-bf16"],
    # published generators re-run for every budget: greedy minimax parameters (module docstring)
    "rerun": {
        "polar-express": {"cushion": 0.02, "safety": 1.01, "interval": "symmetric"},
        "cans": {"cushion": 0.0, "safety": 1.0, "interval": "exact"},
    },
    # mean error under a worst-case constraint (gradient objective, worst_weight 0, max_error = the best
    # published certified error of the budget)
    "tradeoff_budgets": [3, 4, 5],
    "tradeoff": {"iters": 1500, "lr": 3e-3, "points": 4096},
    # safety factor of the greedy minimax schedule chosen from measured runs (nsiter.search.calibrate),
    # on seeds disjoint from the comparison's
    "calibrate_budgets": [3, 4, 5, 6, 7],
    "calibrate": {"cushion": 0.02, "size": [32, 64, 128], "seeds": list(range(200, 208))},
}
QUICK = {
    "budgets": [3, 5],
    "sizes": [16],
    "seeds": [0, 1],
    "fixed": ["polar-express-5"],
    "regenerate": [],
    "tradeoff_budgets": [3],
    "tradeoff": {"iters": 20, "lr": 3e-3, "points": 256},
    "calibrate_budgets": [3],
    "calibrate": {"cushion": 0.02, "size": [16], "seeds": [200]},
}

# the measured quantities, per run
_RUN_KEYS = ("max_direction_error", "max_singular_error")


def _ours(k: int) -> list[str]:
    """Registry schedules found by nsiter's search with the matmul count of ``k`` quintic steps."""
    out = []
    for name in sorted(available_schedules()):
        if name.startswith("nsiter-"):
            s = load_schedule(name)
            if s.provenance.kind == "search" and s.matmuls == 3 * k:
                out.append(name)
    return out


def _candidates(k: int, p: dict) -> list[tuple[str, str]]:
    known = set(available_schedules())
    out = [(n, "nsiter") for n in _ours(k)]
    out += [(f"{g}-rerun", "rerun") for g in p["rerun"]]
    out += [(n, "published") for n in p["repeatable"] if n in known]
    for n in p["fixed"]:
        if n in known and load_schedule(n).matmuls == 3 * k:
            out.append((n, "published"))
    return out


def _schedule(name: str, kind: str, k: int, p: dict):
    """The schedule a candidate row runs: a re-run generator, a truncated repeatable list, or the entry."""
    if kind == "rerun":
        from nsiter.search import search

        gen = name.removesuffix("-rerun")
        sched, _ = search("minimax", steps=k, degree=5, lo=p["lo"], hi=p["hi"], name=name, **p["rerun"][gen])
        return sched
    return load_schedule(name).truncated(k) if name in p["repeatable"] else load_schedule(name)


def _regenerate(name: str) -> list[dict]:
    """Rerun the budget search from the registry entry's parameters; record whether it agrees."""
    from nsiter.search import budget_search

    sched = load_schedule(name)
    params = {k: v for k, v in sched.provenance.parameters.items() if k not in ("objective", "sequence")}
    again, diag = budget_search(**params)
    worst = (
        max(
            max(abs(a - b) / max(abs(b), 1e-300) for a, b in zip(p.coefficients, q.coefficients, strict=True))
            for p, q in zip(again.steps, sched.steps, strict=True)
        )
        if len(again) == len(sched)
        else math.inf
    )
    return [
        {
            "schedule": name,
            "sequence": "".join(str(d) for d in diag.metrics["sequence"]),
            "registry_sequence": "".join(str(q.degree) for q in sched.steps),
            "max_relative_coefficient_difference": worst,
            "shortlist": len(diag.metrics.get("measured", [])),
        }
    ]


def compute(ctx) -> dict[str, list[dict]]:
    p = ctx.params
    runs = []
    for k in p["budgets"]:
        for name, kind in _candidates(k, p):

            def unit(name=name, kind=kind, k=k) -> list[dict]:
                sched = _schedule(name, kind, k, p)
                cert = certified_error(sched, *sched.normalization.polynomial_interval(p["lo"], p["hi"]))
                out = []
                for n in p["sizes"]:
                    kw = {"lo": p["lo"], "hi": p["hi"], "sizes": n, "seeds": p["seeds"], "dtype": p["dtype"]}
                    m = measured_errors(sched, **kw)
                    native = measured_errors(sched, **kw, emulate=False)  # the backend's own bf16 GEMM
                    for r, q in zip(m["runs"], native["runs"], strict=True):
                        out.append(
                            {
                                "steps": k,
                                "matmuls": sched.matmuls,
                                "schedule": name,
                                "kind": kind,
                                "certified_error": cert,
                                "size": n,
                                "seed": r["seed"],
                                **{key: r[key] for key in _RUN_KEYS},
                                **{f"native_{key}": q[key] for key in _RUN_KEYS},
                                "mean_error": m["mean_error"],
                                "spectral_error": m["spectral_error"],
                            }
                        )
                return out

            runs += ctx.unit((k, name), unit)
        ctx.progress(f"{k} steps done")
    regenerated = []
    for name in p["regenerate"]:
        regenerated += ctx.unit(("regenerate", name), lambda name=name: _regenerate(name))
    main = _summarize(runs)
    tradeoff = []
    for k in p["tradeoff_budgets"]:
        tradeoff += ctx.unit(("tradeoff", k), lambda k=k: _tradeoff(k, main, p))
    calibration = []
    for k in p["calibrate_budgets"]:
        calibration += ctx.unit(("calibrate", k), lambda k=k: _calibrate(k, p))
    tables = {
        "main": main,
        "runs": runs,
        "regenerated": regenerated,
        "tradeoff": tradeoff,
        "calibration": calibration,
    }
    return {name: rows for name, rows in tables.items() if rows}  # --quick skips the regeneration


def _calibrate(k: int, p: dict) -> list[dict]:
    """Every candidate safety factor of the k-step greedy minimax schedule, with its measured errors."""
    from nsiter.search import search

    c = p["calibrate"]
    _, diag = search(
        "calibrate",
        steps=k,
        lo=p["lo"],
        hi=p["hi"],
        cushion=c["cushion"],
        size=tuple(c["size"]),
        seeds=tuple(c["seeds"]),
        dtype=p["dtype"],
    )
    chosen = diag.metrics["safety"]
    runs = len(c["size"]) * len(c["seeds"])
    return [
        {"steps": k, **row, "chosen": row["safety"] == chosen, "runs": runs} for row in diag.metrics["table"]
    ]


def _tradeoff(k: int, main: list[dict], p: dict) -> list[dict]:
    """The smallest mean error the gradient objective finds without exceeding the best published
    certified error, against the published schedule with the smallest measured mean error."""
    from nsiter.search import search

    pubs = [r for r in main if r["steps"] == k and r["kind"] == "published"]
    bound = min(r["certified_error"] for r in pubs)  # diverging in bf16 or not (cans-5-nemo at 15)
    pubs = [r for r in pubs if math.isfinite(r["measured_worst"])]
    sched, diag = search(
        "gradient", steps=k, lo=p["lo"], hi=p["hi"], worst_weight=0.0, max_error=bound, **p["tradeoff"]
    )
    m = measured_errors(sched, sizes=p["sizes"], lo=p["lo"], hi=p["hi"], seeds=p["seeds"], dtype=p["dtype"])
    best_mean = min(pubs, key=lambda r: (r["measured_mean_error"], r["schedule"]))
    return [
        {
            "steps": k,
            "bound": bound,
            "certified_error": certified_error(sched, p["lo"], p["hi"]),
            "scalar_mean_error": diag.metrics["mean_error"],
            "measured_mean_error": m["mean_error"],
            "measured_worst": m["mean_max_direction_error"],
            "coefficients": [list(q.coefficients) for q in sched.steps],
            "published_best_mean": best_mean["schedule"],
            "published_mean_error": best_mean["measured_mean_error"],
            "published_certified_error": best_mean["certified_error"],
        }
    ]


def _summarize(runs: list[dict]) -> list[dict]:
    groups: dict[tuple[int, str], list[dict]] = {}
    for r in runs:
        groups.setdefault((r["steps"], r["schedule"]), []).append(r)
    rows = []
    for (k, name), rs in groups.items():
        worst = np.array([r["max_direction_error"] for r in rs], dtype=float)
        sing = np.array([r["max_singular_error"] for r in rs], dtype=float)
        nat_worst = np.array([r["native_max_direction_error"] for r in rs], dtype=float)
        nat_sing = np.array([r["native_max_singular_error"] for r in rs], dtype=float)
        mean_worst, se_worst = mean_and_se(worst)
        rows.append(
            {
                "steps": k,
                "matmuls": rs[0]["matmuls"],
                "schedule": name,
                "kind": rs[0]["kind"],
                "certified_error": rs[0]["certified_error"],
                "runs": len(rs),
                "measured_worst": mean_worst,
                "measured_worst_se": se_worst if math.isfinite(se_worst) else 0.0,
                "measured_worst_run": float(worst.max()),
                "measured_singular": mean_and_se(sing)[0],
                # mean_error is per (size, all seeds): average over the sizes
                "measured_mean_error": float(
                    np.mean([m for _, m in {(r["size"], r["mean_error"]) for r in rs}])
                ),
                "measured_spectral_error": max(r["spectral_error"] for r in rs),
                "native_worst": float(nat_worst.mean()) if np.isfinite(nat_worst).all() else math.inf,
                "native_singular": float(nat_sing.mean()) if np.isfinite(nat_sing).all() else math.inf,
            }
        )
    # paired differences of nsiter schedules against the best published (prefix "paired") and the best
    # re-run ("rerun") schedule of the budget that stays finite (same matrices), in both arithmetics
    measured = (
        ("max_direction_error", ""),
        ("native_max_direction_error", "_native"),
        ("max_singular_error", "_singular"),
    )
    for row in rows:
        for pre, kind in (("paired", "published"), ("rerun", "rerun")):
            row[f"{pre}_vs"] = ""
            for _, suffix in measured:
                row[f"{pre}{suffix}_diff"] = row[f"{pre}{suffix}_se"] = math.nan
                row[f"{pre}{suffix}_verdict"] = ""
            others = [
                r
                for r in rows
                if r["steps"] == row["steps"] and r["kind"] == kind and math.isfinite(r["measured_worst"])
            ]
            if row["kind"] != "nsiter" or not others:
                continue
            best = min(others, key=lambda r: (r["measured_worst"], r["schedule"]))
            row[f"{pre}_vs"] = best["schedule"]
            for key, suffix in measured:
                mine = {(r["size"], r["seed"]): r[key] for r in groups[(row["steps"], row["schedule"])]}
                theirs = {(r["size"], r["seed"]): r[key] for r in groups[(best["steps"], best["schedule"])]}
                d = paired_difference(mine, theirs)
                row[f"{pre}{suffix}_diff"], row[f"{pre}{suffix}_se"] = d.mean, d.se
                finite = math.isfinite(d.mean) and math.isfinite(d.se)  # a native run may still overflow
                row[f"{pre}{suffix}_verdict"] = d.verdict() if finite else "not finite"
    order = {"nsiter": 0, "rerun": 1, "published": 2}
    rows.sort(key=lambda r: (r["steps"], order[r["kind"]], r["certified_error"], r["schedule"]))
    return rows


def _best(rows: list[dict], k: int, kind: str, key: str) -> dict:
    return min(
        (r for r in rows if r["steps"] == k and r["kind"] == kind), key=lambda r: (r[key], r["schedule"])
    )


def plot(tables, ctx):
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    from nsiter.plot import series_styles, use_style

    use_style()
    rows = tables["main"]
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 3.6), layout="constrained")
    offscale = 0  # points drawn open on the top edge

    def label_of(r: dict) -> str:
        if r["schedule"] == "nsiter-21mm-bf16" or r["kind"] != "nsiter":
            return r["schedule"]
        return "nsiter search"

    labels = list(dict.fromkeys(label_of(r) for r in rows))
    kinds = {label_of(r): r["kind"] for r in rows}
    family = {lab: kinds[lab] for lab in labels}
    styles = series_styles(labels, family)  # one (colour, marker) per series, the same in both panels
    top = 10.0  # values above it (or not finite) leave the axes: a cross at the top edge says so
    matmuls = sorted({r["matmuls"] for r in rows})
    for ax, key, title in zip(
        axes,
        ("certified_error", "measured_worst"),
        ("certified, $[10^{-3}, 1]$", "measured bf16 (worst direction, mean over runs)"),
        strict=True,
    ):
        # several schedules share a matmul count: spread them sideways so no marker hides another
        at = {
            m: [lab for lab in styles if any(label_of(r) == lab and r["matmuls"] == m for r in rows)]
            for m in matmuls
        }
        off = {
            (m, lab): 0.35 * (i - (len(labs) - 1) / 2) for m, labs in at.items() for i, lab in enumerate(labs)
        }
        for lab, st in styles.items():
            pts = sorted((r["matmuls"], r[key]) for r in rows if label_of(r) == lab)
            shown = [(m + off[m, lab], v) for m, v in pts if math.isfinite(v) and v <= top]
            line = {"nsiter": "-", "rerun": "-."}.get(kinds[lab], "--") if len(pts) > 1 else "none"
            if shown:
                ax.plot(*zip(*shown, strict=True), ls=line, marker=st["marker"], color=st["color"], ms=5)
            # off-scale (diverged, or above the top): the series' own marker, open, on the top edge
            gone = [m + off[m, lab] for m, v in pts if not (math.isfinite(v) and v <= top)]
            if gone:
                offscale += len(gone)
                ax.plot(
                    gone,
                    [top] * len(gone),
                    marker=st["marker"],
                    ms=7,
                    mfc="white",
                    mec=st["color"],
                    mew=1.6,
                    ls="none",
                    clip_on=False,
                    zorder=5,
                )
        ax.set_yscale("log")
        ax.set_ylim(top=top)
        ax.set_xticks(matmuls)
        ax.set_xlabel("matrix products")
        ax.set_title(title, fontsize=9)
    axes[0].set_ylabel(r"$\max |1 - \varphi_T|$")
    handles = [
        Line2D([], [], color=st["color"], marker=st["marker"], label=lab) for lab, st in styles.items()
    ]
    if offscale:
        handles.append(
            Line2D(
                [],
                [],
                color="0.3",
                marker="o",
                mfc="white",
                ls="none",
                label=f"open, on the top edge: diverged or above {top:g} ({offscale} points)",
            )
        )
    fig.legend(handles=handles, loc="outside right upper", fontsize=7)
    return fig


def _join(items: list) -> str:
    items = [str(x) for x in items]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _certified_verdict(rows: list[dict], kind: str, what: str) -> str:
    """Computed, not typed: at which budgets nsiter's best winner has a smaller certified error than every
    ``kind`` schedule of the same cost, and which of them is lower where it does not.  Certified errors
    are exact bounds (no sampling), so the comparison needs no significance rule."""
    budgets = sorted({r["steps"] for r in rows if r["kind"] == "nsiter"})
    wins, losses = [], []
    for k in budgets:
        ours = _best(rows, k, "nsiter", "certified_error")["certified_error"]
        better = [r for r in rows if r["steps"] == k and r["kind"] == kind and r["certified_error"] < ours]
        if better:
            pub = min(better, key=lambda r: (r["certified_error"], r["schedule"]))
            losses.append(
                f"{3 * k} (\\texttt{{{pub['schedule']}}}: ${tex_number(pub['certified_error'])}$ against "
                f"${tex_number(ours)}$)"
            )
        else:
            wins.append(3 * k)
    if not losses:
        return f"below every {what} at every budget from {3 * budgets[0]} to {3 * budgets[-1]} products"
    head = f"below every {what} at {_join(wins)} products; " if wins else f"below no {what} at any budget; "
    return head + f"a {what} is lower at " + "; ".join(losses)


def _certified_against(rows: list[dict], name: str) -> str:
    """Computed: at which budgets the best winner's certified error is below or above that of the
    schedule ``name`` (a re-run generator, present at every budget)."""
    below, above = [], []
    for k in sorted({r["steps"] for r in rows if r["kind"] == "nsiter"}):
        theirs = [r for r in rows if r["steps"] == k and r["schedule"] == name]
        if theirs:
            ours = _best(rows, k, "nsiter", "certified_error")["certified_error"]
            (below if ours < theirs[0]["certified_error"] else above).append(3 * k)
    parts = [
        f"{word} \\texttt{{{name}}}'s at {_join(ks)} products"
        for word, ks in (("below", below), ("above", above))
        if ks
    ]
    return " and ".join(parts)


def _measured_verdict(rows: list[dict], pre: str) -> str:
    """Computed: the paired verdict (``nsiter.stats``, ``|mean| > SIGNIFICANCE_SE`` standard errors) of the
    best winner against the best finite comparator (``pre``: ``paired`` published, ``rerun`` re-run) at
    each budget, in both bf16 arithmetics; budgets with the same verdict are grouped."""
    groups: dict[str, list[int]] = {}
    for k in sorted({r["steps"] for r in rows if r["kind"] == "nsiter"}):
        ours = _best(rows, k, "nsiter", "measured_worst")
        if not ours[f"{pre}_vs"]:
            continue
        emul, native = ours[f"{pre}_verdict"], ours[f"{pre}_native_verdict"]
        if emul == native:
            phrase = emul
        else:
            d = [
                rf"${tex_number(ours[f'{pre}{x}_diff'], 2)}\pm{tex_number(ours[f'{pre}{x}_se'], 1)}$"
                for x in ("", "_native")
            ]
            phrase = f"{emul} with emulated bf16 GEMMs ({d[0]}) but {native} with native ones ({d[1]})"
        groups.setdefault(phrase, []).append(3 * k)
    return "; ".join(f"{phrase} at {_join(ks)} products" for phrase, ks in groups.items())


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
        mine = _best(rows, k, "nsiter", "measured_worst")
        theirs = _best(rows, k, "published", "measured_worst")
        out[f"searchOursMeas{word}"] = mine["measured_worst"]
        out[f"searchPubMeas{word}"] = theirs["measured_worst"]
    for k in sorted({r["steps"] for r in rows}):
        word = "abcdefghij"[k]
        for r in rows:
            if r["steps"] == k and r["schedule"] in ("polar-express-rerun", "cans-rerun", "polar-express"):
                tag = {"polar-express-rerun": "RerunPe", "cans-rerun": "RerunCans", "polar-express": "Trunc"}
                out[f"search{tag[r['schedule']]}Cert{word}"] = r["certified_error"]
                out[f"search{tag[r['schedule']]}Meas{word}"] = (
                    r["measured_worst"] if math.isfinite(r["measured_worst"]) else r"\infty"
                )
    out["searchCertVerdict"] = _certified_verdict(rows, "published", "published schedule")
    for gen, tag in (("polar-express", "Pe"), ("cans", "Cans")):
        out[f"searchCertVerdictRerun{tag}"] = _certified_against(rows, f"{gen}-rerun")
    out["searchMeasVerdict"] = _measured_verdict(rows, "paired")
    out["searchMeasVerdictRerun"] = _measured_verdict(rows, "rerun")
    out["searchSignificanceSe"] = f"{SIGNIFICANCE_SE:g}"
    runs = {r["runs"] for r in rows}
    out["searchRuns"] = max(runs) if runs else 0
    for r in rows:
        if r["schedule"] == "nsiter-21mm-bf16":
            out["searchMixedWorst"] = r["measured_worst"]
            out["searchMixedSing"] = r["measured_singular"]
            out["searchMixedMean"] = r["measured_mean_error"]
            out["searchMixedSingDiff"] = r["paired_singular_diff"]  # signed: negative = ours lower
            out["searchMixedSingSe"] = r["paired_singular_se"]
            pe = next(q for q in rows if q["steps"] == r["steps"] and q["schedule"] == r["paired_vs"])
            out["searchPeSevenWorst"] = pe["measured_worst"]
            out["searchPeSevenSing"] = pe["measured_singular"]
            out["searchPeSevenMean"] = pe["measured_mean_error"]
    for c in tables.get("calibration", []):
        word = "abcdefghij"[int(c["steps"])]
        if c["chosen"]:
            out[f"searchCalib{word}"] = f"{c['safety']:g}"  # as printed, not rounded to 3 digits
            out[f"searchCalibErr{word}"] = c["mean_max_direction_error"]
        for f, tag in ((1.01, "Conv"), (1.1, "Ten")):
            if c["safety"] == f:
                out[f"searchCalib{tag}{word}"] = c["mean_max_direction_error"]
        if c["safety"] == 1.0:  # no safety factor: the worst run (overflows at 6-7 steps)
            v = c["max_direction_error"]
            out[f"searchCalibNoneWorst{word}"] = v if math.isfinite(v) else r"\infty"
    calib = tables.get("calibration", [])
    if calib:
        out["searchCalibRuns"] = calib[0]["runs"]
        chosen = {c["steps"]: c["mean_max_direction_error"] for c in calib if c["chosen"]}
        conv = [c["mean_max_direction_error"] / chosen[c["steps"]] - 1 for c in calib if c["safety"] == 1.01]
        out["searchCalibConvCost"] = f"{100 * max(conv):.1f}"  # percent, worst over the budgets
    # emulated against native bf16 GEMMs (rows that stay finite)
    rel = [
        abs(r[a] - r[b]) / r[a]
        for r in rows
        for a, b in (("measured_worst", "native_worst"), ("measured_singular", "native_singular"))
        if math.isfinite(r[a]) and r[a] < 10
    ]
    out["searchNativeRel"] = f"{100 * max(rel):.1f}"  # percent
    trade = tables.get("tradeoff", [])
    if trade:
        out["searchTradePubCertMin"] = min(t["published_certified_error"] for t in trade)
    for t in trade:
        word = "abcdefghij"[int(t["steps"])]
        out[f"searchTradeMean{word}"] = t["measured_mean_error"]
        out[f"searchTradeCert{word}"] = t["certified_error"]
        out[f"searchTradePubMean{word}"] = t["published_mean_error"]
        out[f"searchTradePubCert{word}"] = t["published_certified_error"]
    return out


def latex(tables) -> dict:
    from experiments.tables import latex_table, tex_number

    def num(x):
        return "div." if not math.isfinite(float(x)) else f"${tex_number(float(x))}$"

    def meas(x):  # a measured error above 10 means the iteration blew up
        return "div." if not math.isfinite(float(x)) or float(x) > 10 else f"${tex_number(float(x))}$"

    def paired(row, pre):
        if row.get("kind") != "nsiter" or not math.isfinite(float(row[f"{pre}_diff"])):
            return ""
        d = f"${tex_number(float(row[f'{pre}_diff']), 2)} \\pm {tex_number(float(row[f'{pre}_se']), 1)}$"
        return d + (r"\,n.s." if row[f"{pre}_verdict"] == "no significant difference" else "")

    rows = [dict(r, paired=paired(r, "paired"), rerun=paired(r, "rerun")) for r in tables["main"]]
    cols = [
        ("steps", "steps", None),
        ("matmuls", "mm", None),
        ("schedule", "schedule", None),
        ("certified_error", "certified", num),
        ("measured_worst", "bf16 worst", meas),
        ("measured_worst_run", "worst run", meas),
        ("measured_singular", r"$\max|\sigma-1|$", meas),
        ("measured_mean_error", "bf16 mean", meas),
        ("paired", "vs published", lambda s: s),
        ("rerun", "vs re-run", lambda s: s),
    ]
    return {"table": latex_table(rows, cols)}


if __name__ == "__main__":
    from experiments.__main__ import main

    sys.exit(main([NAME, *sys.argv[1:]]))
