"""Where to restart the Gram form: a rounding model of Gram Newton–Schulz and a placement search.

The Gram form of a Newton–Schulz schedule (Zhang, Amsel, Chen & Dao 2026, package
``gram-newton-schulz``; ``nsiter.gram``) iterates on the small Gram matrix ``R = X X^T`` (``m x m``,
``m <= n``) instead of ``X``: with ``p_k(x) = x q_k(x^2)``,

    Z = q_k(R),   Q <- Z Q,   R <- Z R Z,          X_T = Q X_s,

and a *restart* after step ``r`` re-forms ``X_r = Q X_s``, ``R = X_r X_r^T`` and ``Q = I``.  In exact
arithmetic this is the standard iteration.  In a low working precision it is not: ``R`` carries
``x^2`` instead of ``x``, so rounding ``R`` perturbs each eigenvalue by about ``eta = c u ||R||``
(Weyl), and every eigenvalue below ``eta`` — every singular value below about ``sqrt(c u) ||X||`` —
is replaced by noise of either sign.  The later steps map the perturbed eigenvalue through
``r -> r q_k(r)^2`` and ``Q`` accumulates ``q_k(r)``: a negative spurious eigenvalue ``-e`` grows by
``q_k(-e)^2 > q_k(0)^2`` per step (for the usual signs of the coefficients), faster and faster,
until ``R`` or ``Q`` overflow (float16's 65504) or until their rounding (``u ||Q||``) swamps every
direction.  A restart re-forms ``R`` from the iterate, whose small singular
values have by then been amplified above ``sqrt(u)``: it caps the damage at the price of two
rectangular products (:func:`nsiter.cost.restart_cost`).

The model (``predict_error``) follows one *direction* per singular value ``x`` of ``X_0`` in
``{0} U [lo, hi]`` through the schedule, evaluated in mpmath (``DPS`` digits, so nothing overflows
or cancels in the model itself), and adds, to first order, ``u`` times the norm of every rounded
intermediate times the sensitivity of ``X_T`` to it (Higham, *Accuracy and Stability of Numerical
Algorithms*, 2nd ed., SIAM 2002, ch. 3 and 5: one rounding per fused product with float32
accumulation):

- each re-formed ``R`` and each ``R <- Z R Z``: the eigenvalue ``x^2`` of the exact run becomes
  ``r~ = x^2 + s eta`` with one sign ``s = +-1`` for the whole segment (both signs are tried), and the
  perturbed scalar recursion is carried *nonlinearly* to the segment's end: the direction's output
  ``x g~(x)`` against ``x g(x)``, ``g = prod_k q_k(r_k)``.  This term is the sqrt(u) effect.
- each ``Z = fl(q_k(R))`` and ``Q = fl(Z Q)``: ``u ||Z|| ||X_{k-1}||`` and ``u ||Q_k|| ||X_s||``, then
  multiplied by the later ``|q_j(r~_j)|`` of the direction (``Q`` is multiplied by the later ``Z`` from
  the left).  ``||Q_k||`` includes the spurious eigenvalues: this is how their growth reaches
  every direction.
- each re-formed iterate ``X = fl(Q X)`` and the standard form's ``X <- fl(c_0 X + B X)``: ``u ||X||``
  plus ``u ||B|| ||X||`` for the rounded ``B = q(A) - c_0``, then propagated like any error in
  ``X``: multiplied by the slope ``psi'(x)`` of the remaining composed map along the direction.

The predicted error is ``max_x`` of the accumulated error of the direction: an estimate of the
2-norm distance ``||X_T - X_T^(float64)||_2``.  Entrywise roundings enter at the size of their
root-mean-square (``c u rms(T)``, over a log-uniform spectrum of ``[lo, hi]``); errors of ``X`` are
amplified by ``max(|psi'|, |psi(x) / x|)`` (the skew part and the null space are never contracted).
``SIZE_FACTOR`` and ``WEYL_FACTOR`` were fitted to the measured float16/bfloat16 runs of
``experiments/gram_restarts.py`` (6 schedules, 4 spectra, every placement with at most 2 restarts).  Overflow: any ``|r~|``, ``|q(r~)|``, ``|r~ q(r~)|``, ``|g~|``
above the working format's largest finite value.  This is an estimate, not a certified bound.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import mpmath
import numpy as np

from nsiter.dtypes import dtype_name, largest_finite, short_name, unit_roundoff
from nsiter.registry import load_schedule
from nsiter.schedule import Schedule, check_restarts

__all__ = [
    "DPS",
    "MAX_PLACEMENTS",
    "SAFE_LO",
    "SIZE_FACTOR",
    "GramRestarts",
    "PlacementError",
    "describe",
    "gram_restarts",
    "label",
    "placements",
    "predict_error",
    "standard_error",
]

DPS = 30  # mpmath digits of the scalar recursions (the spurious eigenvalues reach 1e300 and beyond)
SIZE_FACTOR = 0.1  # c in c u rms(T): fitted to measured fp16/bf16 runs (experiments/gram_restarts.py)
WEYL_FACTOR = 0.1  # eigenvalue shift of a rounded R in units of u ||R||_2 (fitted; ||fl(R) - R||_2 is 0.18-0.29 u ||R||_2)
GRID = 12  # grid directions per decade of [lo, hi] (plus 16)
# The lower end of the singular values that the accuracy decisions (``method="auto"``, the Gram-form budget
# search) let the model cover: exact zeros and every small direction.  Measured (experiments/gram_restarts.py,
# 96x384, R and Q in bf16): modelled on [1e-3, 1] only, Polar Express's 8 steps with restarts after (1, 3) or
# (2, 3) look within 2x of the standard form (1.6x, 1.9x), but on spectra reaching 1e-10, rank-half and a
# cluster at 1.8e-7 their error is 93x and 320x the standard form's; modelled from 0 they are rejected (4.3x, 4.4x).
SAFE_LO = 0.0
MAX_PLACEMENTS = 2000  # restart placements one search may evaluate (a limit checked before the work)


def placements(steps: int, max_restarts: int) -> list[tuple[int, ...]]:
    """Every restart placement with at most ``max_restarts`` restarts: subsets of ``1..steps-1``, fewest first."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if isinstance(max_restarts, bool) or not isinstance(max_restarts, int) or max_restarts < 0:
        raise ValueError(f"max_restarts must be a non-negative integer, got {max_restarts!r}")
    count = sum(math.comb(steps - 1, k) for k in range(min(max_restarts, steps - 1) + 1))
    if count > MAX_PLACEMENTS:
        raise ValueError(
            f"{steps} steps with at most {max_restarts} restarts give {count} placements, more than "
            f"MAX_PLACEMENTS = {MAX_PLACEMENTS} (about 0.05 s each): lower max_restarts"
        )
    out: list[tuple[int, ...]] = []
    for k in range(min(max_restarts, steps - 1) + 1):
        out += list(itertools.combinations(range(1, steps), k))
    return out


