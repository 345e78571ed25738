"""Trajectories of a schedule on a matrix, recorded as tidy rows.

For each step ``k = 0..T`` of ``nsiter.evaluate.iterates`` (``X_0`` is the normalized input) the
iterate is copied to float64 and measured on its small side (``m <= n``, ``lambda = sigma^2`` are the
eigenvalues of ``X X^T``):

- ``sigma_max``, ``sigma_min``: extreme singular values of ``X_k``;
- ``rho = 1 - lambda_min(X X^T)``: the spectral distance that a certified analysis bounds;
- ``max_abs_lambda_minus_1 = max_i |sigma_i^2 - 1|``;
- ``orth_err_2 = ||X X^T - I||_2`` (from ``eigvalsh``, an independent computation of the previous line)
  and ``orth_err_fro = ||X X^T - I||_F``;
- ``polar_err_2``, ``polar_err_fro``: ``||X_k - U V^T||`` with ``U V^T`` the polar factor of ``G`` from a
  float64 SVD (for rank-deficient ``G``, the partial isometry on singular values above
  ``max(m, n) eps_64 sigma_max``, which is what an odd polynomial iteration converges to).

Rows: ``steps`` holds one row per (matrix, step, quantity); ``singular_values`` one row per (matrix,
step, index).  ``Trajectory.to_csv`` writes either table; ``to_pandas`` returns a DataFrame when pandas
is importable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from nsiter._io import atomic_write_csv
from nsiter.evaluate import (
    _check_dtype,
    from_wide_batch,
    iterates,
    resolve_schedule,
    validate_matrix,
    wide_batch,
)
from nsiter.schedule import Normalization, Schedule

__all__ = ["QUANTITIES", "Trajectory", "polar_factor", "trajectory"]

QUANTITIES = (
    "sigma_max",
    "sigma_min",
    "rho",
    "max_abs_lambda_minus_1",
    "orth_err_2",
    "orth_err_fro",
    "polar_err_2",
    "polar_err_fro",
)

DIVERGENCE_THRESHOLD = 1e3  # sigma_max above this (or a non-finite iterate) means the schedule diverged


def polar_factor(G: torch.Tensor) -> torch.Tensor:
    """``U V^T`` of ``G = U S V^T`` in float64 (batched), dropping singular values below ``max(m,n) eps sigma_max``.

    For full-rank ``G`` this is the orthogonal polar factor (Higham, *Functions of Matrices*, Thm 8.1).
    """
    Gd = G.to(torch.float64)
    U, sv, Vh = torch.linalg.svd(Gd, full_matrices=False)
    cutoff = max(Gd.shape[-2:]) * torch.finfo(torch.float64).eps * sv[..., :1]
    keep = (sv > cutoff).to(torch.float64)
    return (U * keep.unsqueeze(-2)) @ Vh


@dataclass
class Trajectory:
    """What a schedule did to one matrix (or a batch), step by step.

    Attributes:
        schedule: the schedule's name.
        dtype: the working dtype, e.g. ``"bfloat16"``.
        shape: the input's shape.
        steps: tidy rows ``{"matrix", "step", "quantity", "value"}`` (see ``QUANTITIES``).
        singular_values: tidy rows ``{"matrix", "step", "index", "sigma"}``, descending per step.
        final: the last iterate, in the input's shape and dtype.
        diverged: True when an iterate became non-finite or ``sigma_max > 1e3``.
        message: why it diverged (empty otherwise).
    """

    schedule: str
    dtype: str
    shape: tuple[int, ...]
    steps: list[dict[str, Any]] = field(default_factory=list)
    singular_values: list[dict[str, Any]] = field(default_factory=list)
    final: torch.Tensor | None = None
    diverged: bool = False
    message: str = ""

    def table(self, table: str = "steps") -> list[dict[str, Any]]:
        if table == "steps":
            return self.steps
        if table == "singular_values":
            return self.singular_values
        raise ValueError(f"table must be 'steps' or 'singular_values', got {table!r}")

    def value(self, quantity: str, step: int, matrix: int = 0) -> float:
        """One recorded number, e.g. ``value("polar_err_2", 5)``."""
        for row in self.steps:
            if row["quantity"] == quantity and row["step"] == step and row["matrix"] == matrix:
                return row["value"]
        raise ValueError(f"no record of {quantity!r} at step {step} for matrix {matrix}")

    def sigmas(self, step: int, matrix: int = 0) -> list[float]:
        """Singular values of ``X_step`` (descending)."""
        out = [r["sigma"] for r in self.singular_values if r["step"] == step and r["matrix"] == matrix]
        if not out:
            raise ValueError(f"no singular values recorded at step {step} for matrix {matrix}")
        return out

    def to_csv(self, path: str | Path, table: str = "steps") -> Path:
        """Write a table as CSV (atomic: temporary file, then rename); floats with ``repr`` precision."""
        rows = self.table(table)
        fields = ["schedule", "dtype", *(rows[0].keys() if rows else ["matrix", "step"])]
        return atomic_write_csv(
            path, fields, ({"schedule": self.schedule, "dtype": self.dtype, **r} for r in rows)
        )

    def to_pandas(self, table: str = "steps"):
        """The table as a ``pandas.DataFrame`` (raises ``ImportError`` when pandas is missing)."""
        import pandas as pd

        df = pd.DataFrame(self.table(table))
        df.insert(0, "dtype", self.dtype)
        df.insert(0, "schedule", self.schedule)
        return df

    def wide(self, matrix: int = 0) -> list[dict[str, Any]]:
        """One row per step with every quantity as a column (for printing)."""
        by_step: dict[int, dict[str, Any]] = {}
        for row in self.steps:
            if row["matrix"] == matrix:
                by_step.setdefault(row["step"], {"step": row["step"]})[row["quantity"]] = row["value"]
        return [by_step[k] for k in sorted(by_step)]


def _measure(
    X: torch.Tensor, P: torch.Tensor | None, quantities: Sequence[str]
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """The requested quantities of ``X`` (b, m, n), m <= n, against polar factor ``P``; float64."""
    S = torch.linalg.svdvals(X)
    lam = S**2
    q = {
        "sigma_max": S[..., 0],
        "sigma_min": S[..., -1],
        "rho": 1 - lam[..., -1],
        "max_abs_lambda_minus_1": (lam - 1).abs().amax(dim=-1),
    }
    if "orth_err_2" in quantities or "orth_err_fro" in quantities:
        E = X @ X.mT - torch.eye(X.shape[-2], dtype=X.dtype, device=X.device)
        q["orth_err_2"] = torch.linalg.eigvalsh(E).abs().amax(dim=-1)
        q["orth_err_fro"] = torch.linalg.matrix_norm(E, ord="fro")
    if P is not None:
        D = X - P
        q["polar_err_2"] = torch.linalg.matrix_norm(D, ord=2)
        q["polar_err_fro"] = torch.linalg.matrix_norm(D, ord="fro")
    return q, S


def trajectory(
    G: torch.Tensor,
    schedule: Schedule | str | Path = "muon",
    *,
    dtype: torch.dtype = torch.bfloat16,
    norm: str | Normalization | None = None,
    steps: int | None = None,
    quantities: Sequence[str] = QUANTITIES,
    record_singular_values: bool = True,
    emulate: bool | None = None,
) -> Trajectory:
    """Run ``schedule`` on ``G`` like ``orthogonalize`` and record every iterate (see module docstring).

    Args:
        G: ``(m, n)`` or ``(..., m, n)``; batch entries are numbered ``matrix = 0, 1, ...`` (row-major).
        schedule, dtype, norm, steps, emulate: as for ``nsiter.orthogonalize``.
        quantities: subset of ``QUANTITIES`` to record.
        record_singular_values: also fill the per-(step, index) table.

    Returns:
        A ``Trajectory``; ``final`` equals ``orthogonalize(G, ...)`` (same kernel, same order of
        operations).  Measurement is float64 on the CPU and costs one SVD and one eigendecomposition
        per step: meant for analysis, not for training loops.
    """
    validate_matrix(G)
    _check_dtype(dtype)
    bad = [q for q in quantities if q not in QUANTITIES]
    if bad:
        raise ValueError(f"unknown quantities {bad}; choose from {QUANTITIES}")
    sched = resolve_schedule(schedule, norm=norm, steps=steps)
    W, layout = wide_batch(G.detach())
    wants_polar = any(q.startswith("polar_err") for q in quantities)
    P = polar_factor(W.cpu()) if wants_polar else None
    traj = Trajectory(sched.name, str(dtype).removeprefix("torch."), tuple(G.shape))
    last = None
    for k, X in enumerate(iterates(W, sched, dtype=dtype, emulate=emulate)):
        last = X
        Xd = X.to(device="cpu", dtype=torch.float64)
        finite = torch.isfinite(Xd).all(dim=(-2, -1))
        if not bool(finite.all()):
            bad_idx = [i for i, f in enumerate(finite.tolist()) if not f]
            traj.message = (
                traj.message + "; " if traj.diverged else ""
            ) + f"iterate {k} has non-finite entries (matrices {bad_idx[:5]})"
            traj.diverged = True
            break
        q, S = _measure(Xd, P, quantities)
        for i in range(Xd.shape[0]):
            for name in quantities:
                traj.steps.append({"matrix": i, "step": k, "quantity": name, "value": float(q[name][i])})
            if record_singular_values:
                for j, s in enumerate(S[i].tolist()):
                    traj.singular_values.append({"matrix": i, "step": k, "index": j, "sigma": s})
        smax = float(q["sigma_max"].max())
        if not traj.diverged and smax > DIVERGENCE_THRESHOLD:
            traj.diverged = True
            traj.message = (
                f"sigma_max = {smax:.3g} > {DIVERGENCE_THRESHOLD:g} at step {k}: the schedule diverges"
            )
    traj.final = from_wide_batch(last, layout, G.dtype)
    return traj
