"""The ``symcost`` command: reports, solving, sweeps, search and LaTeX from the shell.

``symcost`` alone prints the default report (llama-3-8b on H100_SXM). Every subcommand has
``--help``; ``--json`` gives machine-readable output; errors are one line naming the bad option
(and the valid choices), with exit code 2. Each subcommand is one module of this package.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

from .. import __version__
from . import latex, lists, plan, report, search, solve, sweep
from .common import (
    Parser,
    UsageError,
    check_names,
    one_line,
)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="symcost", description="Symbolic cost models of LLM layers and models. "
                    "With no command: the report for llama-3-8b on H100_SXM.")
    parser.add_argument("--version", action="version", version=f"symcost {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=Parser)

    for module in (report, solve, sweep, search, plan, latex, lists):
        module.register(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            args = parser.parse_args(["report", *([] if argv is None else argv)])
        check_names(args)  # a misspelt preset is answered before the library loads
        code = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return code
    except UsageError as err:
        print(f"symcost: error: {err}", file=sys.stderr)
        return 2
    except ValueError as err:
        print(f"symcost: error: {one_line(err)}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # the reader went away (`symcost ... | head`): nothing more to say; silence the final flush
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as a shell reports a command killed by a closed pipe


def run() -> int:
    """The ``symcost`` command in a process of its own (the console script, ``python -m symcost``):
    :func:`main`, with NumPy's OpenBLAS at one thread unless the environment sets its count.

    NB: OpenBLAS starts a thread per core when NumPy loads (``OPENBLAS_NUM_THREADS`` read then) and
    they spin for a while, about a tenth of the plan command's CPU time on 2 cores; nothing in
    symcost calls BLAS (its NumPy work is elementwise), so one thread changes no result. In
    :func:`main` (a caller's process) the environment is left alone."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    return main()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run())
