"""Every decision ``orthogonalize`` makes, in one place, each with its reason.

A call of :func:`nsiter.evaluate.orthogonalize` runs as a :class:`Plan`: the method (standard or Gram form),
the precision of the Gram side (``R``, ``Q``), its restarts, the Q ordering, and the products (native or
emulated GEMM, full or blocked symmetric: :mod:`nsiter.kernels`).  :func:`evaluation_plan` makes the plan
and :meth:`Plan.explain` says why, one line per decision.

**Candidates.**  For ``method="auto"`` the admissible plans are the standard form and the Gram form with
``R``, ``Q`` in the default precision (:func:`nsiter.gram.default_gram_dtype`) and, where the X side runs
narrower, in the X side's own; each with the schedule's stored restarts or none.  The flop count
(:mod:`nsiter.cost`, the Gram side weighted by its measured cost per flop) drops every Gram candidate that
cannot pay (square matrices, small aspect ratios) in microseconds; so does a call of fewer than
:data:`GATE_MIN_FLOPS` flops, or one whose gate would cost more flops than the call.  float64 work runs the
standard form: there is no more precise reference to gate by.

**Accuracy by measurement.**  Each remaining Gram candidate runs, with the same GEMM path it would use, on
five small matrices (:func:`gate_matrices`: a Gaussian one, singular values log-uniform down to 1e-3 and to
1e-10, half exactly zero, and a cluster at 1.8e-7) beside the standard form in the same precision; both are
compared with the float64 run of the schedule (:func:`nsiter.rounding.rounding_errors`).  A candidate whose
error exceeds ``gram_tolerance`` times the standard form's on any of them is not admissible.  The gate is a
measurement of the kernel that will run on this machine, not a model fitted on another (the mpmath model of
:mod:`nsiter.restarts` ranks restart placements and explains them; it no longer vetoes).  It depends on no
timing: the same machine and seed give the same verdict.

**Speed.**  With tuning on (the default; ``NSITER_TUNE=off`` turns it off) the admitted candidates and the
standard form are timed at the call's own shape (interleaved medians and minima, close calls measured again:
:func:`nsiter.kernels.compare_timings`; a smaller batch or matrix of the same aspect where one round would take
more than :data:`TUNE_ROUND_S`) and the fastest runs; a time within :data:`nsiter.kernels.CLOSE` of the fastest
goes to the fewest weighted flops.  With tuning off a deterministic rule serves: the fewest weighted flops among
the admitted.  Plans are kept per process; timed decisions also in ``plans.json`` beside the kernel cache
(:func:`plan_cache_path`), keyed by the machine; ``nsiter tune --shapes`` makes them ahead of time.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from nsiter._io import atomic_write
from nsiter.checks import short_repr
from nsiter.cost import gram_side_flops, standard_flops
from nsiter.dtypes import dtype_name, largest_finite, torch_dtype, unit_roundoff
from nsiter.engine import _check_dtype, resolve_schedule, run_plan
from nsiter.gram import Q_ORDERS, default_gram_dtype, gram_magnitude
from nsiter.kernels import (
    CLOSE,
    KernelChoice,
    cache_path,
    compare_timings,
    kernel_choice,
    machine_key,
    tuning_enabled,
)
from nsiter.schedule import Schedule, check_restarts

__all__ = [
    "AUTO_MARGIN",
    "GATE_MIN_FLOPS",
    "GRAM_TOLERANCE",
    "METHODS",
    "TUNE_ROUND_S",
    "WIDE_GRAM_COST",
    "Plan",
    "PlanOptions",
    "evaluation_plan",
    "gate_matrices",
    "plan_cache_path",
    "plan_options",
]

METHODS = ("auto", "standard", "gram")
GRAM_TOLERANCE = 2.0  # the accuracy gate: measured Gram-form error at most this times the standard form's
# a Gram side wider than the X side, where not probed: float64/float32 GEMM time, measured 2.4-2.5 (AVX2)
WIDE_GRAM_COST = 2.5


@dataclass(frozen=True)
class Plan:
    """How one evaluation runs: what ``orthogonalize`` chose for a (device, dtype, shape, schedule).

    Attributes:
        method: ``"standard"`` or ``"gram"`` (``"auto"`` resolved).
        kernel: the :class:`nsiter.kernels.KernelChoice` (native or emulated GEMM, symmetric products).
        gram_dtype: canonical name of the precision of ``R`` and ``Q`` (Gram form only; else None).
        restarts: the Gram form's restart positions (after these 1-based steps).
        m, n: the small and the large side.
        reasons: why, one sentence per decision (GEMM path, products, R/Q precision, restarts, method).
        q_order: the Gram form's Q update, ``"zq"`` (``Q <- c_0 Q + W Q``) or ``"qz"`` (:func:`nsiter.gram.gram_steps`).
        source: ``"given"`` (the caller fixed the method), ``"rule"`` (fewest weighted flops among the plans the
            accuracy gate admits) or ``"measured"`` (the fastest of them, timed on this machine).
    """

    method: str
    kernel: KernelChoice
    gram_dtype: str | None
    restarts: tuple[int, ...]
    m: int
    n: int
    reasons: tuple[str, ...] = ()
    q_order: str = "zq"
    source: str = "rule"

    def __repr__(self) -> str:
        """One line: shape, the label and how it was decided (:meth:`explain` gives the reasons)."""
        return f"Plan({self.m}x{self.n}: {self.label}; {self.source})"

    def explain(self) -> str:
        """The label and the reasons, one per line: why did this run the Gram form (or not)?"""
        return "\n".join([self.label, *(f"- {r}" for r in self.reasons)])

    @property
    def label(self) -> str:
        """E.g. ``"gram (R, Q float32; restarts 2), bfloat16 emulated, symmetric/128"``."""
        if self.method == "gram":
            rs = f"; restarts {','.join(map(str, self.restarts))}" if self.restarts else ""
            return f"gram (R, Q {self.gram_dtype}{rs}), {self.kernel.label}"
        return f"standard, {self.kernel.label}"


def _wide_cost(choice: KernelChoice) -> float:
    """Time per flop of a Gram side one precision wider than the X side, over the X side's: the probe's
    float64/float32 ratio for float32 work, its emulated/native ratio (float32 over the dtype's own GEMM)
    for native bf16/fp16, else :data:`WIDE_GRAM_COST`."""
    if choice.float64_cost is not None:
        return choice.float64_cost
    if not choice.emulated and choice.native_ms and choice.emulated_ms:
        return max(1.0, choice.emulated_ms / choice.native_ms)
    return WIDE_GRAM_COST


@dataclass(frozen=True)
class PlanOptions:
    """The options ``orthogonalize`` forwards to planning, as one object (see :func:`evaluation_plan`)."""

    method: str = "auto"
    restarts: tuple[int, ...] | None = None
    gram_dtype: str | None = None
    gram_tolerance: float = GRAM_TOLERANCE
    emulate: bool | None = None
    symmetric: bool | int | None = None
    q_order: str = "zq"

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if isinstance(self.gram_tolerance, bool) or not (
            isinstance(self.gram_tolerance, (int, float)) and 0 <= self.gram_tolerance < math.inf
        ):
            raise ValueError(
                f"gram_tolerance must be a finite non-negative number, got {self.gram_tolerance!r}"
            )
        if self.q_order not in Q_ORDERS:
            raise ValueError(f"q_order must be one of {Q_ORDERS}, got {self.q_order!r}")


def plan_options(
    method: str = "auto",
    restarts: Sequence[int] | None = None,
    gram_dtype: Any = None,
    gram_tolerance: float = GRAM_TOLERANCE,
    emulate: bool | None = None,
    symmetric: bool | int | None = None,
    q_order: str = "zq",
) -> PlanOptions:
    """The :class:`PlanOptions` of these keyword values (``gram_dtype`` by any dtype name), checked: what
    ``orthogonalize`` and ``iterates`` build once and hand on."""
    if restarts is not None:
        if isinstance(restarts, (str, bytes)) or not isinstance(restarts, Sequence):
            raise ValueError(f"restarts must be a sequence of step numbers, got {restarts!r}")
        restarts = tuple(restarts)
    return PlanOptions(
        method,
        restarts,
        None if gram_dtype is None else dtype_name(gram_dtype),
        gram_tolerance,
        emulate,
        symmetric,
        q_order,
    )


def evaluation_plan(
    shape: Sequence[int],
    schedule: Schedule | str | Path = "muon",
    *,
    dtype: Any = torch.bfloat16,
    device: torch.device | str = "cpu",
    method: str = "auto",
    restarts: Sequence[int] | None = None,
    gram_dtype: Any = None,
    gram_tolerance: float = GRAM_TOLERANCE,
    emulate: bool | None = None,
    symmetric: bool | int | None = None,
    steps: int | None = None,
    q_order: str = "zq",
    options: PlanOptions | None = None,
) -> Plan:
    """The plan ``orthogonalize`` follows for an input of ``shape`` (``(..., m, n)``) with these options.

    Records, the benchmark and experiments store ``Plan.label`` next to their numbers; ``Plan.explain()``
    says why.  The first call for a (device, dtype, size class) may run the kernel probe
    (:func:`nsiter.kernels.kernel_choice`); the first call for a shape and schedule may run the accuracy gate
    (small matrices, milliseconds) and, with tuning on, time the admissible plans (bounded by
    :data:`TUNE_ROUND_S`).  Later calls reuse the plan.  ``options`` (a :class:`PlanOptions`, as
    ``orthogonalize`` hands it on) replaces the keywords from ``method`` to ``q_order``.
    """
    if len(shape) < 2 or min(shape[-2:]) < 1:
        raise ValueError(f"expected a shape (..., m, n), got {tuple(shape)}")
    sched = resolve_schedule(schedule, steps=steps)
    dt = _check_dtype(dtype)
    if options is None:
        options = plan_options(method, restarts, gram_dtype, gram_tolerance, emulate, symmetric, q_order)
    elif not isinstance(options, PlanOptions):
        raise ValueError(f"options must be a PlanOptions, got {type(options).__name__}")
    opts = options
    if opts.restarts is not None:
        opts = replace(opts, restarts=tuple(check_restarts(list(opts.restarts), len(sched))))
    emulate, symmetric = opts.emulate, opts.symmetric
    m, n = min(shape[-2:]), max(shape[-2:])
    choice = kernel_choice(device, dt, m, emulate=emulate, symmetric=symmetric)
    batch = math.prod(shape[:-2])
    key = (
        str(torch.device(device)),
        dt,
        m,
        n,
        batch,
        tuple(tuple(p.coefficients) for p in sched.steps),
        sched.restarts,
        sched.normalization,
        opts,
        choice,
        tuning_enabled(),
    )
    plan = _plans.get(key)
    if plan is None:  # checked once per plan: the key holds the coefficients, so a cached plan passed
        _check_coefficients(sched, dt)
        if len(_plans) >= _PLAN_CACHE_SIZE:
            _plans.clear()
        plan = _plans[key] = _decide(sched, dt, m, n, batch, choice, torch.device(device), opts)
    return plan


def _check_coefficients(sched: Schedule, dt: torch.dtype) -> None:
    """Every coefficient is a number the products can scale by: within the compute precision's range (float32
    for bf16/fp16, whose products accumulate and scale in float32), else ``ValueError`` naming it."""
    compute = torch.float32 if dt in (torch.bfloat16, torch.float16) else dt
    top = largest_finite(compute)
    for k, p in enumerate(sched.steps, start=1):
        for c in p.coefficients:
            if not abs(float(c)) <= top:
                raise ValueError(
                    f"step {k} coefficient {float(c):.6g} is beyond {dtype_name(compute)}'s range ({top:.4g}): "
                    f"the products of a {dtype_name(dt)} run cannot scale by it"
                )


_plans: dict[tuple, Plan] = {}  # plans by (device, dtype, shape, schedule, options, kernel choice, tuning)
_PLAN_CACHE_SIZE = 1024
AUTO_MARGIN = 0.9  # a Gram candidate must need at most this share of the standard form's weighted flops
GATE_MIN_FLOPS = 5e7  # below this many flops a call runs the standard form: no gate, no timing
TUNE_ROUND_S = 0.5  # one round of the timed candidates takes at most this long (at most 16 rounds a plan)
_GATE_SIZE = 64  # the accuracy gate's matrices: at most this small side


def _x_side(dt: torch.dtype, choice: KernelChoice) -> str:
    """The precision the X side's products really run in (float32 where bf16/fp16 is emulated)."""
    return "float32" if choice.emulated and dtype_name(dt) in ("bfloat16", "float16") else dtype_name(dt)


