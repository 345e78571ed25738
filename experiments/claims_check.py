"""Claims check: five claims made about Muon's coefficients, tested with numbers.

Claims, as stated by their author (quoted):

1. ``(3.4445, -4.7750, 2.0315)`` "are precisely the rational Padé (1,2)-truncation" of the inverse square
   root from Hale, Higham & Trefethen (2008), "the exact third-order Newton–Schulz recurrence".
2. After five steps "the singular values sigma_i(U) in [1 - delta, 1 + delta] where delta ~ 1e-3".
3. "convergence order is three" (implied: the iteration converges to the orthogonal factor).
4. The Frobenius normalization gives ``||X_0 - U||_2 <= 1`` "so that Newton–Schulz converges".
5. The heatmap of ``|X_5 X_5^T|`` for the 10 x 6 example "should approach identity".

Tests: the exact Padé family ``[l/m]`` (``nsiter.symbolic.pade_iteration``; Kenney & Laub 1991) — every
member fixes ``x = 1``; Muon's ``p(1)`` and its coefficients against the ``[2/0]`` member (the truncation in
``xi = 1 - x^2``) and against the Taylor truncation of the ``[1/2]`` member at ``x = 0``; Muon's certified
5-step band on ``[lo, 1]`` and its attracting band (``nsiter.analysis``); Muon's fixed points and its cycles
of every period (orbit search, proved by Krawczyk's test: ``nsiter.dynamics``);
measured bf16 bands (``nsiter.orthogonalize`` + float64 SVD) on the notes' two matrices and on random
log-uniform and gradient-like matrices with Muon's own Frobenius normalization.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python experiments/NAME.py`: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import re

import sympy as sp
import torch

from experiments import muon_singular_values, muon_spectral_distance
from experiments.notes import notes_spectrum
from nsiter import load_schedule, orthogonalize
from nsiter.analysis import analyze
from nsiter.dynamics import attractor, fixed_points
from nsiter.matrices import gradient_like, log_uniform, with_spectrum
from nsiter.measure import Case, measure
from nsiter.symbolic import pade_iteration, pade_xi_truncation, taylor_odd_coefficients, x

NAME = "claims_check"
PARAMS = {
    "lo": 1e-3,
    "steps": 5,
    "delta": 1e-3,
    "pade": [[1, 0], [2, 0], [0, 1], [1, 1], [0, 2], [2, 1], [1, 2]],
    "attractor_steps": 200,
    "random_shapes": [[256, 256], [128, 512]],
    "seeds": [0, 1, 2],
    # the rules that turn numbers into verdicts (see _verdicts)
    "coefficient_tolerance": 5e-5,  # half a unit in the 4th decimal: how Muon's coefficients are published
    "refute_factor": 10.0,  # a claimed error bound is refuted when both errors exceed it by this factor
    "fixed_point_tolerance": 1e-12,  # |p(1) - 1| above this: 1 is not a fixed point
    "projector_eigenvalue": 0.1,  # eigenvalues of X X^T below this are zeros (Muon's band keeps sigma^2 >= 0.46)
}
QUICK = {"pade": [[2, 0], [1, 2]], "attractor_steps": 40, "random_shapes": [[32, 32]], "seeds": [0]}
# the notes' two matrices are built from these experiments' parameters: their source is an input
INPUTS = ("experiments/muon_singular_values.py", "experiments/muon_spectral_distance.py")


def _pade_rows(ctx) -> list[dict]:
    muon = list(load_schedule("muon")[0].coefficients)
    rows = []
    for l, m in ctx.params["pade"]:  # noqa: E741
        r = pade_iteration(l, m)
        taylor = [float(c) for c in taylor_odd_coefficients(r, 5)]
        trunc = [float(c) for c in pade_xi_truncation(l, m, 2)]
        rows.append(
            {
                "iteration": f"[{l}/{m}]",
                "value_at_1": float(r.subs(x, 1)),
                "slope_at_0": float(sp.diff(r, x).subs(x, 0)),
                "taylor_c1": taylor[0],
                "taylor_c3": taylor[1],
                "taylor_c5": taylor[2],
                "xi_trunc_c1": trunc[0],
                "xi_trunc_c3": trunc[1],
                "xi_trunc_c5": trunc[2],
                "taylor_dist_to_muon": max(abs(a - b) for a, b in zip(taylor, muon, strict=True)),
                "xi_trunc_dist_to_muon": max(abs(a - b) for a, b in zip(trunc, muon, strict=True)),
            }
        )
    p = load_schedule("muon")[0]
    rows.append(
        {
            "iteration": "muon",
            "value_at_1": float(p(1.0)),
            "slope_at_0": p.slope_at_zero,
            "taylor_c1": muon[0],
            "taylor_c3": muon[1],
            "taylor_c5": muon[2],
        }
    )
    return rows


def _matrices(ctx):
    p = ctx.params
    # the notes' two examples, as the experiments that redraw them build them
    for module in (muon_singular_values, muon_spectral_distance):
        m, n = module.PARAMS["shape"]
        yield f"notes {m}x{n}", with_spectrum(m, n, notes_spectrum(module.PARAMS), module.SEED)
    for m, n in p["random_shapes"]:
        for seed in p["seeds"]:
            yield f"log-uniform {m}x{n}", log_uniform(m, n, p["lo"], seed)
            yield f"gradient-like {m}x{n}", gradient_like(m, n, seed=seed)


def _measured_rows(ctx) -> list[dict]:
    rows = []
    T = ctx.params["steps"]
    muon = load_schedule("muon")
    for label, G in _matrices(ctx):
        # Muon's own Frobenius normalization, bf16, as in training; X_0 itself in exact (float64) arithmetic
        xT = measure("muon", [Case.of(G, label)], dtype="bfloat16", normalization="schedule", steps=T).rows[
            -1
        ]
        s0 = torch.linalg.svdvals(G / (torch.linalg.matrix_norm(G) + muon.normalization.eps))
        rows.append(
            {
                "matrix": label,
                "shape": "x".join(map(str, G.shape)),
                "x0_sigma_max": float(s0.max()),
                "x0_sigma_min": float(s0.min()),
                "sigma_min": xT["sigma_min"],
                "sigma_max": xT["sigma_max"],
                "error": xT["max_singular_error"],
            }
        )
    return rows


def _band_rows(ctx) -> list[dict]:
    p = ctx.params
    muon = load_schedule("muon")
    rows = []
    for band in analyze(muon, p["lo"], 1.0, steps=p["steps"]).bands:
        rows.append(
            {"kind": "certified", "step": band.step, "lo": band.lo, "hi": band.hi, "error": band.error}
        )
    tail = analyze(muon, p["lo"], 1.0, steps=p["attractor_steps"]).final
    rows.append({"kind": "attracting", "step": tail.step, "lo": tail.lo, "hi": tail.hi, "error": tail.error})
    for fp in fixed_points(muon[0]):
        rows.append(
            {
                "kind": f"fixed point ({fp.stability})",
                "step": None,
                "lo": fp.x,
                "hi": fp.x,
                "error": fp.multiplier,
            }
        )
    for cyc in attractor(muon[0]).cycles:  # every cycle of Muon's map, proved (Krawczyk) with its multiplier
        rows.append(
            {
                "kind": f"{cyc.period}-cycle ({cyc.stability}, {cyc.proof or 'unproved'})",
                "step": None,
                "lo": min(cyc.points),
                "hi": max(cyc.points),
                "error": cyc.multiplier,
            }
        )
    return rows


def _projector_rows(ctx) -> list[dict]:
    p = muon_singular_values.PARAMS
    G = with_spectrum(*p["shape"], notes_spectrum(p), muon_singular_values.SEED)
    X = orthogonalize(G, "muon", dtype=torch.bfloat16, method="standard").to(torch.float64)
    eig_big = torch.linalg.eigvalsh(X @ X.T)
    eig_small = torch.linalg.eigvalsh(X.T @ X)
    return [{"gram": "X X^T (10x10)", "index": i, "eigenvalue": float(v)} for i, v in enumerate(eig_big)] + [
        {"gram": "X^T X (6x6)", "index": i, "eigenvalue": float(v)} for i, v in enumerate(eig_small)
    ]


def compute(ctx) -> dict:
    # exact (sympy) and certified (interval) rows are the same on every machine; the bf16 ones are not
    pade = ctx.unit("pade", lambda: _pade_rows(ctx), machine_dependent=False)
    bands = ctx.unit("bands", lambda: _band_rows(ctx), machine_dependent=False)
    measured = ctx.unit("measured", lambda: _measured_rows(ctx))
    projector = ctx.unit("projector", lambda: _projector_rows(ctx))
    return {
        "pade": pade,
        "bands": bands,
        "measured": measured,
        "projector": projector,
        "verdicts": _verdicts(ctx.params, pade, bands, measured, projector),
    }


def _verdict(refuted: bool, confirmed: bool) -> str:
    """The three outcomes of a rule: refuted, confirmed, or (neither condition met) undecided."""
    return "refuted" if refuted else "confirmed" if confirmed else "undecided"


def _verdicts(p, pade, bands, measured, projector) -> list[dict]:
    """Each claim's verdict from a stated rule over the computed numbers (thresholds in PARAMS)."""
    muon = next(r for r in pade if r["iteration"] == "muon")
    family = [r for r in pade if r["iteration"] != "muon"]
    closest = min(family, key=lambda r: (r["xi_trunc_dist_to_muon"], r["iteration"]))
    fixes_one = max(abs(r["value_at_1"] - 1) for r in family)
    cert = next(r for r in bands if r["kind"] == "certified" and r["step"] == p["steps"])
    att = next(r for r in bands if r["kind"] == "attracting")
    attracting_fp = [r for r in bands if r["kind"].startswith("fixed point (attract")]
    cycles = [r for r in bands if "-cycle" in r["kind"]]
    attracting_cycles = [r for r in cycles if "(attracting" in r["kind"] or "(superattracting" in r["kind"]]
    x0max = max(r["x0_sigma_max"] for r in measured)
    big = sorted((r["eigenvalue"] for r in projector if r["gram"].startswith("X X")), reverse=True)
    small = [r["eigenvalue"] for r in projector if r["gram"].startswith("X^T")]
    far = [v for v in big if v < p["projector_eigenvalue"]]
    by_kind: dict[str, float] = {}
    for r in measured:
        kind = r["matrix"].split(" ")[0]
        by_kind[kind] = max(by_kind.get(kind, 0.0), r["error"])
    worst_measured = max(by_kind.values())
    fps = [r for r in bands if r["kind"].startswith("fixed point") and r["lo"] > 0]
    fp_text = "; ".join(f"{r['lo']:.3f} (multiplier {r['error']:.2f}, {r['kind'][13:-1]})" for r in fps)
    cyc_text = "; ".join(
        f"{r['kind'].split(' ')[0]} in [{r['lo']:.3f}, {r['hi']:.3f}] (multiplier {r['error']:.3g}, "
        f"{r['kind'].split('(')[1].split(',')[0]})"
        for r in cycles
    )
    q = next((r for r in family if r["iteration"] == "[2/0]"), closest)
    tol, factor, delta = p["coefficient_tolerance"], p["refute_factor"], p["delta"]
    p1_off = abs(muon["value_at_1"] - 1)
    return [
        {
            "claim": "Muon's coefficients are the Padé (1,2) truncation of Hale, Higham & Trefethen (2008)",
            "test": "p(1) vs every [l/m] Padé iteration; distance to their truncations",
            "rule": f"refuted if no truncation is within {tol:g} of Muon's coefficients (their published "
            "precision) and p(1) differs from the family's r(1) = 1 by more than that",
            "evidence": f"every Padé iteration has r(1) = 1 (largest deviation {fixes_one:.1g}), Muon has "
            f"p(1) = {muon['value_at_1']:.4f}; the degree-2 truncation in xi = 1 - x^2 of every [l/m] with l + m >= 2 "
            f"is ({q['xi_trunc_c1']:.4g}, {q['xi_trunc_c3']:.4g}, {q['xi_trunc_c5']:.4g}), "
            f"{closest['xi_trunc_dist_to_muon']:.3f} away from Muon's coefficients",
            "verdict": _verdict(
                closest["xi_trunc_dist_to_muon"] > tol and p1_off > tol,
                closest["xi_trunc_dist_to_muon"] <= tol,
            ),
        },
        {
            "claim": f"after {p['steps']} steps every singular value is within ~{delta:g} of 1",
            "test": f"certified band on [{p['lo']:g}, 1]; attracting band; measured bf16",
            "rule": f"refuted if the certified error after {p['steps']} steps and the worst measured bf16 error "
            f"both exceed {factor:g} delta; confirmed if both are <= delta",
            "evidence": f"certified band [{cert['lo']:.3f}, {cert['hi']:.3f}] (error {cert['error']:.3f}); "
            f"no number of steps gets below the attracting band [{att['lo']:.3f}, {att['hi']:.3f}] "
            f"(error {att['error']:.3f}); measured bf16 error: "
            + ", ".join(f"{k} {v:.3f}" for k, v in by_kind.items()),
            "verdict": _verdict(
                cert["error"] > factor * delta and worst_measured > factor * delta,
                cert["error"] <= delta and worst_measured <= delta,
            ),
        },
        {
            "claim": "the iteration converges, with order three",
            "test": "fixed points of p and their multipliers; cycles of every period (proved)",
            "rule": f"refuted if 1 is not a fixed point (|p(1) - 1| > {p['fixed_point_tolerance']:g}) or the map "
            "has an attracting cycle of period >= 2; confirmed if 1 is a fixed point with multiplier 0",
            "evidence": f"1 is not a fixed point (p(1) = {muon['value_at_1']:.3f}); positive fixed points {fp_text}; "
            f"{cyc_text}; {len(attracting_fp)} attracting fixed points",
            "verdict": _verdict(
                p1_off > p["fixed_point_tolerance"] or bool(attracting_cycles),
                p1_off <= p["fixed_point_tolerance"] and not attracting_cycles,
            ),
        },
        {
            "claim": "Frobenius normalization gives sigma(X_0) <= 1, so ||X_0 - U||_2 <= 1",
            "test": "largest singular value of X_0 over all test matrices",
            "rule": "confirmed if sigma_max(X_0) <= 1 on every test matrix (it must: ||G||_2 <= ||G||_F), "
            "refuted otherwise",
            "evidence": f"largest sigma_max(X_0) = {x0max:.4f} (and ||G||_2 <= ||G||_F always)",
            "verdict": _verdict(x0max > 1, x0max <= 1),
        },
        {
            "claim": "|X_5 X_5^T| of the 10 x 6 example approaches the identity",
            "test": "eigenvalues of the 10 x 10 and of the 6 x 6 Gram matrix",
            "rule": f"refuted if some eigenvalue of X X^T is below {p['projector_eigenvalue']:g}; confirmed if all "
            "are within the attracting band's error of 1",
            "evidence": f"{len(far)} eigenvalues of X X^T are below {max((abs(v) for v in far), default=0):.0e}: "
            f"X X^T has rank {len(small)} and cannot approach the identity; X^T X has eigenvalues in "
            f"[{min(small):.3f}, {max(small):.3f}], within Muon's band",
            "verdict": _verdict(bool(far), all(abs(v - 1) <= att["error"] for v in big)),
        },
    ]


