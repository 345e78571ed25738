"""Hostile input, table-driven: every bad value is answered by ONE line that names it, before any work.

API cases must raise ``ValueError`` whose message contains the bad value (or its limit) in one line of
bounded length; CLI cases (``nsiter.cli.main`` in-process) must exit 2 with nothing on stdout and one line
``nsiter: error: ...`` on stderr.  Each case runs under an alarm, so a case that starts unbounded work
fails instead of hanging the suite.
"""

from __future__ import annotations

import json
import signal
from fractions import Fraction

import pytest
import torch

import nsiter.cli
from nsiter.checks import SEED_LIMIT, check_seed
from nsiter.optim import Muon
from nsiter.polynomial import OddPolynomial
from nsiter.registry import load_schedule
from nsiter.restarts import gram_restarts, placements
from nsiter.schedule import Provenance, Schedule
from nsiter.search.budget import budget_search

CASE_SECONDS = 20  # generous: every case below answers in well under a second


@pytest.fixture(autouse=True)
def alarm():
    def hung(signum, frame):
        raise TimeoutError(f"no answer within {CASE_SECONDS} s: unbounded work before the check")

    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(CASE_SECONDS)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("hostile")
    base = {"format": "nsiter.schedule/2", "name": "x", "provenance": {"kind": "user", "source": "t"}}

    def schedule(name, steps):
        (d / name).write_text(json.dumps({**base, "steps": steps}))

    schedule("e999.json", [{"coefficients": [1.0], "exact": ["1e999"]}])
    schedule("digits.json", [{"coefficients": [1.0], "exact": ["1" + "0" * 5000]}])
    schedule("repeat.json", [{"coefficients": [1.5, -0.5], "repeat": 1_000_000_000}])
    schedule("degree.json", [{"coefficients": [0.5] * 2000}])
    (d / "binary.json").write_bytes(bytes(range(256)) * 4)
    (d / "spec.csv").write_text("a,b\n1,2\n")
    return d


def _muon_of(shape):
    return Muon([torch.zeros(shape, requires_grad=True)], lr=0.02)


def _schedule(steps):
    return Schedule.repeated("x", OddPolynomial([1.5, -0.5]), steps, Provenance("user", "t"))


def _compose_exact(k):
    from nsiter.symbolic import compose_exact

    return compose_exact(load_schedule("muon"), k)


def _family(degree):
    from nsiter.symbolic import newton_schulz_family

    return newton_schulz_family(degree)


def _pade(l, m):  # noqa: E741
    from nsiter.symbolic import pade_iteration

    return pade_iteration(l, m)


def _log_uniform(seed):
    from nsiter.matrices import log_uniform

    return log_uniform(8, 8, 1e-3, seed)


