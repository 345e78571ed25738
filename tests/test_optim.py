"""Muon: agreement with torch.optim.Muon, update scaling, weight decay, AdamW routing, state_dict, bad input."""

from __future__ import annotations

import inspect
import io
import math

import pytest
import torch
from torch import nn
from torch.optim import _muon as torch_muon

from nsiter.evaluate import evaluation_plan, orthogonalize
from nsiter.optim import METHODS, Muon, MuonWithAuxAdam, muon_param_groups, update_scale
from nsiter.polynomial import OddPolynomial
from nsiter.registry import load_schedule
from nsiter.schedule import Normalization, Provenance, Schedule

BF16_EPS = 2.0**-8  # unit roundoff of bfloat16 (8 significand bits)


def torch_schedule() -> Schedule:
    """Muon's schedule built from torch's own constants (an independent copy of the registry's ``muon``)."""
    poly = OddPolynomial([torch_muon.DEFAULT_A, torch_muon.DEFAULT_B, torch_muon.DEFAULT_C])
    return Schedule.repeated(
        "torch-muon",
        poly,
        torch_muon.DEFAULT_NS_STEPS,
        Provenance("repository", "torch/optim/_muon.py"),
        normalization=Normalization(eps=torch_muon.EPS),
    )


def _pair(shapes, **kw):
    torch.manual_seed(0)
    w0 = [torch.randn(s) for s in shapes]
    a = [w.clone().requires_grad_() for w in w0]
    b = [w.clone().requires_grad_() for w in w0]
    return w0, a, b


def _feed(params_a, params_b, gen):
    for pa, pb in zip(params_a, params_b, strict=True):
        g = torch.randn(pa.shape, generator=gen)
        pa.grad = g.clone()
        pb.grad = g.clone()


def test_registry_muon_is_torchs_schedule():
    ours = load_schedule("muon")
    ref = torch_schedule()
    assert [p.coefficients for p in ours.steps] == [p.coefficients for p in ref.steps]
    assert ours.normalization.eps == ref.normalization.eps


@pytest.mark.parametrize(
    ("ours", "theirs", "nesterov"), [("jordan", "original", True), ("moonlight", "match_rms_adamw", False)]
)
def test_matches_torch_muon_step_for_step(ours, theirs, nesterov):
    # Same gradients into torch.optim.Muon, our Muon in bf16 (standard form, torch's arithmetic), our Muon with the
    # Gram form, our default (method="auto") and our Muon in float64, for 6 steps.  "Within bf16 rounding": the
    # bf16 standard-form implementations differ by no more than twice the bf16 rounding error itself (distance of
    # torch's bf16 trajectory from the float64 one; same arithmetic, summation order aside), at every step.  The
    # Gram form keeps R, Q in float32 on every CPU kind (nsiter.gram.default_gram_dtype), whether the X side runs
    # bf16 natively (AVX-512 bf16) or emulated (AVX2): it rounds X to bf16 only at X_0, its restarts and Q X,
    # where the standard form rounds X, A and B at every step, so it is no further from float64 than torch's bf16
    # (measured 0.58-0.60x native, 0.18x emulated, AMD EPYC Zen 5).  With R, Q in bf16 beside a native bf16 X
    # side it measured 1.4x: the plan must not pick that on a CPU.
    shapes = [(48, 24), (16, 40)]
    w0, a, b = _pair(shapes)
    c = [w.clone().requires_grad_() for w in w0]
    d = [w.clone().requires_grad_() for w in w0]
    e = [w.clone().requires_grad_() for w in w0]
    kw = {"lr": 0.02, "weight_decay": 0.1, "nesterov": nesterov}
    ours_opt = Muon(a, schedule="muon", adjust_lr=ours, method="standard", **kw)
    gram = Muon(d, schedule="muon", adjust_lr=ours, method="gram", **kw)
    default = Muon(e, schedule="muon", adjust_lr=ours, **kw)
    for shape in shapes:
        assert evaluation_plan(shape, "muon", method="gram").gram_dtype == "float32"
    exact = Muon(c, schedule="muon", adjust_lr=ours, dtype=torch.float64, method="standard", **kw)
    ref = torch.optim.Muon(b, adjust_lr_fn=theirs, **kw)
    gen = torch.Generator().manual_seed(1)
    for _ in range(6):
        _feed(a, b, gen)
        for pc, pd, pe, pb in zip(c, d, e, b, strict=True):
            pc.grad = pb.grad.clone()
            pd.grad = pb.grad.clone()
            pe.grad = pb.grad.clone()
        for opt in (ours_opt, ref, exact, gram, default):
            opt.step()
        for pa, pb, pc, pd, pe, w in zip(a, b, c, d, e, w0, strict=True):
            rounding = (pb - pc).norm().item()
            assert 0 < rounding < 0.05 * (pc - w).norm().item()  # bf16 Muon: a few % (p'(0)^5 amplifies)
            assert (pa - pb).norm().item() <= 2.0 * rounding
            assert (pd - pc).norm().item() <= rounding
            assert (pe - pc).norm().item() <= rounding or (pe - pb).norm().item() <= 2.0 * rounding
    for pa, pb in zip(a, b, strict=True):
        # the momentum buffers are float32 arithmetic on the same gradients: equal
        torch.testing.assert_close(ours_opt.state[pa]["momentum_buffer"], ref.state[pb]["momentum_buffer"])


