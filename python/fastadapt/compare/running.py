"""Running a comparison: one training run of one optimizer on one workload
([`train_run`][fastadapt.compare.train_run]), and [`compare`][fastadapt.compare.compare], which runs
the grid of tuned Adam and every selected optimizer at its defaults over the suite.

A run is ``workload.steps`` optimizer steps on mini-batches drawn without
replacement (a new seeded permutation each pass over the data), with the
validation metric evaluated ``workload.evals`` times at evenly spaced steps
(and at step 0). Its clock counts the gradient and the update only, not the
evaluations, so "seconds to target" is training time. A run stops at the
first non-finite training loss or non-finite parameters (it *diverged*);
later evaluations are NaN and so is its final metric.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ..gradients import global_norm
from ..optim import OPTIMIZERS, Optimizer
from ..train.progress import StepBar
from .report import ACCURACY_TOLERANCE, LOSS_TOLERANCE, CompareResult, Run
from .workloads import Workload, resolve

__all__ = ["compare", "train_run", "lr_free_optimizers", "lr_grid", "TUNED", "QUICK_FRACTION"]

TUNED = "adam"           # the tuned baseline's rule (its learning rate is searched on a grid)
LR_MIN, LR_MAX, GRID_SIZE = 1e-4, 1e-1, 7
QUICK_FRACTION = 0.1     # --quick: this fraction of every workload's steps
QUICK_GRID_SIZE = 3


def lr_free_optimizers() -> List[str]:
    """Registered optimizers whose class says ``lr_free = True`` (they set
    their own step size), sorted: the default selection."""
    return sorted(name for name, cls in OPTIMIZERS.items() if getattr(cls, "lr_free", False))


def lr_grid(lr_min: float = LR_MIN, lr_max: float = LR_MAX, size: int = GRID_SIZE) -> List[float]:
    """``size`` learning rates evenly spaced on a log scale from ``lr_min`` to ``lr_max``."""
    for name, value in (("lr_min", lr_min), ("lr_max", lr_max)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1:
        raise ValueError(f"grid_size must be an int >= 1, got {size!r}")
    if size > 1 and not lr_min < lr_max:
        raise ValueError(f"lr_min ({lr_min:g}) must be below lr_max ({lr_max:g}) for a grid of {size} points")
    if size == 1:
        return [float(lr_min)]
    return [float(v) for v in np.geomspace(lr_min, lr_max, int(size))]


def _batches(workload: Workload, seed: int) -> Iterator[Tuple[np.ndarray, ...]]:
    """Endless mini-batches: a fresh seeded permutation of the training rows each pass."""
    n = workload.train_samples
    if workload.batch_size is None or workload.batch_size >= n:
        while True:
            yield workload.train
    rng = np.random.default_rng([seed, 0x5EED])  # its own stream: not the one that drew the initial params
    size = int(workload.batch_size)
    while True:
        order = rng.permutation(n)
        for start in range(0, n - size + 1, size):  # a short last batch is dropped: every step sees `size` rows
            rows = order[start:start + size]
            yield tuple(a[rows] for a in workload.train)


def _evaluate(workload: Workload, optimizer: Optimizer, params: Any) -> float:
    """The validation metric of the params the optimizer would hand over:
    Schedule-Free rules evaluate at a different point than they train at,
    so ``eval``/``train`` (no-ops on the others) bracket the evaluation."""
    to_eval, to_train = getattr(optimizer, "eval", None), getattr(optimizer, "train", None)
    if callable(to_eval):
        to_eval(params)
    try:
        if not math.isfinite(global_norm(params)):
            return math.nan
        return workload.evaluate(params)
    finally:
        if callable(to_train):
            to_train(params)


def train_run(workload: Workload, make: Callable[[], Optimizer], *, optimizer: str, entry: str, seed: int,
              lr: Optional[float], tuning: bool = False) -> Run:
    """One run of ``make()`` on ``workload`` from the params of ``seed``."""
    params = workload.init_params(seed)
    opt = make()
    eval_steps = {int(round(v)) for v in np.linspace(0, workload.steps, workload.evals + 1)}
    steps, metric, train_loss, seconds = [0], [_evaluate(workload, opt, params)], [math.nan], [0.0]
    batches = _batches(workload, seed)
    clock, loss_sum, loss_count = 0.0, 0.0, 0
    diverged_at: Optional[int] = None
    for step in range(1, workload.steps + 1):
        batch = next(batches)
        started = time.perf_counter()
        # (a run that diverges overflows on the way: it is reported as
        # diverged, not with NumPy's warnings on the terminal)
        with np.errstate(over="ignore", invalid="ignore"):
            loss, grads = workload.loss_and_grad(params, batch)
        opt.update(params, grads)
        clock += time.perf_counter() - started
        loss = float(loss)
        if not math.isfinite(loss):
            diverged_at = step
            break
        loss_sum += loss
        loss_count += 1
        if step in eval_steps:
            with np.errstate(over="ignore", invalid="ignore"):
                value = _evaluate(workload, opt, params)
            steps.append(step)
            metric.append(value)
            train_loss.append(loss_sum / loss_count)
            seconds.append(clock)
            loss_sum, loss_count = 0.0, 0
            if not math.isfinite(value):  # the parameters overflowed while the loss was still finite
                diverged_at = step
                break
    estimate = getattr(opt, "lr_estimate", None)
    adapted = getattr(opt, "adapted", None)
    return Run(workload=workload.name, optimizer=optimizer, entry=entry, lr=lr, seed=seed, tuning=tuning,
               steps=steps, metric=metric, train_loss=train_loss, seconds=seconds, total_steps=workload.steps,
               train_seconds=clock,
               diverged_at=diverged_at, higher_is_better=workload.higher_is_better,
               adapted={str(k): float(v) for k, v in adapted.items()} if isinstance(adapted, dict) else {},
               lr_estimate=float(estimate) if isinstance(estimate, numbers.Real) and not isinstance(estimate, bool)
               else None)


def _check_optimizers(optimizers: Optional[Sequence[str]]) -> List[str]:
    if optimizers is None:
        names = lr_free_optimizers()
        if not names:
            raise ValueError("no registered optimizer has lr_free = True (the learning-rate-free rules are not in "
                             "this build); pass optimizers=[...] (fastadapt compare --optimizers adam,lion)")
        return names
    if isinstance(optimizers, str) or not isinstance(optimizers, Sequence):
        raise TypeError(f"optimizers must be a list of registered names such as ['adam', 'lion'] or None (the "
                        f"learning-rate-free ones), got {type(optimizers).__name__}")
    if not optimizers:
        raise ValueError("optimizers is empty; pass at least one name, or None for the learning-rate-free ones")
    names = []
    for name in optimizers:
        if not isinstance(name, str) or name.lower() not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {name!r} in optimizers; expected names from "
                             f"{', '.join(sorted(OPTIMIZERS))}")
        if name.lower() in names:
            raise ValueError(f"optimizer {name.lower()!r} is listed twice in optimizers")
        names.append(name.lower())
    return names


def _check_seeds(seeds: Any) -> List[int]:
    if isinstance(seeds, numbers.Integral) and not isinstance(seeds, bool):
        seeds = [seeds]
    if isinstance(seeds, str) or not isinstance(seeds, Sequence) or not seeds:
        raise TypeError(f"seeds must be a non-empty list of ints >= 0 such as [0, 1, 2], got {seeds!r}")
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 0:
            raise ValueError(f"seeds must hold ints >= 0, got {s!r}")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct, got {list(seeds)}")
    return [int(s) for s in seeds]


def _check_tolerance(name: str, value: Any) -> float:
    # (typeshed's numbers.Real declares only < and <=, yet every real number compares with 0)
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < 1:  # type: ignore[operator]
        raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")
    return float(value)


def compare(workloads: Optional[Sequence[Any]] = None, optimizers: Optional[Sequence[str]] = None, *,
            seeds: Any = (0,), lrs: Optional[Sequence[float]] = None, lr_min: float = LR_MIN,
            lr_max: float = LR_MAX, grid_size: Optional[int] = None, quick: bool = False,
            accuracy_tolerance: float = ACCURACY_TOLERANCE, loss_tolerance: float = LOSS_TOLERANCE,
            progress: bool = True) -> CompareResult:
    """Which optimizer needs no tuning? Train every workload with each of
    ``optimizers`` at its defaults (one run per seed) and with Adam at each
    learning rate of a log grid (per seed); Adam's tuned learning rate is the
    grid point with the best mean (over seeds) best validation metric, and
    that best is the target the others are measured against.

    Parameters
    ----------
    workloads
        built-in names (``fastadapt.compare.workloads.SUITE``) and/or
        [`Workload`][fastadapt.compare.Workload] objects; None: the whole suite. A built-in
        workload whose data package is missing is skipped (``result.skipped`` says why).
    optimizers
        registered names, run at their defaults; None: every registered optimizer whose class has
        ``lr_free = True``.
    seeds
        ints; each seed is one run per optimizer and one per grid point.
    lrs
        Adam's grid, explicitly; else ``grid_size`` points from ``lr_min`` to ``lr_max`` on a log
        scale (7, or 3 with ``quick``).
    quick
        every workload at a tenth of its steps (for tests and a first look).
    accuracy_tolerance
        "within target" for accuracy: at least the target minus this (0.01: one accuracy point).
    loss_tolerance
        "within target" for a loss: at most the target times ``1 + loss_tolerance`` (0.05: 5%).
    progress
        a bar over the runs on a terminal, else a line per run, on stderr.

    Returns
    -------
    CompareResult
        the report: ``table()``, ``to_json``, ``to_csv``, ``plot``, ``goal_met``.
    """
    names = _check_optimizers(optimizers)
    seed_list = _check_seeds(seeds)
    if not isinstance(quick, (bool, np.bool_)):
        raise TypeError(f"quick must be True or False, got {quick!r}")
    if not isinstance(progress, (bool, np.bool_)):
        raise TypeError(f"progress must be True or False, got {progress!r}")
    if lrs is not None:
        if grid_size is not None:
            raise ValueError("pass lrs (the grid itself) or grid_size (with lr_min, lr_max), not both")
        if isinstance(lrs, str) or not isinstance(lrs, Sequence) or not lrs:
            raise TypeError(f"lrs must be a non-empty list of learning rates, got {lrs!r}")
        grid = [lr_grid(v, v, 1)[0] for v in lrs]
        if len(set(grid)) != len(grid):
            raise ValueError(f"lrs must be distinct, got {list(lrs)}")
        grid.sort()
    else:
        grid = lr_grid(lr_min, lr_max, (QUICK_GRID_SIZE if quick else GRID_SIZE) if grid_size is None else grid_size)
    accuracy_tolerance = _check_tolerance("accuracy_tolerance", accuracy_tolerance)
    loss_tolerance = _check_tolerance("loss_tolerance", loss_tolerance)
    built, skipped = resolve(workloads)
    if quick:
        built = [w.scaled(QUICK_FRACTION) for w in built]

    started = time.perf_counter()
    runs: List[Run] = []
    total = len(built) * len(seed_list) * (len(grid) + len(names))
    bar = StepBar("compare", total, unit="run")
    for name, reason in skipped:
        if progress:
            bar.write(f"compare: skipped workload {name}: {reason}")
    done = 0
    try:
        with _one_blas_thread():
            for workload in built:
                plan: List[Tuple[str, str, Optional[float], bool]] = \
                    [(TUNED, "adam-tuned", lr, True) for lr in grid] + [(n, n, None, False) for n in names]
                for optimizer, entry, lr, tuning in plan:
                    cls = OPTIMIZERS[optimizer]
                    for seed in seed_list:
                        def make(cls: Any = cls, lr: Optional[float] = lr) -> Optimizer:
                            return cls() if lr is None else cls(lr=lr)

                        run = train_run(workload, make, optimizer=optimizer, entry=entry, seed=seed,
                                        lr=lr if lr is not None else _default_lr(cls), tuning=tuning)
                        runs.append(run)
                        done += 1
                        if progress:
                            _report_run(bar, run, workload, done, total)
    finally:
        bar.close()
    config: Dict[str, Any] = {"optimizers": names, "tuned": TUNED, "grid": grid, "seeds": seed_list,
                              "quick": bool(quick), "accuracy_tolerance": accuracy_tolerance,
                              "loss_tolerance": loss_tolerance,
                              "lr_free": {name: bool(getattr(OPTIMIZERS[name], "lr_free", False)) for name in names}}
    return CompareResult.build(built, runs, config, skipped=skipped, seconds=time.perf_counter() - started)


def _one_blas_thread() -> Any:
    """BLAS on one thread while the runs train, when threadpoolctl (which
    scikit-learn brings) is there: the suite's matrices are small, and
    OpenBLAS's threads then cost more than they save (10x on a busy two-core
    machine, measured on the MNIST MLP's step). Every run gets the same
    setting, so the seconds compare."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")  # limits now; restores the old ones on exit


def _default_lr(cls: Any) -> Optional[float]:
    """The ``lr`` an optimizer class uses by default (None if it has none)."""
    lr = cls().hyperparameters.get("lr")
    return float(lr) if isinstance(lr, numbers.Real) and not isinstance(lr, bool) else None


def _report_run(bar: StepBar, run: Run, workload: Workload, done: int, total: int) -> None:
    lr = f" lr={run.lr:.3g}" if run.lr is not None else ""
    outcome = f"diverged at step {run.diverged_at}" if run.diverged_at is not None else \
        f"final {run.final:.4g}"
    parts = [f"[compare {done}/{total}] {workload.name}", f"{run.optimizer}{lr}{' (grid)' if run.tuning else ''}",
             f"seed {run.seed}", f"best {workload.metric} {run.best:.4g}", outcome,
             f"{run.train_seconds:.2f} s training"]
    if bar.active:
        bar.write_parts(parts)
        bar.set_status(workload.name)
        bar.update()
    else:
        bar.write(", ".join(parts))
