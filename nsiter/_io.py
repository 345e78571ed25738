"""Atomic writes: a temporary file beside the target, then a rename, so a reader never sees half a file."""

from __future__ import annotations

import contextlib
import csv
import io
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any


def atomic_write(path: str | Path, data: str | bytes, *, parents: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically (``parents``: create missing folders first).

    The temporary file has a unique name in the target's folder (so concurrent writers never share
    one) and is removed if the write fails.
    """
    path = Path(path)
    if parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are ordinary shared files
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def atomic_write_csv(
    path: str | Path, fieldnames: Sequence[str], rows: Iterable[Mapping[str, Any]], *, parents: bool = False
) -> Path:
    """Write ``rows`` as CSV with a header (``csv.DictWriter``: floats with ``repr`` precision), atomically."""
    buf = io.StringIO(newline="")
    writer = csv.DictWriter(buf, fieldnames=list(fieldnames))
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write(path, buf.getvalue(), parents=parents)
