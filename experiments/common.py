"""The experiment framework: compute -> tidy CSV + metadata JSON -> figure -> paper macros.

An experiment is a module ``experiments/NAME.py`` that defines

    NAME = "NAME"                       # outputs are named after it
    PARAMS = {...}                      # every parameter of the full run (JSON-serialisable)
    QUICK = {...}                       # overrides for ``--quick`` (tiny sizes; tests use it)
    SEED = 0                            # optional, default 0
    INPUTS = ("benchmarks/results/x.csv",)  # optional: files (relative to the repository) it reads
    MACHINE_DEPENDENT = True            # optional, default True: see "Machines" below

    def compute(ctx: Context) -> Tables            # list of row dicts, or {table_name: rows}
    def plot(tables, ctx) -> Figure | dict | None  # optional; dict {suffix: Figure} for several figures
    def numbers(tables) -> dict[str, object]       # optional: LaTeX macro name -> value for the paper
    def latex(tables) -> dict[str, str]            # optional: file stem -> LaTeX (tables for the paper)

``run_experiment`` hashes the inputs (the parameters, the seed, the experiment's source, the source of
the ``nsiter`` package and its registry data, and the ``INPUTS`` files; for a machine-dependent
experiment also the machine, below).  When the hash matches the
metadata of a previous run and its files are intact, compute is skipped and the CSV is read back;
otherwise compute runs, and every unit of work wrapped in ``ctx.unit(key, fn)`` is saved as soon as it
completes, so an interrupted run resumes where it stopped.  Every file is written atomically (a
temporary file, then ``os.replace``).  The plot always receives the tables as read back from CSV, so a
fresh and a cached run draw the same figure.  Cached files that do not hold what their metadata says
(metadata that is not a JSON object, no tables, a table without its digest, a truncated saved unit) are
recomputed, never trusted.

Machines.  Experiments run with ``NSITER_TUNE=off`` unless it is set: the evaluator's kernels and plans come
from the rule table (:func:`nsiter.kernels.rule_choice`, :mod:`nsiter.plan`), never from a timing, so no result
depends on how loaded the machine was (``NSITER_TUNE=on`` runs them with this machine's measured decisions;
the setting is part of the machine below).  Exact, symbolic and certified (interval) results do not depend on
the machine; measured ones do: low-precision (bf16/fp16) errors depend on the GEMM path, timings and rounding-error measurements on
the CPU.  An experiment whose results are all of the first kind sets ``MACHINE_DEPENDENT = False``: its
input hash leaves the machine out, so another machine reuses its results, and its metadata keeps the
machine that computed them.  A machine-dependent experiment (the default) is recomputed on another
machine (:func:`machine`: CPU model, torch's CPU capability, the bf16/fp16 GEMM paths, threads), except
its units declared ``ctx.unit(key, fn, machine_dependent=False)``: those are kept in
``experiments/results/NAME.units.json``, keyed by the machine-free hash with the machine that computed
them, and reused.  ``NSITER_MACHINE_TAG=x`` adds a tag to the machine, as if on a new one (tests, and
the README's measurement of a rerun on a new machine).

Outputs, relative to an output root (the repository for full runs; a temporary folder for ``--quick``
unless ``--out`` is given, so quick runs never touch the committed results):

    experiments/results/NAME.csv (or NAME.TABLE.csv)   tidy long-format tables
    experiments/results/NAME.json                       metadata: parameters, seed, versions, hashes, machine
    experiments/results/NAME.units.json                 machine-independent units of a machine-dependent one
    figures/NAME.pdf, figures/NAME.png                  (NAME-SUFFIX.* for several figures)
    paper/generated/NAME.tex                            \\newcommand macros from ``numbers``
    paper/generated/NAME-STEM.tex                       LaTeX from ``latex``
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import importlib
import importlib.metadata
import inspect
import io
import json
import os
import platform
import re
import shutil
import stat
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from experiments.tables import Rows, macros_tex, read_csv, write_csv
from nsiter._io import WriteError, atomic_write, check_writable
from nsiter.checks import short_repr

__all__ = [
    "REPO",
    "Context",
    "Rows",
    "Tables",
    "discover",
    "quick_root",
    "run_all",
    "run_experiment",
]

REPO = Path(__file__).resolve().parent.parent
EXPERIMENTS_DIR = Path(__file__).resolve().parent
HELPER_MODULES = {"__init__", "__main__", "common", "notes", "tables", "training"}
VERSIONED_PACKAGES = ("nsiter", "numpy", "scipy", "sympy", "mpmath", "torch", "matplotlib", "seaborn")

Tables = dict[str, Rows]
MAIN = "main"  # the table name used when compute returns a plain list of rows
TABLE_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
MACHINE_TAG_ENV = "NSITER_MACHINE_TAG"


# ----------------------------------------------------------------------------------------- files
def _atomic_write(path: Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` atomically, creating its folder (``nsiter._io.atomic_write``)."""
    atomic_write(path, data, parents=True)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_digest(path: Path) -> str:
    return _sha256(path.read_bytes())


