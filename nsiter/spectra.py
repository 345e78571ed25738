"""Singular-value spectra of the matrices Muon really orthogonalizes, as data.

Newton–Schulz schedules are tuned for an interval ``[lo, hi]`` of normalized singular values.  Which interval
matters is an empirical question: ``nsiter.optim.momentum_spectra`` records, during training, the spectrum of
the matrix each Muon step feeds to the iteration, normalized as the iteration sees it,

    x_i = sigma_i(U_t) / ||U_t||_F      (so sum_i x_i^2 = 1 and x_i <= 1),

and this module turns recordings back into test spectra: :func:`measured_spectrum` (the normalized singular
values of one recorded matrix) and :func:`measured_interval` (``[lo, hi]`` for ``nsiter.analysis`` and the
search); ``nsiter.matrices.measured_matrix`` builds a seeded matrix with exactly that spectrum.

The rows are tidy (one per matrix and singular index) with columns ``task, optimizer, seed, step, param, rows,
cols, index, sigma, x``.  nsiter ships one recording as package data (:data:`DEFAULT_SPECTRA`: the training
experiment ``experiments/train_muon.py``, small transformer and MLP tasks, recorded once and frozen: a rerun
of the experiment on another CPU follows that machine's bf16 rounding and writes its own recording, while the
library's spectra stay put), so the library never reads ``experiments/``; pass any other recording as a path
or as rows.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_SPECTRA",
    "SPECTRUM_COLUMNS",
    "MeasuredSpectrum",
    "SpectraSource",
    "load_spectra",
    "measured_interval",
    "measured_spectrum",
]

DEFAULT_SPECTRA = Path(str(resources.files("nsiter") / "data" / "train_muon_spectra.csv"))
SPECTRUM_COLUMNS = ("task", "optimizer", "seed", "step", "param", "rows", "cols", "index", "x")


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


SpectraSource = str | Path | Sequence[Mapping[str, Any]] | None


def _rows(source: SpectraSource) -> tuple[str, list[Mapping[str, Any]]]:
    """``(description, rows)`` from a CSV path (default :data:`DEFAULT_SPECTRA`) or from rows."""
    if source is not None and not isinstance(source, (str, Path)):
        return "the given rows", list(source)
    path = Path(source) if source is not None else DEFAULT_SPECTRA
    if not path.is_file():
        raise ValueError(f"no recorded spectra at {str(path)!r} (pass the path of a spectra CSV, or rows)")
    try:
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in SPECTRUM_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise ValueError(f"spectra file {str(path)!r} lacks columns {missing}")
            return repr(str(path)), list(reader)
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"cannot read spectra file {str(path)!r}: {err}") from err


def load_spectra(source: SpectraSource = None, **filters: Any) -> list[MeasuredSpectrum]:
    """Read recorded spectra: tidy rows of :func:`momentum_spectra` plus ``task, optimizer, seed, step``.

    ``source`` is a CSV path (default: the shipped recording, :data:`DEFAULT_SPECTRA`) or the rows
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


def measured_spectrum(source: SpectraSource = None, **filters: Any) -> MeasuredSpectrum:
    """One recorded spectrum: among those matching ``filters``, the latest step, then the largest matrix."""
    found = load_spectra(source, **filters)
    return max(found, key=lambda s: (s.step, min(s.shape), s.shape, s.param, s.seed))


def measured_interval(
    source: SpectraSource = None, *, quantile: float = 0.0, **filters: Any
) -> tuple[float, float]:
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
