"""Gram Newton–Schulz restarts: the rounding model of ``nsiter.restarts`` against measured runs.

For each schedule, working dtype (fp16, bf16) and hard spectrum (log-uniform down to 1e-3 and to 1e-10,
half rank deficient, three clusters down to 1e-6), every restart placement with at most
``max_restarts`` restarts is run by the Gram kernel (``orthogonalize(method="gram", restarts=...,
gram_dtype=dtype)``: ``R`` and ``Q`` in the working dtype, as in the published algorithm) on seeded
``m x n`` matrices, and its rounding error ``max ||X_T - X_T^(float64)||_2`` over the batch is set
beside the model's prediction for the same normalized band of singular values (table ``placements``).

The report table (``main``) compares, per schedule and dtype, the placement ``gram_restarts`` picks
(most accurate, worst case over ``[lo, hi]``; ``hi = 0.4``: Frobenius normalization leaves the largest
singular value near ``1 / sqrt(effective rank)``, 0.37 on these matrices, and ``hi = 1`` would
pretend rank one) and the default stored in the registry (``Schedule.restarts``) with the placement of the peer's rule, re-implemented here
from its description: push a fixed spurious Gram eigenvalue ``-4e-4`` (with the singular values
``logspace(0, -10)``) through the scalar maps and minimize the largest condition number of ``Q`` over
the steps, with the same number of restarts (``python -m gram_newton_schulz.autotune_restarts``,
Zhang, Amsel, Chen & Dao 2026, package ``gram-newton-schulz``).  When that package is installed its
own ``find_best_restarts`` runs too (column ``peer_package``) as a check of the re-implementation.
Measured errors of both and of the standard form, per spectrum; the peer's placement is measured also
through the peer's own Q ordering (``q_order="qz"``, column ``peer_measured_qz``).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python experiments/NAME.py`: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import contextlib
import io
import itertools
import math
import warnings

import numpy as np

NAME = "gram_restarts"
PARAMS = {
    "schedules": ["muon", "polar-express", "polar-express-5", "cesista-5", "nsiter-5step", "nsiter-7step"],
    "dtypes": ["fp16", "bf16"],
    "shape": [96, 384],
    "batch": 2,
    "spectra": ["logunif-1e-3", "logunif-1e-10", "rank-half", "clustered", "training"],
    "max_restarts": 2,
    "lo": 1e-3,
    "hi": 0.4,
    "restart_tolerance": 2.0,
    "peer_eigenvalue": -4e-4,
    "peer_points": 10000,
}
QUICK = {
    "schedules": ["muon", "polar-express-5"],
    "dtypes": ["fp16"],
    "shape": [16, 64],
    "spectra": ["logunif-1e-3"],
    "max_restarts": 1,
    "peer_points": 500,
}
SEED = 0
LIMITS = (1e-3, 1e3)  # the figure's axes: a value at or above the upper limit is drawn off scale
# the recorded training spectra (package data; not part of nsiter's source digest)
INPUTS = ("nsiter/data/train_muon_spectra.csv",)


def _matrix(spectrum: str, m: int, n: int, seed: int, batch: int):
    import torch

    from nsiter import matrices

    if spectrum == "logunif-1e-3":
        return matrices.log_uniform(m, n, 1e-3, seed, batch=batch)
    if spectrum == "logunif-1e-10":
        return matrices.log_uniform(m, n, 1e-10, seed, batch=batch)
    if spectrum == "rank-half":
        return matrices.rank_deficient(m, n, m // 2, seed, batch=batch)
    if spectrum == "clustered":
        return matrices.clustered(m, n, (1e-6, 1e-3, 1.0), seed, batch=batch)
    if spectrum == "training":  # a momentum spectrum recorded in training (nsiter.spectra, package data)
        return matrices.measured_matrix(shape=(m, n), seed=seed, batch=batch, dtype=torch.float64)
    raise ValueError(f"unknown spectrum {spectrum!r}")


def _band(G, sched) -> tuple[float, float]:
    """The normalized singular values of ``X_0`` (float64): (smallest nonzero or 0 when rank deficient, largest)."""
    import torch

    from nsiter.evaluate import normalize

    sv = torch.linalg.svdvals(normalize(G, sched.normalization, torch.float64))
    hi = float(sv.max())
    small = float(sv.min())
    return (0.0 if small < 1e-13 * hi else small), hi


def _error(X, ref) -> float:
    from nsiter.measure import rounding_error

    return rounding_error(X, ref)


def _measure(sched, G, dt: str, cands, qz=()) -> tuple[float, dict, dict]:
    import torch

    from nsiter.dtypes import torch_dtype
    from nsiter.evaluate import orthogonalize

    tdt = torch_dtype(dt)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # divergence is a measured result here
        ref = orthogonalize(G, sched, dtype=torch.float64, method="standard")
        std = _error(orthogonalize(G, sched, dtype=tdt, method="standard"), ref)
        gram = {
            rs: _error(orthogonalize(G, sched, dtype=tdt, method="gram", restarts=rs, gram_dtype=tdt), ref)
            for rs in cands
        }
        # the peer's placement also through the peer's own Q ordering (Q <- c_0 Q + Q W)
        gram_qz = {
            rs: _error(
                orthogonalize(G, sched, dtype=tdt, method="gram", restarts=rs, gram_dtype=tdt, q_order="qz"),
                ref,
            )
            for rs in qz
        }
    return std, gram, gram_qz


def peer_rule(sched, restarts: int, eigenvalue: float = -4e-4, points: int = 10000) -> tuple[int, ...]:
    """The peer's placement rule, re-implemented from its description (float64, numpy).

    Singular values ``x = logspace(0, -10, points)``; at the start and after each restart the Gram
    eigenvalues are ``x^2 + eigenvalue`` (``eigenvalue < 0``: a spurious negative one) and ``Q = 1``;
    each step multiplies ``Q`` by ``q_k(r)`` and maps ``r -> r q_k(r)^2``; a restart multiplies ``x`` by
    the segment's ``Q``.  The placement with exactly ``restarts`` restarts minimizing the largest
    ``max|Q| / min|Q|`` over the steps wins (first one on ties).
    """
    x0 = np.logspace(0, -10, points)
    best, best_cond = (), math.inf
    for cand in itertools.combinations(range(1, len(sched)), restarts):
        x, q, worst = x0.copy(), np.ones_like(x0), 1.0
        with np.errstate(over="ignore", invalid="ignore"):
            for k, p in enumerate(sched.steps):
                if k == 0 or k in cand:
                    if k:
                        x = x * q
                    r, q = x * x + eigenvalue, np.ones_like(x)
                z = np.polynomial.polynomial.polyval(r, p.coefficients)  # q_k(r)
                q = q * z
                r = r * z * z
                a = np.abs(q)
                cond = a.max() / a.min()
                worst = max(worst, cond) if np.isfinite(cond) else math.inf
        if worst < best_cond:
            best, best_cond = cand, worst
    return best


def _peer_package(sched, restarts: int, eigenvalue: float, points: int) -> str:
    """The installed peer's own autotuner on the same inputs (its progress output swallowed); '' if absent."""
    try:
        from gram_newton_schulz.restart_autotune import find_best_restarts
    except ImportError:
        return ""
    from nsiter.restarts import label

    if any(len(p.coefficients) != 3 for p in sched.steps):
        return "n/a (quintics only)"
    coefs = [tuple(p.coefficients) for p in sched.steps]
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            out = find_best_restarts(np.logspace(0, -10, points), coefs, eigenvalue, num_restarts=restarts)
        except ValueError:
            return "blowup"
    return label(out)


