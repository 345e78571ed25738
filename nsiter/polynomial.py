"""Odd polynomials and schedules of them.

An odd polynomial ``p(x) = c_0 x + c_1 x^3 + ... + c_{l} x^{2l+1}`` acts on a matrix through its
singular values: ``p(U S V^T) = U p(S) V^T``.  A *schedule* is the ordered list of polynomials that an
iteration applies, one per step, together with the normalization that precedes the first step and the
provenance of the coefficients (paper, repository, derivation or search record).

Schedules are data.  They round-trip losslessly through JSON (floats are written with ``repr``, exact
rationals as ``"p/q"`` strings) and are loaded at run time, never recomputed at import.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from nsiter._io import atomic_write

__all__ = [
    "SCHEDULE_FORMAT",
    "Normalization",
    "OddPolynomial",
    "Provenance",
    "Schedule",
]

SCHEDULE_FORMAT = "nsiter.schedule/1"
PROVENANCE_KINDS = ("paper", "repository", "record", "derived", "search", "user")
NORMS = ("frobenius", "spectral", "aol")


def _as_fraction(value: Any) -> Fraction:
    """Parse an exact rational from an int, Fraction or ``"p/q"`` string; reject floats (inexact)."""
    if isinstance(value, bool):
        raise ValueError(f"exact coefficient must be a rational, got {value!r}")
    if isinstance(value, (int, Fraction)):
        return Fraction(value)
    if isinstance(value, str):
        try:
            return Fraction(value.strip())
        except (ValueError, ZeroDivisionError) as err:
            raise ValueError(f"exact coefficient {value!r} is not a rational 'p/q'") from err
    if hasattr(value, "p") and hasattr(value, "q"):  # sympy.Rational without importing sympy
        return Fraction(int(value.p), int(value.q))
    raise ValueError(f"exact coefficient must be int, Fraction or 'p/q' string, got {value!r}")


def _as_float(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        if isinstance(value, Fraction):
            return float(value)
        raise ValueError(f"{what} must be a real number, got {value!r}")
    out = float(value)
    if not math.isfinite(out):
        raise ValueError(f"{what} must be finite, got {value!r}")
    return out


class OddPolynomial:
    """An odd polynomial ``p(x) = sum_k c_k x^(2k+1)``.

    Args:
        coefficients: ``(c_0, c_1, ...)``, the coefficients of ``x, x^3, x^5, ...``.  May be omitted when
            ``exact`` is given.
        exact: optional exact rationals for the same coefficients (ints, ``Fraction`` or ``"p/q"``).  When
            given, the float coefficients are their nearest doubles and must agree with ``coefficients``.

    Evaluation is Horner's rule in ``x^2``: ``p(x) = x (c_0 + x^2 (c_1 + x^2 (c_2 + ...)))``.
    """

    __slots__ = ("coefficients", "exact")

    def __init__(
        self,
        coefficients: Sequence[float] | None = None,
        exact: Sequence[int | Fraction | str] | None = None,
    ) -> None:
        if coefficients is None and exact is None:
            raise ValueError("OddPolynomial needs coefficients or exact rationals, got neither")
        exact_t = None
        if exact is not None:
            if isinstance(exact, (str, bytes)) or not isinstance(exact, Iterable):
                raise ValueError(f"exact must be a sequence of rationals, got {exact!r}")
            exact_t = tuple(_as_fraction(v) for v in exact)
        if coefficients is None:
            coeffs = tuple(float(v) for v in exact_t)
        else:
            if isinstance(coefficients, (str, bytes)) or not isinstance(coefficients, Iterable):
                raise ValueError(f"coefficients must be a sequence of numbers, got {coefficients!r}")
            coeffs = tuple(_as_float(v, "coefficient") for v in coefficients)
        if not coeffs:
            raise ValueError("an odd polynomial needs at least one coefficient, got []")
        if exact_t is not None:
            if len(exact_t) != len(coeffs):
                raise ValueError(f"exact has {len(exact_t)} entries but coefficients has {len(coeffs)}")
            for c, e in zip(coeffs, exact_t, strict=True):
                if not math.isclose(c, float(e), rel_tol=1e-12, abs_tol=1e-300):
                    raise ValueError(f"coefficient {c!r} disagrees with its exact value {e}")
        self.coefficients: tuple[float, ...] = coeffs
        self.exact: tuple[Fraction, ...] | None = exact_t

    # ----------------------------------------------------------------------------- basic algebra
    @property
    def degree(self) -> int:
        """Nominal degree ``2 len(coefficients) - 1``."""
        return 2 * len(self.coefficients) - 1

    def __call__(self, x: Any) -> Any:
        """Evaluate ``p(x)`` on a float or numpy array (Horner in ``x^2``)."""
        x = np.asarray(x, dtype=float) if not isinstance(x, float) else x
        x2 = x * x
        acc = self.coefficients[-1]
        for c in reversed(self.coefficients[:-1]):
            acc = acc * x2 + c
        return acc * x

    def derivative(self, x: Any) -> Any:
        """Evaluate ``p'(x) = sum_k (2k+1) c_k x^(2k)``."""
        x = np.asarray(x, dtype=float) if not isinstance(x, float) else x
        x2 = x * x
        n = len(self.coefficients)
        acc = (2 * n - 1) * self.coefficients[-1]
        for k in range(n - 2, -1, -1):
            acc = acc * x2 + (2 * k + 1) * self.coefficients[k]
        return acc

    @property
    def slope_at_zero(self) -> float:
        """``p'(0) = c_0``."""
        return self.coefficients[0]

    def dense(self) -> np.ndarray:
        """All coefficients in ascending powers ``[0, c_0, 0, c_1, ...]`` (numpy.polynomial order)."""
        out = np.zeros(self.degree + 1)
        out[1::2] = self.coefficients
        return out

    def dense_exact(self) -> list[Fraction]:
        """Exact ascending coefficients; raises if this polynomial has no exact form."""
        if self.exact is None:
            raise ValueError(f"{self!r} has no exact rational coefficients")
        out = [Fraction(0)] * (self.degree + 1)
        out[1::2] = self.exact
        return out

    @classmethod
    def from_dense(cls, dense: Sequence[Any], *, exact: bool = False) -> OddPolynomial:
        """Build from ascending coefficients; even-power entries must be zero."""
        dense = list(dense)
        if any(v != 0 for v in dense[0::2]):
            raise ValueError(f"polynomial is not odd: even-power coefficients {dense[0::2]}")
        odd = dense[1::2] or [0]
        while len(odd) > 1 and odd[-1] == 0:
            odd.pop()
        return cls(exact=odd) if exact else cls([float(v) for v in odd])

    def compose(self, inner: OddPolynomial) -> OddPolynomial:
        """``(self o inner)(x) = self(inner(x))``: odd of degree ``deg(self) deg(inner)``; exact if both are."""
        if self.exact is not None and inner.exact is not None:
            result = _compose_dense(self.dense_exact(), inner.dense_exact(), Fraction(0))
            return OddPolynomial.from_dense(result, exact=True)
        result = _compose_dense(list(self.dense()), list(inner.dense()), 0.0)
        return OddPolynomial.from_dense([float(v) for v in result])

    def scaled_input(self, s: float) -> OddPolynomial:
        """``x -> p(x / s)``: the safety-factor transform of Polar Express (Amsel et al. 2025)."""
        s = _as_float(s, "scale")
        if s <= 0:
            raise ValueError(f"scale must be positive, got {s!r}")
        return OddPolynomial([c / s ** (2 * k + 1) for k, c in enumerate(self.coefficients)])

    # ----------------------------------------------------------------------------- I/O, identity
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"coefficients": list(self.coefficients)}
        if self.exact is not None:
            out["exact"] = [str(v) for v in self.exact]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OddPolynomial:
        if not isinstance(data, Mapping):
            raise ValueError(f"a step must be an object with 'coefficients', got {data!r}")
        unknown = set(data) - {"coefficients", "exact", "repeat"}
        if unknown:
            raise ValueError(f"unknown keys in step: {sorted(unknown)}")
        return cls(data.get("coefficients"), data.get("exact"))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, OddPolynomial):
            return NotImplemented
        return self.coefficients == other.coefficients and self.exact == other.exact

    def __hash__(self) -> int:
        return hash((self.coefficients, self.exact))

    def __repr__(self) -> str:
        if self.exact is not None:
            return f"OddPolynomial(exact=[{', '.join(str(v) for v in self.exact)}])"
        return f"OddPolynomial({list(self.coefficients)!r})"


