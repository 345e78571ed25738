"""Measurement: run a schedule on matrices and compare every iterate with float64 references.

This is the one place where nsiter "runs a schedule on seeded matrices and compares with a float64
reference".  Trajectories (``nsiter.records``), the measured search objectives (``nsiter.search``),
the benchmark's error column and the experiments all call it.

For a test matrix ``G = U diag(sigma) V^T`` (float64 SVD, :func:`reference`) and an iterate ``X_k``
(float64 copy, on the small side ``m <= n``), the quantities are:

- ``sigma_max``, ``sigma_min``: extreme singular values of ``X_k``;
- ``rho = 1 - lambda_min(X X^T)``: the spectral distance that a certified analysis bounds;
- ``max_abs_lambda_minus_1 = max_i |sigma_i^2 - 1|``;
- ``orth_err_2 = ||X X^T - I||_2`` (from ``eigvalsh``: an independent computation of the previous line)
  and ``orth_err_fro = ||X X^T - I||_F``;
- ``polar_err_2``, ``polar_err_fro``: ``||X_k - U V^T||`` with the polar factor of ``G``
  (:func:`polar_factor`).  For a numerically rank-deficient ``G`` (rank ``r < min(m, n)`` at the tolerance
  ``max(m, n) eps_64 sigma_max``: :attr:`Reference.rank`) the polar factor is only defined on the range, so
  the error is taken there: ``||(X_k - U_r V_r^T) V_r V_r^T|| = ||X_k V_r V_r^T - U_r V_r^T||``.  An odd
  polynomial maps the null space to itself, but the rounding of ``G`` to the working precision puts
  singular values of size ``u ||G||`` there that the iteration amplifies: on the null space ``X_k`` is
  rounding, not an approximation of anything, and the full-space error would report that as 1;
- ``max_singular_error = max_i |sigma_i(X_k) - 1|``: the measured counterpart of the certified
  ``max |1 - phi_k|`` (in exact arithmetic ``sigma_i(X_k) = phi_k(sigma_i(X_0))``);
- ``max_direction_error``, ``mean_direction_error``: ``max_i`` and ``mean_i`` of ``|1 - u_i^T X_k v_i|``
  along the input's own singular directions (what the iteration should send to 1), ``i <= r`` (the range).

Full-rank matrices (``r = min(m, n)``) are measured on the whole space, exactly as before the range rule.

A run *diverges* (:func:`diverged`, the one rule used everywhere) when an iterate has a non-finite entry
or ``sigma_max > DIVERGENCE_THRESHOLD``; from then on its errors are ``inf``.

Normalization: ``"schedule"`` uses the schedule's own (``X_0 = G / (scale ||G||_F + eps)`` by default);
``"exact"`` divides by the exact spectral norm times the schedule's safety factor,
``X_0 = G / (scale ||G||_2)``, so that the measured singular values fill the interval a certified analysis
covers (passed to the evaluator as a Frobenius normalization with ``scale' = scale ||G||_2 / ||G||_F`` and
``eps = 0``).  Schedules whose normalization is not Frobenius (AOL) keep their own under ``"exact"``.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nsiter._display import html_table, rows_span
from nsiter.checks import DIVERGENCE_THRESHOLD, check_interval, check_positive_int, check_seed, short_repr
from nsiter.dtypes import dtype_name, torch_dtype
from nsiter.evaluate import iterates, resolve_schedule, validate_matrix
from nsiter.rounding import rounding_error, rounding_errors
from nsiter.schedule import Normalization, Schedule

MAX_CASES = 10_000  # matrices one log_uniform_cases call may build (sizes x seeds)

__all__ = [
    "DIVERGENCE_THRESHOLD",
    "MAX_CASES",
    "QUANTITIES",
    "Case",
    "Measurement",
    "Reference",
    "diverged",
    "exact_spectral",
    "iterate_quantities",
    "log_uniform_cases",
    "measure",
    "polar_factor",
    "reference",
    "rounding_error",
    "rounding_errors",
]


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
DIRECTION_QUANTITIES = ("max_singular_error", "max_direction_error", "mean_direction_error")
NORMALIZATIONS = ("schedule", "exact")


def diverged(sigma_max: float) -> bool:
    """The one divergence rule: ``sigma_max`` non-finite or above ``DIVERGENCE_THRESHOLD``."""
    return not math.isfinite(sigma_max) or sigma_max > DIVERGENCE_THRESHOLD


def polar_factor(G: torch.Tensor) -> torch.Tensor:
    """``U V^T`` of ``G = U S V^T`` in float64 (batched), dropping singular values below ``max(m,n) eps sigma_max``
    with ``eps`` the machine epsilon of ``G``'s own dtype (float64 for non-float inputs): a matrix of exact rank
    ``r`` stored in float32 has rounding singular values of about ``eps_32 sigma_max``, not zeros.

    For full-rank ``G`` this is the orthogonal polar factor (Higham, *Functions of Matrices*, SIAM 2008,
    Thm 8.1); for rank-deficient ``G`` it is the partial isometry on the numerically nonzero singular values,
    which is what an odd polynomial iteration converges to.
    """
    G = torch.as_tensor(G)
    eps = _eps(G.dtype)
    Gd = G.to(torch.float64)
    if Gd.ndim < 2 or Gd.numel() == 0 or not bool(torch.isfinite(Gd).all()):
        raise ValueError(
            f"polar_factor needs a finite non-empty (..., m, n) matrix (NaN/Inf?), got shape {tuple(Gd.shape)}"
        )
    U, sv, Vh = torch.linalg.svd(Gd, full_matrices=False)
    keep = (sv > _rank_cutoff(Gd.shape, sv[..., :1], eps)).to(torch.float64)
    return (U * keep.unsqueeze(-2)) @ Vh


def _eps(dtype: torch.dtype) -> float:
    return torch.finfo(dtype).eps if dtype.is_floating_point else torch.finfo(torch.float64).eps


def _rank_cutoff(shape: Sequence[int], sigma_max: torch.Tensor, eps: float) -> torch.Tensor:
    """``max(m, n) eps sigma_max``: singular values at or below it are numerically zero (``eps`` of the
    matrix's stored dtype, as numpy's ``matrix_rank``)."""
    return max(shape[-2:]) * eps * sigma_max


@dataclass(frozen=True)
class Reference:
    """Float64 SVD of one matrix on its small side (``m <= n``): ``W = U diag(S) V^T``.

    ``W`` is the matrix as the kernel iterates on it (transposed when the input is tall).
    """

    W: torch.Tensor
    U: torch.Tensor
    S: torch.Tensor
    Vh: torch.Tensor
    polar: torch.Tensor

    @functools.cached_property
    def rank(self) -> int:
        """Numerical rank: singular values above ``max(m, n) eps sigma_max``, ``eps`` of ``W``'s stored dtype
        (:func:`polar_factor`'s rule)."""
        return int((_rank_cutoff(self.W.shape, self.S[:1], _eps(self.W.dtype)) < self.S).sum())

    @functools.cached_property
    def range_projector(self) -> torch.Tensor | None:
        """``V_r V_r^T`` (n x n) onto the numerical row space of ``W``; None when ``W`` has full rank."""
        r = self.rank
        if r == self.S.shape[-1]:
            return None
        V = self.Vh[:r].mT
        return V @ V.mT

    @property
    def sigma_max(self) -> float:
        return float(self.S[0])

    @property
    def frobenius(self) -> float:
        return float(torch.linalg.vector_norm(self.S))


def reference(G: torch.Tensor) -> Reference:
    """The float64 reference of one matrix ``G`` (m, n), taken on its small side."""
    if G.ndim != 2:
        raise ValueError(f"reference takes one matrix (m, n), got shape {tuple(G.shape)}")
    W = G.mT if G.shape[0] > G.shape[1] else G
    Wd = W.detach().to("cpu", torch.float64)
    U, S, Vh = torch.linalg.svd(Wd, full_matrices=False)
    if not float(S[0]) > 0:  # a zero matrix: its polar factor is empty, nothing to compare
        raise ValueError(f"the zero matrix (shape {tuple(G.shape)}) has no polar factor to measure against")
    return Reference(W, U, S, Vh, polar_factor(W.detach().cpu()))


@dataclass(frozen=True)
class Case:
    """One test matrix with its float64 reference and a label (e.g. ``"log-uniform 128x128 seed 3"``)."""

    label: str
    G: torch.Tensor
    ref: Reference
    seed: int | None = None

    @classmethod
    def of(cls, G: torch.Tensor, label: str = "", seed: int | None = None) -> Case:
        validate_matrix(G)
        return cls(
            label or "x".join(map(str, G.shape)), G, reference(G), None if seed is None else check_seed(seed)
        )


@functools.lru_cache(maxsize=256)
def _log_uniform_case(m: int, n: int, lo: float, hi: float, seed: int) -> Case:
    from nsiter.matrices import log_uniform

    return Case.of(log_uniform(m, n, lo, seed, hi=hi), f"log-uniform {m}x{n} seed {seed}", seed)


def log_uniform_cases(
    sizes: int | Sequence[int | Sequence[int]], seeds: Iterable[int], lo: float = 1e-3, hi: float = 1.0
) -> list[Case]:
    """Seeded matrices with singular values log-spaced in ``[lo, hi]`` (``nsiter.matrices.log_uniform``),
    one per (size, seed); a size is ``n`` (square) or ``(m, n)``.  Cached per process: callers only read them.
    """
    lo, hi = check_interval(lo, hi)
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Iterable):
        raise ValueError(f"seeds must be a list of integers, got {short_repr(seeds)}")
    seeds = list(itertools.islice(seeds, MAX_CASES + 1))
    if len(seeds) > MAX_CASES:
        raise ValueError(f"at most {MAX_CASES} seeds, got more")
    seeds = [check_seed(s) for s in seeds]  # all of them before any matrix: 1.5 is not seed 1
    shapes = []
    sizes = [sizes] if isinstance(sizes, (int, np.integer)) else sizes
    if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Iterable):
        raise ValueError(f"sizes must be a size or a list of sizes, got {short_repr(sizes)}")
    for size in itertools.islice(sizes, MAX_CASES + 1):
        m, n = (size, size) if isinstance(size, (int, np.integer)) else tuple(size)
        shapes.append((check_positive_int(m, "size"), check_positive_int(n, "size")))
    if len(shapes) * len(seeds) > MAX_CASES:
        raise ValueError(
            f"at most {MAX_CASES} matrices (sizes x seeds), got {len(shapes)} x {len(seeds)} or more"
        )
    return [_log_uniform_case(m, n, lo, hi, s) for m, n in shapes for s in seeds]


