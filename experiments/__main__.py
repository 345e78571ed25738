"""``python -m experiments [--quick] [--out DIR] [--force] [-v] [--list] [NAME ...]`` (what `make figures` runs).

One line per experiment on stderr (cached, or computed with its units); on a terminal the running
experiment's progress updates one line in place, and ``-v`` prints a line per unit instead.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

try:  # torch loads here, for a second or two: Ctrl-C then gets the same one line as later
    from experiments.common import REPO, check_output_root, discover, quick_root, run_all
    from nsiter._io import WriteError
except KeyboardInterrupt:
    print("interrupted; rerun to resume", file=sys.stderr)
    sys.exit(130)


def _error(message: str) -> int:
    print(f"experiments: error: {message}", file=sys.stderr)
    return 2


def _root(text: str) -> Path:
    if not text:  # Path("") is "." and would write into the current folder
        raise argparse.ArgumentTypeError("the output root must be a non-empty path")
    return Path(text)


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:  # results are written atomically, so finished experiments stay cached
        head = "\r\033[K" if sys.stderr.isatty() else ""  # over the progress line
        print(f"{head}interrupted; rerun to resume", file=sys.stderr)
        return 130


def _main(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments", description=__doc__)
    parser.add_argument("names", nargs="*", help="experiments to run (default: all)")
    parser.add_argument("--quick", action="store_true", help=f"tiny sizes, written under {quick_root()}")
    parser.add_argument("--out", type=_root, default=None, help="output root (default: the repository)")
    parser.add_argument("--force", action="store_true", help="recompute even when cached results match")
    parser.add_argument("-v", "--verbose", action="store_true", help="a line of progress per unit of work")
    parser.add_argument("--list", action="store_true", help="list the experiments and exit")
    args = parser.parse_args(argv)
    if args.list:
        for name, module in discover().items():
            print(f"{name:24s} {(module.__doc__ or '').strip().splitlines()[0]}")
        return 0
    unknown = sorted(set(args.names) - set(discover()))
    if unknown:
        return _error(f"unknown experiment(s) {unknown}; see --list")
    root = args.out if args.out is not None else (quick_root() if args.quick else REPO)
    try:
        check_output_root(root)  # before any work
    except ValueError as exc:
        return _error(str(exc))
    t0 = time.perf_counter()
    try:
        results = run_all(args.names, quick=args.quick, root=args.out, force=args.force, detail=args.verbose)
    except WriteError as exc:  # a full disk or an I/O error: one line; finished experiments stay cached
        return _error(str(exc))
    cached = sum(r.cached for r in results)
    print(
        f"{len(results)} experiments ({cached} cached) in {time.perf_counter() - t0:.1f} s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