def _default_restarts(sched: Schedule, dt: torch.dtype, gdt: str, x_side: str) -> tuple[tuple[int, ...], str]:
    """``method="gram"`` without ``restarts=``: the schedule's stored restarts, except where ``R``, ``Q`` and
    ``Q X`` all run at the square of the working precision (they are placed for ``R``, ``Q`` in the working
    precision, :mod:`nsiter.restarts`; a Gram side that wide loses nothing to them and skips their two
    ``m x n`` products each)."""
    if unit_roundoff(gdt) <= unit_roundoff(dt) ** 2 and unit_roundoff(x_side) <= unit_roundoff(gdt):
        return (), f"no restarts: R, Q and Q X in {gdt}, the square of {dtype_name(dt)}'s precision"
    return tuple(sched.restarts), f"the schedule's restarts {list(sched.restarts)}"


def _candidates(
    sched: Schedule, dt: torch.dtype, choice: KernelChoice, device: torch.device, opts: PlanOptions
) -> list[tuple[str, tuple[int, ...]]]:
    """The Gram candidates ``(gram_dtype, restarts)`` of ``method="auto"``, in a fixed order: ``R``, ``Q`` in
    the given precision, else the default one (:func:`nsiter.gram.default_gram_dtype`) and, where it is
    wider, the X side's own; restarts given, else the schedule's stored ones and none."""
    x_side = _x_side(dt, choice)
    if opts.gram_dtype is not None:
        precisions = [opts.gram_dtype]
    else:
        precisions = [default_gram_dtype(dt, choice.gemm, device)]
        if unit_roundoff(x_side) > unit_roundoff(precisions[0]):
            precisions.append(x_side)
    placements = [opts.restarts] if opts.restarts is not None else list(dict.fromkeys([sched.restarts, ()]))
    return [(g, tuple(r)) for g in precisions for r in placements]