def exact_spectral(schedule: Schedule, ref: Reference) -> Schedule:
    """``schedule`` normalized by the exact spectral norm and its own safety factor: ``X_0 = G / (scale ||G||_2)``.

    Frobenius schedules only; others (AOL) are returned unchanged.
    """
    own = schedule.normalization
    if own.norm != "frobenius":
        return schedule
    scale = own.scale * ref.sigma_max / ref.frobenius
    return replace(schedule, normalization=Normalization("frobenius", scale=scale, eps=0.0))


def iterate_quantities(
    X: torch.Tensor, ref: Reference | None, quantities: Sequence[str] = QUANTITIES
) -> tuple[dict[str, float], torch.Tensor]:
    """The requested quantities (module docstring) of one float64 iterate ``X`` (m, n), ``m <= n``, and its
    singular values (descending)."""
    S = torch.linalg.svdvals(X)
    lam = S**2
    q = {
        "sigma_max": S[0],
        "sigma_min": S[-1],
        "rho": 1 - lam[-1],
        "max_abs_lambda_minus_1": (lam - 1).abs().max(),
        "max_singular_error": (S - 1).abs().max(),
    }
    if "orth_err_2" in quantities or "orth_err_fro" in quantities:
        E = X @ X.mT - torch.eye(X.shape[-2], dtype=X.dtype)
        q["orth_err_2"] = torch.linalg.eigvalsh(E).abs().max()
        q["orth_err_fro"] = torch.linalg.matrix_norm(E, ord="fro")
    if ref is not None:
        if any(name.startswith("polar_err") for name in quantities):
            D = X - ref.polar
            P = ref.range_projector
            if P is not None:  # rank-deficient: the error on the range (module docstring)
                D = D @ P
            q["polar_err_2"] = torch.linalg.matrix_norm(D, ord=2)
            q["polar_err_fro"] = torch.linalg.matrix_norm(D, ord="fro")
        if "max_direction_error" in quantities or "mean_direction_error" in quantities:
            r = ref.rank
            dev = (
                1.0 - torch.einsum("ij,ik,kj->j", ref.U[:, :r], X, ref.Vh[:r].mT)
            ).abs()  # |1 - u_j^T X v_j|
            q["max_direction_error"] = dev.max()
            q["mean_direction_error"] = dev.mean()
    return {name: float(q[name]) for name in quantities}, S


