"""The user's first figure: Muon's singular-value trajectories and the final Gram heatmap, in bfloat16.

The example under test draws ``G = randn(10, 6) @ diag(logspace(-1, 1, 6)) * 0.8`` with numpy seed 4424,
run five Muon steps ``(3.4445, -4.7750, 2.0315)`` in bfloat16, and plot ``sigma_i(X_k)`` and
``|X_5 X_5^T|``.  Here the matrix comes from ``nsiter.matrices.with_spectrum``: the *singular values* are
exactly ``0.8 * logspace(-1, 1, 6)`` (the notes' construction scales columns, which only roughly
log-spaces the spectrum), with Haar-random factors from seed 4424.  The iteration is
``nsiter.trajectory`` (Frobenius normalization, eps 1e-7, wide side, as Muon).

``X_5`` is 10 x 6 (tall), so ``X_5 X_5^T`` is 10 x 10 of rank at most 6: an orthogonal *projector*,
not the identity.  The Gram that approaches the identity is the small one, ``X_5^T X_5`` (6 x 6); the
figure shows both.
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

NAME = "muon_singular_values"
PARAMS = {
    "shape": [10, 6],
    "sigma_lo": 0.1,
    "sigma_hi": 10.0,
    "factor": 0.8,
    "schedule": "muon",
    "dtype": "bfloat16",
}
QUICK: dict = {}
SEED = 4424


def compute(ctx) -> dict:
    p = ctx.params
    m, n = p["shape"]
    sigma = notes_spectrum(p)
    G = with_spectrum(m, n, sigma, ctx.seed)
    traj = trajectory(G, p["schedule"], dtype=getattr(torch, p["dtype"]), method="standard")
    X = traj.final.to(torch.float64)
    small = (X.T @ X).abs()  # n x n: approaches I
    large = (X @ X.T).abs()  # m x m: a rank-n projector
    eig_large = torch.linalg.eigvalsh(X @ X.T).flip(0)
    sv = [{k: r[k] for k in ("step", "index", "sigma")} for r in traj.singular_values]
    gram = [
        {"gram": "small", "i": i, "j": j, "value": float(small[i, j])} for i in range(n) for j in range(n)
    ]
    gram += [
        {"gram": "large", "i": i, "j": j, "value": float(large[i, j])} for i in range(m) for j in range(m)
    ]
    eig = [{"gram": "large", "index": i, "eigenvalue": float(v)} for i, v in enumerate(eig_large)]
    return {"singular_values": sv, "gram": gram, "eigenvalues": eig}


def plot(tables, ctx):
    import matplotlib.pyplot as plt

    from nsiter.plot import gram_heatmap, matrix_from_rows, singular_value_trajectories, use_style

    use_style()
    fig, ax = plt.subplots(1, 3, figsize=(12, 3.6), layout="constrained", width_ratios=[1.3, 1, 1])
    singular_value_trajectories(tables["singular_values"], ax[0])
    ax[0].set_title(r"Muon, bf16: $\sigma_i(X_k)$, $10\times6$ input")
    T = max(r["step"] for r in tables["singular_values"])
    small = matrix_from_rows([r for r in tables["gram"] if r["gram"] == "small"])
    large = matrix_from_rows([r for r in tables["gram"] if r["gram"] == "large"])
    gram_heatmap(small, ax[1], label=rf"$|X_{T}^{{\top}} X_{T}|_{{ij}}$")
    ax[1].set_title(rf"$|X_{T}^{{\top}} X_{T}|$ ($6\times6$): near $I$")
    gram_heatmap(large, ax[2], label=rf"$|X_{T} X_{T}^{{\top}}|_{{ij}}$")
    ax[2].set_title(rf"$|X_{T} X_{T}^{{\top}}|$ ($10\times10$): a projector")
    return fig


def numbers(tables) -> dict:
    T = max(r["step"] for r in tables["singular_values"])
    final = [r["sigma"] for r in tables["singular_values"] if r["step"] == T]
    first = [r["sigma"] for r in tables["singular_values"] if r["step"] == 0]
    eig = sorted((r["eigenvalue"] for r in tables["eigenvalues"]), reverse=True)
    n = len(final)
    return {
        "svdSigmaMinFinal": min(final),
        "svdSigmaMaxFinal": max(final),
        "svdErrFinal": max(abs(1 - s) for s in final),
        "svdSigmaMinStart": min(first),
        "svdProjectorZeroEig": max(abs(v) for v in eig[n:]),
        "svdProjectorZeros": len(eig) - n,
    }


if __name__ == "__main__":
    from experiments.__main__ import main

    sys.exit(main([NAME, *sys.argv[1:]]))
