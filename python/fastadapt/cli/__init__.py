"""The ``fastadapt`` command line: one module per command, each with
``add_parser(subparsers)`` and ``run(args)``.

- ``info.py``: version, SIMD paths, threads and the registered optimizers;
- ``bench.py``: the throughput table, with ``benchmarks.py`` (the cases and
  their timing, shared with ``pytest bench/``; imported only by the command);
- ``lr_find.py``: the learning-rate range test;
- ``mnist.py``: the seed article's MNIST example;
- ``tune.py``: Hyperband, ASHA or PBT on the MNIST MLP;
- ``compare.py``: each optimizer at its defaults against grid-tuned Adam on a suite (``fa.compare``);
- ``_common.py``: user errors and the argument types the commands share.

A new command is a module here and one line in ``_parser``.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import List, Optional

from . import bench, compare, info, lr_find, mnist, tune
from ._common import Parser, UserError

__all__ = ["main"]


def _parser() -> Parser:
    from .._version import __version__

    parser = Parser(prog="fastadapt", description="Adaptive optimizers for NumPy.")
    parser.add_argument("--version", action="version", version=f"fastadapt {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)  # subcommands get Parser too
    for command in (info, bench, lr_find, mnist, tune, compare):
        command.add_parser(sub)  # tune reports its own errors (cli/tune.py)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """``fastadapt <command> ...``: 0 on success; a user error (bad argument,
    damaged data file, unusable output path) is one line on stderr,
    ``fastadapt <command>: <what is wrong>``, and exit status 2."""
    args = _parser().parse_args(argv)
    try:
        code = int(args.func(args))
        sys.stdout.flush()  # a closed pipe shows up here, not in the interpreter's flush at exit
        return code
    except UserError as err:
        message = " ".join(str(err).split())  # one line, whatever the library's message held
        print(f"fastadapt {args.command}: {message}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (fastadapt info | head): stop quietly, as other tools do. Point stdout at
        # devnull so the interpreter's final flush does not raise the same error again at exit.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
