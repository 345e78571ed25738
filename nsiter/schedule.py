"""Schedules: the ordered odd polynomials of an iteration, with normalization, restarts and provenance.

A *schedule* is the list of polynomials that an iteration applies, one per step, together with the
normalization that precedes the first step (``Normalization``), the steps after which the Gram form
restarts (``restarts``; see ``nsiter.gram``) and where the coefficients come from (``Provenance``:
paper, repository, derivation or search record).

Schedules are data.  They round-trip losslessly through JSON (floats are written with ``repr``, exact
rationals as ``"p/q"`` strings) and are loaded at run time, never recomputed at import.  Format
``nsiter.schedule/2`` adds ``restarts``; files in format ``/1`` still load (no restarts).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from nsiter._io import atomic_write
from nsiter.checks import check_interval, check_object, short_repr
from nsiter.polynomial import OddPolynomial, as_float

__all__ = [
    "MAX_FILE_BYTES",
    "MAX_STEPS",
    "NORMS",
    "PROVENANCE_KINDS",
    "SCHEDULE_FORMAT",
    "Normalization",
    "Provenance",
    "Schedule",
]

SCHEDULE_FORMAT = "nsiter.schedule/2"
SCHEDULE_FORMATS = ("nsiter.schedule/1", SCHEDULE_FORMAT)  # formats that load
PROVENANCE_KINDS = ("paper", "repository", "record", "derived", "search", "user")
NORMS = ("frobenius", "spectral", "aol")
MAX_STEPS = 10_000  # longest schedule accepted (a file's ``repeat`` is checked against it before expanding)
MAX_FILE_BYTES = (
    2**24
)  # largest schedule file read (16 MiB: a 10000-step degree-101 schedule in JSON is ~12 MiB)


@dataclass(frozen=True)
class Provenance:
    """Where a schedule comes from.

    Attributes:
        kind: one of ``paper``, ``repository``, ``record``, ``derived``, ``search``, ``user``.
        source: human-readable source (paper and section, or ``owner/repo path``).  Required.
        reference: DOI, arXiv id or URL.
        parameters: the parameters that generated the coefficients (e.g. interval, safety factor).
        notes: conventions and caveats.
    """

    kind: str
    source: str
    reference: str = ""
    parameters: Mapping[str, Any] = field(default_factory=dict)
    notes: str = ""

    def __post_init__(self) -> None:
        if self.kind not in PROVENANCE_KINDS:
            raise ValueError(
                f"provenance kind must be one of {PROVENANCE_KINDS}, got {short_repr(self.kind)}"
            )
        if not isinstance(self.source, str) or not self.source.strip():
            raise ValueError(f"provenance needs a non-empty source, got {short_repr(self.source)}")
        for key in ("reference", "notes"):
            if not isinstance(getattr(self, key), str):
                raise ValueError(f"provenance {key} must be a string, got {short_repr(getattr(self, key))}")
        if not isinstance(self.parameters, Mapping):
            raise ValueError(f"provenance parameters must be an object, got {short_repr(self.parameters)}")
        object.__setattr__(self, "parameters", dict(self.parameters))

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "source": self.source,
            "reference": self.reference,
            "parameters": dict(self.parameters),
            "notes": self.notes,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Provenance:
        check_object(data, {"kind", "source", "reference", "parameters", "notes"}, "provenance")
        if "kind" not in data or "source" not in data:
            raise ValueError(f"provenance needs 'kind' and 'source', got keys {sorted(data)}")
        return cls(**data)


@dataclass(frozen=True)
class Normalization:
    """How the input is scaled before the first step: ``X_0 = G / (scale * ||G|| + eps)``.

    ``norm`` is ``frobenius`` (an upper bound on the spectral norm, so ``sigma_max(X_0) <= 1/scale``),
    ``spectral`` (a power-iteration estimate) or ``aol`` (Turbo-Muon's almost-orthogonal-layer column
    rescaling ``X D`` with ``D_jj = (sum_i |X^T X|_ij)^(-1/2)``, which also bounds the spectral norm by 1).  ``scale`` is the safety factor that some schedules apply to
    the norm (modded-nanogpt's Polar Express uses 1.02); Muon uses 1 with ``eps = 1e-7``.
    """

    norm: str = "frobenius"
    scale: float = 1.0
    eps: float = 1e-7

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise ValueError(f"normalization norm must be one of {NORMS}, got {short_repr(self.norm)}")
        scale = as_float(self.scale, "normalization scale")
        eps = as_float(self.eps, "normalization eps")
        if scale <= 0:
            raise ValueError(f"normalization scale must be positive, got {short_repr(self.scale)}")
        if eps < 0:
            raise ValueError(f"normalization eps must be >= 0, got {short_repr(self.eps)}")
        object.__setattr__(self, "scale", scale)
        object.__setattr__(self, "eps", eps)

    def polynomial_interval(self, lo: float, hi: float) -> tuple[float, float]:
        """The interval the first polynomial sees for inputs ``G`` with ``sigma / ||G|| in [lo, hi]``.

        Every schedule-level analysis (``analyze``, ``steps_to``, ``certified_error``) takes the interval of
        the polynomials, the singular values of ``X_0``.  For inputs known relative to their norm this is
        ``[lo / scale, hi / scale]`` (``eps`` only lowers it further, by a relative ``eps / ||G||``).  AOL's
        column rescaling is no scalar map of the singular values: ``ValueError``.

        Example:
            >>> Normalization("frobenius", scale=1.01).polynomial_interval(1e-3, 1.0)
            (0.000990099009900990..., 0.990099009900990...)
        """
        lo, hi = check_interval(lo, hi)
        if self.norm == "aol":
            raise ValueError(
                "'aol' normalization is no scalar map of the singular values: no polynomial interval"
            )
        return lo / self.scale, hi / self.scale

    def to_dict(self) -> dict[str, Any]:
        return {"norm": self.norm, "scale": self.scale, "eps": self.eps}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Normalization:
        check_object(data, {"norm", "scale", "eps"}, "normalization")
        return cls(**data)


@dataclass(frozen=True)
class Schedule:
    """An ordered list of odd polynomials, applied one per step, with its provenance.

    A fixed iteration is the same polynomial repeated.  ``len(schedule)`` is the number of steps.
    """

    name: str
    steps: tuple[OddPolynomial, ...]
    provenance: Provenance
    normalization: Normalization = field(default_factory=Normalization)
    description: str = ""
    restarts: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"schedule name must be a non-empty string, got {short_repr(self.name)}")
        steps = tuple(self.steps)
        if not steps:
            raise ValueError(f"schedule {short_repr(self.name)} has no steps")
        if len(steps) > MAX_STEPS:
            raise ValueError(
                f"schedule {short_repr(self.name)} has {len(steps)} steps, above the limit MAX_STEPS = {MAX_STEPS}"
            )
        for s in steps:
            if not isinstance(s, OddPolynomial):
                raise ValueError(f"schedule steps must be OddPolynomial, got {short_repr(s)}")
        object.__setattr__(self, "steps", steps)
        if not isinstance(self.description, str):
            raise ValueError(f"schedule description must be a string, got {short_repr(self.description)}")
        if not isinstance(self.provenance, Provenance):
            raise ValueError(f"provenance must be a Provenance, got {short_repr(self.provenance)}")
        object.__setattr__(self, "restarts", check_restarts(self.restarts, len(steps)))

    @classmethod
    def repeated(
        cls, name: str, polynomial: OddPolynomial, steps: int, provenance: Provenance, **kw: Any
    ) -> Schedule:
        """A fixed iteration: ``polynomial`` applied ``steps`` times."""
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be a positive integer, got {short_repr(steps)}")
        if steps > MAX_STEPS:  # before building the tuple
            raise ValueError(f"steps = {steps} exceeds the limit MAX_STEPS = {MAX_STEPS}")
        return cls(name, (polynomial,) * steps, provenance, **kw)

    def __repr__(self) -> str:
        """One line: name, steps, normalization, restarts and where the schedule comes from."""
        first = self.steps[0]
        if all(p == first for p in self.steps):
            body = f"{len(self)} x {first!r}"
        else:
            degrees = ",".join(str(p.degree) for p in self.steps)
            body = f"{len(self)} steps of degree {degrees}" if len(self) <= 12 else f"{len(self)} steps"
        n = self.normalization
        norm = n.norm + (f"/{n.scale:g}" if n.scale != 1 else "") + (f" eps={n.eps:g}" if n.eps else "")
        rs = f", restarts={self.restarts}" if self.restarts else ""
        return f"Schedule({self.name!r}, {body}, {norm}{rs}, {self.provenance.kind})"

    def __len__(self) -> int:
        return len(self.steps)

    def __iter__(self):
        return iter(self.steps)

    def __getitem__(self, k: int) -> OddPolynomial:
        return self.steps[k]

    def truncated(self, steps: int) -> Schedule:
        """The first ``steps`` steps; repeats the last polynomial when asked for more."""
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be a positive integer, got {short_repr(steps)}")
        if steps > MAX_STEPS:
            raise ValueError(f"steps = {steps} exceeds the limit MAX_STEPS = {MAX_STEPS}")
        new = self.steps[:steps] + (self.steps[-1],) * max(0, steps - len(self.steps))
        return replace(self, steps=new, restarts=tuple(r for r in self.restarts if r < steps))

    @classmethod
    def from_coefficients(cls, steps: Sequence[Any], name: str = "user") -> Schedule:
        """A schedule of provenance kind ``user`` from a list of coefficient tuples (or ``OddPolynomial``).

        ``Schedule.from_coefficients([(3.4445, -4.7750, 2.0315)] * 5)`` is Muon's iteration.
        """
        if isinstance(steps, (str, bytes)) or not isinstance(steps, Sequence) or not steps:
            raise ValueError(f"expected a non-empty list of coefficient tuples, got {short_repr(steps)}")
        if len(steps) > MAX_STEPS:
            raise ValueError(f"{len(steps)} steps exceed the limit MAX_STEPS = {MAX_STEPS}")
        polys = tuple(p if isinstance(p, OddPolynomial) else OddPolynomial(p) for p in steps)
        return cls(name, polys, Provenance("user", "given as a list of coefficients"))

    def with_restarts(self, restarts: Sequence[int]) -> Schedule:
        """The same schedule with Gram-form restarts after the given steps (1-based, ``< len(self)``)."""
        return replace(self, restarts=check_restarts(restarts, len(self)))

    @property
    def is_exact(self) -> bool:
        return all(p.exact is not None for p in self.steps)

    @property
    def slope_at_zero(self) -> float:
        """``phi_T'(0) = prod_k p_k'(0)``: how much the composed map amplifies the smallest singular values."""
        return float(np.prod([p.slope_at_zero for p in self.steps]))

    @property
    def matmuls(self) -> int:
        """Matrix products of the standard form, summed over the steps (``OddPolynomial.matmuls``).

        A step of degree ``2l + 1`` forms ``A = X X^T``, applies ``l - 1`` Horner products in ``A`` and one
        ``B X``: ``l + 1`` products (cubic 2, quintic 3); degree 1 costs 0 (:func:`nsiter.polynomial.step_matmuls`).
        The Gram form counts differently (:func:`nsiter.cost.method_flops`).
        """
        return sum(p.matmuls for p in self.steps)

    def composed(self, k: int | None = None) -> OddPolynomial:
        """The composed map ``phi_k = p_k o ... o p_1`` as one polynomial (exact when every step is)."""
        k = len(self) if k is None else k
        if not 1 <= k <= len(self):
            raise ValueError(f"k must be in 1..{len(self)}, got {short_repr(k)}")
        out = self.steps[0]
        for p in self.steps[1:k]:
            out = p.compose(out)
        return out

    def apply(self, x: Any, k: int | None = None) -> Any:
        """``phi_k(x)`` by applying the first ``k`` steps in turn (floats / numpy arrays)."""
        k = len(self) if k is None else k
        for p in self.steps[:k]:
            x = p(x)
        return x

    # ----------------------------------------------------------------------------- JSON
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; runs of equal consecutive steps are stored once with ``repeat``."""
        runs: list[dict[str, Any]] = []
        for p in self.steps:
            if runs and runs[-1]["_p"] == p:
                runs[-1]["repeat"] += 1
            else:
                runs.append({"_p": p, "repeat": 1})
        steps = []
        for run in runs:
            d = run["_p"].to_dict()
            if run["repeat"] > 1:
                d["repeat"] = run["repeat"]
            steps.append(d)
        out = {
            "format": SCHEDULE_FORMAT,
            "name": self.name,
            "description": self.description,
            "normalization": self.normalization.to_dict(),
            "provenance": self.provenance.to_dict(),
            "steps": steps,
        }
        if self.restarts:
            out["restarts"] = list(self.restarts)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Schedule:
        if not isinstance(data, Mapping):
            raise ValueError(f"a schedule must be a JSON object, got {type(data).__name__}")
        fmt = data.get("format")
        if fmt not in SCHEDULE_FORMATS:
            raise ValueError(f"schedule format must be one of {SCHEDULE_FORMATS}, got {short_repr(fmt)}")
        keys = {"format", "name", "description", "normalization", "provenance", "steps"}
        if fmt != "nsiter.schedule/1":
            keys.add("restarts")
        check_object(data, keys, "schedule")
        for key in ("name", "provenance", "steps"):
            if key not in data:
                raise ValueError(f"schedule is missing {short_repr(key)}")
        raw_steps = data["steps"]
        if not isinstance(raw_steps, list) or not raw_steps:
            raise ValueError(f"schedule 'steps' must be a non-empty list, got {short_repr(raw_steps)}")
        steps: list[OddPolynomial] = []
        for raw in raw_steps:
            p = OddPolynomial.from_dict(raw)
            rep = raw.get("repeat", 1)
            if isinstance(rep, bool) or not isinstance(rep, int) or rep < 1:
                raise ValueError(f"step 'repeat' must be a positive integer, got {short_repr(rep)}")
            if len(steps) + rep > MAX_STEPS:
                raise ValueError(
                    f"step 'repeat' = {rep} makes the schedule longer than MAX_STEPS = {MAX_STEPS}"
                )
            steps.extend([p] * rep)
        return cls(
            name=data["name"],
            steps=tuple(steps),
            provenance=Provenance.from_dict(data["provenance"]),
            normalization=Normalization.from_dict(data.get("normalization", {})),
            description=data.get("description", ""),
            restarts=data.get("restarts", ()),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Schedule:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"malformed schedule JSON: {err}") from err
        except RecursionError:  # the decoder's own depth guard: nesting no schedule has
            raise ValueError("malformed schedule JSON: nested deeper than the JSON decoder allows") from None
        return cls.from_dict(data)

    def save(self, path: str | Path) -> Path:
        """Write the schedule JSON to ``path`` by ``nsiter._io.atomic_write`` (links followed, a regular file
        replaced atomically, a device or FIFO written in place); a failure raises ``WriteError``, a
        ``ValueError`` naming ``path``."""
        return atomic_write(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> Schedule:
        path = Path(path)
        try:
            with path.open("rb") as fh:
                raw = fh.read(MAX_FILE_BYTES + 1)  # bounded: a FIFO or /dev/zero is not read forever
            if len(raw) > MAX_FILE_BYTES:
                raise ValueError(
                    f"schedule file {short_repr(str(path), 200)} is larger than the limit "
                    f"MAX_FILE_BYTES = {MAX_FILE_BYTES}"
                )
            text = raw.decode("utf-8")
        except OSError as err:
            raise ValueError(
                f"cannot read schedule file {short_repr(str(path), 200)}: {err.strerror}"
            ) from err
        except UnicodeDecodeError as err:
            raise ValueError(
                f"schedule file {short_repr(str(path), 200)} is not UTF-8 text (byte {err.start}); expected schedule JSON"
            ) from err
        return cls.from_json(text)


def check_restarts(restarts: Any, steps: int) -> tuple[int, ...]:
    """Validate Gram-form restart positions: distinct step indices ``1 <= r < steps``, returned sorted.

    A restart after step ``r`` sets ``X <- Q X``, ``R <- X X^T`` and ``Q <- I`` before step ``r + 1``.
    """
    if isinstance(restarts, (str, bytes)) or not isinstance(restarts, Sequence):
        raise ValueError(f"restarts must be a list of step numbers, got {short_repr(restarts)}")
    out = []
    for r in restarts:
        if isinstance(r, bool) or not isinstance(r, (int, np.integer)) or not 1 <= int(r) < steps:
            raise ValueError(
                f"restart positions must be integers in 1..{steps - 1} (after a step), got {short_repr(r)}"
            )
        out.append(int(r))
    if len(set(out)) != len(out):
        raise ValueError(f"restart positions must be distinct, got {short_repr(list(restarts))}")
    return tuple(sorted(out))
