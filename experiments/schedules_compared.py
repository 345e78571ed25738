"""Every published registry schedule: certified worst-case error per step on [lo, 1] next to measured bf16 error.

Certified: ``nsiter.analysis.analyze(schedule, lo / s, hi / s)`` gives ``max |1 - phi_k(x)|`` per step for
the normalized singular values ``x = sigma / (s ||G||_2)`` of inputs with ``sigma / ||G||_2`` in
``[lo, hi]`` (``s``: the schedule's normalization scale, ``Normalization.polynomial_interval``; exact image
intervals, no sampling).  Measured: ``nsiter.measure.measure`` in bfloat16 on matrices from
``nsiter.matrices.log_uniform`` (singular values log-spaced in ``[lo, 1]``), error
``max_i |1 - sigma_i(X_k)|`` (float64 SVD of the iterate), the maximum over shapes and seeds.

So that the measured inputs fill the certified interval, the measured runs normalize by the exact
spectral norm (``||G||_2 = hi`` by construction) times the schedule's own safety factor ``s``, i.e.
``X_0 = G / (s ||G||_2)``, instead of by the Frobenius norm: Frobenius normalization of an ``n x n``
matrix shrinks the spectrum by up to ``sqrt(n)`` and would push the smallest singular values below ``lo``.
(It is passed as a Frobenius normalization with ``scale = s ||G||_2 / ||G||_F``.  The evaluator's
power-iteration estimate of ``||G||_2`` is not used: on these spectra the top two singular values differ by
about 5%, the estimate comes out low, and ``sigma_max(X_0) > 1`` sends the first step of Polar Express
outside its interval.)  Schedules with a non-Frobenius normalization (the AOL rescaling of Turbo-Muon)
keep their own.  A matrix whose run diverges counts as an infinite error from the step it diverged.

The same runs in float64 (``reference_error``) check the certificate: these runs normalize exactly
(``eps = 0``), so the float64 error can exceed the certified one only by float64 rounding (of order
``1e-14``), and it reaches it when the worst case sits at an endpoint, as for Muon at ``x = lo``.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python experiments/NAME.py`: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import math

from nsiter import available_schedules, load_schedule
from nsiter.analysis import analyze
from nsiter.measure import log_uniform_cases, measure

NAME = "schedules_compared"
PARAMS = {
    "schedules": "all",  # every registry schedule, or a list of names
    "exclude_kinds": ["search"],  # nsiter's own search winners are compared in search_results
    "lo": 1e-3,
    "hi": 1.0,
    "shapes": [[128, 128], [96, 384]],
    "seeds": [0, 1, 2],
    "dtype": "bfloat16",
    "reference_dtype": "float64",  # the same runs in float64: exact arithmetic up to 1e-15, <= certified
}
QUICK = {"schedules": ["muon", "polar-express", "turbo-muon"], "shapes": [[16, 16]], "seeds": [0]}


def _measure(ctx, name: str) -> list[dict]:
    p = ctx.params
    sched = load_schedule(name)
    own = sched.normalization
    cases = log_uniform_cases(p["shapes"], p["seeds"], p["lo"], p["hi"])
    errors: dict[int, list[float]] = {}
    reference: dict[int, list[float]] = {}
    diverged = False
    for dtype, out in ((p["dtype"], errors), (p["reference_dtype"], reference)):
        # exact spectral normalization with the schedule's own safety factor (AOL keeps its own)
        m = measure(sched, cases, dtype=dtype, every_step=True, quantities=("sigma_max", "sigma_min"))
        diverged |= m.diverged and out is errors
        for row in m.rows:
            if row["diverged"] and not math.isfinite(row["sigma_max"]):
                continue  # a non-finite iterate: counted as an infinite error below
            out.setdefault(row["step"], []).append(max(abs(1 - row["sigma_max"]), abs(1 - row["sigma_min"])))
    # the polynomials see sigma / (s ||G||_2) in [lo / s, hi / s] (AOL has no scalar model: its own [lo, hi])
    a = analyze(
        sched, *(own.polynomial_interval(p["lo"], p["hi"]) if own.norm != "aol" else (p["lo"], p["hi"]))
    )
    certified = {st.step: st.error for st in a.bands}
    cost = [sched.truncated(k).matmuls if k else 0 for k in range(len(sched) + 1)]
    runs = len(p["shapes"]) * len(p["seeds"])
    rows = []
    for k in range(len(sched) + 1):
        meas = errors.get(k, []) + [float("inf")] * (runs - len(errors.get(k, [])))
        ref = reference.get(k, []) + [float("inf")] * (runs - len(reference.get(k, [])))
        rows.append(
            {
                "schedule": name,
                "step": k,
                "matmuls": cost[k],
                "certified_error": certified.get(k),
                "measured_error": max(meas) if meas else None,
                "measured_error_mean": sum(meas) / len(meas) if meas else None,
                "reference_error": max(ref) if ref else None,
                "scale": own.scale,
                "certified_diverged": a.diverged,
                "measured_diverged": diverged,
                "normalization": "spectral (exact)" if own.norm == "frobenius" else own.norm,
            }
        )
    return rows


def compute(ctx) -> list[dict]:
    rows = []
    names = available_schedules() if ctx.params["schedules"] == "all" else ctx.params["schedules"]
    for name in names:
        if load_schedule(name).provenance.kind in ctx.params["exclude_kinds"]:
            continue
        rows += ctx.unit(name, lambda name=name: _measure(ctx, name))
    return rows


# how each schedule was built: one panel per family, so that every series in a panel has its own colour
FAMILIES = {
    "Newton-Schulz (Pade)": ("cubic", "quintic"),
    "Muon quintic": ("muon", "deepseek-v4"),
    "Polar Express": ("polar-express", "polar-express-5", "polar-express-gram"),
    "CANS": ("cans-5", "cans-5-nemo"),
    "tuned per step": ("cesista-5", "jiacheng-6", "relaxed-cubic-5"),
    "AOL (Turbo-Muon)": ("turbo-muon", "turbo-muon-7-decimals", "turbo-muon-v0-rowscale"),
}


def _not_certified(row: dict) -> bool:
    """AOL rescaling is no scalar map of the singular values: its interval analysis certifies nothing."""
    return row["normalization"] == "aol"


def _aol_panel(ax, rows: list[dict], members: list[str]) -> None:
    """Turbo-Muon's schedules on their own linear scale: measured bf16 error (dashed), and the scalar interval
    analysis that ignores the AOL preconditioning (dotted, crosses), which certifies nothing for the
    schedule as run.  Each legend entry gives the series' values at its last step."""
    from matplotlib.lines import Line2D

    from nsiter.plot import schedule_comparison, series_styles

    styles = series_styles(members)
    schedule_comparison(rows, ax, x="matmuls", certified=None, legend=False)
    handles = []
    for n in members:
        pts = sorted((r["matmuls"], r["certified_error"]) for r in rows if r["schedule"] == n)
        kept = [(m, v) for m, v in pts if v is not None and math.isfinite(v)]
        ax.plot(*zip(*kept, strict=True), ls=":", marker="x", ms=5, color=styles[n]["color"], lw=1.2)
        last = max(r["matmuls"] for r in rows if r["schedule"] == n)
        meas = next(r["measured_error"] for r in rows if r["schedule"] == n and r["matmuls"] == last)
        scalar = f"{kept[-1][1]:.2f}" if kept[-1][0] == last else f"leaves its bounds after {kept[-1][0]:g}"
        label = f"{n}\n   at {last:g}: measured {meas:.2f}, scalar {scalar}"
        handles.append(Line2D([], [], color=styles[n]["color"], marker=styles[n]["marker"], label=label))
    handles += [
        Line2D([], [], color="0.3", ls="--", label="measured bf16 error"),
        Line2D(
            [],
            [],
            color="0.3",
            ls=":",
            marker="x",
            label="scalar analysis without AOL:\nnot certified for the schedule as run",
        ),
    ]
    ax.legend(handles=handles, fontsize=6.5, loc="upper right")
    ax.set_yscale("linear")
    ax.set_ylim(0.8, 1.7)
    ax.set_title("AOL (Turbo-Muon): own linear y scale", fontsize=10, pad=10)


