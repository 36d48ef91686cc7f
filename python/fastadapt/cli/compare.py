"""``fastadapt compare``: which optimizer needs no tuning? Every workload of
the suite trained with each optimizer at its defaults, next to Adam tuned by
a learning-rate grid search on validation (``fa.compare``); a table on the
terminal, ``compare.json``, ``compare.csv`` and a PNG of learning curves per
workload in ``--out``.

    fastadapt compare                                   # the lr-free rules, the whole suite
    fastadapt compare --optimizers adam,lion --workloads digits-softmax,diabetes-linear
    fastadapt compare --quick                           # a tenth of the steps, a 3-point grid
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, List

from ._common import UserError, float_above, int_at_least, user_input

__all__ = ["add_parser", "run"]


def _names(text: str) -> List[str]:
    names = [part.strip() for part in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"expected names separated by commas, got {text!r}")
    return names


def _seeds(text: str) -> List[int]:
    try:
        seeds = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas such as 0,1,2, got {text!r}") \
            from None
    if any(s < 0 for s in seeds):
        raise argparse.ArgumentTypeError(f"seeds must be >= 0, got {text!r}")
    return seeds


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the command on the ``fastadapt`` command's subparsers."""
    from ..compare.running import GRID_SIZE, LR_MAX, LR_MIN, QUICK_GRID_SIZE
    from ..compare.workloads import SUITE

    parser = subparsers.add_parser(
        "compare", help="which optimizer needs no tuning: each at its defaults vs grid-tuned Adam, on a suite",
        description="Train a suite of workloads with each optimizer at its defaults (one run per seed) and with "
                    "Adam at every learning rate of a log grid (tuned on validation: the best grid point's best "
                    "validation metric is the target). Per workload and optimizer: final and best validation "
                    "metric, steps and seconds to reach the target (within --accuracy-tolerance / "
                    "--loss-tolerance), and the runs the tuning cost. Writes compare.json, compare.csv and "
                    "curves-WORKLOAD.png to --out.")
    parser.add_argument("--optimizers", type=_names, default=None, metavar="A,B,...",
                        help="optimizers to run at their defaults (default: every registered optimizer whose class "
                             "has lr_free = True)")
    parser.add_argument("--workloads", type=_names, default=None, metavar="A,B,...",
                        help=f"workloads (default all: {', '.join(SUITE)})")
    parser.add_argument("--seeds", type=_seeds, default=[0], metavar="S,S,...",
                        help="seeds: one run per optimizer and per grid point for each (default 0)")
    parser.add_argument("--grid-size", type=int_at_least(1), default=None,
                        help=f"Adam's learning rates, log-spaced from --lr-min to --lr-max (default {GRID_SIZE}; "
                             f"{QUICK_GRID_SIZE} with --quick)")
    parser.add_argument("--lr-min", type=float_above(0.0, inclusive=False), default=LR_MIN,
                        help=f"smallest learning rate of the grid (default {LR_MIN:g})")
    parser.add_argument("--lr-max", type=float_above(0.0, inclusive=False), default=LR_MAX,
                        help=f"largest learning rate of the grid (default {LR_MAX:g})")
    parser.add_argument("--accuracy-tolerance", type=float_above(0.0, inclusive=True), default=0.01,
                        help="within target for accuracy: at least target minus this (default 0.01, one point)")
    parser.add_argument("--loss-tolerance", type=float_above(0.0, inclusive=True), default=0.05,
                        help="within target for a loss: at most target times 1 + this (default 0.05, 5%%)")
    parser.add_argument("--quick", action="store_true", help="a tenth of every workload's steps (a first look, "
                                                             "tests)")
    parser.add_argument("--out", default="fastadapt-compare", metavar="DIR",
                        help="output directory (default fastadapt-compare)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar or per-run lines")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """The ``fastadapt compare`` command (argparse namespace from ``add_parser``)."""
    from .._files import check_writable_dir
    from ..compare.running import compare, lr_free_optimizers

    if args.optimizers is None and not lr_free_optimizers():
        raise UserError("no registered optimizer has lr_free = True in this build; pass --optimizers, e.g. "
                        "--optimizers adam,lion")
    with user_input():  # arguments, data and --out are checked before the first run
        kwargs = dict(seeds=args.seeds, lr_min=args.lr_min, lr_max=args.lr_max, grid_size=args.grid_size,
                      quick=args.quick, accuracy_tolerance=args.accuracy_tolerance,
                      loss_tolerance=args.loss_tolerance)
        _check(args, kwargs)
        out = check_writable_dir(args.out, "--out")
    result = compare(args.workloads, args.optimizers, progress=not args.no_progress, **kwargs)
    if not result.workloads:
        for name, reason in result.skipped:
            print(f"skipped {name}: {reason}", file=sys.stderr)
        raise UserError("every workload was skipped (see above); install what they need or pick others with "
                        "--workloads")
    print(result.table())
    files = [result.to_json(os.path.join(out, "compare.json")), result.to_csv(os.path.join(out, "compare.csv"))]
    try:
        files += result.plot(out)
    except ImportError as err:
        print(f"fastadapt compare: no plots ({err})", file=sys.stderr)
    runs = len(result.runs)
    print(f"{runs} runs in {result.seconds:.1f} s; wrote {', '.join(files)}")
    return 0


def _check(args: argparse.Namespace, kwargs: dict) -> None:
    """The library's checks of every argument, before anything trains (a bad
    workload name after minutes of runs would waste them)."""
    from ..compare.running import _check_optimizers, _check_seeds, _check_tolerance, lr_grid
    from ..compare.workloads import SUITE

    if args.optimizers is not None:
        _check_optimizers(args.optimizers)
    _check_seeds(kwargs["seeds"])
    lr_grid(args.lr_min, args.lr_max, 7 if args.grid_size is None else args.grid_size)
    _check_tolerance("--accuracy-tolerance", args.accuracy_tolerance)
    _check_tolerance("--loss-tolerance", args.loss_tolerance)
    for name in args.workloads or ():
        if name not in SUITE:
            raise ValueError(f"unknown workload {name!r} in --workloads; expected names from {', '.join(SUITE)}")
