"""Work on FSDP2 shards: each sharded matrix is assembled on one owner rank, transformed there, and re-sharded.

PyTorch's FSDP2 (``torch.distributed.fsdp.fully_shard``) keeps every parameter, its gradient and the optimizer
state as DTensors split along one dimension: rank ``r`` of a group of ``W`` holds the ``r``-th piece of
``torch.chunk(x, W, dim)`` (the first pieces are ``ceil(n / W)`` long, trailing ranks may hold fewer or none).
Muon needs whole matrices: the Newton–Schulz iteration mixes all rows and columns.  DTensor's own operators
assemble the matrix implicitly on *every* rank, so every rank orthogonalizes every matrix.  Instead:

1. **Owners.** Each matrix gets one owner rank by the longest-processing-time rule (:func:`assign_owners`:
   largest cost first onto the least-loaded rank, Graham 1969), with cost ``rows * cols * min(rows, cols)``,
   the flops of one Newton–Schulz step.  Every rank computes the same assignment.
2. **Gather to the owner.** One ``all_to_all_single`` sends every rank's pieces of the matrices owned by ``o``
   to rank ``o`` (all matrices of a step in one collective); the owner concatenates the pieces.
3. **Transform there.** The owner applies ``fn`` (Muon: the schedule's orthogonalization) to its matrices only.
4. **Scatter back.** A second ``all_to_all_single`` returns to every rank its piece of each result.

Each rank sends and receives about ``(W - 1) / W`` of the matrices' size twice per step (an all-gather of every
matrix on every rank moves ``W - 1`` times that), and does about ``1/W`` of the transform's flops.
``all_to_all_single`` with uneven split sizes exists on gloo (CPU) and NCCL (GPU) alike, so the same code runs on
both.  Compare Moonlight's Distributed Muon (Liu et al., "Muon is Scalable for LLM Training", arXiv:2502.16982,
Sec. 2.3), which gathers each matrix on every data-parallel rank of its ZeRO-1 partition and orthogonalizes it
there: the same arithmetic, ``W`` times the work.  The owner map is that of :class:`nsiter.optim.DistributedMuon`.

Supported layouts (:func:`shard_layout`): DTensors split with ``Shard(dim)`` along exactly one mesh dimension,
every other mesh dimension ``Replicate()`` (FSDP on a 1-D mesh; HSDP's (replicate, shard) meshes, where each
replica group exchanges within its shard group).  Anything else returns ``None``, and callers fall back to
DTensor's own operators.

DTensor is only looked up in ``sys.modules``: a DTensor cannot exist before ``torch.distributed.tensor`` has been
imported, and importing it here would cost every ``import nsiter.optim`` more than a second.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

__all__ = [
    "ShardLayout",
    "apply_on_owners",
    "assign_owners",
    "is_dtensor",
    "matrix_cost",
    "redistribute_like",
    "shard_layout",
]


def assign_owners(costs: Sequence[int], world_size: int) -> list[int]:
    """Longest-processing-time assignment: owner rank of each item, largest cost first onto the least-loaded rank.

    Ties break by the item's index and then by the lowest rank, so every rank computes the same assignment.
    The makespan is at most ``4/3 - 1/(3 m)`` times the optimum (Graham, "Bounds on multiprocessing timing
    anomalies", SIAM J. Appl. Math. 17, 1969).
    """
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size!r}")
    load = [0] * world_size
    owner = [0] * len(costs)
    for i in sorted(range(len(costs)), key=lambda i: (-costs[i], i)):
        r = min(range(world_size), key=lambda r: (load[r], r))
        owner[i] = r
        load[r] += costs[i]
    return owner


def matrix_cost(shape: Sequence[int]) -> int:
    """Flops of one Newton–Schulz step, up to a constant: ``rows * cols * min(rows, cols)`` of the matrix view
    ``(shape[0], prod(shape[1:]))`` that Muon orthogonalizes."""
    rows = int(shape[0])
    cols = 1
    for n in shape[1:]:
        cols *= int(n)
    return rows * cols * min(rows, cols)


def is_dtensor(t: Any) -> bool:
    """Whether ``t`` is a ``torch.distributed.tensor.DTensor`` (without importing that module)."""
    module = sys.modules.get("torch.distributed.tensor")
    return module is not None and isinstance(t, module.DTensor)


def redistribute_like(full: torch.Tensor, like: Any) -> Any:
    """A DTensor with the mesh and placements of ``like`` whose global value is ``full`` (present on every rank).

    Each rank keeps its own piece of its own copy (``src_data_rank=None``): no communication.
    """
    module = sys.modules["torch.distributed.tensor"]
    return module.distribute_tensor(full, like.device_mesh, like.placements, src_data_rank=None)


@dataclass(frozen=True)
class ShardLayout:
    """How a DTensor is split over the ranks of one process group: ``torch.chunk(x, len(sizes), dim)``.

    Attributes:
        shape: the global shape.
        dim: the tensor dimension that is split.
        sizes: the length along ``dim`` held by each rank of ``group`` (``sum(sizes) == shape[dim]``).
        rank: this process's rank in ``group``.
        group: the process group of the sharded mesh dimension.
    """

    shape: tuple[int, ...]
    dim: int
    sizes: tuple[int, ...]
    rank: int
    group: Any

    @property
    def world_size(self) -> int:
        return len(self.sizes)

    def local_shape(self, rank: int) -> tuple[int, ...]:
        """Shape of the piece held by ``rank``."""
        shape = list(self.shape)
        shape[self.dim] = self.sizes[rank]
        return tuple(shape)

    def local_numel(self, rank: int) -> int:
        n = 1
        for s in self.local_shape(rank):
            n *= s
        return n

    def offset(self, rank: int) -> int:
        """Start of ``rank``'s piece along ``dim``."""
        return sum(self.sizes[:rank])


def shard_layout(t: Any) -> ShardLayout | None:
    """The :class:`ShardLayout` of a DTensor split along one mesh dimension (all others replicated), else None.

    Plain tensors, ``Partial`` placements, strided shards (FSDP combined with tensor parallelism) and tensors
    split along several mesh dimensions give ``None``.
    """
    if not is_dtensor(t):
        return None
    placements = tuple(t.placements)
    module = sys.modules["torch.distributed.tensor"]
    sharded = [i for i, pl in enumerate(placements) if type(pl) is module.Shard]
    replicated = [i for i, pl in enumerate(placements) if type(pl) is module.Replicate]
    if len(sharded) != 1 or len(sharded) + len(replicated) != len(placements):
        return None
    mesh_dim = sharded[0]
    mesh = t.device_mesh
    dim = placements[mesh_dim].dim % t.ndim
    world = mesh.size(mesh_dim)
    rank = mesh.get_local_rank(mesh_dim)
    n = t.shape[dim]
    sizes = tuple(int(module.Shard.local_shard_size_and_offset(n, world, r)[0]) for r in range(world))
    layout = ShardLayout(tuple(t.shape), dim, sizes, rank, mesh.get_group(mesh_dim))
    local = tuple(t.to_local().shape)
    if local != layout.local_shape(rank):  # not torch.chunk's split: refuse rather than mis-assemble
        return None
    return layout


def apply_on_owners(
    shards: Sequence[torch.Tensor],
    layouts: Sequence[ShardLayout],
    fn: Callable[..., Any],
    costs: Sequence[int] | None = None,
    *,
    batched: bool = False,
) -> tuple[list[torch.Tensor], list[int]]:
    """Assemble each sharded tensor on its owner rank, apply ``fn`` there, and return this rank's piece of each result.

    A collective: every rank of the groups calls it with the same items in the same order.

    Args:
        shards: this rank's local piece of each tensor (shape ``layouts[i].local_shape(rank)``).
        layouts: their layouts; items are exchanged within their layout's process group (one pair of
            ``all_to_all_single`` per group, in order of first appearance).
        fn: ``fn(i, full)`` maps the assembled tensor ``i`` (global shape) to a tensor of the same shape; it runs
            only on the owner of item ``i``.  With ``batched=True``, ``fn(indices, fulls)`` maps all the items an
            owner holds (of one process group) in one call, returning a list of results in the same order (so
            the owner can stack them: Muon batches its orthogonalizations).
        costs: the work of each item for :func:`assign_owners` (default: :func:`matrix_cost` of its shape).

    Returns:
        ``(results, owners)``: this rank's piece of ``fn(i, full_i)`` for every item (each of its shard's shape),
        and the owner of every item within its group.  Tensors travel in the promoted dtype of the shards.
    """
    if len(shards) != len(layouts):
        raise ValueError(f"got {len(shards)} shards for {len(layouts)} layouts")
    for i, (s, lay) in enumerate(zip(shards, layouts, strict=True)):
        if tuple(s.shape) != lay.local_shape(lay.rank):
            raise ValueError(
                f"shard {i} has shape {tuple(s.shape)}, its layout says {lay.local_shape(lay.rank)}"
            )
    costs = [matrix_cost(lay.shape) for lay in layouts] if costs is None else list(costs)
    results: list[torch.Tensor | None] = [None] * len(shards)
    owners = [0] * len(shards)
    groups: dict[int, list[int]] = {}
    for i, lay in enumerate(layouts):
        groups.setdefault(id(lay.group), []).append(i)
    for items in groups.values():
        group_owners = assign_owners([costs[i] for i in items], layouts[items[0]].world_size)
        for i, o in zip(items, group_owners, strict=True):
            owners[i] = o
        apply = fn if batched else (lambda idx, fulls: [fn(i, f) for i, f in zip(idx, fulls, strict=True)])
        for i, out in _exchange(shards, layouts, items, group_owners, apply).items():
            results[i] = out
    return results, owners  # type: ignore[return-value]


def _exchange(
    shards: Sequence[torch.Tensor],
    layouts: Sequence[ShardLayout],
    items: list[int],
    owners: list[int],
    fn: Callable[[list[int], list[torch.Tensor]], list[torch.Tensor]],
) -> dict[int, torch.Tensor]:
    """One group: all_to_all the pieces to their owners, apply fn (batched) there, all_to_all the results back."""
    first = layouts[items[0]]
    world, rank, group = first.world_size, first.rank, first.group
    dtype = shards[items[0]].dtype
    for i in items:
        dtype = torch.promote_types(dtype, shards[i].dtype)
    device = shards[items[0]].device
    if world == 1:
        outs = fn(items, [shards[i].reshape(layouts[i].shape) for i in items])
        return {i: out.to(shards[i].dtype) for i, out in zip(items, outs, strict=True)}
    by_owner = [[i for i, o in zip(items, owners, strict=True) if o == r] for r in range(world)]
    mine = by_owner[rank]

    # 1. every rank's pieces of the matrices owned by r go to r
    send_sizes = [sum(layouts[i].local_numel(rank) for i in by_owner[r]) for r in range(world)]
    recv_sizes = [sum(layouts[i].local_numel(src) for i in mine) for src in range(world)]
    send = _pack([shards[i].reshape(-1) for r in range(world) for i in by_owner[r]], dtype, device)
    recv = torch.empty(sum(recv_sizes), dtype=dtype, device=device)
    dist.all_to_all_single(recv, send, recv_sizes, send_sizes, group=group)

    # 2. the owner assembles, transforms, and cuts the result back into pieces
    starts = _starts(recv_sizes)
    back: list[list[torch.Tensor]] = [[] for _ in range(world)]
    fulls = []
    for i in mine:
        lay = layouts[i]
        pieces = []
        for src in range(world):
            n = lay.local_numel(src)
            pieces.append(recv[starts[src] : starts[src] + n].view(lay.local_shape(src)))
            starts[src] += n
        fulls.append(torch.cat(pieces, dim=lay.dim))
    for i, out in zip(mine, fn(mine, fulls) if mine else [], strict=True):
        lay = layouts[i]
        if tuple(out.shape) != lay.shape:
            raise ValueError(f"fn must keep the shape {lay.shape} of item {i}, returned {tuple(out.shape)}")
        for dst in range(world):
            back[dst].append(out.narrow(lay.dim, lay.offset(dst), lay.sizes[dst]).reshape(-1))

    # 3. every rank receives its piece of each result from the owner
    send2 = _pack([t for dst in range(world) for t in back[dst]], dtype, device)
    recv2 = torch.empty(sum(send_sizes), dtype=dtype, device=device)
    dist.all_to_all_single(recv2, send2, send_sizes, recv_sizes, group=group)
    out_pieces: dict[int, torch.Tensor] = {}
    pos = 0
    for r in range(world):
        for i in by_owner[r]:
            n = layouts[i].local_numel(rank)
            out_pieces[i] = recv2[pos : pos + n].view(shards[i].shape).to(shards[i].dtype)
            pos += n
    return out_pieces


def _pack(parts: list[torch.Tensor], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    if not parts:
        return torch.empty(0, dtype=dtype, device=device)
    return torch.cat([p.to(dtype) for p in parts])


def _starts(sizes: list[int]) -> list[int]:
    out, acc = [], 0
    for s in sizes:
        out.append(acc)
        acc += s
    return out