# ----------------------------------------------------------------------------------------- scalar model
def _q(coeffs: Sequence[float], r: Any) -> Any:
    """``q(r) = c_0 + c_1 r + ... + c_l r^l`` (Horner): ``p(x) = x q(x^2)``."""
    acc = coeffs[-1]
    for c in reversed(coeffs[:-1]):
        acc = acc * r + c
    return acc


def _dq(coeffs: Sequence[float], r: Any) -> Any:
    acc = 0 * r
    for j in range(len(coeffs) - 1, 0, -1):
        acc = acc * r + j * coeffs[j]
    return acc


def _rms(values: Sequence[Any]) -> Any:
    return mpmath.sqrt(mpmath.fsum(v * v for v in values) / len(values))


@dataclass
class _Model:
    """The exact trajectories of the grid directions and the per-segment rounding effects (cached)."""

    coeffs: list[tuple[float, ...]]
    u: float  # unit roundoff of the X side (the working dtype)
    ug: float  # unit roundoff of R, Z and Q (gram_dtype)
    big: float  # largest finite value of gram_dtype
    c: float
    weyl: float
    xs: list[Any]  # the directions x_0 (mpf): a log-uniform spectrum of [lo, hi], 0 first when included
    traj: list[list[Any]] = field(default_factory=list)  # traj[k][i] = x_k of direction i (exact)
    hi: list[Any] = field(default_factory=list)  # ||X_k||_2 = max_i |x_k|
    rms: list[Any] = field(default_factory=list)  # ||X_k||_F / sqrt(m): the size of an entrywise rounding
    segments: dict = field(default_factory=dict)
    amps: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        xk = list(self.xs)
        self.traj = [xk]
        for c in self.coeffs:
            xk = [x * _q(c, x * x) for x in xk]
            self.traj.append(xk)
        self.hi = [max(abs(v) for v in t) for t in self.traj]
        self.rms = [_rms(t) for t in self.traj]

    def amplification(self, s: int, t: int) -> list[Any]:
        """How steps ``s+1..t`` amplify an error of ``X_s`` along each direction.

        A perturbation ``E`` of ``X = U S V^T`` reaches the output of an odd map ``psi`` through its
        symmetric part with ``(psi(a) - psi(b)) / (a - b)`` (``psi'(a)`` on the diagonal), through its
        skew part with ``(psi(a) + psi(b)) / (a + b)`` and through the null space of ``X`` with
        ``psi(a) / a`` (the divided differences of an odd matrix function; Higham, *Functions of Matrices*,
        SIAM 2008, ch. 8, gives the polar factor's sensitivity in the same terms, ``2 / (a + b)`` and
        ``1 / a``).  Per direction ``a`` this is ``max(|psi'(a)|, |psi(a) / a|)``:
        rotations of the small singular directions are never undone by later steps.
        """
        if (s, t) in self.amps:
            return self.amps[s, t]
        d = [mpmath.mpf(1)] * len(self.xs)
        for k in range(s, t):
            c = self.coeffs[k]
            d = [e * (_q(c, x * x) + 2 * x * x * _dq(c, x * x)) for e, x in zip(d, self.traj[k], strict=True)]
        out = []
        for e, x0, xt in zip(d, self.traj[s], self.traj[t], strict=True):
            out.append(max(abs(e), abs(xt / x0)) if x0 != 0 else abs(e))
        self.amps[s, t] = out
        return out

    def segment(self, s: int, t: int) -> dict[str, Any]:
        """Gram-form segment over steps ``s+1..t`` starting from a freshly formed ``R = X_s X_s^T``.

        Returns per-direction added error (``added``) and the largest magnitude of any intermediate
        (``peak``); the worse of the two perturbation signs.
        """
        if (s, t) not in self.segments:
            a, b = self._segment(s, t, 1), self._segment(s, t, -1)
            self.segments[s, t] = a if (a["peak"], max(a["added"])) > (b["peak"], max(b["added"])) else b
        return self.segments[s, t]

    def _segment(self, s: int, t: int, sign: int) -> dict[str, Any]:
        u, c = self.ug, self.c
        x_s = self.traj[s]
        eta = self.weyl * u * self.hi[s] ** 2  # Weyl: |eigenvalue shift| <= ||fl(R) - R||_2
        r = [x * x + sign * eta for x in x_s]
        g = [mpmath.mpf(1)] * len(x_s)
        left = [mpmath.mpf(0)] * len(
            x_s
        )  # entrywise roundings of Z and Q, times the later |q| (left factors)
        peak = max(abs(v) for v in r)
        for k in range(s, t):
            coeffs = self.coeffs[k]
            z = [_q(coeffs, v) for v in r]
            g = [a * b for a, b in zip(g, z, strict=True)]
            # Z = fl(q(R)) meets X_{k-1}; Q_k = fl(Z Q) meets X_s (||Q_k|| counts the spurious eigenvalues)
            inj = c * u * (_rms(z) * self.rms[k] + (_rms(g) * self.rms[s] if k > s else 0))
            left = [abs(b) * a + inj for a, b in zip(left, z, strict=True)]
            rz = max(abs(a * b) for a, b in zip(r, z, strict=True))
            peak = max(peak, max(abs(v) for v in z), max(abs(v) for v in g), rz)
            if k + 1 < t:  # R <- fl(Z fl(R Z)): each rounding shifts eigenvalues by up to weyl u ||.||_2
                zmax = max(abs(v) for v in z)
                r = [a * b * b for a, b in zip(r, z, strict=True)]
                eta = self.weyl * u * (zmax * rz + max(abs(v) for v in r))
                r = [v + sign * eta for v in r]
                peak = max(peak, max(abs(v) for v in r))
        out = self.traj[t]
        # the output X_t = fl(Q X_s) is rounded once more (c u rms), like every iterate
        added = [
            abs(x * a - e) + b + c * self.u * self.rms[t]
            for x, a, e, b in zip(x_s, g, out, left, strict=True)
        ]
        return {"added": added, "peak": peak}