def test_disagrees_with_torch_when_conventions_differ():
    # the agreement test can fail: Moonlight's scaling on a 48x24 matrix is 0.2*sqrt(48) ~ 1.39 vs sqrt(2) ~ 1.41 in
    # Jordan's, under 2 % apart; a different schedule (classical cubic, 5 steps) is far off
    w0, a, b = _pair([(48, 24)])
    cubic = Schedule.repeated("c", OddPolynomial(exact=["3/2", "-1/2"]), 5, Provenance("user", "test"))
    ours = Muon(a, lr=0.02, schedule=cubic)
    ref = torch.optim.Muon(b, lr=0.02, weight_decay=0.0)
    _feed(a, b, torch.Generator().manual_seed(1))
    ours.step()
    ref.step()
    assert ((a[0] - b[0]).norm() / (b[0] - w0[0]).norm()).item() > 0.1


def test_update_scale_closed_forms():
    assert update_scale("jordan", 512, 128) == 2.0  # sqrt(512/128)
    assert update_scale("jordan", 128, 512) == 1.0  # max(1, 1/4)
    assert update_scale("original", 200, 50) == 2.0  # torch's name is an alias
    assert math.isclose(update_scale("moonlight", 100, 400), 0.2 * 20.0)
    assert update_scale("match_rms_adamw", 400, 100) == update_scale("moonlight", 100, 400)
    assert update_scale(None, 1000, 1) == 1.0
    with pytest.raises(ValueError, match="adjust_lr"):
        update_scale("bogus", 2, 2)


def test_moonlight_update_has_rms_0_2():
    # Liu et al. 2025 (arXiv:2502.16982, Sec. 2.2): with an exactly orthogonal O (rank n), RMS(O) = sqrt(n/(mn))
    # = 1/sqrt(m), so 0.2*sqrt(max(m, n)) * O has RMS 0.2.  Converged schedule: 30 cubic steps in float64.
    cubic = Schedule.repeated("c", OddPolynomial(exact=["3/2", "-1/2"]), 40, Provenance("user", "test"))
    torch.manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(64, 16, dtype=torch.float64))
    w = torch.zeros(64, 16, dtype=torch.float64, requires_grad=True)
    opt = Muon([w], lr=1.0, momentum=0.0, schedule=cubic, adjust_lr="moonlight", dtype=torch.float64)
    w.grad = q * torch.linspace(0.5, 1.0, 16, dtype=torch.float64)  # singular values in [0.5, 1]
    opt.step()
    rms = w.detach().pow(2).mean().sqrt().item()
    assert math.isclose(rms, 0.2, rel_tol=1e-9)
    torch.testing.assert_close(-w.detach() / (0.2 * 8.0), q)  # the update is the polar factor of the gradient


