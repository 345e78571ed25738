"""Cost-aware search: the best greedy minimax schedule under a matrix-product budget, mixing degrees.

A step of degree ``2l + 1`` costs ``l + 1`` matrix products (``Schedule.matmuls``: cubic 2, quintic 3,
septic 4, ...).  For a *fixed* sequence of degrees the greedy minimax composition is optimal for the
worst-case error on ``[lo, hi]`` (Amsel et al. 2025, Thm. 4.1), so the best schedule under a budget is
the best greedy schedule over all degree sequences whose cost fits.  They are enumerated depth first;
sequences sharing a prefix share its Remez solves, so the search costs one Remez solve per prefix.

Gram-form mode (``shape=(m, n)``).  Run in the Gram form (:mod:`nsiter.gram`), a step of degree ``2l + 1``
costs ``m x m`` products instead (``l - 1`` for ``q(R) - c_0 I``, one for ``Q`` unless it is the identity,
two for ``R`` unless it is the last step), plus one ``m x n`` product for ``R_0 = X X^T`` and one for
``Q X``.  Each sequence then needs the restarts that keep its rounding error within ``restart_tolerance``
of the standard form's (:func:`nsiter.restarts.gram_restarts`, with ``R`` and ``Q`` in the working
format, on singular values ``[0, hi]`` as ``method="auto"`` decides), and each restart costs two more
``m x n`` products (:func:`nsiter.restarts.restart_cost`).  So the budget is counted in ``m x n``
products (``2 m^2 n`` flops; a float), every sequence is costed with its restarts
(:func:`nsiter.gram.method_flops`, full products), and the winner carries its restarts.  The degree
sequences are enumerated by their cost without restarts (a lower bound).  Below the rounding floor
(``floor``, default the unit roundoff of the working format) the estimate no longer ranks sequences,
and shorter ones need fewer restarts, so the rounding model is consulted cheapest first among the
sequences estimated below the floor, then in order of estimated error, until one fits with its
restarts (at most ``MAX_RESTART_MODELS`` are modelled); the precision-aware shortlist takes, per
tail length, the cheapest sequence below the floor that fits.

The optional cushion and safety factor follow :func:`nsiter.search.minimax.greedy_minimax` (the safety
factor is applied to every step but the last).

Errors here are float64 estimates (:func:`nsiter.search._core.propagate_fast`); the winner's certified
error comes from :func:`nsiter.analysis.certified_error`.

Precision-aware mode (``dtype=...``).  Once the estimated error falls below the arithmetic's floor
(default: the unit roundoff of ``dtype``, ``2^-8`` for bfloat16) it no longer decides anything: what is
left of the error is the rounding of the final steps, and it grows with the size of their coefficients
(the flat cubic ``(3/2, -1/2)`` has coefficient sum 2, the quintic ``(15/8, -10/8, 3/8)`` 3.5).  So the
sequences whose estimated error is below the floor are shortlisted by how many of their final steps have
the lowest degree (for each tail length, the one with the smallest estimated error), each shortlisted
schedule is run by the evaluator in ``dtype`` (:func:`nsiter.measure.measured_errors`), and the one with
the smallest measured worst error (mean over the runs of each run's ``max_i |1 - u_i^T X_T v_i|``) wins.
If no sequence reaches the floor the winner by estimated error is returned, as without ``dtype``.  The default
measurement seeds (100-131) are disjoint from those of the search-results experiment (0-31), so the
published comparison is not made on the runs that chose the winner.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from nsiter.checks import check_interval, check_positive, check_positive_int, check_safety, check_seed
from nsiter.dtypes import dtype_name, unit_roundoff
from nsiter.polynomial import OddPolynomial, step_matmuls
from nsiter.restarts import SAFE_LO, gram_restarts, placements
from nsiter.schedule import Provenance, Schedule
from nsiter.search._core import Diagnostics, image_interval_fast, interval_error, propagate_fast
from nsiter.search.minimax import cushioned_step

__all__ = [
    "MAX_MODELLED_PLACEMENTS",
    "MAX_PREFIXES",
    "MAX_RESTART_MODELS",
    "budget_prefixes",
    "budget_search",
    "sequence_cost",
]

MAX_PREFIXES = 200_000  # degree-sequence prefixes one search may explore (one Remez solve each, ~0.5 ms)
CONVERGED = 8 * 2.0**-53  # estimated error at which a prefix stops growing: float64 resolution near 1
# Gram-form mode: sequences whose restarts the rounding model places, and the placements it evaluates in
# all (0.05-0.2 s each on a 2-core CPU: at most about 10 minutes)
MAX_RESTART_MODELS = 256
MAX_MODELLED_PLACEMENTS = 4000


class _Costs:
    """Exact integer costs of the enumeration: ``start + sum(step(d)) - last`` for a whole sequence.

    Standard form: in matrix products (``step(d) = l + 1``).  Gram form on ``m x n``: in flops with
    full products, ``R_0`` and ``Q X`` (``2 * 2 m^2 n``) less the first step's ``Q`` product (the
    identity), ``(l + 2) 2 m^3`` per step, less the last step's ``R`` update (``2 * 2 m^3``).
    """

    def __init__(self, shape: tuple[int, int] | None) -> None:
        self.shape = shape
        if shape is None:
            self.unit, self.square, self.start = 1, 0, 0
        else:
            m, n = shape
            self.unit, self.square = 2 * m * m * n, 2 * m**3
            self.start = 2 * self.unit - self.square

    def step(self, degree: int) -> int:
        if self.shape is None:
            return step_matmuls(degree)
        return ((degree - 1) // 2 + 2) * self.square

    @property
    def last(self) -> int:
        return 2 * self.square

    def whole(self, degrees: Sequence[int]) -> int:
        return self.start + sum(self.step(d) for d in degrees) - self.last


def _check_shape(shape: Any) -> tuple[int, int]:
    try:
        m, n = (int(v) for v in shape)
        ok = all(not isinstance(v, bool) and int(v) == v for v in shape) and 1 <= m <= n
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(
            f"shape must be (m, n) with 1 <= m <= n (the Gram form's small side first), got {shape!r}"
        )
    return m, n


def _check_budget(budget: Any, shape: tuple[int, int] | None) -> float:
    if shape is None:
        if isinstance(budget, bool) or not isinstance(budget, int):
            raise ValueError(f"budget must be an integer number of matrix products, got {budget!r}")
        return budget
    if (
        isinstance(budget, bool)
        or not isinstance(budget, (int, float))
        or not (math.isfinite(budget) and budget > 0)
    ):
        raise ValueError(f"budget must be a positive number of m x n products, got {budget!r}")
    return float(budget)


def budget_prefixes(
    budget: float, degrees: Sequence[int], max_steps: int, *, shape: tuple[int, int] | None = None
) -> int:
    """How many degree-sequence prefixes :func:`budget_search` would explore (an upper bound), counted
    by dynamic programming over (length, cost) before any Remez solve; stops counting past
    ``MAX_PREFIXES``.  Arguments as for :func:`budget_search`."""
    costs = _Costs(None if shape is None else _check_shape(shape))
    limit = budget * costs.unit
    steps = [costs.step(d) for d in sorted({int(d) for d in degrees})]
    ways = {costs.start: 1}  # sequences of the current length by cost (before the last-step discount)
    total = 0
    for _ in range(max_steps):
        nxt: dict[int, int] = {}
        for spent, w in ways.items():
            for c in steps:
                if spent + c - costs.last <= limit:
                    nxt[spent + c] = nxt.get(spent + c, 0) + w
        ways = nxt
        total += sum(ways.values())
        if not ways or total > MAX_PREFIXES:
            break
    return total


def sequence_cost(
    degrees: Sequence[int], *, shape: tuple[int, int] | None = None, restarts: Sequence[int] = ()
) -> float:
    """Cost of a degree sequence as :func:`budget_search` counts it: matrix products (standard form),
    or with ``shape=(m, n)`` the Gram form's flops with these restarts in units of one ``m x n`` product
    (``2 m^2 n`` flops; full products)."""
    if shape is None:
        if restarts:
            raise ValueError("restarts are counted only in the Gram form: pass shape=(m, n)")
        return float(sum(step_matmuls(d) for d in degrees))
    from nsiter.gram import method_flops  # torch: loaded only for the Gram-form mode

    m, n = _check_shape(shape)
    polys = [OddPolynomial([1.0] + [0.0] * ((int(d) - 1) // 2)) for d in degrees]
    return method_flops(polys, m, n, method="gram", restarts=list(restarts)) / (2 * m * m * n)


def budget_search(
    budget: float,
    degrees: Sequence[int] = (3, 5, 7),
    *,
    lo: float = 1e-3,
    hi: float = 1.0,
    cushion: float = 0.0,
    safety: float = 1.0,
    exact_budget: bool = False,
    max_steps: int = 12,
    dtype: Any = None,
    floor: float | None = None,
    sizes: Sequence[int] = (64, 128),
    seeds: Sequence[int] = tuple(range(100, 132)),
    shape: tuple[int, int] | None = None,
    max_restarts: int = 2,
    restart_tolerance: float = 2.0,
    name: str | None = None,
    progress: Any = None,
) -> tuple[Schedule, Diagnostics]:
    """The greedy minimax schedule with the smallest worst-case error on ``[lo, hi]`` within ``budget``.

    Args:
        budget: matrix products allowed (an integer ``>= 2``, the cost of one cubic step); with ``shape``,
            ``m x n`` products (``2 m^2 n`` flops each; any positive number).
        lo, hi: the interval of normalized singular values.
        degrees: the odd step degrees to mix.
        cushion, safety: Polar Express's stabilizations (see ``greedy_minimax``).
        exact_budget: only sequences using exactly ``budget`` products (standard form only).
        max_steps: cap on the number of steps.
        dtype: precision-aware mode (see the module docstring): measure the sequences estimated below
            ``floor`` in this dtype and keep the most accurate; ``None`` (default): estimated error only.
            In the Gram-form mode also the working format of ``R`` and ``Q`` that the restarts are placed
            for (default there: bfloat16).
        floor: estimated error below which rounding decides (default: the unit roundoff of ``dtype``).
        sizes, seeds: the measurement of the precision-aware mode (square log-uniform matrices; in the
            Gram-form mode run in the Gram form with the sequence's restarts and ``R``, ``Q`` in ``dtype``).
        shape: ``(m, n)``, ``m <= n``: cost the sequences in the Gram form on ``m x n`` matrices, restarts
            included (see the module docstring); ``None`` (default): the standard form's matrix products.
        max_restarts, restart_tolerance: the Gram-form mode's restart search
            (:func:`nsiter.restarts.gram_restarts`: at most ``max_restarts``, rounding error within
            ``restart_tolerance`` times the standard form's).
        name: schedule name (default ``budget-<budget>``, or ``budget-<budget>-<dtype>``).
        progress: optional callable ``progress(n)`` called with the number of prefixes explored.

    Returns:
        ``(schedule, diagnostics)``; ``diagnostics.metrics["ranking"]`` lists the best degree sequences
        with their errors, ``metrics["cost"]`` the winner's cost in the budget's unit.

    Raises:
        ValueError: naming the bad value, before any work; also when the search would explore more than
            ``MAX_PREFIXES`` prefixes, or (Gram form) no sequence fits the budget with its restarts.
    """
    t0 = time.perf_counter()
    lo, hi = check_interval(lo, hi)
    gram = shape is not None
    shape = _check_shape(shape) if gram else None
    budget = _check_budget(budget, shape)
    costs = _Costs(shape)
    limit = budget * costs.unit
    degs = sorted({int(d) for d in degrees})
    if not degs or any(d < 3 or d % 2 == 0 for d in degs):
        raise ValueError(f"degrees must be odd integers >= 3, got {list(degrees)!r}")
    cheapest = min(costs.step(d) for d in degs)
    if costs.start + cheapest - costs.last > limit:
        raise ValueError(
            f"budget {budget} is too small: the cheapest step (degree {min(degs)}) costs "
            f"{sequence_cost([min(degs)], shape=shape):.4g} {'m x n' if gram else 'matrix'} products"
        )
    if exact_budget and gram:
        raise ValueError("exact_budget applies to the standard form's matrix products, not with shape=")
    if exact_budget and not _reachable(budget, [step_matmuls(d) for d in degs]):
        raise ValueError(f"no sequence of degrees {degs} costs exactly {budget} matrix products")
    safety = check_safety(safety)
    max_steps = check_positive_int(max_steps, "max_steps")
    if not 0 <= cushion < 1:
        raise ValueError(f"cushion must be in [0, 1), got {cushion!r}")
    explored = budget_prefixes(budget, degs, max_steps, shape=shape)
    if explored > MAX_PREFIXES:
        raise ValueError(
            f"budget {budget} with degrees {degs} and max_steps {max_steps} explores more than {MAX_PREFIXES} "
            "degree sequences: lower the budget or max_steps"
        )

    work_dtype = dtype if dtype is not None else ("bfloat16" if gram else None)
    if gram:
        work_dtype = dtype_name(work_dtype)  # names the bad dtype before the search
        if isinstance(max_restarts, bool) or not isinstance(max_restarts, int) or max_restarts < 0:
            raise ValueError(f"max_restarts must be a non-negative integer, got {max_restarts!r}")
        placements(max_steps, max_restarts)  # the placements of the longest sequence: within MAX_PLACEMENTS
        if not (isinstance(restart_tolerance, (int, float)) and math.isfinite(restart_tolerance)) or (
            restart_tolerance < 1
        ):
            raise ValueError(f"restart_tolerance must be a finite factor >= 1, got {restart_tolerance!r}")
    if dtype is not None:  # validate before the search
        floor = unit_roundoff(dtype) if floor is None else check_positive(floor, "floor")
        sizes = [check_positive_int(n, "size") for n in sizes]
        seeds = [check_seed(s) for s in seeds]
        if not seeds:
            raise ValueError("seeds must list at least one seed for the precision-aware measurement")

    results: list[tuple[float, tuple[int, ...], tuple[OddPolynomial, ...]]] = []
    singular: list[tuple[int, ...]] = []
    count = 0
    least_last = cheapest - costs.last  # the cheapest possible last step

    def dfs(a: float, b: float, spent: int, seq: tuple[int, ...], polys: tuple[OddPolynomial, ...]) -> None:
        nonlocal count
        for d in degs:
            c = costs.step(d)
            if spent + c - costs.last > limit:  # (the recursion below keeps len(seq) < max_steps)
                continue
            try:
                p, _, _ = cushioned_step(a, b, d, cushion, True)
            except np.linalg.LinAlgError:  # an interval too narrow for this degree's Remez basis in float64
                singular.append((*seq, d))
                continue
            count += 1
            if progress is not None:
                progress(count)
            image = None
            # as the last step (no safety factor)
            if not exact_budget or spent + c == limit:
                image = image_interval_fast(p, a, b)
                results.append((interval_error(*image), (*seq, d), (*polys, p)))
            # as an inner step (safety factor), if another step still fits
            if spent + c + least_last <= limit and len(seq) + 1 < max_steps:
                q = p.scaled_input(safety) if safety != 1.0 else p
                if q is not p or image is None:
                    image = image_interval_fast(q, a, b)
                na, nb = image
                # a step after an interval converged to float64 resolution cannot improve the estimate (and
                # its Remez system is singular)
                if na > 0 and math.isfinite(nb) and interval_error(na, nb) > CONVERGED:
                    dfs(na, nb, spent + c, (*seq, d), (*polys, q))

    dfs(lo, hi, costs.start, (), ())
    if gram:
        # Gram form: below the rounding floor the estimate no longer ranks sequences (rounding does), and
        # shorter ones need fewer restarts, so those are costed first: clipped error, then cost
        clip = floor if dtype is not None else unit_roundoff(work_dtype)
        results.sort(key=lambda r: (max(r[0], clip), costs.whole(r[1]), r[0]))
    else:
        results.sort(key=lambda r: (r[0], costs.whole(r[1]), len(r[1])))

    placed: dict[tuple[int, ...], tuple[int, ...] | None] = {}  # Gram form: sequence -> its restarts
    modelled = [0]  # restart placements evaluated so far

    def fits(entry: tuple) -> bool:
        """Standard form: always (the enumeration costed it).  Gram form: with the restarts it needs."""
        if not gram:
            return True
        seq = entry[1]
        if seq not in placed:
            # every restart (not after the last step) adds two m x n products and saves three m x m ones
            spare, net = limit - costs.whole(seq), 2 * costs.unit - 3 * costs.square
            affordable = max_restarts if net <= 0 else min(max_restarts, int(spare // net))
            work = len(placements(len(seq), affordable))
            if len(placed) >= MAX_RESTART_MODELS or modelled[0] + work > MAX_MODELLED_PLACEMENTS:
                return False
            modelled[0] += work
            cand = Schedule("candidate", entry[2], Provenance(kind="search", source="budget_search"))
            # modelled on [SAFE_LO, hi], as method="auto" decides: the restarts it needs to run in the Gram form
            res = gram_restarts(
                cand, dtype=work_dtype, max_restarts=affordable, lo=SAFE_LO, hi=hi, tol=restart_tolerance
            )
            rs = None if res.cheapest is None else res.cheapest.restarts
            placed[seq] = (
                rs if rs is not None and sequence_cost(seq, shape=shape, restarts=rs) <= budget else None
            )
        return placed[seq] is not None

    winner = next((r for r in results if fits(r)), None)
    if winner is None:
        raise ValueError(
            f"no degree sequence fits budget {budget} on shape {shape} with the restarts its {work_dtype} "
            f"rounding needs (at most {max_restarts}, within {restart_tolerance}x the standard form; "
            f"{len(placed)} sequences, {modelled[0]} placements modelled): raise the budget, max_restarts or "
            "restart_tolerance"
        )
    err, seq, polys = winner
    measured: list[dict[str, Any]] = []
    if dtype is not None:
        shortlist = _tail_shortlist(results, floor, degs[0], fits)
        for e, sq, ps in shortlist:
            cand = Schedule("candidate", ps, Provenance(kind="search", source="budget_search"))
            if gram:
                cand = cand.with_restarts(placed[sq])
            m = _measure_mean(cand, lo, hi, sizes, seeds, dtype, gram)
            measured.append({"sequence": list(sq), "estimated_error": e, **m})
        if measured:
            best = min(range(len(shortlist)), key=lambda i: (measured[i]["measured_error"], shortlist[i][0]))
            err, seq, polys = shortlist[best]
    params: dict[str, Any] = {
        "budget": budget,
        "lo": lo,
        "hi": hi,
        "degrees": degs,
        "cushion": float(cushion),
        "safety": safety,
        "exact_budget": bool(exact_budget),
        "max_steps": max_steps,
    }
    if dtype is not None:
        params.update(
            dtype=str(dtype), floor=floor, sizes=[int(n) for n in sizes], seeds=[int(x) for x in seeds]
        )
    if gram:
        params.update(
            shape=list(shape),
            max_restarts=max_restarts,
            restart_tolerance=float(restart_tolerance),
        )
    restarts = placed[seq] if gram else ()
    unit = (
        f"{shape[0]}x{shape[1]} products in the Gram form, restarts for R, Q in {work_dtype} counted"
        if gram
        else "matrix products"
    )
    sched = Schedule(
        name or (f"budget-{budget:g}" if dtype is None else f"budget-{budget:g}-{dtype}"),
        polys,
        Provenance(
            kind="search",
            source="nsiter.search.budget.budget_search (greedy minimax over degree sequences)",
            reference="arXiv:2505.16932",
            parameters={**params, "sequence": list(seq)},
        ),
        description=f"best greedy minimax schedule within {budget:g} {unit} on [{lo:g}, {hi:g}]"
        + (
            ""
            if dtype is None
            else f", most accurate in measured {dtype} among those estimated below {floor:.3g}"
        ),
        restarts=restarts,
    )
    diag = Diagnostics("budget", parameters=params)
    for p, (a, b) in zip(sched.steps, propagate_fast(sched.steps, lo, hi), strict=True):
        diag.intervals.append({"degree": p.degree, "lo": a, "hi": b, "error": interval_error(a, b)})
    diag.metrics = {
        "final_error": err,
        "sequence": list(seq),
        "matmuls": sched.matmuls,
        "cost": sequence_cost(seq, shape=shape, restarts=restarts),
        "slope_at_zero": sched.slope_at_zero,
        "explored": count,
        "singular": [list(q) for q in singular[:10]],
        "ranking": [{"sequence": list(s), "error": e} for e, s, _ in results[:10]],
    }
    if gram:
        diag.metrics["restarts"] = list(restarts)
        diag.metrics["restart_dtype"] = work_dtype
        diag.metrics["restart_models"] = len(placed)
        diag.metrics["skipped"] = [
            {"sequence": list(s), "restarts": None} for s, rs in placed.items() if rs is None
        ][:10]
    if dtype is not None:
        diag.metrics["measured"] = measured
        if not measured:
            diag.notes.append(
                f"no sequence is estimated below the floor {floor:.3g}: the winner by estimated error is returned"
            )
    diag.iterations = [count]
    diag.seconds = time.perf_counter() - t0
    return sched, diag


def _reachable(total: int, costs: list[int]) -> bool:
    ok = [True] + [False] * total
    for t in range(1, total + 1):
        ok[t] = any(c <= t and ok[t - c] for c in costs)
    return ok[total]


def _tail_shortlist(results: list, floor: float, low: int, fits: Any) -> list:
    """Among sequences estimated below ``floor`` that ``fits`` the budget: for each length of the final
    run of degree-``low`` steps, the first in the order of ``results`` (by estimated error; in the
    Gram-form mode the sequences below the floor come first, cheapest first)."""
    best: dict[int, tuple] = {}
    for r in results:
        if r[0] > floor:
            break
        tail = next((i for i, d in enumerate(reversed(r[1])) if d != low), len(r[1]))
        if tail not in best and fits(r):
            best[tail] = r
    return [best[k] for k in sorted(best)]


def _measure_mean(
    sched: Schedule, lo: float, hi: float, sizes: Sequence[int], seeds: Sequence[int], dtype: Any, gram: bool
) -> dict:
    from nsiter.measure import measured_errors  # torch: loaded only for a dtype-aware search

    # the Gram form with R, Q in the working format (the restart model's assumption), the schedule's restarts
    extra = {"method": "gram", "gram_dtype": dtype, "restarts": sched.restarts} if gram else {}
    m = measured_errors(sched, sizes=sizes, lo=lo, hi=hi, seeds=seeds, dtype=dtype, **extra)
    return {
        "measured_error": m["mean_max_direction_error"],
        "measured_singular_error": m["mean_max_singular_error"],
        "measured_mean_error": m["mean_error"],
    }
