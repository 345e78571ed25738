"""Hostile input, second table: the classes of silent wrong results and tracebacks found on a third CPU kind.

Each case runs under an alarm (``tests.test_hostile_input.alarm``).  API cases raise ``ValueError`` naming the
bad value before any state changes; the "silent wrong result" classes assert the correct behaviour too.
"""

from __future__ import annotations

import json

import pytest
import torch

import nsiter.cli
from nsiter.evaluate import orthogonalize
from nsiter.matrices import with_spectrum
from nsiter.measure import log_uniform_cases, polar_factor
from nsiter.optim import Muon, MuonWithAuxAdam
from nsiter.records import trajectory
from nsiter.registry import load_schedule
from tests.test_hostile_input import alarm  # noqa: F401  (the autouse alarm fixture)


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 6), torch.nn.Linear(6, 3))


AUX = [
    ({"adam_eps": float("nan")}, "nan"),
    ({"adam_eps": -1.0}, "-1"),
    ({"adam_eps": 0.0}, "eps"),
    ({"adam_betas": (1.5, 0.95)}, "1.5"),
    ({"adam_betas": (0.9,)}, "betas"),
    ({"lr": True}, "True"),
    ({"lr": float("inf")}, "inf"),
    ({"momentum": False}, "False"),
    ({"momentum": 1.0}, "1.0"),
    ({"nesterov": "no"}, "'no'"),
    ({"weight_decay": -0.1}, "-0.1"),
    ({"dtype": "float8"}, "float8"),
    ({"method": "fast"}, "fast"),
    ({"schedule": "no-such"}, "no-such"),
]


@pytest.mark.parametrize(
    ("kw", "text"), AUX, ids=[next(iter(k)) + "=" + repr(next(iter(k.values()))) for k, _ in AUX]
)
def test_muon_with_aux_adam_refuses_bad_hyperparameters(kw, text):
    with pytest.raises(ValueError, match=None) as err:
        MuonWithAuxAdam(_model(), **{"lr": 0.02, **kw})
    assert text in str(err.value) and "\n" not in str(err.value)


def _trained(opt_factory):
    model = _model()
    opt = opt_factory(model)
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    opt.step()
    return model, opt


@pytest.mark.parametrize("other", ["sgd", "adamw", "momentum5", "not a dict"])
def test_load_state_dict_refuses_foreign_or_bad_states_and_changes_nothing(other):
    model, opt = _trained(lambda m: Muon([p for p in m.parameters() if p.ndim == 2], lr=0.02))
    before = json.dumps(opt.state_dict()["param_groups"], default=str)
    if other == "sgd":
        bad = torch.optim.SGD([p for p in model.parameters() if p.ndim == 2], lr=0.1, momentum=0.9)
        state = bad.state_dict()
    elif other == "adamw":
        state = torch.optim.AdamW([p for p in model.parameters() if p.ndim == 2]).state_dict()
    elif other == "momentum5":
        state = opt.state_dict()
        state["param_groups"][0]["momentum"] = 5.0
    else:
        state = "not a dict"
    with pytest.raises(ValueError):
        opt.load_state_dict(state)
    assert json.dumps(opt.state_dict()["param_groups"], default=str) == before
    for p in model.parameters():  # still steps
        if p.ndim == 2:
            p.grad = torch.ones_like(p)
    opt.step()


@pytest.mark.parametrize("seeds", [[1.5], [-1], [2**63], ["0"], [True]])
def test_log_uniform_cases_refuses_non_integer_seeds(seeds):
    with pytest.raises(ValueError, match="seed"):
        log_uniform_cases(16, seeds=seeds)