def _gram_cost(choice: KernelChoice, dt: torch.dtype, gdt: str) -> float:
    """Time per flop of the Gram side's products over the X side's."""
    x_side = _x_side(dt, choice)
    return _wide_cost(choice) if torch_dtype(gdt).itemsize > torch_dtype(x_side).itemsize else 1.0


def _decide(
    sched: Schedule,
    dt: torch.dtype,
    m: int,
    n: int,
    batch: int,
    choice: KernelChoice,
    device: torch.device,
    opts: PlanOptions,
) -> Plan:
    """The decisions behind :func:`evaluation_plan`, each with its reason."""
    why = [f"products: {choice.label} ({choice.source})"]
    x_side = _x_side(dt, choice)

    def gram_plan(gdt: str, rs: tuple[int, ...], reasons: list[str], source: str) -> Plan:
        _check_range(sched, gdt, rs)
        return Plan("gram", choice, gdt, rs, m, n, tuple(reasons), opts.q_order, source)

    if opts.method == "standard":
        return Plan("standard", choice, None, (), m, n, (*why, "standard: given"), opts.q_order, "given")
    if opts.method == "gram":
        gdt = opts.gram_dtype or default_gram_dtype(dt, choice.gemm, device)
        why.append(f"R, Q in {gdt} ({'given' if opts.gram_dtype else 'nsiter.gram.default_gram_dtype'})")
        if opts.restarts is not None:
            rs, reason = opts.restarts, f"restarts {list(opts.restarts)} given"
        else:
            rs, reason = _default_restarts(sched, dt, gdt, x_side)
        return gram_plan(gdt, rs, [*why, reason, "gram: given"], "given")
    # method="auto": flops prune, the measured accuracy gate admits, then time (or the rule) picks
    if dt == torch.float64:  # the gate needs a reference more precise than the run
        why.append("standard: float64 work has no more precise reference to gate a Gram plan by")
        return Plan("standard", choice, None, (), m, n, tuple(why), opts.q_order)
    block = choice.symmetric_block
    std = standard_flops(sched, m, n, block)
    cheap = []
    for gdt, rs in _candidates(sched, dt, choice, device, opts):
        x, g = gram_side_flops(sched, m, n, rs, block)
        cost = _gram_cost(choice, dt, gdt)
        ratio = (x + cost * g) / max(std, 1)
        label = f"gram (R, Q {gdt}; restarts {list(rs)})"
        if ratio > AUTO_MARGIN:
            why.append(f"{label}: {ratio:.2f}x the standard form's weighted flops (> {AUTO_MARGIN})")
        elif not _in_range(sched, gdt, rs):
            why.append(f"{label}: Q would overflow {gdt} (nsiter.gram.gram_magnitude)")
        else:
            cheap.append((ratio, gdt, rs, label))
    if not cheap:
        return Plan(
            "standard", choice, None, (), m, n, (*why, "standard: no Gram plan can pay"), opts.q_order
        )
    if batch * std < GATE_MIN_FLOPS:
        why.append(f"standard: {batch * std:.3g} flops a call, below {GATE_MIN_FLOPS:g}: not worth planning")
        return Plan("standard", choice, None, (), m, n, tuple(why), opts.q_order)
    gm, gn = _gate_shape(m, n)
    gate_flops = (3 + len(cheap)) * _GATE_MATRICES * standard_flops(sched, gm, gn)  # float64 counted twice
    if gate_flops > batch * std:
        why.append(
            f"standard: the accuracy gate ({gate_flops:.3g} flops) would cost more than the call ({batch * std:.3g})"
        )
        return Plan("standard", choice, None, (), m, n, tuple(why), opts.q_order)
    errors = _gate(sched, dt, choice, device, m, n, [(g, r) for _, g, r, _ in cheap], opts.q_order)
    std_err = errors[None]
    floor = unit_roundoff(x_side)  # a standard run can hit the reference exactly: ratios of errors above u
    admitted = []
    for ratio, gdt, rs, label in cheap:
        worst = max(e / max(s, floor) for e, s in zip(errors[(gdt, rs)], std_err, strict=True))
        verdict = "admitted" if worst <= opts.gram_tolerance else "refused"
        why.append(
            f"{label}: {ratio:.2f}x the weighted flops; measured rounding error up to {worst:.3g}x the "
            f"standard form's on hard spectra ({verdict}, tolerance {opts.gram_tolerance:g})"
        )
        if worst <= opts.gram_tolerance:
            admitted.append((ratio, gdt, rs, label))
    if not admitted:
        return Plan("standard", choice, None, (), m, n, (*why, "standard: no Gram plan within tolerance"),
                    opts.q_order)  # fmt: skip
    if not tuning_enabled():
        ratio, gdt, rs, label = min(admitted, key=lambda c: c[0])
        return gram_plan(gdt, rs, [*why, f"{label}: fewest weighted flops (rule; tuning off)"], "rule")
    plans = {"standard": Plan("standard", choice, None, (), m, n, (), opts.q_order)}
    for _, gdt, rs, label in admitted:
        plans[label] = Plan("gram", choice, gdt, rs, m, n, (), opts.q_order)
    stored = _stored_plan(sched, dt, m, n, batch, choice, device, opts, admitted)
    if stored is not None:
        return stored
    med, shape = _time_plans(sched, dt, device, batch, m, n, plans)
    flops = {"standard": 1.0, **{label: ratio for ratio, _, _, label in admitted}}
    best = min(med, key=med.get)
    close = [k for k in med if med[k] <= (1 + CLOSE) * med[best]]
    pick = min(close, key=lambda k: (flops[k], k != "standard"))
    timing = ", ".join(f"{k} {v:.3g} ms" for k, v in sorted(med.items(), key=lambda kv: kv[1]))
    why.append(f"timed at {shape}: {timing}; {pick} (within {CLOSE:.0%} of the fastest: fewest flops)")
    if pick == "standard":
        plan = Plan("standard", choice, None, (), m, n, tuple(why), opts.q_order, "measured")
    else:
        plan = gram_plan(plans[pick].gram_dtype, plans[pick].restarts, why, "measured")
    _store_plan(_plan_key(sched, dt, m, n, batch, choice, device, opts), plan)
    return plan


