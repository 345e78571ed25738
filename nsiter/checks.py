"""Input checks: one rule per kind of input, for the Python API and the command line alike.

Each check returns the value in its canonical type or raises ``ValueError`` naming the bad value:

- ``check_interval(lo, hi)``: finite reals with ``0 < lo <= hi <= MAX_HI`` (a point interval is a valid,
  degenerate band: every singular value equal; normalized singular values live near ``(0, 1]``, and ``MAX_HI``
  keeps a degree-101 polynomial's value at ``hi`` inside the float range);
- ``check_safety``: a safety factor ``1 <= s <= MAX_SAFETY`` (it divides the input, ``x -> x / s``; the
  conventional ones are 1.01 to 1.1);
- ``check_seed(seed)``: an integer in ``[0, 2**63)``.  torch's generators take a 64-bit seed; nsiter keeps
  the non-negative half, so that derived seeds (``seed + 1_000_003`` for the noise of a gradient-like matrix)
  still fit, and the same seed means the same matrix through the Python API and the command line;
- ``check_positive_int``, ``check_positive``: counts and scales;
- ``check_real``: a finite real in a stated range (hyperparameters: ``lr >= 0``, momentum in ``[0, 1)``);
- ``check_bool``: a flag (``True``/``False`` only: ``"no"`` and ``0`` are not flags);
- ``check_odd_degree``: the degree of a polynomial step, an odd integer ``>= 3``;
- ``check_object``: a JSON object (a mapping) with only the allowed keys (the parts of a schedule file);

and the one rule for "diverged": a value (a singular value, a band endpoint) that is non-finite or whose
modulus passes ``DIVERGENCE_THRESHOLD`` has left every band a Newton-Schulz map works on, and its orbit
escapes.  The certified bands (``nsiter.analysis``), the dynamics (``nsiter.dynamics``) and every measured
run (``nsiter.measure.diverged``) use it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = [
    "DIVERGENCE_THRESHOLD",
    "MAX_HI",
    "MAX_SAFETY",
    "SEED_LIMIT",
    "check_bool",
    "check_interval",
    "check_object",
    "check_odd_degree",
    "check_positive",
    "check_positive_int",
    "check_real",
    "check_safety",
    "check_seed",
    "short_repr",
]

DIVERGENCE_THRESHOLD = 1e3  # a value whose modulus passes this has diverged (see the module docstring)
SEED_LIMIT = 2**63  # seeds are integers in [0, SEED_LIMIT)
MAX_HI = 1e3  # largest upper end of an interval of normalized singular values (1e3**101 < 1.8e308)
MAX_SAFETY = 10.0  # largest safety factor


def short_repr(value: Any, limit: int = 40) -> str:
    """``repr(value)`` cut to ``limit`` characters with the full length said (a 5000-digit echo helps no one).

    The one echo of bad values in error messages (the API's and the command line's).
    """
    try:
        text = repr(value)
    except ValueError:  # an int (or a Fraction of ints) past Python's 4300-digit conversion limit
        if isinstance(value, int):
            return f"an integer of {value.bit_length()} bits, too long to print"
        return f"a {type(value).__name__} too long to print"
    return text if len(text) <= limit else f"{text[: limit - 10]}... ({len(text)} characters)"


def check_interval(lo: Any, hi: Any) -> tuple[float, float]:
    """Validate an interval of normalized singular values: finite reals with ``0 < lo <= hi``."""
    for name, v in (("lo", lo), ("hi", hi)):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise ValueError(f"{name} must be a real number, got {short_repr(v)}")
        if not math.isfinite(float(v)):
            raise ValueError(f"{name} must be finite, got {v!r}")
    lo, hi = float(lo), float(hi)
    if lo <= 0:
        raise ValueError(f"lo must be > 0 (the smallest normalized singular value), got {lo!r}")
    if lo > hi:
        raise ValueError(f"need lo <= hi, got lo={lo!r}, hi={hi!r}")
    if hi > MAX_HI:
        raise ValueError(f"hi must be <= MAX_HI = {MAX_HI:g} (normalized singular values), got {hi!r}")
    return lo, hi


def check_safety(value: Any, what: str = "safety") -> float:
    """A safety factor: a finite real ``1 <= s <= MAX_SAFETY``."""
    return check_real(value, what, low=1.0, high=MAX_SAFETY)


def check_seed(seed: Any) -> int:
    """Return ``seed`` as an ``int`` if it is an integer in ``[0, 2**63)``; else raise ``ValueError`` naming it.

    numpy integers are accepted; ``bool`` and floats are not (``1.0`` is not a seed).
    """
    bad = ValueError(f"seed must be an integer in [0, 2**63), got {short_repr(seed)}")
    if isinstance(seed, (bool, np.bool_)) or not hasattr(seed, "__index__"):
        raise bad
    try:  # a float, multi-element or meta tensor or array has __index__ but refuses it
        value = seed.__index__()
    except (TypeError, ValueError, RuntimeError):
        raise bad from None
    if not 0 <= value < SEED_LIMIT:
        raise ValueError(f"seed must be an integer in [0, 2**63), got {short_repr(value)}")
    return value


def check_object(data: Any, allowed: set[str], what: str) -> Mapping[str, Any]:
    """A JSON object (``Mapping``) with no keys outside ``allowed``: the schedule file format's parts."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{what} must be an object, got {short_repr(data)}")
    unknown = set(data) - allowed
    if unknown:
        raise ValueError(f"unknown keys in {what}: {sorted(unknown)}")
    return data


def check_positive_int(value: Any, what: str) -> int:
    """A positive integer (``bool`` is not one)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{what} must be a positive integer, got {short_repr(value)}")
    return int(value)


def check_positive(value: Any, what: str) -> float:
    """A finite real ``> 0``."""
    return check_real(value, what, low=0.0, low_open=True)


def check_real(
    value: Any,
    what: str,
    *,
    low: float = -math.inf,
    high: float = math.inf,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """A finite real (Python or numpy; ``bool`` is not one) in the interval from ``low`` to ``high``.

    The bounds are closed unless ``low_open``/``high_open``; an infinite bound only says "unbounded": the value
    itself must always be finite.  Returns the value as a ``float``.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{what} must be a real number, got {short_repr(value)}")
    try:
        v = float(value)
    except OverflowError:  # an int past the float range
        v = math.inf
    below = v <= low if low_open else v < low
    above = v >= high if high_open else v > high
    if not math.isfinite(v) or below or above:
        raise ValueError(
            f"{what} must be finite and {_range_text(low, high, low_open, high_open)}, got {short_repr(value)}"
        )
    return v


def _range_text(low: float, high: float, low_open: bool, high_open: bool) -> str:
    if math.isinf(high):
        return f"{'>' if low_open else '>='} {low:g}"
    if math.isinf(low):
        return f"{'<' if high_open else '<='} {high:g}"
    return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"


def check_bool(value: Any, what: str) -> bool:
    """A flag: ``True`` or ``False`` (numpy's too); any other value, ``"no"`` or ``0`` included, is refused."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{what} must be True or False, got {short_repr(value)}")
    return bool(value)


def check_odd_degree(degree: Any) -> int:
    """The degree of a polynomial step: an odd integer ``>= 3``."""
    if isinstance(degree, bool) or not isinstance(degree, (int, np.integer)) or degree < 3 or degree % 2 == 0:
        raise ValueError(f"degree must be an odd integer >= 3, got {short_repr(degree)}")
    return int(degree)