def plot(tables, ctx):
    import matplotlib.pyplot as plt
    import numpy as np

    from nsiter.plot import scalar_map, schedule_comparison, use_style

    use_style()
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    xs = np.linspace(0, 1.2, 241)
    muon = load_schedule("muon")[0]
    curves = [{"map": "Muon p", "x": float(v), "y": float(muon(v))} for v in xs]
    for l, m in ([2, 0], [1, 2]):  # noqa: E741
        f = sp.lambdify(x, pade_iteration(l, m), "numpy")
        curves += [{"map": f"Padé [{l}/{m}]", "x": float(v), "y": float(f(v))} for v in xs]
    scalar_map(curves, None, ax[0], series="map", label="{}")
    ax[0].set_ylabel("$p(x)$")
    ax[0].set_title("Muon's step is not a Padé iteration")
    cert = [r for r in tables["bands"] if r["kind"] == "certified"]
    worst_by_step = {r["step"]: r["error"] for r in cert}
    rows = [
        {"schedule": "muon", "step": k, "certified_error": e, "measured_error": None}
        for k, e in worst_by_step.items()
    ]
    schedule_comparison(rows, ax[1], measured=None, legend=False)
    worst = max(r["error"] for r in tables["measured"])
    att = next(r for r in tables["bands"] if r["kind"] == "attracting")
    ax[1].axhline(ctx.params["delta"], color="k", ls=":", lw=1, label=r"claimed $\delta$")
    ax[1].axhline(att["error"], color="0.5", ls="--", lw=1, label="attracting band")
    ax[1].plot([ctx.params["steps"]], [worst], "o", color="C1", label="measured bf16 (worst)")
    ax[1].set_ylim(1e-4, 2)
    ax[1].legend(fontsize=7, loc="lower left")
    ax[1].set_title(rf"Muon: certified error on $[{ctx.params['lo']:g}, 1]$")
    return fig


