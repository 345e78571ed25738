"""The paper builds from the committed figures and generated numbers, and types no result by hand."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from experiments.common import REPO, discover

PAPER = REPO / "paper"


def _bib_keys(text: str) -> set[str]:
    return set(re.findall(r"^@\w+\{([^,]+),", text, flags=re.M))


def test_refs_include_every_registry_reference():
    registry = REPO / "docs" / "registry_refs.bib"
    refs = _bib_keys((PAPER / "refs.bib").read_text())
    if registry.is_file():
        assert _bib_keys(registry.read_text()) <= refs
    # the references the paper's text relies on
    assert {"higham2008", "hale2008contour", "liu2025muonscalable", "bjorck1971", "kovarik1970"} <= refs


def test_paper_inputs_exist_for_every_experiment_it_names():
    tex = (PAPER / "main.tex").read_text()
    names = set(discover())
    for name in re.findall(r"\\inputgenerated\{([^}]+)\}", tex):
        assert name in names, name
    cited = set(re.findall(r"\\citep\{([^}]+)\}", tex))
    keys = _bib_keys((PAPER / "refs.bib").read_text())
    for group in cited:
        assert set(group.split(",")) <= keys, group


def test_every_macro_the_text_uses_is_generated():
    tex = (PAPER / "main.tex").read_text()
    body = tex[tex.index(r"\begin{document}") :]
    defined = set()
    for f in (PAPER / "generated").glob("*.tex"):
        defined |= set(re.findall(r"\\newcommand\{\\(\w+)\}", f.read_text()))
    used = set(
        re.findall(
            r"\\((?:claim|cmp|svd|sd|scalar|family|floor|bench|search|restart|train|qorder)[A-Za-z]+)", body
        )
    )
    assert used and used <= defined, sorted(used - defined)


def test_every_figure_and_table_the_paper_shows_is_committed():
    """Without TeX: each \\generatedfigure / \\generatedtable names a committed file, and no macro prints a
    placeholder where a result is missing (the build stops instead: test_paper_fails_without_a_figure)."""
    tex = (PAPER / "main.tex").read_text()
    figures = re.findall(r"\\generatedfigure(?:\[[^]]*\])?\{([^}]+)\}", tex)
    tables = re.findall(r"\\generatedtable\{([^}]+)\}", tex)
    assert figures and tables
    # every experiment that draws a figure the paper names is shown through the required-file macro
    assert not re.findall(r"\\includegraphics(?:\[[^]]*\])?\{[^}]*figures/", tex.replace("#1", ""))
    for name in figures:
        assert (REPO / "figures" / f"{name}.pdf").is_file(), name
    for name in tables:
        assert (PAPER / "generated" / f"{name}.tex").is_file(), name
    assert "has not been generated" not in tex and "optionalfigure" not in tex


def _latexmk(paper):
    return subprocess.run(
        ["latexmk", "-pdf", "-interaction=nonstopmode", "-halt-on-error", "-jobname=nsiter", "main.tex"],
        cwd=paper,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _require_latexmk():
    if shutil.which("latexmk") is None:
        reason = (
            "latexmk not found: `make tex` installs TeX as root, or says which Debian packages to install"
        )
        if os.environ.get("NSITER_REQUIRE_TEX"):
            pytest.fail(reason)
        pytest.skip(reason)


def test_paper_fails_without_a_figure(tmp_path):
    """A missing figure stops the build with a message naming it (no placeholder text in a PDF)."""
    _require_latexmk()
    shutil.copytree(PAPER, tmp_path / "paper", ignore=shutil.ignore_patterns("nsiter.*", "*.aux", "*.log"))
    shutil.copytree(REPO / "figures", tmp_path / "figures")
    (tmp_path / "figures" / "schedules_compared.pdf").unlink()
    proc = _latexmk(tmp_path / "paper")
    assert proc.returncode != 0
    assert "figures/schedules_compared.pdf is missing" in proc.stdout + proc.stderr


def test_paper_builds(tmp_path):
    _require_latexmk()
    shutil.copytree(PAPER, tmp_path / "paper", ignore=shutil.ignore_patterns("nsiter.*", "*.aux", "*.log"))
    shutil.copytree(REPO / "figures", tmp_path / "figures")
    proc = _latexmk(tmp_path / "paper")
    assert proc.returncode == 0, proc.stdout[-3000:]
    log = (tmp_path / "paper" / "nsiter.log").read_text(errors="replace")
    assert "undefined" not in log.lower().replace("undefined color", ""), "undefined references or citations"
    assert (tmp_path / "paper" / "nsiter.pdf").stat().st_size > 50_000


def _make_tex(tmp_path, **variables):
    if shutil.which("make") is None:
        pytest.skip("make not found")
    env = {k: v for k, v in os.environ.items() if k != "NSITER_REQUIRE_TEX"}
    args = ["make", "-s", "--no-print-directory", "tex", *(f"{k}={v}" for k, v in variables.items())]
    return subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)


def test_make_tex_without_root_says_what_to_install(tmp_path):
    # a machine without TeX, not root: one line naming the Debian packages; the target itself succeeds
    proc = _make_tex(tmp_path, LATEXMK=tmp_path / "no-latexmk", USER_ID="1000")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1 and "apt-get install latexmk texlive-latex-base" in lines[0]
    assert "skipped" in lines[0] and proc.stderr == ""


def test_make_tex_as_root_installs_the_debian_packages(tmp_path):
    # as root with apt-get (a stand-in that records its arguments): update, then install the package list
    log = tmp_path / "apt.log"
    fake = tmp_path / "apt-get"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {log}\n')
    fake.chmod(0o755)
    proc = _make_tex(tmp_path, LATEXMK=tmp_path / "no-latexmk", USER_ID="0", APT_GET=fake)
    assert proc.returncode == 0, proc.stderr
    calls = log.read_text().splitlines()
    assert calls[0] == "update -qq"
    assert calls[1].startswith("install -y -qq --no-install-recommends latexmk ") and "lmodern" in calls[1]
    assert len(calls) == 2


def test_make_tex_with_tex_present_does_nothing(tmp_path):
    fake = tmp_path / "apt-get"
    fake.write_text("#!/bin/sh\nexit 1\n")
    fake.chmod(0o755)
    proc = _make_tex(tmp_path, LATEXMK="sh", KPSEWHICH="true", USER_ID="0", APT_GET=fake)
    assert proc.returncode == 0 and proc.stdout == "" and proc.stderr == ""
