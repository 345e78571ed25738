"""The one flop count of nsiter: what a schedule costs in each form, as the kernels run it.

Every caller that counts work uses these functions: the planner (:mod:`nsiter.plan`), the evaluator's
benchmark (:mod:`nsiter.bench`), the budget search (:mod:`nsiter.search.budget`) and the restart search
(:mod:`nsiter.restarts`).  Pure integer arithmetic: no torch, no floating point.

Conventions: a real ``m x k`` by ``k x n`` product costs ``2 m k n`` flops; the iterate is ``s x t`` with
``s = min(m, n) <= t`` (the evaluator works on the side that makes the Gram matrix small).

- A standard step of odd degree ``2l + 1`` is ``l + 1`` products (:func:`step_matmuls`): ``A = X X^T``,
  ``l - 1`` Horner products in ``A``, then ``B X`` (:func:`nsiter.polynomial.step_matmuls`, the count per degree).
- A symmetric ``s x s`` product (``X X^T``, ``A^2``, ``W Q``, ...) computed in row blocks costs only the
  blocks on and above the diagonal (:func:`symmetric_product_flops`).
- The Gram form (:mod:`nsiter.gram`) touches the ``s x t`` matrix for ``R_0 = X X^T`` and ``Q X``, and once
  more per restart for each (:func:`restart_cost`); everything else is ``s x s``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nsiter.polynomial import OddPolynomial
from nsiter.schedule import Schedule, check_restarts

__all__ = [
    "gram_side_flops",
    "method_flops",
    "restart_cost",
    "standard_flops",
    "symmetric_product_flops",
]

_FORMS = ("standard", "gram")


def _positive(name: str, v: object) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"{name} must be a positive integer, got {v!r}")
    return int(v)


def symmetric_product_flops(m: int, k: int, block: int | None) -> int:
    """Flops of an ``m x m`` product with inner dimension ``k``: ``2 m^2 k`` in full, or with row blocks
    of ``block`` rows only the blocks on and above the diagonal, ``sum_i 2 s_i (m - i block) k``.

    >>> symmetric_product_flops(8, 10, None), symmetric_product_flops(8, 10, 4)  # 2 of 4 blocks saved
    (1280, 960)
    """
    if block is None or block >= m:
        return 2 * m * m * k
    return sum(2 * min(block, m - i) * (m - i) * k for i in range(0, m, block))


def restart_cost(m: int, n: int, *, net: bool = False) -> int:
    """Flops of one Gram-form restart on an ``m x n`` iterate (``m <= n``, real, 2 flops per multiply-add).

    A restart computes ``X <- Q X`` and ``R <- X X^T``: two rectangular products, ``4 m^2 n`` flops
    (the gross cost, counted by a budget search).  It also saves the square products it replaces:
    ``R <- Z R Z`` after the step (``4 m^3``) and ``Q <- Z Q`` in the next step (``2 m^3``); with
    ``net=True`` the result is ``4 m^2 n - 6 m^3`` (negative on square matrices, where the Gram form
    does not pay anyway).  Symmetric products (``X X^T`` at half the flops) are not counted.

    >>> restart_cost(2, 8), restart_cost(2, 8, net=True)
    (128, 80)
    """
    m, n = _positive("m", m), _positive("n", n)
    if m > n:
        raise ValueError(f"the Gram form works on the small side: need m <= n, got m={m}, n={n}")
    gross = 4 * m * m * n
    return gross - 6 * m**3 if net else gross


def _steps(schedule: Schedule | Sequence[OddPolynomial]) -> list[OddPolynomial]:
    return list(schedule.steps if isinstance(schedule, Schedule) else schedule)


def standard_flops(
    schedule: Schedule | Sequence[OddPolynomial], m: int, n: int, block: int | None = None
) -> int:
    """Flops of the standard form on one ``m x n`` matrix: per step of degree ``2l + 1 >= 3``,
    ``sym(t) + (l - 1) sym(s) + 2 s^2 t`` (``sym`` the symmetric product with row blocks ``block``).

    With full products this is ``matmuls * 2 s^2 t`` only on square matrices: ``A = X X^T`` and ``B X``
    have inner dimension ``t``, the Horner products ``s``.
    """
    s, t = min(m, n), max(m, n)
    gram, sq, full = symmetric_product_flops(s, t, block), symmetric_product_flops(s, s, block), 2 * s * s * t
    x = 0
    for p in _steps(schedule):
        l = len(p.coefficients) - 1  # noqa: E741 - degree 2l + 1
        if l >= 1:
            x += gram + (l - 1) * sq + full
    return x


def gram_side_flops(
    schedule: Schedule | Sequence[OddPolynomial],
    m: int,
    n: int,
    restarts: Sequence[int],
    block: int | None = None,
) -> tuple[int, int]:
    """(X-side flops, Gram-side flops) of the Gram form on one ``m x n`` matrix, as :mod:`nsiter.gram` runs
    it: ``sym(t)`` for ``R_0``; per step ``(l - 1) sym(s)`` for ``W``, plus ``sym(s)`` for ``Q`` unless it
    is the identity, plus ``2 sym(s)`` for ``R`` unless it is the last step or a restart follows; per
    restart ``2 s^2 t`` (``Q X``, X side) and ``sym(t)`` (``R``, Gram side); finally ``2 s^2 t`` for ``Q X``.

    The two sides are kept apart because they may run in different precisions (``gram_dtype``)."""
    s, t = min(m, n), max(m, n)
    steps = _steps(schedule)
    gram, sq, full = symmetric_product_flops(s, t, block), symmetric_product_flops(s, s, block), 2 * s * s * t
    cuts = set(check_restarts(list(restarts), len(steps)))
    x, g, fresh = 0, gram, True  # fresh: Q is the identity
    for k, p in enumerate(steps, start=1):
        l = len(p.coefficients) - 1  # noqa: E741
        need_r = k < len(steps) and k not in cuts
        if l >= 1:
            g += (l - 1) * sq + (0 if fresh else sq) + (2 * sq if need_r else 0)
        fresh = False
        if k in cuts:
            x += full
            g += gram
            fresh = True
    return x + full, g


def method_flops(
    schedule: Schedule | Sequence[OddPolynomial],
    m: int,
    n: int,
    *,
    batch: int = 1,
    method: str = "standard",
    restarts: Sequence[int] | None = None,
    symmetric_block: int | None = None,
) -> int:
    """GEMM flops of one evaluation of ``batch`` matrices, exactly as the kernels run it.

    ``method`` is ``"standard"`` (:func:`standard_flops`) or ``"gram"`` (:func:`gram_side_flops`, both
    sides).  Degree-1 steps are scalings (no flops).  ``restarts`` defaults to the schedule's.

    >>> from nsiter.registry import load_schedule
    >>> muon, m, n = load_schedule("muon"), 8, 32
    >>> method_flops(muon, m, n) == 5 * (4 * m * m * n + 2 * m**3)  # 3 products a quintic step
    True
    """
    if method not in _FORMS:
        raise ValueError(f"method must be one of {_FORMS} here, got {method!r}")
    if restarts is None:
        restarts = schedule.restarts if isinstance(schedule, Schedule) else ()
    if method == "standard":
        return standard_flops(schedule, m, n, symmetric_block) * batch
    x, g = gram_side_flops(schedule, m, n, restarts, symmetric_block)
    return (x + g) * batch