# (input class, call, text the one-line message must contain)
API_CASES = [
    ("exact coefficient", lambda d: OddPolynomial(exact=["1e999"]), "'1e999'"),
    ("exact coefficient", lambda d: OddPolynomial(exact=["-1e400/3"]), "'-1e400/3'"),
    ("exact coefficient", lambda d: OddPolynomial(exact=["1" + "0" * 5000]), "MAX_EXACT_CHARS = 4096"),
    ("exact coefficient", lambda d: OddPolynomial(exact=[10**400]), "outside the float range"),
    ("exact coefficient", lambda d: OddPolynomial(exact=[10**5000]), "too long to print"),
    ("exact coefficient", lambda d: OddPolynomial(exact=[Fraction(1, 3) * 10**400]), "float range"),
    ("exact coefficient", lambda d: OddPolynomial(exact=["abc"]), "'abc'"),
    ("exact coefficient", lambda d: OddPolynomial(exact=["1/0"]), "'1/0'"),
    ("exact coefficient", lambda d: OddPolynomial(exact=[1.5]), "1.5"),
    ("float coefficient", lambda d: OddPolynomial([10**400]), "must be finite"),
    ("float coefficient", lambda d: OddPolynomial([float("nan")]), "nan"),
    ("float coefficient", lambda d: OddPolynomial(["x" * 10_000]), "characters"),
    ("degree", lambda d: OddPolynomial([0.5] * 2000), "3999"),
    ("degree", lambda d: OddPolynomial([1.0, 2.0]).compose(OddPolynomial([1.0] * 400)), "2397"),
    ("degree", lambda d: _family(10001), "10001"),
    ("degree", lambda d: _family(103), "MAX_SYMBOLIC_DEGREE = 101"),
    ("degree", lambda d: _pade(30, 30), "l + m = 60"),
    ("degree", lambda d: _compose_exact(5), "3125"),
    ("steps", lambda d: _schedule(10**9), "1000000000"),
    ("steps", lambda d: load_schedule(d / "repeat.json"), "1000000000"),
    ("steps", lambda d: load_schedule("muon").truncated(10**9), "1000000000"),
    ("schedule file", lambda d: load_schedule(d / "binary.json"), "binary.json"),
    ("schedule file", lambda d: load_schedule(d / "e999.json"), "'1e999'"),
    ("schedule file", lambda d: load_schedule(d / "digits.json"), "MAX_EXACT_CHARS"),
    ("schedule file", lambda d: load_schedule(d / "degree.json"), "3999"),
    ("seed", lambda d: check_seed(-1), "-1"),
    ("seed", lambda d: check_seed(SEED_LIMIT), str(SEED_LIMIT)),
    ("seed", lambda d: check_seed(10**5000), "bits"),
    ("seed", lambda d: check_seed(1.0), "1.0"),
    ("seed", lambda d: check_seed(True), "True"),
    ("seed", lambda d: _log_uniform(2**63), str(2**63)),
    ("seed", lambda d: _log_uniform(-5), "-5"),
    ("restarts", lambda d: placements(60, 10), "MAX_PLACEMENTS"),
    ("restarts", lambda d: budget_search(9, (5,), shape=(64, 256), max_steps=16, max_restarts=10), "30827"),
    (
        "restarts",
        lambda d: gram_restarts(Schedule.from_coefficients([(1.5, -0.5)] * 40), max_restarts=9),
        "40 steps",
    ),
    ("Muon parameter", lambda d: _muon_of((0, 4)), "(0, 4)"),
    ("Muon parameter", lambda d: _muon_of((4, 0)), "(4, 0)"),
    ("Muon parameter", lambda d: _muon_of((4,)), "(4,)"),
]

