"""No host synchronization in the hot path: ``orthogonalize(plan=..., check_finite=False)`` and a Muon step with
``check_finite=False`` (after the first step of each shape, which decides the plans) read no tensor value on the
host, so on CUDA they can be captured in a graph and never wait for the device.

Two independent checks.  A ``TorchFunctionMode`` records every call that moves a tensor value to Python (``item``,
``bool``, ``int``, ``float``, ``tolist``, ``cpu``, ``numpy``) or whose output shape depends on the data (``nonzero``,
``masked_select``, ``unique``): on the CPU these are cheap, on CUDA each is a device synchronization.  And the step
compiles with ``torch.compile(fullgraph=True)``, which refuses any data-dependent Python branch, and under the
``aot_eager`` backend (eager's kernels) gives eager's bits.
"""

from __future__ import annotations

import pytest
import torch
from torch.overrides import TorchFunctionMode

from nsiter.evaluate import evaluation_plan, orthogonalize
from nsiter.optim import Muon
from nsiter.registry import load_schedule

_SYNCING = {
    torch.Tensor.item,
    torch.Tensor.__bool__,
    torch.Tensor.__int__,
    torch.Tensor.__float__,
    torch.Tensor.__index__,
    torch.Tensor.tolist,
    torch.Tensor.cpu,
    torch.Tensor.numpy,
    torch.Tensor.nonzero,
    torch.nonzero,
    torch.masked_select,
    torch.Tensor.masked_select,
    torch.unique,
    torch.Tensor.unique,
}


class HostSyncs(TorchFunctionMode):
    """Records the name of every call in ``_SYNCING`` made while active (``.calls``)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in _SYNCING:
            self.calls.append(getattr(func, "__name__", str(func)))
        return func(*args, **(kwargs or {}))


def test_the_detector_sees_value_reads_and_data_dependent_shapes():
    x = torch.arange(4.0)
    with HostSyncs() as mode:
        bool(x.sum() > 0)
        x.max().item()
        torch.nonzero(x)
        x.tolist()
        _ = x * 2 + 1  # arithmetic is not a sync
    assert mode.calls == ["__bool__", "item", "nonzero", "tolist"]


def _params(seed: int = 0) -> list[torch.nn.Parameter]:
    """A small transformer-like set: square, tall, wide, a fused QKV split into 3 blocks, a conv weight."""
    gen = torch.Generator().manual_seed(seed)
    shapes = [(32, 32), (32, 32), (64, 32), (32, 64), (96, 32), (16, 8, 3, 3)]
    return [torch.nn.Parameter(torch.randn(*s, generator=gen)) for s in shapes]


def _grads(params, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen)


def _muon(params, check_finite: bool) -> Muon:
    return Muon(
        params, lr=0.02, weight_decay=0.1, check_finite=check_finite, split_sizes={params[4]: (32, 32, 32)}
    )


@pytest.mark.parametrize("method", ["standard", "gram"])
def test_orthogonalize_with_a_plan_makes_no_host_sync(method):
    sched = load_schedule("muon")
    G = torch.randn(3, 24, 40, generator=torch.Generator().manual_seed(1))
    plan = evaluation_plan(G.shape, sched, method=method)
    with HostSyncs() as mode:
        orthogonalize(G, sched, plan=plan, check_finite=False)
    assert mode.calls == []
    with HostSyncs() as mode:  # the check reads values: the detector sees it on the same call
        orthogonalize(G, sched, plan=plan)
    assert "__bool__" in mode.calls


def test_muon_step_after_the_first_makes_no_host_sync():
    params = _params()
    opt = _muon(params, check_finite=False)
    _grads(params, 1)
    opt.step()  # the first step of each shape decides its plan (kernel choice, method)
    _grads(params, 2)
    with HostSyncs() as mode:
        opt.step()
    assert mode.calls == []
    checked = _muon(_params(), check_finite=True)
    _grads(checked.param_groups[0]["params"], 1)
    with HostSyncs() as mode:  # the gradient check is one sync, and the detector sees it
        checked.step()
    assert mode.calls


def test_muon_step_compiles_fullgraph_and_equals_eager():
    """``torch.compile(step, fullgraph=True)`` raises on any graph break (a host read, a data-dependent branch);
    under ``aot_eager`` the compiled step runs eager's kernels, so parameters and momenta agree bit for bit."""
    eager_params, compiled_params = _params(), _params()  # equal values, separate tensors
    eager, compiled = _muon(eager_params, False), _muon(compiled_params, False)
    for opt, ps in ((eager, eager_params), (compiled, compiled_params)):
        _grads(ps, 1)
        opt.step()  # plans decided eagerly
    torch._dynamo.reset()
    step = torch.compile(compiled.step, fullgraph=True, backend="aot_eager")
    for seed in (2, 3):
        _grads(eager_params, seed)
        _grads(compiled_params, seed)
        eager.step()
        step()
    for p, q in zip(eager_params, compiled_params, strict=True):
        assert torch.equal(p, q)
        assert torch.equal(eager.state[p]["momentum_buffer"], compiled.state[q]["momentum_buffer"])