def _unit(ctx, name: str, dt: str, spectrum: str) -> list[dict]:
    from nsiter import load_schedule
    from nsiter.restarts import gram_restarts, label, placements

    p = ctx.params
    sched = load_schedule(name)
    m, n = p["shape"]
    G = _matrix(spectrum, m, n, ctx.seed, p["batch"])
    lo, hi = _band(G, sched)
    cands = placements(len(sched), p["max_restarts"])
    k = min(p["max_restarts"], len(sched) - 1)
    peer = peer_rule(sched, k, p["peer_eigenvalue"], p["peer_points"])
    std, gram, gram_qz = _measure(sched, G, dt, cands, qz=[peer])
    res = gram_restarts(sched, dtype=dt, max_restarts=p["max_restarts"], lo=lo, hi=hi)
    std_pred, preds = res.standard, res.table
    return [
        {
            "schedule": name,
            "dtype": dt,
            "spectrum": spectrum,
            "m": m,
            "n": n,
            "lo": lo,
            "hi": hi,
            "restarts": label(pe.restarts),
            "n_restarts": len(pe.restarts),
            "predicted": pe.error,
            "predicted_peak": pe.peak,
            "predicted_overflow": pe.overflow,
            "measured": gram[pe.restarts],
            "measured_qz": gram_qz.get(pe.restarts),
            "standard_predicted": std_pred,
            "standard_measured": std,
        }
        for pe in preds
    ]


