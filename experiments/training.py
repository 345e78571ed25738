"""Small, seeded training problems for comparing optimizers on a CPU: models, generated data, a training loop.

Two tasks, both generated in code from a seed (no downloads; same seed, same bytes):

- ``"modadd"``: modular addition ``(a + b) mod p`` (Power et al., "Grokking", arXiv:2201.02177), the sequence
  ``[a, b, =]`` fed to a small pre-norm transformer that predicts ``c`` at the last position; a random
  ``train_fraction`` of the ``p^2`` pairs is trained on (full batch), the rest is held out.
- ``"teacher"``: classification of Gaussian inputs labelled by a random teacher MLP (argmax of its logits), learnt
  by a student MLP with mini-batches; a classic synthetic benchmark (Gardner & Derrida 1989 teacher-student).

Optimizers are named by strings so experiments can loop over them: ``"adamw"`` (``torch.optim.AdamW`` on every
parameter) and ``"muon:SCHEDULE"`` (:class:`nsiter.optim.MuonWithAuxAdam`: Muon with that schedule on the hidden
matrices, AdamW on embeddings, output head, biases and gains).  :func:`train` records the loss at every step,
the held-out loss and accuracy at the end, the wall time, and optionally the singular-value spectra of the
momentum matrices (:mod:`nsiter.optim.spectra`) at chosen steps.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nsiter.optim.clip import AttentionHeads, MaxLogitRecorder, QKClip
from nsiter.optim.muon import MuonWithAuxAdam
from nsiter.optim.spectra import momentum_spectra
from nsiter.registry import load_schedule
from nsiter.schedule import Schedule

__all__ = [
    "MLP",
    "TASKS",
    "ScaledDotProductAttention",
    "TinyTransformer",
    "TrainResult",
    "attention_clip",
    "attention_recorders",
    "make_optimizer",
    "modular_addition",
    "parse_schedule_spec",
    "teacher_classification",
    "train",
]

TASKS = ("modadd", "teacher")


# ----------------------------------------------------------------------------------------------- data
def modular_addition(
    p: int = 31, train_fraction: float = 0.5, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """All pairs ``(a, b)`` in ``Z_p^2`` as sequences ``[a, b, p]`` (token ``p`` is "="), labels ``(a + b) mod p``.

    Returns ``(x_train, y_train, x_val, y_val)`` split by a seeded permutation.
    """
    if p < 2:
        raise ValueError(f"modulus p must be >= 2, got {p!r}")
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction!r}")
    a = torch.arange(p).repeat_interleave(p)
    b = torch.arange(p).repeat(p)
    x = torch.stack([a, b, torch.full_like(a, p)], dim=1)
    y = (a + b) % p
    perm = torch.randperm(p * p, generator=torch.Generator().manual_seed(seed))
    n_train = round(train_fraction * p * p)
    tr, va = perm[:n_train], perm[n_train:]
    return x[tr], y[tr], x[va], y[va]


def teacher_classification(
    n_train: int = 2048, n_val: int = 1024, dim: int = 32, classes: int = 10, width: int = 64, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gaussian inputs ``x ~ N(0, I_dim)`` labelled by ``argmax`` of a random two-layer tanh teacher.

    The teacher's weights are ``N(0, 1/fan_in)``.  Returns ``(x_train, y_train, x_val, y_val)``.
    """
    gen = torch.Generator().manual_seed(seed)
    w1 = torch.randn(dim, width, generator=gen) / math.sqrt(dim)
    w2 = torch.randn(width, classes, generator=gen) / math.sqrt(width)
    x = torch.randn(n_train + n_val, dim, generator=gen)
    y = (torch.tanh(x @ w1 * 2.0) @ w2).argmax(dim=1)
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


# ----------------------------------------------------------------------------------------------- models
class ScaledDotProductAttention(nn.Module):
    """``F.scaled_dot_product_attention`` as a module, so a forward hook sees its ``q, k`` (e.g.
    :class:`nsiter.optim.MaxLogitRecorder` for QK-Clip)."""

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        dropout_p: float = 0.0,
        is_causal: bool = False,
        scale: float | None = None,
    ) -> torch.Tensor:
        return F.scaled_dot_product_attention(query, key, value, attn_mask, dropout_p, is_causal, scale=scale)


