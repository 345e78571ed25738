"""Odd polynomials: the steps of a Newton–Schulz iteration.

An odd polynomial ``p(x) = c_0 x + c_1 x^3 + ... + c_{l} x^{2l+1}`` acts on a matrix through its
singular values: ``p(U S V^T) = U p(S) V^T`` (Higham, *Functions of Matrices*, SIAM 2008, ch. 8).
Coefficients are floats, optionally with exact rationals (``"p/q"`` strings in JSON).  Schedules of
such polynomials live in :mod:`nsiter.schedule`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from fractions import Fraction
from typing import Any

import numpy as np

from nsiter.checks import check_object, short_repr

__all__ = [
    "MAX_DEGREE",
    "MAX_EXACT_CHARS",
    "MAX_SYMBOLIC_DEGREE",
    "OddPolynomial",
    "as_float",
    "step_matmuls",
]

MAX_DEGREE = 1001  # largest odd degree accepted anywhere (a degree-1001 step already costs 501 products)
# Largest degree derived symbolically (nsiter.symbolic).  Measured on a 2-core AVX2 CPU:
# newton_schulz_family(101) takes about 2 s (degree 201: 7 s; the exact real roots of the convergence
# bound dominate), newton_schulz(101) about 1 s, pade_iteration(l, m) with l + m = 50 under 2 s.
MAX_SYMBOLIC_DEGREE = 101


MAX_EXACT_CHARS = 4096  # longest exact coefficient string accepted ("p/q" of at most this many characters)


def _as_fraction(value: Any) -> Fraction:
    """Parse an exact rational from an int, Fraction or ``"p/q"`` string; reject floats (inexact).

    Strings are ``"p/q"``, integers or decimals (``"1e-3"`` is exactly 1/1000) of at most ``MAX_EXACT_CHARS``
    characters, and the value must lie in the float range, since each exact coefficient carries its nearest
    double: ``"1e999"`` is rejected by name, not with an ``OverflowError``.
    """
    if isinstance(value, bool):
        raise ValueError(f"exact coefficient must be a rational, got {short_repr(value)}")
    if isinstance(value, (int, Fraction)):
        out = Fraction(value)
    elif isinstance(value, str):
        if len(value) > MAX_EXACT_CHARS:
            raise ValueError(
                f"exact coefficient {short_repr(value)} is longer than the limit MAX_EXACT_CHARS = {MAX_EXACT_CHARS}"
            )
        try:
            out = Fraction(value.strip())
        except (ValueError, ZeroDivisionError) as err:
            raise ValueError(f"exact coefficient {short_repr(value)} is not a rational 'p/q'") from err
    elif hasattr(value, "p") and hasattr(value, "q"):  # sympy.Rational without importing sympy
        out = Fraction(int(value.p), int(value.q))
    else:
        raise ValueError(f"exact coefficient must be int, Fraction or 'p/q' string, got {short_repr(value)}")
    try:
        float(out)
    except OverflowError as err:
        raise ValueError(
            f"exact coefficient {short_repr(value)} is outside the float range (|c| < 1.8e308)"
        ) from err
    return out


def step_matmuls(degree: int) -> int:
    """Matrix products of one step of odd ``degree = 2l + 1`` in the standard form: ``l + 1`` (``A = X X^T``,
    ``l - 1`` Horner products in ``A``, then ``B X``): cubic 2, quintic 3, septic 4; degree 1 (a scaling) 0.

    The one matmul count of nsiter (``Schedule.matmuls``, the budget search).
    """
    if isinstance(degree, bool) or not isinstance(degree, int) or degree < 1 or degree % 2 == 0:
        raise ValueError(f"degree must be a positive odd integer, got {short_repr(degree)}")
    return 0 if degree == 1 else (degree - 1) // 2 + 1


def as_float(value: Any, what: str) -> float:
    """``value`` as a finite float, or ``ValueError`` naming ``what`` and the value (ints past 1.8e308 too)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating, Fraction)):
        raise ValueError(f"{what} must be a real number, got {short_repr(value)}")
    try:
        out = float(value)
    except OverflowError:
        out = math.inf
    if not math.isfinite(out):
        raise ValueError(f"{what} must be finite, got {short_repr(value)}")
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
        for given in (coefficients, exact):  # bound the work before parsing anything
            if hasattr(given, "__len__") and 2 * len(given) - 1 > MAX_DEGREE:
                raise ValueError(f"degree {2 * len(given) - 1} exceeds the limit MAX_DEGREE = {MAX_DEGREE}")
        exact_t = None
        if exact is not None:
            if isinstance(exact, (str, bytes)) or not isinstance(exact, Iterable):
                raise ValueError(f"exact must be a sequence of rationals, got {short_repr(exact)}")
            exact_t = tuple(_as_fraction(v) for v in exact)
        if coefficients is None:
            coeffs = tuple(float(v) for v in exact_t)
        else:
            if isinstance(coefficients, (str, bytes)) or not isinstance(coefficients, Iterable):
                raise ValueError(
                    f"coefficients must be a sequence of numbers, got {short_repr(coefficients)}"
                )
            coeffs = tuple(as_float(v, "coefficient") for v in coefficients)
        if not coeffs:
            raise ValueError("an odd polynomial needs at least one coefficient, got []")
        if 2 * len(coeffs) - 1 > MAX_DEGREE:
            raise ValueError(f"degree {2 * len(coeffs) - 1} exceeds the limit MAX_DEGREE = {MAX_DEGREE}")
        if exact_t is not None:
            if len(exact_t) != len(coeffs):
                raise ValueError(f"exact has {len(exact_t)} entries but coefficients has {len(coeffs)}")
            for c, e in zip(coeffs, exact_t, strict=True):
                if not math.isclose(c, float(e), rel_tol=1e-12, abs_tol=1e-300):
                    raise ValueError(f"coefficient {short_repr(c)} disagrees with its exact value {e}")
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
    def matmuls(self) -> int:
        """Matrix products of this step in the standard form (:func:`step_matmuls`)."""
        return step_matmuls(self.degree)

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
        """``(self o inner)(x) = self(inner(x))``: odd of degree ``deg(self) deg(inner)``; exact if both are.

        The degree is checked against ``MAX_DEGREE`` before any work (composing is quadratic in it).
        """
        if self.degree * inner.degree > MAX_DEGREE:
            raise ValueError(
                f"the composition has degree {self.degree} x {inner.degree} = {self.degree * inner.degree}, "
                f"above the limit MAX_DEGREE = {MAX_DEGREE}"
            )
        if self.exact is not None and inner.exact is not None:
            result = _compose_dense(self.dense_exact(), inner.dense_exact(), Fraction(0))
            return OddPolynomial.from_dense(result, exact=True)
        result = _compose_dense(list(self.dense()), list(inner.dense()), 0.0)
        return OddPolynomial.from_dense([float(v) for v in result])

    def scaled_input(self, s: float) -> OddPolynomial:
        """``x -> p(x / s)``: the safety-factor transform of Polar Express (Amsel et al. 2025)."""
        s = as_float(s, "scale")
        if s <= 0:
            raise ValueError(f"scale must be positive, got {short_repr(s)}")
        return OddPolynomial([c / s ** (2 * k + 1) for k, c in enumerate(self.coefficients)])

    # ----------------------------------------------------------------------------- I/O, identity
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"coefficients": list(self.coefficients)}
        if self.exact is not None:
            out["exact"] = [str(v) for v in self.exact]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OddPolynomial:
        check_object(data, {"coefficients", "exact", "repeat"}, "step")
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
