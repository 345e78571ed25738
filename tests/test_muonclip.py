"""QK-Clip (Kimi K2, arXiv:2507.20534, Sec. 2.1, Algorithm 1): max logits, the per-head rescale, MuonClip in Muon."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from experiments.training import ScaledDotProductAttention, attention_clip, attention_recorders, train
from nsiter.optim import AttentionHeads, MaxLogitRecorder, Muon, QKClip, max_logits
from nsiter.optim.clip import qk_clip_factors

F64_EPS = 2.0**-52


def _qk(x: torch.Tensor, q_lin: nn.Linear, k_lin: nn.Linear, heads: int) -> tuple[torch.Tensor, torch.Tensor]:
    b, t, _ = x.shape
    q = q_lin(x).view(b, t, heads, -1).transpose(1, 2)
    k = k_lin(x).view(b, t, heads, -1).transpose(1, 2)
    return q, k


def test_max_logits_against_a_loop():
    # S^h = max over batch, query i, key j of q_i . k_j / sqrt(d), by an explicit loop in float64
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(2, 3, 4, 5, generator=gen, dtype=torch.float64)
    k = torch.randn(2, 3, 6, 5, generator=gen, dtype=torch.float64)
    ref = torch.full((3,), -math.inf, dtype=torch.float64)
    causal_ref = ref.clone()
    for b, h, i, j in ((b, h, i, j) for b in range(2) for h in range(3) for i in range(4) for j in range(6)):
        v = float(q[b, h, i] @ k[b, h, j]) / math.sqrt(5)
        ref[h] = max(ref[h], v)
        if j <= i:
            causal_ref[h] = max(causal_ref[h], v)
    torch.testing.assert_close(max_logits(q, k), ref, rtol=4 * F64_EPS, atol=0)
    torch.testing.assert_close(max_logits(q, k, is_causal=True), causal_ref, rtol=4 * F64_EPS, atol=0)
    mask = torch.ones(4, 6, dtype=torch.bool).tril()  # the same pairs as is_causal, as SDPA's boolean mask
    torch.testing.assert_close(max_logits(q, k, attn_mask=mask), causal_ref, rtol=4 * F64_EPS, atol=0)
    additive = torch.zeros(4, 6, dtype=torch.float64).masked_fill(~mask, -math.inf)
    torch.testing.assert_close(max_logits(q, k, attn_mask=additive), causal_ref, rtol=4 * F64_EPS, atol=0)
    assert torch.equal(max_logits(q, k, scale=1.0), max_logits(q * math.sqrt(5), k))
    with pytest.raises(ValueError, match="batch, heads"):
        max_logits(q[0], k[0])


def test_clip_factors():
    # gamma_h = min(1, tau / S_h): exact for these binary fractions
    s = torch.tensor([50.0, 100.0, 200.0, 400.0, -3.0])
    assert qk_clip_factors(s, 100.0).tolist() == [1.0, 1.0, 0.5, 0.25, 1.0]
    with pytest.raises(ValueError, match="tau"):
        QKClip([], tau=0.0)


@pytest.mark.parametrize("bias", [False, True])
def test_clipped_heads_max_logit_becomes_tau(bias):
    # logits are bilinear in (W_q^h, W_k^h): scaling both by sqrt(gamma) scales head h's logits by gamma, so the
    # recorded maximum of a clipped head becomes gamma S = tau on the same batch; unclipped heads are untouched
    torch.manual_seed(0)
    heads, d_model = 4, 16
    q_lin, k_lin = (
        nn.Linear(d_model, d_model, bias=bias).double(),
        nn.Linear(d_model, d_model, bias=bias).double(),
    )
    core = ScaledDotProductAttention()
    x = torch.randn(3, 5, d_model, dtype=torch.float64) * 3
    rec = MaxLogitRecorder(core)
    q, k = _qk(x, q_lin, k_lin, heads)
    core(q, k, k)
    before = rec.value.clone()
    tau = float(before.sort().values[1])  # two heads above tau, one at it (not clipped), one below
    clip = QKClip([AttentionHeads(q_lin.weight, k_lin.weight, heads, rec, q_lin.bias, k_lin.bias)], tau)
    w_q, w_k = q_lin.weight.detach().clone(), k_lin.weight.detach().clone()
    (gamma,) = clip.apply()
    assert rec.value is None  # reset for the next step
    clipped = before > tau
    assert clipped.sum() == 2
    torch.testing.assert_close(gamma, torch.where(clipped, tau / before, 1.0))
    q, k = _qk(x, q_lin, k_lin, heads)
    after = max_logits(q, k)
    torch.testing.assert_close(
        after[clipped], torch.full((2,), tau, dtype=torch.float64), rtol=8 * F64_EPS, atol=0
    )
    assert torch.equal(after[~clipped], before[~clipped])
    rows = d_model // heads
    for h in range(heads):
        block = slice(h * rows, (h + 1) * rows)
        if clipped[h]:
            root = math.sqrt(tau / float(before[h]))
            torch.testing.assert_close(q_lin.weight[block], w_q[block] * root, rtol=2 * F64_EPS, atol=0)
            torch.testing.assert_close(k_lin.weight[block], w_k[block] * root, rtol=2 * F64_EPS, atol=0)
        else:
            assert torch.equal(q_lin.weight[block], w_q[block])
            assert torch.equal(k_lin.weight[block], w_k[block])
    assert [r["head"] for r in clip.last] == list(range(heads))
    assert [r["gamma"] < 1 for r in clip.last] == clipped.tolist()


def test_recorder_skips_evaluation_and_keeps_the_running_max():
    core = ScaledDotProductAttention()
    rec = MaxLogitRecorder(core)
    q = torch.randn(1, 2, 3, 4)
    core(q, q, q)
    first = rec.value.clone()
    core(2 * q, q, q)  # a second micro-batch: logits doubled
    torch.testing.assert_close(rec.value, torch.maximum(first, 2 * first))
    core.eval()
    core(10 * q, q, q)
    torch.testing.assert_close(rec.value, torch.maximum(first, 2 * first))
    rec.remove()
    core.train()
    core(10 * q, q, q)
    torch.testing.assert_close(rec.value, torch.maximum(first, 2 * first))


def test_muonclip_step_clips_after_the_update():
    # with lr = 0 Muon leaves the weights, so after step() the clipped heads' logits on that batch are tau;
    # with lr > 0 the clip acts on the updated weights: W <- sqrt(gamma) * Muon(W), checked against Muon alone
    torch.manual_seed(1)
    d_model, heads = 8, 2
    q_lin, k_lin = nn.Linear(d_model, d_model, bias=False), nn.Linear(d_model, d_model, bias=False)
    core = ScaledDotProductAttention()
    x = torch.randn(4, 6, d_model) * 4

    def forward_backward():
        q, k = _qk(x, q_lin, k_lin, heads)
        core(q, k, k).square().mean().backward()

    rec = MaxLogitRecorder(core)
    clip = QKClip([AttentionHeads(q_lin.weight, k_lin.weight, heads, rec)], tau=1.0)
    opt = Muon([q_lin.weight, k_lin.weight], lr=0.0, qk_clip=clip, dtype=torch.float32, method="standard")
    forward_backward()
    before = rec.value.clone()
    assert bool((before > 1.0).all())
    opt.step()
    with torch.no_grad():
        after = max_logits(*_qk(x, q_lin, k_lin, heads))
    torch.testing.assert_close(after, torch.ones(heads), rtol=1e-5, atol=0)

    # lr > 0, fresh optimizers on the same weights and gradients: the clip scales the updated rows of head h
    w0 = [q_lin.weight.detach().clone(), k_lin.weight.detach().clone()]
    plain = [w.clone().requires_grad_() for w in w0]
    ref = Muon(plain, lr=0.05, dtype=torch.float32, method="standard")
    clip = QKClip([AttentionHeads(q_lin.weight, k_lin.weight, heads, rec)], tau=0.5)
    opt = Muon([q_lin.weight, k_lin.weight], lr=0.05, qk_clip=clip, dtype=torch.float32, method="standard")
    opt.zero_grad()
    forward_backward()
    s = rec.value.clone()
    assert bool((s > 0.5).all())
    for pw, w in zip(plain, (q_lin.weight, k_lin.weight), strict=True):
        pw.grad = w.grad.clone()
    opt.step()
    ref.step()
    root = qk_clip_factors(s, 0.5).sqrt().float().repeat_interleave(d_model // heads)[:, None]
    for pw, w in zip(plain, (q_lin.weight, k_lin.weight), strict=True):
        torch.testing.assert_close(w, pw.detach() * root, rtol=2**-23, atol=0)
    with pytest.raises(ValueError, match="qk_clip"):
        Muon([q_lin.weight], lr=0.1, qk_clip="yes")


def test_attention_heads_bad_input():
    rec = MaxLogitRecorder(ScaledDotProductAttention())
    with pytest.raises(ValueError, match="heads"):
        AttentionHeads(torch.zeros(6, 4), torch.zeros(6, 4), 4, rec)
    with pytest.raises(ValueError, match="same rows"):
        AttentionHeads(torch.zeros(8, 4), torch.zeros(4, 4), 2, rec)


@pytest.fixture
def one_thread():
    """Tiny matrices: one thread (two oversubscribe a shared 2-core machine and run 30x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_training_logits_bounded_by_the_clip(one_thread):
    # modular addition with a large Muon step: without the clip the largest logit keeps growing; MuonClip holds
    # it within one step's growth of tau (the clip acts on the logits measured before each update)
    kw = {"seed": 0, "steps": 60, "lr": 0.1, "adam_lr": 0.01, "config": {"p": 11, "d": 16, "heads": 2}}
    free = train("modadd", "muon:muon", dtype="float32", method="standard", **kw)
    tau = 4.0
    clipped = train("modadd", "muon:muon", dtype="float32", method="standard", qk_clip_tau=tau, **kw)
    assert len(free.max_logits) == len(clipped.max_logits) == 60
    assert free.max_logits[:2] == clipped.max_logits[:2]  # identical until a head first passes tau
    assert max(free.max_logits) > 4 * tau
    growth = max(b - a for a, b in zip(free.max_logits, free.max_logits[1:], strict=False))
    first = next(t for t, v in enumerate(clipped.max_logits) if v > tau)
    assert max(clipped.max_logits[first + 1 :]) <= tau + growth
    with pytest.raises(ValueError, match="attention"):
        train("teacher", "muon:muon", steps=1, qk_clip_tau=1.0)


def test_attention_recorders_find_every_block():
    from experiments.training import TinyTransformer

    model = TinyTransformer(7, 5, d=8, heads=2)
    recs = attention_recorders(model)
    assert len(recs) == 1
    clip = attention_clip(recs, 3.0)
    model(torch.randint(0, 7, (4, 3))).sum().backward()
    assert recs[0][1].value.shape == (2,)
    clip.apply()
    assert all(r["max_logit"] > -math.inf for r in clip.last)