def plot(tables, ctx):
    import matplotlib.pyplot as plt

    from nsiter.plot import schedule_comparison, use_style

    use_style()
    rows = tables["main"]
    names = list(dict.fromkeys(r["schedule"] for r in rows))
    family = {n: f for f, members in FAMILIES.items() for n in members}
    panels = [f for f in FAMILIES if any(family.get(n) == f for n in names)]
    panels += ["other"] if any(n not in family for n in names) else []
    ncols = 3
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(12.5, 3.4 * nrows), layout="constrained", sharex=True, squeeze=False
    )
    top = 10.0
    for i, (ax, fam) in enumerate(zip(axes.flat, panels, strict=False)):
        members = [n for n in names if family.get(n, "other") == fam]
        sub = [r for r in rows if r["schedule"] in members]
        if any(_not_certified(r) for r in sub):  # AOL: no certificate; its own scale, to tell them apart
            _aol_panel(ax, sub, members)
            ax.set_ylabel(r"error $\max |1 - \sigma|$")
        else:
            schedule_comparison(sub, ax, x="matmuls", top=top)
            ax.set_ylim(1e-4, top)
            ax.set_ylabel(r"error $\max |1 - \sigma|$" if i % ncols == 0 else "")
            if i % ncols:
                ax.tick_params(labelleft=False)
        if not ax.get_title():
            ax.set_title(fam, pad=10)
        ax.set_xlabel("matrix multiplications")
        ax.tick_params(labelbottom=True)
    for ax in list(axes.flat)[len(panels) :]:
        ax.remove()
    fig.suptitle(
        rf"Published schedules by family: certified worst case on $[{ctx.params['lo']:g}, 1]$ (solid) "
        "and measured bf16 error (dashed)",
        fontsize=10,
    )
    return fig