# (input class, argv with {d} for the files folder, text the error line must contain)
CLI_CASES = [
    ("option", ["--bogus"], "'--bogus'"),
    ("option", ["run", "muon", "--bogus"], "'--bogus'"),
    ("option", [], "COMMAND"),
    ("option", ["run"], "SCHEDULE"),
    ("option", ["nonsense"], "'nonsense'"),
    ("shape", ["run", "muon", "--shape", "-4x5"], "'-4x5'"),
    ("shape", ["run", "muon", "--shape", "4x"], "'4x'"),
    ("shape", ["run", "muon", "--shape", "1" * 5000 + "x2"], "characters"),
    ("memory", ["run", "muon", "--shape", "1000000x1000000"], "1000000x1000000"),
    ("memory", ["run", "muon", "--shape", "4096x4096", "--batch", "100000"], "100000 matrices"),
    ("seed", ["run", "muon", "--seed", "99999999999999999999999"], "'99999999999999999999999'"),
    ("seed", ["run", "muon", "--seed", "-1"], "'-1'"),
    ("seed", ["run", "muon", "--seed", "1.5"], "'1.5'"),
    ("seed", ["search", "gradient", "--seed", "-1", "--out", "{d}/g.json"], "'-1'"),
    ("seed", ["search", "calibrate", "--seeds", "0,-1", "--out", "{d}/c.json"], "'-1'"),
    ("seed", ["search", "budget", "--budget", "9", "--seeds", "9" * 25, "--out", "{d}/b.json"], "9999"),
    ("degree", ["derive", "--degree", "10001"], "'10001'"),
    ("degree", ["derive", "--degree", "1" + "0" * 5000], "characters"),
    ("degree", ["derive", "--degree", "6"], "got 6"),
    ("degree", ["search", "minimax", "--degree", "4", "--out", "{d}/m.json"], "'4'"),
    ("degree", ["search", "max-slope", "--degree", "1001", "--out", "{d}/m.json"], "'1001'"),
    ("steps", ["run", "muon", "--steps", "1000000000"], "'1000000000'"),
    ("steps", ["analyze", "muon", "--lo", "1e-3", "--steps", "1000000000"], "1000000000"),
    ("steps", ["search", "minimax", "--steps", "100000", "--out", "{d}/m.json"], "'100000'"),
    ("steps", ["search", "gradient", "--iters", "1000000000", "--out", "{d}/g.json"], "'1000000000'"),
    ("steps", ["search", "budget", "--budget", "60", "--out", "{d}/b.json"], "budget 60 with degrees"),
    ("steps", ["search", "budget", "--budget", "12", "--max-steps", "99", "--out", "{d}/b.json"], "'99'"),
    ("steps", ["search", "budget", "--budget", "9.5", "--out", "{d}/b.json"], "9.5"),
    ("steps", ["search", "budget", "--budget", "1e9", "--shape", "8x64", "--out", "{d}/b.json"], "1e+09"),
    (
        "steps",
        ["search", "budget", "--budget", "9", "--shape", "64x4096", "--out", "{d}/b.json"],
        "budget 9",
    ),
    ("steps", ["search", "budget", "--budget", "9", "--max-restarts", "2", "--out", "{d}/b.json"], "--shape"),
    ("shape", ["search", "budget", "--budget", "9", "--shape", "4096x8", "--out", "{d}/b.json"], "(4096, 8)"),
    ("shape", ["search", "budget", "--budget", "9", "--shape", "0x8", "--out", "{d}/b.json"], "'0x8'"),
    (
        "steps",
        ["search", "budget", "--budget", "2", "--shape", "1024x1024", "--no-progress", "--out", "{d}/b.json"],
        "budget 2",
    ),
    ("size", ["search", "calibrate", "--size", "100000", "--out", "{d}/c.json"], "'100000'"),
    ("size", ["search", "gradient", "--matrix", "--size", "0", "--out", "{d}/g.json"], "'0'"),
    ("schedule file", ["analyze", "{d}/e999.json", "--lo", "0.1"], "'1e999'"),
    ("schedule file", ["analyze", "{d}/digits.json", "--lo", "0.1"], "MAX_EXACT_CHARS"),
    ("schedule file", ["analyze", "{d}/repeat.json", "--lo", "0.1"], "1000000000"),
    ("schedule file", ["analyze", "{d}/binary.json", "--lo", "0.1"], "binary.json"),
    ("schedule file", ["run", "{d}/missing.json"], "missing.json"),
    ("spectrum", ["run", "muon", "--spectrum", "measured:{d}/spec.csv", "--shape", "8x8"], "'task'"),
    ("spectrum", ["run", "muon", "--spectrum", "logunif:1e999"], "'1e999'"),
    ("spectrum", ["run", "muon", "--spectrum", "bogus:1"], "'bogus'"),
    ("number", ["analyze", "muon", "--lo", "1e-400"], "'1e-400'"),
    ("number", ["analyze", "muon", "--lo", "nan"], "'nan'"),
    ("number", ["search", "calibrate", "--factors", "1,inf", "--out", "{d}/c.json"], "'1,inf'"),
    ("device", ["search", "calibrate", "--device", "cuda:99", "--out", "{d}/c.json"], "'cuda:99'"),
    ("device", ["search", "calibrate", "--device", "tpu", "--out", "{d}/c.json"], "'tpu'"),
    ("dtype", ["run", "muon", "--dtype", "fp8"], "'fp8'"),
    ("dtype", ["search", "calibrate", "--dtype", "fp8", "--size", "8", "--out", "{d}/c.json"], "'fp8'"),
    ("output path", ["search", "minimax", "--steps", "2", "--out", "{d}/nodir/m.json"], "nodir"),
    ("output path", ["run", "muon", "--shape", "8x8", "--out", "{d}"], "directory"),
]


