"""``nsiter derive --degree N``: the exact Newton–Schulz polynomial of odd degree N and its facts."""

from __future__ import annotations

import argparse

from nsiter.cli import bounded_int, emit_json
from nsiter.polynomial import MAX_SYMBOLIC_DEGREE


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "derive",
        help="exact Newton–Schulz polynomial of an odd degree",
        description="Derive the classical Newton–Schulz polynomial of odd degree 2l+1 exactly (sympy): the "
        "[l/0] Padé approximant of (1 - xi)^(-1/2) at xi = 1 - x^2, with its order of convergence, error "
        "constant and convergence interval (Higham, Functions of Matrices, 2008, §8.3).",
    )
    p.add_argument(
        "--degree",
        type=bounded_int(3, MAX_SYMBOLIC_DEGREE),
        required=True,
        help=f"odd degree 2l+1, 3 <= degree <= {MAX_SYMBOLIC_DEGREE} (the limit keeps the derivation to seconds)",
    )
    p.add_argument("--latex", action="store_true", help="print the polynomial in LaTeX only")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nsiter.symbolic import newton_schulz_family

    member = newton_schulz_family(args.degree)
    info = member.to_dict()
    if args.json:
        emit_json(info)
    elif args.latex:
        print(member.latex)
    else:
        print(f"Newton–Schulz degree {member.degree}  ([{member.l}/0] Padé of (1 - xi)^(-1/2), xi = 1 - x^2)")
        terms = ", ".join(info["coefficients"])
        print(f"  coefficients of x, x^3, ...: ({terms})")
        print(f"  p'(x) = {member.derivative_constant} (1 - x^2)^{member.l}")
        print(f"  order of convergence: {member.order}")
        print(
            f"  error constant: 1 - p(1 - e) = {member.error_constant} e^{member.order} + O(e^{member.order + 1})"
        )
        b = info["convergence_bound_float"]
        print(f"  converges to 1 on (0, b), b = {member.convergence_bound} = {b:.15g}")
    return 0
