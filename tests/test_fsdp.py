"""Muon on FSDP2 shards: owner assignment, the exchange, equality with single-process Muon, DCP resume on one process.

The distributed part runs ``tests/fsdp_worker.py`` under ``torchrun --nproc-per-node 2`` (gloo on loopback) once
per session and reads what each rank saved.
"""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nsiter.optim import Muon, assign_owners
from nsiter.optim.fsdp import is_dtensor, matrix_cost, shard_layout
from tests.test_optim_batching import LOOSE, gemm_bits_agree

REPO = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).resolve().parent / "fsdp_worker.py"
# float64 rounding: the split-batch run sums the gradient in another order (a few units of 2^-53 ~ 1.1e-16), and
# the iteration amplifies input differences at most by its slope at 0, prod p_t'(0) ~ 990 for polar-express-5;
# over 5 steps with a factor 2 of slack: 1.1e-16 * 990 * 5 * 2 ~ 1.1e-12, times 10 for the summation: 1e-11 |W|
F64_TOL = 1e-11


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> tuple[dict, dict, Path]:
    out = tmp_path_factory.mktemp("fsdp")
    env = {**os.environ, "PYTHONPATH": str(REPO), "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node=2",
        "--nnodes=1",
        "--master-addr=127.0.0.1",
        f"--master-port={_free_port()}",
        str(WORKER),
        str(out),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-4000:]
    r0, r1 = (torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    return r0, r1, out


def test_plain_tensors_have_no_shard_layout():
    w = torch.zeros(4, 3)
    assert not is_dtensor(w)
    assert shard_layout(w) is None
    assert matrix_cost((6, 8, 3)) == 6 * 24 * 6  # conv kernel viewed as 6 x 24
    with pytest.raises(ValueError, match="method"):
        Muon([torch.zeros(3, 3, requires_grad=True)], lr=0.1, method="fast")


def test_exchange_assembles_transforms_and_reshards(ranks):
    # uneven rows (7 on 2 ranks: 4 + 3), a rank without rows (1: 1 + 0), Shard(1), a 3-D tensor
    r0, r1, _ = ranks
    assert r0["layout_sizes"] == [(4, 3), (1, 0), (2, 1), (5, 4), (1, 1)]
    for res in (r0, r1):
        assert res["exchange_equal"]  # bit for bit the piece of fn(full) that torch.chunk gives this rank
    owners = r0["exchange_owners"]
    assert owners == r1["exchange_owners"]
    # each item transformed exactly once, by its owner
    assert r0["exchange_seen"] == [i for i, o in enumerate(owners) if o == 0]
    assert r1["exchange_seen"] == [i for i, o in enumerate(owners) if o == 1]


def _optimum(costs: list[int], m: int) -> int:
    best = sum(costs)
    for owners in itertools.product(range(m), repeat=len(costs)):
        best = min(best, max(sum(c for c, o in zip(costs, owners, strict=True) if o == r) for r in range(m)))
    return best


def test_each_rank_orthogonalizes_its_share(ranks):
    # per step, each rank calls orthogonalize only on plain tensors (no DTensor gathered implicitly), each matrix
    # is orthogonalized by exactly one rank, and the flops are split by LPT: within Graham's 7/6 of the optimum
    r0, r1, _ = ranks
    shapes = r0["matrix_shapes"]
    costs = [matrix_cost(s) for s in shapes]
    assert r0["dtensor_calls"] == r1["dtensor_calls"] == 0
    assert sorted(r0["calls_per_step"] + r1["calls_per_step"]) == sorted(shapes)
    owners = assign_owners(costs, 2)
    for r, res in enumerate((r0, r1)):
        assert res["flops_per_step"] == sum(c for c, o in zip(costs, owners, strict=True) if o == r)
    loads = [r0["flops_per_step"], r1["flops_per_step"]]
    assert sum(loads) == sum(costs)
    assert 6 * max(loads) <= 7 * _optimum(costs, 2)
    # this model: the 32 x 36 matrix alone is 51.4% of the flops, so 51.4% on the busier rank is the optimum
    assert max(loads) == _optimum(costs, 2) == max(costs)
    assert max(loads) / sum(costs) < 0.52
    # DTensor's implicit path (the per-parameter update) orthogonalizes every matrix on every rank
    for res in (r0, r1):
        assert sorted(res["fallback_calls"]) == sorted(shapes)
        assert res["fallback_equal"]  # and gives the same bits as the owner path
        assert res["state_sharded"]  # the momentum stays a DTensor holding this rank's rows only


def test_fsdp_muon_equals_single_process(ranks):
    r0, r1, _ = ranks
    for res in (r0, r1):
        # same batch on both ranks, bf16 Newton–Schulz: every bit as in the unsharded optimizer
        assert res["same_batch_max_diff"] == 0.0
        # each rank half the batch, float64: the gradient's summation order differs, nothing else
        assert res["split_batch_max_diff"] <= F64_TOL * res["param_scale"]


def test_non_finite_piece_on_one_rank_stops_every_rank(ranks):
    # rank 1 alone holds the NaN; the max-reduced counts make both ranks raise before anything is mutated
    r0, r1, _ = ranks
    assert "in this rank's piece" in r1["nan_refused"] and "1 in" in r1["nan_refused"]
    assert "0 in this rank's piece" in r0["nan_refused"]
    assert r0["nan_unchanged"] and r1["nan_unchanged"]


@pytest.mark.filterwarnings("ignore:torch.distributed is disabled:UserWarning")  # DCP's note: one process
def test_dcp_checkpoint_resumes_on_one_process(ranks):
    # the 2-rank DCP checkpoint (sharded model and optimizer state) loads into an unsharded model and
    # single-process optimizer, whose next step gives the parameters the 2 ranks computed
    from torch.distributed.checkpoint import load
    from torch.distributed.checkpoint.state_dict import (
        get_model_state_dict,
        get_optimizer_state_dict,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    from tests.fsdp_worker import model, optimizer, step

    r0, r1, out = ranks
    net = model(torch.float64)
    opt = optimizer(net, "polar-express-5", torch.float64)
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()  # everything must come from the checkpoint
    sd = {"model": get_model_state_dict(net), "optim": get_optimizer_state_dict(net, opt)}
    load(sd, checkpoint_id=str(out / "ckpt"))
    set_model_state_dict(net, sd["model"])
    set_optimizer_state_dict(net, opt, sd["optim"])
    assert opt.state[net[0].weight]["step"] == 4  # AdamW's step count came back
    step(net, opt, r0["x"], r0["y"])
    scale = max(p.abs().max().item() for p in net.parameters())
    diff = max(
        (p - q).abs().max().item() for p, q in zip(net.parameters(), r0["after_resume_step"], strict=True)
    )
    assert diff <= F64_TOL * scale
    for p, q in zip(r0["after_resume_step"], r1["after_resume_step"], strict=True):
        assert torch.equal(p, q)


def test_qk_clip_on_shards_equals_the_single_process_clip(ranks):
    # each rank saw half of the batch: the maxima are all-reduced before the per-head factors, so both ranks clip
    # by the factors of the whole batch, and the sharded rows match the single-process clip to float64 rounding
    r0, r1, _ = ranks
    both = torch.maximum(r0["clip_local_max"], r1["clip_local_max"])
    torch.testing.assert_close(both, r0["clip_global_max"], rtol=1e-14, atol=0)
    assert not torch.equal(r0["clip_local_max"], r1["clip_local_max"])  # the all-reduce had something to do
    for res in (r0, r1):
        assert bool((res["clip_global_max"] > 1.0).all())  # tau = 1: every head is clipped
        torch.testing.assert_close(res["clip_gammas"][0], res["clip_gammas"][1], rtol=1e-14, atol=0)
        assert res["clip_max_diff"] <= 1e-14


def test_owners_batch_what_they_hold(ranks):
    # 7 matrices of 8 x 16 up to transpose (cost 1024 each) and a 24 x 8 split into three 8 x 8 (cost 1536): LPT
    # gives the fused one to rank 0 and alternates the rest; each owner stacks its 8 x 16s in one call, its blocks
    # in another, and every rank ends with the unsharded per-parameter loop's weights
    r0, r1, _ = ranks
    owners = r0["owner_owners"]
    assert owners == r1["owner_owners"] == assign_owners([1024] * 7 + [1536], 2)
    for r, res in enumerate((r0, r1)):
        n = sum(1 for o in owners[:7] if o == r)
        want = [(n, 8, 16)] + ([(3, 8, 8)] if owners[7] == r else [])
        assert sorted(res["owner_calls"]) == sorted(want)
    exact = gemm_bits_agree([(8, 16), (8, 8)])
    for res in (r0, r1):
        for p, q, w in zip(res["owner_batched"], res["owner_looped"], res["owner_init"], strict=True):
            assert torch.equal(p, q) if exact else float((p - q).norm()) <= LOOSE * float((q - w).norm())