def _report(ctx, placements_rows: list[dict]) -> list[dict]:
    from nsiter import load_schedule
    from nsiter.restarts import SAFE_LO, gram_restarts, label

    p = ctx.params
    rows = []
    for name in p["schedules"]:
        sched = load_schedule(name)
        k = min(p["max_restarts"], len(sched) - 1)
        peer = label(peer_rule(sched, k, p["peer_eigenvalue"], p["peer_points"]))
        package = _peer_package(sched, k, p["peer_eigenvalue"], p["peer_points"])
        for dt in p["dtypes"]:
            res = gram_restarts(
                sched,
                dtype=dt,
                max_restarts=p["max_restarts"],
                lo=p["lo"],
                hi=p["hi"],
                restart_tolerance=p["restart_tolerance"],
            )
            ours = label(res.best.restarts)
            cheapest = "" if res.cheapest is None else label(res.cheapest.restarts)
            # the same search modelled from exact zeros up (as method="auto" decides)
            res0 = gram_restarts(
                sched,
                dtype=dt,
                max_restarts=p["max_restarts"],
                lo=SAFE_LO,
                hi=p["hi"],
                restart_tolerance=p["restart_tolerance"],
            )
            ours0 = label(res0.best.restarts)
            for spectrum in p["spectra"]:
                sel = {
                    r["restarts"]: r
                    for r in placements_rows
                    if (r["schedule"], r["dtype"], r["spectrum"]) == (name, dt, spectrum)
                }
                best_measured = min(sel.values(), key=lambda r: (r["measured"], r["restarts"]))
                rows.append(
                    {
                        "schedule": name,
                        "dtype": dt,
                        "spectrum": spectrum,
                        "ours": ours,
                        "ours_predicted_worst": res.best.error,
                        "ours_cheapest": cheapest,
                        "standard_predicted_worst": res.standard,
                        "registry": label(sched.restarts),
                        "registry_measured": sel[label(sched.restarts)]["measured"]
                        if label(sched.restarts) in sel
                        else None,
                        "peer": peer,
                        "peer_package": package,
                        "ours_measured": sel[ours]["measured"],
                        "ours_from0": ours0,
                        "ours_from0_predicted_worst": res0.best.error,
                        "standard_from0_predicted_worst": res0.standard,
                        "ours_from0_measured": sel[ours0]["measured"],
                        "peer_measured": sel[peer]["measured"],
                        "peer_measured_qz": sel[peer]["measured_qz"],
                        "none_measured": sel["-"]["measured"],
                        "standard_measured": best_measured["standard_measured"],
                        "best_measured": best_measured["measured"],
                        "best_measured_restarts": best_measured["restarts"],
                    }
                )
    return rows


def compute(ctx) -> dict:
    p = ctx.params
    rows = []
    for name, dt, spectrum in itertools.product(p["schedules"], p["dtypes"], p["spectra"]):
        rows += ctx.unit((name, dt, spectrum), lambda a=name, b=dt, c=spectrum: _unit(ctx, a, b, c))
    return {"main": _report(ctx, rows), "placements": rows, "verdicts": _verdicts(ctx, rows)}


