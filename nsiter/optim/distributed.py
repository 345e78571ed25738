"""Muon across processes with ``torch.distributed``: each rank owns and updates a share of the parameters.

Data-parallel training leaves every rank with the same (all-reduced) gradients.  :class:`DistributedMuon` then
splits the work of a step instead of repeating it:

1. **Ownership.** Every parameter is owned by one rank, assigned once, deterministically on every rank, by the
   greedy longest-processing-time rule (largest cost first onto the least-loaded rank; Graham 1969) with cost
   ``rows * cols * min(rows, cols)`` (the flops of a Newton–Schulz step) for Muon matrices and ``numel`` for
   AdamW parameters.
2. **ZeRO-1 state.** Only the owner keeps a parameter's optimizer state (momentum, Adam moments), so optimizer
   memory is divided by the world size (Rajbhandari et al., "ZeRO: Memory Optimizations Toward Training Trillion
   Parameter Models", SC 2020, arXiv:1910.02054, stage 1).
3. **Orthogonalize the share.** Each rank runs the single-process update (:meth:`Muon.update_parameters`) on the
   parameters it owns: momentum, Newton–Schulz (the owned matrices of one shape in one batched call), weight
   decay, scaled step.
4. **All-gather.** Each rank packs its updated parameters into one flat buffer (padded to the longest share);
   one ``all_gather`` per step hands every rank every new value, which it copies into place.

Every parameter is computed by exactly the arithmetic of :class:`nsiter.optim.Muon`, so the result equals the
single-process optimizer's (bit for bit when the kernels are deterministic).  The collective is plain
``all_gather`` on tensors living on the parameters' device, so the same code runs on gloo (CPU) and NCCL (GPU).
Without an initialized process group the optimizer is the single-process one.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

from nsiter.optim.fsdp import assign_owners, matrix_cost
from nsiter.optim.muon import MuonWithAuxAdam, _forwarding_signature

__all__ = ["DistributedMuon", "assign_owners"]


def _cost(p: torch.Tensor, use_muon: bool) -> int:
    return matrix_cost(p.shape) if use_muon else p.numel()


class DistributedMuon(MuonWithAuxAdam):
    """:class:`MuonWithAuxAdam` (Muon on matrices, AdamW on the rest) with its work and state sharded over ranks.

    Takes the arguments of :class:`MuonWithAuxAdam` (a model, param groups or a list of matrices) plus
    ``process_group`` (default: the world).  Gradients must already be identical on every rank (e.g.
    all-reduced by ``DistributedDataParallel``).  ``state_dict()`` holds this rank's shard of the state
    (ZeRO-1); :meth:`consolidated_state_dict` gathers the whole state (the same dict the single-process
    optimizer would have), and :meth:`load_state_dict` accepts either and keeps this rank's shard, so a
    checkpoint moves between world sizes.  See docs/distributed.md for launching with torchrun.
    """

    def __init__(self, *args: Any, process_group: Any = None, **kwargs: Any) -> None:
        self.process_group = process_group
        super().__init__(*args, **kwargs)

    __init__.__signature__ = _forwarding_signature(__init__, MuonWithAuxAdam.__init__)  # type: ignore[attr-defined]

    def _distributed(self) -> bool:
        return dist.is_available() and dist.is_initialized()

    @property
    def world_size(self) -> int:
        """Ranks in the process group (1 without one)."""
        return dist.get_world_size(self.process_group) if self._distributed() else 1

    @property
    def rank(self) -> int:
        """This process's rank in the group (0 without one)."""
        return dist.get_rank(self.process_group) if self._distributed() else 0

    def owners(self) -> list[int]:
        """Owner rank of every parameter, in param-group order (the same list on every rank)."""
        costs = [_cost(p, g["use_muon"]) for g in self.param_groups for p in g["params"]]
        return assign_owners(costs, self.world_size)

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        """Update the owned parameters, then all-gather every rank's new values."""
        if not self._distributed():
            return super().step(closure)
        world = self.world_size
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if self.check_finite:
            self.check_gradients()  # before any state changes, on every rank alike
        rank = self.rank
        owners = self.owners()
        items = [(g, p) for g in self.param_groups for p in g["params"]]
        live = [(g, p, o) for (g, p), o in zip(items, owners, strict=True) if p.grad is not None]
        if not live:
            if self.qk_clip is not None:
                self.qk_clip.apply()
            return loss
        dtype = live[0][1].dtype
        for _, p, _ in live:
            dtype = torch.promote_types(dtype, p.dtype)
        device = live[0][1].device
        sizes = [0] * world
        for _, p, o in live:
            sizes[o] += p.numel()
        owned = [(g, p) for g, p, o in live if o == rank]
        self.update_parameters(owned)  # this rank's share, its orthogonalizations batched by shape
        local = [p.detach().reshape(-1).to(dtype) for _, p in owned]
        flat = torch.zeros(max(sizes), dtype=dtype, device=device)
        if local:
            packed = torch.cat(local)
            flat[: packed.numel()] = packed
        gathered = [torch.empty_like(flat) for _ in range(world)]
        dist.all_gather(gathered, flat, group=self.process_group)
        offsets = [0] * world
        for _, p, o in live:
            n = p.numel()
            if o != rank:
                p.copy_(gathered[o][offsets[o] : offsets[o] + n].view_as(p))
            offsets[o] += n
        if self.qk_clip is not None:  # after the all-gather, on every rank alike (maxima all-reduced)
            self.qk_clip.apply()
        return loss

    def consolidated_state_dict(self) -> dict[str, Any]:
        """The full optimizer state, gathered from every rank's shard (a collective: call it on every rank).

        Equal to the ``state_dict()`` of the single-process :class:`MuonWithAuxAdam` after the same steps; save it
        from rank 0.  Tensors come back on the CPU.
        """
        local = self.state_dict()
        if not self._distributed():
            return local
        mine = {
            i: {k: (v.cpu() if torch.is_tensor(v) else v) for k, v in st.items()}
            for i, st in local["state"].items()
        }
        shards: list[Any] = [None] * self.world_size
        dist.all_gather_object(shards, mine, group=self.process_group)
        owners = self.owners()
        merged: dict[int, Any] = {}
        for r, shard in enumerate(shards):  # each parameter's state comes from its owner's shard
            merged.update({i: st for i, st in shard.items() if owners[i] == r})
        return {"state": dict(sorted(merged.items())), "param_groups": local["param_groups"]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a per-rank or consolidated state dict; keep only the state of the parameters this rank owns."""
        super().load_state_dict(state_dict)
        if self._distributed():
            params = [p for g in self.param_groups for p in g["params"]]
            for p, owner in zip(params, self.owners(), strict=True):
                if owner != self.rank:
                    self.state.pop(p, None)