def _final(tables) -> list[dict]:
    rows = tables["main"]
    last = {}
    for r in rows:
        if r["step"] >= last.get(r["schedule"], {"step": -1})["step"]:
            last[r["schedule"]] = r
    return list(last.values())


def latex(tables) -> dict:
    from experiments.tables import latex_table, tex_number

    def num(v):
        return "--" if v is None else f"${tex_number(v, 2)}$"

    def flag(r):
        return r"\,(div.)" if r["certified_diverged"] else ""

    def cert(r):
        if _not_certified(r):  # the scalar analysis, in brackets: no certificate for the schedule as run
            return "not cert." + ("" if r["certified_error"] is None else f" ({num(r['certified_error'])})")
        return num(r["certified_error"]) + flag(r)

    rows = [dict(r, cert=cert(r)) for r in _final(tables)]
    rows.sort(key=lambda r: (r["matmuls"], r["schedule"]))
    cols = [
        ("schedule", "schedule", None),
        ("step", "steps", None),
        ("matmuls", "matmuls", None),
        ("cert", "certified error", None),
        ("measured_error", "measured bf16 error", num),
    ]
    return {"table": latex_table(rows, cols)}


def numbers(tables) -> dict:
    final = {r["schedule"]: r for r in _final(tables)}
    out = {}
    for name, macro in (
        ("muon", "Muon"),
        ("polar-express", "PolarExpress"),
        ("polar-express-5", "PolarExpressFive"),
    ):
        if name in final:
            out[f"cmp{macro}Certified"] = final[name]["certified_error"]
            out[f"cmp{macro}Measured"] = final[name]["measured_error"]
            out[f"cmp{macro}Reference"] = final[name]["reference_error"]
    exact = [
        r
        for r in tables["main"]
        if r["normalization"].startswith("spectral")
        and r["certified_error"] is not None
        and r["reference_error"] is not None
    ]
    out["cmpReferenceExcess"] = max(r["reference_error"] - r["certified_error"] for r in exact)
    return out


if __name__ == "__main__":
    from experiments.__main__ import main

    sys.exit(main([NAME, *sys.argv[1:]]))