def latex(tables) -> dict:
    from experiments.tables import latex_table

    def wrap(width):
        return lambda v: rf"\parbox[t]{{{width}}}{{\raggedright {_tex_text(v)}}}"

    cols = [
        ("claim", "claim about Muon", wrap("4.2cm")),
        ("evidence", "numbers", wrap("7.6cm")),
        ("verdict", "verdict", wrap("2.0cm")),
    ]
    return {"verdicts": latex_table(tables["verdicts"], cols, align="lll")}


_TEX = {
    "<->": r"$\leftrightarrow$",
    "<=": r"$\le$",
    ">=": r"$\ge$",
    "||": r"$\|$",
    "|": r"$|$",
    "^T": r"$^{\top}$",
    "^2": r"$^2$",
    "~": r"$\sim$",
    "_": r"\_",
    "%": r"\%",
    "&": r"\&",
}
_TEX_RE = re.compile("|".join(re.escape(k) for k in sorted(_TEX, key=len, reverse=True)))


def _tex_text(s: str) -> str:
    """Plain text with a little math (``<=``, ``||``, ``|``, ``^T``, ``~``, ``<->``) as LaTeX."""
    return _TEX_RE.sub(lambda m: _TEX[m.group(0)], s)


def numbers(tables) -> dict:
    muon = next(r for r in tables["pade"] if r["iteration"] == "muon")
    cert = [r for r in tables["bands"] if r["kind"] == "certified"]
    last = max(cert, key=lambda r: r["step"])
    att = next(r for r in tables["bands"] if r["kind"] == "attracting")
    worst = max(r["error"] for r in tables["measured"])
    notes = [r for r in tables["measured"] if r["matrix"].startswith("notes")]
    family = [r for r in tables["pade"] if r["iteration"] != "muon"]
    quintic = next((r for r in family if r["iteration"] == "[2/0]"), family[0])
    fps = [r for r in tables["bands"] if r["kind"].startswith("fixed point") and r["lo"] > 0]
    cycles = [r for r in tables["bands"] if "-cycle" in r["kind"]]
    rep = [r for r in cycles if "(repelling" in r["kind"]]
    attr = [r for r in cycles if "(attracting" in r["kind"]]
    out = {
        "claimMuonPOne": muon["value_at_1"],
        "claimMuonSlope": muon["slope_at_0"],
        "claimQuinticSlope": quintic["slope_at_0"],
        "claimPadeDistance": min(r["xi_trunc_dist_to_muon"] for r in family),
        "claimCertLo": last["lo"],
        "claimCertHi": last["hi"],
        "claimCertErr": last["error"],
        "claimAttLo": att["lo"],
        "claimAttHi": att["hi"],
        "claimAttErr": att["error"],
        "claimMeasuredErr": worst,
        "claimNotesErr": max(r["error"] for r in notes),
        "claimLogUniformErr": max(
            r["error"] for r in tables["measured"] if r["matrix"].startswith("log-uniform")
        ),
        "claimClaimedDelta": 1e-3,
        "claimRatio": att["error"] / 1e-3,
    }
    if fps:
        out |= {"claimFixedLo": fps[0]["lo"], "claimFixedLoMult": fps[0]["error"]}
    if len(fps) > 1:
        out |= {"claimFixedHi": fps[1]["lo"], "claimFixedHiMult": fps[1]["error"]}
    if rep:
        out |= {"claimCycleLo": rep[0]["lo"], "claimCycleHi": rep[0]["hi"], "claimCycleMult": rep[0]["error"]}
        out["claimCyclePeriod"] = int(rep[0]["kind"].split("-")[0])
    if attr:
        a = attr[0]
        out |= {"claimAttCycleLo": a["lo"], "claimAttCycleHi": a["hi"], "claimAttCycleMult": a["error"]}
        out["claimAttCyclePeriod"] = int(a["kind"].split("-")[0])
    return out


if __name__ == "__main__":
    from experiments.__main__ import main

    sys.exit(main([NAME, *sys.argv[1:]]))
