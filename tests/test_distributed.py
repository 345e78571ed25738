"""DistributedMuon: ownership (LPT), single-process fallback, and 2 gloo processes on loopback under torchrun."""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import torch

from nsiter.optim import DistributedMuon, MuonWithAuxAdam, assign_owners
from tests.test_optim_batching import LOOSE, gemm_bits_agree

REPO = Path(__file__).resolve().parent.parent


def _optimum(costs: list[int], m: int) -> int:
    """Optimal makespan by brute force over all assignments (tiny instances)."""
    best = sum(costs)
    for owners in itertools.product(range(m), repeat=len(costs)):
        loads = [0] * m
        for c, o in zip(costs, owners, strict=True):
            loads[o] += c
        best = min(best, max(loads))
    return best


def test_assign_owners_within_grahams_bound():
    # Graham (1969): LPT makespan <= (4/3 - 1/(3m)) OPT; every item has exactly one owner in range
    gen = torch.Generator().manual_seed(0)
    for trial in range(30):
        m = 2 + trial % 2
        costs = torch.randint(1, 50, (7,), generator=gen).tolist()
        owners = assign_owners(costs, m)
        assert all(0 <= o < m for o in owners)
        loads = [sum(c for c, o in zip(costs, owners, strict=True) if o == r) for r in range(m)]
        assert sum(loads) == sum(costs)
        assert 3 * m * max(loads) <= (4 * m - 1) * _optimum(costs, m)


def test_assign_owners_classic_example():
    # costs (5, 4, 3, 3, 3) on 2 machines: LPT gives loads 8 and 10; the optimum is 9 = 5+4 = 3+3+3
    owners = assign_owners([5, 4, 3, 3, 3], 2)
    loads = sorted(sum(c for c, o in zip([5, 4, 3, 3, 3], owners, strict=True) if o == r) for r in range(2))
    assert loads == [8, 10]
    assert _optimum([5, 4, 3, 3, 3], 2) == 9
    assert assign_owners([3, 1, 2], 1) == [0, 0, 0]


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(12, 32),
        torch.nn.GELU(),
        torch.nn.Linear(32, 24),
        torch.nn.GELU(),
        torch.nn.Linear(24, 5),
    )


def test_without_process_group_equals_single_process():
    a, b = _model(), _model()
    oa = DistributedMuon(a, lr=0.02, adam_lr=1e-2)
    ob = MuonWithAuxAdam(b, lr=0.02, adam_lr=1e-2)
    x = torch.randn(16, 12, generator=torch.Generator().manual_seed(1))
    for _ in range(3):
        for net, opt in ((a, oa), (b, ob)):
            opt.zero_grad()
            net(x).square().mean().backward()
            opt.step()
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)


