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
``m x n`` products (:func:`nsiter.cost.restart_cost`).  So the budget is counted in ``m x n``
products (``2 m^2 n`` flops; a float), every sequence is costed with its restarts
(:func:`nsiter.cost.method_flops`, full products), and the winner carries its restarts.  The degree
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
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nsiter.checks import check_interval, check_positive, check_positive_int, check_safety, check_seed
from nsiter.dtypes import dtype_name, unit_roundoff
from nsiter.polynomial import OddPolynomial, step_matmuls
from nsiter.restarts import SAFE_LO, gram_restarts, placements
from nsiter.schedule import Provenance, Schedule
from nsiter.search._core import Diagnostics, image_interval_fast, interval_error, search_result
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
    from nsiter.cost import method_flops

    m, n = _check_shape(shape)
    polys = [OddPolynomial([1.0] + [0.0] * ((int(d) - 1) // 2)) for d in degrees]
    return method_flops(polys, m, n, method="gram", restarts=list(restarts)) / (2 * m * m * n)


@dataclass(frozen=True)
class _Space:
    """The degree sequences one search explores: steps of ``degrees`` from ``[lo, hi]`` whose cost (in
    ``costs``' integer units) stays within ``limit``, at most ``max_steps`` long."""

    lo: float
    hi: float
    degrees: list[int]
    costs: _Costs
    limit: float
    cushion: float
    safety: float
    max_steps: int
    exact_budget: bool

    @property
    def least_last(self) -> int:
        """The cost of the cheapest possible last step."""
        return min(self.costs.step(d) for d in self.degrees) - self.costs.last


_Entry = tuple[float, tuple[int, ...], tuple[OddPolynomial, ...]]  # (estimated error, degrees, polynomials)


class _Enumeration:
    """Every degree sequence of a ``_Space`` with its greedy minimax schedule, depth first: sequences sharing
    a prefix share its Remez solves.

    Attributes:
        results: ``(estimated error, degrees, polynomials)`` per sequence, in the order found.
        singular: sequences whose last Remez system was singular in float64 (interval too narrow).
        explored: Remez solves done (one per prefix).
    """

    def __init__(self, space: _Space, progress: Any = None) -> None:
        self.space = space
        self.progress = progress
        self.results: list[_Entry] = []
        self.singular: list[tuple[int, ...]] = []
        self.explored = 0
        self._grow(space.lo, space.hi, space.costs.start, (), ())

    def _grow(
        self, a: float, b: float, spent: int, seq: tuple[int, ...], polys: tuple[OddPolynomial, ...]
    ) -> None:
        """Extend ``seq`` (which maps ``[lo, hi]`` to ``[a, b]`` at cost ``spent``) by every degree that fits."""
        sp = self.space
        for d in sp.degrees:
            c = sp.costs.step(d)
            if spent + c - sp.costs.last > sp.limit:  # (the recursion below keeps len(seq) < max_steps)
                continue
            try:
                p, _, _ = cushioned_step(a, b, d, sp.cushion, True)
            except np.linalg.LinAlgError:  # an interval too narrow for this degree's Remez basis in float64
                self.singular.append((*seq, d))
                continue
            self.explored += 1
            if self.progress is not None:
                self.progress(self.explored)
            image = None
            # as the last step (no safety factor)
            if not sp.exact_budget or spent + c == sp.limit:
                image = image_interval_fast(p, a, b)
                self.results.append((interval_error(*image), (*seq, d), (*polys, p)))
            # as an inner step (safety factor), if another step still fits
            if spent + c + sp.least_last <= sp.limit and len(seq) + 1 < sp.max_steps:
                q = p.scaled_input(sp.safety) if sp.safety != 1.0 else p
                if q is not p or image is None:
                    image = image_interval_fast(q, a, b)
                na, nb = image
                # a step after an interval converged to float64 resolution cannot improve the estimate (and
                # its Remez system is singular)
                if na > 0 and math.isfinite(nb) and interval_error(na, nb) > CONVERGED:
                    self._grow(na, nb, spent + c, (*seq, d), (*polys, q))


class _RestartModel:
    """Gram form: the restarts a sequence needs so that its rounding error (R and Q in ``dtype``, modelled on
    ``[SAFE_LO, hi]`` as ``method="auto"`` decides) stays within ``tolerance`` times the standard form's,
    from :func:`nsiter.restarts.gram_restarts`; ``None`` when no affordable placement does (or the modelling
    allowance ``MAX_RESTART_MODELS`` / ``MAX_MODELLED_PLACEMENTS`` is spent)."""

    def __init__(
        self,
        space: _Space,
        budget: float,
        shape: tuple[int, int],
        dtype: str,
        max_restarts: int,
        tolerance: float,
    ) -> None:
        self.space, self.budget, self.shape, self.dtype = space, budget, shape, dtype
        self.max_restarts, self.tolerance = max_restarts, tolerance
        self.placed: dict[tuple[int, ...], tuple[int, ...] | None] = {}  # sequence -> its restarts
        self.modelled = 0  # restart placements evaluated so far

    def fits(self, entry: _Entry) -> bool:
        """Whether the sequence of ``entry`` fits the budget with the restarts it needs."""
        _, seq, polys = entry
        if seq not in self.placed:
            costs = self.space.costs
            # every restart (not after the last step) adds two m x n products and saves three m x m ones
            spare, net = self.space.limit - costs.whole(seq), 2 * costs.unit - 3 * costs.square
            affordable = self.max_restarts if net <= 0 else min(self.max_restarts, int(spare // net))
            work = len(placements(len(seq), affordable))
            if len(self.placed) >= MAX_RESTART_MODELS or self.modelled + work > MAX_MODELLED_PLACEMENTS:
                return False
            self.modelled += work
            cand = Schedule("candidate", polys, Provenance(kind="search", source="budget_search"))
            res = gram_restarts(
                cand,
                dtype=self.dtype,
                max_restarts=affordable,
                lo=SAFE_LO,
                hi=self.space.hi,
                restart_tolerance=self.tolerance,
            )
            rs = None if res.cheapest is None else res.cheapest.restarts
            fits = rs is not None and sequence_cost(seq, shape=self.shape, restarts=rs) <= self.budget
            self.placed[seq] = rs if fits else None
        return self.placed[seq] is not None


@dataclass
class _Choice:
    """A mode's answer: the winning entry, the ranking it came from, and (Gram form) the restart model."""

    winner: _Entry
    ranked: list[_Entry]
    model: _RestartModel | None = None
    measured: list[dict[str, Any]] = field(default_factory=list)

    def fits(self, entry: _Entry) -> bool:
        return self.model is None or self.model.fits(entry)

    def restarts(self, seq: tuple[int, ...]) -> tuple[int, ...]:
        return () if self.model is None else self.model.placed[seq]


def _standard_mode(space: _Space, found: _Enumeration) -> _Choice:
    """Standard form: the smallest estimated error wins; ties go to the cheaper, then the shorter sequence."""
    ranked = sorted(found.results, key=lambda r: (r[0], space.costs.whole(r[1]), len(r[1])))
    if not ranked:
        raise ValueError(
            f"no degree sequence within the budget could be solved (singular: {found.singular[:3]})"
        )
    return _Choice(ranked[0], ranked)


def _gram_mode(space: _Space, found: _Enumeration, model: _RestartModel, clip: float) -> _Choice:
    """Gram form: below the rounding floor ``clip`` the estimate no longer ranks sequences (rounding does), and
    shorter ones need fewer restarts, so those are costed first (clipped error, then cost); the first that
    fits with its restarts wins."""
    ranked = sorted(found.results, key=lambda r: (max(r[0], clip), space.costs.whole(r[1]), r[0]))
    winner = next((r for r in ranked if model.fits(r)), None)
    if winner is None:
        raise ValueError(
            f"no degree sequence fits budget {model.budget} on shape {model.shape} with the restarts its "
            f"{model.dtype} rounding needs (at most {model.max_restarts}, within {model.tolerance}x the "
            f"standard form; {len(model.placed)} sequences, {model.modelled} placements modelled): raise the "
            "budget, max_restarts or restart_tolerance"
        )
    return _Choice(winner, ranked, model)


def _precision_mode(
    choice: _Choice,
    space: _Space,
    floor: float,
    dtype: Any,
    sizes: Sequence[int],
    seeds: Sequence[int],
    progress: Any = None,
    done: int = 0,
) -> _Choice:
    """Precision-aware: among the sequences estimated below ``floor`` that fit, one per length of the final
    run of lowest-degree steps (``_tail_shortlist``), the most accurate measured in ``dtype`` wins; with
    none below the floor the choice stands.  ``progress(done + k)`` is called after the ``k``-th measured
    candidate, so a progress display keeps moving through this phase (seconds per candidate)."""
    shortlist = _tail_shortlist(choice.ranked, floor, space.degrees[0], choice.fits)
    measured = []
    for e, sq, ps in shortlist:
        cand = Schedule("candidate", ps, Provenance(kind="search", source="budget_search"))
        if choice.model is not None:
            cand = cand.with_restarts(choice.restarts(sq))
        m = _measure_mean(cand, space.lo, space.hi, sizes, seeds, dtype, choice.model is not None)
        measured.append({"sequence": list(sq), "estimated_error": e, **m})
        if progress is not None:
            progress(done + len(measured))
    if not measured:
        return choice
    best = min(range(len(shortlist)), key=lambda i: (measured[i]["measured_error"], shortlist[i][0]))
    return _Choice(shortlist[best], choice.ranked, choice.model, measured)


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

    Three modes (module docstring), each a function of its own: the standard form's matrix products
    (``_standard_mode``), the Gram form on ``shape`` with restarts (``_gram_mode``), and, with ``dtype``,
    the measurement that decides below the rounding floor (``_precision_mode``, after either).

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
        progress: optional callable ``progress(n)`` called with the work done so far: prefixes explored,
            then (precision-aware mode) that count plus the candidates measured.

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
    space = _check_space(budget, degrees, shape, lo, hi, cushion, safety, exact_budget, max_steps)
    params: dict[str, Any] = {
        "budget": budget,
        "lo": space.lo,
        "hi": space.hi,
        "degrees": space.degrees,
        "cushion": float(cushion),
        "safety": space.safety,
        "exact_budget": bool(exact_budget),
        "max_steps": space.max_steps,
    }
    if gram:  # names a bad dtype or restart setting before the search
        work_dtype = dtype_name("bfloat16" if dtype is None else dtype)
        _check_restart_search(max_restarts, restart_tolerance, space.max_steps)
    if dtype is not None:  # validate before the search
        floor = unit_roundoff(dtype) if floor is None else check_positive(floor, "floor")
        sizes = [check_positive_int(n, "size") for n in sizes]
        seeds = [check_seed(s) for s in seeds]
        if not seeds:
            raise ValueError("seeds must list at least one seed for the precision-aware measurement")
        params.update(dtype=str(dtype), floor=floor, sizes=sizes, seeds=seeds)
    if gram:
        params.update(
            shape=list(shape), max_restarts=max_restarts, restart_tolerance=float(restart_tolerance)
        )

    found = _Enumeration(space, progress)
    if gram:
        model = _RestartModel(space, budget, shape, work_dtype, max_restarts, restart_tolerance)
        choice = _gram_mode(space, found, model, floor if dtype is not None else unit_roundoff(work_dtype))
    else:
        choice = _standard_mode(space, found)
    if dtype is not None:
        choice = _precision_mode(choice, space, floor, dtype, sizes, seeds, progress, found.explored)
    return _budget_result(choice, found, space, params, shape, dtype, floor, name, t0)


def _check_space(
    budget: float,
    degrees: Sequence[int],
    shape: tuple[int, int] | None,
    lo: float,
    hi: float,
    cushion: float,
    safety: float,
    exact_budget: bool,
    max_steps: int,
) -> _Space:
    """The checked search space, or ``ValueError`` naming the bad value (before any Remez solve)."""
    lo, hi = check_interval(lo, hi)
    costs = _Costs(shape)
    limit = budget * costs.unit
    degs = sorted({int(d) for d in degrees})
    if not degs or any(d < 3 or d % 2 == 0 for d in degs):
        raise ValueError(f"degrees must be odd integers >= 3, got {list(degrees)!r}")
    if costs.start + min(costs.step(d) for d in degs) - costs.last > limit:
        raise ValueError(
            f"budget {budget} is too small: the cheapest step (degree {min(degs)}) costs "
            f"{sequence_cost([min(degs)], shape=shape):.4g} {'matrix' if shape is None else 'm x n'} products"
        )
    if exact_budget and shape is not None:
        raise ValueError("exact_budget applies to the standard form's matrix products, not with shape=")
    if exact_budget and not _reachable(budget, [step_matmuls(d) for d in degs]):
        raise ValueError(f"no sequence of degrees {degs} costs exactly {budget} matrix products")
    safety = check_safety(safety)
    max_steps = check_positive_int(max_steps, "max_steps")
    if not 0 <= cushion < 1:
        raise ValueError(f"cushion must be in [0, 1), got {cushion!r}")
    if budget_prefixes(budget, degs, max_steps, shape=shape) > MAX_PREFIXES:
        raise ValueError(
            f"budget {budget} with degrees {degs} and max_steps {max_steps} explores more than {MAX_PREFIXES} "
            "degree sequences: lower the budget or max_steps"
        )
    return _Space(lo, hi, degs, costs, limit, float(cushion), safety, max_steps, bool(exact_budget))


def _check_restart_search(max_restarts: Any, restart_tolerance: Any, max_steps: int) -> None:
    if isinstance(max_restarts, bool) or not isinstance(max_restarts, int) or max_restarts < 0:
        raise ValueError(f"max_restarts must be a non-negative integer, got {max_restarts!r}")
    placements(max_steps, max_restarts)  # the placements of the longest sequence: within MAX_PLACEMENTS
    if not (isinstance(restart_tolerance, (int, float)) and math.isfinite(restart_tolerance)) or (
        restart_tolerance < 1
    ):
        raise ValueError(f"restart_tolerance must be a finite factor >= 1, got {restart_tolerance!r}")


def _budget_result(
    choice: _Choice,
    found: _Enumeration,
    space: _Space,
    params: dict[str, Any],
    shape: tuple[int, int] | None,
    dtype: Any,
    floor: float | None,
    name: str | None,
    started: float,
) -> tuple[Schedule, Diagnostics]:
    """The winner as a schedule (with its restarts in the Gram form) and the search's diagnostics."""
    err, seq, polys = choice.winner
    budget = params["budget"]
    restarts = choice.restarts(seq)
    if shape is None:
        unit = "matrix products"
    else:
        unit = f"{shape[0]}x{shape[1]} products in the Gram form, restarts for R, Q in {choice.model.dtype} counted"
    description = f"best greedy minimax schedule within {budget:g} {unit} on [{space.lo:g}, {space.hi:g}]"
    if dtype is not None:
        description += f", most accurate in measured {dtype} among those estimated below {floor:.3g}"
    metrics: dict[str, Any] = {
        "final_error": err,
        "sequence": list(seq),
        "cost": sequence_cost(seq, shape=shape, restarts=restarts),
        "explored": found.explored,
        "singular": [list(q) for q in found.singular[:10]],
        "ranking": [{"sequence": list(s), "error": e} for e, s, _ in choice.ranked[:10]],
    }
    if choice.model is not None:
        metrics["restarts"] = list(restarts)
        metrics["restart_dtype"] = choice.model.dtype
        metrics["restart_models"] = len(choice.model.placed)
        metrics["skipped"] = [
            {"sequence": list(s), "restarts": None} for s, rs in choice.model.placed.items() if rs is None
        ][:10]
    notes = []
    if dtype is not None:
        metrics["measured"] = choice.measured
        if not choice.measured:
            notes.append(
                f"no sequence is estimated below the floor {floor:.3g}: the winner by estimated error is returned"
            )
    return search_result(
        "budget",
        name or (f"budget-{budget:g}" if dtype is None else f"budget-{budget:g}-{dtype}"),
        polys,
        source="nsiter.search.budget.budget_search (greedy minimax over degree sequences)",
        reference="arXiv:2505.16932",
        parameters=params,
        provenance_parameters={**params, "sequence": list(seq)},
        description=description,
        lo=space.lo,
        hi=space.hi,
        started=started,
        metrics=metrics,
        restarts=restarts,
        iterations=found.explored,
        notes=notes,
    )


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