_PLAN_FILE_VERSION = 1


def plan_cache_path() -> Path | None:
    """The file of timed plan decisions: ``plans.json`` beside the kernel cache
    (:func:`nsiter.kernels.cache_path`), or ``None`` when that is off."""
    path = cache_path()
    return None if path is None else path.with_name("plans.json")


def _plan_key(
    sched: Schedule, dt: torch.dtype, m: int, n: int, batch: int, choice: KernelChoice, device: torch.device,
    opts: PlanOptions,
) -> str:  # fmt: skip
    digest = hashlib.sha256(
        repr((
            [list(p.coefficients) for p in sched.steps], sched.restarts, sched.normalization, opts,
            (choice.gemm, choice.symmetric_block),
        )).encode()
    ).hexdigest()[:16]  # fmt: skip
    return f"{machine_key(device)}|{dtype_name(dt)}|{batch}x{m}x{n}|{digest}"


def _read_plans(path: Path | None) -> dict[str, Any]:
    try:
        if path is None or not path.is_file():  # never read a FIFO or a device
            return {}
        data = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        return {}
    ok = (
        isinstance(data, dict)
        and data.get("version") == _PLAN_FILE_VERSION
        and isinstance(data.get("entries"), dict)
    )
    return data["entries"] if ok else {}