def _verdicts(ctx, placements_rows: list[dict]) -> list[dict]:
    """``method="auto"``'s accuracy rule against the measurement, per (schedule, dtype, placement): the
    modelled error over the standard form's on ``[lo, 1/scale]`` from 0 (``nsiter.restarts.SAFE_LO``, what
    auto uses) and from ``lo``, and the worst measured ratio over the spectra.  Accepted: modelled at most
    ``tol``; wrongly so when the measured ratio exceeds ``tol``."""
    from nsiter import load_schedule
    from nsiter.restarts import SAFE_LO, gram_restarts, label

    p = ctx.params
    rows = []
    for name, dt in itertools.product(p["schedules"], p["dtypes"]):
        sched = load_schedule(name)
        hi = 1.0 / sched.normalization.scale
        models = {
            lo: gram_restarts(
                sched,
                dtype=dt,
                max_restarts=p["max_restarts"],
                lo=lo,
                hi=hi,
                restart_tolerance=p["restart_tolerance"],
            )
            for lo in (SAFE_LO, p["lo"])
        }
        for k, placement in enumerate(models[SAFE_LO].table):
            runs = [
                r["measured"] / r["standard_measured"]
                for r in placements_rows
                if (r["schedule"], r["dtype"], r["restarts"]) == (name, dt, label(placement.restarts))
            ]
            rows.append(
                {
                    "schedule": name,
                    "dtype": dt,
                    "restarts": label(placement.restarts),
                    "model_from0": placement.error / models[SAFE_LO].standard,
                    "model_from_lo": models[p["lo"]].table[k].error / models[p["lo"]].standard,
                    "measured_worst": max(v if math.isfinite(v) else math.inf for v in runs),
                }
            )
    return rows


def rule_agreement(rows: list[dict], tol: float) -> dict:
    """How often the accuracy rule accepts a placement whose measured worst ratio exceeds ``tol`` (wrongly)
    and rejects one within it (a lost speedup), modelled from 0 and from ``lo``."""
    out = {"count": len(rows)}
    for key in ("model_from0", "model_from_lo"):
        accept = [r for r in rows if r[key] <= tol]
        out[f"{key}_accepted"] = len(accept)
        out[f"{key}_false_accepts"] = sum(not r["measured_worst"] <= tol for r in accept)
        out[f"{key}_false_rejects"] = sum(r["measured_worst"] <= tol for r in rows if not r[key] <= tol)
    return out


def model_quality(rows: list[dict]) -> dict:
    """How well the model predicts: ratios predicted/measured (finite, unsaturated cases), the
    Spearman rank correlation per (schedule, dtype, spectrum), the measured rank of the predicted best
    placement, and agreement on overflow/divergence."""
    from scipy.stats import spearmanr

    ratios, rhos, ranks, agree, total = [], [], [], 0, 0
    keyf = lambda r: (r["schedule"], r["dtype"], r["spectrum"])  # noqa: E731
    for _, grp in itertools.groupby(sorted(rows, key=keyf), key=keyf):
        grp = list(grp)
        for r in grp:
            bad_m = not (r["measured"] < 1.0)  # diverged, overflowed or lost every digit
            bad_p = not (r["predicted"] < 1.0)
            agree += bad_m == bad_p
            total += 1
            if not bad_m and not bad_p:
                ratios.append(r["predicted"] / r["measured"])
        meas = [min(r["measured"], 1e9) for r in grp]
        pred = [min(r["predicted"], 1e9) for r in grp]
        if len(grp) > 2 and len(set(meas)) > 1 and len(set(pred)) > 1:
            rhos.append(float(spearmanr(meas, pred).correlation))
        best = min(grp, key=lambda r: (r["predicted"], r["n_restarts"], r["restarts"]))
        order = sorted(meas)
        ranks.append(order.index(min(best["measured"], 1e9)))
    lr = np.log(ratios) if ratios else np.array([math.nan])
    return {
        "ratio_median": float(np.exp(np.median(lr))),
        "ratio_q05": float(np.exp(np.quantile(lr, 0.05))),
        "ratio_q95": float(np.exp(np.quantile(lr, 0.95))),
        "ratio_count": len(ratios),
        "spearman_mean": float(np.mean(rhos)) if rhos else math.nan,
        "spearman_min": float(np.min(rhos)) if rhos else math.nan,
        "best_rank_mean": float(np.mean(ranks)),
        "best_rank_max": int(np.max(ranks)),
        "failure_agreement": agree / total,
    }


