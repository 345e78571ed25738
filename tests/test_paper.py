"""The paper builds from the committed figures and generated numbers, and types no result by hand."""

from __future__ import annotations

import re
import shutil
import subprocess

from experiments.common import REPO, discover

PAPER = REPO / "paper"


def _bib_keys(text: str) -> set[str]:
    return set(re.findall(r"^@\w+\{([^,]+),", text, flags=re.M))


def test_refs_include_every_registry_reference():
    registry = REPO / "docs" / "registry_refs.bib"
    refs = _bib_keys((PAPER / "refs.bib").read_text())
    if registry.is_file():
        assert _bib_keys(registry.read_text()) <= refs
    # the brief's required references
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
    used = set(re.findall(r"\\((?:claim|cmp|svd|sd|scalar|family|floor|bench|search)[A-Za-z]+)", body))
    assert used and used <= defined, sorted(used - defined)


def test_paper_builds(tmp_path):
    shutil.copytree(PAPER, tmp_path / "paper", ignore=shutil.ignore_patterns("nsiter.*", "*.aux", "*.log"))
    shutil.copytree(REPO / "figures", tmp_path / "figures")
    proc = subprocess.run(
        ["latexmk", "-pdf", "-interaction=nonstopmode", "-halt-on-error", "-jobname=nsiter", "main.tex"],
        cwd=tmp_path / "paper",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    log = (tmp_path / "paper" / "nsiter.log").read_text(errors="replace")
    assert "undefined" not in log.lower().replace("undefined color", ""), "undefined references or citations"
    assert (tmp_path / "paper" / "nsiter.pdf").stat().st_size > 50_000
