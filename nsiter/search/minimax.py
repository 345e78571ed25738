"""Greedy per-step minimax: the Polar Express construction, for odd polynomials of any odd degree.

One step solves the best uniform approximation of the constant 1 on ``[lo, hi]`` (``0 < lo <= hi``; a
point interval gets the flat limit) by an odd polynomial of degree ``2n - 1``:

    p* = argmin_{p odd, deg p <= 2n-1}  max_{x in [lo, hi]} |1 - p(x)|.

``{x, x^3, ..., x^(2n-1)}`` is a Haar (Chebyshev) system on ``(0, inf)``, so ``p*`` is unique and is
characterized by equioscillation: the error ``1 - p*`` attains ``+-E`` with alternating signs at
``n + 1`` points ``lo = x_0 < x_1 < ... < x_n = hi`` (Chebyshev's alternation theorem; Achieser,
*Theory of Approximation*, 1956).  The Remez exchange algorithm (Remez 1934) solves the linear system
``p(x_i) + (-1)^i E = 1`` for the coefficients and ``E``, moves the inner points to the critical points
of ``p`` (the roots of ``p'``, a polynomial in ``x^2``), and repeats; it converges quadratically.
The cubic has a closed form (Chen & Chow 2014; Amsel et al. 2025, eq. (14)): a scaled Newton–Schulz
cubic ``beta * h(alpha x)`` with ``h(t) = (3 t - t^3)/2``, see :func:`optimal_cubic`.

The greedy schedule maps the interval and repeats.  Amsel, Persson, Musco & Gower (*The Polar Express*,
arXiv:2505.16932, Thm. 4.1) prove that the greedy choice minimizes the worst-case error of the whole
composition among all compositions with the same degrees.  For bfloat16 they add two conventions
(Section 4.4 and Appendix G), reproduced here:

- *cushion*: a step is optimized on ``[max(lo, cushion * hi), hi]`` and then rescaled so that
  ``p(lo) + p(hi) = 2`` ("recentering"); this keeps ``p(x)/x`` away from zero;
- *safety factor* ``s``: a step ``p`` is replaced by ``x -> p(x / s)``, except the last one, so that
  singular values pushed slightly above ``hi`` by round-off are still contracted.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any

import numpy as np

from nsiter.checks import (
    MAX_SAFETY,
    check_interval,
    check_odd_degree,
    check_positive_int,
    check_real,
    check_safety,
)
from nsiter.polynomial import OddPolynomial
from nsiter.schedule import Schedule
from nsiter.search._core import (
    Diagnostics,
    critical_points_fast,
    image_interval_fast,
    propagate_fast,
    search_result,
)

__all__ = [
    "MinimaxStep",
    "cushioned_step",
    "greedy_minimax",
    "min_ratio",
    "newton_schulz_coefficients",
    "optimal_cubic",
    "remez_odd",
    "with_safety_factor",
]

# Below this relative width the minimax polynomial is numerically the flat (Newton–Schulz) one;
# Amsel et al. 2025, Appendix G, use the same threshold (``1 - 5e-6 <= lo / hi``).
FLAT_THRESHOLD = 5e-6


@dataclass(frozen=True)
class MinimaxStep:
    """One best approximation of 1 on ``[lo, hi]``.

    Attributes:
        polynomial: the minimax odd polynomial ``p*``.
        error: the equioscillation level ``E = max |1 - p*|`` on ``[lo, hi]`` (signed: ``p(lo) = 1 - E``).
        points: the ``n + 1`` alternation points (``lo``, the critical points of ``p*``, ``hi``).
        iterations: Remez exchanges performed (0 for closed forms).
        converged: whether the levels agreed to the tolerance.
    """

    polynomial: OddPolynomial
    error: float
    points: tuple[float, ...]
    iterations: int
    converged: bool


def newton_schulz_coefficients(degree: int) -> tuple[Fraction, ...]:
    """The Newton–Schulz (Padé-type) odd polynomial of ``degree``: flat at 1, ``p(1) = 1``.

    ``p(x) = x sum_{k<n} binom(2k, k) 4^-k (1 - x^2)^k`` (the truncated binomial series of
    ``x (1 - (1 - x^2))^(-1/2)``; Higham, *Functions of Matrices*, 2008, sec. 8.3), e.g. ``(3/2, -1/2)``
    and ``(15/8, -5/4, 3/8)``.  It is the limit of the minimax polynomial on ``[lo, 1]`` as ``lo -> 1``.
    """
    n = (check_odd_degree(degree) + 1) // 2
    out = [Fraction(0)] * n
    for k in range(n):
        w = Fraction(math.comb(2 * k, k), 4**k)
        for j in range(k + 1):  # (1 - y)^k = sum_j binom(k, j) (-y)^j
            out[j] += w * math.comb(k, j) * (-1) ** j
    return tuple(out)


def optimal_cubic(lo: float, hi: float) -> MinimaxStep:
    """Closed-form minimax cubic ``a x + b x^3`` for 1 on ``[lo, hi]``.

    Write ``p = beta h(alpha x)``, ``h(t) = (3t - t^3)/2`` (increasing on ``[0, 1]``, max ``h(1) = 1``).
    Equioscillation at ``lo, 1/alpha, hi`` needs ``p(lo) = p(hi)``, i.e.
    ``3 (hi - lo) = alpha^2 (hi^3 - lo^3)``, so ``alpha^2 = 3 / (lo^2 + lo hi + hi^2)``; and
    ``p(lo) = 1 - E``, ``p(1/alpha) = beta = 1 + E`` give ``beta = 2 / (1 + h(alpha lo))``.
    """
    lo, hi = check_interval(lo, hi)
    alpha = math.sqrt(3.0 / (lo * lo + lo * hi + hi * hi))
    t = alpha * lo
    beta = 2.0 / (1.0 + 0.5 * t * (3.0 - t * t))
    p = OddPolynomial([1.5 * alpha * beta, -0.5 * alpha**3 * beta])
    return MinimaxStep(p, beta - 1.0, (lo, 1.0 / alpha, hi), 0, True)


def _flat(lo: float, hi: float, degree: int) -> MinimaxStep:
    c = newton_schulz_coefficients(degree)
    p = OddPolynomial([float(ck) / hi ** (2 * k + 1) for k, ck in enumerate(c)])
    e = 1.0 - float(p(lo))
    return MinimaxStep(p, e, (lo, hi), 0, True)


def remez_odd(
    lo: float,
    hi: float,
    degree: int,
    *,
    tol: float = 1e-13,
    max_iter: int = 100,
    flat_threshold: float = FLAT_THRESHOLD,
) -> MinimaxStep:
    """Best uniform approximation of 1 on ``[lo, hi]`` by an odd polynomial of ``degree`` (Remez exchange).

    Args:
        lo, hi: the interval, ``0 < lo <= hi`` (``nsiter.checks.check_interval``).
        degree: odd, ``>= 3``; the cubic uses the closed form :func:`optimal_cubic`.
        tol: stop when the error at the new points exceeds ``|E|`` by at most ``tol * |E|``.
        max_iter: cap on exchanges (``converged=False`` if reached).
        flat_threshold: when ``1 - lo/hi`` is below it, return the Newton–Schulz polynomial scaled to
            ``[0, hi]`` (the minimax limit; the linear system is singular there).

    Returns:
        a :class:`MinimaxStep`.
    """
    lo, hi = check_interval(lo, hi)
    degree = check_odd_degree(degree)
    if 1.0 - lo / hi <= flat_threshold:
        return _flat(lo, hi, degree)
    if degree == 3:
        return optimal_cubic(lo, hi)
    n = (degree + 1) // 2
    powers = 2 * np.arange(n) + 1
    signs = (-1.0) ** np.arange(n + 1)
    # Chebyshev extrema of [lo, hi] (for the quintic: lo, (3lo+hi)/4, (lo+3hi)/4, hi)
    x = lo + (hi - lo) * (1.0 - np.cos(np.pi * np.arange(n + 1) / n)) / 2.0
    converged = False
    it = 0
    coef = np.zeros(n)
    level = math.inf
    for it in range(1, max_iter + 1):  # noqa: B007 (the count is reported)
        system = np.column_stack([x[:, None] ** powers[None, :], signs])
        sol = np.linalg.solve(system, np.ones(n + 1))
        coef, level = sol[:n], float(sol[n])
        crit = critical_points_fast(coef, lo, hi)
        if crit.size == n - 1:
            new_x = np.concatenate([[lo], crit, [hi]])
        else:  # not yet alternating: exchange on a dense grid
            new_x = _grid_exchange(coef, lo, hi, n + 1)
        err = 1.0 - new_x * np.polynomial.polynomial.polyval(new_x * new_x, coef)
        x = new_x
        # rounding floor of evaluating p near 1: a few ulps of sum_k |c_k| hi^(2k+1)
        floor = 16 * np.finfo(float).eps * float(np.sum(np.abs(coef) * hi**powers))
        if crit.size == n - 1 and np.max(np.abs(err)) - abs(level) <= tol * abs(level) + floor:
            converged = True
            break
        if abs(level) <= floor:  # the best error is at rounding level: the flat polynomial is as good
            return _flat(lo, hi, degree)
    p = OddPolynomial([float(v) for v in coef])
    return MinimaxStep(p, level, tuple(float(v) for v in x), it, converged)


def _grid_exchange(coef: np.ndarray, lo: float, hi: float, m: int) -> np.ndarray:
    """``m`` points of alternating sign and largest error on a log-spaced grid (fallback exchange)."""
    g = np.unique(np.concatenate([np.geomspace(lo, hi, 4000), np.linspace(lo, hi, 4000)]))
    e = 1.0 - g * np.polynomial.polynomial.polyval(g * g, coef)
    # local extrema of the error, with the endpoints
    idx = [0] + [i for i in range(1, g.size - 1) if (e[i] - e[i - 1]) * (e[i + 1] - e[i]) <= 0] + [g.size - 1]
    pts = []
    for i in idx:  # merge runs of equal sign, keeping the largest
        if pts and np.sign(e[pts[-1]]) == np.sign(e[i]):
            if abs(e[i]) > abs(e[pts[-1]]):
                pts[-1] = i
        else:
            pts.append(i)
    while len(pts) > m:  # drop the smaller end
        pts.pop(0 if abs(e[pts[0]]) < abs(e[pts[-1]]) else -1)
    if len(pts) < m:
        return lo + (hi - lo) * (1.0 - np.cos(np.pi * np.arange(m) / (m - 1))) / 2.0
    return g[pts]


def with_safety_factor(
    schedule: Schedule, safety: float, *, last: bool = False, name: str | None = None
) -> Schedule:
    """Replace each step ``p`` by ``x -> p(x / safety)`` (all but the last unless ``last``).

    This is how Algorithm 1 of Amsel et al. (2025) applies its 1.01 to the published coefficient list.
    """
    s = check_real(safety, "safety", low=0.0, low_open=True, high=MAX_SAFETY)
    k = len(schedule) if last else len(schedule) - 1
    steps = tuple(p.scaled_input(s) if i < k else p for i, p in enumerate(schedule.steps))
    return replace(schedule, steps=steps, name=name or schedule.name)


def min_ratio(p: OddPolynomial, hi: float = 1.0) -> float:
    """``min_{0 < x <= hi} p(x) / x``: the floor that cushioning keeps away from zero (Amsel et al. 4.4).

    ``p(x)/x = sum_k c_k y^k`` with ``y = x^2``; its minimum over ``[0, hi^2]`` is at an endpoint or a
    root of its derivative.
    """
    c = np.asarray(p.coefficients, dtype=float)
    q = c  # polynomial in y
    dq = np.array([k * ck for k, ck in enumerate(q)])[1:]
    ys = [0.0, hi * hi]
    if dq.size and np.any(dq != 0):
        r = np.roots(dq[::-1])
        ys += [float(v.real) for v in r if abs(v.imag) < 1e-12 and 0 < v.real < hi * hi]
    return float(min(np.polynomial.polynomial.polyval(np.array(ys), q)))


def cushioned_step(
    lo: float, hi: float, degree: int, cushion: float, recenter: bool, **kw: Any
) -> tuple[OddPolynomial, MinimaxStep, bool]:
    """One greedy step on ``[lo, hi]``: the minimax odd polynomial of ``degree`` on ``[max(lo, cushion hi), hi]``.

    Polar Express's cushion (Amsel et al. 2025, arXiv:2505.16932, Sec. 4.4 "Finite precision
    considerations") keeps the step from spending its degrees on the tiny values below ``cushion hi``;
    with ``recenter`` the cushioned step is rescaled so that the image of ``[lo, hi]`` is centred on 1.  Returns ``(polynomial, remez step, cushioned?)``;
    ``kw`` goes to :func:`remez_odd`.  Shared by ``greedy_minimax`` and ``budget_search``.
    """
    eff = max(lo, cushion * hi)
    # a converged interval (numerically a point) takes the flat limit
    if eff >= hi * (1.0 - kw.get("flat_threshold", FLAT_THRESHOLD)):
        step = _flat(min(eff, hi), hi, check_odd_degree(degree))
    else:
        step = remez_odd(eff, hi, degree, **kw)
    coef = np.asarray(step.polynomial.coefficients)
    cushioned = cushion * hi > lo
    if recenter and cushioned:
        # rescale so that the image of [lo, hi] is centered on 1: min + max = 2.  (Polar Express writes
        # p(lo) + p(hi) = 2, the same thing for quintics, whose last alternation point hi is a maximum;
        # for degrees 3, 7, 11, ... hi is a minimum, so the image is used.)  Without a cushion the step
        # equioscillates on [lo, hi] and is already centered.
        mn, mx = image_interval_fast(step.polynomial, lo, hi)
        coef = coef * (2.0 / (mn + mx))
    return OddPolynomial([float(v) for v in coef]), step, cushioned


def _degrees(degree: int | Sequence[int], steps: int) -> list[int]:
    if isinstance(degree, (int, np.integer)) and not isinstance(degree, bool):
        return [check_odd_degree(degree)] * steps
    if isinstance(degree, (str, bytes)) or not isinstance(degree, Sequence):
        raise ValueError(f"degree must be an odd integer or a sequence of them, got {degree!r}")
    degs = [check_odd_degree(d) for d in degree]
    if len(degs) != steps:
        raise ValueError(f"got {len(degs)} degrees for {steps} steps: {list(degree)!r}")
    return degs


def greedy_minimax(
    steps: int = 8,
    degree: int | Sequence[int] = 5,
    *,
    lo: float = 1e-3,
    hi: float = 1.0,
    cushion: float = 0.0,
    safety: float = 1.0,
    safety_last: bool = False,
    interval: str = "exact",
    recenter: bool = True,
    name: str | None = None,
    flat_threshold: float = FLAT_THRESHOLD,
) -> tuple[Schedule, Diagnostics]:
    """The greedy minimax schedule (Polar Express, Amsel et al. 2025, Algorithm 2 and Appendix G).

    For ``t = 1..steps``: ``p_t`` = minimax approximation of 1 on ``[max(lo_t, cushion hi_t), hi_t]``,
    recentered so that ``p_t(lo_t) + p_t(hi_t) = 2``, then ``p_t <- p_t(x / safety)`` (not on the last
    step unless ``safety_last``); the interval maps to the next one.

    Args:
        lo, hi: the initial interval of normalized singular values.
        steps: number of steps.
        degree: odd degree of every step, or one per step.
        cushion: relative floor ``lo_t >= cushion * hi_t`` used for the optimization (0: none).
        safety: the safety factor ``s >= 1`` (1: none).
        safety_last: apply the safety factor to the last step too.
        interval: ``"exact"``: the next interval is the image of ``[lo_t, hi_t]`` under the step actually
            used; ``"symmetric"``: Polar Express's bookkeeping ``lo_{t+1} = p_t(lo_t)``,
            ``hi_{t+1} = 2 - lo_{t+1}`` (needed to reproduce their published coefficients bit for bit).
        recenter: recenter cushioned steps (Polar Express always does).
        name: schedule name (default ``minimax-d<degree>-<steps>``).
        flat_threshold: see :func:`remez_odd`.

    Returns:
        ``(schedule, diagnostics)``; ``diagnostics.metrics["final_error"]`` is the worst
        ``|1 - phi_T|`` on ``[lo, hi]`` (float64 interval propagation).
    """
    t0 = time.perf_counter()
    lo, hi = check_interval(lo, hi)
    steps = check_positive_int(steps, "steps")
    degs = _degrees(degree, steps)
    if isinstance(cushion, bool) or not isinstance(cushion, (int, float)) or not 0 <= cushion < 1:
        raise ValueError(f"cushion must be in [0, 1), got {cushion!r}")
    safety = check_safety(safety)  # >= 1: it shrinks the input, x -> x / safety
    if interval not in ("exact", "symmetric"):
        raise ValueError(f"interval must be 'exact' or 'symmetric', got {interval!r}")
    params = {
        "lo": lo,
        "hi": hi,
        "steps": steps,
        "degree": degs if len(set(degs)) > 1 else degs[0],
        "cushion": float(cushion),
        "safety": safety,
        "safety_last": bool(safety_last),
        "interval": interval,
        "recenter": bool(recenter),
    }
    polys: list[OddPolynomial] = []
    rows: list[dict[str, Any]] = []
    converged = True
    a, b = lo, hi
    for t, d in enumerate(degs):
        p, step, cushioned = cushioned_step(a, b, d, float(cushion), recenter, flat_threshold=flat_threshold)
        if safety != 1.0 and (t < steps - 1 or safety_last):
            p = p.scaled_input(safety)
        polys.append(p)
        converged &= step.converged
        if interval == "symmetric":
            na = float(p(a))
            nb = 2.0 - na
            na = min(na, nb)
        else:
            na, nb = image_interval_fast(p, a, b)
        rows.append(
            {
                "degree": d,
                "lo": a,
                "hi": b,
                "remez_error": abs(step.error),
                "iterations": step.iterations,
                "cushioned": cushioned,
                "next_lo": na,
                "next_hi": nb,
            }
        )
        a, b = na, nb
    final = propagate_fast(polys, lo, hi)[-1]
    return search_result(
        "minimax",
        name or f"minimax-d{params['degree']}-{steps}",
        polys,
        source="nsiter.search.minimax.greedy_minimax (greedy Remez; Polar Express construction)",
        reference="arXiv:2505.16932",
        parameters=params,
        description=f"greedy minimax schedule, {steps} steps of degree {params['degree']} on [{lo:g}, {hi:g}]",
        lo=lo,
        hi=hi,
        started=t0,
        metrics={"final_lo": final[0], "final_hi": final[1], "steps": steps},
        intervals=rows,
        iterations=sum(r["iterations"] for r in rows),
        converged=converged,
    )