def test_decoupled_weight_decay_with_zero_gradient():
    # zero gradient: the orthogonalized update is 0 (normalization maps zeros to zeros), so W <- (1 - lr wd) W
    w = torch.randn(6, 4, requires_grad=True)
    w0 = w.detach().clone()
    opt = Muon([w], lr=0.1, weight_decay=0.5)
    w.grad = torch.zeros_like(w)
    opt.step()
    torch.testing.assert_close(w.detach(), w0 * (1 - 0.1 * 0.5))


def test_conv_weight_is_flattened():
    # a (out, in, kh, kw) kernel is orthogonalized as the (out, in*kh*kw) matrix: the update of the 4-D weight
    # equals the update of the same numbers held as a 2-D weight
    torch.manual_seed(0)
    k = torch.randn(8, 3, 3, 3)
    g = torch.randn(8, 3, 3, 3)
    a = k.clone().requires_grad_()
    b = k.reshape(8, 27).clone().requires_grad_()
    oa, ob = Muon([a], lr=0.05), Muon([b], lr=0.05)
    a.grad, b.grad = g.clone(), g.reshape(8, 27).clone()
    oa.step()
    ob.step()
    torch.testing.assert_close(a.detach().reshape(8, 27), b.detach())


def test_one_dimensional_parameter_is_rejected_by_shape():
    with pytest.raises(ValueError, match=r"shape \(7,\)"):
        Muon([torch.zeros(7, requires_grad=True)], lr=0.01)
    with pytest.raises(ValueError, match=r"shape \(\)"):
        Muon([torch.zeros((), requires_grad=True)], lr=0.01)


@pytest.mark.parametrize(
    ("kw", "match"),
    [({"lr": -1.0}, "lr"), ({"momentum": 1.0}, "momentum"), ({"weight_decay": -0.1}, "weight_decay")],
)
def test_bad_hyperparameters(kw, match):
    args = {"lr": 0.01, **kw}
    with pytest.raises(ValueError, match=match):
        Muon([torch.zeros(3, 3, requires_grad=True)], **args)


def test_unknown_schedule_and_dtype():
    with pytest.raises(ValueError, match="no-such-schedule"):
        Muon([torch.zeros(3, 3, requires_grad=True)], lr=0.01, schedule="no-such-schedule")
    with pytest.raises(ValueError, match="int8"):
        Muon([torch.zeros(3, 3, requires_grad=True)], lr=0.01, dtype="int8")


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 8)
        self.hidden = nn.Linear(8, 8)
        self.conv = nn.Conv1d(8, 8, 3)
        self.norm = nn.LayerNorm(8)
        self.head = nn.Linear(8, 5)


def test_param_groups_route_non_matrices_to_adamw():
    net = _Net()
    groups = muon_param_groups(net, adam_names=("head",))
    muon_names = next(g["names"] for g in groups if g["use_muon"])
    adam_names = next(g["names"] for g in groups if not g["use_muon"])
    assert muon_names == ["hidden.weight", "conv.weight"]
    assert set(adam_names) == {
        "embed.weight",
        "hidden.bias",
        "conv.bias",
        "norm.weight",
        "norm.bias",
        "head.weight",
        "head.bias",
    }


