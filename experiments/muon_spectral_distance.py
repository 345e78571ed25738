"""The user's second figure: Muon's spectral distance rho_k and the Gram matrix B_5, in bfloat16.

The example under test draws ``G = randn(12, 5) * logspace(-1, 1, 5) * 0.7`` with numpy seed 0, run five
Muon steps in bfloat16 on the wide side (5 x 12), and plot ``rho_k = 1 - lambda_min(B_k)`` with
``B_k = X_k X_k^T`` (5 x 5) and a heatmap of ``B_5`` on ``[-0.05, 0.05]`` (which saturates the diagonal).
Here the matrix comes from ``nsiter.matrices.with_spectrum`` with singular values exactly
``0.7 * logspace(-1, 1, 5)`` and Haar factors from seed 0; ``nsiter.trajectory`` records
``rho_k`` and ``max_i |lambda_i - 1|`` (``rho_k`` alone turns negative once every ``lambda > 1``), and
the heatmap shows ``B_5 - I`` on a symmetric scale, so the identity is white.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python experiments/NAME.py`: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from experiments.notes import notes_spectrum
from nsiter.matrices import with_spectrum
from nsiter.records import trajectory

NAME = "muon_spectral_distance"
PARAMS = {
    "shape": [12, 5],
    "sigma_lo": 0.1,
    "sigma_hi": 10.0,
    "factor": 0.7,
    "schedule": "muon",
    "dtype": "bfloat16",
}
QUICK: dict = {}
SEED = 0


def compute(ctx) -> dict:
    p = ctx.params
    m, n = p["shape"]
    sigma = notes_spectrum(p)
    G = with_spectrum(m, n, sigma, ctx.seed)
    traj = trajectory(
        G, p["schedule"], dtype=getattr(torch, p["dtype"]), record_singular_values=False, method="standard"
    )
    keep = ("rho", "max_abs_lambda_minus_1", "orth_err_2", "polar_err_2")
    steps = [{k: r[k] for k in ("step", "quantity", "value")} for r in traj.long() if r["quantity"] in keep]
    X = traj.final.to(torch.float64)
    B = X.T @ X if m > n else X @ X.T  # the small side: 5 x 5
    k = min(m, n)
    gram = [{"i": i, "j": j, "value": float(B[i, j])} for i in range(k) for j in range(k)]
    return {"steps": steps, "gram": gram}


def plot(tables, ctx):
    import matplotlib.pyplot as plt

    from nsiter.plot import identity_deviation_heatmap, matrix_from_rows, spectral_distance, use_style

    use_style()
    fig, ax = plt.subplots(1, 2, figsize=(9.5, 3.6), layout="constrained")
    labels = {
        "rho": r"$\rho_k = 1 - \lambda_{\min}(B_k)$",
        "max_abs_lambda_minus_1": r"$\max_i|\lambda_i(B_k) - 1|$",
    }
    rows = [dict(r, series=labels[r["quantity"]]) for r in tables["steps"] if r["quantity"] in labels]
    spectral_distance(rows, ax[0], value="value", series="series", ylabel="distance of $B_k$ to $I$")
    ax[0].set_title(r"Muon, bf16, $12\times5$ input")
    ax[0].get_lines()[1].set(linestyle="--", marker="s", markerfacecolor="none")  # the two coincide here
    ax[0].legend(loc="lower left")
    T = max(r["step"] for r in tables["steps"])
    identity_deviation_heatmap(matrix_from_rows(tables["gram"]), ax[1], label=rf"$(B_{T} - I)_{{ij}}$")
    ax[1].set_title(rf"$B_{T} = X_{T} X_{T}^{{\top}}$, centred at $I$")
    return fig


def numbers(tables) -> dict:
    T = max(r["step"] for r in tables["steps"])
    at = {(r["quantity"], r["step"]): r["value"] for r in tables["steps"]}
    return {
        "sdRhoStart": at[("rho", 0)],
        "sdRhoFinal": at[("rho", T)],
        "sdLamErrFinal": at[("max_abs_lambda_minus_1", T)],
        "sdPolarErrFinal": at[("polar_err_2", T)],
    }


if __name__ == "__main__":
    from experiments.__main__ import main

    sys.exit(main([NAME, *sys.argv[1:]]))
