"""The ``ctxseg`` command: one entry point, one verb per job.

Each verb lives beside the library code it wraps and registers itself through a
``register(subparsers)`` function that adds its parser and sets ``func``:

- ``prepare``                      -> :mod:`ctxseg.data.cli`
- ``train``, ``evaluate``, ``predict``, ``demo`` -> :mod:`ctxseg.engine.cli`
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from ctxseg import __version__


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status 2, no traceback."""


def build_parser() -> argparse.ArgumentParser:
    from ctxseg.data import cli as data_cli
    from ctxseg.engine import cli as engine_cli

    parser = argparse.ArgumentParser(
        prog="ctxseg",
        description="Context CE and Seg-GLGAN for unbalanced medical image segmentation.",
    )
    parser.add_argument("--version", action="version", version=f"ctxseg {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    data_cli.register(subparsers)
    engine_cli.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        result = args.func(args)
    except (CLIError, ValueError, FileNotFoundError, FileExistsError) as err:
        print(f"ctxseg {args.verb}: error: {err}", file=sys.stderr)
        return 2
    return int(result or 0)


if __name__ == "__main__":
    raise SystemExit(main())
