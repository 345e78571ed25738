"""Singular-value spectra of the matrices Muon really orthogonalizes, recorded during training.

Newton–Schulz schedules are tuned for an interval ``[lo, hi]`` of normalized singular values.  Which interval
matters is an empirical question: this module records, during training, the spectrum of the matrix each Muon
step feeds to the iteration (the Nesterov momentum ``U_t = (1 - mu) G_t + mu B_t``, or ``B_t`` without
Nesterov), normalized as the iteration sees it:

    x_i = sigma_i(U_t) / ||U_t||_F      (so sum_i x_i^2 = 1 and x_i <= 1)

and turns the recordings back into test spectra: :func:`measured_spectrum` (the normalized singular values of one
recorded matrix), :func:`measured_interval` (``[lo, hi]`` for ``nsiter.analysis`` and the search) and
:func:`measured_matrix` (a seeded matrix with exactly that spectrum for the evaluator).

The rows are tidy (one per matrix and singular index) with columns ``task, optimizer, seed, step, param, rows,
cols, index, sigma, x``; the training experiment writes them to ``experiments/results/train_muon.spectra.csv``.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nsiter.optim.muon import newton_schulz_input

__all__ = [
    "DEFAULT_SPECTRA",
    "MeasuredSpectrum",
    "load_spectra",
    "measured_interval",
    "measured_matrix",
    "measured_spectrum",
    "momentum_spectra",
]

DEFAULT_SPECTRA = Path(__file__).resolve().parents[2] / "experiments" / "results" / "train_muon.spectra.csv"


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


@dataclass(frozen=True)
class MeasuredSpectrum:
    """One recorded matrix: where it comes from and its normalized singular values ``x`` (descending)."""

    task: str
    optimizer: str
    seed: int
    step: int
    param: str
    shape: tuple[int, int]
    x: np.ndarray

    @property
    def interval(self) -> tuple[float, float]:
        """``(min x, max x)``."""
        return float(self.x.min()), float(self.x.max())

    def resampled(self, k: int) -> np.ndarray:
        """``k`` values (descending) read off the recorded distribution at evenly spaced quantiles.

        Linear interpolation in the index of the sorted spectrum, endpoints included, so ``max`` and ``min`` are
        kept exactly; ``k = len(x)`` returns ``x``.
        """
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        if k == 1:
            return self.x[:1].copy()
        pos = np.linspace(0.0, len(self.x) - 1.0, k)
        return np.interp(pos, np.arange(len(self.x)), self.x)


# the columns load_spectra reads
_COLUMNS = ("task", "optimizer", "seed", "step", "param", "rows", "cols", "index", "x")

Source = str | Path | Sequence[Mapping[str, Any]] | None


def _rows(source: Source) -> tuple[str, list[Mapping[str, Any]]]:
    """``(description, rows)`` from a CSV path (default :data:`DEFAULT_SPECTRA`) or from rows."""
    if source is not None and not isinstance(source, (str, Path)):
        return "the given rows", list(source)
    path = Path(source) if source is not None else DEFAULT_SPECTRA
    if not path.is_file():
        raise ValueError(
            f"no recorded spectra at {str(path)!r}: run `python -m experiments train_muon` (or pass a path)"
        )
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in _COLUMNS if c not in (reader.fieldnames or ())]
        if missing:
            raise ValueError(
                f"spectra file {str(path)!r} lacks the columns {missing} (has {reader.fieldnames})"
            )
        return repr(str(path)), list(reader)


def load_spectra(source: Source = None, **filters: Any) -> list[MeasuredSpectrum]:
    """Read recorded spectra: tidy rows of :func:`momentum_spectra` plus ``task, optimizer, seed, step``.

    ``source`` is a CSV path (default: the training experiment's output, :data:`DEFAULT_SPECTRA`) or the rows
    themselves.  ``filters`` select on ``task``, ``optimizer``, ``seed``, ``step``, ``param`` (equality).
    """
    unknown = set(filters) - {"task", "optimizer", "seed", "step", "param"}
    if unknown:
        raise ValueError(
            f"unknown spectrum filters {sorted(unknown)}; use task, optimizer, seed, step, param"
        )
    where, rows = _rows(source)
    groups: dict[tuple, dict[str, Any]] = {}
    for row in rows:
        key = (str(row["task"]), str(row["optimizer"]), int(row["seed"]), int(row["step"]), str(row["param"]))
        rec = dict(zip(("task", "optimizer", "seed", "step", "param"), key, strict=True))
        if any(rec[k] != type(rec[k])(v) for k, v in filters.items()):
            continue
        g = groups.setdefault(key, {"shape": (int(row["rows"]), int(row["cols"])), "x": []})
        g["x"].append((int(row["index"]), float(row["x"])))
    out = []
    for key, g in sorted(groups.items()):
        x = np.array([v for _, v in sorted(g["x"])])
        out.append(MeasuredSpectrum(*key, shape=g["shape"], x=np.sort(x)[::-1].copy()))
    if not out:
        raise ValueError(f"no recorded spectrum in {where} matches {filters}")
    return out


def measured_spectrum(source: Source = None, **filters: Any) -> MeasuredSpectrum:
    """One recorded spectrum: among those matching ``filters``, the latest step, then the largest matrix."""
    found = load_spectra(source, **filters)
    return max(found, key=lambda s: (s.step, min(s.shape), s.shape, s.param, s.seed))


def measured_interval(source: Source = None, *, quantile: float = 0.0, **filters: Any) -> tuple[float, float]:
    """``[lo, hi]`` covering the normalized singular values of every matching recorded matrix.

    With ``quantile = q > 0`` the interval is the ``[q, 1 - q]`` quantile range of the pooled values instead of
    ``[min, max]`` (to ignore the few smallest singular values).  Numerically zero singular values (rank
    deficiency, which an odd polynomial keeps at zero) are left out: those below ``max(m, n) eps_32 x_max``,
    the rank tolerance of numpy's ``matrix_rank`` for the float32 data the momentum is kept in.
    """
    if not 0.0 <= quantile < 0.5:
        raise ValueError(f"quantile must be in [0, 0.5), got {quantile!r}")
    eps32 = float(np.finfo(np.float32).eps)
    kept = [s.x[s.x > max(s.shape) * eps32 * s.x.max()] for s in load_spectra(source, **filters)]
    pooled = np.concatenate(kept)
    return float(np.quantile(pooled, quantile)), float(np.quantile(pooled, 1.0 - quantile))


def measured_matrix(
    source: Source = None,
    *,
    shape: tuple[int, int] | None = None,
    seed: int = 0,
    batch: int | None = None,
    dtype: torch.dtype = torch.float32,
    **filters: Any,
) -> torch.Tensor:
    """A matrix with a recorded spectrum: ``U diag(x) V^T`` with seeded Haar factors (:func:`nsiter.matrices.with_spectrum`).

    With ``shape=None`` the matrix has the recorded shape and exactly the recorded ``x`` (Frobenius norm 1, so
    the Frobenius normalization of a schedule sees ``x`` itself).  With another ``shape`` the spectrum is
    :meth:`MeasuredSpectrum.resampled` to ``min(shape)`` values (same smallest and largest value).
    """
    from nsiter.matrices import with_spectrum

    spec = measured_spectrum(source, **filters)
    m, n = spec.shape if shape is None else shape
    x = spec.x if shape is None else spec.resampled(min(m, n))
    return with_spectrum(m, n, torch.as_tensor(x.copy()), seed, batch=batch, dtype=dtype)
