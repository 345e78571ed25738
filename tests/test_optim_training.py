"""Training problems, schedule specs (experiments/training.py) and recorded momentum spectra (nsiter.spectra)."""

from __future__ import annotations

import csv
import itertools
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from experiments.training import (
    make_optimizer,
    modular_addition,
    parse_schedule_spec,
    teacher_classification,
    train,
)
from nsiter.matrices import measured_matrix
from nsiter.optim import Muon, momentum_spectra
from nsiter.spectra import DEFAULT_SPECTRA, load_spectra, measured_interval, measured_spectrum


def test_modular_addition_labels_and_split():
    p = 7
    xt, yt, xv, yv = modular_addition(p, 0.5, seed=3)
    x, y = torch.cat([xt, xv]), torch.cat([yt, yv])
    assert torch.equal(y, (x[:, 0] + x[:, 1]) % p)
    assert bool((x[:, 2] == p).all())  # the "=" token
    pairs = {(int(a), int(b)) for a, b, _ in x.tolist()}
    assert pairs == {(a, b) for a in range(p) for b in range(p)}  # train and held-out partition Z_p^2
    assert len(xt) == round(0.5 * p * p)
    with pytest.raises(ValueError, match="train_fraction"):
        modular_addition(p, 1.5)


def test_teacher_data_is_seeded():
    a = teacher_classification(64, 32, 8, 5, 16, seed=1)
    b = teacher_classification(64, 32, 8, 5, 16, seed=1)
    c = teacher_classification(64, 32, 8, 5, 16, seed=2)
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    assert not torch.equal(a[0], c[0])
    assert int(a[1].max()) < 5


def test_schedule_spec_truncates_the_classical_quintic():
    # "quintic@5": the degree-5 Newton-Schulz polynomial (15/8, -10/8, 3/8) (Higham 2008, eq. 8.20 family) 5 times
    sched = parse_schedule_spec("quintic@5")
    assert len(sched) == 5
    assert all(p.exact == (Fraction(15, 8), Fraction(-10, 8), Fraction(3, 8)) for p in sched.steps)
    with pytest.raises(ValueError, match="'x'"):
        parse_schedule_spec("muon@x")
    with pytest.raises(ValueError, match="sgd"):
        make_optimizer("sgd", torch.nn.Linear(2, 2), lr=0.1, adam_lr=0.1)


def test_training_is_deterministic_and_learns():
    cfg = {"dim": 8, "width": 16, "depth": 2, "batch": 32}
    kw = {"seed": 0, "steps": 15, "lr": 0.02, "adam_lr": 1e-2, "config": cfg, "dtype": torch.float32}
    a = train("teacher", "muon:muon", **kw)
    b = train("teacher", "muon:muon", **kw)
    assert a.losses == b.losses  # same seed, same numbers
    assert a.losses[0] == pytest.approx(np.log(10), rel=0.1)  # near-uniform logits over 10 classes at init
    assert np.mean(a.losses[-5:]) < a.losses[0]
    assert a.steps_to(a.losses[0]) == 0
    assert a.steps_to(-1.0) is None
    with pytest.raises(ValueError, match="task"):
        train("nope", "adamw")


def _recorded_rows() -> list[dict]:
    torch.manual_seed(0)
    w = torch.randn(12, 5, requires_grad=True)
    v = torch.randn(3, 4, 2, requires_grad=True)  # conv-like: flattened to 3 x 8
    opt = Muon([w, v], lr=0.01, momentum=0.9)
    gen = torch.Generator().manual_seed(1)
    rows = []
    for step in (1, 2):
        w.grad = torch.randn(w.shape, generator=gen)
        v.grad = torch.randn(v.shape, generator=gen)
        opt.step()
        # independent reference: the Nesterov input (1 - mu) G + mu B, SVD in numpy float64
        for p, name in ((w, "w"), (v, "v")):
            buf = opt.state[p]["momentum_buffer"]
            ref = (0.1 * p.grad + 0.9 * buf).reshape(p.shape[0], -1).double().numpy()
            recorded = [r for r in momentum_spectra(opt, {w: "w", v: "v"}) if r["param"] == name]
            np.testing.assert_allclose(
                [r["sigma"] for r in recorded], np.linalg.svd(ref, compute_uv=False), rtol=1e-6
            )
        for r in momentum_spectra(opt, {w: "w", v: "v"}):
            rows.append({"task": "toy", "optimizer": "muon:muon", "seed": 0, "step": step, **r})
    return rows


def test_recorded_spectra_are_normalized_singular_values():
    rows = _recorded_rows()
    spectra = load_spectra(rows)
    # sorted by (task, optimizer, seed, step, param); conv-like v is flattened to 3 x 8
    assert [(s.step, s.param, s.shape) for s in spectra] == [
        (1, "v", (3, 8)),
        (1, "w", (12, 5)),
        (2, "v", (3, 8)),
        (2, "w", (12, 5)),
    ]
    for s in spectra:
        assert np.sum(s.x**2) == pytest.approx(1.0, rel=1e-12)  # sum sigma_i^2 = ||U||_F^2
        assert np.all(np.diff(s.x) <= 0)
    lo, hi = measured_interval(rows)
    assert lo == min(s.x.min() for s in spectra)
    assert hi == max(s.x.max() for s in spectra)
    qlo, qhi = measured_interval(rows, quantile=0.25)
    assert lo <= qlo <= qhi <= hi
    latest = measured_spectrum(rows)
    assert latest.step == 2 and latest.param == "w"  # latest step, then larger min(m, n)


