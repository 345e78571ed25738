"""Batched Muon: one call per shape (transposes included), chunked by bytes, blocks of fused matrices.

The batched step must leave every parameter as the per-parameter loop (``batch=False``) does.  Bit for bit when
the batched GEMMs (``bmm``/``baddbmm``) give each matrix the bits its single GEMM (``mm``/``addmm``) gives: the
``same_gemm_bits`` fixture checks that on the machine the tests run on (it holds on AMD Zen 5 with torch 2.13);
where it does not, the float32 accumulations differ in summation order only, each product's bf16 rounding may
flip by one unit (2^-8 relative), and the iteration amplifies such flips by at most its slope (test_optim measures
bf16-vs-float64 differences of 1-2% of the update); the fallback bound is 5% of the update's norm.
"""

from __future__ import annotations

import math

import pytest
import torch

import nsiter.optim.muon as muon_module
from nsiter.evaluate import orthogonalize
from nsiter.optim import Muon
from nsiter.optim.batching import batch_chunk, orthogonalize_batched, wide_shape

SHAPES = (
    [(24, 40)] * 3 + [(40, 24)] * 2 + [(24, 24)] * 4 + [(16, 40)]
)  # wide, their transposes, square, alone
LOOSE = 0.05  # relative Frobenius bound where batched and single GEMMs round differently (module docstring)


def gemm_bits_agree(shapes) -> bool:
    """Whether baddbmm/bmm give each matrix of a batch the bits addmm/mm give it alone, for these shapes
    (float32 and bfloat16, the two compute dtypes of bf16 work: emulated and native)."""
    gen = torch.Generator().manual_seed(0)
    same = True
    for dtype in (torch.float32, torch.bfloat16):
        for m, k in {wide_shape(s) for s in shapes}:
            P = torch.randn(4, m, k, generator=gen).to(dtype)
            A = torch.randn(4, m, m, generator=gen).to(dtype)
            batched = torch.baddbmm(A, P, P.mT, beta=0.5, alpha=1.5)
            single = torch.stack(
                [torch.addmm(a, p, p.T, beta=0.5, alpha=1.5) for a, p in zip(A, P, strict=True)]
            )
            same &= torch.equal(batched, single)
            same &= torch.equal(torch.bmm(A, P), torch.stack([a @ p for a, p in zip(A, P, strict=True)]))
    return same


@pytest.fixture(scope="module")
def same_gemm_bits() -> bool:
    return gemm_bits_agree(SHAPES)


def _params(shapes, seed: int = 0) -> list[torch.nn.Parameter]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(s, generator=gen)) for s in shapes]


def _grads(params, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen)


def _close(a: torch.Tensor, b: torch.Tensor, exact: bool, ref: torch.Tensor) -> bool:
    return torch.equal(a, b) if exact else float((a - b).norm()) <= LOOSE * float(ref.norm())


class _Counter:
    """Records the shape of every orthogonalize call Muon makes."""

    def __init__(self, monkeypatch):
        self.shapes: list[tuple[int, ...]] = []
        original = muon_module.orthogonalize

        def counting(G, *args, **kwargs):
            self.shapes.append(tuple(G.shape))
            return original(G, *args, **kwargs)

        monkeypatch.setattr(muon_module, "orthogonalize", counting)


@pytest.mark.parametrize("method", ["standard", "gram"])
def test_batched_step_equals_the_per_parameter_loop(method, same_gemm_bits, monkeypatch):
    batched, loop = _params(SHAPES), _params(SHAPES)
    opt_b = Muon(batched, lr=0.02, weight_decay=0.1, method=method)
    opt_l = Muon(loop, lr=0.02, weight_decay=0.1, method=method, batch=False)
    counter = _Counter(monkeypatch)
    start = [p.detach().clone() for p in loop]
    for seed in range(3):
        _grads(batched, seed)
        _grads(loop, seed)
        counter.shapes.clear()
        opt_b.step()
        calls = counter.shapes[:]
        opt_l.step()
    # one call per wide shape: 24x40 and its transposes stacked (5), the squares (4), the lone 16x40 unstacked
    assert sorted(calls) == sorted([(5, 24, 40), (4, 24, 24), (16, 40)])
    for pb, pl, w in zip(batched, loop, start, strict=True):
        assert _close(pb.detach(), pl.detach(), same_gemm_bits, pl.detach() - w)


def test_batch_chunks_follow_the_byte_bound(same_gemm_bits, monkeypatch):
    # 24 x 40 float32 is 3840 bytes: a bound of 2.5 matrices gives chunks of 2 (5 matrices: 2 + 2 + 1)
    assert batch_chunk(24, 40, int(2.5 * 3840)) == 2
    assert batch_chunk(24, 40, 1) == 1  # never zero
    shapes = [(24, 40)] * 3 + [(40, 24)] * 2
    chunked, whole = _params(shapes), _params(shapes)
    opt_c = Muon(chunked, lr=0.02, batch_bytes=int(2.5 * 3840))
    opt_w = Muon(whole, lr=0.02)
    counter = _Counter(monkeypatch)
    _grads(chunked, 1)
    _grads(whole, 1)
    opt_c.step()
    assert counter.shapes == [(2, 24, 40), (2, 24, 40), (40, 24)]  # the last alone: as given, unstacked
    opt_w.step()
    w0 = _params(shapes)
    for pc, pw, w in zip(chunked, whole, w0, strict=True):
        assert _close(pc.detach(), pw.detach(), same_gemm_bits, pw.detach() - w.detach())