def _model(
    schedule: Schedule,
    dtype: Any,
    lo: float,
    hi: float,
    size_factor: float,
    weyl: float = WEYL_FACTOR,
    gram_dtype: Any = None,
) -> _Model:
    name = dtype_name(dtype)
    gname = name if gram_dtype is None else dtype_name(gram_dtype)
    if isinstance(lo, bool) or not isinstance(lo, (int, float)) or not math.isfinite(lo) or lo < 0:
        raise ValueError(f"lo must be a finite number >= 0 (0: rank deficient), got {lo!r}")
    if isinstance(hi, bool) or not isinstance(hi, (int, float)) or not math.isfinite(hi) or not lo < hi:
        raise ValueError(f"hi must be finite and > lo = {lo!r}, got {hi!r}")
    if not (isinstance(size_factor, (int, float)) and math.isfinite(size_factor) and size_factor > 0):
        raise ValueError(f"size_factor must be a positive number, got {size_factor!r}")
    u = unit_roundoff(name)
    floor = lo if lo > 0 else min(hi, u) * 1e-6  # below sqrt(u): every such direction behaves alike
    decades = min(12.0, math.log10(hi / floor))
    grid = np.logspace(math.log10(floor), math.log10(hi), int(GRID * decades) + 16)
    with mpmath.workdps(DPS):
        xs = ([mpmath.mpf(0)] if lo == 0 else []) + [mpmath.mpf(float(v)) for v in grid]
        return _Model(
            [tuple(p.coefficients) for p in schedule.steps],
            u=u,
            ug=unit_roundoff(gname),
            big=largest_finite(gname),
            c=float(size_factor),
            weyl=float(weyl),
            xs=xs,
        )


