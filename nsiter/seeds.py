"""Seeds: one rule for every seeded computation in nsiter, ``0 <= seed < 2**63``.

A seed names a reproducible random matrix (``nsiter.matrices``) or run.  torch's generators take a 64-bit
seed; nsiter keeps the non-negative half, ``[0, 2**63)``, so that derived seeds (``seed + 1_000_003`` for
the noise of a gradient-like matrix) still fit, and so that the same seed means the same matrix whether
it arrives through the Python API or the command line (``--seed``, ``--seeds``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["SEED_LIMIT", "check_seed"]

SEED_LIMIT = 2**63  # seeds are integers in [0, SEED_LIMIT)


def check_seed(seed: Any) -> int:
    """Return ``seed`` as an ``int`` if it is an integer in ``[0, 2**63)``; else raise ``ValueError`` naming it.

    numpy integers are accepted; ``bool`` and floats are not (``1.0`` is not a seed).
    """
    if isinstance(seed, bool) or not hasattr(seed, "__index__"):
        raise ValueError(f"seed must be an integer in [0, 2**63), got {_short(seed)}")
    value = seed.__index__()
    if not 0 <= value < SEED_LIMIT:
        raise ValueError(f"seed must be an integer in [0, 2**63), got {_short(value)}")
    return value


def _short(value: Any, limit: int = 40) -> str:
    try:
        text = repr(value)
    except ValueError:  # an int past Python's 4300-digit conversion limit
        return f"an integer of {value.bit_length()} bits"
    return text if len(text) <= limit else f"{text[: limit - 15]}...({len(text)} characters)"