def _read_json(path: Path) -> Any:
    """The JSON value stored at ``path``; ``None`` when it is missing, unreadable, binary, not JSON or not a
    regular file (a FIFO would block the read, a device like ``/dev/zero`` never end it)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None
        return json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError):
        return None


def _rows_or_none(value: Any) -> Rows | None:
    """``value`` if it is a list of row dicts (as saved units hold), else ``None``."""
    if isinstance(value, list) and all(isinstance(r, dict) for r in value):
        return value
    return None


def _nsiter_digest() -> str:
    """One hash over the nsiter package's source and data files: library changes invalidate caches."""
    import nsiter

    root = Path(nsiter.__file__).resolve().parent
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.suffix in (".py", ".json") and "__pycache__" not in p.parts:
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def versions() -> dict[str, str]:
    """Python, platform and the versions of the packages the experiments use."""
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in VERSIONED_PACKAGES:
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = "absent"
    return out


def machine() -> dict[str, str]:
    """What the measured numbers depend on beyond the inputs: the CPU model, torch's CPU kernel family and
    the low-precision GEMM path the evaluator takes (native or emulated bf16/fp16), the thread count, and
    ``NSITER_MACHINE_TAG`` when set.  Part of a machine-dependent experiment's input hash, so a rerun on
    another CPU or kernel path recomputes its measurements instead of reusing them."""
    import torch

    from nsiter.evaluate import evaluation_path
    from nsiter.kernels import cpu_model, tuning_enabled

    out = {
        "cpu": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "bf16_path": evaluation_path("cpu", "bfloat16"),
        "fp16_path": evaluation_path("cpu", "float16"),
        "threads": str(torch.get_num_threads()),
    }
    if tuning_enabled():
        out["tuning"] = "on"
    tag = os.environ.get(MACHINE_TAG_ENV, "").strip()
    if tag:
        out["tag"] = tag
    return out


# ----------------------------------------------------------------------------------------- context
def quick_root() -> Path:
    """Where ``--quick`` writes by default: a folder in the system's temporary directory."""
    return Path(tempfile.gettempdir()) / "nsiter-quick"