def _gram_prediction(model: _Model, restarts: Sequence[int]) -> tuple[float, float]:
    """(predicted error, peak magnitude) of the Gram form with restarts after the given steps."""
    T = len(model.coeffs)
    bounds = [0, *restarts, T]
    err = [model.c * model.u * model.rms[0]] * len(model.xs)  # X_0 rounded to the working dtype
    peak = mpmath.mpf(0)
    for s, t in itertools.pairwise(bounds):
        seg = model.segment(s, t)
        amp = model.amplification(s, t)
        err = [a * e + d for a, e, d in zip(amp, err, seg["added"], strict=True)]
        peak = max(peak, seg["peak"])
    return float(max(err)), float(peak)


def _standard_prediction(model: _Model) -> tuple[float, float]:
    """(predicted error, peak magnitude) of the standard form ``X <- fl(c_0 X + B X)``, ``B = fl(q(A) - c_0)``."""
    u, c = model.u, model.c
    err = [c * u * model.rms[0]] * len(model.xs)  # X_0 rounded to the working dtype
    peak = mpmath.mpf(0)
    for k, coeffs in enumerate(model.coeffs):
        r = [x * x for x in model.traj[k]]
        b = _rms([_q(coeffs, v) - coeffs[0] for v in r])  # B = q(A) - c_0, rounded once
        db = _rms([_dq(coeffs, v) * v for v in r])  # the rounding of A reaches B through q'
        inj = c * u * (model.rms[k + 1] + (b + db) * model.rms[k])
        amp = model.amplification(k, k + 1)
        err = [a * e + inj for a, e in zip(amp, err, strict=True)]
        peak = max(peak, max(abs(_q(coeffs, v) - coeffs[0]) for v in r), model.hi[k] ** 2, model.hi[k + 1])
    return float(max(err)), float(peak)