def test_batching_is_a_group_option(monkeypatch):
    a, b = _params([(24, 40)] * 2), _params([(24, 40)] * 2, seed=1)
    opt = Muon([{"params": a}, {"params": b, "batch": False}], lr=0.02)
    counter = _Counter(monkeypatch)
    _grads(a + b, 2)
    opt.step()
    assert sorted(counter.shapes) == sorted([(2, 24, 40), (24, 40), (24, 40)])


def test_orthogonalize_batched_is_transpose_equivariant():
    # fn applied to the wide stack, results transposed back: tall matrices come back tall, exactly phi(G^T)^T
    gen = torch.Generator().manual_seed(3)
    mats = [
        torch.randn(12, 20, generator=gen),
        torch.randn(20, 12, generator=gen),
        torch.randn(12, 20, generator=gen),
    ]
    seen = []

    def fn(X):
        seen.append(tuple(X.shape))
        return 2 * X + 1

    out = orthogonalize_batched(mats, fn)
    assert seen == [(3, 12, 20)]
    for M, R in zip(mats, out, strict=True):
        assert torch.equal(R, 2 * M + 1)  # an elementwise fn commutes with the transpose exactly


def _first_step_by_hand(W, G, sizes, lr, wd, mu=0.95):
    """Muon's first step (zero momentum, Nesterov) on W with each row block orthogonalized by itself."""
    buf = torch.zeros_like(G).lerp_(G, 1 - mu)
    U = G.lerp(buf, mu)
    out = W.clone().mul_(1 - lr * wd)
    r0 = 0
    blocks = []
    for r in sizes:
        blocks.append((r0, r, orthogonalize(U[r0 : r0 + r])))
        r0 += r
    return out, blocks


def test_fused_qkv_split_equals_blocks_by_hand(same_gemm_bits):
    d = 16
    (w,) = _params([(3 * d, d)], seed=4)
    start = w.detach().clone()
    opt = Muon([w], lr=0.02, weight_decay=0.1, split_sizes={w: (d, d, d)})
    _grads([w], 5)
    G = w.grad.clone()
    opt.step()
    out, blocks = _first_step_by_hand(start, G, (d, d, d), 0.02, 0.1)
    # equal blocks, equal scales s(d, d) = 1: one add of the three orthogonalized blocks
    out.add_(torch.cat([block for _, _, block in blocks]), alpha=-0.02 * 1.0)
    assert _close(w.detach(), out, same_gemm_bits, out - start)
    # not the whole (3d x d) matrix orthogonalized at once: that is another update altogether
    whole = start * (1 - 0.002) - 0.02 * math.sqrt(3) * orthogonalize(
        G.lerp(torch.zeros_like(G).lerp_(G, 0.05), 0.95)
    )
    assert float((whole - w.detach()).norm()) > 0.1 * float((out - start).norm())


def test_per_head_blocks_carry_their_own_scale():
    # rows split 4 + 12 of a 16 x 8 matrix: s(4, 8) = 1, s(12, 8) = sqrt(12/8) (Jordan's scaling), applied per block
    (w,) = _params([(16, 8)], seed=6)
    start = w.detach().clone()
    opt = Muon([w], lr=0.02, param_split_fn=lambda p: (4, 12) if p.shape == (16, 8) else None)
    _grads([w], 7)
    G = w.grad.clone()
    opt.step()
    out, blocks = _first_step_by_hand(start, G, (4, 12), 0.02, 0.0)
    for r0, r, block in blocks:
        out[r0 : r0 + r] -= 0.02 * math.sqrt(max(1.0, r / 8)) * block
    # the scaled blocks are rounded once more (float32) before the add: a few units of 2^-24 of |W|
    assert (w.detach() - out).abs().max() <= 8 * 2**-24 * start.abs().max()
    assert opt.split_of(w) == (4, 12)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"batch_bytes": 0}, "batch_bytes must be a positive integer"),
        ({"batch_bytes": 1.5}, "batch_bytes must be a positive integer"),
        ({"batch": "yes"}, "batch must be True or False"),
    ],
)
def test_bad_batch_options_name_the_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Muon(_params([(4, 4)]), lr=0.1, **kwargs)


def test_bad_split_sizes_name_the_parameter():
    (w,) = _params([(12, 4)])
    with pytest.raises(ValueError, match=r"'qkv'.*sum to 11, but the matrix has 12 rows"):
        Muon([w], lr=0.1, names={w: "qkv"}, split_sizes={w: (4, 4, 3)})
    with pytest.raises(ValueError, match="positive integers"):
        Muon([w], lr=0.1, split_sizes={w: (12, 0)})
    opt = Muon([w], lr=0.1, param_split_fn=lambda p: [5, 5])
    w.grad = torch.ones(12, 4)
    with pytest.raises(ValueError, match="sum to 10"):
        opt.step()
    with pytest.raises(ValueError, match="param_split_fn must be callable"):
        Muon([w], lr=0.1, param_split_fn=(4, 4, 4))
