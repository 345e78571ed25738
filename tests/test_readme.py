"""The README's examples run, say what they print, and point at reference pages that exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README, flags=re.S)


def test_readme_is_one_screen_with_the_make_commands_on_top():
    lines = README.splitlines()
    assert len(lines) <= 70, len(lines)
    top = "\n".join(lines[:6])
    assert "make figures" in top and "make test" in top
    assert "pip install" in README and len(_python_blocks()) == 3


def test_readme_examples_run_and_state_their_results():
    scope: dict = {}
    for block in _python_blocks():
        exec(compile(block, "README.md", "exec"), scope)
    res = scope["analyze"](scope["muon"], lo=1e-3)
    assert (round(res.final.lo, 4), round(res.final.hi, 4)) == (0.4705, 1.2024)
    band = scope["attractor"](scope["muon"][0]).band
    assert (round(band[0], 4), round(band[1], 4)) == (0.6818, 1.1344)
    est, cert = scope["diag"].metrics["final_error"], scope["certified_error"](scope["sched"])
    assert f"{est:.5f}" == f"{cert:.5f}" == "0.13004" and est <= cert
    assert tuple(scope["X"].shape) == (512, 256)


@pytest.mark.parametrize("link", re.findall(r"\]\((docs/[^)]+)\)", README))
def test_readme_links_resolve(link):
    assert (ROOT / link).exists(), link


def test_limits_table_quotes_the_constants_of_the_code():
    """Every ``nsiter.module.NAME` = value`` in docs/limits.md is the value the code checks against."""
    import importlib

    text = (ROOT / "docs" / "limits.md").read_text()
    quoted = re.findall(r"`(nsiter(?:\.\w+)+)\.([A-Z_]+)` = (\d+)", text)
    assert len(quoted) >= 5, quoted
    wrong = [(m, n, v) for m, n, v in quoted if getattr(importlib.import_module(m), n) != int(v)]
    assert not wrong, wrong
