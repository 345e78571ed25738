"""The shape of the house: imports point down the layers, no cycles, a light math core, one home per concept.

Layers (a module may import its own layer or lower ones, at module level or inside functions):

    0  _io, _display, dtypes, polynomial, stats, checks  formats, notebook tables, odd polynomials, input checks
    1  schedule, cost, _interval                         schedules as data; the flop count; interval arithmetic
    2  registry, symbolic, dynamics, analysis, spectra,  the math core (no torch, no matplotlib): repeated-map
       restarts, search._core, search.minimax,           dynamics, certified bands, the scalar searches
       search.slope
    3  evaluate, engine, plan, rounding, matrices,       torch: the front door, the engine, the planner, the
       gram, kernels, triton_kernels, search.gradient    one rounding error, kernels, test matrices, and the
                                                         search that differentiates through them
    4  measure, records, baselines                       measurement against float64 references
    5  search (budget, calibrate), optim, plot, bench    what is built on measurement
    6  cli                                               the command line

``search/`` straddles layers 2, 3 and 5 on purpose: its scalar objectives are pure math, ``gradient`` needs
torch, and the precision-aware ``budget`` and ``calibrate`` measure on real matrices; the map says so.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "nsiter"

LAYERS = {
    "nsiter._io": 0,
    "nsiter._display": 0,
    "nsiter.dtypes": 0,
    "nsiter.polynomial": 0,
    "nsiter.stats": 0,
    "nsiter.checks": 0,
    "nsiter.schedule": 1,
    "nsiter.cost": 1,
    "nsiter._interval": 1,
    "nsiter.registry": 2,
    "nsiter.symbolic": 2,
    "nsiter.dynamics": 2,
    "nsiter.analysis": 2,
    "nsiter.restarts": 2,
    "nsiter.spectra": 2,
    "nsiter.search._core": 2,
    "nsiter.search.minimax": 2,
    "nsiter.search.slope": 2,
    "nsiter": 2,  # the package __init__: schedule and registry eagerly, the rest lazily by name
    "nsiter.__main__": 6,
    "nsiter.evaluate": 3,
    "nsiter.matrices": 3,
    "nsiter.gram": 3,
    "nsiter.kernels": 3,
    "nsiter.engine": 3,
    "nsiter.plan": 3,
    "nsiter.rounding": 3,
    "nsiter.search.gradient": 3,
    "nsiter.triton_kernels": 3,
    "nsiter.measure": 4,
    "nsiter.records": 4,
    "nsiter.baselines": 4,
    "nsiter.search": 5,
    "nsiter.optim": 5,
    "nsiter.plot": 5,
    "nsiter.bench": 5,
    "nsiter.cli": 6,
}
CORE = [
    name
    for name, layer in LAYERS.items()
    if layer <= 2
    and (name == "nsiter" or (PACKAGE / f"{name.removeprefix('nsiter.').replace('.', '/')}.py").is_file())
]


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> int:
    keys = [k for k in LAYERS if module == k or (k != "nsiter" and module.startswith(k + "."))]
    best = max(keys, key=len, default=None)
    if best is None:
        raise AssertionError(f"module {module} has no layer in tests/test_architecture.py: add it")
    return LAYERS[best]


def _imports(path: Path) -> set[str]:
    """Every nsiter (or experiments) module that ``path`` imports, anywhere in the file."""
    here = _module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names}
    return {m for m in out if m.split(".")[0] in ("nsiter", "experiments")}


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        graph[name] = {m for m in _imports(path) if m in modules and m != name}
    return graph


def test_every_module_has_a_layer_and_imports_point_down():
    graph = _graph()
    upward = [
        f"{a} (layer {_layer(a)}) imports {b} (layer {_layer(b)})"
        for a, deps in graph.items()
        for b in deps
        if _layer(b) > _layer(a)
    ]
    assert not upward, "imports against the layers:\n" + "\n".join(sorted(upward))


def test_the_library_never_imports_experiments():
    bad = [
        f"{_module_name(p)} imports {m}"
        for p in PACKAGE.rglob("*.py")
        for m in _imports(p)
        if m.startswith("experiments")
    ]
    assert not bad, bad


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with two or more modules (Tarjan 1972): the import cycles."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def test_no_import_cycles_even_inside_functions():
    assert not _cycles(_graph())


def test_the_checks_can_fail():
    """A cycle hidden behind a third module is found, and a module outside the layer map is refused."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
    with pytest.raises(AssertionError, match="no layer"):
        _layer("nsiter.unplaced")
    assert (
        _layer("nsiter.search.budget") == 5 and _layer("nsiter.search.minimax") == 2 and _layer("nsiter") == 2
    )