def standard_error(
    schedule: Schedule | str,
    *,
    dtype: Any = "float16",
    lo: float = SAFE_LO,
    hi: float = 1.0,
    size_factor: float = SIZE_FACTOR,
) -> float:
    """Predicted rounding error ``||X_T - X_T^(float64)||_2`` of the standard form in ``dtype`` (the baseline)."""
    sched = load_schedule(schedule)
    with mpmath.workdps(DPS):
        return _standard_prediction(_model(sched, dtype, lo, hi, size_factor))[0]


def predict_error(
    schedule: Schedule | str,
    restarts: Sequence[int] | None = None,
    *,
    dtype: Any = "float16",
    lo: float = SAFE_LO,
    hi: float = 1.0,
    gram_dtype: Any = None,
    size_factor: float = SIZE_FACTOR,
) -> PlacementError:
    """Predicted rounding error of the Gram form with restarts after the given steps (default: the schedule's).

    Args:
        schedule: a ``Schedule`` or registry name.
        restarts: 1-based steps after which to restart (``Schedule.restarts`` if ``None``).
        dtype: the working format (``"float16"``, ``"bf16"``, ``torch.float16``, ...).
        lo, hi: the normalized singular values of ``X_0`` lie in ``[lo, hi]``; ``lo = 0`` adds exact zeros
            (rank-deficient inputs).
        gram_dtype: the format of ``R``, ``Z`` and ``Q`` (default: ``dtype``; ``nsiter.gram`` can keep them wider).
        size_factor: the ``c`` of ``c u rms(T)`` for every rounded intermediate ``T``.

    Returns:
        a ``PlacementError`` (``error = inf`` when an intermediate overflows ``dtype``).
    """
    sched = load_schedule(schedule)
    rs = sched.restarts if restarts is None else check_restarts(restarts, len(sched))
    with mpmath.workdps(DPS):
        model = _model(sched, dtype, lo, hi, size_factor, gram_dtype=gram_dtype)
        return _placement_error(model, rs)


def _placement_error(model: _Model, restarts: tuple[int, ...]) -> PlacementError:
    err, peak = _gram_prediction(model, restarts)
    overflow = not peak < model.big
    return PlacementError(restarts, math.inf if overflow else err, peak, overflow)


@dataclass(frozen=True)
class PlacementError:
    """The model's prediction for one restart placement.

    Attributes:
        restarts: 1-based steps after which the Gram form restarts.
        error: predicted ``||X_T - X_T^(float64)||_2`` (``inf`` on overflow).
        peak: the largest magnitude of any intermediate (``R``, ``Z``, ``R Z``, ``Q``) in the model.
        overflow: ``peak`` exceeds the working format's largest finite value.
    """

    restarts: tuple[int, ...]
    error: float
    peak: float
    overflow: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "restarts": list(self.restarts),
            "error": self.error,
            "peak": self.peak,
            "overflow": self.overflow,
        }


@dataclass(frozen=True)
class GramRestarts:
    """Result of :func:`gram_restarts`.

    Attributes:
        schedule: the schedule's name.
        dtype: canonical name of the working format.
        lo, hi: the interval of normalized singular values the model covers.
        max_restarts, restart_tolerance: the search's parameters.
        standard: predicted error of the standard form (the baseline).
        best: the placement with the smallest predicted error (ties: fewer restarts, then earlier).
        cheapest: the placement with the fewest restarts whose predicted error is at most
            ``restart_tolerance * standard`` without overflow (ties: smaller error); ``None`` if there is none.
        table: every placement evaluated, fewest restarts first.
    """

    schedule: str
    dtype: str
    lo: float
    hi: float
    max_restarts: int
    restart_tolerance: float
    standard: float
    best: PlacementError
    cheapest: PlacementError | None
    table: tuple[PlacementError, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schedule": self.schedule,
            "dtype": self.dtype,
            "lo": self.lo,
            "hi": self.hi,
            "max_restarts": self.max_restarts,
            "restart_tolerance": self.restart_tolerance,
            "standard_error": self.standard,
            "best": self.best.to_dict(),
            "cheapest": None if self.cheapest is None else self.cheapest.to_dict(),
            "table": [p.to_dict() for p in self.table],
        }


