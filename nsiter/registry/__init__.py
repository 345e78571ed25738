"""Registry of published schedules, stored as JSON data files and loaded at run time.

Each file in ``nsiter/registry/data/`` is one schedule in the ``nsiter.schedule/1`` format with its
provenance.  ``load_schedule`` accepts a registry name or a path to a schedule file.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from nsiter.polynomial import Schedule

__all__ = ["available_schedules", "load_schedule", "registry_dir"]


def registry_dir() -> Path:
    """The folder holding the registry's JSON files."""
    return Path(str(resources.files("nsiter.registry") / "data"))


def available_schedules() -> list[str]:
    """Names of every registry schedule, sorted."""
    return sorted(p.stem for p in registry_dir().glob("*.json"))


def load_schedule(name_or_path: str | Path | Schedule) -> Schedule:
    """Load a schedule by registry name (``"muon"``) or by the path of a schedule JSON file.

    A ``Schedule`` passes through unchanged.  Unknown names raise ``ValueError`` listing the known ones.
    """
    if isinstance(name_or_path, Schedule):
        return name_or_path
    if not isinstance(name_or_path, (str, Path)):
        raise ValueError(f"expected a schedule name or path, got {name_or_path!r}")
    text = str(name_or_path)
    candidate = registry_dir() / f"{text}.json"
    if "/" not in text and not text.endswith(".json") and candidate.is_file():
        return Schedule.load(candidate)
    path = Path(text)
    if path.is_file():
        return Schedule.load(path)
    raise ValueError(
        f"unknown schedule {text!r}: not a registry name ({', '.join(available_schedules())}) "
        "nor an existing schedule file"
    )
