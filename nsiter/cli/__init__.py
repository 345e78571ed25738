"""The ``nsiter`` command line.

Each sub-command lives in its own module here and exposes ``register(subparsers)``; handlers import
their heavy dependencies (torch) lazily so that ``nsiter derive`` stays fast.  Bad input of any kind
prints one line ``nsiter: error: ...`` and exits with status 2; Ctrl-C prints ``nsiter: interrupted``
and exits with 130.  Every input that sizes work has a limit checked before the work starts (the
symbolic degree, the number of steps, the memory a matrix needs: see :func:`check_memory`).
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any

from nsiter import __version__
from nsiter.checks import check_seed, short_repr

__all__ = [
    "CliError",
    "bounded_float",
    "bounded_int",
    "check_device",
    "check_memory",
    "echo",
    "emit_json",
    "finite_float",
    "main",
    "matrix_shape",
    "memory_limit",
    "nonnegative_float",
    "nonnegative_int",
    "positive_float",
    "positive_int",
    "seed",
    "seed_list",
]

# sub-command modules, in the order `nsiter --help` lists them
COMMANDS = ("derive", "schedules", "analyze", "run", "bench", "tune", "search")
MEMORY_FRACTION = 0.5  # a command may plan to use at most this fraction of the available memory
MAX_MEMORY_LIMIT = 2**60  # the largest NSITER_MEMORY_LIMIT accepted (1 EiB)


class CliError(ValueError):
    """A user-facing error: printed as one line, exit code 2."""


class HelpFormatter(argparse.HelpFormatter):
    """Help that ends every option's text with its default, ``(default: ...)``, unless the text already
    says it or the option is off by default (flags, and options whose absence means "not given")."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            not action.option_strings
            or "(default" in text
            or action.default is None
            or action.default is False
            or action.default == argparse.SUPPRESS
        ):
            return text
        return f"{text} (default: %(default)s)"


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints usage first otherwise)
        raise CliError(message)


echo = short_repr  # error messages never echo a 5000-digit argument whole


def positive_float(text: str) -> float:
    """argparse type: a finite float > 0 (rejects NaN and inf by name)."""
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {echo(text)}")
    return value


def bounded_float(low: float, high: float) -> Callable[[str], float]:
    """argparse type factory: a finite float in ``(low, high]`` (a limit that bounds the work)."""

    def parse(text: str) -> float:
        value = finite_float(text)
        if not low < value <= high:
            raise argparse.ArgumentTypeError(f"must be in ({low:g}, {high:g}], got {echo(text)}")
        return value

    parse.__name__ = f"number in ({low:g}, {high:g}]"
    return parse


def matrix_shape(text: str) -> tuple[int, int]:
    """argparse type: ``MxN`` with positive integers, e.g. ``1024x4096``."""
    parts = text.lower().split("x")
    try:
        m, n = (int(p) for p in parts) if len(text) <= 40 else (0, 0)
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            f"shape must be MxN with positive integers, got {echo(text)}"
        ) from err
    if m < 1 or n < 1:
        raise argparse.ArgumentTypeError(f"shape must be MxN with positive integers, got {echo(text)}")
    return m, n


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return _int_in(text, 1, None)


def nonnegative_float(text: str) -> float:
    """argparse type: a finite float >= 0."""
    value = finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {echo(text)}")
    return value


def nonnegative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return _int_in(text, 0, None)


def bounded_int(low: int, high: int) -> Callable[[str], int]:
    """argparse type factory: an integer in ``[low, high]`` (the limit that bounds the work)."""

    def parse(text: str) -> int:
        return _int_in(text, low, high)

    parse.__name__ = f"integer in {low}..{high}"
    return parse


def _int_in(text: str, low: int, high: int | None) -> int:
    if len(text) > 30:
        raise argparse.ArgumentTypeError(f"not an integer of at most 30 characters: {echo(text)}")
    if not _ASCII_INT.fullmatch(text.strip()):  # int() would also take "1_000" and non-ASCII digits
        raise argparse.ArgumentTypeError(f"not an integer (ASCII digits): {echo(text)}")
    try:
        value = int(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"not an integer: {echo(text)}") from err
    if value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in {low}..{high}"
        raise argparse.ArgumentTypeError(f"must be {bound}, got {echo(text)}")
    return value


def seed(text: str) -> int:
    """argparse type: a seed, ``0 <= seed < 2**63`` (the rule of :mod:`nsiter.checks`, shared with the API)."""
    try:
        if len(text) > 30 or not _ASCII_INT.fullmatch(text.strip()):
            raise ValueError(text)
        return check_seed(int(text))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"seed must be an integer in [0, 2**63), got {echo(text)}") from err


MAX_SEEDS = 1024  # seeds in one --seeds list


def seed_list(text: str) -> list[int]:
    """argparse type: comma-separated seeds (at most ``MAX_SEEDS``), each ``0 <= seed < 2**63``."""
    items = [v.strip() for v in text.split(",") if v.strip()]
    if not items:
        raise argparse.ArgumentTypeError(f"expected comma-separated seeds, got {echo(text)}")
    if len(items) > MAX_SEEDS:
        raise argparse.ArgumentTypeError(f"{len(items)} seeds exceed the limit of {MAX_SEEDS}")
    return [seed(v) for v in items]


