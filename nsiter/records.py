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

Rows: ``rows`` holds one row per (matrix, step) with a column per quantity, as ``Measurement.rows`` does
(rows mean one observation each, everywhere in nsiter); ``matrix_rows(i)`` is one matrix's; ``long()`` melts
them to one row per (matrix, step, quantity), the form that plots quantities as series; ``singular_values``
holds one row per (matrix, step, index).  ``Trajectory.to_csv`` writes any of the three tables and
``to_pandas`` returns one as a DataFrame when pandas is importable.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from nsiter._display import html_table, rows_span
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
        rows: one row per (matrix, step): ``{"matrix", "step", <quantity>: value, ...}`` (see ``QUANTITIES``).
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

    def __repr__(self) -> str:
        """One line: schedule, dtype, shape, steps recorded, the last step's worst recorded error."""
        last = max((r["step"] for r in self.rows), default=-1)
        finals = [r for r in self.rows if r["step"] == last]
        key = next(
            (q for q in ("polar_err_2", "orth_err_2", "rho", "sigma_max") if finals and q in finals[0]), None
        )
        tail = f", worst {key} {max(r[key] for r in finals):.4g} at step {last}" if key else ""
        state = f", diverged: {self.message}" if self.diverged else ""
        return (
            f"Trajectory({self.schedule!r}, {self.dtype}, shape {tuple(self.shape)}: {rows_span(self.rows)}"
            f"{tail}{state})"
        )

    def _repr_html_(self) -> str:
        """The one-line summary over the table of rows (one per matrix and step)."""
        return html_table(repr(self), self.rows)

    def table(self, table: str = "rows") -> list[dict[str, Any]]:
        """``"rows"`` (one per matrix and step), ``"long"`` (:meth:`long`) or ``"singular_values"``."""
        if table == "rows":
            return self.rows
        if table == "long":
            return self.long()
        if table == "singular_values":
            return self.singular_values
        raise ValueError(f"table must be 'rows', 'long' or 'singular_values', got {table!r}")

    def matrix_rows(self, matrix: int = 0) -> list[dict[str, Any]]:
        """One matrix's rows, one per step (a single matrix's trajectory: all of ``rows``)."""
        return [row for row in self.rows if row["matrix"] == matrix]

    def long(self) -> list[dict[str, Any]]:
        """The rows melted to one per (matrix, step, quantity): ``{"matrix", "step", "quantity", "value"}``, the
        form in which ``nsiter.plot.spectral_distance`` draws several quantities as series."""
        return [
            {"matrix": row["matrix"], "step": row["step"], "quantity": q, "value": v}
            for row in self.rows
            for q, v in row.items()
            if q not in ("matrix", "step")
        ]

    def value(self, quantity: str, step: int, matrix: int = 0) -> float:
        """One recorded number, e.g. ``value("polar_err_2", 5)``."""
        for row in self.rows:
            if row["step"] == step and row["matrix"] == matrix and quantity in row:
                return row[quantity]
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
        traj.rows.append({"matrix": row["matrix"], "step": row["step"], **{q: row[q] for q in quantities}})
        if row["diverged"] and not traj.diverged:
            traj.diverged = True
            traj.message = (
                f"sigma_max = {row['sigma_max']:.3g} > {DIVERGENCE_THRESHOLD:g} at step {row['step']}: "
                "the schedule diverges"
            )
    traj.singular_values = [r for r in m.singular_values if stop is None or r["step"] < stop]
    traj.final = from_wide_batch(m.finals[0], layout, G.dtype)
    return traj
