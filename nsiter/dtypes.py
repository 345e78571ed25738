"""One vocabulary for floating-point formats: names, aliases, unit roundoff and range.

Every public function of nsiter that takes a working precision accepts a ``torch.dtype``
(``torch.bfloat16``), its canonical name (``"bfloat16"``) or a short alias (``"bf16"``); they are
resolved here, once, at the edge.  Canonical names are torch's: ``bfloat16``, ``float16``, ``float32``,
``float64``.  Records, CSV files and metadata store canonical names.

The unit roundoff is ``u = 2^-p`` for a format with ``p`` significand bits (IEEE 754-2019; bfloat16 has
``p = 8``): every real ``x`` in range rounds to ``fl(x) = x (1 + d)`` with ``|d| <= u`` (Higham,
*Accuracy and Stability of Numerical Algorithms*, 2nd ed., SIAM 2002, sec. 2.1).

This module imports torch only inside :func:`torch_dtype`, so the math core can use the names and
constants without loading torch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "DTYPE_NAMES",
    "dtype_name",
    "largest_finite",
    "short_name",
    "significand_bits",
    "torch_dtype",
    "unit_roundoff",
]

# canonical name -> (significand bits p including the implicit bit, largest finite value, short name)
_FORMATS: dict[str, tuple[int, float, str]] = {
    "bfloat16": (8, 3.3895313892515355e38, "bf16"),
    "float16": (11, 65504.0, "fp16"),
    "float32": (24, 3.4028234663852886e38, "fp32"),
    "float64": (53, 1.7976931348623157e308, "fp64"),
}
DTYPE_NAMES = tuple(_FORMATS)
_ALIASES = {
    **{name: name for name in _FORMATS},
    **{short: name for name, (_, _, short) in _FORMATS.items()},
    "half": "float16",
    "float": "float32",
    "single": "float32",
    "double": "float64",
}


def dtype_name(dtype: Any) -> str:
    """The canonical name (``"bfloat16"``, ``"float16"``, ``"float32"``, ``"float64"``) of ``dtype``.

    Accepts a ``torch.dtype``, a numpy dtype or type, a canonical name or an alias (``bf16``, ``fp16``,
    ``half``, ``fp32``, ``float``, ``single``, ``fp64``, ``double``), case-insensitively.

    Raises:
        ValueError: naming the value, for anything else (integer, complex or unknown formats).
    """
    if isinstance(dtype, str):
        key = dtype.strip().lower().removeprefix("torch.")
    elif type(dtype).__module__ == "torch" and type(dtype).__name__ == "dtype":
        key = str(dtype).removeprefix("torch.")
    else:
        try:
            key = np.dtype(dtype).name if dtype is not None else None
        except TypeError:
            key = None
    if key not in _ALIASES:
        choices = ", ".join(sorted(_ALIASES))
        raise ValueError(f"dtype must be a real floating format ({choices}), got {dtype!r}")
    return _ALIASES[key]


def short_name(dtype: Any) -> str:
    """``"bf16"``, ``"fp16"``, ``"fp32"`` or ``"fp64"``: the label used in tables and figures."""
    return _FORMATS[dtype_name(dtype)][2]


def significand_bits(dtype: Any) -> int:
    """Significand bits ``p`` including the implicit leading bit (bfloat16 8, float16 11, float32 24, float64 53)."""
    return _FORMATS[dtype_name(dtype)][0]


def unit_roundoff(dtype: Any) -> float:
    """``u = 2^-p``: half the machine epsilon (bfloat16 ``2^-8``, float16 ``2^-11``, float32 ``2^-24``)."""
    return 2.0 ** -significand_bits(dtype)


def largest_finite(dtype: Any) -> float:
    """The largest finite value (float16 65504: the range a working precision must stay inside)."""
    return _FORMATS[dtype_name(dtype)][1]


def torch_dtype(dtype: Any):
    """The ``torch.dtype`` for ``dtype`` (any form accepted by :func:`dtype_name`)."""
    import torch

    return getattr(torch, dtype_name(dtype))