@dataclass
class Measurement:
    """What a schedule did to a set of matrices.

    Attributes:
        schedule: the schedule's name.
        dtype: canonical working dtype name (``"bfloat16"``).
        normalization: ``"schedule"`` or ``"exact"``.
        rows: tidy rows, one per (matrix, step): ``{"matrix", "label", "seed", "step", "diverged", <quantity>:
            value, ...}``; only the final step unless measured with ``every_step=True``.
        singular_values: rows ``{"matrix", "step", "index", "sigma"}`` when recorded.
        finals: the last iterate of each matrix (float64, small side), when kept.
    """

    schedule: str
    dtype: str
    normalization: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    singular_values: list[dict[str, Any]] = field(default_factory=list)
    finals: list[torch.Tensor] = field(default_factory=list)

    @property
    def diverged(self) -> bool:
        return any(r["diverged"] for r in self.rows)

    def __repr__(self) -> str:
        """One line: schedule, dtype, normalization, matrices and steps measured, divergence."""
        return (
            f"Measurement({self.schedule!r}, {self.dtype}, {self.normalization} normalization: "
            f"{rows_span(self.rows)}{', diverged' if self.diverged else ''})"
        )

    def _repr_html_(self) -> str:
        """The one-line summary over the table of rows (one per matrix and step)."""
        return html_table(repr(self), self.rows)

    def to_pandas(self) -> Any:
        """The rows as a ``pandas.DataFrame`` (pandas is imported on call)."""
        import pandas as pd

        return pd.DataFrame(self.rows)

    def final_rows(self) -> list[dict[str, Any]]:
        """The row of the last recorded step of each matrix."""
        last: dict[int, dict[str, Any]] = {}
        for r in self.rows:
            if r["matrix"] not in last or r["step"] >= last[r["matrix"]]["step"]:
                last[r["matrix"]] = r
        return [last[i] for i in sorted(last)]

    def summary(self) -> dict[str, float]:
        """Aggregates of the final step over matrices (``inf`` when any run diverged):

        ``max_<q>`` the worst run, ``mean_max_<q>`` the mean over runs of each run's worst (less noisy),
        ``median_max_direction_error``, ``mean_error`` (mean over runs of ``mean_direction_error``) and
        ``spectral_error`` (worst ``polar_err_2``), for the quantities measured.
        """
        final = self.final_rows()
        out: dict[str, float] = {}
        if any(r["diverged"] for r in final):
            keys = ["spectral_error", "mean_error", "median_max_direction_error"]
            for q in ("direction_error", "singular_error"):
                keys += [f"max_{q}", f"mean_max_{q}"]
            return dict.fromkeys(keys, math.inf)
        if "polar_err_2" in final[0]:
            out["spectral_error"] = max(r["polar_err_2"] for r in final)
        if "mean_direction_error" in final[0]:
            out["mean_error"] = float(np.mean([r["mean_direction_error"] for r in final]))
        for q in ("direction_error", "singular_error"):
            if f"max_{q}" in final[0]:
                values = [r[f"max_{q}"] for r in final]
                out[f"max_{q}"] = max(values)
                out[f"mean_max_{q}"] = float(np.mean(values))
                if q == "direction_error":
                    out["median_max_direction_error"] = float(np.median(values))
        return out

    def runs(self) -> list[dict[str, Any]]:
        """Per matrix: ``{"matrix", "label", "seed", "max_direction_error", "max_singular_error"}`` at the
        final step (``inf`` for a diverged run): the unit of paired comparisons."""
        keys = ("max_direction_error", "max_singular_error")
        return [
            {
                "matrix": r["matrix"],
                "label": r["label"],
                "seed": r["seed"],
                **{k: (math.inf if r["diverged"] else r[k]) for k in keys if k in r},
            }
            for r in self.final_rows()
        ]


