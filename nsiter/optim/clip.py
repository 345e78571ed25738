"""QK-Clip (Kimi K2's MuonClip): after each optimizer step, shrink the query and key projections of every attention
head whose largest attention logit passed a threshold.

Kimi Team, "Kimi K2: Open Agentic Intelligence" (2025), arXiv:2507.20534, Sec. 2.1 and Algorithm 1 (MuonClip).
For head ``h`` of an attention layer, with queries ``Q^h_i = W_q^h x_i`` and keys ``K^h_j = W_k^h x_j`` of
head dimension ``d``, the largest logit over the batch ``B`` of the current step is

    S^h_max = (1 / sqrt(d)) max_{X in B} max_{i,j} Q^h_i . K^h_j                      (already computed in forward)

and after the optimizer has updated the weights, every head with ``S^h_max > tau`` is rescaled by
``gamma_h = tau / S^h_max`` (``gamma_h = min(1, tau / S^h_max)``):

    W_q^h <- sqrt(gamma_h) W_q^h,    W_k^h <- sqrt(gamma_h) W_k^h                           (multi-head attention)

so that the logits, bilinear in ``(W_q^h, W_k^h)``, scale by exactly ``gamma_h`` and the head's largest logit on
that batch becomes ``tau``.  Heads at or below ``tau`` are not touched, and the forward and backward passes are
unchanged: the recorded logit only steers how much the weights are shrunk.  For multi-head latent attention the
paper splits the factor differently (``sqrt(gamma_h)`` on the head-specific non-rotary parts ``q^C, k^C``,
``gamma_h`` on the head-specific rotary query ``q^R``, nothing on the rotary key ``k^R`` that all heads share);
this module implements the multi-head attention case, where every head owns its query and key rows.  Kimi K2
used ``tau = 100``.  A bias of the query or key projection is scaled with its weight (the logit is bilinear in
``[W | b]``).

Pieces:

- :func:`max_logits`: ``S^h_max`` of one attention call from its ``q, k`` (``(batch, heads, tokens, d)``).
- :class:`MaxLogitRecorder`: a forward hook on an attention module called like
  ``F.scaled_dot_product_attention(q, k, v, ...)``; keeps the running per-head maximum over the training forward
  passes since the last clip.
- :class:`AttentionHeads` (one layer: its projections, head count and recorder) and :class:`QKClip` (the
  threshold and the layers): ``QKClip.apply()`` rescales, and :class:`nsiter.optim.Muon` calls it at the end of
  every ``step()`` when given ``qk_clip=``.  Under data parallelism the maxima are all-reduced (max) first, so
  every rank clips by the same factors; FSDP2-sharded projections are rescaled on their local rows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from nsiter.optim.fsdp import is_dtensor, shard_layout

__all__ = ["AttentionHeads", "MaxLogitRecorder", "QKClip", "max_logits", "qk_clip_factors"]


@torch.no_grad()
def max_logits(
    q: torch.Tensor,
    k: torch.Tensor,
    *,
    scale: float | None = None,
    attn_mask: torch.Tensor | None = None,
    is_causal: bool = False,
) -> torch.Tensor:
    """Per-head largest attention logit ``S^h_max = scale * max_{b,i,j} q_{b,h,i} . k_{b,h,j}``, shape ``(heads,)``.

    Args:
        q, k: ``(batch, heads, tokens_q, d)`` and ``(batch, heads, tokens_k, d)`` (the layout of
            ``F.scaled_dot_product_attention``).
        scale: the logit scale (default ``1/sqrt(d)``, SDPA's).
        attn_mask: SDPA's mask: boolean (True = the pair takes part) or additive float (pairs at ``-inf`` are
            excluded; other additive terms are not part of ``Q K^T`` and are ignored).
        is_causal: exclude keys after the query (SDPA's ``is_causal``).

    Computed in float32 or wider, under ``no_grad``.
    """
    if q.ndim != 4 or k.ndim != 4 or q.shape[:2] != k.shape[:2] or q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"expected q, k of shape (batch, heads, tokens, d), got {tuple(q.shape)}, {tuple(k.shape)}"
        )
    d = q.shape[-1]
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    dtype = torch.promote_types(q.dtype, torch.float32)
    logits = torch.matmul(q.to(dtype), k.to(dtype).transpose(-2, -1)) * scale
    keep = None
    if attn_mask is not None:
        keep = attn_mask if attn_mask.dtype == torch.bool else attn_mask != float("-inf")
    if is_causal:
        tq, tk = logits.shape[-2:]
        causal = torch.ones(tq, tk, dtype=torch.bool, device=logits.device).tril()
        keep = causal if keep is None else keep & causal
    if keep is not None:
        logits = logits.masked_fill(~keep, float("-inf"))
    return logits.amax(dim=(0, 2, 3))


class MaxLogitRecorder:
    """Forward hook that records the per-head largest logit of an attention module, for QK-Clip.

    The module must be called like ``F.scaled_dot_product_attention``: ``module(q, k, v, attn_mask=None,
    dropout_p=0.0, is_causal=False, scale=None)`` with ``q, k`` of shape ``(batch, heads, tokens, d)`` (positional or
    as ``query=``, ``key=``).  Only forward passes in training mode are recorded (evaluation does not steer the
    clip).  ``value`` is the running maximum over the recorded passes since the last :meth:`reset` (the max over
    the batch ``B`` of a step, gradient accumulation included), or ``None`` if there was none.
    """

    def __init__(self, module: nn.Module) -> None:
        if not isinstance(module, nn.Module):
            raise ValueError(f"MaxLogitRecorder needs an nn.Module, got {type(module).__name__}")
        self.module = module
        self.value: torch.Tensor | None = None
        self._handle = module.register_forward_hook(self._hook, with_kwargs=True)

    def _hook(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        if not module.training:
            return
        names = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale")
        bound = dict(zip(names, args, strict=False))
        bound.update(kwargs)
        s = max_logits(
            bound["query"],
            bound["key"],
            scale=bound.get("scale"),
            attn_mask=bound.get("attn_mask"),
            is_causal=bool(bound.get("is_causal", False)),
        )
        self.value = s if self.value is None else torch.maximum(self.value, s)

    def reset(self) -> None:
        """Forget the recorded maxima (QK-Clip does this after every clip)."""
        self.value = None

    def remove(self) -> None:
        """Detach the hook from the module."""
        self._handle.remove()


@dataclass
class AttentionHeads:
    """One attention layer for QK-Clip: its query and key projections, its head count and its logit recorder.

    ``query`` and ``key`` are the ``(heads * d, d_model)`` weights of the projections (``nn.Linear.weight``): rows
    ``h*d .. (h+1)*d - 1`` produce head ``h`` (the layout of ``q.view(batch, tokens, heads, d)``).  Optional
    ``query_bias``/``key_bias`` are scaled with their weights.
    """

    query: torch.Tensor
    key: torch.Tensor
    heads: int
    recorder: MaxLogitRecorder
    query_bias: torch.Tensor | None = None
    key_bias: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if not (isinstance(self.heads, int) and self.heads >= 1):
            raise ValueError(f"heads must be a positive integer, got {self.heads!r}")
        for name in ("query", "key"):
            w = getattr(self, name)
            if w.ndim != 2 or w.shape[0] % self.heads:
                raise ValueError(
                    f"{name} projection must be a (heads * d, d_model) matrix with heads={self.heads}, "
                    f"got shape {tuple(w.shape)}"
                )
        if self.query.shape[0] != self.key.shape[0]:
            raise ValueError(
                f"query and key projections must have the same rows (multi-head attention), got "
                f"{tuple(self.query.shape)} and {tuple(self.key.shape)}"
            )


def qk_clip_factors(s_max: torch.Tensor, tau: float) -> torch.Tensor:
    """``gamma_h = min(1, tau / S^h_max)`` per head (1 where ``S^h_max <= tau``)."""
    s = s_max.to(torch.float64)
    return torch.where(s > tau, tau / s, torch.ones_like(s))


class QKClip:
    """QK-Clip over attention layers (see the module docstring): ``apply()`` after every optimizer step.

    Args:
        layers: the :class:`AttentionHeads` to watch.
        tau: the logit threshold ``tau`` (> 0; Kimi K2: 100).
        process_group: where to all-reduce the recorded maxima under data parallelism (default: the world, when
            ``torch.distributed`` is initialized).

    After ``apply()``, ``last`` holds one row per layer and head: ``layer, head, max_logit, gamma`` (the maxima
    the clip saw; ``gamma < 1`` where it clipped).
    """

    def __init__(
        self, layers: Sequence[AttentionHeads], tau: float = 100.0, *, process_group: Any = None
    ) -> None:
        if not (isinstance(tau, (int, float)) and math.isfinite(tau) and tau > 0):
            raise ValueError(f"tau must be a finite number > 0, got {tau!r}")
        self.layers = list(layers)
        if not self.layers:
            raise ValueError("QKClip needs at least one AttentionHeads layer")
        self.tau = float(tau)
        self.process_group = process_group
        self.last: list[dict[str, Any]] = []

    @classmethod
    def for_modules(
        cls, pairs: Sequence[tuple[nn.Linear, nn.Linear, nn.Module, int]], tau: float = 100.0, **kw: Any
    ) -> QKClip:
        """Build from ``(query_linear, key_linear, attention_core, heads)`` tuples: hooks a recorder on each
        attention core (a module called like ``F.scaled_dot_product_attention``)."""
        layers = []
        for q_lin, k_lin, core, heads in pairs:
            layers.append(
                AttentionHeads(
                    q_lin.weight, k_lin.weight, heads, MaxLogitRecorder(core), q_lin.bias, k_lin.bias
                )
            )
        return cls(layers, tau, **kw)

    @torch.no_grad()
    def apply(self) -> list[torch.Tensor]:
        """Rescale every head whose recorded maximum logit exceeds ``tau``; return each layer's ``gamma``.

        Layers without a recorded forward pass are skipped (factor 1).  The recorders are reset.
        """
        maxima = []
        for layer in self.layers:
            v = layer.recorder.value
            maxima.append(
                torch.full((layer.heads,), float("-inf"), dtype=torch.float64)
                if v is None
                else v.detach().to(device="cpu", dtype=torch.float64)
            )
        flat = torch.cat(maxima)
        if dist.is_available() and dist.is_initialized():  # the max over every rank's batch
            reduced = flat.to(self.layers[0].query.device)
            dist.all_reduce(reduced, op=dist.ReduceOp.MAX, group=self.process_group)
            flat = reduced.cpu()
        gammas, self.last, start = [], [], 0
        for li, layer in enumerate(self.layers):
            s = flat[start : start + layer.heads]
            start += layer.heads
            gamma = qk_clip_factors(s, self.tau)
            gammas.append(gamma)
            self.last += [
                {"layer": li, "head": h, "max_logit": float(s[h]), "gamma": float(gamma[h])}
                for h in range(layer.heads)
            ]
            if bool((gamma < 1).any()):
                root = gamma.sqrt()  # sqrt(gamma_h) on the query rows and on the key rows of head h
                for t in (layer.query, layer.key, layer.query_bias, layer.key_bias):
                    if t is not None:
                        scale_head_rows_(t, root)
            layer.recorder.reset()
        return gammas


def scale_head_rows_(t: torch.Tensor, factors: torch.Tensor) -> None:
    """Multiply the rows of head ``h`` of ``t`` (``(heads * d, ...)``: rows ``h*d .. (h+1)*d - 1``) by ``factors[h]``,
    in place; FSDP2 shards (DTensor, rows split by ``Shard(0)`` or columns by ``Shard(1)``) on their local piece."""
    heads = factors.numel()
    rows = t.shape[0] // heads
    per_row = factors.repeat_interleave(rows).to(dtype=t.dtype, device=t.device)
    per_row = per_row.view(-1, *([1] * (t.ndim - 1)))
    if not is_dtensor(t):
        t.mul_(per_row)
        return
    layout = shard_layout(t)
    if layout is None:
        raise ValueError(
            f"QK-Clip supports plain tensors and single-dimension DTensor shards, got {t.placements}"
        )
    if layout.dim == 0:
        per_row = per_row.narrow(0, layout.offset(layout.rank), layout.sizes[layout.rank])
    t.to_local().mul_(per_row)
