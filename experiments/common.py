"""The experiment framework: compute -> tidy CSV + metadata JSON -> figure -> paper macros.

An experiment is a module ``experiments/NAME.py`` that defines

    NAME = "NAME"                       # outputs are named after it
    PARAMS = {...}                      # every parameter of the full run (JSON-serialisable)
    QUICK = {...}                       # overrides for ``--quick`` (tiny sizes; tests use it)
    SEED = 0                            # optional, default 0
    INPUTS = ("benchmarks/results/x.csv",)  # optional: files (relative to the repository) it reads

    def compute(ctx: Context) -> Tables            # list of row dicts, or {table_name: rows}
    def plot(tables, ctx) -> Figure | dict | None  # optional; dict {suffix: Figure} for several figures
    def numbers(tables) -> dict[str, object]       # optional: LaTeX macro name -> value for the paper
    def latex(tables) -> dict[str, str]            # optional: file stem -> LaTeX (tables for the paper)

``run_experiment`` hashes the inputs (the parameters, the seed, the experiment's source, the source of
the ``nsiter`` package and its registry data, and the ``INPUTS`` files).  When the hash matches the
metadata of a previous run and its files are intact, compute is skipped and the CSV is read back;
otherwise compute runs, and every unit of work wrapped in ``ctx.unit(key, fn)`` is saved as soon as it
completes, so an interrupted run resumes where it stopped.  Every file is written atomically (a
temporary file, then ``os.replace``).  The plot always receives the tables as read back from CSV, so a
fresh and a cached run draw the same figure.

Outputs, relative to an output root (the repository for full runs; a temporary folder for ``--quick``
unless ``--out`` is given, so quick runs never touch the committed results):

    experiments/results/NAME.csv (or NAME.TABLE.csv)   tidy long-format tables
    experiments/results/NAME.json                       metadata: parameters, seed, versions, hashes
    figures/NAME.pdf, figures/NAME.png                  (NAME-SUFFIX.* for several figures)
    paper/generated/NAME.tex                            \\newcommand macros from ``numbers``
    paper/generated/NAME-STEM.tex                       LaTeX from ``latex``
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import inspect
import io
import json
import platform
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from experiments.tables import Rows, macros_tex, read_csv, write_csv
from nsiter._io import atomic_write

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


# ----------------------------------------------------------------------------------------- files
def _atomic_write(path: Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` atomically, creating its folder (``nsiter._io.atomic_write``)."""
    atomic_write(path, data, parents=True)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_digest(path: Path) -> str:
    return _sha256(path.read_bytes())


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
    the low-precision GEMM path the evaluator takes (native or emulated bf16/fp16).  Part of every
    experiment's input hash, so a rerun on another CPU or kernel path recomputes instead of reusing."""
    import torch

    from nsiter.evaluate import evaluation_path
    from nsiter.kernels import cpu_model

    return {
        "cpu": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "bf16_path": evaluation_path("cpu", "bfloat16"),
        "fp16_path": evaluation_path("cpu", "float16"),
        "threads": str(torch.get_num_threads()),
    }


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
        key: the input hash.
    """

    name: str
    params: dict[str, Any]
    seed: int
    quick: bool
    root: Path
    repo: Path = REPO
    key: str = ""
    verbose: bool = True
    _units_done: int = field(default=0, repr=False)

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

    def progress(self, message: str) -> None:
        """One line of progress on stderr."""
        if self.verbose:
            print(f"  [{self.name}] {message}", file=sys.stderr, flush=True)

    def unit(self, key: str | Sequence[Any], fn: Callable[[], Rows]) -> Rows:
        """Run one resumable unit of work: ``fn()`` returns rows, saved as soon as it completes.

        On a rerun after an interruption (same input hash), a saved unit is read back instead of
        recomputed.  ``key`` identifies the unit within the experiment (e.g. ``("muon", "bf16")``).
        """
        label = key if isinstance(key, str) else "/".join(str(k) for k in key)
        path = self.partial_dir / (_sha256(label.encode())[:20] + ".json")
        if path.is_file():
            saved = json.loads(path.read_text())
            if saved.get("unit") == label:
                self.progress(f"{label}: resumed from saved unit")
                return saved["rows"]
        t0 = time.perf_counter()
        rows = fn()
        if not isinstance(rows, list):
            raise ValueError(f"unit {label!r} of {self.name} must return a list of rows, got {type(rows)}")
        payload = {"unit": label, "rows": [{k: _jsonable(v) for k, v in r.items()} for r in rows]}
        _atomic_write(path, json.dumps(payload, allow_nan=True))
        self._units_done += 1
        self.progress(f"{label}: {len(rows)} rows in {time.perf_counter() - t0:.1f} s")
        return payload["rows"]


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
    """Hash of everything an experiment's results depend on."""
    h = hashlib.sha256()
    h.update(json.dumps({"params": params, "seed": seed, "quick": quick}, sort_keys=True).encode())
    h.update(inspect.getsource(module).encode())
    h.update(_nsiter_digest().encode())
    h.update(json.dumps(machine(), sort_keys=True).encode())
    for rel in getattr(module, "INPUTS", ()):
        for p in sorted(REPO.glob(rel)):
            h.update(str(p.relative_to(REPO)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def _table_paths(ctx: Context, names: Iterable[str]) -> dict[str, Path]:
    return {t: ctx.results_dir / (f"{ctx.name}.csv" if t == MAIN else f"{ctx.name}.{t}.csv") for t in names}


def _normalise_tables(name: str, out: Any) -> Tables:
    if isinstance(out, list):
        out = {MAIN: out}
    if not isinstance(out, dict) or not all(isinstance(v, list) for v in out.values()):
        raise ValueError(f"{name}.compute must return a list of rows or a dict of lists, got {type(out)}")
    for t in out:
        if t != MAIN and not re.match(r"^[A-Za-z0-9_-]+$", t):
            raise ValueError(f"{name}: table name must be [A-Za-z0-9_-], got {t!r}")
    return out


def _cached_tables(ctx: Context, meta_path: Path) -> Tables | None:
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError:
        return None
    if meta.get("input_hash") != ctx.key:
        return None
    paths = _table_paths(ctx, meta.get("tables", {}))
    for t, p in paths.items():
        if not p.is_file() or _file_digest(p) != meta["tables"][t]["sha256"]:
            return None
    return {t: read_csv(p) for t, p in paths.items()}


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
    if not path.is_file() or path.read_text() != text:
        _atomic_write(path, text)


def run_experiment(
    module: ModuleType,
    *,
    quick: bool = False,
    root: Path | None = None,
    force: bool = False,
    verbose: bool = True,
) -> Result:
    """Run one experiment module end to end (see the module docstring); returns what it did."""
    import matplotlib

    matplotlib.use("Agg")
    for attr in ("NAME", "compute"):
        if not hasattr(module, attr):
            raise ValueError(f"experiment module {module.__name__} lacks {attr}")
    root = Path(root) if root is not None else (quick_root() if quick else REPO)
    seed = int(getattr(module, "SEED", 0))
    params = _params(module, quick)
    ctx = Context(module.NAME, params, seed, quick, root, verbose=verbose)
    ctx.key = input_hash(module, params, seed, quick)
    meta_path = ctx.results_dir / f"{ctx.name}.json"
    t0 = time.perf_counter()

    tables = None if force else _cached_tables(ctx, meta_path)
    cached = tables is not None
    old_meta = json.loads(meta_path.read_text()) if cached else {}
    figure_names = old_meta.get("figures", [])
    figures_ok = cached and all((ctx.figures_dir / f).is_file() for f in figure_names)
    files: list[Path] = []
    if not cached:
        ctx.progress("computing")
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
            "compute_seconds": round(time.perf_counter() - t0, 2),
            "tables": {
                t: {"file": paths[t].name, "rows": len(out[t]), "sha256": _file_digest(paths[t])} for t in out
            },
        }
        files += list(paths.values())
    else:
        ctx.progress("cached results reused")
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
    ctx.progress(f"done in {seconds:.1f} s" + (" (cached)" if cached else ""))
    return Result(ctx.name, cached, seconds, files)


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
) -> list[Result]:
    """Run the named experiments (all when ``names`` is empty), in order, with progress on stderr."""
    modules = discover()
    unknown = [n for n in names if n not in modules]
    if unknown:
        raise ValueError(f"unknown experiment(s) {unknown}; known: {', '.join(modules)}")
    chosen = [modules[n] for n in names] if names else list(modules.values())
    results = []
    for i, module in enumerate(chosen, 1):
        if verbose:
            print(f"[{i}/{len(chosen)}] {module.NAME}", file=sys.stderr, flush=True)
        results.append(run_experiment(module, quick=quick, root=root, force=force, verbose=verbose))
    return results