def _id(case):
    return case[0].replace(" ", "-")


@pytest.mark.parametrize(("kind", "call", "text"), API_CASES, ids=[_id(c) for c in API_CASES])
def test_api_rejects_with_one_line_naming_the_value(kind, call, text, files):
    with pytest.raises(ValueError) as info:
        call(files)
    message = str(info.value)
    assert text in message
    assert "\n" not in message and len(message) < 300


@pytest.mark.parametrize(("kind", "argv", "text"), CLI_CASES, ids=[_id(c) for c in CLI_CASES])
def test_cli_exits_2_with_one_line_naming_the_value(kind, argv, text, files, capsys):
    code = nsiter.cli.main([a.replace("{d}", str(files)) for a in argv])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nsiter: error: "), err
    assert text in lines[0] and len(lines[0]) < 500  # never a 5000-character echo


def test_memory_check_names_the_size_and_the_limit(capsys, monkeypatch):
    # 512x256 float64 x 16 buffers = 16 MiB: refused under a 1 MiB limit, and the line says both sizes
    monkeypatch.setenv("NSITER_MEMORY_LIMIT", str(2**20))
    assert nsiter.cli.main(["run", "muon"]) == 2
    err = capsys.readouterr().err
    assert "needs about 16 MiB, above the limit 1 MiB" in err


def test_nan_gradient_leaves_the_optimizer_usable():
    # the check runs before any state changes: parameters and momentum are untouched, later steps work
    a = torch.randn(6, 4, requires_grad=True)
    b = torch.randn(5, 3, requires_grad=True)
    opt = Muon([a, b], lr=0.1, names={a: "layer.a", b: "layer.b"})
    a.grad, b.grad = torch.ones(6, 4), torch.ones(5, 3)
    opt.step()
    before = [p.detach().clone() for p in (a, b)] + [opt.state[p]["momentum_buffer"].clone() for p in (a, b)]
    a.grad = torch.ones(6, 4)
    b.grad = torch.ones(5, 3)
    b.grad[2, 1] = float("nan")
    with pytest.raises(ValueError, match=r"'layer\.b' \(shape \(5, 3\)\) has 1 non-finite entries of 15"):
        opt.step()
    after = [p.detach() for p in (a, b)] + [opt.state[p]["momentum_buffer"] for p in (a, b)]
    assert all(torch.equal(x, y) for x, y in zip(before, after, strict=True))
    b.grad = torch.ones(5, 3)
    opt.step()
    assert all(bool(torch.isfinite(p).all()) for p in (a, b))
    assert all(bool(torch.isfinite(opt.state[p]["momentum_buffer"]).all()) for p in (a, b))


def test_version_and_help(capsys):
    with pytest.raises(SystemExit) as info:
        nsiter.cli.main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"nsiter {nsiter.__version__}"


def _parsers(parser, path=("nsiter",)):
    import argparse

    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, (*path, name))


def test_every_command_has_a_description_and_every_option_help_with_its_default():
    for path, parser in _parsers(nsiter.cli.build_parser()):
        assert parser.description, path
        parser.format_help()  # renders
        for action in parser._actions:
            if not action.option_strings or action.dest in ("help", "version"):
                continue
            assert action.help, (path, action.dest)
            if action.default is not None and action.default is not False:
                assert "(default" in parser.formatter_class("x")._get_help_string(action), (path, action.dest)


def test_interrupted_experiments_say_so_in_one_line(monkeypatch, capsys):
    import experiments.__main__ as cli

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "run_all", interrupted)
    assert cli.main([]) == 130
    assert capsys.readouterr().err == "interrupted; rerun to resume\n"


def test_interrupted_command_exits_130(monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    parser = nsiter.cli.build_parser()
    monkeypatch.setattr(nsiter.cli, "build_parser", lambda: parser)
    parser._subparsers._group_actions[0].choices["schedules"].set_defaults(func=interrupted)
    assert nsiter.cli.main(["schedules"]) == 130
    assert capsys.readouterr().err == "nsiter: interrupted\n"
