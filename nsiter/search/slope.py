"""Steepness objectives: Jordan's max-slope fixed iteration and CANS band (delta-orthogonalization).

**Jordan's objective** (Jordan et al., "Muon", 2024, https://kellerjordan.github.io/posts/muon/): one
polynomial ``p`` repeated; maximize the slope at zero ``p'(0) = c_0`` (how fast tiny singular values
grow) subject to every singular value in ``(0, 1]`` ending, under iteration, in a band
``J = [m, M]`` inside ``[1 - delta, 1 + delta]`` (Jordan: "[0.7, 1.3]", ``delta = 0.3``).  Sufficient
conditions, each *linear* in the coefficients for fixed ``x``:

    p(x) / x >= 1 + escape   on (0, m)        (orbits below the band increase)
    p(x) >= m                on [m, M]        (the band is mapped into itself from below)
    p(x) <= M                on (0, (1 + escape) M]   (nothing overshoots; M is not a fixed point)

so for fixed ``(m, M)`` the maximal slope is a semi-infinite linear program.  It is solved on a grid with
HiGHS, then the grid is refined by exchange (the worst violation, found from the critical points of the
constraint polynomials, is added until none exceeds ``tol``).  Narrowing ``[m, M]`` below
``[1 - delta, 1 + delta]`` only lowers the optimum (tested), so the widest band is used.  The returned polynomial's band is
certified with :func:`nsiter.dynamics.attractor`.

**Band objective** (CANS; Grishina, Smirnov & Rakhuba, arXiv:2506.10935, "delta-orthogonalization"):
the composition of ``k`` greedy minimax steps that maps the widest interval ``[lo*, hi]`` into
``[1 - delta, 1 + delta]``; ``lo*`` is found by bisection on the final error, and the steepness
``phi'(0)`` is then maximal among such greedy compositions.  Later steps (``steps > band_steps``) continue
greedily from the band ``[1 - delta, 1 + delta]`` (the CANS reference iteration's preprocessing).
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from nsiter.checks import check_odd_degree, check_positive, check_positive_int
from nsiter.polynomial import OddPolynomial
from nsiter.schedule import MAX_STEPS, Schedule
from nsiter.search._core import Diagnostics, search_result
from nsiter.search.minimax import greedy_minimax

__all__ = ["band_schedule", "max_slope", "max_slope_for_band"]

JORDAN = (3.4445, -4.7750, 2.0315)  # Jordan et al. 2024, KellerJordan/Muon muon.py


def _check_delta(delta: Any) -> float:
    d = check_positive(delta, "delta")
    if d >= 1:
        raise ValueError(
            f"delta must be in (0, 1): the band [1 - delta, 1 + delta] must stay positive, got {delta!r}"
        )
    return d


def _extreme(coef: np.ndarray, a: float, b: float, kind: str) -> tuple[float, float]:
    """``(x, value)`` of the min (``kind='min'``) or max of the polynomial ``sum coef_k x^k`` on [a, b]."""
    poly = np.polynomial.Polynomial(coef)
    xs = [a, b]
    d = poly.deriv()
    if d.degree() >= 1:
        r = d.roots()
        xs += [float(v.real) for v in r if abs(v.imag) < 1e-10 and a < v.real < b]
    xs = np.array(xs)
    v = poly(xs)
    i = int(np.argmin(v) if kind == "min" else np.argmax(v))
    return float(xs[i]), float(v[i])


def max_slope_for_band(
    m: float, M: float, degree: int = 5, *, escape: float = 1e-3, tol: float = 1e-12, max_rounds: int = 30
) -> tuple[np.ndarray | None, float]:
    """Max ``c_0`` under the three band constraints for a fixed band ``[m, M]`` (semi-infinite LP).

    Returns ``(coefficients, slope)``, or ``(None, -inf)`` if the LP is infeasible.
    """
    from scipy.optimize import linprog  # lazy: keeps ``import nsiter`` fast

    n = (degree + 1) // 2
    k = np.arange(n)
    # grids: ratio constraint on (0, m), lower constraint on [m, M], upper on (0, M]
    g_ratio = [*np.linspace(0.0, m, 200)[1:-1], m * (1 - 1e-9)]
    g_low = list(np.linspace(m, M, 200))
    top = M * (1 + escape)  # p <= M a little past M too: M is then no repelling fixed point
    g_up = list(np.unique(np.concatenate([np.linspace(1e-6, top, 300), np.geomspace(1e-4, top, 100)])))
    coef = None
    for _ in range(max_rounds):
        xr, xl, xu = np.array(g_ratio), np.array(g_low), np.array(g_up)
        # p(x)/x = sum c_k x^(2k) >= 1 + escape   ->   -sum c_k x^(2k) <= -(1 + escape)
        A_r = -(xr[:, None] ** (2 * k[None, :]))
        A_l = -(xl[:, None] ** (2 * k[None, :] + 1))  # -p(x) <= -m
        A_u = xu[:, None] ** (2 * k[None, :] + 1)  # p(x) <= M
        A = np.vstack([A_r, A_l, A_u])
        # a 1e-9 margin keeps the certified (outward-rounded) band inside [m, M] despite LP tolerances
        b = np.concatenate(
            [np.full(xr.size, -(1 + escape)), np.full(xl.size, -(m + 1e-9)), np.full(xu.size, M - 1e-9)]
        )
        cost = np.zeros(n)
        cost[0] = -1.0
        res = linprog(cost, A_ub=A, b_ub=b, bounds=[(None, None)] * n, method="highs")
        if res.status != 0:
            return None, -math.inf
        coef = res.x
        # exchange: worst violation of each constraint family, from critical points (polynomials in x)
        ratio_poly = np.zeros(2 * n - 1)
        ratio_poly[0::2] = coef
        p_dense = np.zeros(2 * n)
        p_dense[1::2] = coef
        xr_w, vr = _extreme(ratio_poly, 0.0, m, "min")
        xl_w, vl = _extreme(p_dense, m, M, "min")
        xu_w, vu = _extreme(p_dense, 0.0, top, "max")
        viol = [(1 + escape) - vr, (m + 1e-9) - vl, vu - (M - 1e-9)]
        if max(viol) <= tol:
            break
        if viol[0] > tol:
            g_ratio.append(xr_w)
        if viol[1] > tol:
            g_low.append(xl_w)
        if viol[2] > tol:
            g_up.append(xu_w)
    return coef, float(coef[0])


def max_slope(
    delta: float = 0.3,
    degree: int = 5,
    *,
    escape: float = 1e-3,
    steps: int = 5,
    lo: float = 1e-3,
    name: str | None = None,
) -> tuple[Schedule, Diagnostics]:
    """Jordan's objective: the steepest repeated polynomial whose attracting band lies in ``1 +- delta``.

    Args:
        delta: half-width of the allowed band (Jordan: 0.3).
        degree: odd degree of the polynomial.
        escape: ``p(x) >= (1 + escape) x`` below the band, so that no orbit stalls there.
        steps: length of the returned schedule (the polynomial repeated).
        lo: smallest singular value used to report the ``steps``-step error and the certified band.
        name: schedule name (default ``max-slope-d<degree>-delta<delta>``).

    Returns:
        ``(schedule, diagnostics)`` with metrics ``slope_at_zero``, ``band_lo``/``band_hi`` (the inner band
        ``[m, M]`` of the program) and ``attractor`` (certified band of the repeated map from ``[lo, 1]``).
    """
    t0 = time.perf_counter()
    delta = _check_delta(delta)
    degree = check_odd_degree(degree)
    steps = check_positive_int(steps, "steps")
    if steps > MAX_STEPS:  # before the program is solved
        raise ValueError(f"steps = {steps} exceeds the limit MAX_STEPS = {MAX_STEPS}")
    if isinstance(escape, bool) or not isinstance(escape, (int, float)) or not 0 <= escape < 1:
        raise ValueError(f"escape must be in [0, 1), got {escape!r}")
    # Shrinking [m, M] only adds constraints' strength (checked numerically in the tests), so the widest
    # band [1 - delta, 1 + delta] gives the largest slope.
    m, M = 1 - delta, 1 + delta
    coef, slope = max_slope_for_band(m, M, degree, escape=escape)
    if coef is None:
        raise ValueError(f"no degree-{degree} polynomial keeps the band inside 1 +- {delta} (LP infeasible)")
    p = OddPolynomial([float(v) for v in coef])
    params = {"delta": delta, "degree": degree, "escape": escape, "steps": steps, "lo": lo}
    from nsiter.dynamics import attractor

    att = attractor(p, lo, 1.0)
    return search_result(
        "max-slope",
        name or f"max-slope-d{degree}-delta{delta:g}",
        [p] * steps,
        source="nsiter.search.slope.max_slope (Jordan's objective as a semi-infinite LP)",
        reference="https://kellerjordan.github.io/posts/muon/",
        parameters=params,
        description=f"steepest degree-{degree} fixed iteration with its band inside 1 +- {delta:g}",
        lo=lo,
        hi=1.0,
        started=t0,
        metrics={
            "slope_at_zero": slope,
            "band_lo": m,
            "band_hi": M,
            "attractor": list(att.band),
            "attractor_kind": att.kind,
            "jordan_slope": JORDAN[0],
        },
        converged=att.band[0] >= 1 - delta - 1e-12 and att.band[1] <= 1 + delta + 1e-12,
    )


def _band_error(lo: float, hi: float, band_steps: int, degree: int) -> float:
    _, d = greedy_minimax(band_steps, degree, lo=lo, hi=hi, interval="symmetric")
    return d.intervals[-1]["remez_error"]


def band_schedule(
    delta: float = 0.3,
    band_steps: int = 1,
    degree: int = 5,
    *,
    steps: int | None = None,
    hi: float = 1.0,
    lo: float | None = None,
    name: str | None = None,
) -> tuple[Schedule, Diagnostics]:
    """CANS delta-orthogonalization: ``band_steps`` greedy steps on the widest ``[lo*, hi]`` that lands in
    ``[1 - delta, 1 + delta]``; then ``steps - band_steps`` greedy minimax steps from that band.

    ``lo*`` solves ``E(lo*) = delta`` by bisection, where ``E(lo)`` is the equioscillation level of the
    last of the ``band_steps`` greedy steps on ``[lo, hi]`` (increasing as ``lo`` decreases).  With
    ``delta = 0.99``, ``band_steps = 1`` and ``steps = 5`` this is the CANS 5-step quintic set.

    Args:
        delta: band half-width, ``0 < delta < 1``.
        band_steps: steps that must bring ``[lo*, hi]`` into the band.
        degree: odd degree of every step.
        steps: total steps (default ``band_steps``).
        hi: right end of the input interval.
        lo: optional required left end: ``ValueError`` if ``[lo, hi]`` cannot be brought into the band.
        name: schedule name.

    Returns:
        ``(schedule, diagnostics)``; ``metrics["lo_star"]`` is the widest left end.
    """
    t0 = time.perf_counter()
    delta = _check_delta(delta)
    band_steps = check_positive_int(band_steps, "band_steps")
    degree = check_odd_degree(degree)
    steps = band_steps if steps is None else check_positive_int(steps, "steps")
    if steps < band_steps:
        raise ValueError(f"steps ({steps}) must be >= band_steps ({band_steps})")
    hi = check_positive(hi, "hi")
    a, b = 1e-300, hi * (1 - 1e-15)
    if _band_error(b * (1 - 1e-6), hi, band_steps, degree) > delta:
        raise ValueError(
            f"delta={delta!r} is narrower than reachable: even [~{hi}, {hi}] maps outside 1 +- delta"
        )
    if lo is not None:
        e = _band_error(lo, hi, band_steps, degree)
        if e > delta:
            raise ValueError(
                f"band 1 +- {delta} is not reachable from [lo={lo}, hi={hi}] with {band_steps} degree-{degree} "
                f"step(s): the best worst-case error is {e:.6g} > delta"
            )
    # bisection in log(lo): E decreasing in lo
    la, lb = math.log(a), math.log(b)
    for _ in range(200):
        mid = 0.5 * (la + lb)
        if _band_error(math.exp(mid), hi, band_steps, degree) > delta:
            la = mid
        else:
            lb = mid
        if lb - la < 1e-15:
            break
    lo_star = math.exp(lb)
    head, dh = greedy_minimax(band_steps, degree, lo=lo_star, hi=hi, interval="symmetric")
    polys = list(head.steps)
    if steps > band_steps:
        tail, _ = greedy_minimax(steps - band_steps, degree, lo=1 - delta, hi=1 + delta, interval="symmetric")
        polys += list(tail.steps)
    params = {
        "delta": delta,
        "band_steps": band_steps,
        "degree": degree,
        "steps": steps,
        "hi": hi,
        "lo_star": lo_star,
    }
    return search_result(
        "band",
        name or f"band-d{degree}-delta{delta:g}-{steps}",
        polys,
        source="nsiter.search.slope.band_schedule (CANS delta-orthogonalization)",
        reference="arXiv:2506.10935",
        parameters=params,
        description=f"CANS delta={delta:g} band in {band_steps} step(s), then greedy minimax; degree {degree}",
        lo=lo_star,
        hi=hi,
        started=t0,
        metrics={"lo_star": lo_star, "band_error": dh.intervals[-1]["remez_error"]},
        iterations=dh.iterations,
    )