def test_aux_adamw_matches_torch_adamw():
    # the AdamW half follows torch.optim.AdamW's arithmetic exactly (float32, 5 steps)
    torch.manual_seed(0)
    net_a, net_b = _Net(), _Net()
    net_b.load_state_dict(net_a.state_dict())
    opt_a = MuonWithAuxAdam(net_a, lr=0.02, adam_lr=1e-2, adam_weight_decay=0.1, adam_names=("head",))
    adam_a = [p for g in opt_a.param_groups if not g["use_muon"] for p in g["params"]]
    index = {id(p): i for i, p in enumerate(net_a.parameters())}
    params_b = list(net_b.parameters())
    adam_b = [params_b[index[id(p)]] for p in adam_a]
    opt_b = torch.optim.AdamW(adam_b, lr=1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    gen = torch.Generator().manual_seed(3)
    for _ in range(5):
        for pa, pb in zip(adam_a, adam_b, strict=True):
            g = torch.randn(pa.shape, generator=gen)
            pa.grad, pb.grad = g.clone(), g.clone()
        opt_a.step()
        opt_b.step()
    for pa, pb in zip(adam_a, adam_b, strict=True):
        torch.testing.assert_close(pa.detach(), pb.detach(), rtol=1e-6, atol=1e-7)


def test_aux_adamw_equals_torch_adamw_bit_for_bit():
    # the AdamW half is torch's functional AdamW: parameters (2-D, 3-D, 1-D and 0-D, one of them without a gradient
    # at one step) and state equal torch.optim.AdamW's exactly, with Muon stepping matrices beside them
    gen = torch.Generator().manual_seed(4)
    shapes = [(10, 8), (4, 3, 2), (8,), (5,), ()]
    adam_a = [nn.Parameter(torch.randn(s, generator=gen)) for s in shapes]
    adam_b = [nn.Parameter(p.detach().clone()) for p in adam_a]
    mats = [nn.Parameter(torch.randn(12, 6, generator=gen)), nn.Parameter(torch.randn(6, 12, generator=gen))]
    hyper = {"lr": 3e-3, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.05}
    opt_a = MuonWithAuxAdam(
        [{"params": mats}, {"params": adam_a, "use_muon": False}],
        adam_lr=hyper["lr"],
        adam_betas=hyper["betas"],
        adam_eps=hyper["eps"],
        adam_weight_decay=hyper["weight_decay"],
    )
    opt_b = torch.optim.AdamW(adam_b, **hyper)
    for t in range(6):
        for p in mats:
            p.grad = torch.randn(p.shape, generator=gen)
        for pa, pb in zip(adam_a, adam_b, strict=True):
            g = torch.randn(pa.shape, generator=gen)
            pa.grad, pb.grad = g.clone(), g.clone()
        if t == 2:
            adam_a[2].grad = adam_b[2].grad = None
        opt_a.step()
        opt_b.step()
        for pa, pb in zip(adam_a, adam_b, strict=True):
            assert torch.equal(pa, pb)
    for pa, pb in zip(adam_a, adam_b, strict=True):
        sa, sb = opt_a.state[pa], opt_b.state[pb]
        assert sorted(sa) == sorted(sb) == ["exp_avg", "exp_avg_sq", "step"]
        for key in sb:
            assert torch.equal(sa[key], sb[key]) and sa[key].dtype == sb[key].dtype, key
            assert sa[key].device == sb[key].device, key
    assert float(opt_a.state[adam_a[2]]["step"]) == 5.0


def test_aux_signature_lists_every_muon_argument():
    # MuonWithAuxAdam forwards Muon's arguments (**kwargs); its signature is derived from Muon's, so a Muon option
    # added later appears here without a second edit, in Muon's kind and default (lr: 0.02 here)
    muon = inspect.signature(Muon).parameters
    aux = inspect.signature(MuonWithAuxAdam).parameters
    for name, p in list(muon.items())[1:]:  # all but params, which is model_or_groups here
        assert name in aux, name
        assert aux[name].kind == p.kind, name
        assert name == "lr" or aux[name].default == p.default, name
    assert aux["lr"].default == 0.02
    positional = [name for name, p in muon.items() if p.kind == p.POSITIONAL_OR_KEYWORD]
    assert [name for name, p in aux.items() if p.kind == p.POSITIONAL_OR_KEYWORD] == [
        "model_or_groups",
        *positional[1:],
    ]
    assert set(aux) - set(muon) == {"model_or_groups", "adam_lr", "adam_weight_decay", "adam_names"}
    # DistributedMuon forwards MuonWithAuxAdam's the same way, adding only its process group
    from nsiter.optim import DistributedMuon

    dist_params = inspect.signature(DistributedMuon).parameters
    assert list(dist_params) == [*aux, "process_group"]
    assert all(dist_params[name] == p for name, p in aux.items())
    # every keyword of Muon's is accepted, at its default
    defaults = {name: p.default for name, p in muon.items() if p.default is not p.empty}
    assert MuonWithAuxAdam(_Net(), **defaults).param_groups[0]["lr"] == defaults.get("lr", 0.02)


def test_aux_forwards_positional_and_keyword_arguments():
    net = _Net()
    opt = MuonWithAuxAdam(
        net,
        0.01,
        0.9,
        False,
        "polar-express-5",
        0.1,
        "moonlight",
        adam_lr=1e-3,
        adam_betas=(0.8, 0.9),
        adam_eps=1e-6,
        adam_names=("head",),
        batch=False,
        check_finite=False,
        names={net.hidden.weight: "the hidden layer"},
    )
    muon, adam = opt.param_groups
    assert (muon["lr"], muon["momentum"], muon["nesterov"], muon["weight_decay"]) == (0.01, 0.9, False, 0.1)
    assert (muon["adjust_lr"], muon["batch"], muon["schedule"]["name"]) == (
        "moonlight",
        False,
        "polar-express-5",
    )
    assert (adam["lr"], adam["betas"], adam["eps"], adam["weight_decay"]) == (1e-3, (0.8, 0.9), 1e-6, 0.0)
    assert opt.check_finite is False
    # names: the given table on top of the model's qualified names
    assert opt._names[net.hidden.weight] == "the hidden layer"
    assert opt._names[net.conv.weight] == "conv.weight"
    with pytest.raises(ValueError, match="names must be a dict keyed by parameter or None"):
        MuonWithAuxAdam(net, names=["hidden"])


def test_state_dict_round_trip_continues_identically():
    # train 3 steps, save (weights_only load), restore into a fresh optimizer, continue: same as uninterrupted
    def run(split: bool):
        torch.manual_seed(0)
        net = _Net()
        opt = MuonWithAuxAdam(net, lr=0.02, adam_lr=1e-2, schedule="polar-express-5", adam_names=("head",))
        gen = torch.Generator().manual_seed(5)
        for t in range(6):
            if split and t == 3:
                buf = io.BytesIO()
                torch.save(opt.state_dict(), buf)
                buf.seek(0)
                opt = MuonWithAuxAdam(net, lr=0.5, adam_lr=0.5, adam_names=("head",))  # overwritten by load
                opt.load_state_dict(torch.load(buf, weights_only=True))
            for p in net.parameters():
                p.grad = torch.randn(p.shape, generator=gen)
            opt.step()
        return [p.detach().clone() for p in net.parameters()], opt

    plain, _ = run(False)
    resumed, opt = run(True)
    for a, b in zip(plain, resumed, strict=True):
        assert torch.equal(a, b)
    assert opt.param_groups[0]["schedule"]["name"] == "polar-express-5"
    assert opt.schedule_of(opt.param_groups[0]).name == "polar-express-5"


@pytest.mark.parametrize("method", METHODS)
def test_method_reaches_the_evaluator(method):
    # each group's method is the evaluator's: one step's update is -lr s(m, n) orthogonalize(U, method=...), with
    # U the Nesterov momentum (1 - mu) G + mu B, B = (1 - mu) G at the first step; the stored restarts apply
    torch.manual_seed(3)
    w0 = torch.randn(40, 12, dtype=torch.float64)
    g = torch.randn(40, 12, dtype=torch.float64)
    w = w0.clone().requires_grad_()
    opt = Muon([w], lr=0.1, schedule="polar-express-gram", dtype=torch.float32, method=method)
    w.grad = g.clone()
    opt.step()
    mu = 0.95
    U = g.lerp(torch.zeros_like(g).lerp_(g, 1 - mu), mu)  # torch.optim.Muon's arithmetic, as in Muon
    ortho = orthogonalize(U, load_schedule("polar-express-gram"), dtype=torch.float32, method=method)
    torch.testing.assert_close(
        w.detach(), w0 - 0.1 * update_scale("jordan", 40, 12) * ortho, rtol=0, atol=1e-15
    )
    assert opt.state_dict()["param_groups"][0]["method"] == method


def test_method_per_group_and_bad_method():
    a, b = torch.zeros(8, 4, requires_grad=True), torch.zeros(4, 8, requires_grad=True)
    opt = Muon([{"params": [a], "method": "gram"}, {"params": [b]}], lr=0.1, method="standard")
    assert [g["method"] for g in opt.param_groups] == ["gram", "standard"]
    with pytest.raises(ValueError, match="method must be one of"):
        Muon([a], lr=0.1, method="fast")
    with pytest.raises(ValueError, match="method must be one of"):
        opt.add_param_group({"params": [torch.zeros(3, 3, requires_grad=True)], "method": "newton"})