@pytest.mark.parametrize("module", CORE)
def test_math_core_imports_neither_torch_nor_matplotlib(module):
    code = (
        f"import sys, {module}; bad = [m for m in ('torch', 'matplotlib') if m in sys.modules]; "
        "print(','.join(bad)); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False)
    assert proc.returncode == 0, f"import {module} loads {proc.stdout.strip()} {proc.stderr[-500:]}"


def test_every_public_module_is_an_attribute_after_import_nsiter():
    # the README uses nsiter.restarts.gram_restarts(...), nsiter.kernels..., after a bare `import nsiter`:
    # every public module and package directly under nsiter/ must resolve as an attribute (lazily)
    public = sorted(
        p.stem if p.is_file() else p.name
        for p in PACKAGE.iterdir()
        if not p.name.startswith("_")
        and ((p.is_file() and p.suffix == ".py") or (p.is_dir() and (p / "__init__.py").is_file()))
    )
    code = (
        "import nsiter, types, sys\n"
        f"names = {public!r}\n"
        "bad = [n for n in names if n != 'cli' and not isinstance(getattr(nsiter, n, None), types.ModuleType)]\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]", out.stdout


def test_dir_of_a_package_lists_only_its_public_surface():
    import nsiter
    import nsiter.search

    for mod in (nsiter, nsiter.search):
        names = dir(mod)
        assert set(mod.__all__) <= set(names)
        assert not {"importlib", "inspect", "Any", "annotations"} & set(names), names


# One home per concept: each name is defined (at module level) in exactly the module named here, and nowhere else
# in the package.  Bands in analysis, the repeated map in dynamics, interval primitives in _interval, the one
# divergence rule beside the input checks, fitted restart placements in restarts.
# every name of these modules' __all__ is defined there and only there
HOME_MODULES = ("nsiter.analysis", "nsiter.dynamics")
HOMES = {
    "nsiter._interval": (  # a private module: no __all__, so its names are listed
        "PREC",
        "End",
        "StepMap",
        "endpoints",
        "image_ends",
        "image_enclosure",
        "interval_precision",
        "odd_horner",
        "odd_horner_derivative",
        "positive_real_roots",
        "round_down",
        "round_up",
    ),
    "nsiter.dynamics": ("_same_cycle",),
    "nsiter.checks": ("DIVERGENCE_THRESHOLD", "check_interval"),
    "nsiter.restarts": ("gram_restarts",),
}
# names that once had a second copy; none may come back
RETIRED = ("_mp_eval", "_stability", "_float_stability", "_interval_stability", "_positive_real_roots")
# __all__ entries that name something defined elsewhere, in files this map does not own yet
KNOWN_REEXPORTS = {
    ("nsiter.measure", "DIVERGENCE_THRESHOLD"),
    # the measurement layer hands out the one rounding error (nsiter.rounding, below the planner's layer)
    ("nsiter.measure", "rounding_error"),
    ("nsiter.measure", "rounding_errors"),
    # the evaluator's front door: the plan (nsiter.plan) and the engine's input handling (nsiter.engine)
    *(
        ("nsiter.evaluate", n)
        for n in ("Plan", "evaluation_plan", "from_wide_batch", "normalize", "resolve_schedule")
    ),
    *(("nsiter.evaluate", n) for n in ("validate_matrix", "wide_batch")),
    ("nsiter.optim.muon", "METHODS"),
    ("nsiter.optim.distributed", "assign_owners"),
}


def _defined(path: Path) -> tuple[set[str], list[str]]:
    """Names bound at module level by ``def``, ``class`` or assignment, and the module's ``__all__``."""
    names: set[str] = set()
    public: list[str] = []
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                if isinstance(t, ast.Name):
                    names.add(t.id)
                    if t.id == "__all__":
                        public = [e.value for e in node.value.elts if isinstance(e, ast.Constant)]
    return names, public


def _definitions() -> dict[str, tuple[set[str], list[str]]]:
    return {_module_name(p): _defined(p) for p in PACKAGE.rglob("*.py")}


@pytest.mark.parametrize("home", sorted({*HOMES, *HOME_MODULES}))
def test_each_concept_has_one_home(home):
    defs = _definitions()
    names = (*defs[home][1], *HOMES.get(home, ())) if home in HOME_MODULES else HOMES[home]
    assert names, home
    for name in names:
        where = sorted(m for m, (names, _) in defs.items() if name in names)
        assert where == [home], f"{name} is defined in {where}, its home is {home}"


def test_retired_duplicates_stay_retired():
    defs = _definitions()
    back = sorted((m, n) for m, (names, _) in defs.items() for n in RETIRED if n in names)
    assert not back, back


def test_a_module_lists_only_what_it_defines():
    """``__all__`` of a module (not a package ``__init__``) names its own definitions: no re-exports, so
    ``nsiter.analysis`` (certified) cannot hand out a fitted estimate such as ``gram_restarts``."""
    bad = sorted(
        (m, n)
        for m, (names, public) in _definitions().items()
        if not m.endswith("__init__")
        and (PACKAGE / f"{m.removeprefix('nsiter.').replace('.', '/')}.py").is_file()
        for n in public
        if n not in names and (m, n) not in KNOWN_REEXPORTS
    )
    assert not bad, bad
