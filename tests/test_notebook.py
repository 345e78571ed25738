"""The example notebook executes end to end (headless)."""

from __future__ import annotations

import nbformat
from nbclient import NotebookClient

from experiments.common import REPO


def test_convergence_notebook_executes(tmp_path):
    nb = nbformat.read(REPO / "examples" / "convergence.ipynb", as_version=4)
    client = NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    errors = [
        o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"
    ]
    assert not errors
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "inside certified" in text and "measured bf16" in text