@pytest.mark.parametrize(("m", "n", "rank"), [(8, 6, 3), (12, 20, 5), (6, 6, 1)])
def test_rank_deficient_trajectory_reports_the_error_on_the_range(m, n, rank):
    # an exactly rank-r matrix: the polar factor is defined on its range only; polar-express converges there
    sigma = [0.5] * rank + [0.0] * (min(m, n) - rank)
    G = with_spectrum(m, n, sigma, 3, dtype=torch.float64)
    tr = trajectory(G, "polar-express", dtype=torch.float64)
    last = tr.rows[-1]
    assert last["polar_err_2"] < 1e-12  # was 1.0: the reference completed the null space arbitrarily
    X = orthogonalize(G, "polar-express", dtype=torch.float64)
    sv = torch.linalg.svdvals(X)
    assert torch.all((sv[:rank] - 1).abs() < 1e-12)  # the range is orthogonalized
    assert torch.all(sv[rank:] < 1e-6)  # the null space stays (rounding amplified by p'(0)^T only)
    # a full-rank matrix keeps the full-space error: the same number as against polar_factor
    F = with_spectrum(m, n, [0.5] * min(m, n), 3, dtype=torch.float64)
    full = trajectory(F, "polar-express", dtype=torch.float64).rows[-1]["polar_err_2"]
    ref = torch.linalg.matrix_norm(
        orthogonalize(F, "polar-express", dtype=torch.float64) - polar_factor(F), 2
    )
    assert full == pytest.approx(ref.item(), rel=1e-9, abs=1e-15)


TENSORS = [
    ("sparse COO", lambda: torch.eye(4).to_sparse(), "sparse"),
    ("sparse CSR", lambda: torch.eye(4).to_sparse_csr(), "sparse"),
    ("meta", lambda: torch.empty(4, 4, device="meta"), "meta"),
    ("float8", lambda: torch.eye(4).to(torch.float8_e4m3fn), "float8"),
    ("bool", lambda: torch.eye(4, dtype=torch.bool), "bool"),
    ("int", lambda: torch.eye(4, dtype=torch.int64), "int64"),
    ("complex", lambda: torch.eye(4, dtype=torch.complex64), "complex"),
]


@pytest.mark.parametrize(("kind", "make", "text"), TENSORS, ids=[t[0] for t in TENSORS])
def test_orthogonalize_names_unsupported_tensors(kind, make, text):
    with pytest.raises(ValueError) as err:
        orthogonalize(make(), "muon")
    assert text in str(err.value)


@pytest.mark.parametrize(
    ("env", "value", "argv", "text"),
    [
        ("NSITER_MEMORY_LIMIT", "-1", ["run", "muon", "--shape", "8x8"], "NSITER_MEMORY_LIMIT"),
        ("NSITER_MEMORY_LIMIT", "abc", ["run", "muon", "--shape", "8x8"], "NSITER_MEMORY_LIMIT"),
        (None, None, ["bench", "--shapes", "1000000x1000000", "--dtypes", "fp32"], "needs about"),
        (None, None, ["bench", "--shapes", "", "--dtypes", "fp32"], "--shapes"),
        (None, None, ["run", "x" * 5000, "--shape", "8x8"], "unknown schedule"),
        (
            None,
            None,
            ["search", "calibrate", "--steps", "5", "--dtype", "float8", "--out", "c.json"],
            "float8",
        ),
    ],
)
def test_cli_one_line_for_environment_and_sizes(env, value, argv, text, monkeypatch, capsys):
    if env:
        monkeypatch.setenv(env, value)
    assert nsiter.cli.main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("nsiter: error: ") and text in err, err


@pytest.mark.parametrize(
    ("mutate", "text"),
    [
        (lambda d: d["provenance"].__setitem__("parameters", [1, 2]), "parameters"),
        (lambda d: d["provenance"].__setitem__("notes", 5), "notes"),
        (None, "nest"),
    ],
)
def test_malformed_schedule_files_are_one_line(mutate, text, tmp_path, capsys):
    path = tmp_path / "bad.json"
    if mutate is None:  # 100000-deep nesting: RecursionError inside json, answered in one line
        path.write_text('{"steps": ' + "[" * 100000 + "]" * 100000 + "}")
    else:
        d = load_schedule("muon").to_dict()
        mutate(d)
        path.write_text(json.dumps(d))
    assert nsiter.cli.main(["analyze", str(path)]) == 2
    _, err = capsys.readouterr()
    assert err.count("\n") == 1 and err.startswith("nsiter: error: "), err
