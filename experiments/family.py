"""The classical Newton–Schulz family: exact coefficients, order, error constant, convergence interval.

The degree ``2l + 1`` member is the ``[l/0]`` Padé iteration for the polar factor (Kenney & Laub 1991;
Higham, *Functions of Matrices*, 2008, §8.3), derived exactly by ``nsiter.symbolic``.  For each member we
also count the steps a fixed iteration needs for a certified worst-case error below ``tol`` on
``[lo, 1]`` (``nsiter.analysis.analyze``) and the matrix products that costs.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python experiments/NAME.py`: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from nsiter.analysis import steps_to
from nsiter.symbolic import newton_schulz_family

NAME = "family"
PARAMS = {"degrees": [3, 5, 7, 9, 11], "lo": 1e-3, "tol": 1e-3, "max_steps": 40, "points": 300}
QUICK = {"degrees": [3, 5], "points": 30}
MACHINE_DEPENDENT = False  # exact coefficients and certified step counts: the same on every machine


def compute(ctx) -> dict:
    prm = ctx.params
    members, curves = [], []
    for d in prm["degrees"]:
        m = newton_schulz_family(d)
        info = m.to_dict()
        k = steps_to([m.polynomial], prm["lo"], prm["tol"], max_steps=prm["max_steps"])
        exact_bound = "CRootOf" not in info["convergence_bound"]
        members.append(
            {
                "degree": d,
                "l": m.l,
                "coefficients": " ".join(info["coefficients"]),
                "order": m.order,
                "derivative_constant": info["derivative_constant"],
                "error_constant": info["error_constant"],
                "convergence_bound": info["convergence_bound"] if exact_bound else "",
                "convergence_bound_float": info["convergence_bound_float"],
                "matmuls_per_step": m.l + 1,
                "steps_to_tol": k,
                "matmuls_to_tol": None if k is None else k * (m.l + 1),
            }
        )
        xs = np.linspace(0.0, info["convergence_bound_float"], prm["points"])
        curves += [
            {"degree": d, "x": float(a), "y": float(b)} for a, b in zip(xs, m.polynomial(xs), strict=True)
        ]
        ctx.progress(f"degree {d}: {k} steps to {prm['tol']:g}")
    return {"members": members, "curves": curves}


def plot(tables, ctx):
    from nsiter.plot import scalar_map, use_style
    from nsiter.plot.style import new_axes

    use_style()
    ax = new_axes(None, figsize=(4.6, 3.3))
    scalar_map(tables["curves"], None, ax, series="degree", label="degree {}")
    ax.set_ylabel("$p_l(x)$")
    ax.set_ylim(0, 1.3)
    return ax.figure


def _frac(s: str) -> str:
    num, _, den = s.partition("/")
    sign = "-" if num.startswith("-") else ""
    return rf"{sign}\tfrac{{{num.lstrip('-')}}}{{{den}}}" if den else s


def latex(tables) -> dict:
    from experiments.tables import latex_table, tex_number

    def coeffs(s):
        return "$" + ",\\ ".join(_frac(c) for c in s.split()) + "$"

    def bound(r):
        return f"${tex_number(r['convergence_bound_float'], 6)}$"

    rows = [dict(r, bound=bound(r)) for r in tables["members"]]
    cols = [
        ("degree", "degree", None),
        ("coefficients", "coefficients $c_0, c_1, \\dots$", coeffs),
        ("order", "order", None),
        ("error_constant", "$C_l$", lambda v: f"${_frac(str(v))}$"),
        ("bound", "$b$", None),
        ("matmuls_per_step", "matmuls/step", None),
        ("steps_to_tol", "steps", None),
        ("matmuls_to_tol", "matmuls", None),
    ]
    return {"table": latex_table(rows, cols, align="rlrrrrrr")}


def numbers(tables) -> dict:
    by = {r["degree"]: r for r in tables["members"]}
    out = {"familyCubicSteps": by[3]["steps_to_tol"], "familyCubicMatmuls": by[3]["matmuls_to_tol"]}
    if 5 in by:
        out |= {"familyQuinticSteps": by[5]["steps_to_tol"], "familyQuinticMatmuls": by[5]["matmuls_to_tol"]}
    return out


if __name__ == "__main__":
    from experiments.__main__ import main

    sys.exit(main([NAME, *sys.argv[1:]]))
