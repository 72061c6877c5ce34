"""The ``ctxseg`` command: one entry point, one verb per job.

Each verb lives beside the library code it wraps, in a module with a
``register_cli(subparsers)`` function that adds its parser and sets ``func``
(:data:`VERB_MODULES`). Nothing here is imported back by those modules.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
from collections.abc import Sequence

from ctxseg import __version__
from ctxseg.errors import CLIError

__all__ = ["VERB_MODULES", "CLIError", "build_parser", "describe_os_error", "main"]

#: The modules that add one or more verbs, in the order ``ctxseg --help`` lists them.
VERB_MODULES = (
    "ctxseg.data.cli",  # prepare
    "ctxseg.engine.cli",  # train
    "ctxseg.evaluation.evaluate",  # evaluate
    "ctxseg.evaluation.table",  # table
    "ctxseg.evaluation.reproduce",  # reproduce
    "ctxseg.engine.predict",  # predict
    "ctxseg.evaluation.demo",  # demo
    "ctxseg.integrations.nnunet.cli",  # nnunet-path
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ctxseg",
        description="Context CE and Seg-GLGAN for unbalanced medical image segmentation.",
    )
    parser.add_argument("--version", action="version", version=f"ctxseg {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for name in VERB_MODULES:
        importlib.import_module(name).register_cli(subparsers)
    return parser


def describe_os_error(err: OSError) -> str:
    """One line for an ``OSError``: the path(s) and the cause, never ``[Errno N]``."""
    if err.filename is None:
        return err.strerror if err.errno is not None and err.strerror else str(err)
    where = str(err.filename)
    if err.filename2 is not None:
        where += f" -> {err.filename2}"
    return f"{where}: {err.strerror or err}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run one verb. Exit status: 0 done, 2 refused or failed (one line on stderr naming the
    file and the problem, no traceback), 130 interrupted (Ctrl-C)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        result = args.func(args)
    except (CLIError, ValueError) as err:
        print(f"ctxseg {args.verb}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a missing file, a full disk, a read-only folder, ...
        print(f"ctxseg {args.verb}: error: {describe_os_error(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ctxseg {args.verb}: interrupted", file=sys.stderr)
        result = 130
    if result == 130:
        # CPython marks a KeyboardInterrupt raised inside exec() or eval() of source text (a
        # namedtuple, dataclass or enum being built mid-import, as matplotlib's first import
        # at the end of epoch 1) as unhandled even once caught here, and then ends
        # `python -m ctxseg` by SIGINT (status -2) instead of 130. Evaluating any text
        # clears that mark (CPython's run_eval_code_obj resets it first).
        eval("0")
        if argv is None:  # a second Ctrl-C while Python shuts down: no traceback
            signal.signal(signal.SIGINT, signal.SIG_IGN)
    return int(result or 0)


if __name__ == "__main__":
    raise SystemExit(main())
