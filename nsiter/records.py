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

Rows: ``rows`` holds one row per (matrix, step, quantity) (the tidy, long form); ``singular_values`` one
row per (matrix, step, index); ``wide()`` pivots one matrix's rows to one row per step, for printing.  ``Trajectory.to_csv`` writes either table; ``to_pandas`` returns a DataFrame when pandas
is importable.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from nsiter._io import atomic_write_csv
from nsiter.dtypes import dtype_name
from nsiter.evaluate import from_wide_batch, resolve_schedule, validate_matrix, wide_batch
from nsiter.measure import DIVERGENCE_THRESHOLD, QUANTITIES, measure
from nsiter.schedule import Normalization, Schedule

__all__ = ["Trajectory", "trajectory"]


@dataclass
class Trajectory:
    """What a schedule did to one matrix (or a batch), step by step.

    Attributes:
        schedule: the schedule's name.
        dtype: the working dtype, e.g. ``"bfloat16"``.
        shape: the input's shape.
        rows: tidy rows ``{"matrix", "step", "quantity", "value"}`` (see ``QUANTITIES``).
        singular_values: tidy rows ``{"matrix", "step", "index", "sigma"}``, descending per step.
        final: the last iterate, in the input's shape and dtype.
        diverged: True when an iterate became non-finite or ``sigma_max > 1e3``.
        message: why it diverged (empty otherwise).
    """

    schedule: str
    dtype: str
    shape: tuple[int, ...]
    rows: list[dict[str, Any]] = field(default_factory=list)
    singular_values: list[dict[str, Any]] = field(default_factory=list)
    final: torch.Tensor | None = None
    diverged: bool = False
    message: str = ""

    def table(self, table: str = "rows") -> list[dict[str, Any]]:
        if table == "rows":
            return self.rows
        if table == "singular_values":
            return self.singular_values
        raise ValueError(f"table must be 'rows' or 'singular_values', got {table!r}")

    def value(self, quantity: str, step: int, matrix: int = 0) -> float:
        """One recorded number, e.g. ``value("polar_err_2", 5)``."""
        for row in self.rows:
            if row["quantity"] == quantity and row["step"] == step and row["matrix"] == matrix:
                return row["value"]
        raise ValueError(f"no record of {quantity!r} at step {step} for matrix {matrix}")

    def sigmas(self, step: int, matrix: int = 0) -> list[float]:
        """Singular values of ``X_step`` (descending)."""
        out = [r["sigma"] for r in self.singular_values if r["step"] == step and r["matrix"] == matrix]
        if not out:
            raise ValueError(f"no singular values recorded at step {step} for matrix {matrix}")
        return out

    def to_csv(self, path: str | Path, table: str = "rows") -> Path:
        """Write a table as CSV; floats with ``repr`` precision.

        Written by ``nsiter._io.atomic_write``: links followed, a regular file replaced atomically, a device or
        FIFO written in place; a failure (a directory, a missing folder, a full disk) raises ``WriteError``,
        a ``ValueError`` naming ``path``.
        """
        rows = self.table(table)
        fields = ["schedule", "dtype", *(rows[0].keys() if rows else ["matrix", "step"])]
        return atomic_write_csv(
            path, fields, ({"schedule": self.schedule, "dtype": self.dtype, **r} for r in rows)
        )

    def to_pandas(self, table: str = "rows"):
        """The table as a ``pandas.DataFrame`` (raises ``ImportError`` when pandas is missing)."""
        import pandas as pd

        df = pd.DataFrame(self.table(table))
        df.insert(0, "dtype", self.dtype)
        df.insert(0, "schedule", self.schedule)
        return df

    def wide(self, matrix: int = 0) -> list[dict[str, Any]]:
        """One row per step with every quantity as a column (for printing)."""
        by_step: dict[int, dict[str, Any]] = {}
        for row in self.rows:
            if row["matrix"] == matrix:
                by_step.setdefault(row["step"], {"step": row["step"]})[row["quantity"]] = row["value"]
        return [by_step[k] for k in sorted(by_step)]


def trajectory(
    G: torch.Tensor,
    schedule: Schedule | str | Path | Sequence = "muon",
    *,
    dtype: Any = torch.bfloat16,
    norm: str | Normalization | None = None,
    steps: int | None = None,
    quantities: Sequence[str] = QUANTITIES,
    record_singular_values: bool = True,
    emulate: bool | None = None,
    method: str = "auto",
    **evaluator: Any,
) -> Trajectory:
    """Run ``schedule`` on ``G`` like ``orthogonalize`` and record every iterate (see module docstring).

    Args:
        G: ``(m, n)`` or ``(..., m, n)``; batch entries are numbered ``matrix = 0, 1, ...`` (row-major) and
            run as one batch, as ``orthogonalize`` runs them.
        schedule, dtype, norm, steps, emulate, method, evaluator: as for ``nsiter.orthogonalize`` (``method``
            defaults to ``"auto"`` like it; the Gram form's iterates ``Q_k X_0`` are rebuilt for recording).
        quantities: subset of ``QUANTITIES`` to record.
        record_singular_values: also fill the per-(step, index) table.

    Returns:
        A ``Trajectory``; ``final`` equals ``orthogonalize(G, ...)`` (same kernel, same order of
        operations).  Measurement is ``nsiter.measure.measure`` (float64 on the CPU, one SVD and one
        eigendecomposition per step): meant for analysis, not for training loops.
    """
    validate_matrix(G)
    bad = [q for q in quantities if q not in QUANTITIES]
    if bad:
        raise ValueError(f"unknown quantities {bad}; choose from {QUANTITIES}")
    sched = resolve_schedule(schedule, norm=norm, steps=steps)
    _, layout = wide_batch(G.detach())
    m = measure(
        sched,
        G.detach(),
        dtype=dtype,
        normalization="schedule",
        every_step=True,
        quantities=quantities,
        record_singular_values=record_singular_values,
        keep_final=True,
        emulate=emulate,
        device=G.device,
        method=method,
        **evaluator,
    )
    traj = Trajectory(sched.name, dtype_name(dtype), tuple(G.shape))
    stop = None  # first step with a non-finite iterate: nothing is recorded from there on
    for row in m.rows:
        if stop is not None and row["step"] >= stop:
            continue
        if row["diverged"] and not math.isfinite(row.get("sigma_max", row.get(quantities[0], math.inf))):
            stop = row["step"]
            bad_idx = sorted({r["matrix"] for r in m.rows if r["step"] == stop and r["diverged"]})
            note = f"iterate {stop} has non-finite entries (matrices {bad_idx[:5]})"
            traj.message = f"{traj.message}; {note}" if traj.diverged else note
            traj.diverged = True
            traj.rows = [r for r in traj.rows if r["step"] < stop]
            continue
        for name in quantities:
            traj.rows.append(
                {"matrix": row["matrix"], "step": row["step"], "quantity": name, "value": row[name]}
            )
        if row["diverged"] and not traj.diverged:
            traj.diverged = True
            traj.message = (
                f"sigma_max = {row['sigma_max']:.3g} > {DIVERGENCE_THRESHOLD:g} at step {row['step']}: "
                "the schedule diverges"
            )
    traj.singular_values = [r for r in m.singular_values if stop is None or r["step"] < stop]
    traj.final = from_wide_batch(m.finals[0], layout, G.dtype)
    return traj
