"""Exact derivation of the Newton–Schulz family with sympy.

The polynomial Newton–Schulz iteration of degree ``2l + 1`` is ``x -> x * P_l(xi)`` with ``xi = 1 - x^2``
and ``P_l`` the ``[l/0]`` Padé approximant (the truncated binomial series) of ``(1 - xi)^(-1/2)``:

    P_l(xi) = sum_{j=0}^{l} binom(2j, j) / 4^j * xi^j.

It is the polynomial member of the Padé family of iterations for the matrix sign function and polar
decomposition (Kenney & Laub 1991; Higham, *Functions of Matrices*, SIAM 2008, §5.4 and §8.3).  Its
derivative has the closed form ``p_l'(x) = c_l (1 - x^2)^l`` with ``c_l = (2l + 1) binom(2l, l) / 4^l``,
so ``x = 1`` is a fixed point of order ``l + 1``: with ``e = 1 - x``,
``1 - p_l(1 - e) = C_l e^(l+1) + O(e^(l+2))`` where ``C_l = c_l 2^l / (l + 1)``.

The rational members ``[l/m]`` (``m > 0``) need a matrix inverse; ``pade_iteration`` derives them too, for
comparison (they all fix ``x = 1``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import sympy as sp

from nsiter.polynomial import MAX_DEGREE, MAX_SYMBOLIC_DEGREE, OddPolynomial
from nsiter.schedule import Schedule

__all__ = [
    "FamilyMember",
    "compose_exact",
    "newton_schulz",
    "newton_schulz_family",
    "pade_iteration",
    "pade_xi_truncation",
    "taylor_odd_coefficients",
    "to_sympy",
]

x, xi = sp.symbols("x xi", real=True)


def _check_degree(degree: Any) -> int:
    if isinstance(degree, bool) or not isinstance(degree, int):
        raise ValueError(f"degree must be an odd integer >= 3, got {degree!r}")
    if degree < 3 or degree % 2 == 0:
        raise ValueError(f"degree must be an odd integer >= 3, got {degree}")
    if degree > MAX_SYMBOLIC_DEGREE:
        raise ValueError(
            f"degree {degree} exceeds the limit MAX_SYMBOLIC_DEGREE = {MAX_SYMBOLIC_DEGREE} of the exact derivation"
        )
    return degree


def _check_order(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{what} must be a non-negative integer, got {value!r}")
    return value


def pade_iteration(l: int, m: int) -> sp.Expr:  # noqa: E741 (l is the literature's name)
    """The ``[l/m]`` Padé iteration ``x P_lm(xi) / Q_lm(xi)`` with ``xi = 1 - x^2``, exactly.

    ``P/Q`` is the ``[l/m]`` Padé approximant of ``(1 - xi)^(-1/2)`` at ``xi = 0`` (Kenney & Laub 1991).
    ``m = 0`` gives the polynomial Newton–Schulz iterations; ``[0/1]`` is Newton's ``2x / (1 + x^2)``-type
    inverse iteration.  Returns a sympy rational function of ``x``.
    """
    l = _check_order(l, "l")  # noqa: E741
    m = _check_order(m, "m")
    if 2 * (l + m) + 1 > MAX_SYMBOLIC_DEGREE:
        raise ValueError(
            f"[{l}/{m}]: l + m = {l + m} exceeds the limit (MAX_SYMBOLIC_DEGREE - 1) / 2 = "
            f"{(MAX_SYMBOLIC_DEGREE - 1) // 2}"
        )
    n = l + m
    series = [sp.binomial(2 * j, j) / sp.Integer(4) ** j for j in range(n + 1)]
    q = sp.symbols(f"q1:{m + 1}") if m else ()
    qs = [sp.Integer(1), *q]
    # coefficients l+1..l+m of Q(xi) f(xi) vanish
    eqs = [sum(qs[i] * series[k - i] for i in range(m + 1) if 0 <= k - i <= n) for k in range(l + 1, n + 1)]
    sol = sp.solve(eqs, q, dict=True) if m else [{}]
    if not sol:
        raise ValueError(f"the [{l}/{m}] Padé approximant does not exist")
    qv = [sp.nsimplify(v.subs(sol[0])) for v in qs]
    p_coeffs = [sum(qv[i] * series[k - i] for i in range(min(k, m) + 1)) for k in range(l + 1)]
    num = sum(c * xi**k for k, c in enumerate(p_coeffs))
    den = sum(c * xi**k for k, c in enumerate(qv))
    return sp.simplify((x * num / den).subs(xi, 1 - x**2))


def newton_schulz(degree: int) -> OddPolynomial:
    """The classical Newton–Schulz polynomial of odd ``degree = 2l + 1`` with exact rational coefficients.

    ``newton_schulz(3)`` is ``(3/2, -1/2)``, ``newton_schulz(5)`` is ``(15/8, -10/8, 3/8)``.
    """
    l = (_check_degree(degree) - 1) // 2  # noqa: E741
    poly = sp.Poly(sp.expand(pade_iteration(l, 0)), x)
    coeffs = [poly.coeff_monomial(x ** (2 * k + 1)) for k in range(l + 1)]
    return OddPolynomial(exact=[Fraction(int(c.p), int(c.q)) for c in coeffs])


@dataclass(frozen=True)
class FamilyMember:
    """Facts about the degree ``2l + 1`` Newton–Schulz polynomial, exact where sympy can give them.

    Attributes:
        degree, l: ``degree = 2l + 1``.
        polynomial: exact coefficients.
        order: order of convergence to 1 (``l + 1``).
        derivative_constant: ``c_l`` in ``p'(x) = c_l (1 - x^2)^l``.
        error_constant: ``C_l`` in ``1 - p(1 - e) = C_l e^(l+1) + O(e^(l+2))``.
        convergence_bound: exact ``b``: the iteration converges to 1 for every start in ``(0, b)``.  For odd
            ``l``, ``p`` decreases past 1 and ``b`` is its first positive zero (``sqrt(3)`` for the cubic);
            for even ``l``, ``p`` is increasing and ``b`` is its repelling fixed point past 1
            (``sqrt(7/3)`` for the quintic).
        latex: ``p(x) = ...`` in LaTeX.
    """

    degree: int
    l: int  # noqa: E741
    polynomial: OddPolynomial
    order: int
    derivative_constant: sp.Rational
    error_constant: sp.Rational
    convergence_bound: sp.Expr
    latex: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "degree": self.degree,
            "coefficients": [str(c) for c in self.polynomial.exact],
            "coefficients_float": list(self.polynomial.coefficients),
            "order": self.order,
            "derivative_constant": str(self.derivative_constant),
            "error_constant": str(self.error_constant),
            "convergence_bound": str(self.convergence_bound),
            "convergence_bound_float": float(sp.N(self.convergence_bound, 30)),
            "latex": self.latex,
        }


def to_sympy(p: OddPolynomial, *, decimal: bool = True) -> sp.Expr:
    """``p`` as an exact sympy polynomial in ``x``.

    Exact rationals are used when ``p`` has them; otherwise each float is read as the decimal it prints as
    (``3.4445 -> 6889/2000``, the published value) when ``decimal`` is true, or as its exact binary value.
    """
    if p.exact is not None:
        coeffs = [sp.Rational(c.numerator, c.denominator) for c in p.exact]
    elif decimal:
        coeffs = [sp.Rational(repr(c)) for c in p.coefficients]
    else:
        coeffs = [sp.Rational(c) for c in p.coefficients]
    return sum(c * x ** (2 * k + 1) for k, c in enumerate(coeffs))


def compose_exact(schedule: Schedule, k: int | None = None, *, decimal: bool = True) -> sp.Poly:
    """The composed map ``phi_k = p_k o ... o p_1`` of a schedule as an exact sympy ``Poly`` in ``x``.

    Float coefficients are read as their printed decimals (see ``to_sympy``).  The composed degree (the
    product of the step degrees) is checked against ``MAX_DEGREE`` before any work: degree 625 takes about
    1 s, while Muon's five quintics (degree 3125) would take minutes.
    """
    k = len(schedule) if k is None else k
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= len(schedule):
        raise ValueError(f"k must be in 1..{len(schedule)}, got {k!r}")
    degree = math.prod(p.degree for p in schedule.steps[:k])
    if degree > MAX_DEGREE:
        raise ValueError(
            f"the composition of {k} steps has degree {degree}, above the limit MAX_DEGREE = {MAX_DEGREE}"
        )
    out = sp.Poly(to_sympy(schedule[0], decimal=decimal), x)
    for p in schedule.steps[1:k]:
        out = sp.Poly(to_sympy(p, decimal=decimal), x).compose(out)
    return out


def _convergence_bound(poly: sp.Expr, l: int) -> sp.Expr:  # noqa: E741
    """First positive zero of ``p`` (odd l) or of ``p(x) - x`` past 1 (even l), exactly when possible."""
    target = poly if l % 2 == 1 else sp.expand(poly - x)
    t = sp.symbols("t", positive=True)
    reduced = sp.Poly(sp.expand(sp.cancel(target / x)).subs(x, sp.sqrt(t)), t)
    roots = [r for r in sp.Poly(reduced, t).real_roots() if r > 1]
    return sp.sqrt(min(roots, key=lambda r: sp.N(r, 50)))


def newton_schulz_family(degree: int) -> FamilyMember:
    """Derive the degree-``degree`` Newton–Schulz polynomial and its exact facts (see ``FamilyMember``).

    The ``[l/0]`` Padé approximant of ``(1 - xi)^(-1/2)`` at ``xi = 1 - x^2`` times ``x`` (Kovarik 1970;
    Björck & Bowie 1971), for ``degree = 2l + 1``: order of convergence ``l + 1``, exact coefficients.

    Example:
        >>> m = newton_schulz_family(5)
        >>> m.polynomial, m.order, m.convergence_bound
        (OddPolynomial(exact=[15/8, -5/4, 3/8]), 3, sqrt(21)/3)
    """
    l = (_check_degree(degree) - 1) // 2  # noqa: E741
    poly = sp.expand(pade_iteration(l, 0))
    p = newton_schulz(degree)
    c_l = sp.Integer(2 * l + 1) * sp.binomial(2 * l, l) / sp.Integer(4) ** l
    e = sp.symbols("e")
    lead = sp.expand(1 - poly.subs(x, 1 - e))
    order = min(term.as_poly(e).degree() for term in sp.Add.make_args(lead))
    err_const = lead.coeff(e, order)
    return FamilyMember(
        degree=degree,
        l=l,
        polynomial=p,
        order=order,
        derivative_constant=c_l,
        error_constant=err_const,
        convergence_bound=_convergence_bound(poly, l),
        latex=f"p(x) = {sp.latex(sp.Poly(poly, x).as_expr())}",
    )


def taylor_odd_coefficients(expr: sp.Expr, order: int = 5) -> list[Fraction]:
    """Exact coefficients of ``x, x^3, ..., x^order`` in the Taylor expansion of ``expr`` at ``x = 0``.

    For an odd iteration ``r(x)`` these are the first coefficients of the odd polynomial that agrees with
    ``r`` to order ``order`` at 0 (where small singular values live).
    """
    order = _check_order(order, "order")
    ser = sp.series(expr, x, 0, order + 1).removeO()
    return [Fraction(str(sp.nsimplify(ser.coeff(x, k)))) for k in range(1, order + 1, 2)]


def pade_xi_truncation(l: int, m: int, degree: int = 2) -> list[Fraction]:  # noqa: E741
    """The ``[l/m]`` iteration ``x R(xi)`` with its series in ``xi = 1 - x^2`` truncated to ``xi^degree``,
    as exact coefficients of ``x, x^3, ..., x^(2 degree + 1)``.

    For ``degree <= l`` and ``m = 0`` this is the Newton–Schulz polynomial of degree ``2 degree + 1``
    (truncation of the binomial series), and every ``[l/m]`` with ``l + m >= degree`` gives the same
    polynomial, since their series agree with ``(1 - xi)^(-1/2)`` to order ``l + m``: e.g. degree 2 gives
    ``(15/8, -10/8, 3/8)`` (Kenney & Laub 1991; Higham, *Functions of Matrices*, SIAM 2008, sec. 8.3).
    """
    degree = _check_order(degree, "degree")
    r = pade_iteration(l, m) / x
    f = sp.simplify(r.subs(x, sp.sqrt(1 - xi)))
    trunc = sp.series(f, xi, 0, degree + 1).removeO()
    poly = sp.Poly(sp.expand(x * trunc.subs(xi, 1 - x**2)), x)
    return [Fraction(str(poly.coeff_monomial(x**k))) for k in range(1, 2 * degree + 2, 2)]