def test_measured_matrix_has_the_recorded_spectrum():
    rows = _recorded_rows()
    spec = measured_spectrum(rows, param="w", step=1)
    G = measured_matrix(rows, param="w", step=1, dtype=torch.float64, seed=4)
    assert G.shape == (12, 5)
    np.testing.assert_allclose(torch.linalg.svdvals(G).numpy(), spec.x, rtol=1e-12, atol=1e-15)
    H = measured_matrix(rows, param="w", step=1, shape=(20, 9), dtype=torch.float64)
    s = torch.linalg.svdvals(H).numpy()
    assert s.max() == pytest.approx(spec.x.max(), rel=1e-12)
    assert s.min() == pytest.approx(spec.x.min(), rel=1e-10)
    assert torch.equal(G, measured_matrix(rows, param="w", step=1, dtype=torch.float64, seed=4))


def test_spectra_bad_input(tmp_path):
    rows = _recorded_rows()
    with pytest.raises(ValueError, match="colour"):
        load_spectra(rows, colour="red")
    with pytest.raises(ValueError, match="matches"):
        load_spectra(rows, step=99)
    with pytest.raises(ValueError, match="no recorded spectra"):
        load_spectra(tmp_path / "missing.csv")
    with pytest.raises(ValueError, match="quantile"):
        measured_interval(rows, quantile=0.5)


def test_train_muon_experiment_quick(tmp_path, monkeypatch):
    # the experiment end to end in --quick mode: tables, figures, macros; its summary agrees with its curves and
    # its spectra load back as test spectra
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent.parent))  # experiments/ is not installed
    from experiments import common, tables, train_muon

    common.run_experiment(train_muon, quick=True, root=tmp_path, verbose=False)
    results = tmp_path / "experiments" / "results"
    curves = tables.read_csv(results / "train_muon.csv")
    summary = tables.read_csv(results / "train_muon.summary.csv")
    assert {(r["task"], r["optimizer"]) for r in summary} == {
        (t, o) for t in train_muon.QUICK["tasks"] for o in train_muon.QUICK["optimizers"]
    }
    for s in summary:
        losses = [
            r["loss"]
            for r in curves
            if (r["task"], r["optimizer"], r["seed"]) == (s["task"], s["optimizer"], s["seed"])
        ]
        first = next((t for t, v in enumerate(losses) if v <= s["target"]), None)
        assert s["steps_to_target"] == first
        assert s["final_loss"] == pytest.approx(np.mean(losses[-10:]))
    spectra = load_spectra(results / "train_muon.spectra.csv")
    assert {s.step for s in spectra} == set(train_muon.QUICK["spectra_steps"])
    assert all(np.sum(s.x**2) == pytest.approx(1.0, rel=1e-9) for s in spectra)
    assert (tmp_path / "figures" / "train_muon.pdf").is_file()
    assert (tmp_path / "figures" / "train_muon-spectra.png").is_file()
    assert (tmp_path / "figures" / "train_muon-clip.png").is_file()
    macros = (tmp_path / "paper" / "generated" / "train_muon.tex").read_text()
    assert "trainTeacherAdamwSteps" in macros
    assert "trainClipFreePeakLogit" in macros and "trainModaddGramStepMs" in macros
    # MuonClip: the same run as Muon until a head's logit first passes tau, bounded after it by one step's growth
    clip = train_muon.QUICK["clip"]
    logits = tables.read_csv(results / "train_muon.logits.csv")
    free = [r["max_logit"] for r in logits if r["tau"] is None]
    clipped = [r["max_logit"] for r in logits if r["tau"] is not None]
    tau = clip["taus"][1]
    assert len(free) == len(clipped) == clip["steps"]
    first = next(t for t, v in enumerate(free) if v > tau)
    assert clipped[: first + 1] == free[: first + 1]
    growth = max(b - a for a, b in itertools.pairwise(free))
    assert max(clipped[first + 1 :]) <= tau + growth < max(free)
    methods = tables.read_csv(results / "train_muon.methods.csv")
    assert sorted((r["task"], r["method"]) for r in methods) == sorted(
        (t, m) for t in train_muon.QUICK["tasks"] for m in train_muon.PARAMS["methods"]["methods"]
    )
    assert all(r["step_ms_median"] > 0 for r in methods)


def test_shipped_spectra_have_the_training_experiments_layout():
    """The package data (read by nsiter.matrices and nsiter.spectra without experiments/) is one recording of
    experiments/train_muon.py, frozen so that the library's measured spectra do not move when the experiment
    is rerun on another CPU (its bf16 training follows the machine's rounding).  It records the same tasks,
    steps, parameters, shapes and singular indices as the experiment's current results, and each recorded
    spectrum is one the iteration can see: 0 <= x_i <= 1 with sum_i x_i^2 = 1 (Frobenius normalization)."""
    results = Path(__file__).resolve().parents[1] / "experiments" / "results" / "train_muon.spectra.csv"
    key = ("task", "optimizer", "seed", "step", "param", "rows", "cols", "index")

    def layout(path):
        with open(path, newline="") as f:
            return sorted(tuple(r[k] for k in key) for r in csv.DictReader(f))

    assert layout(DEFAULT_SPECTRA) == layout(results)
    shipped = load_spectra()
    assert {s.task for s in shipped} == {"modadd", "teacher"}
    for s in shipped:
        assert np.all(s.x >= 0) and np.all(s.x <= 1 + 1e-12)
        # float32 SVD of the recorded matrix: the squares sum to 1 within k u
        assert abs(float(np.sum(s.x**2)) - 1) <= 4 * len(s.x) * 2.0**-24