@dataclass
class Context:
    """What an experiment's ``compute`` and ``plot`` see.

    Attributes:
        name: the experiment's NAME.
        params: PARAMS, with QUICK's overrides applied in quick mode.
        seed: the experiment's seed.
        quick: whether this is a ``--quick`` run.
        root: the output root (the repository, or a temporary folder).
        repo: the repository (read committed inputs from here).
        key: the input hash (with the machine when ``machine_dependent``).
        base_key: the input hash without the machine.
        machine_dependent: the module's ``MACHINE_DEPENDENT``.
        verbose: report progress at all; ``detail``: one line per unit (else, on a terminal, one line
            that updates in place).
    """

    name: str
    params: dict[str, Any]
    seed: int
    quick: bool
    root: Path
    repo: Path = REPO
    key: str = ""
    base_key: str = ""
    machine_dependent: bool = True
    verbose: bool = True
    detail: bool = False
    prefix: str = ""
    units_computed: int = field(default=0, repr=False)
    units_reused: int = field(default=0, repr=False)
    _stored: dict[str, Any] = field(default_factory=dict, repr=False)  # NAME.units.json's units
    _kept: dict[str, Any] = field(default_factory=dict, repr=False)  # this run's machine-independent units
    _line_open: bool = field(default=False, repr=False)

    @property
    def results_dir(self) -> Path:
        return self.root / "experiments" / "results"

    @property
    def figures_dir(self) -> Path:
        return self.root / "figures"

    @property
    def generated_dir(self) -> Path:
        return self.root / "paper" / "generated"

    @property
    def partial_dir(self) -> Path:
        return self.results_dir / ".partial" / f"{self.name}-{self.key[:16]}"

    @property
    def units_path(self) -> Path:
        return self.results_dir / f"{self.name}.units.json"

    def progress(self, message: str) -> None:
        """Progress on stderr: a line per message with ``detail``, else one updating line on a terminal."""
        if not self.verbose:
            return
        text = f"{self.prefix}{self.name}: {message}"
        if self.detail:
            print(text, file=sys.stderr, flush=True)
        elif sys.stderr.isatty():
            width = shutil.get_terminal_size().columns - 1
            print("\r\033[K" + text[:width], end="", file=sys.stderr, flush=True)
            self._line_open = True

    def report(self, message: str) -> None:
        """The experiment's one line of outcome (replaces the updating progress line)."""
        if self.verbose:
            head = "\r\033[K" if self._line_open else ""
            print(f"{head}{self.prefix}{self.name}: {message}", file=sys.stderr, flush=True)
            self._line_open = False

    def unit(
        self, key: str | Sequence[Any], fn: Callable[[], Rows], *, machine_dependent: bool = True
    ) -> Rows:
        """Run one resumable unit of work: ``fn()`` returns rows, saved as soon as it completes.

        On a rerun after an interruption (same input hash), a saved unit is read back instead of
        recomputed; a saved unit that cannot be read back whole is recomputed.  ``key`` identifies the
        unit within the experiment (e.g. ``("muon", "bf16")``).  ``machine_dependent=False`` declares
        that the rows are exact or certified (no low-precision measurement, no timing): such a unit is
        reused from ``NAME.units.json`` on any machine (see the module docstring, "Machines").
        """
        label = key if isinstance(key, str) else "/".join(str(k) for k in key)
        if machine_dependent and not self.machine_dependent:
            raise ValueError(
                f"unit {label!r} of {self.name} is machine-dependent, but {self.name} sets MACHINE_DEPENDENT = False"
            )
        keep = not machine_dependent and self.machine_dependent
        stored = self._stored.get(label) if keep else None
        if stored is not None:
            self._kept[label] = stored
            self.units_reused += 1
            self.progress(
                f"{label}: reused (machine-independent, computed on {stored['machine'].get('cpu')})"
            )
            return stored["rows"]
        path = self.partial_dir / (_sha256(label.encode())[:20] + ".json")
        saved = _read_json(path)
        if (
            isinstance(saved, dict)
            and saved.get("unit") == label
            and _rows_or_none(saved.get("rows")) is not None
        ):
            self.units_reused += 1
            self.progress(f"{label}: resumed from saved unit")
            rows = saved["rows"]
        else:
            t0 = time.perf_counter()
            rows = fn()
            if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
                raise ValueError(
                    f"unit {label!r} of {self.name} must return a list of row dicts, got {type(rows)}"
                )
            text = json.dumps(
                {"unit": label, "rows": [{k: _jsonable(v) for k, v in r.items()} for r in rows]}
            )
            _atomic_write(path, text)
            rows = json.loads(text)["rows"]  # exactly what a resumed or reused run reads back
            self.units_computed += 1
            self.progress(f"{label}: {len(rows)} rows in {time.perf_counter() - t0:.1f} s")
        if keep:
            self._kept[label] = {"machine": machine(), "rows": rows}
        return rows

    def load_stored_units(self) -> None:
        """Read ``NAME.units.json``: the machine-independent units of this input hash, if it holds them."""
        data = _read_json(self.units_path)
        if not isinstance(data, dict) or data.get("input_hash") != self.base_key:
            return
        units = data.get("units")
        if not isinstance(units, dict):
            return
        for label, entry in units.items():
            if (
                isinstance(entry, dict)
                and isinstance(entry.get("machine"), dict)
                and _rows_or_none(entry.get("rows")) is not None
            ):
                self._stored[label] = entry

    def store_units(self) -> Path | None:
        """Write this run's machine-independent units to ``NAME.units.json`` (unchanged bytes when reused)."""
        if not self._kept:
            return None
        data = {"name": self.name, "input_hash": self.base_key, "units": dict(sorted(self._kept.items()))}
        _write_if_changed(self.units_path, json.dumps(data, indent=1) + "\n")  # rows keep their column order
        return self.units_path


def _jsonable(v: Any) -> Any:
    if hasattr(v, "item") and callable(v.item) and not isinstance(v, (str, bytes)):
        return v.item()
    return v