WORKER = textwrap.dedent(
    """
    import datetime, sys
    import torch, torch.distributed as dist
    torch.set_num_threads(1)
    from nsiter.optim import DistributedMuon, MuonWithAuxAdam

    def model():
        torch.manual_seed(0)
        return torch.nn.Sequential(
            torch.nn.Linear(12, 32), torch.nn.GELU(), torch.nn.Linear(32, 24), torch.nn.GELU(),
            torch.nn.Unflatten(1, (24, 1)), torch.nn.Conv1d(24, 16, 1), torch.nn.Flatten(),
            torch.nn.Linear(16, 5))

    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
    rank = dist.get_rank()
    nets = {"dist": model(), "single": model()}
    opts = {"dist": DistributedMuon(nets["dist"], lr=0.02, adam_lr=1e-2, schedule="polar-express-5"),
            "single": MuonWithAuxAdam(nets["single"], lr=0.02, adam_lr=1e-2, schedule="polar-express-5")}
    x = torch.randn(16, 12, generator=torch.Generator().manual_seed(1))  # same batch on every rank
    for _ in range(4):
        for key in ("dist", "single"):
            opts[key].zero_grad()
            nets[key](x).square().mean().backward()
            opts[key].step()
    order = {key: [p for g in opts[key].param_groups for p in g["params"]] for key in opts}  # owners() order
    owned = [i for i, p in enumerate(order["dist"]) if p in opts["dist"].state]
    mine = {i: opts["dist"].state[order["dist"][i]] for i in owned}
    ref = {i: opts["single"].state[order["single"][i]] for i in owned}
    state_equal = all(torch.equal(mine[i][k], ref[i][k]) for i in owned for k in mine[i])
    # the consolidated state equals the single-process state; a fresh sharded optimizer resumes from it
    full, single_sd = opts["dist"].consolidated_state_dict(), opts["single"].state_dict()
    consolidated_equal = sorted(full["state"]) == sorted(single_sd["state"]) == list(range(len(order["dist"])))
    consolidated_equal &= all(
        sorted(full["state"][i]) == sorted(st) and all(torch.equal(full["state"][i][k], v) for k, v in st.items())
        for i, st in single_sd["state"].items())
    params = [p.detach().clone() for p in nets["dist"].parameters()]
    single4 = [p.detach().clone() for p in nets["single"].parameters()]
    resumed = DistributedMuon(nets["dist"], lr=0.5, adam_lr=0.5)
    resumed.load_state_dict(full)
    kept = sorted(i for i, p in enumerate(order["dist"]) if p in resumed.state)
    for _ in range(2):
        for net, opt in ((nets["dist"], resumed), (nets["single"], opts["single"])):
            opt.zero_grad()
            net(x).square().mean().backward()
            opt.step()
    # a rank batches what it owns: 6 of 16 x 8 and 2 of 8 x 16 (their transposes), one orthogonalize call a rank
    import nsiter.optim.muon as muon_module
    calls, original = [], muon_module.orthogonalize
    def counting(G, *args, **kwargs):
        calls.append(tuple(G.shape))
        return original(G, *args, **kwargs)
    gen = torch.Generator().manual_seed(2)
    init = [torch.randn(16, 8, generator=gen) for _ in range(6)] + [torch.randn(8, 16, generator=gen) for _ in range(2)]
    grads = [torch.randn(w.shape, generator=gen) for w in init]
    same = {key: [torch.nn.Parameter(w.clone()) for w in init] for key in ("dist", "loop")}
    bopts = {"dist": DistributedMuon(same["dist"], lr=0.02), "loop": MuonWithAuxAdam(same["loop"], lr=0.02, batch=False)}
    muon_module.orthogonalize = counting
    for key in ("dist", "loop"):
        for w, g in zip(same[key], grads):
            w.grad = g.clone()
        n0 = len(calls)
        bopts[key].step()
        if key == "dist":
            batched_calls = calls[n0:]
    muon_module.orthogonalize = original
    torch.save({"params": params, "single": single4,
                "batched_calls": batched_calls, "batched_owners": bopts["dist"].owners(),
                "batched": [w.detach() for w in same["dist"]], "looped": [w.detach() for w in same["loop"]],
                "init": init,
                "resumed": [p.detach() for p in nets["dist"].parameters()],
                "single6": [p.detach() for p in nets["single"].parameters()],
                "owners": opts["dist"].owners(), "owned": owned, "kept": kept,
                "consolidated_equal": consolidated_equal,
                "state_equal": state_equal},
               sys.argv[1] + f"/rank{rank}.pt")
    dist.destroy_process_group()
    """
)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_match_single_process(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "PYTHONPATH": str(REPO), "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--nnodes=1",
        "--master_addr=127.0.0.1",
        f"--master_port={_free_port()}",
        str(script),
        str(tmp_path),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=80)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    # both ranks end with the single-process optimizer's parameters, bit for bit
    for res in (r0, r1):
        for p, q in zip(res["params"], res["single"], strict=True):
            assert torch.equal(p, q)
        assert res["state_equal"]
        assert res["consolidated_equal"]
        assert res["kept"] == res["owned"]  # loading a consolidated dict keeps only this rank's shard
        for p, q in zip(res["resumed"], res["single6"], strict=True):
            assert torch.equal(p, q)
    # ZeRO-1: each rank holds state for exactly the parameters it owns, and the two shards partition them
    assert r0["owners"] == r1["owners"]
    assert sorted(r0["owned"] + r1["owned"]) == list(range(len(r0["owners"])))
    assert r0["owned"] == [i for i, o in enumerate(r0["owners"]) if o == 0]
    assert set(r0["owners"]) == {0, 1}
    # each rank stacks the matrices it owns (8 of one shape up to transpose: 4 a rank by LPT) into one call, and
    # ends with the per-parameter loop's parameters (bit for bit where batched GEMMs round as single ones do)
    exact = gemm_bits_agree([(8, 16)])
    assert r0["batched_owners"] == r1["batched_owners"]
    for r, res in enumerate((r0, r1)):
        assert res["batched_calls"] == [(res["batched_owners"].count(r), 8, 16)] == [(4, 8, 16)]
        for p, q, w in zip(res["batched"], res["looped"], res["init"], strict=True):
            assert torch.equal(p, q) if exact else float((p - q).norm()) <= LOOSE * float((q - w).norm())
