"""The Gram form's two Q orderings (``nsiter.gram.gram_steps(q_order=...)``) compute the same function."""

from __future__ import annotations

import pytest
import torch

from nsiter import matrices
from nsiter.evaluate import normalize, orthogonalize
from nsiter.gram import Q_ORDERS, apply_q, gram_steps
from nsiter.kernels import Products, kernel_choice
from nsiter.registry import load_schedule
from tests.test_gram import MIXED, rel


def gram_run(G, sched, *, q_order, restarts=(), symmetric=False, dtype=torch.float64):
    """``X_T = Q_T X_0`` by ``gram_steps`` with the given ``q_order`` (R, Q and X in ``dtype``)."""
    ops = Products(kernel_choice("cpu", dtype, G.shape[-2], symmetric=symmetric), dtype, G.device, dtype)
    X0 = normalize(G, sched.normalization, dtype)
    *_, (X, Q) = gram_steps(X0, sched.steps, ops, restarts=restarts, q_order=q_order)
    return apply_q(Q, X, ops, torch.empty_like(X))


@pytest.mark.parametrize("restarts", [(), (2,), (1, 3, 5)])
@pytest.mark.parametrize("symmetric", [False, 8])
def test_both_orderings_are_the_standard_function_in_float64(restarts, symmetric):
    # W = q_k(R_k) - c_0 I and Q_k are polynomials in R_0, so W Q = Q W in exact arithmetic: both
    # orderings and the standard form agree to float64 rounding (degrees 1, 3, 5, 7, 9 and a cubic).
    G = matrices.log_uniform(24, 72, 1e-2, seed=1, batch=3).to(torch.float64)
    std = orthogonalize(G, MIXED, dtype=torch.float64, method="standard", symmetric=False)
    zq = gram_run(G, MIXED, q_order="zq", restarts=restarts, symmetric=symmetric)
    qz = gram_run(G, MIXED, q_order="qz", restarts=restarts, symmetric=symmetric)
    assert rel(zq, std) < 1e-12 and rel(qz, std) < 1e-12 and rel(zq, qz) < 1e-12
    # and "zq" is what orthogonalize runs: the identical arithmetic, bit for bit
    ref = orthogonalize(G, MIXED, dtype=torch.float64, method="gram", restarts=restarts, symmetric=symmetric)
    assert torch.equal(zq, ref)


@pytest.mark.parametrize("name", ["muon", "polar-express-5", "nsiter-7step"])
@pytest.mark.parametrize("symmetric", [False, 8])
def test_orderings_are_different_kernels_in_float32(name, symmetric):
    # The keyword takes effect: in float32 the two orderings round differently (W Q is not Q W bit
    # for bit), while each stays the same function (the float64 test above).
    sched = load_schedule(name)
    G = matrices.log_uniform(32, 96, 1e-3, seed=2).to(torch.float64)
    zq = gram_run(G, sched, q_order="zq", symmetric=symmetric, dtype=torch.float32)
    qz = gram_run(G, sched, q_order="qz", symmetric=symmetric, dtype=torch.float32)
    assert torch.isfinite(zq).all() and torch.isfinite(qz).all()
    assert not torch.equal(zq, qz)


def test_bad_q_order_is_named():
    sched = load_schedule("muon")
    G = matrices.log_uniform(8, 16, 1e-2, seed=0).to(torch.float64)
    assert Q_ORDERS == ("zq", "qz")
    with pytest.raises(ValueError, match="'wq'"):
        gram_run(G, sched, q_order="wq")