_ASCII_INT = re.compile(r"[+-]?[0-9]+")


def finite_float(text: str) -> float:
    """argparse type: a finite float, written in ASCII (float() would also take non-ASCII digits)."""
    if not text.isascii() or "_" in text:
        raise argparse.ArgumentTypeError(f"not a number (ASCII digits): {echo(text)}")
    try:
        value = float(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"not a number: {echo(text)}") from err
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be finite, got {echo(text)}")
    return value


def memory_limit() -> int:
    """Bytes a command may plan to allocate: ``MEMORY_FRACTION`` of the available memory.

    The available memory is ``MemAvailable`` from ``/proc/meminfo`` (Linux), else the physical memory from
    ``os.sysconf``; ``NSITER_MEMORY_LIMIT`` (bytes) overrides both.
    """
    override = os.environ.get("NSITER_MEMORY_LIMIT")
    if override is not None and override.strip():  # empty: unset
        text = override.strip()
        if not (text.isascii() and text.isdigit() and len(text) <= 20 and 0 < int(text) <= MAX_MEMORY_LIMIT):
            raise CliError(
                f"NSITER_MEMORY_LIMIT must be a positive integer number of bytes up to {MAX_MEMORY_LIMIT} "
                f"(2**60), got {echo(override)}"
            )
        return int(text)
    available = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    if available is None:
        try:
            available = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            available = 8 * 2**30  # unknown platform: assume 8 GiB
    return int(MEMORY_FRACTION * available)


def _gib(nbytes: float) -> str:
    for unit, size in (("PiB", 2**50), ("TiB", 2**40), ("GiB", 2**30)):
        if nbytes >= size:
            return f"{nbytes / size:.3g} {unit}"
    return f"{nbytes / 2**20:.3g} MiB"


def check_memory(nbytes: float, what: str) -> None:
    """Refuse (``CliError``) work whose estimated memory ``nbytes`` exceeds :func:`memory_limit`."""
    limit = memory_limit()
    if nbytes > limit:
        raise CliError(
            f"{what} needs about {_gib(nbytes)}, above the limit {_gib(limit)} "
            f"({MEMORY_FRACTION:g} of the available memory)"
        )


def check_device(text: str) -> str:
    """A torch device string that exists here: ``cpu``, or ``cuda[:i]`` with CUDA available (imports torch)."""
    import torch

    try:
        device = torch.device(text)
    except (RuntimeError, TypeError) as err:
        raise CliError(f"unknown device {echo(text)}: expected cpu or cuda[:INDEX]") from err
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise CliError(f"device {echo(text)} requested but CUDA is not available here (use --device cpu)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise CliError(f"device {echo(text)}: only {torch.cuda.device_count()} CUDA device(s) here")
    elif device.type != "cpu":
        raise CliError(f"unsupported device {echo(text)}: expected cpu or cuda[:INDEX]")
    return text


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
    parser = _Parser(
        prog="nsiter",
        description="Newton-Schulz orthogonalization iterations: exact derivation, certified analysis, "
        "evaluation on matrices, benchmarks and coefficient search.",
        epilog="`nsiter COMMAND --help` describes each command.  Bad input exits with status 2.",
    )
    parser.add_argument("--version", action="version", version=f"nsiter {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        module = importlib.import_module(f"nsiter.cli.{name}")
        module.register(sub)
    return parser


_NEGATIVE = re.compile(r"^-[0-9.]")


def _join_negative_values(argv: list[str]) -> list[str]:
    """``--shape -4x5`` -> ``--shape=-4x5``: argparse would read a value starting with '-' as an option."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        tok = argv[i]
        if tok.startswith("--") and "=" not in tok and i + 1 < len(argv) and _NEGATIVE.match(argv[i + 1]):
            out.append(f"{tok}={argv[i + 1]}")
            i += 2
        else:
            out.append(tok)
            i += 1
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 2 bad input, 130 interrupted)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser()
        args, extras = parser.parse_known_args(_join_negative_values(argv))
        if extras:
            words = " ".join(echo(e, 30) for e in extras[:3]) + (" ..." if len(extras) > 3 else "")
            where = "nsiter --help" if args.command is None else f"nsiter {args.command} --help"
            raise CliError(f"unrecognized argument{'s' if len(extras) > 1 else ''} {words} (see {where})")
        if args.command is None:
            raise CliError(f"a COMMAND is required: one of {', '.join(COMMANDS)} (nsiter --help)")
        return int(args.func(args) or 0)
    except CliError as err:
        print(f"nsiter: error: {err}", file=sys.stderr)
        return 2
    except ValueError as err:  # the library's bad-input errors name the bad value
        print(
            f"nsiter: error: {str(err).splitlines()[0] if str(err) else type(err).__name__}", file=sys.stderr
        )
        return 2
    except KeyboardInterrupt:
        print("nsiter: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
