"""Execute the example notebooks in place and store them with their outputs (``make notebooks``).

``python examples/execute.py [NAME.ipynb ...]`` (default: every notebook in ``examples/``).  The stored
outputs are deterministic: the notebooks fix their seeds and print no timings or paths, plots are
stored as PNG (matplotlib's inline backend), and this script drops what would change from run to run
(per-cell execution timestamps, the kernel's Python version).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import nbformat
from jupyter_client import KernelManager
from nbclient import NotebookClient

from nsiter._io import atomic_write

EXAMPLES = Path(__file__).resolve().parent
TIMEOUT_S = 300  # per cell


def execute(path: Path, timeout: int = TIMEOUT_S) -> nbformat.NotebookNode:
    """Run every cell of the notebook at ``path`` (working directory: its folder); return it with outputs.

    The kernel talks over local IPC sockets in a private temporary folder, not TCP: no port on the
    network, and no "running over TCP without encryption" warning from the kernel.
    """
    nb = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory(prefix="nsiter-kernel-") as sockets:
        km = KernelManager(kernel_name="python3", transport="ipc", ip=os.path.join(sockets, "kernel"))
        client = NotebookClient(
            nb,
            km=km,
            timeout=timeout,
            kernel_name="python3",
            record_timing=False,
            resources={"metadata": {"path": str(path.parent)}},
        )
        try:
            client.execute()
        finally:  # a kernel manager passed in is the caller's to shut down (nbclient leaves it running)
            if km.has_kernel:
                km.shutdown_kernel(now=True)
    return clean(nb)


def clean(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Drop run-to-run variation: execution timestamps, the kernel's version details, and where the kernel
    happened to split a cell's printed text into several stream outputs."""
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        if cell.cell_type == "code":  # one stream output per run of prints, however the kernel split it
            merged: list = []
            for out in cell.outputs:
                last = merged[-1] if merged else None
                if (
                    out.output_type == "stream"
                    and last is not None
                    and last.output_type == "stream"
                    and last.name == out.name
                ):
                    last.text += out.text
                else:
                    merged.append(out)
            cell.outputs = merged
    nb.metadata["language_info"] = {"name": "python"}
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    return nb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python examples/execute.py", description=__doc__)
    parser.add_argument("notebooks", nargs="*", help="notebooks to execute (default: all in examples/)")
    args = parser.parse_args(argv)
    paths = [Path(p) for p in args.notebooks] or sorted(EXAMPLES.glob("*.ipynb"))
    for path in paths:
        nb = execute(path.resolve())
        atomic_write(path, nbformat.writes(nb) + "\n")  # never half a notebook (nsiter._io)
        print(f"executed {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
