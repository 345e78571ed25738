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
:class:`MuonWithAuxAdam` steps both kinds in one optimizer: groups with ``use_muon=False`` take AdamW (Loshchilov &
Hutter, "Decoupled Weight Decay Regularization", ICLR 2019, arXiv:1711.05101), as torch's functional AdamW
``torch.optim.adamw.adamw``: the arithmetic, kernels and state of ``torch.optim.AdamW``.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.optim.adamw import adamw

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


_Items = Sequence[tuple[dict[str, Any], torch.Tensor]]  # (param group, parameter) pairs


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


def _owner_layout(p: torch.Tensor) -> ShardLayout | None:
    """The :func:`shard_layout` of an FSDP2 shard whose gradient is sharded alike (stepped on owners), else None."""
    layout = shard_layout(p)
    return layout if layout is not None and p.grad.placements == p.placements else None


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
    and the owner's result is scattered back (:func:`nsiter.optim.fsdp.apply_on_owners`); AdamW parameters go to
    torch's functional AdamW as the DTensors they are, as with ``torch.optim.AdamW``.  ``step()`` is then a
    collective: call it on every rank.  See docs/distributed.md.

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

    def _momentum_inputs(self, items: _Items, layouts: Sequence[ShardLayout | None]) -> list[torch.Tensor]:
        """Stage (a) of the Muon step: ``B <- lerp(B, G, 1 - mu)``; returns each item's Newton–Schulz input
        ``U = lerp(G, B, mu)`` (Nesterov) or ``B``.  On the gradient and momentum themselves, or their local pieces
        where the item has a shard layout; one ``torch._foreach_*`` call per group (and kind: one call takes
        DTensors or plain tensors), the same bits as one call per parameter."""
        pieces: list[tuple[torch.Tensor, torch.Tensor]] = []  # (gradient, momentum) the work runs on
        calls: dict[tuple[int, bool], list[int]] = {}
        for k, ((group, p), layout) in enumerate(zip(items, layouts, strict=True)):
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(p.grad, memory_format=torch.preserve_format)
            grad, buf = p.grad, state["momentum_buffer"]
            pieces.append((_local(grad), _local(buf)) if layout is not None else (grad, buf))
            calls.setdefault((id(group), is_dtensor(pieces[k][0])), []).append(k)
        inputs: dict[int, torch.Tensor] = {}
        for ks in calls.values():
            group = items[ks[0]][0]
            mu, grads, bufs = group["momentum"], [pieces[k][0] for k in ks], [pieces[k][1] for k in ks]
            torch._foreach_lerp_(bufs, grads, 1.0 - mu)  # B_t = mu B_{t-1} + (1 - mu) G_t
            us = torch._foreach_lerp(grads, bufs, mu) if group["nesterov"] else bufs
            inputs.update(zip(ks, us, strict=True))
        return [inputs[k] for k in range(len(items))]

    def _layout_directions(
        self, items: _Items, inputs: Sequence[torch.Tensor], layouts: Sequence[ShardLayout | None]
    ) -> list[torch.Tensor]:
        """Stage (b) of the Muon step, the only one that depends on the layout: the directions ``D``
        (:meth:`directions`) of the inputs ``U``.  Plain tensors are orthogonalized as they are; items with a shard
        layout (``U`` a local piece) on their owner ranks (:func:`nsiter.optim.fsdp.apply_on_owners`, batched
        there), each rank getting back its piece of ``D``; any other DTensor is gathered whole on every rank
        (``full_tensor()``, as DTensor's own operators would) and its ``D`` cut back to this rank's piece."""
        ds: dict[int, torch.Tensor] = {}
        whole = [k for k, layout in enumerate(layouts) if layout is None]
        fulls = [inputs[k].full_tensor() if is_dtensor(inputs[k]) else inputs[k] for k in whole]
        entries = [(*items[k], as_matrix(U)) for k, U in zip(whole, fulls, strict=True)]
        for k, D in zip(whole, self.directions(entries), strict=True):
            p = items[k][1]
            ds[k] = _local(redistribute_like(D.reshape(p.shape), p)) if is_dtensor(p) else D
        sharded = [k for k, layout in enumerate(layouts) if layout is not None]
        if sharded:

            def on_owner(indices: list[int], fulls: list[torch.Tensor]) -> list[torch.Tensor]:
                owned = [(*items[sharded[i]], as_matrix(f)) for i, f in zip(indices, fulls, strict=True)]
                return [D.reshape(f.shape) for D, f in zip(self.directions(owned), fulls, strict=True)]

            shards = [inputs[k] for k in sharded]
            shard_layouts = [layout for layout in layouts if layout is not None]
            pieces, _ = apply_on_owners(shards, shard_layouts, on_owner, batched=True)
            ds.update(zip(sharded, pieces, strict=True))
        return [ds[k] for k in range(len(items))]

    def _descend(self, items: _Items, ds: Sequence[torch.Tensor]) -> None:
        """Stage (c) of the Muon step: ``W <- (1 - lr wd) W - lr s D`` on each parameter, or on its local piece for
        a DTensor (``D`` is then this rank's piece), one ``torch._foreach_*`` pair per ``(1 - lr wd, -lr s)``."""
        updates: dict[tuple[float, float], tuple[list[torch.Tensor], list[torch.Tensor]]] = {}
        for (group, p), D in zip(items, ds, strict=True):
            lr, W = group["lr"], _local(p)
            key = (1.0 - lr * group["weight_decay"], -lr * self.step_scale(group, p))
            ws, dirs = updates.setdefault(key, ([], []))
            ws.append(W)
            dirs.append(D.reshape(W.shape).to(W.dtype))
        for (decay, alpha), (ws, dirs) in updates.items():
            torch._foreach_mul_(ws, decay)
            torch._foreach_add_(ws, dirs, alpha=alpha)

    def _adamw_steps(self, items: _Items) -> None:
        """AdamW (Loshchilov & Hutter 2019) on ``(group, param)`` items: torch's functional AdamW
        (``torch.optim.adamw.adamw``: ``torch.optim.AdamW``'s arithmetic and default kernel choice), one call per
        group, with ``torch.optim.AdamW``'s state (``step``, ``exp_avg``, ``exp_avg_sq``).  DTensors (FSDP2) go in
        as they are, as ``torch.optim.AdamW`` takes them; a group holding both DTensors and plain tensors makes
        one call for each kind (a foreach kernel takes one kind)."""
        calls: dict[tuple[int, bool], tuple[dict[str, Any], list[torch.Tensor]]] = {}
        for group, p in items:
            state = self.state[p]
            if "step" not in state:
                state["step"] = 0
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            if not isinstance(state["step"], torch.Tensor):  # new, or loaded as a number: as torch keeps it
                dtype = torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32
                state["step"] = torch.tensor(float(state["step"]), dtype=dtype, device="cpu")
            calls.setdefault((id(group), is_dtensor(p)), (group, []))[1].append(p)
        for group, params in calls.values():
            states = [self.state[p] for p in params]
            beta1, beta2 = group["betas"]
            adamw(
                params,
                [p.grad for p in params],
                [s["exp_avg"] for s in states],
                [s["exp_avg_sq"] for s in states],
                [],
                [s["step"] for s in states],
                foreach=None,  # torch's default kernel choice for the device, as torch.optim.AdamW's
                has_complex=any(torch.is_complex(p) for p in params),
                amsgrad=False,
                beta1=beta1,
                beta2=beta2,
                lr=group["lr"],
                weight_decay=group["weight_decay"],
                eps=group["eps"],
                maximize=False,
            )

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

    def update_parameters(self, items: _Items) -> None:
        """Apply one step to each ``(group, param)`` in place: AdamW per group, Muon with its orthogonalizations
        batched by shape (:meth:`directions`); each parameter ends as :meth:`update_parameter` alone leaves it.  A
        DTensor's matrix is gathered whole on every rank (:meth:`step` sends FSDP2 shards to owners instead)."""
        self._update(items, on_owners=False)

    def _update(self, items: _Items, on_owners: bool) -> None:
        """One step of ``(group, param)`` items: AdamW groups by :meth:`_adamw_steps`, Muon in three stages:
        (a) :meth:`_momentum_inputs`, (b) :meth:`_layout_directions`, (c) :meth:`_descend`.  With ``on_owners``,
        FSDP2 shards (:func:`_owner_layout`) are orthogonalized on owner ranks; otherwise a DTensor is gathered."""
        for _, p in items:
            if p.grad.is_sparse:
                raise ValueError(
                    f"Muon does not support sparse gradients (parameter of shape {tuple(p.shape)})"
                )
        muon = [(group, p) for group, p in items if group["use_muon"]]
        for _, p in muon:  # splits resolved (and checked) before any state changes
            self.split_of(p)
        self._adamw_steps([(group, p) for group, p in items if not group["use_muon"]])
        layouts = [_owner_layout(p) if on_owners else None for _, p in muon]
        inputs = self._momentum_inputs(muon, layouts)
        self._descend(muon, self._layout_directions(muon, inputs, layouts))

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
        items = [(group, p) for group in self.param_groups for p in group["params"] if p.grad is not None]
        self._update(items, on_owners=True)
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