# ----------------------------------------------------------------------------------------- runner
@dataclass
class Result:
    """What ``run_experiment`` did."""

    name: str
    cached: bool
    seconds: float
    files: list[Path]
    units_computed: int = 0
    units_reused: int = 0


def _params(module: ModuleType, quick: bool) -> dict[str, Any]:
    params = dict(getattr(module, "PARAMS", {}))
    if quick:
        overrides = getattr(module, "QUICK", {})
        unknown = set(overrides) - set(params)
        if unknown:
            raise ValueError(f"{module.NAME}: QUICK overrides unknown parameters {sorted(unknown)}")
        params.update(overrides)
    return params


def input_hash(module: ModuleType, params: Mapping[str, Any], seed: int, quick: bool) -> str:
    """Hash of everything an experiment's results depend on except the machine (see :func:`machine_hash`)."""
    h = hashlib.sha256()
    h.update(json.dumps({"params": params, "seed": seed, "quick": quick}, sort_keys=True).encode())
    h.update(inspect.getsource(module).encode())
    h.update(_nsiter_digest().encode())
    for rel in getattr(module, "INPUTS", ()):
        for p in sorted(REPO.glob(rel)):
            h.update(str(p.relative_to(REPO)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def machine_hash(base: str) -> str:
    """The input hash of a machine-dependent experiment: ``base`` (:func:`input_hash`) and :func:`machine`."""
    return _sha256((base + json.dumps(machine(), sort_keys=True)).encode())


def check_output_root(root: Path) -> None:
    """Refuse, before any work, an output root that cannot take the outputs: a root or output folder that
    exists but is not a folder, or a missing root whose nearest existing parent is no writable folder; then
    the rules of the writes themselves (:func:`nsiter._io.check_writable`: names within the file system's
    limits, a folder that really takes new files: ``/proc`` does not, nor a read-only mount)."""
    if not os.fspath(root):
        raise ValueError("the output root must be a non-empty path")
    root = Path(root)
    try:
        for sub in ("", "experiments", "experiments/results", "figures", "paper", "paper/generated"):
            path = root / sub if sub else root
            if (path.exists() or path.is_symlink()) and not path.is_dir():
                raise ValueError(f"output folder {path} exists and is not a folder")
    except OSError as err:  # a name over the file system's limit
        cause = os.strerror(err.errno).lower() if err.errno else str(err)
        raise ValueError(f"cannot write the outputs under {short_repr(str(root), 200)}: {cause}") from None
    parent = root
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write the outputs under {root}: {parent} is not a writable folder")
    try:
        check_writable(root / "experiments" / "results" / "metadata.json", parents=True)
    except WriteError as err:
        raise ValueError(
            f"cannot write the outputs under {short_repr(str(root), 200)}: {err.strerror}"
        ) from None


def check_result_files(ctx: Context) -> None:
    """Refuse, before the work, a result file of this experiment (``NAME.json``, ``NAME*.csv``,
    ``NAME.units.json``) that exists but is no regular file (links followed): a FIFO, a device or a folder.
    Results are read back (digests, the cache), which a FIFO would block and ``/dev/zero`` never end."""
    paths = [ctx.results_dir / f"{ctx.name}{suffix}" for suffix in (".json", ".csv", ".units.json")]
    with contextlib.suppress(OSError):
        paths += sorted(ctx.results_dir.glob(f"{ctx.name}.*.csv"))
    for path in paths:
        try:
            kind = os.stat(path).st_mode
        except FileNotFoundError:  # absent, or a dangling link: the write creates its target
            continue
        except OSError as err:  # a link loop
            raise WriteError(err.errno, os.strerror(err.errno).lower(), str(path)) from None
        if not stat.S_ISREG(kind):
            raise WriteError(errno.EINVAL, "not a regular file (results are read back from it)", str(path))


def _table_paths(ctx: Context, names: Iterable[str]) -> dict[str, Path]:
    return {t: ctx.results_dir / (f"{ctx.name}.csv" if t == MAIN else f"{ctx.name}.{t}.csv") for t in names}


def _normalise_tables(name: str, out: Any) -> Tables:
    if isinstance(out, list):
        out = {MAIN: out}
    if not isinstance(out, dict) or not all(isinstance(v, list) for v in out.values()):
        raise ValueError(f"{name}.compute must return a list of rows or a dict of lists, got {type(out)}")
    for t in out:
        if t != MAIN and not TABLE_NAME.match(t):
            raise ValueError(f"{name}: table name must be [A-Za-z0-9_-], got {t!r}")
    return out


def _cached_tables(ctx: Context, meta_path: Path) -> tuple[Tables, dict] | None:
    """The tables and metadata of a previous run with this input hash, if every table is intact; ``None``
    (recompute) for metadata that is no JSON object, lists no tables, or a table without its digest."""
    meta = _read_json(meta_path)
    if not isinstance(meta, dict) or meta.get("input_hash") != ctx.key or meta.get("name") != ctx.name:
        return None
    if json.dumps(meta.get("parameters"), sort_keys=True) != json.dumps(ctx.params, sort_keys=True):
        return None
    entries = meta.get("tables")
    if not isinstance(entries, dict) or not entries:
        return None
    for t, entry in entries.items():
        if not TABLE_NAME.match(t) or not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
            return None
    paths = _table_paths(ctx, entries)
    try:
        for t, p in paths.items():
            if not p.is_file() or _file_digest(p) != entries[t]["sha256"]:
                return None
        return {t: read_csv(p) for t, p in paths.items()}, meta
    except (OSError, ValueError):
        return None


def _figures_present(ctx: Context, meta: dict) -> bool:
    """Whether the figures the metadata lists (plain file names) are all there."""
    names = meta.get("figures", [])
    if not isinstance(names, list) or not all(isinstance(f, str) and f and Path(f).name == f for f in names):
        return False
    return all((ctx.figures_dir / f).is_file() for f in names)


def _save_figures(ctx: Context, figs: Any) -> list[Path]:
    import logging

    import matplotlib.pyplot as plt

    logging.getLogger("fontTools").setLevel(logging.ERROR)  # silence font-subsetting timestamp chatter

    if figs is None:
        return []
    if not isinstance(figs, dict):
        figs = {"": figs}
    written = []
    for suffix, fig in figs.items():
        stem = ctx.name + (f"-{suffix}" if suffix else "")
        for ext in ("pdf", "png"):
            path = ctx.figures_dir / f"{stem}.{ext}"
            buf = io.BytesIO()
            meta = {"CreationDate": None} if ext == "pdf" else {"Software": None}
            fig.savefig(buf, format=ext, dpi=200, metadata=meta)
            _atomic_write(path, buf.getvalue())
            written.append(path)
        plt.close(fig)
    return written


def _write_if_changed(path: Path, text: str) -> None:
    """Write ``text`` unless ``path`` already holds exactly it: unchanged outputs keep their bytes and times."""
    if not path.is_file() or path.read_bytes() != text.encode():
        _atomic_write(path, text)


def run_experiment(
    module: ModuleType,
    *,
    quick: bool = False,
    root: Path | None = None,
    force: bool = False,
    verbose: bool = True,
    detail: bool = False,
    prefix: str = "",
) -> Result:
    """Run one experiment module end to end (see the module docstring); returns what it did.

    ``verbose``: one line on stderr when done (``prefix`` first), with progress while it runs (``detail``:
    a line per unit; else an updating line on a terminal).  ``force`` recomputes every unit.
    """
    import matplotlib

    matplotlib.use("Agg")
    os.environ.setdefault(
        "NSITER_TUNE", "off"
    )  # decisions by the rule table, never by timing (see "Machines")
    for attr in ("NAME", "compute"):
        if not hasattr(module, attr):
            raise ValueError(f"experiment module {module.__name__} lacks {attr}")
    dependent = getattr(module, "MACHINE_DEPENDENT", True)
    if not isinstance(dependent, bool):
        raise ValueError(f"{module.NAME}: MACHINE_DEPENDENT must be True or False, got {dependent!r}")
    root = Path(root) if root is not None else (quick_root() if quick else REPO)
    check_output_root(root)
    seed = int(getattr(module, "SEED", 0))
    params = _params(module, quick)
    ctx = Context(module.NAME, params, seed, quick, root, verbose=verbose, detail=detail, prefix=prefix)
    ctx.machine_dependent = dependent
    ctx.base_key = input_hash(module, params, seed, quick)
    ctx.key = machine_hash(ctx.base_key) if dependent else ctx.base_key
    meta_path = ctx.results_dir / f"{ctx.name}.json"
    check_result_files(ctx)
    t0 = time.perf_counter()

    found = None if force else _cached_tables(ctx, meta_path)
    cached = found is not None
    tables, old_meta = found if found is not None else (None, {})
    figures_ok = cached and _figures_present(ctx, old_meta)
    files: list[Path] = []
    if not cached:
        ctx.progress("computing")
        if not force:
            ctx.load_stored_units()
        out = _normalise_tables(ctx.name, module.compute(ctx))
        paths = _table_paths(ctx, out)
        for t, rows in out.items():
            write_csv(paths[t], rows)
        tables = {t: read_csv(p) for t, p in paths.items()}
        old_meta = {
            "name": ctx.name,
            "input_hash": ctx.key,
            "quick": quick,
            "seed": seed,
            "parameters": params,
            "versions": versions(),
            "machine": machine(),
            "machine_dependent": dependent,
            "compute_seconds": round(time.perf_counter() - t0, 2),
            "tables": {
                t: {"file": paths[t].name, "rows": len(out[t]), "sha256": _file_digest(paths[t])} for t in out
            },
        }
        files += list(paths.values())
        stored = ctx.store_units()
        if stored is not None:
            old_meta["machine_independent_units"] = stored.name
            files.append(stored)
    if not figures_ok and hasattr(module, "plot"):
        import matplotlib.pyplot as plt

        with plt.rc_context():
            written = _save_figures(ctx, module.plot(tables, ctx))
        old_meta["figures"] = [p.name for p in written]
        files += written
    if hasattr(module, "numbers"):
        path = ctx.generated_dir / f"{ctx.name}.tex"
        _write_if_changed(path, macros_tex(ctx.name, module.numbers(tables)))
        files.append(path)
    if hasattr(module, "latex"):
        for stem, text in module.latex(tables).items():
            path = ctx.generated_dir / f"{ctx.name}-{stem}.tex"
            _write_if_changed(path, f"% generated by experiments/{ctx.name}.py -- do not edit\n{text}")
            files.append(path)
    _write_if_changed(meta_path, json.dumps(old_meta, indent=2, sort_keys=True) + "\n")
    for stale in ctx.partial_dir.parent.glob(f"{ctx.name}-*"):  # this run's units and any older ones
        shutil.rmtree(stale, ignore_errors=True)
    seconds = time.perf_counter() - t0
    if cached:
        ctx.report("cached" + ("" if figures_ok or not hasattr(module, "plot") else ", figures redrawn"))
    else:
        units = ctx.units_computed + ctx.units_reused
        ctx.report(
            f"computed in {seconds:.1f} s"
            + (
                f" ({ctx.units_computed} of {units} units computed, {ctx.units_reused} reused)"
                if units
                else ""
            )
        )
    return Result(ctx.name, cached, seconds, files, ctx.units_computed, ctx.units_reused)


def discover() -> dict[str, ModuleType]:
    """Every experiment module in experiments/ (modules defining NAME and compute), by NAME, sorted."""
    found = {}
    for path in sorted(EXPERIMENTS_DIR.glob("*.py")):
        if path.stem in HELPER_MODULES or path.stem.startswith("_"):
            continue
        module = importlib.import_module(f"experiments.{path.stem}")
        if hasattr(module, "NAME") and hasattr(module, "compute"):
            if path.stem != module.NAME:
                raise ValueError(f"experiments/{path.name} has NAME {module.NAME!r}; it must match the file")
            found[module.NAME] = module
    return found


def run_all(
    names: Sequence[str] = (),
    *,
    quick: bool = False,
    root: Path | None = None,
    force: bool = False,
    verbose: bool = True,
    detail: bool = False,
) -> list[Result]:
    """Run the named experiments (all when ``names`` is empty), in order: one line each on stderr."""
    modules = discover()
    unknown = [n for n in names if n not in modules]
    if unknown:
        raise ValueError(f"unknown experiment(s) {unknown}; known: {', '.join(modules)}")
    check_output_root(Path(root) if root is not None else (quick_root() if quick else REPO))
    chosen = [modules[n] for n in names] if names else list(modules.values())
    results = []
    for i, module in enumerate(chosen, 1):
        prefix = f"[{i}/{len(chosen)}] "
        results.append(
            run_experiment(
                module, quick=quick, root=root, force=force, verbose=verbose, detail=detail, prefix=prefix
            )
        )
    return results