def _store_plan(key: str, plan: Plan) -> None:
    path = plan_cache_path()
    if path is None:
        return
    entries = _read_plans(path)
    entries[key] = {"method": plan.method, "gram_dtype": plan.gram_dtype, "restarts": list(plan.restarts),
                    "reasons": list(plan.reasons)}  # fmt: skip
    try:
        atomic_write(
            path, json.dumps({"version": _PLAN_FILE_VERSION, "entries": entries}, indent=1), parents=True
        )
    except OSError as err:  # a read-only home or a full disk is no reason to fail a computation: say so
        warnings.warn(
            f"plan not stored in {short_repr(str(path))} ({err.strerror or err}); it holds for this process",
            RuntimeWarning,
            stacklevel=4,
        )


def _stored_plan(
    sched: Schedule, dt: torch.dtype, m: int, n: int, batch: int, choice: KernelChoice, device: torch.device,
    opts: PlanOptions, admitted: list[tuple[float, str, tuple[int, ...], str]],
) -> Plan | None:  # fmt: skip
    """The timed decision stored for this call, if it is one of the plans admitted now (an entry that is not,
    or is malformed, is ignored and measured again)."""
    entry = _read_plans(plan_cache_path()).get(_plan_key(sched, dt, m, n, batch, choice, device, opts))
    if not isinstance(entry, dict):
        return None
    reasons = entry.get("reasons")
    if not (isinstance(reasons, list) and all(isinstance(r, str) for r in reasons)):
        return None
    why = (*reasons, "(timed decision from the plan cache file)")
    if entry.get("method") == "standard":
        return Plan("standard", choice, None, (), m, n, why, opts.q_order, "measured")
    for _, gdt, rs, _ in admitted:
        if (
            entry.get("method") == "gram"
            and entry.get("gram_dtype") == gdt
            and entry.get("restarts") == list(rs)
        ):
            return Plan("gram", choice, gdt, rs, m, n, why, opts.q_order, "measured")
    return None