class _Block(nn.Module):
    """Pre-norm transformer block: ``x + Attn(LN x)``, then ``x + MLP(LN x)`` (Xiong et al. 2020)."""

    def __init__(self, d: int, heads: int, mlp: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(d)
        self.q, self.k, self.v, self.o = (nn.Linear(d, d, bias=False) for _ in range(4))
        self.attend = ScaledDotProductAttention()
        self.ln2 = nn.LayerNorm(d)
        self.up = nn.Linear(d, mlp, bias=False)
        self.down = nn.Linear(mlp, d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        h = self.ln1(x)
        q, k, v = (
            f(h).view(b, t, self.heads, d // self.heads).transpose(1, 2) for f in (self.q, self.k, self.v)
        )
        att = self.attend(q, k, v)
        x = x + self.o(att.transpose(1, 2).reshape(b, t, d))
        return x + self.down(F.gelu(self.up(self.ln2(x))))


class TinyTransformer(nn.Module):
    """Token + position embeddings, ``layers`` pre-norm blocks, final LayerNorm, linear ``head`` read at the last token."""

    def __init__(
        self, vocab: int, classes: int, d: int = 64, heads: int = 4, layers: int = 1, seq: int = 3
    ) -> None:
        super().__init__()
        if d % heads:
            raise ValueError(f"width d={d} must be divisible by heads={heads}")
        self.embed = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(seq, d)
        self.blocks = nn.ModuleList(_Block(d, heads, 4 * d) for _ in range(layers))
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, classes, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x) + self.pos(torch.arange(x.shape[1], device=x.device))
        for block in self.blocks:
            h = block(h)
        return self.head(self.ln(h[:, -1]))


class MLP(nn.Module):
    """``dim -> width -> ... -> width -> classes`` with GELU; the last layer is called ``head``."""

    def __init__(self, dim: int, classes: int, width: int = 128, depth: int = 3) -> None:
        super().__init__()
        sizes = [dim] + [width] * depth
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(sizes))
        self.head = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = F.gelu(layer(x))
        return self.head(x)


# ----------------------------------------------------------------------------------------------- optimizers
def parse_schedule_spec(text: str) -> Schedule:
    """``"NAME"`` or ``"NAME@K"``: a registry schedule (or file), truncated/extended to ``K`` steps when given."""
    name, _, steps = text.partition("@")
    schedule = load_schedule(name)
    if steps:
        if not steps.isdigit() or int(steps) < 1:
            raise ValueError(f"steps after '@' must be a positive integer, got {steps!r} in {text!r}")
        schedule = schedule.truncated(int(steps))
    return schedule


def make_optimizer(
    spec: str,
    model: nn.Module,
    *,
    lr: float,
    adam_lr: float,
    weight_decay: float = 0.0,
    dtype: torch.dtype | str = torch.bfloat16,
    method: str = "auto",
    qk_clip: QKClip | None = None,
) -> torch.optim.Optimizer:
    """``"adamw"`` -> ``torch.optim.AdamW(lr=adam_lr, betas=(0.9, 0.95))`` on everything;
    ``"muon:SCHEDULE"`` (or ``"muon:SCHEDULE@K"``, see :func:`parse_schedule_spec`) -> :class:`MuonWithAuxAdam`
    (Muon ``lr`` with Jordan's scaling; AdamW ``adam_lr`` on the embeddings, ``head``, biases and gains;
    Newton–Schulz in ``dtype`` evaluated by ``method``; MuonClip when ``qk_clip`` is given, see
    :func:`attention_clip`).  Weight decay applies to both parts.
    """
    if spec == "adamw":
        if qk_clip is not None:
            raise ValueError("qk_clip is a Muon option (MuonClip); use a 'muon:SCHEDULE' optimizer")
        return torch.optim.AdamW(model.parameters(), lr=adam_lr, betas=(0.9, 0.95), weight_decay=weight_decay)
    if spec.startswith("muon:"):
        return MuonWithAuxAdam(
            model,
            lr=lr,
            schedule=parse_schedule_spec(spec.split(":", 1)[1]),
            weight_decay=weight_decay,
            adam_lr=adam_lr,
            adam_weight_decay=weight_decay,
            adam_names=("head",),
            dtype=dtype,
            method=method,
            qk_clip=qk_clip,
        )
    raise ValueError(f"optimizer must be 'adamw' or 'muon:SCHEDULE', got {spec!r}")


def attention_recorders(model: nn.Module) -> list[tuple[_Block, MaxLogitRecorder]]:
    """A :class:`MaxLogitRecorder` on the attention of every transformer block of ``model`` (none for an MLP)."""
    return [(m, MaxLogitRecorder(m.attend)) for m in model.modules() if isinstance(m, _Block)]


def attention_clip(recorders: Sequence[tuple[_Block, MaxLogitRecorder]], tau: float) -> QKClip:
    """QK-Clip (Kimi K2) at threshold ``tau`` over the blocks' query and key projections, fed by ``recorders``."""
    return QKClip([AttentionHeads(b.q.weight, b.k.weight, b.heads, rec) for b, rec in recorders], tau)


# ----------------------------------------------------------------------------------------------- training
@dataclass
class TrainResult:
    """What :func:`train` measured.  ``losses[t]`` is the training (mini-)batch loss before step ``t + 1``;
    ``seconds`` is the wall time of the training loop and ``cpu_seconds`` its process CPU time (the steadier
    number on a shared machine); ``step_seconds[t]`` the wall time of ``optimizer.step()`` alone at step ``t + 1``;
    ``max_logits[t]`` the largest attention logit ``q.k/sqrt(d)`` over all heads in the forward pass before step
    ``t + 1`` (transformers only: empty for an MLP)."""

    task: str
    optimizer: str
    seed: int
    losses: list[float]
    val_loss: float
    val_accuracy: float
    seconds: float
    cpu_seconds: float = 0.0
    spectra: list[dict[str, Any]] = field(default_factory=list)
    step_seconds: list[float] = field(default_factory=list)
    max_logits: list[float] = field(default_factory=list)

    def steps_to(self, target: float) -> int | None:
        """First step count after which the training loss is <= ``target`` (None if never)."""
        for t, loss in enumerate(self.losses):
            if loss <= target:
                return t
        return None


def _setup(task: str, seed: int, cfg: dict[str, Any]):
    if task == "modadd":
        p = int(cfg.get("p", 31))
        data = modular_addition(p, float(cfg.get("train_fraction", 0.5)), seed=seed)
        torch.manual_seed(seed)
        model = TinyTransformer(p + 1, p, d=int(cfg.get("d", 64)), heads=int(cfg.get("heads", 4)))
        return model, data, None
    if task == "teacher":
        dim = int(cfg.get("dim", 32))
        data = teacher_classification(int(cfg.get("n_train", 2048)), 1024, dim, 10, seed=seed)
        torch.manual_seed(seed)
        model = MLP(dim, 10, width=int(cfg.get("width", 128)), depth=int(cfg.get("depth", 3)))
        return model, data, int(cfg.get("batch", 256))
    raise ValueError(f"task must be one of {TASKS}, got {task!r}")


def train(
    task: str,
    optimizer: str,
    *,
    seed: int = 0,
    steps: int = 200,
    lr: float = 0.02,
    adam_lr: float = 3e-3,
    weight_decay: float = 0.0,
    record_spectra_at: Sequence[int] = (),
    config: dict[str, Any] | None = None,
    dtype: torch.dtype | str = torch.bfloat16,
    method: str = "auto",
    qk_clip_tau: float | None = None,
) -> TrainResult:
    """Train ``task`` with ``optimizer`` for ``steps`` steps and return the measurements.

    Model initialization, data and mini-batch order all derive from ``seed``.  Spectra of the Muon momentum
    buffers are recorded after the steps listed in ``record_spectra_at`` (Muon optimizers only).
    ``config`` overrides the task's sizes (``p``, ``d``, ``heads``; ``dim``, ``width``, ``depth``, ``batch``).
    ``dtype`` is Muon's Newton–Schulz precision (bf16 as in Muon; float32 is faster on CPUs without bf16 matrix
    units, by 15-60x per product at 64-256 on this project's 2-core AMD EPYC).  ``method`` is how Muon evaluates
    its schedule (``"auto"``, ``"standard"``, ``"gram"``); ``qk_clip_tau`` turns Muon into MuonClip with that
    threshold (transformers only).
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps!r}")
    model, (xt, yt, xv, yv), batch = _setup(task, seed, config or {})
    recorders = attention_recorders(model)
    if qk_clip_tau is not None and not recorders:
        raise ValueError(f"qk_clip_tau needs a model with attention; task {task!r} has none")
    clip = attention_clip(recorders, qk_clip_tau) if qk_clip_tau is not None else None
    opt = make_optimizer(
        optimizer,
        model,
        lr=lr,
        adam_lr=adam_lr,
        weight_decay=weight_decay,
        dtype=dtype,
        method=method,
        qk_clip=clip,
    )
    names = {p: n for n, p in model.named_parameters()}
    gen = torch.Generator().manual_seed(seed + 1)
    losses: list[float] = []
    step_seconds: list[float] = []
    max_logits: list[float] = []
    spectra: list[dict[str, Any]] = []
    record = set(record_spectra_at)
    t0, c0 = time.perf_counter(), time.process_time()
    for t in range(steps):
        if batch is None:
            xb, yb = xt, yt
        else:
            idx = torch.randint(0, xt.shape[0], (batch,), generator=gen)
            xb, yb = xt[idx], yt[idx]
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if recorders:
            max_logits.append(max(float(rec.value.max()) for _, rec in recorders))
        s0 = time.perf_counter()
        opt.step()  # MuonClip: clips by the maxima just read, then resets the recorders
        step_seconds.append(time.perf_counter() - s0)
        for _, rec in recorders:
            rec.reset()
        losses.append(loss.item())
        if t + 1 in record and isinstance(opt, MuonWithAuxAdam):
            for row in momentum_spectra(opt, names):
                spectra.append({"task": task, "optimizer": optimizer, "seed": seed, "step": t + 1, **row})
    seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
    with torch.no_grad():
        logits = model(xv)
        val_loss = float(F.cross_entropy(logits, yv))
        val_acc = float((logits.argmax(dim=1) == yv).float().mean())
    for _, rec in recorders:
        rec.remove()
    return TrainResult(
        task,
        optimizer,
        seed,
        losses,
        val_loss,
        val_acc,
        seconds,
        cpu_seconds,
        spectra,
        step_seconds,
        max_logits,
    )
