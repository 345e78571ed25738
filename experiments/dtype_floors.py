"""Dtype floors: how orthogonal a converged Newton–Schulz iteration can get in fp64, fp32, bf16 and fp16.

``nsiter.baselines.dtype_floor`` runs 40 classical cubic steps (Kovarik 1970; Björck & Bowie 1971) with
every product in the dtype, on ``n x n`` matrices with singular values in ``[0.1, 1]``, and reports the
largest ``||X X^T - I||_2`` and ``||X - U V^T||_2`` over the last 8 iterates and two seeds (float64
measurement).  In exact arithmetic both are below 1e-30, so what remains is rounding: the floor, shown
against the unit roundoff ``u`` of each dtype.  These are the tolerances the tests use.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python experiments/NAME.py`: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nsiter.baselines import dtype_floor

NAME = "dtype_floors"
PARAMS = {"dtypes": ["fp64", "fp32", "bf16", "fp16"], "sizes": [16, 32, 64, 128]}
QUICK = {"sizes": [8]}


def compute(ctx) -> list[dict]:
    rows = []
    for dt in ctx.params["dtypes"]:
        for n in ctx.params["sizes"]:
            rows += ctx.unit((dt, n), lambda dt=dt, n=n: [dtype_floor(dt, n).to_dict()])
    return rows


def plot(tables, ctx):
    import matplotlib.pyplot as plt

    from nsiter.plot import dtype_floors, use_style

    use_style()
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.4), layout="constrained", sharey=True)
    dtype_floors(tables["main"], ax[0], value="orth_err_2", reference="unit_roundoff")
    dtype_floors(
        tables["main"],
        ax[1],
        value="polar_err_2",
        reference="unit_roundoff",
        ylabel=r"floor $\|X - UV^\top\|_2$",
    )
    ax[0].set_title(r"orthogonality (dotted: unit roundoff $u$)")
    ax[1].set_title("distance to the polar factor")
    ax[1].get_legend().remove()
    return fig


def latex(tables) -> dict:
    from experiments.tables import latex_table, tex_number

    rows = tables["main"]
    n_max = max(r["n"] for r in rows)
    sel = [dict(r, ratio=r["orth_err_2"] / r["unit_roundoff"]) for r in rows if r["n"] == n_max]

    def num(v):
        return f"${tex_number(v, 2)}$"

    cols = [
        ("dtype", "dtype", None),
        ("unit_roundoff", "$u$", num),
        ("orth_err_2", r"$\|X X^\top - I\|_2$", num),
        ("polar_err_2", r"$\|X - UV^\top\|_2$", num),
        ("ratio", r"$\|X X^\top - I\|_2 / u$", lambda v: f"${v:.1f}$"),
    ]
    return {"table": latex_table(sel, cols)}


def numbers(tables) -> dict:
    rows = tables["main"]
    n_max = max(r["n"] for r in rows)
    at = {r["dtype"]: r for r in rows if r["n"] == n_max}
    macro = {"float64": "FpSixtyFour", "float32": "FpThirtyTwo", "bfloat16": "Bf", "float16": "FpSixteen"}
    out = {"floorSize": n_max}
    for dt, r in at.items():
        out[f"floor{macro[dt]}"] = r["orth_err_2"]
        out[f"floor{macro[dt]}Ratio"] = r["orth_err_2"] / r["unit_roundoff"]
    return out


if __name__ == "__main__":
    from experiments.__main__ import main

    sys.exit(main([NAME, *sys.argv[1:]]))
