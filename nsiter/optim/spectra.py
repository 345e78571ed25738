"""Record, during training, the spectra of the matrices Muon orthogonalizes (see :mod:`nsiter.spectra`).

:func:`momentum_spectra` returns, right after ``optimizer.step()``, the singular values of the matrix each Muon
parameter's step fed to the Newton–Schulz iteration (the Nesterov momentum ``U_t = (1 - mu) G_t + mu B_t``, or
``B_t`` without Nesterov), normalized as the iteration sees it: ``x_i = sigma_i(U_t) / ||U_t||_F``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from nsiter.optim.muon import newton_schulz_input

__all__ = ["momentum_spectra"]


@torch.no_grad()
def momentum_spectra(
    optimizer: torch.optim.Optimizer, names: Mapping[Any, str] | None = None
) -> list[dict[str, Any]]:
    """Singular values (float64 SVD) of the matrix each Muon parameter's last step orthogonalized.

    Call right after ``optimizer.step()`` (the gradients are still in place).  ``names`` maps parameters to
    labels for the ``param`` column (default ``"p{index}"``).  Returns tidy rows: ``param, rows, cols, index,
    sigma, x`` with ``x = sigma / ||U||_F``, largest first.
    """
    names = names or {}
    out: list[dict[str, Any]] = []
    i = 0
    for group in optimizer.param_groups:
        if not group.get("use_muon", False):
            continue
        for p in group["params"]:
            i += 1
            state = optimizer.state.get(p, {})
            if p.grad is None or "momentum_buffer" not in state:
                continue
            M = newton_schulz_input(group, p.grad, state["momentum_buffer"]).double()
            sigma = torch.linalg.svdvals(M)
            fro = float(torch.linalg.matrix_norm(M))
            label = names.get(p, f"p{i - 1}")
            for k, s in enumerate(sigma.tolist()):
                out.append(
                    {
                        "param": label,
                        "rows": M.shape[0],
                        "cols": M.shape[1],
                        "index": k,
                        "sigma": s,
                        "x": s / fro if fro > 0 else 0.0,
                    }
                )
    return out