def _in_range(sched: Schedule, gdt: str, rs: tuple[int, ...]) -> bool:
    """float16 ``R``, ``Q``: does ``Q`` stay below half the format's range (65504)?"""
    return largest_finite(gdt) >= 1e6 or 2 * gram_magnitude(sched, rs) <= largest_finite(gdt)


def _check_range(sched: Schedule, gdt: str, rs: tuple[int, ...]) -> None:
    if not _in_range(sched, gdt, rs):
        raise ValueError(
            f"gram_dtype {gdt}: Q reaches about {gram_magnitude(sched, rs):.3g} (nsiter.gram.gram_magnitude), "
            f"beyond half the format's range {largest_finite(gdt):g}; add restarts or keep R, Q in float32"
        )


def gate_matrices(m: int, n: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The accuracy gate's matrices, float64 ``(5, m, n)`` (seeded: the same on every call): a Gaussian matrix
    (the spectrum of a random gradient), singular values log-uniform from 1 down to 1e-3 and down to 1e-10,
    half of them exactly zero (rank-deficient) with the rest log-uniform to 1e-3, and a cluster of half at
    1.8e-7 with the rest log-uniform to 1e-2."""
    from nsiter.matrices import with_spectrum

    k = min(m, n)
    half = k // 2
    spectra = [
        torch.logspace(0, -3, k, dtype=torch.float64),
        torch.logspace(0, -10, k, dtype=torch.float64),
        torch.cat(
            [torch.logspace(0, -3, k - half, dtype=torch.float64), torch.zeros(half, dtype=torch.float64)]
        ),
        torch.cat([torch.logspace(0, -2, k - half, dtype=torch.float64), torch.full((half,), 1.8e-7)]),
    ]
    gaussian = torch.randn(m, n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    made = [with_spectrum(m, n, s, seed=i + 1) for i, s in enumerate(spectra)]
    return torch.stack([gaussian, *made]).to(device)


_gates: dict[tuple, dict[Any, list[float]]] = {}
_GATE_MATRICES = 5  # gate_matrices' batch


def _gate_shape(m: int, n: int) -> tuple[int, int]:
    """The gate's matrices: small side at most :data:`_GATE_SIZE`, the call's aspect ratio up to 8."""
    gm = min(m, _GATE_SIZE)
    return gm, gm * max(1, min(8, round(n / m)))


def _gate(
    sched: Schedule,
    dt: torch.dtype,
    choice: KernelChoice,
    device: torch.device,
    m: int,
    n: int,
    cands: list[tuple[str, tuple[int, ...]]],
    q_order: str,
) -> dict[Any, list[float]]:
    """Rounding errors (:func:`nsiter.rounding.rounding_error`, per gate matrix) of the standard form (key
    ``None``) and of each Gram candidate, run with ``choice``'s GEMM path on :func:`gate_matrices` of a small
    side at most :data:`_GATE_SIZE` and the call's aspect ratio (at most 8)."""
    from nsiter.rounding import rounding_errors

    gm, gn = _gate_shape(m, n)
    key = (str(device), dt, choice.gemm, gm, gn, tuple(tuple(p.coefficients) for p in sched.steps),
           sched.normalization, tuple(cands), q_order)  # fmt: skip
    if key in _gates:
        return _gates[key]
    G = gate_matrices(gm, gn, device)
    exact_kernel = KernelChoice(device.type, "float64", choice.size_class, "native", None, "rule")
    small = KernelChoice(device.type, choice.dtype, choice.size_class, choice.gemm, None, "rule")
    exact = _last(run_plan(G, sched, Plan("standard", exact_kernel, None, (), gm, gn), torch.float64,
                           check_finite=False, record=False))  # fmt: skip
    out: dict[Any, list[float]] = {}
    std = _last(
        run_plan(G, sched, Plan("standard", small, None, (), gm, gn), dt, check_finite=False, record=False)
    )
    out[None] = rounding_errors(std, exact)
    for gdt, rs in cands:
        plan = Plan("gram", small, gdt, rs, gm, gn, (), q_order)
        out[(gdt, rs)] = rounding_errors(
            _last(run_plan(G, sched, plan, dt, check_finite=False, record=False)), exact
        )
    _gates[key] = out
    return out


def _last(run: Iterator[torch.Tensor]) -> torch.Tensor:
    out = None
    for out in run:  # noqa: B007 - the last iterate is the result
        pass
    assert out is not None
    return out


def _time_plans(
    sched: Schedule, dt: torch.dtype, device: torch.device, batch: int, m: int, n: int, plans: dict[str, Plan]
) -> tuple[dict[str, float], str]:
    """Median ms of each plan on a random input of the call's shape (interleaved rounds, close calls measured
    again: :func:`nsiter.kernels.compare_timings`); returns the medians and the shape timed.

    Each plan runs once untimed (set-up, first-call kernel builds), then once timed; the batch is halved
    while one round takes longer than :data:`TUNE_ROUND_S` (small matrices are timed as they are: the
    plans' overheads are what decides there), and only then the matrix, keeping its aspect ratio, so a plan's
    timing costs at most about 16 rounds of :data:`TUNE_ROUND_S`."""
    gen = torch.Generator().manual_seed(0)
    b, mm, nn = batch, m, n
    while b * mm * nn > 2**26:  # at most 256 MiB of float32 input: the batch first, then the matrix
        b, mm, nn = (b // 2, mm, nn) if b > 1 else (1, mm // 2, nn // 2)

    def runner(p: Plan, G: torch.Tensor) -> Any:
        return lambda: _last(run_plan(G, sched, p, dt, check_finite=False, record=False))

    while True:
        G = torch.randn(b, mm, nn, generator=gen).to(device)
        fns = {k: runner(_resized(p, mm, nn), G) for k, p in plans.items()}
        for fn in fns.values():
            fn()
        t0 = time.perf_counter()
        for fn in fns.values():
            fn()
        if time.perf_counter() - t0 <= TUNE_ROUND_S or (b == 1 and mm <= 128):
            break
        b, mm, nn = (b // 2, mm, nn) if b > 1 else (1, mm // 2, nn // 2)
    med, _, _ = compare_timings(fns, device)
    shape = f"{b}x{mm}x{nn}" if b > 1 else f"{mm}x{nn}"
    return med, shape


def _resized(plan: Plan, m: int, n: int) -> Plan:
    if (plan.m, plan.n) == (m, n):
        return plan
    block = plan.kernel.symmetric_block
    kernel = plan.kernel if block is None or block < m else replace(plan.kernel, symmetric_block=None)
    return replace(plan, m=m, n=n, kernel=kernel)