def gram_restarts(
    schedule: Schedule | str,
    *,
    dtype: Any = "float16",
    max_restarts: int = 2,
    lo: float = SAFE_LO,
    hi: float = 1.0,
    restart_tolerance: float = 2.0,
    gram_dtype: Any = None,
    size_factor: float = SIZE_FACTOR,
) -> GramRestarts:
    """Search the Gram-form restart placements of ``schedule`` with the rounding model of this module.

    Every placement with at most ``max_restarts`` restarts is evaluated (``predict_error``).  Returned:
    the most accurate one, and the cheapest one (fewest restarts, each costing :func:`nsiter.cost.restart_cost`) whose
    predicted error stays within ``restart_tolerance`` times the standard form's, with no overflow.

    Compared with the published autotuner of ``gram-newton-schulz`` (which pushes one fixed spurious
    eigenvalue ``-4e-4`` through the maps and minimizes the condition number of ``Q``), the model
    scales the perturbation with the working format and with ``||R||`` at every rounding, follows
    every direction of ``[lo, hi]`` nonlinearly, and predicts the error itself, so placements can be
    compared with the standard form's error.

    Raises:
        ValueError: naming the bad value (unknown schedule or dtype, ``lo``/``hi``/``restart_tolerance``/``max_restarts``).
    """
    sched = load_schedule(schedule)
    tol = restart_tolerance
    if not (isinstance(tol, (int, float)) and not isinstance(tol, bool) and math.isfinite(tol) and tol >= 1):
        raise ValueError(f"restart_tolerance must be a finite factor >= 1, got {tol!r}")
    cands = placements(len(sched), max_restarts)
    with mpmath.workdps(DPS):
        model = _model(sched, dtype, lo, hi, size_factor, gram_dtype=gram_dtype)
        std = _standard_prediction(model)[0]
        table = tuple(_placement_error(model, rs) for rs in cands)
    best = min(table, key=lambda p: (p.error, len(p.restarts), p.restarts))
    ok = [p for p in table if not p.overflow and p.error <= tol * std]
    cheapest = min(ok, key=lambda p: (len(p.restarts), p.error, p.restarts)) if ok else None
    return GramRestarts(
        schedule=sched.name,
        dtype=dtype_name(dtype),
        lo=float(lo),
        hi=float(hi),
        max_restarts=max_restarts,
        restart_tolerance=float(tol),
        standard=std,
        best=best,
        cheapest=cheapest,
        table=table,
    )


def label(restarts: Sequence[int]) -> str:
    """``"2,4"`` for restarts after steps 2 and 4, ``"-"`` for none (tables and CSV)."""
    return ",".join(str(r) for r in restarts) if restarts else "-"


def describe(result: GramRestarts) -> str:
    """A short human-readable summary (the CLI prints it)."""
    dt = short_name(result.dtype)
    lines = [
        f"{result.schedule} in {dt}, singular values in [{result.lo:g}, {result.hi:g}], "
        f"at most {result.max_restarts} restarts (model estimate, not certified)",
        f"  standard form: predicted error {result.standard:.3g}",
        f"  most accurate: restarts after {label(result.best.restarts)}: {result.best.error:.3g}",
    ]
    if result.cheapest is None:
        lines.append(
            f"  no placement within {result.restart_tolerance:g}x the standard form without overflow"
        )
    else:
        lines.append(
            f"  cheapest within {result.restart_tolerance:g}x the standard form: restarts after "
            f"{label(result.cheapest.restarts)}: {result.cheapest.error:.3g}"
        )
    return "\n".join(lines)