def worst_ratios(rows: list[dict]) -> list[dict]:
    """Per (schedule, dtype): each placement's worst measured error over the spectra, as a multiple of
    the standard form's on the same matrices (``inf`` on overflow)."""
    out = []
    keyf = lambda r: (r["schedule"], r["dtype"])  # noqa: E731
    for (name, dt), grp in itertools.groupby(rows, key=keyf):
        grp = list(grp)

        def worst(col: str, grp=grp) -> float:
            vals = [r[col] / r["standard_measured"] for r in grp if r[col] is not None]
            return max(v if math.isfinite(v) else math.inf for v in vals) if vals else math.nan

        first = grp[0]
        out.append(
            {
                "schedule": name,
                "dtype": dt,
                "ours": first["ours"],
                "ours_from0": first["ours_from0"],
                "peer": first["peer"],
                "registry": first["registry"],
                "ours_worst": worst("ours_measured"),
                "ours_from0_worst": worst("ours_from0_measured"),
                "peer_worst": worst("peer_measured"),
                "peer_qz_worst": worst("peer_measured_qz"),
                "registry_worst": worst("registry_measured"),
                "none_worst": worst("none_measured"),
            }
        )
    return out


def numbers(tables) -> dict:
    q = model_quality(tables["placements"])
    w = worst_ratios(tables["main"])
    a = rule_agreement(tables["verdicts"], PARAMS["restart_tolerance"])
    narrow = max(w, key=lambda r: (r["ours_worst"], r["schedule"], r["dtype"]))
    return {
        "restartRatioMedian": q["ratio_median"],
        "restartRatioLow": q["ratio_q05"],
        "restartRatioHigh": q["ratio_q95"],
        "restartSpearman": q["spearman_mean"],
        "restartBestRank": q["best_rank_mean"],
        "restartSpectra": len(PARAMS["spectra"]),
        "restartNarrowWorst": narrow["ours_worst"],
        "restartNarrowWorstSchedule": f"{narrow['schedule']} ({narrow['dtype']})",
        "restartSafeWorst": max(r["ours_from0_worst"] for r in w),
        "restartPeerWorst": max(r["peer_worst"] for r in w),
        "restartPeerQzWorst": max(r["peer_qz_worst"] for r in w),
        "restartPeerQzBetter": sum(r["peer_qz_worst"] < r["peer_worst"] for r in w),
        "restartOursBetter": sum(r["ours_from0_worst"] < r["peer_worst"] for r in w),
        "restartPairs": len(w),
        "restartVerdicts": a["count"],
        "restartFalseAcceptSafe": a["model_from0_false_accepts"],
        "restartFalseAcceptNarrow": a["model_from_lo_false_accepts"],
        "restartFalseRejectSafe": a["model_from0_false_rejects"],
        "restartAcceptedSafe": a["model_from0_accepted"],
    }


def latex(tables) -> dict:
    from experiments.tables import latex_table, tex_number

    def ratio(v):
        return "overflow" if v is None or not math.isfinite(v) else f"${tex_number(v, 2)}$"

    rows = worst_ratios(tables["main"])
    cols = [
        ("schedule", "schedule", None),
        ("dtype", "dtype", None),
        ("ours", "ours, $[10^{-3}, 0.4]$", None),
        ("ours_from0", "ours, $[0, 0.4]$", None),
        ("peer", "peer rule", None),
        ("registry", "registry", None),
        ("ours_worst", "worst, ours $10^{-3}$", ratio),
        ("ours_from0_worst", "worst, ours $0$", ratio),
        ("peer_worst", "worst, peer", ratio),
        ("peer_qz_worst", "peer, qz order", ratio),
        ("registry_worst", "worst, registry", ratio),
        ("none_worst", "no restart", ratio),
    ]
    return {"table": latex_table(rows, cols)}


