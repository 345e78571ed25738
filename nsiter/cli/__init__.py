"""The ``nsiter`` command line.

Each sub-command lives in its own module here and exposes ``register(subparsers)``; handlers import
their heavy dependencies (torch) lazily so that ``nsiter derive`` stays fast.  Bad input of any kind
prints one line ``nsiter: error: ...`` and exits with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import sys
from collections.abc import Sequence
from typing import Any

__all__ = [
    "CliError",
    "emit_json",
    "finite_float",
    "main",
    "nonnegative_int",
    "positive_float",
    "positive_int",
]

# sub-command modules, in the order `nsiter --help` lists them
COMMANDS = ("derive", "schedules", "analyze", "run", "bench", "search")


class CliError(ValueError):
    """A user-facing error: printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints usage first otherwise)
        raise CliError(message)


def positive_float(text: str) -> float:
    """argparse type: a finite float > 0 (rejects NaN and inf by name)."""
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return _int_at_least(text, 1)


def nonnegative_int(text: str) -> int:
    """argparse type: an integer >= 0 (seeds)."""
    return _int_at_least(text, 0)


def _int_at_least(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from err
    if value < low:
        raise argparse.ArgumentTypeError(f"must be >= {low}, got {text!r}")
    return value


def finite_float(text: str) -> float:
    """argparse type: a finite float."""
    try:
        value = float(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from err
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be finite, got {text!r}")
    return value


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy / torch scalars
        return _jsonable(obj.item())
    return obj


def emit_json(obj: Any) -> None:
    """Print ``obj`` as JSON (non-finite floats become strings / null, numpy scalars become numbers)."""
    print(json.dumps(_jsonable(obj), indent=2))


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="nsiter", description="Newton-Schulz orthogonalization iterations toolkit.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMANDS:
        module = importlib.import_module(f"nsiter.cli.{name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 2 bad input)."""
    try:
        args = build_parser().parse_args(argv)
        return int(args.func(args) or 0)
    except CliError as err:
        print(f"nsiter: error: {err}", file=sys.stderr)
        return 2
    except ValueError as err:  # the library's bad-input errors name the bad value
        print(
            f"nsiter: error: {str(err).splitlines()[0] if str(err) else type(err).__name__}", file=sys.stderr
        )
        return 2
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
