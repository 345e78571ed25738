"""Many matrices, few calls: Muon's orthogonalizations stacked by shape, chunked by memory, split into blocks.

A network holds many matrices of a few shapes (every layer's attention and MLP projections), and on small
matrices a Newton–Schulz call is dominated by per-call overhead.  :func:`orthogonalize_batched` therefore stacks
every matrix of one shape into a ``(b, m, n)`` batch and makes one call per batch.  A matrix and its transpose
share a batch: the iteration is transpose-equivariant, ``phi(G^T) = phi(G)^T`` (the polynomial is odd, so it acts
on singular values only; Higham, *Functions of Matrices*, SIAM 2008, ch. 8), and the evaluator iterates on the wide
side anyway (:func:`nsiter.evaluate.orthogonalize`), so a tall ``1024 x 256`` and a wide ``256 x 1024`` matrix are
both stacked as ``256 x 1024``.  A batch is cut into chunks whose stacked input stays under ``batch_bytes``
(counted in float32, the precision the normalization works in: ``4 m n`` bytes a matrix); the iteration's work
buffers add about ``2 m n + 3 m^2`` elements per matrix in the working precision, so peak memory stays
proportional to the bound.  Default :data:`DEFAULT_BATCH_BYTES` (256 MiB: 64 matrices of ``1024 x 1024``).

Each matrix of a batch goes through exactly the arithmetic it would alone, as long as the batched GEMM
(``baddbmm``) computes each product as the single one (``addmm``) does: on the CPUs this was checked on (AMD Zen 5,
torch 2.13) the two give identical bits, so the batched result equals the per-matrix one exactly;
``tests/test_optim_batching.py`` checks which case holds on the machine it runs on and asserts equality, or a
tolerance derived from the unit roundoff, accordingly.

**Blocks.**  A fused projection (QKV stacked as ``(3 d, d)``) or per-head weights are several matrices in one
tensor; orthogonalizing the whole couples them.  Split sizes (``(d, d, d)`` for QKV, ``(h,) * heads`` per head)
cut the matrix view's rows into blocks, each orthogonalized (and batched) as its own matrix and scaled by its own
shape's update factor.  The idea and the per-block scaling follow gram-newton-schulz's ``Muon`` (its
``param_split_fn`` / ``param_recombine_fn`` group options, github.com/Dao-AILab/gram-newton-schulz); Microsoft's
dion optimizer has ``split_sizes`` for the same thing.  Here a split is given as sizes (no recombination function is
needed: the blocks are rows, put back where they came from).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

__all__ = [
    "DEFAULT_BATCH_BYTES",
    "batch_chunk",
    "check_batch_options",
    "check_split_sizes",
    "orthogonalize_batched",
    "split_rows",
    "wide_shape",
]

DEFAULT_BATCH_BYTES = 256 * 2**20


def wide_shape(shape: Sequence[int]) -> tuple[int, int]:
    """``(min, max)`` of a matrix shape: the shape a matrix and its transpose are both batched as."""
    rows, cols = int(shape[-2]), int(shape[-1])
    return (rows, cols) if rows <= cols else (cols, rows)


def batch_chunk(m: int, n: int, batch_bytes: int) -> int:
    """How many ``m x n`` matrices one call stacks: ``max(1, batch_bytes // (4 m n))`` (float32 bytes)."""
    return max(1, batch_bytes // (4 * m * n))


def check_batch_options(group: dict[str, Any]) -> None:
    """``ValueError`` naming the value unless ``group["batch"]`` is a bool and ``group["batch_bytes"]`` an int >= 1."""
    if not isinstance(group.get("batch"), bool):
        raise ValueError(f"batch must be True or False, got {group.get('batch')!r}")
    size = group.get("batch_bytes")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"batch_bytes must be a positive integer (bytes), got {size!r}")


def check_split_sizes(sizes: Any, rows: int, name: str = "") -> tuple[int, ...]:
    """The row-block sizes as a tuple; ``ValueError`` unless they are positive integers summing to ``rows``."""
    what = f" of parameter {name!r}" if name else ""
    try:
        out = tuple(sizes)
    except TypeError:
        raise ValueError(
            f"split sizes{what} must be a sequence of positive integers, got {sizes!r}"
        ) from None
    if not out or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in out):
        raise ValueError(f"split sizes{what} must be positive integers, got {sizes!r}")
    if sum(out) != rows:
        raise ValueError(f"split sizes{what} {out} sum to {sum(out)}, but the matrix has {rows} rows")
    return out


def split_rows(M: torch.Tensor, sizes: Sequence[int] | None) -> list[torch.Tensor]:
    """The row blocks of the matrix ``M`` (views), or ``[M]`` without a split."""
    if sizes is None:
        return [M]
    return list(torch.split(M, list(sizes), dim=0))


def orthogonalize_batched(
    mats: Sequence[torch.Tensor],
    fn: Callable[[torch.Tensor], torch.Tensor],
    *,
    batch: bool = True,
    batch_bytes: int = DEFAULT_BATCH_BYTES,
) -> list[torch.Tensor]:
    """``[fn(M) for M in mats]``, with matrices of one shape (up to transpose), dtype and device in one call.

    Args:
        mats: matrices (2-D tensors), tall or wide.
        fn: a transpose-equivariant map applied matrix by matrix to a ``(b, m, n)`` stack (``m <= n``), e.g.
            :func:`nsiter.evaluate.orthogonalize` with fixed options; called with a 2-D matrix when unbatched.
        batch: ``False`` calls ``fn`` on each matrix as given (the per-parameter loop).
        batch_bytes: bound on one call's stacked input, counted in float32 (:func:`batch_chunk`).

    Returns:
        ``fn``'s result for each matrix, in order, each shaped like its matrix.
    """
    if not batch:
        return [fn(M) for M in mats]
    out: list[torch.Tensor | None] = [None] * len(mats)
    groups: dict[tuple, list[int]] = {}
    for i, M in enumerate(mats):
        groups.setdefault((wide_shape(M.shape), M.dtype, M.device), []).append(i)
    for ((m, n), _, _), items in groups.items():
        size = batch_chunk(m, n, batch_bytes)
        for start in range(0, len(items), size):
            chunk = items[start : start + size]
            if len(chunk) == 1:  # alone in its chunk: no stack to copy into
                out[chunk[0]] = fn(mats[chunk[0]])
                continue
            stack = torch.stack(
                [mats[i] if mats[i].shape[0] <= mats[i].shape[1] else mats[i].mT for i in chunk]
            )
            result = fn(stack)
            for j, i in enumerate(chunk):
                out[i] = result[j] if mats[i].shape[0] <= mats[i].shape[1] else result[j].mT
    return out  # type: ignore[return-value]