def _groups(matrices: Any) -> list[list[Case]]:
    """Cases grouped into the batches the evaluator runs: one batched tensor is one group (one batched
    call, as ``orthogonalize`` would make it); a list of cases or matrices runs one by one."""
    if isinstance(matrices, Case):
        return [[matrices]]
    if isinstance(matrices, torch.Tensor):
        validate_matrix(matrices)
        flat = matrices.reshape(-1, *matrices.shape[-2:])
        return [[Case.of(M, f"matrix {i}") for i, M in enumerate(flat)]]
    if isinstance(matrices, (str, bytes)) or not isinstance(matrices, Iterable):
        raise ValueError(f"expected Case objects or matrices, got {type(matrices).__name__}")
    groups = []
    for item in matrices:
        if isinstance(item, Case):
            groups.append([item])
        elif isinstance(item, torch.Tensor):
            groups.append([Case.of(item)])
        else:
            raise ValueError(f"expected Case objects or matrices, got {type(item).__name__}")
    if not groups:
        raise ValueError("no matrices to measure")
    return groups


def measure(
    schedule: Schedule | str | Path | Sequence,
    matrices: Any,
    *,
    dtype: Any = "bfloat16",
    normalization: str | Normalization = "exact",
    steps: int | None = None,
    every_step: bool = False,
    quantities: Sequence[str] = (*QUANTITIES, *DIRECTION_QUANTITIES),
    record_singular_values: bool = False,
    keep_final: bool = False,
    emulate: bool | None = None,
    device: str | torch.device = "cpu",
    method: str = "standard",
    **evaluator: Any,
) -> Measurement:
    """Run ``schedule`` on each matrix in ``dtype`` and measure every (or the final) iterate in float64.

    Args:
        schedule: a ``Schedule``, registry name, path or list of coefficient tuples.
        matrices: ``Case`` objects (:func:`log_uniform_cases`) or matrices, each run on its own; or one
            (..., m, n) tensor, run as one batch (``matrix`` numbers its entries row-major).
        dtype: working precision (``torch.bfloat16``, ``"bf16"``, ``"bfloat16"``, ...).
        normalization: ``"exact"`` (default: exact spectral norm times the schedule's safety factor),
            ``"schedule"`` (the schedule's own) or a ``Normalization`` to use instead.  A batch under
            ``"exact"`` is normalized per matrix only when it is one matrix; larger batches need
            ``"schedule"`` or a ``Normalization``.
        steps: truncate or extend the schedule (``Schedule.truncated``).
        every_step: one row per step ``0..T`` (``X_0`` is the normalized input) instead of the final only.
        quantities: names from ``QUANTITIES`` and ``DIRECTION_QUANTITIES``.
        record_singular_values: also fill ``singular_values``.
        keep_final: keep the final iterates (float64, small side, stacked per group) in ``finals``.
        method: ``"standard"`` (default: the arithmetic every schedule is compared in, the same on every
            machine), ``"gram"`` or ``"auto"`` (what ``orthogonalize`` would pick here).
        emulate, device, evaluator: passed to :func:`nsiter.evaluate.iterates` (``restarts``, ``gram_dtype``).

    Returns:
        A :class:`Measurement`.  Measurement costs an SVD (and an eigendecomposition for ``orth_err``) per
        recorded iterate: meant for analysis, not for training loops.
    """
    known = (*QUANTITIES, *DIRECTION_QUANTITIES)
    bad = [q for q in quantities if q not in known]
    if bad:
        raise ValueError(f"unknown quantities {bad}; choose from {known}")
    if not isinstance(normalization, Normalization) and normalization not in NORMALIZATIONS:
        raise ValueError(
            f"normalization must be one of {NORMALIZATIONS} or a Normalization, got {normalization!r}"
        )
    name = dtype_name(dtype)
    work = torch_dtype(name)
    sched = resolve_schedule(schedule, steps=steps)
    label = normalization if isinstance(normalization, str) else normalization.norm
    out = Measurement(sched.name, name, label)
    index = 0
    for group in _groups(matrices):
        if normalization == "exact":
            if len(group) > 1:
                raise ValueError(
                    f"normalization 'exact' needs one matrix per run, got a batch of {len(group)}"
                )
            run = exact_spectral(sched, group[0].ref)
        elif isinstance(normalization, Normalization):
            run = replace(sched, normalization=normalization)
        else:
            run = sched
        W = torch.stack([c.ref.W for c in group]).to(device)
        failed = [False] * len(group)
        last = None
        for k, X in enumerate(iterates(W, run, dtype=work, emulate=emulate, method=method, **evaluator)):
            if not every_step and k < len(run):
                continue
            Xd = X.to("cpu", torch.float64)
            last = Xd
            for j, case in enumerate(group):
                row = {"matrix": index + j, "label": case.label, "seed": case.seed, "step": k}
                if failed[j] or not bool(torch.isfinite(Xd[j]).all()):
                    failed[j] = True
                    out.rows.append({**row, "diverged": True, **dict.fromkeys(quantities, math.inf)})
                    continue
                q, S = iterate_quantities(Xd[j], case.ref, quantities)
                failed[j] = diverged(float(S[0]))
                out.rows.append({**row, "diverged": failed[j], **q})
                if record_singular_values:
                    out.singular_values += [
                        {"matrix": index + j, "step": k, "index": i, "sigma": s}
                        for i, s in enumerate(S.tolist())
                    ]
        if keep_final:
            out.finals.append(last.clone())
        index += len(group)
    return out


