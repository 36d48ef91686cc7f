"""``fastadapt lr-find``: the learning-rate range test on the MNIST MLP when
MNIST data is found, else on a built-in least-squares problem; writes
``lr_find.json`` and ``lr_find.png``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Callable

from .._files import check_writable_dir, write_text
from ._common import UserError, optimizer_arg, optimizer_names, seed_arg, user_error, user_input

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the command on the ``fastadapt`` command's subparsers."""
    parser = subparsers.add_parser(
        "lr-find", help="LR range test: suggest a learning rate, write lr_find.json and .png",
        description="Run fa.lr_find on the MNIST MLP (784-128-10) when MNIST data is found (fastadapt.datasets), "
                    "else on a built-in least-squares regression (1024 x 20, Hessian eigenvalues 1 .. 0.1, so "
                    "full-batch SGD is stable below lr = 2).")
    parser.add_argument("--optimizer", type=optimizer_arg, default="adam", metavar="NAME",
                        help=f"update rule, at its other defaults: {', '.join(optimizer_names())} (default adam)")
    # The sweep's numbers are checked by lr_finder.check_settings (the library's messages).
    parser.add_argument("--start-lr", type=float, default=1e-7, help="first lr of the sweep (default 1e-7)")
    parser.add_argument("--end-lr", type=float, default=10.0, help="last lr of the sweep (default 10)")
    parser.add_argument("--num-steps", type=int, default=100, help="steps in the sweep (default 100)")
    parser.add_argument("--verify-steps", type=int, default=60,
                        help="steps of each short run that checks a candidate lr (default 60; 0: no check)")
    parser.add_argument("--batch-size", type=int, default=64, help="mini-batch size (default 64)")
    parser.add_argument("--problem", choices=["auto", "mnist", "least-squares"], default="auto",
                        help="auto: MNIST when its data is found, else least squares")
    parser.add_argument("--data-dir", default=None, help="directory with the MNIST IDX files (see fastadapt.datasets)")
    parser.add_argument("--out", default=".", metavar="DIR", help="where lr_find.json and lr_find.png go (default .)")
    parser.add_argument("--seed", type=seed_arg, default=0, help="seed of the initial params and batch order")
    parser.set_defaults(func=run)
    return parser


def _problem(args: argparse.Namespace):
    """(name, params, loss_and_grad, batches, facts) for ``fastadapt lr-find``;
    UserError when the data the user pointed at cannot be used."""
    from ..data.datasets import ENV_DIR

    if args.problem in ("auto", "mnist"):
        from ..data.datasets import load_mnist
        from ..data.models import MLP
        from ..data.problems import shuffled_batches

        # Data the user named (--data-dir, $FASTADAPT_MNIST_DIR or --problem mnist) must be usable; only
        # "auto" with nothing named falls back, and only when no data is found (damaged data is an error).
        named = args.problem == "mnist" or args.data_dir is not None or bool(os.environ.get(ENV_DIR))
        try:
            data = load_mnist(args.data_dir)
        except FileNotFoundError as err:
            if named:
                raise UserError(f"MNIST is not available: {err}") from err
            print("fastadapt lr-find: no MNIST data here; running the built-in least-squares problem (for "
                  "MNIST: pip install \".[examples]\" from a fastadapt checkout, or --data-dir DIR)",
                  file=sys.stderr)
        except (ValueError, TypeError, OSError) as err:
            raise user_error(err) from err
        else:
            model = MLP([784, 128, 10], seed=args.seed)
            with user_input():
                batches = shuffled_batches(data.X_train, data.y_train, args.batch_size, seed=args.seed)
            return ("mnist", model.params, model.loss_and_grad, batches,
                    {"model": repr(model), "train_samples": len(data.y_train), "batch_size": args.batch_size})
    from ..data.problems import least_squares

    problem = least_squares(seed=args.seed)
    return ("least-squares", problem.init_params(), problem.loss_and_grad,
            problem.batches(args.batch_size, seed=args.seed),
            {"samples": len(problem.y), "features": problem.X.shape[1], "batch_size": args.batch_size,
             "full_batch_sgd_max_stable_lr": problem.max_stable_lr})


def _with_progress(lr_find: Callable[..., Any], optimizer: Any, params: Any,
                           loss_and_grad: Callable[[Any, Any], Any], batches: Any, args: argparse.Namespace) -> Any:
    """lr_find with a bar over its steps on a terminal (nothing off one). Every step calls
    ``loss_and_grad`` once, so counting those calls counts steps. The total is an upper bound: the sweep
    may stop at divergence, and the check runs at most 6 candidates plus 2 half-steps (lr_finder)."""
    from ..train.progress import StepBar

    bar = StepBar("lr-find", args.num_steps + 8 * args.verify_steps, unit="step")

    def counted(p: Any, batch: Any) -> Any:
        out = loss_and_grad(p, batch)
        bar.update()
        return out

    try:
        result = lr_find(optimizer, params, counted, batches, start_lr=args.start_lr, end_lr=args.end_lr,
                         num_steps=args.num_steps, verify_steps=args.verify_steps)
    finally:
        bar.close(finished_early=True)
    return result


def run(args: argparse.Namespace) -> int:
    from ..schedules.lr_finder import check_settings, lr_find
    from ..optim import make_optimizer

    with user_input():  # every argument is checked before any data is loaded
        optimizer = make_optimizer(args.optimizer)
        check_settings(start_lr=args.start_lr, end_lr=args.end_lr, num_steps=args.num_steps,
                       verify_steps=args.verify_steps)
    if args.batch_size < 1:
        raise UserError(f"--batch-size {args.batch_size} must be >= 1")
    name, params, loss_and_grad, batches, facts = _problem(args)
    with user_input():
        check_writable_dir(args.out, "--out")
    result = _with_progress(lr_find, optimizer, params, loss_and_grad, batches, args)
    json_path = os.path.join(args.out, "lr_find.json")
    write_text(json_path, json.dumps({"problem": name, **facts, "optimizer": repr(optimizer), "seed": args.seed,
                                      **result.to_dict()}, indent=1) + "\n")
    written = [json_path]
    try:
        written.append(result.plot(os.path.join(args.out, "lr_find.png")))
    except ImportError as err:
        print(f"fastadapt lr-find: no plot ({err})", file=sys.stderr)
    shown = "none (too few points)" if result.suggestion is None else f"{result.suggestion:.3g}"
    print(f"lr-find on {name} with {type(optimizer).__name__}: {len(result.lrs)} steps from "
          f"{args.start_lr:g} to {args.end_lr:g} ({result.stop_reason})")
    how = {"verified": f"verified: the best of {len(result.candidates)} short runs of {args.verify_steps} steps",
           "curve": "the smoothed curve's lowest point / 3, not verified"}.get(result.suggestion_method, "")
    # Which one to use, said outright: the plot marks four values.
    use = "" if result.suggestion is None else " <- use this one"
    print(f"suggested lr ({how}): {shown}{use}" if how else f"suggested lr: {shown}{use}")
    others = [f"{name} {lr:.3g}" for name, lr in (("valley", result.valley), ("steep", result.steep),
                                                   ("minimum/10", result.minimum)) if lr is not None]
    if others:
        print(f"fastai's rules on the same curve, for comparison (not verified): {', '.join(others)}")
    if "full_batch_sgd_max_stable_lr" in facts:
        print(f"for reference, full-batch SGD is stable below 2 / lambda_max(H) = "
              f"{facts['full_batch_sgd_max_stable_lr']:.3g}")
    print(f"wrote {', '.join(written)}")
    return 0