def _forwarding_signature(own: Callable[..., Any], base: Callable[..., Any]) -> inspect.Signature:
    """The signature of ``own``, an ``__init__`` that passes its positional parameters and then ``*args, **kwargs``
    on to ``base``: ``*args`` stands for the positional parameters of ``base`` that follow those, ``**kwargs`` for
    the keyword-only ones of ``base`` that ``own`` does not declare itself."""
    named = inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY
    mine = [p for p in inspect.signature(own).parameters.values() if p.kind in named]
    leading = [p for p in mine if p.kind == p.POSITIONAL_OR_KEYWORD]
    declared = {p.name for p in mine}
    theirs = list(inspect.signature(base).parameters.values())[len(leading) :]
    rest = [p for p in theirs if p.name not in declared]
    positional = leading + [p for p in rest if p.kind == p.POSITIONAL_OR_KEYWORD]
    keyword = [p for p in rest + mine if p.kind == p.KEYWORD_ONLY]
    return inspect.Signature(positional + keyword, return_annotation=inspect.signature(own).return_annotation)


class MuonWithAuxAdam(Muon):
    """Muon on a model's matrices and AdamW on the rest, in one optimizer (one ``step``, one ``state_dict``).

    Args:
        model_or_groups: an ``nn.Module`` (split by :func:`muon_param_groups` with ``adam_names``), explicit
            groups carrying ``use_muon`` (default True), or a list of matrices (all Muon).
        lr: Muon's learning rate (default 0.02).
        adam_lr, adam_weight_decay: the learning rate and weight decay of AdamW groups that do not set their own
            (their ``betas`` and ``eps`` are Muon's ``adam_betas`` and ``adam_eps``).
        adam_names: qualified-name prefixes sent to AdamW (e.g. the output head).
        *args, **kwargs: every other argument of :class:`Muon`, in its order (``momentum, nesterov, schedule,
            weight_decay, adjust_lr`` may follow ``lr`` positionally), e.g. ``adam_betas``, ``adam_eps``, ``dtype``,
            ``method``, ``qk_clip``, ``batch``, ``split_sizes``, ``check_finite``; ``names`` is added to the names the
            groups carry.  ``inspect.signature(MuonWithAuxAdam)`` lists them all.
    """

    def __init__(
        self,
        model_or_groups: nn.Module | Iterable[dict[str, Any]],
        lr: float = 0.02,
        *args: Any,
        adam_lr: float = 3e-4,
        adam_weight_decay: float = 0.0,
        adam_names: Sequence[str] = (),
        **kwargs: Any,
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
        given = kwargs.get("names")
        if given is None or isinstance(given, Mapping):  # anything else: Muon refuses it by name
            kwargs["names"] = {**names, **(given or {})}
        super().__init__(groups, lr, *args, **kwargs)

    __init__.__signature__ = _forwarding_signature(__init__, Muon.__init__)  # type: ignore[attr-defined]
