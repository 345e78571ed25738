"""orthogonalize with a plan decided ahead and check_finite=False compiles with fullgraph=True (no graph break,
no host sync) and, under the aot_eager backend (eager's kernels), gives eager's bits."""

from __future__ import annotations

import pytest
import torch

from nsiter.evaluate import evaluation_plan, orthogonalize
from nsiter.registry import load_schedule


@pytest.mark.parametrize("method", ["standard", "gram"])
def test_compiled_orthogonalize_with_plan_equals_eager(method):
    sched = load_schedule("muon")
    G = torch.randn(3, 32, 48, generator=torch.Generator().manual_seed(0))
    plan = evaluation_plan(G.shape, sched, method=method)

    def f(G):
        return orthogonalize(G, sched, plan=plan, check_finite=False)

    eager = f(G)
    assert torch.equal(eager, orthogonalize(G, sched, method=method))  # the plan is the one planning picks
    torch._dynamo.reset()
    assert torch.equal(torch.compile(f, fullgraph=True, backend="aot_eager")(G), eager)
