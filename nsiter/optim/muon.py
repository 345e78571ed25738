"""Muon: momentum orthogonalized by a Newton–Schulz schedule, for the matrix parameters of a network.

One step for a matrix parameter ``W`` (rows x cols) with gradient ``G_t`` (Jordan et al. 2024):

    B_t = mu B_{t-1} + (1 - mu) G_t                       momentum, kept as an average (lerp)
    U_t = (1 - mu) G_t + mu B_t   if nesterov else B_t     Nesterov look-ahead
    O_t = phi_T(U_t / ||U_t||_F)                           the schedule's Newton–Schulz iteration, in bf16
    W_t = (1 - lr wd) W_{t-1} - lr s(rows, cols) O_t       decoupled weight decay, shape-scaled step

``phi_T`` is any nsiter schedule (``"muon"``: Jordan's quintic (3.4445, -4.7750, 2.0315) five times;
``"polar-express"``, a search result, or a schedule file), evaluated by :func:`nsiter.evaluate.orthogonalize`.
The averaged momentum is ``(1 - mu)`` times the textbook ``B_t = mu B_{t-1} + G_t``; the normalization
before the first Newton–Schulz step removes that factor, so the two forms give the same update.  The
conventions (lerp momentum, Nesterov form, weight decay with the unscaled ``lr``) are those of
``torch.optim.Muon`` and of github.com/KellerJordan/Muon, so with ``schedule="muon"`` and the same
hyperparameters this optimizer agrees with ``torch.optim.Muon`` step for step up to bf16 rounding.  The
defaults differ: ``weight_decay`` is 0 here, as in KellerJordan/Muon's ``Muon``, but 0.1 in
``torch.optim.Muon`` (torch 2.13), so pass ``weight_decay=0.1`` here (or ``weight_decay=0`` to torch) to
compare them.

Update scaling ``s(rows, cols)`` (``adjust_lr``):

- ``"jordan"`` (torch's ``"original"``): ``sqrt(max(1, rows / cols))`` — Jordan, "Muon: An optimizer for hidden
  layers in neural networks" (2024), https://kellerjordan.github.io/posts/muon/.
- ``"moonlight"`` (torch's ``"match_rms_adamw"``): ``0.2 sqrt(max(rows, cols))``, which gives the update the RMS
  0.2 of a typical AdamW update so AdamW's learning rate and weight decay carry over — Liu et al., "Muon is
  Scalable for LLM Training" (2025), arXiv:2502.16982, Sec. 2.2.
- ``None``: ``s = 1``.

Muon is for matrices.  A convolution weight (out, in, kh, kw) is flattened to (out, in kh kw).  Embeddings, the
output head, biases and gains belong with AdamW: :func:`muon_param_groups` routes them and
:class:`MuonWithAuxAdam` steps both kinds in one optimizer (groups with ``use_muon=False`` take AdamW,
Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019, arXiv:1711.05101).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from nsiter.checks import check_bool, check_real, short_repr
from nsiter.dtypes import dtype_name
from nsiter.evaluate import Plan, evaluation_plan, orthogonalize, validate_matrix
from nsiter.optim.batching import (
    DEFAULT_BATCH_BYTES,
    check_batch_options,
    check_split_sizes,
    orthogonalize_batched,
    split_rows,
)
from nsiter.optim.clip import QKClip
from nsiter.optim.fsdp import ShardLayout, apply_on_owners, is_dtensor, redistribute_like, shard_layout
from nsiter.plan import METHODS  # how orthogonalize evaluates the schedule (its ``method``)
from nsiter.registry import load_schedule
from nsiter.schedule import Schedule

__all__ = [
    "ADJUST_LR",
    "METHODS",
    "Muon",
    "MuonWithAuxAdam",
    "as_matrix",
    "muon_param_groups",
    "update_scale",
]


# accepted names for the update-scaling convention -> canonical name (torch's names are aliases)
ADJUST_LR: dict[str | None, str | None] = {
    "jordan": "jordan",
    "original": "jordan",
    "moonlight": "moonlight",
    "match_rms_adamw": "moonlight",
    None: None,
}


def update_scale(adjust_lr: str | None, rows: int, cols: int) -> float:
    """The factor ``s`` multiplying ``lr`` for an orthogonalized update of shape ``(rows, cols)``.

    ``"jordan"``: ``sqrt(max(1, rows/cols))``; ``"moonlight"``: ``0.2 sqrt(max(rows, cols))``; ``None``: 1.
    """
    kind = _canonical_adjust(adjust_lr)
    if kind == "jordan":
        return math.sqrt(max(1.0, rows / cols))
    if kind == "moonlight":
        return 0.2 * math.sqrt(max(rows, cols))
    return 1.0


def _canonical_adjust(adjust_lr: str | None) -> str | None:
    if adjust_lr not in ADJUST_LR:
        names = ", ".join(repr(k) for k in ADJUST_LR)
        raise ValueError(f"adjust_lr must be one of {names}, got {adjust_lr!r}")
    return ADJUST_LR[adjust_lr]


def _schedule_dict(schedule: str | Any) -> dict[str, Any]:
    """Resolve a registry name, schedule file or ``Schedule`` into its JSON dict (what the state_dict keeps)."""
    return load_schedule(schedule).to_dict()


def _check_method(method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    return method


def _local(t: torch.Tensor) -> torch.Tensor:
    """The local piece of a DTensor (a view: in-place updates reach the DTensor), else ``t`` itself."""
    return t.to_local() if is_dtensor(t) else t


def newton_schulz_input(group: dict[str, Any], grad: torch.Tensor, buf: torch.Tensor) -> torch.Tensor:
    """The matrix Muon orthogonalizes: ``(1 - mu) G_t + mu B_t`` (Nesterov) or ``B_t``, as a matrix."""
    return as_matrix(grad.lerp(buf, group["momentum"]) if group["nesterov"] else buf)


def as_matrix(p: torch.Tensor) -> torch.Tensor:
    """View a parameter (or its gradient) as the matrix Muon orthogonalizes: (out, prod(rest))."""
    return p.reshape(p.shape[0], -1)


def _check_matrix(p: torch.Tensor, name: str = "") -> None:
    what = f" {name!r}" if name else ""
    if not isinstance(p, torch.Tensor):
        raise ValueError(f"Muon optimizes tensors; parameter{what} is a {type(p).__name__}")
    if p.layout == torch.strided and not p.is_nested:
        if p.ndim < 2:
            raise ValueError(
                f"Muon optimizes matrices; parameter{what} has shape {tuple(p.shape)} (ndim {p.ndim}): "
                "give 0-D/1-D parameters (biases, gains) to AdamW, e.g. with nsiter.optim.muon_param_groups"
            )
        if p.numel() == 0:
            raise ValueError(
                f"Muon cannot orthogonalize an empty matrix: parameter{what} has shape {tuple(p.shape)}"
            )
    try:  # the evaluator's rule: dense, holding data, float16/bfloat16/float32/float64
        validate_matrix(p, check_finite=False)
    except ValueError as e:
        raise ValueError(f"Muon cannot step parameter{what}: {e}") from None


class Muon(torch.optim.Optimizer):
    """Muon with any nsiter schedule (see the module docstring for the update and its sources).

    Args:
        params: matrix parameters (ndim >= 2; conv weights are flattened to (out, in*kh*kw)) or param groups.
            Groups with ``use_muon=False`` are stepped with AdamW instead (see :class:`MuonWithAuxAdam`).
        lr: learning rate ``lr``.
        momentum: ``mu`` in [0, 1).
        nesterov: use the Nesterov look-ahead ``(1 - mu) G_t + mu B_t``.
        schedule: registry name, schedule file path or :class:`nsiter.Schedule` used to orthogonalize.
        weight_decay: decoupled weight decay ``wd`` (``W <- (1 - lr wd) W``); default 0 as in KellerJordan/Muon,
            while ``torch.optim.Muon`` defaults to 0.1.
        adjust_lr: ``"jordan"`` | ``"moonlight"`` | ``None`` (torch's ``"original"`` / ``"match_rms_adamw"``
            are accepted as aliases).
        dtype: precision of the Newton–Schulz iteration (bf16 as in Muon).
        method: how the schedule is evaluated (:func:`nsiter.evaluate.orthogonalize`'s ``method``): ``"auto"``
            (default: the Gram form where it is accurate and cheaper), ``"standard"`` or ``"gram"``; settable per
            group.  A schedule's stored Gram restarts apply.
        qk_clip: a :class:`nsiter.optim.QKClip` applied after every step (MuonClip, Kimi K2), or None.
        names: optional ``{param: name}`` used in error messages.
        batch: orthogonalize the matrices of one shape (up to transpose) in one batched call (default; settable
            per group; ``False``: one call per matrix).  The result is the per-matrix one
            (:mod:`nsiter.optim.batching`).
        batch_bytes: bound on one batched call's stacked input, in float32 bytes (default
            :data:`nsiter.optim.batching.DEFAULT_BATCH_BYTES`, 256 MiB); settable per group.
        split_sizes: ``{param: row sizes}``: orthogonalize the parameter's matrix view as row blocks of these sizes
            (fused QKV: ``(d, d, d)``; per head: ``(head_dim,) * heads``), each scaled by its own shape's
            ``s(rows, cols)``, as gram-newton-schulz's ``param_split_fn`` does.
        param_split_fn: ``fn(param) -> row sizes | None`` for parameters not in ``split_sizes`` (called once per
            parameter, at its first step).
        check_finite: check the gradients before every step (default; one host synchronization).  ``False`` skips
            that check and the evaluator's: the Muon step then makes no host synchronization (capturable in a CUDA
            graph, compilable with ``fullgraph=True``), and a NaN/Inf gradient propagates into the momentum.

    **Plans.**  The evaluation plan (method, kernels: :func:`nsiter.evaluate.evaluation_plan`) of each (shape,
    dtype, device, group options) is decided once, at the first step that meets it, and reused
    (:meth:`plan_of`): later steps do no planning, so a step after the first can be compiled or captured.

    **FSDP2.** Parameters sharded by ``torch.distributed.fsdp.fully_shard`` (DTensors split along one mesh
    dimension) are stepped on their shards: the momentum stays a sharded DTensor, each matrix's Nesterov input is
    assembled on one owner rank (balanced by :func:`nsiter.optim.fsdp.assign_owners`), orthogonalized there only,
    and the owner's result is scattered back (:func:`nsiter.optim.fsdp.apply_on_owners`); AdamW parameters are
    stepped on their local pieces.  ``step()`` is then a collective: call it on every rank.  See
    docs/distributed.md.

    The param groups store the schedule as its JSON dict and the dtype by name, so ``state_dict()`` is plain data
    (loads with ``torch.load(..., weights_only=True)``) and records the coefficients that were used.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float,
        momentum: float = 0.95,
        nesterov: bool = True,
        schedule: str | Schedule = "muon",
        weight_decay: float = 0.0,
        adjust_lr: str | None = "jordan",
        *,
        dtype: torch.dtype | str = torch.bfloat16,
        method: str = "auto",
        adam_betas: tuple[float, float] = (0.9, 0.95),
        adam_eps: float = 1e-8,
        qk_clip: QKClip | None = None,
        names: dict[torch.Tensor, str] | None = None,
        batch: bool = True,
        batch_bytes: int = DEFAULT_BATCH_BYTES,
        split_sizes: dict[torch.Tensor, Sequence[int]] | None = None,
        param_split_fn: Callable[[torch.Tensor], Sequence[int] | None] | None = None,
        check_finite: bool = True,
    ) -> None:
        if qk_clip is not None and not isinstance(qk_clip, QKClip):
            raise ValueError(f"qk_clip must be a nsiter.optim.QKClip or None, got {type(qk_clip).__name__}")
        defaults = _check_group(
            {
                "lr": lr,
                "momentum": momentum,
                "nesterov": nesterov,
                "schedule": schedule,
                "weight_decay": weight_decay,
                "adjust_lr": adjust_lr,
                "dtype": dtype,
                "method": method,
                "use_muon": True,
                "betas": adam_betas,
                "eps": adam_eps,
                "batch": batch,
                "batch_bytes": batch_bytes,
            },
            "Muon",
        )
        for what, table in (("names", names), ("split_sizes", split_sizes)):
            if table is not None and not isinstance(table, Mapping):
                raise ValueError(
                    f"{what} must be a dict keyed by parameter or None, got {type(table).__name__}"
                )
        self._names = dict(names or {})
        self.qk_clip = qk_clip
        self._schedules: dict[int, tuple[dict[str, Any], Schedule]] = {}
        if param_split_fn is not None and not callable(param_split_fn):
            raise ValueError(f"param_split_fn must be callable or None, got {type(param_split_fn).__name__}")
        self.param_split_fn = param_split_fn
        self._splits: dict[torch.Tensor, tuple[int, ...] | None] = {}
        if not isinstance(check_finite, bool):
            raise ValueError(f"check_finite must be True or False, got {check_finite!r}")
        self.check_finite = check_finite
        self._plans: dict[tuple, tuple[Schedule, Plan]] = {}
        super().__init__(params, defaults)
        for p, sizes in (split_sizes or {}).items():
            self._splits[p] = check_split_sizes(sizes, p.shape[0], self._names.get(p, ""))

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group, validated (every hyperparameter, see :func:`_check_group`; Muon groups hold matrices) and
        normalized (schedule as its dict, dtype by name, canonical ``adjust_lr``) before the optimizer changes."""
        if not isinstance(param_group, Mapping):
            raise ValueError(f"a param group must be a dict, got {type(param_group).__name__}")
        group = dict(param_group)
        if "params" not in group:
            raise ValueError(f"a param group needs 'params', got the keys {sorted(group)}")
        params = group["params"]
        group["params"] = [params] if isinstance(params, torch.Tensor) else params
        if not isinstance(group["params"], (set, list, tuple)):  # torch refuses sets itself, by name
            group["params"] = list(group["params"])  # a generator: read once, here
        settings = _check_group({**self.defaults, **group}, f"param_groups[{len(self.param_groups)}]")
        group.update({k: v for k, v in settings.items() if k in group})
        check_batch_options(settings)
        if settings["use_muon"] and not isinstance(group["params"], set):
            for p in group["params"]:
                _check_matrix(p, self._names.get(p, "") if isinstance(p, torch.Tensor) else "")
        super().add_param_group(group)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state dict after checking all of it, so a refused one changes nothing.

        Checked: the layout (``state`` and ``param_groups``, as many groups and parameters as this optimizer has),
        every group's keys and hyperparameters (:func:`_check_group`: an SGD or AdamW state dict lacks
        ``use_muon``/``schedule`` and is refused by name), and the state entries the step reads: a Muon
        parameter's ``momentum_buffer``, an AdamW parameter's ``step``, ``exp_avg`` and ``exp_avg_sq``, each
        finite and shaped like its parameter.  Entries may be absent (they start at zero, as on a first step).
        """
        if not isinstance(state_dict, Mapping) or set(state_dict) != {"state", "param_groups"}:
            keys = sorted(state_dict) if isinstance(state_dict, Mapping) else type(state_dict).__name__
            raise ValueError(f"an optimizer state dict has the keys ['param_groups', 'state'], got {keys}")
        saved, state = state_dict["param_groups"], state_dict["state"]
        if not isinstance(saved, (list, tuple)) or len(saved) != len(self.param_groups):
            count = len(saved) if isinstance(saved, (list, tuple)) else type(saved).__name__
            raise ValueError(f"state dict has {count} param groups, this optimizer {len(self.param_groups)}")
        if not isinstance(state, Mapping):
            raise ValueError(f"state dict's 'state' must be a dict, got {type(state).__name__}")
        checked = []
        owner: dict[Any, tuple[bool, torch.Tensor]] = {}  # saved parameter index -> (use_muon, parameter)
        for gi, (group, mine) in enumerate(zip(saved, self.param_groups, strict=True)):
            where = f"state dict param_groups[{gi}]"
            if not isinstance(group, Mapping):
                raise ValueError(f"{where} must be a dict, got {type(group).__name__}")
            missing = sorted(set(self.defaults) - set(group))
            if missing:
                raise ValueError(f"{where} lacks {missing}: not a Muon state dict")
            ids = group.get("params")
            if not isinstance(ids, (list, tuple)) or len(ids) != len(mine["params"]):
                count = len(ids) if isinstance(ids, (list, tuple)) else short_repr(ids)
                raise ValueError(f"{where} has {count} parameters, this optimizer's {len(mine['params'])}")
            settings = _check_group(dict(group), where)
            if settings["use_muon"]:
                for p in mine["params"]:
                    _check_matrix(p, self._names.get(p, ""))
            for i, p in zip(ids, mine["params"], strict=True):
                owner[i] = (settings["use_muon"], p)
            checked.append({**group, **settings})
        for i, entry in state.items():
            if i not in owner:
                raise ValueError(f"state dict has state for parameter {short_repr(i)}, which no group holds")
            _check_state(entry, *owner[i], f"state dict state[{i!r}]")
        super().load_state_dict({"state": state, "param_groups": checked})

    def schedule_of(self, group: dict[str, Any]) -> Schedule:
        """The :class:`Schedule` a param group orthogonalizes with, parsed once per schedule dict.

        The cache holds the dict itself, so an id is never reused while cached; a group whose schedule
        is replaced (``load_state_dict``, assignment) holds a new dict and is parsed again.
        """
        data = group["schedule"]
        hit = self._schedules.get(id(data))
        if hit is None or hit[0] is not data:
            hit = (data, Schedule.from_dict(data))
            self._schedules[id(data)] = hit
        return hit[1]

    # ------------------------------------------------------------------------------------------ updates
    def split_of(self, p: torch.Tensor) -> tuple[int, ...] | None:
        """The row-block sizes ``p``'s matrix view is orthogonalized in (``split_sizes``/``param_split_fn``), or
        ``None`` for the whole matrix; asked of ``param_split_fn`` once per parameter and checked."""
        if p not in self._splits:
            sizes = self.param_split_fn(p) if self.param_split_fn is not None else None
            if sizes is not None:
                sizes = check_split_sizes(sizes, p.shape[0], self._names.get(p, ""))
            self._splits[p] = sizes
        return self._splits[p]

    def _advance(self, group: dict[str, Any], p: torch.Tensor) -> torch.Tensor:
        """Advance ``p``'s momentum ``B_t`` and return the Newton–Schulz input ``U_t`` as a matrix."""
        grad = p.grad
        state = self.state[p]
        if "momentum_buffer" not in state:  # for a DTensor p: a DTensor sharded like p
            state["momentum_buffer"] = torch.zeros_like(grad, memory_format=torch.preserve_format)
        buf = state["momentum_buffer"]
        buf.lerp_(grad, 1.0 - group["momentum"])  # B_t = mu B_{t-1} + (1 - mu) G_t
        return newton_schulz_input(group, grad, buf)

    def plan_of(self, group: dict[str, Any], U: torch.Tensor) -> Plan:
        """The evaluation plan for ``U``'s matrices under the group's options, decided once and cached per
        (small side, large side, device, schedule, dtype, method)."""
        sched, method = self.schedule_of(group), group.get("method", "auto")
        m, n = sorted(U.shape[-2:])
        key = (m, n, str(U.device), id(sched), group["dtype"], method)
        hit = self._plans.get(key)
        if hit is None or hit[0] is not sched:  # the schedule is held, so its id is not reused while cached
            hit = (
                sched,
                evaluation_plan((m, n), sched, dtype=group["dtype"], device=U.device, method=method),
            )
            self._plans[key] = hit
        return hit[1]

    def orthogonalize(self, group: dict[str, Any], U: torch.Tensor) -> torch.Tensor:
        """``phi_T(U / ||U||)`` per matrix of ``U`` (m, n) or (b, m, n): the group's schedule, precision, method
        (through its cached plan, :meth:`plan_of`)."""
        return orthogonalize(
            U,
            self.schedule_of(group),
            dtype=group["dtype"],
            plan=self.plan_of(group, U),
            check_finite=self.check_finite,
        )

    def block_scales(self, group: dict[str, Any], p: torch.Tensor) -> list[float]:
        """``s(rows, cols)`` of each block of ``p``'s matrix view (one block without a split)."""
        rows, cols = p.shape[0], math.prod(p.shape[1:])  # the matrix view's shape (p may be a DTensor)
        return [update_scale(group["adjust_lr"], r, cols) for r in (self.split_of(p) or (rows,))]

    def directions(
        self, entries: Sequence[tuple[dict[str, Any], torch.Tensor, torch.Tensor]]
    ) -> list[torch.Tensor]:
        """The orthogonalized directions ``D`` of ``(group, param, U)`` entries (``U`` the param's matrix view).

        Every block (the whole matrix, or the row blocks of :meth:`split_of`) is orthogonalized; the blocks of
        one group are batched by shape (:func:`nsiter.optim.batching.orthogonalize_batched`, the group's
        ``batch``/``batch_bytes``).  The update is ``W <- (1 - lr wd) W - lr s D`` with ``s`` from
        :meth:`step_scale`: without a split ``D = O`` and ``s = s(rows, cols)``, so the step is exactly the
        per-parameter one; with blocks of unequal scales each block of ``D`` carries its own ``s_i`` and ``s = 1``.
        """
        blocks: list[tuple[int, torch.Tensor]] = []
        for k, (_, p, U) in enumerate(entries):
            blocks.extend((k, B) for B in split_rows(U, self.split_of(p)))
        by_group: dict[int, list[int]] = {}
        for j, (k, _) in enumerate(blocks):
            by_group.setdefault(id(entries[k][0]), []).append(j)
        outs: list[torch.Tensor | None] = [None] * len(blocks)
        for js in by_group.values():
            group = entries[blocks[js[0]][0]][0]
            res = orthogonalize_batched(
                [blocks[j][1] for j in js],
                lambda X, group=group: self.orthogonalize(group, X),
                batch=group.get("batch", True),
                batch_bytes=group.get("batch_bytes", DEFAULT_BATCH_BYTES),
            )
            for j, r in zip(js, res, strict=True):
                outs[j] = r
        result, j = [], 0
        for group, p, _ in entries:
            scales = self.block_scales(group, p)
            parts, j = outs[j : j + len(scales)], j + len(scales)
            if len(parts) == 1:
                result.append(parts[0])
            elif len(set(scales)) == 1:
                result.append(torch.cat(parts))
            else:
                result.append(torch.cat([part * s for part, s in zip(parts, scales, strict=True)]))
        return result

    def step_scale(self, group: dict[str, Any], p: torch.Tensor) -> float:
        """The ``s`` of :meth:`directions`' update for ``p``: its blocks' common scale, else 1."""
        scales = self.block_scales(group, p)
        return scales[0] if len(set(scales)) == 1 else 1.0

    def _apply(self, group: dict[str, Any], p: torch.Tensor, target: torch.Tensor, D: torch.Tensor) -> None:
        """``target <- (1 - lr wd) target - lr s D``: ``target`` is ``p`` or its local piece."""
        lr = group["lr"]
        target.mul_(1.0 - lr * group["weight_decay"])
        target.add_(D.to(target.dtype), alpha=-lr * self.step_scale(group, p))

    def _muon_steps(self, items: Sequence[tuple[dict[str, Any], torch.Tensor]]) -> None:
        """Muon on plain (or unsharded-layout DTensor) parameters, their orthogonalizations batched."""
        for _, p in items:  # splits resolved (and checked) before any state changes
            self.split_of(p)
        if items and not any(is_dtensor(p) for _, p in items):
            self._plain_muon_steps(items)
            return
        entries = []
        for group, p in items:
            U = self._advance(group, p)
            # a DTensor layout apply_on_owners does not handle: every rank gathers and orthogonalizes
            entries.append((group, p, U.full_tensor() if is_dtensor(U) else U))
        for (group, p, _), D in zip(entries, self.directions(entries), strict=True):
            D = D.reshape(p.shape)
            self._apply(group, p, p, redistribute_like(D, p) if is_dtensor(p) else D)

    def _plain_muon_steps(self, items: Sequence[tuple[dict[str, Any], torch.Tensor]]) -> None:
        """:meth:`_muon_steps` for plain tensors, the elementwise work as one ``torch._foreach_*`` call per group
        (and per update factor) instead of one call per parameter: the same formulas on the same tensors, so the
        same bits as :meth:`_advance` and :meth:`_apply` (tests/test_optim.py)."""
        by_group: dict[int, list[torch.Tensor]] = {}
        groups: dict[int, dict[str, Any]] = {}
        for group, p in items:
            by_group.setdefault(id(group), []).append(p)
            groups[id(group)] = group
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(p.grad, memory_format=torch.preserve_format)
        inputs: dict[torch.Tensor, torch.Tensor] = {}
        for key, ps in by_group.items():
            group, mu = groups[key], groups[key]["momentum"]
            grads = [p.grad for p in ps]
            bufs = [self.state[p]["momentum_buffer"] for p in ps]
            torch._foreach_lerp_(bufs, grads, 1.0 - mu)  # B_t = mu B_{t-1} + (1 - mu) G_t
            us = torch._foreach_lerp(grads, bufs, mu) if group["nesterov"] else bufs
            inputs.update((p, as_matrix(u)) for p, u in zip(ps, us, strict=True))
        entries = [(group, p, inputs[p]) for group, p in items]
        updates: dict[tuple[float, float], tuple[list[torch.Tensor], list[torch.Tensor]]] = {}
        for (group, p, _), D in zip(entries, self.directions(entries), strict=True):
            lr = group["lr"]
            key = (1.0 - lr * group["weight_decay"], -lr * self.step_scale(group, p))
            params, ds = updates.setdefault(key, ([], []))
            params.append(p)
            ds.append(D.reshape(p.shape).to(p.dtype))
        for (decay, alpha), (params, ds) in updates.items():  # W <- (1 - lr wd) W - lr s D
            torch._foreach_mul_(params, decay)
            torch._foreach_add_(params, ds, alpha=alpha)

    def _sharded_muon_steps(self, items: list[tuple[dict[str, Any], torch.Tensor, ShardLayout]]) -> list[int]:
        """Muon on FSDP2 shards: momentum on the local pieces, each matrix orthogonalized by its owner only.

        Every step of the update is elementwise except the orthogonalization, so the local pieces carry the
        momentum, the Nesterov input, weight decay and the update; :func:`apply_on_owners` assembles each Nesterov
        input on its owner, which orthogonalizes all of its matrices in batches (:meth:`directions`), and returns
        every rank its piece.  Returns the owners.
        """
        inputs = []
        for group, p, _ in items:
            state = self.state[p]
            if "momentum_buffer" not in state:  # a DTensor sharded like p: the state stays sharded
                state["momentum_buffer"] = torch.zeros_like(p.grad)
            grad, buf = _local(p.grad), _local(state["momentum_buffer"])
            mu = group["momentum"]
            buf.lerp_(grad, 1.0 - mu)  # B_t = mu B_{t-1} + (1 - mu) G_t
            inputs.append(grad.lerp(buf, mu) if group["nesterov"] else buf)

        def directions_full(indices: list[int], fulls: list[torch.Tensor]) -> list[torch.Tensor]:
            entries = [(items[i][0], items[i][1], as_matrix(f)) for i, f in zip(indices, fulls, strict=True)]
            return [D.reshape(f.shape) for D, f in zip(self.directions(entries), fulls, strict=True)]

        layouts = [lay for _, _, lay in items]
        results, owners = apply_on_owners(inputs, layouts, directions_full, batched=True)
        for (group, p, _), D in zip(items, results, strict=True):
            self._apply(group, p, _local(p), D)
        return owners

    def _adamw_step(self, group: dict[str, Any], p: torch.Tensor) -> None:
        """AdamW (Loshchilov & Hutter 2019) in torch.optim.AdamW's arithmetic:

        m_t = b1 m + (1-b1) g;  v_t = b2 v + (1-b2) g^2;  W <- (1 - lr wd) W - lr (m_t/(1-b1^t)) / (sqrt(v_t/(1-b2^t)) + eps)
        """
        state = self.state[p]
        if "step" not in state:
            state["step"] = torch.tensor(0.0)
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["step"] += 1
        t = float(state["step"])
        beta1, beta2 = group["betas"]
        lr = group["lr"]
        w, grad, m, v = p, p.grad, state["exp_avg"], state["exp_avg_sq"]
        if is_dtensor(p) and p.grad.placements == p.placements:  # elementwise: on the local pieces
            w, grad, m, v = (_local(x) for x in (w, grad, m, v))
        w.mul_(1.0 - lr * group["weight_decay"])
        m.lerp_(grad, 1.0 - beta1)
        v.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
        bias1 = 1.0 - beta1**t
        bias2_sqrt = math.sqrt(1.0 - beta2**t)
        denom = (v.sqrt() / bias2_sqrt).add_(group["eps"])
        w.addcdiv_(m, denom, value=-lr / bias1)

    def check_gradients(self) -> None:
        """Raise ``ValueError`` naming the parameter if any gradient is sparse, misshapen or not finite.

        :meth:`step` calls this before it mutates anything, so a NaN or Inf gradient leaves the parameters and
        every momentum buffer as they were (otherwise a NaN in the buffer would poison every later step).
        """
        checked: list[tuple[str, torch.Tensor, torch.Tensor]] = []
        for gi, group in enumerate(self.param_groups):
            for pi, p in enumerate(group["params"]):
                g = p.grad
                if g is None:
                    continue
                name = self._names.get(p) or f"param_groups[{gi}]['params'][{pi}]"
                if g.is_sparse:
                    raise ValueError(f"Muon does not support sparse gradients: parameter {name!r}")
                if g.shape != p.shape:
                    raise ValueError(
                        f"gradient of parameter {name!r} has shape {tuple(g.shape)}, not {tuple(p.shape)}"
                    )
                checked.append((name, p, g))
        if not checked:
            return
        # non-finite entries per gradient, on the local data (one transfer to the host for all of them); a DTensor
        # (FSDP2) gradient's pieces live on several ranks, so the counts are max-reduced over its mesh: every rank
        # raises, or none does
        local = [(~torch.isfinite(_local(g))).sum() for _, _, g in checked]
        bad = torch.stack([c.to(local[0].device) for c in local])
        anywhere = bad.clone()
        meshes = {id(g.device_mesh): g.device_mesh for _, _, g in checked if is_dtensor(g)}
        for mesh in meshes.values():
            for dim in range(mesh.ndim):
                dist.all_reduce(anywhere, op=dist.ReduceOp.MAX, group=mesh.get_group(dim))
        bad, anywhere = bad.cpu(), anywhere.cpu()
        if bool(anywhere.any()):
            i = int(torch.nonzero(anywhere)[0])
            name, p, g = checked[i]
            where = f"{int(bad[i])} in this rank's piece" if is_dtensor(g) else str(int(bad[i]))
            raise ValueError(
                f"gradient of parameter {name!r} (shape {tuple(p.shape)}) has {where} non-finite "
                f"entries of {g.numel()}; nothing was updated"
            )

    def update_parameter(self, group: dict[str, Any], p: torch.Tensor) -> None:
        """Apply one step to one parameter in place (Muon or AdamW according to its group)."""
        self.update_parameters([(group, p)])

    def update_parameters(self, items: Sequence[tuple[dict[str, Any], torch.Tensor]]) -> None:
        """Apply one step to each ``(group, param)`` in place: AdamW one by one, Muon with its orthogonalizations
        batched by shape (:meth:`directions`); each parameter ends as :meth:`update_parameter` alone leaves it."""
        for _, p in items:
            if p.grad.is_sparse:
                raise ValueError(
                    f"Muon does not support sparse gradients (parameter of shape {tuple(p.shape)})"
                )
        for group, p in items:
            if not group["use_muon"]:
                self._adamw_step(group, p)
        self._muon_steps([(group, p) for group, p in items if group["use_muon"]])

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """One optimization step over every parameter that has a gradient (checked first: see ``check_gradients``),
        then QK-Clip when the optimizer has one.  Muon matrices of one shape (up to transpose) are orthogonalized
        in batched calls (``batch``); those sharded by FSDP2 are stepped together, each orthogonalized on one owner
        rank, batched there (see the class docstring)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if self.check_finite:
            self.check_gradients()
        sharded, plain = [], []
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                layout = shard_layout(p) if group["use_muon"] else None
                if layout is not None and p.grad.placements == p.placements:
                    sharded.append((group, p, layout))
                else:
                    plain.append((group, p))
        self.update_parameters(plain)
        if sharded:
            self._sharded_muon_steps(sharded)
        if self.qk_clip is not None:
            self.qk_clip.apply()
        return loss


def _check_group(group: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Every hyperparameter of a param group checked and normalized (one rule for the constructor,
    ``add_param_group`` and ``load_state_dict``); ``ValueError`` naming the group, the setting and its value.

    ``lr``, ``weight_decay``: finite reals >= 0; ``momentum``, each of ``betas`` (AdamW's b1, b2): in [0, 1);
    ``eps``: finite > 0 (AdamW's denominator ``sqrt(v) + eps`` with ``v = 0`` where a gradient entry has always
    been zero); ``nesterov``, ``use_muon``: True or False; ``schedule``: a registry name, file, Schedule or
    schedule dict (returned as its dict); ``adjust_lr``, ``dtype``, ``method``: one of their names.  Numbers are
    real numbers, not bools: ``lr=True`` is refused.  Keys other than these pass through unchecked.
    """
    out = dict(group)
    try:
        for key in ("lr", "weight_decay"):
            out[key] = check_real(group[key], key, low=0.0)
        out["momentum"] = check_real(group["momentum"], "momentum", low=0.0, high=1.0, high_open=True)
        for key in ("nesterov", "use_muon"):
            out[key] = check_bool(group[key], key)
        betas = group["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"betas must be a pair (b1, b2), got {short_repr(betas)}")
        out["betas"] = tuple(
            check_real(b, f"betas[{i}]", low=0.0, high=1.0, high_open=True) for i, b in enumerate(betas)
        )
        out["eps"] = check_real(group["eps"], "eps", low=0.0, low_open=True)
        schedule = group["schedule"]
        if isinstance(schedule, Mapping):
            Schedule.from_dict(schedule)
            out["schedule"] = dict(schedule)
        else:
            out["schedule"] = _schedule_dict(schedule)
        out["adjust_lr"] = _canonical_adjust(group["adjust_lr"])
        out["dtype"] = dtype_name(group["dtype"])
        out["method"] = _check_method(group["method"])
    except (ValueError, TypeError) as e:  # TypeError: a malformed schedule dict's insides
        raise ValueError(f"{where}: {e}") from None
    return out


def _check_state(entry: Any, use_muon: bool, p: torch.Tensor, where: str) -> None:
    """A saved per-parameter state holds what the step reads: Muon's momentum buffer, or AdamW's step count and
    moments (all three), finite and shaped like the parameter, on a device with data (not ``meta``); the step count
    a whole number, the second moment non-negative (its square root is the step's denominator)."""
    if not isinstance(entry, Mapping):
        raise ValueError(f"{where} must be a dict, got {type(entry).__name__}")
    keys = {"momentum_buffer"} if use_muon else {"step", "exp_avg", "exp_avg_sq"}
    kind = "Muon" if use_muon else "AdamW"
    if set(entry) - keys or (entry and not use_muon and set(entry) != keys):
        raise ValueError(f"{where} has keys {sorted(entry)}; a {kind} parameter's state has {sorted(keys)}")
    for key, value in entry.items():
        if key == "step":
            step = value.item() if isinstance(value, torch.Tensor) and value.numel() == 1 else value
            if check_real(step, f"{where}['step']", low=0.0) != int(step):
                raise ValueError(f"{where}['step'] must be a whole number of steps, got {short_repr(step)}")
            continue
        if not isinstance(value, torch.Tensor) or value.shape != p.shape:
            got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ValueError(f"{where}[{key!r}] must be a tensor of shape {tuple(p.shape)}, got {got}")
        if value.is_meta:
            raise ValueError(f"{where}[{key!r}] is a meta tensor (no data)")
        if value.is_floating_point() and not bool(torch.isfinite(_local(value)).all()):
            raise ValueError(f"{where}[{key!r}] has non-finite entries")
        if not value.is_floating_point():
            raise ValueError(f"{where}[{key!r}] must be a floating tensor, got {value.dtype}")
        if key == "exp_avg_sq" and bool((_local(value) < 0).any()):
            raise ValueError(f"{where}['exp_avg_sq'] has negative entries (a second moment is >= 0)")


def muon_param_groups(
    model: nn.Module,
    *,
    adam_modules: Sequence[type[nn.Module]] = (nn.Embedding,),
    adam_names: Sequence[str] = (),
    adam_lr: float | None = None,
    adam_weight_decay: float | None = None,
) -> list[dict[str, Any]]:
    """Split a model's trainable parameters into a Muon group and an AdamW group.

    AdamW gets every parameter with ndim < 2 (biases, norm gains), every parameter of a module of a type in
    ``adam_modules`` (embeddings: their rows are looked up one by one, not multiplied as a matrix) and every
    parameter whose qualified name starts with one of ``adam_names`` (e.g. ``("head",)`` for the output layer,
    which Jordan also keeps on AdamW).  Everything else (matrices, conv kernels) goes to Muon.

    Returns ``[{"params": [...], "use_muon": True, "names": [...]}, {"params": [...], "use_muon": False, ...}]``
    (empty groups dropped; ``adam_lr``/``adam_weight_decay`` set on the AdamW group when given).
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"muon_param_groups needs an nn.Module, got {type(model).__name__}")
    adam_ids = set()
    for module in model.modules():
        if isinstance(module, tuple(adam_modules)):
            adam_ids.update(id(p) for p in module.parameters(recurse=False))
    muon_p, muon_n, adam_p, adam_n = [], [], [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        to_adam = p.ndim < 2 or id(p) in adam_ids or any(name.startswith(prefix) for prefix in adam_names)
        (adam_p if to_adam else muon_p).append(p)
        (adam_n if to_adam else muon_n).append(name)
    groups: list[dict[str, Any]] = []
    if muon_p:
        groups.append({"params": muon_p, "use_muon": True, "names": muon_n})
    if adam_p:
        adam: dict[str, Any] = {"params": adam_p, "use_muon": False, "names": adam_n}
        if adam_lr is not None:
            adam["lr"] = adam_lr
        if adam_weight_decay is not None:
            adam["weight_decay"] = adam_weight_decay
        groups.append(adam)
    return groups


class MuonWithAuxAdam(Muon):
    """Muon on a model's matrices and AdamW on the rest, in one optimizer (one ``step``, one ``state_dict``).

    Args:
        model_or_groups: an ``nn.Module`` (split by :func:`muon_param_groups` with ``adam_names``), explicit
            groups carrying ``use_muon`` (default True), or a list of matrices (all Muon).
        lr, momentum, nesterov, schedule, weight_decay, adjust_lr, dtype, method, qk_clip: Muon's settings (see
            :class:`Muon`).
        adam_lr, adam_betas, adam_eps, adam_weight_decay: the AdamW group's settings.
        adam_names: qualified-name prefixes sent to AdamW (e.g. the output head).
        batch, batch_bytes, split_sizes, param_split_fn, check_finite: batching and blocks of the Muon matrices,
            gradient checks (see :class:`Muon`).
    """

    def __init__(
        self,
        model_or_groups: nn.Module | Iterable[dict[str, Any]],
        lr: float = 0.02,
        momentum: float = 0.95,
        nesterov: bool = True,
        schedule: str | Schedule = "muon",
        weight_decay: float = 0.0,
        adjust_lr: str | None = "jordan",
        *,
        dtype: torch.dtype | str = torch.bfloat16,
        method: str = "auto",
        adam_lr: float = 3e-4,
        adam_betas: tuple[float, float] = (0.9, 0.95),
        adam_eps: float = 1e-8,
        adam_weight_decay: float = 0.0,
        adam_names: Sequence[str] = (),
        qk_clip: QKClip | None = None,
        batch: bool = True,
        batch_bytes: int = DEFAULT_BATCH_BYTES,
        split_sizes: dict[torch.Tensor, Sequence[int]] | None = None,
        param_split_fn: Callable[[torch.Tensor], Sequence[int] | None] | None = None,
        check_finite: bool = True,
    ) -> None:
        if isinstance(model_or_groups, nn.Module):
            groups = muon_param_groups(model_or_groups, adam_names=adam_names)
        else:
            items = list(model_or_groups)
            if items and isinstance(items[0], torch.Tensor):
                items = [{"params": items}]
            groups = [dict(g) for g in items]
        names: dict[torch.Tensor, str] = {}
        for g in groups:
            g.setdefault("use_muon", True)
            g["params"] = list(g["params"])
            for p, n in zip(g["params"], g.pop("names", []), strict=False):
                names[p] = n
            if not g["use_muon"]:
                g.setdefault("lr", adam_lr)
                g.setdefault("weight_decay", adam_weight_decay)  # betas, eps: Muon's defaults
        super().__init__(
            groups,
            lr,
            momentum,
            nesterov,
            schedule,
            weight_decay,
            adjust_lr,
            dtype=dtype,
            method=method,
            adam_betas=adam_betas,
            adam_eps=adam_eps,
            qk_clip=qk_clip,
            names=names,
            batch=batch,
            batch_bytes=batch_bytes,
            split_sizes=split_sizes,
            param_split_fn=param_split_fn,
            check_finite=check_finite,
        )