def measured_errors(
    schedule: Schedule | str | Path | Sequence,
    *,
    sizes: int | Sequence[int | Sequence[int]] = 128,
    seeds: Iterable[int] = (0, 1),
    lo: float = 1e-3,
    hi: float = 1.0,
    dtype: Any = "bfloat16",
    emulate: bool | None = None,
    device: str | torch.device = "cpu",
    method: str = "standard",
    **evaluator: Any,
) -> dict[str, Any]:
    """Final-step errors of ``schedule`` in ``dtype`` on log-uniform matrices, exact spectral normalization.

    The measured search objectives (``nsiter.search.calibrate``, ``budget`` with a dtype) and the search
    results table score schedules with this: :meth:`Measurement.summary` over every (size, seed), plus
    ``runs`` (:meth:`Measurement.runs`, for paired comparisons).  ``evaluator`` goes to :func:`measure`
    (``restarts``, ``gram_dtype``).
    """
    cases = log_uniform_cases(sizes, seeds, lo, hi)
    quantities = ("polar_err_2", *DIRECTION_QUANTITIES)
    m = measure(
        schedule,
        cases,
        dtype=dtype,
        quantities=quantities,
        emulate=emulate,
        device=device,
        method=method,
        **evaluator,
    )
    return {**m.summary(), "runs": m.runs()}