def _compose_dense(outer: list, inner: list, zero: Any) -> list:
    """Compose ascending coefficient lists (Horner on polynomials); works for floats or Fractions."""
    result = [zero]
    for c in reversed(outer):
        result = _poly_mul(result, inner, zero)
        result[0] = result[0] + c
    return result


def _poly_mul(a: list, b: list, zero: Any) -> list:
    out = [zero] * (len(a) + len(b) - 1)
    for i, x in enumerate(a):
        if x == 0:
            continue
        for j, y in enumerate(b):
            out[i + j] = out[i + j] + x * y
    return out


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
            raise ValueError(f"provenance kind must be one of {PROVENANCE_KINDS}, got {self.kind!r}")
        if not isinstance(self.source, str) or not self.source.strip():
            raise ValueError(f"provenance needs a non-empty source, got {self.source!r}")
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
        if not isinstance(data, Mapping):
            raise ValueError(f"provenance must be an object, got {data!r}")
        unknown = set(data) - {"kind", "source", "reference", "parameters", "notes"}
        if unknown:
            raise ValueError(f"unknown keys in provenance: {sorted(unknown)}")
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
            raise ValueError(f"normalization norm must be one of {NORMS}, got {self.norm!r}")
        scale = _as_float(self.scale, "normalization scale")
        eps = _as_float(self.eps, "normalization eps")
        if scale <= 0:
            raise ValueError(f"normalization scale must be positive, got {self.scale!r}")
        if eps < 0:
            raise ValueError(f"normalization eps must be >= 0, got {self.eps!r}")
        object.__setattr__(self, "scale", scale)
        object.__setattr__(self, "eps", eps)

    def to_dict(self) -> dict[str, Any]:
        return {"norm": self.norm, "scale": self.scale, "eps": self.eps}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Normalization:
        if not isinstance(data, Mapping):
            raise ValueError(f"normalization must be an object, got {data!r}")
        unknown = set(data) - {"norm", "scale", "eps"}
        if unknown:
            raise ValueError(f"unknown keys in normalization: {sorted(unknown)}")
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

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"schedule name must be a non-empty string, got {self.name!r}")
        steps = tuple(self.steps)
        if not steps:
            raise ValueError(f"schedule {self.name!r} has no steps")
        for s in steps:
            if not isinstance(s, OddPolynomial):
                raise ValueError(f"schedule steps must be OddPolynomial, got {s!r}")
        object.__setattr__(self, "steps", steps)
        if not isinstance(self.provenance, Provenance):
            raise ValueError(f"provenance must be a Provenance, got {self.provenance!r}")

    @classmethod
    def repeated(
        cls, name: str, polynomial: OddPolynomial, steps: int, provenance: Provenance, **kw: Any
    ) -> Schedule:
        """A fixed iteration: ``polynomial`` applied ``steps`` times."""
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be a positive integer, got {steps!r}")
        return cls(name, (polynomial,) * steps, provenance, **kw)

    def __len__(self) -> int:
        return len(self.steps)

    def __iter__(self):
        return iter(self.steps)

    def __getitem__(self, k: int) -> OddPolynomial:
        return self.steps[k]

    def truncated(self, steps: int) -> Schedule:
        """The first ``steps`` steps; repeats the last polynomial when asked for more."""
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be a positive integer, got {steps!r}")
        new = self.steps[:steps] + (self.steps[-1],) * max(0, steps - len(self.steps))
        return replace(self, steps=new)

    @property
    def is_exact(self) -> bool:
        return all(p.exact is not None for p in self.steps)

    @property
    def slope_at_zero(self) -> float:
        """``phi_T'(0) = prod_k p_k'(0)``: how much the composed map amplifies the smallest singular values."""
        return float(np.prod([p.slope_at_zero for p in self.steps]))

    def matmuls(self) -> int:
        """Matrix products of the Gram-form step: ``A = X X^T``, ``l - 1`` Horner products, ``B X`` per step.

        A step of degree ``2l + 1`` costs ``l + 1`` products (cubic 2, quintic 3); degree 1 costs 0.
        """
        return sum(len(p.coefficients) if len(p.coefficients) > 1 else 0 for p in self.steps)

    def composed(self, k: int | None = None) -> OddPolynomial:
        """The composed map ``phi_k = p_k o ... o p_1`` as one polynomial (exact when every step is)."""
        k = len(self) if k is None else k
        if not 1 <= k <= len(self):
            raise ValueError(f"k must be in 1..{len(self)}, got {k!r}")
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
        return {
            "format": SCHEDULE_FORMAT,
            "name": self.name,
            "description": self.description,
            "normalization": self.normalization.to_dict(),
            "provenance": self.provenance.to_dict(),
            "steps": steps,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Schedule:
        if not isinstance(data, Mapping):
            raise ValueError(f"a schedule must be a JSON object, got {type(data).__name__}")
        fmt = data.get("format")
        if fmt != SCHEDULE_FORMAT:
            raise ValueError(f"schedule format must be {SCHEDULE_FORMAT!r}, got {fmt!r}")
        unknown = set(data) - {"format", "name", "description", "normalization", "provenance", "steps"}
        if unknown:
            raise ValueError(f"unknown keys in schedule: {sorted(unknown)}")
        for key in ("name", "provenance", "steps"):
            if key not in data:
                raise ValueError(f"schedule is missing {key!r}")
        raw_steps = data["steps"]
        if not isinstance(raw_steps, list) or not raw_steps:
            raise ValueError(f"schedule 'steps' must be a non-empty list, got {raw_steps!r}")
        steps: list[OddPolynomial] = []
        for raw in raw_steps:
            p = OddPolynomial.from_dict(raw)
            rep = raw.get("repeat", 1)
            if isinstance(rep, bool) or not isinstance(rep, int) or rep < 1:
                raise ValueError(f"step 'repeat' must be a positive integer, got {rep!r}")
            steps.extend([p] * rep)
        return cls(
            name=data["name"],
            steps=tuple(steps),
            provenance=Provenance.from_dict(data["provenance"]),
            normalization=Normalization.from_dict(data.get("normalization", {})),
            description=data.get("description", ""),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Schedule:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"malformed schedule JSON: {err}") from err
        return cls.from_dict(data)

    def save(self, path: str | Path) -> Path:
        """Write atomically (temporary file, then rename)."""
        return atomic_write(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> Schedule:
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as err:
            raise ValueError(f"cannot read schedule file {str(path)!r}: {err.strerror}") from err
        return cls.from_json(text)
