"""Registry of published schedules, stored as JSON data files and loaded at run time.

Each file in ``nsiter/registry/data/`` is one schedule in the ``nsiter.schedule`` format with its
provenance.  ``load_schedule`` accepts a registry name, a path to a schedule file, or a list of
coefficient tuples.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from nsiter.checks import short_repr
from nsiter.polynomial import OddPolynomial
from nsiter.schedule import Schedule

__all__ = ["available_schedules", "load_schedule", "registry_dir"]


MAX_PATH_CHARS = 4096  # PATH_MAX on Linux: a longer name or path cannot name a file


def _is_file(path: Path) -> bool:
    """``path.is_file()``, False where the file system refuses the name (a component longer than NAME_MAX)."""
    try:
        return path.is_file()
    except OSError:
        return False


def registry_dir() -> Path:
    """The folder holding the registry's JSON files."""
    return Path(str(resources.files("nsiter.registry") / "data"))


def available_schedules() -> list[str]:
    """Names of every registry schedule, sorted."""
    return sorted(p.stem for p in registry_dir().glob("*.json"))


def load_schedule(name_or_path: str | Path | Schedule | Sequence) -> Schedule:
    """Load a schedule by registry name (``"muon"``), by the path of a schedule JSON file, or from a list.

    A ``Schedule`` passes through unchanged; a list of coefficient tuples (or ``OddPolynomial``) becomes
    ``Schedule.from_coefficients``.  Unknown names raise ``ValueError`` listing the known ones.

    Example:
        >>> muon = load_schedule("muon")
        >>> len(muon), muon.matmuls, muon[0].coefficients
        (5, 15, (3.4445, -4.775, 2.0315))
        >>> load_schedule([(1.5, -0.5)] * 3).matmuls
        6
    """
    if isinstance(name_or_path, Schedule):
        return name_or_path
    if isinstance(name_or_path, OddPolynomial):
        return Schedule.from_coefficients([name_or_path])
    if isinstance(name_or_path, Sequence) and not isinstance(name_or_path, (str, bytes)):
        return Schedule.from_coefficients(name_or_path)
    if not isinstance(name_or_path, (str, Path)):
        raise ValueError(f"expected a schedule name or path, got {short_repr(name_or_path)}")
    text = str(name_or_path)
    if (
        "\x00" in text or len(text) > MAX_PATH_CHARS
    ):  # no file has such a name: refused before the file system
        raise ValueError(
            f"unknown schedule {short_repr(text, 200)}: a registry name or schedule file path has at most "
            f"MAX_PATH_CHARS = {MAX_PATH_CHARS} characters and no NUL"
        )
    candidate = registry_dir() / f"{text}.json"
    if "/" not in text and not text.endswith(".json") and _is_file(candidate):
        return Schedule.load(candidate)
    path = Path(text)
    if _is_file(path):
        return Schedule.load(path)
    raise ValueError(
        f"unknown schedule {short_repr(text, 200)}: not a registry name ({', '.join(available_schedules())}) "
        "nor an existing schedule file"
    )