def plot(tables, ctx):
    """Predicted against measured rounding error, one point per placement; nothing is dropped.

    A value off the log axes (at or above ``LIMITS[1]``, infinite from an overflow, or NaN) is drawn open
    on a grey strip beyond that edge; the legend counts them per dtype and strip (right: measured off
    scale, top: predicted, corner: both) and says how many are infinite.
    """
    import matplotlib.pyplot as plt

    from nsiter.plot import use_style

    use_style()
    rows = tables["placements"]
    lo, hi = LIMITS
    strip = hi * 4  # where an off-scale value is drawn

    def shown(v, at):
        return v if v < hi else at  # NaN and inf compare False: off scale too

    fig, ax = plt.subplots(figsize=(5.4, 5.6), layout="constrained")
    ax.axvspan(hi, strip * 4, color="0.92", lw=0, zorder=0)
    ax.axhspan(hi, strip * 4, color="0.92", lw=0, zorder=0)
    for dt, marker, color, at in (
        ("fp16", "o", "#0072B2", strip / 1.5),
        ("bf16", "s", "#D55E00", strip * 1.5),
    ):
        sel = [r for r in rows if r["dtype"] == dt]
        if not sel:
            continue
        inside = [r for r in sel if r["measured"] < hi and r["predicted"] < hi]
        ax.scatter(
            [r["measured"] for r in inside],
            [r["predicted"] for r in inside],
            s=10,
            marker=marker,
            color=color,
            alpha=0.6,
            label=f"{dt}: {len(inside)} placements on scale",
        )
        off = [r for r in sel if not (r["measured"] < hi and r["predicted"] < hi)]
        if not off:
            continue
        right = sum(r["predicted"] < hi for r in off)
        top = sum(r["measured"] < hi for r in off)
        infinite = sum(not (math.isfinite(r["measured"]) and math.isfinite(r["predicted"])) for r in off)
        ax.scatter(
            [shown(r["measured"], at) for r in off],  # each dtype on its own line of the strip
            [shown(r["predicted"], at) for r in off],
            s=22,
            marker=marker,
            facecolors="none",
            edgecolors=color,
            linewidths=0.9,
            label=(
                f"{dt}: {len(off)} off scale ($\\geq 10^{{{round(math.log10(hi))}}}$ or inf; {infinite} inf): "
                f"{right} right, {top} top, {len(off) - right - top} in the corner"
            ),
        )
    ax.plot([lo, hi], [lo, hi], "k-", lw=0.8, label="predicted = measured")
    for f in (1 / 3, 3):
        ax.plot([lo, hi], [f * lo, f * hi], "k:", lw=0.6, label="a factor 3 either way" if f == 3 else None)
    ax.set(xscale="log", yscale="log", xlim=(lo, strip * 4), ylim=(lo, strip * 4))
    ticks = [10.0**k for k in range(round(math.log10(lo)), round(math.log10(hi)) + 1)]
    labels = [f"$10^{{{round(math.log10(t))}}}$" for t in ticks]
    ax.set_xticks([*ticks, strip], [*labels, "off\nscale"])
    ax.set_yticks([*ticks, strip], [*labels, "off scale"])
    ax.minorticks_off()
    ax.set_xlabel(r"measured rounding error $\max\,\|X_T - X_T^{(64)}\|_2$ (Gram form)")
    ax.set_ylabel("predicted rounding error (restart rounding model)")
    ax.set_title(f"Gram restarts: the rounding model against {len(rows)} measured placements", fontsize=10)
    fig.legend(loc="outside lower center", fontsize=7, ncols=1)
    return fig


if __name__ == "__main__":
    from experiments.__main__ import main

    sys.exit(main([NAME, *sys.argv[1:]]))
