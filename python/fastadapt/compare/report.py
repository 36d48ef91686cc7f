"""The result of ``fa.compare``: the runs, one row per workload and
optimizer, the goal, and the table, JSON and CSV a person reads.

Definitions (the README quotes them):

- **target**: the best validation metric of grid-tuned Adam (its tuned
  learning rate is the grid point with the best mean best-metric over the
  seeds; the target is that mean). "Best" is the best of a run's
  evaluations, as a run with early stopping would keep.
- **within target**: for accuracy, at least the target minus
  ``accuracy_tolerance`` (default 0.01, one accuracy point); for a loss, at
  most the target plus ``loss_tolerance`` times its size (default 0.05: 5%).
- **steps / seconds to target**: the first evaluation at which a run is
  within target, and its training time to then (gradient + update, no
  evaluation); the mean over seeds, or none ("-") unless every seed got there.
- **runs**: what the row cost per seed: the grid size for tuned Adam, 1 for
  an optimizer at its defaults. ``seconds`` is the training time of all of them.
- **goal** of a workload: the best of the candidates at their defaults (by
  mean best metric) is within target. The candidates are the selected
  optimizers whose class has ``lr_free = True``, or all selected ones when
  none of them has. The README's goal: met on every workload.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .._files import atomic_write
from .workloads import Workload

__all__ = ["Run", "Row", "WorkloadReport", "CompareResult", "within", "ACCURACY_TOLERANCE", "LOSS_TOLERANCE"]

PathLike = Union[str, "os.PathLike[str]"]
ACCURACY_TOLERANCE = 0.01   # one accuracy point
LOSS_TOLERANCE = 0.05       # 5% of the loss
FORMAT, VERSION = "fastadapt.compare", 1


def within(value: float, target: float, metric: str, accuracy_tolerance: float = ACCURACY_TOLERANCE,
           loss_tolerance: float = LOSS_TOLERANCE) -> bool:
    """Whether ``value`` is within target (module docstring); NaN never is."""
    if not (math.isfinite(value) and math.isfinite(target)):
        return False
    if metric == "accuracy":
        # A hair of slack: 0.95 - 0.01 is 0.9399999999999999 in binary, and 0.94 must count.
        return value >= target - accuracy_tolerance - 1e-12
    return value <= target + loss_tolerance * abs(target) + 1e-12 * max(1.0, abs(target))


def _nan_best(values: Sequence[float], higher: bool) -> Tuple[float, int]:
    """(best finite value, its index); (nan, -1) when none is finite."""
    best, at = math.nan, -1
    for i, v in enumerate(values):
        if math.isfinite(v) and (at < 0 or (v > best if higher else v < best)):
            best, at = v, i
    return best, at


@dataclass
class Run:
    """One training run: the validation metric at each evaluated step, the
    mean training loss since the previous evaluation, and the training
    seconds up to it."""

    workload: str
    optimizer: str
    entry: str                 # the row it belongs to: the optimizer's name, or "adam-tuned"
    lr: Optional[float]        # the lr it ran with (an optimizer's default lr at its defaults)
    seed: int
    tuning: bool               # a grid run of the tuned baseline
    steps: List[int]
    metric: List[float]
    train_loss: List[float]
    seconds: List[float]
    total_steps: int
    train_seconds: float = 0.0  # the whole run's (to its divergence, if it diverged after the last evaluation)
    diverged_at: Optional[int] = None
    lr_estimate: Optional[float] = None  # the optimizer's learned step size at the end, if it reports one
    adapted: Dict[str, float] = field(default_factory=dict)  # what it learned (opt.adapted: Prodigy's d, ...)
    higher_is_better: bool = True

    @property
    def final(self) -> float:
        """The metric at the last evaluation; NaN when the run diverged."""
        return math.nan if self.diverged_at is not None else self.metric[-1]

    @property
    def best(self) -> float:
        """The best metric over the run's evaluations (the highest accuracy or the
        lowest loss; NaN values never win)."""
        return _nan_best(self.metric, self.higher_is_better)[0]

    @property
    def best_step(self) -> Optional[int]:
        """The step of the evaluation that gave [`best`][fastadapt.compare.Run.best], or None when no
        evaluation had a number."""
        at = _nan_best(self.metric, self.higher_is_better)[1]
        return self.steps[at] if at >= 0 else None

    def first_within(self, target: float, metric: str, accuracy_tolerance: float,
                     loss_tolerance: float) -> Optional[Tuple[int, float]]:
        """(step, training seconds) of the first evaluation within target, or None."""
        for step, value, seconds in zip(self.steps, self.metric, self.seconds):
            if within(value, target, metric, accuracy_tolerance, loss_tolerance):
                return step, seconds
        return None

    def to_dict(self) -> Dict[str, Any]:
        """The run's fields with ``final``, ``best`` and ``best_step``, as plain
        data (what the JSON report holds per run)."""
        out = asdict(self)
        out.update(final=self.final, best=self.best, best_step=self.best_step)
        return out


@dataclass
class Row:
    """One optimizer on one workload, over the seeds (means)."""

    workload: str
    metric: str
    optimizer: str
    tuned: bool
    lr_free: bool
    lr: Optional[float]
    runs: int                  # runs per seed: the grid size when tuned, else 1
    seeds: int
    final: float
    best: float
    steps_to_target: Optional[float]
    seconds_to_target: Optional[float]
    seconds: float             # training seconds of every run this row cost (the grid's, for tuned)
    diverged: int              # of the row's own runs (the tuned lr's, for tuned)
    within_target: bool
    lr_estimate: Optional[float] = None


@dataclass
class WorkloadReport:
    """One workload's part of the report: what it is (``name``, ``metric``,
    ``description``, ``steps``, ``batch_size``, ``train_samples``,
    ``val_samples``), Adam's tuning (``grid``: per learning rate the mean
    best and final metric and the diverged runs; ``tuned_lr``; ``target``,
    the best of the grid), a [`Row`][fastadapt.compare.Row] per optimizer and one for tuned
    Adam (``rows``), the best candidate at its defaults (``best_default``)
    and whether the goal was met on this workload (``goal_met``)."""

    name: str
    metric: str
    description: str
    steps: int
    batch_size: Optional[int]
    train_samples: int
    val_samples: int
    target: float
    tuned_lr: Optional[float]
    rows: List[Row]
    grid: List[Dict[str, Any]]
    best_default: Optional[str]  # the best candidate at its defaults
    goal_met: bool

    def row(self, optimizer: str) -> Row:
        """The row of ``optimizer`` (a registered name, or ``"adam-tuned"``).

        Raises
        ------
        KeyError
            when the workload has no such row (the message lists them).
        """
        for r in self.rows:
            if r.optimizer == optimizer:
                return r
        raise KeyError(f"no row {optimizer!r} in workload {self.name!r}; rows: {[r.optimizer for r in self.rows]}")


def _mean(values: Sequence[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(values)) if len(finite) == len(values) and values else math.nan


@dataclass
class CompareResult:
    """What ``fa.compare`` found: ``workloads`` (a [`WorkloadReport`][fastadapt.compare.WorkloadReport]
    each, with its rows and goal), every run in ``runs``, the ``config``,
    and the workloads ``skipped`` (name, reason)."""

    workloads: List[WorkloadReport]
    runs: List[Run]
    config: Dict[str, Any]
    skipped: List[Tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    # ---- building ---------------------------------------------------------------------
    @classmethod
    def build(cls, workloads: Sequence[Workload], runs: Sequence[Run], config: Dict[str, Any], *,
              skipped: Sequence[Tuple[str, str]] = (), seconds: float = 0.0) -> "CompareResult":
        """Aggregate ``runs`` into rows and goals (``config``: ``grid``,
        ``optimizers``, ``lr_free``, ``accuracy_tolerance``, ``loss_tolerance``, ``tuned``)."""
        reports = []
        for w in workloads:
            mine = [r for r in runs if r.workload == w.name]
            for r in mine:
                r.higher_is_better = w.higher_is_better
            reports.append(cls._report(w, mine, config))
        return cls(reports, list(runs), dict(config), [tuple(s) for s in skipped], seconds)  # type: ignore[misc]

    @staticmethod
    def _report(w: Workload, runs: List[Run], config: Dict[str, Any]) -> WorkloadReport:
        acc_tol, loss_tol = config["accuracy_tolerance"], config["loss_tolerance"]
        higher = w.higher_is_better
        grid_runs = [r for r in runs if r.tuning]
        grid = []
        for lr in config["grid"]:
            at_lr = [r for r in grid_runs if r.lr == lr]
            grid.append({"lr": lr, "best": _mean([r.best for r in at_lr]), "final": _mean([r.final for r in at_lr]),
                         "diverged": sum(r.diverged_at is not None for r in at_lr)})
        target, pick = _nan_best([g["best"] for g in grid], higher)
        tuned_lr = grid[pick]["lr"] if pick >= 0 else None

        def row(name: str, own: List[Run], tuned: bool, cost: List[Run]) -> Row:
            reached = [r.first_within(target, w.metric, acc_tol, loss_tol) for r in own]
            hits = [x for x in reached if x is not None]
            all_reached = bool(own) and len(hits) == len(reached)
            estimates = [r.lr_estimate for r in own if r.lr_estimate is not None]
            best = _mean([r.best for r in own])
            return Row(workload=w.name, metric=w.metric, optimizer=name, tuned=tuned,
                       lr_free=bool(config["lr_free"].get(name, False)) if not tuned else False,
                       lr=own[0].lr if own else None, runs=len(config["grid"]) if tuned else 1, seeds=len(own),
                       final=_mean([r.final for r in own]), best=best,
                       steps_to_target=float(np.mean([x[0] for x in hits])) if all_reached else None,
                       seconds_to_target=float(np.mean([x[1] for x in hits])) if all_reached else None,
                       seconds=float(sum(r.train_seconds for r in cost)),
                       diverged=sum(r.diverged_at is not None for r in own),
                       within_target=within(best, target, w.metric, acc_tol, loss_tol),
                       lr_estimate=float(np.mean(estimates)) if len(estimates) == len(own) and own else None)

        tuned_name = f"{config['tuned']}-tuned"
        rows = [row(tuned_name, [r for r in grid_runs if r.lr == tuned_lr], True, grid_runs)]
        for name in config["optimizers"]:
            own = [r for r in runs if not r.tuning and r.optimizer == name]
            rows.append(row(name, own, False, own))
        lr_free = [r for r in rows[1:] if r.lr_free]
        candidates = lr_free or rows[1:]
        best_default, at = None, -1
        if candidates:
            _, at = _nan_best([r.best for r in candidates], higher)
            best_default = candidates[at].optimizer if at >= 0 else None
        goal = at >= 0 and candidates[at].within_target
        return WorkloadReport(w.name, w.metric, w.description, w.steps, w.batch_size, w.train_samples,
                              w.val_samples, target, tuned_lr, rows, grid, best_default, bool(goal))

    # ---- the goal -------------------------------------------------------------------------
    @property
    def candidates(self) -> List[str]:
        """The optimizers the goal is about: the lr-free ones among those run, else all of them."""
        lr_free = [n for n in self.config["optimizers"] if self.config["lr_free"].get(n)]
        return lr_free or list(self.config["optimizers"])

    @property
    def goal_met(self) -> bool:
        """The goal holds on every workload compared (and at least one was)."""
        return bool(self.workloads) and all(w.goal_met for w in self.workloads)

    def goal_text(self) -> str:
        """The summary line a README can quote."""
        acc, loss = self.config["accuracy_tolerance"], self.config["loss_tolerance"]
        who = ", ".join(self.candidates)
        if not any(self.config["lr_free"].get(n) for n in self.config["optimizers"]):
            who += " (none of them lr_free: the goal is over all selected optimizers)"
        met = [w.name for w in self.workloads if w.goal_met]
        missed = [w.name for w in self.workloads if not w.goal_met]
        head = (f"goal: the best of {who} at its defaults within {acc * 100:g} accuracy point(s) "
                f"(classification) or {loss * 100:g}% of the loss (regression) of grid-tuned "
                f"{self.config['tuned']} ({len(self.config['grid'])} learning rates) on every workload: ")
        verdict = "MET" if self.goal_met else "NOT MET"
        tail = f"{verdict}, {len(met)}/{len(self.workloads)} workloads"
        if missed:
            tail += f" (missed: {', '.join(missed)})"
        return head + tail

    # ---- the table ---------------------------------------------------------------------------
    def table(self) -> str:
        """The terminal table: a block per workload, then the goal line."""
        header = ["workload", "optimizer", "runs", "lr", "final", "best", "steps→target", "s→target", "train s",
                  "within", "goal"]
        lines: List[List[str]] = []
        for w in self.workloads:
            for i, r in enumerate(w.rows):
                goal = ""
                if r.tuned:
                    goal = f"target {_fmt_metric(w.target, w.metric)}"
                elif r.optimizer == w.best_default:
                    goal = "met" if w.goal_met else "missed"
                lr = "-" if r.lr is None else f"{r.lr:.3g}"
                if r.lr_estimate is not None:
                    lr += f" (→{r.lr_estimate:.3g})"
                lines.append([
                    (f"{w.name} ({w.metric})" if i == 0 else ""),
                    r.optimizer + (" *" if r.lr_free else ""),
                    str(r.runs),
                    lr,
                    _fmt_metric(r.final, w.metric),
                    _fmt_metric(r.best, w.metric),
                    "-" if r.steps_to_target is None else f"{r.steps_to_target:.0f}/{w.steps}",
                    "-" if r.seconds_to_target is None else f"{r.seconds_to_target:.2f}",
                    f"{r.seconds:.2f}",
                    "yes" if r.within_target else "no",
                    goal,
                ])
        widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h) for i, h in enumerate(header)]
        right = {2, 3, 4, 5, 6, 7, 8}

        def fmt(cells: List[str]) -> str:
            return "  ".join(c.rjust(wd) if i in right else c.ljust(wd)
                             for i, (c, wd) in enumerate(zip(cells, widths))).rstrip()

        out = [fmt(header), fmt(["-" * wd for wd in widths])]
        previous = None
        for line, (w, _) in zip(lines, [(w, r) for w in self.workloads for r in w.rows]):
            if previous is not None and w is not previous:
                out.append("")
            previous = w
            out.append(fmt(line))
        acc, loss = self.config["accuracy_tolerance"], self.config["loss_tolerance"]
        seeds = len(self.config["seeds"])
        notes = [f"final, best: validation accuracy in %, or loss; {'mean over ' + str(seeds) + ' seeds' if seeds > 1 else '1 seed'}. "
                 f"target: {self.config['tuned']}-tuned's best. within: best >= target - {acc * 100:g} point(s) "
                 f"(accuracy) or <= target + {loss * 100:g}% (loss).",
                 f"steps→target, s→target: first evaluation within target, training seconds to it (- : not "
                 f"reached). runs: training runs per seed (the lr grid for {self.config['tuned']}-tuned); train s: "
                 f"their training seconds.",
                 "lr: the lr used (an optimizer's default; →x: the step size it learned, at the end). "
                 "*: lr_free (sets its own step size)."]
        for name, reason in self.skipped:
            notes.append(f"skipped {name}: {reason}")
        return "\n".join(out + [""] + notes + [self.goal_text()])

    # ---- files -----------------------------------------------------------------------------------
    def to_dict(self) -> Dict[str, Any]:
        """The whole report as plain data: the format and version, the config,
        the goal, the skipped workloads, every workload with its rows, and every
        run (what [`to_json`][fastadapt.compare.CompareResult.to_json] writes, with NaN as null there)."""
        return {"format": FORMAT, "version": VERSION, "config": self.config, "seconds": self.seconds,
                "goal": {"met": self.goal_met, "text": self.goal_text(), "candidates": self.candidates,
                         "per_workload": {w.name: w.goal_met for w in self.workloads}},
                "skipped": [{"workload": n, "reason": r} for n, r in self.skipped],
                "workloads": [asdict(w) for w in self.workloads],
                "runs": [r.to_dict() for r in self.runs]}

    def to_json(self, path: PathLike) -> str:
        """Write [`to_dict`][fastadapt.compare.CompareResult.to_dict] to ``path`` as JSON,
        atomically (a crash never leaves half a file). A NaN (a diverged run's final metric) is
        written as ``null``: JSON has no NaN.

        Parameters
        ----------
        path
            the file to write.

        Returns
        -------
        str
            the path written.
        """
        # NaN (a diverged run's final metric) is written as null: JSON has no NaN.
        text = json.dumps(_nan_to_none(self.to_dict()), indent=1, allow_nan=False)
        with atomic_write(os.fspath(path), "w") as f:
            f.write(text + "\n")
        return os.fspath(path)

    CSV_FIELDS = ("workload", "metric", "optimizer", "tuned", "lr_free", "lr", "runs", "seeds", "final", "best",
                  "target", "within_target", "goal_met", "steps_to_target", "seconds_to_target", "seconds",
                  "diverged", "lr_estimate")

    def to_csv(self, path: PathLike) -> str:
        """One line per workload and optimizer (empty cell: none)."""
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.CSV_FIELDS, lineterminator="\n")
        writer.writeheader()
        for w in self.workloads:
            for r in w.rows:
                values = {**asdict(r), "target": w.target,
                          "goal_met": w.goal_met if r.optimizer == w.best_default else ""}
                writer.writerow({k: _csv_cell(values[k]) for k in self.CSV_FIELDS})
        with atomic_write(os.fspath(path), "w") as f:
            f.write(buffer.getvalue())
        return os.fspath(path)

    def plot(self, directory: PathLike, prefix: str = "curves-") -> List[str]:
        """A PNG of learning curves per workload in ``directory``; returns the paths."""
        from .plot import plot_workload

        os.makedirs(directory, exist_ok=True)
        return [plot_workload(self, w, os.path.join(directory, f"{prefix}{w.name}.png")) for w in self.workloads]

    def save(self, directory: PathLike) -> List[str]:
        """compare.json, compare.csv and (with matplotlib) the curves in ``directory``."""
        os.makedirs(directory, exist_ok=True)
        files = [self.to_json(os.path.join(directory, "compare.json")),
                 self.to_csv(os.path.join(directory, "compare.csv"))]
        return files + self.plot(directory)


def _fmt_metric(value: float, metric: str) -> str:
    if not math.isfinite(value):
        return "nan"
    return f"{value * 100:.2f}" if metric == "accuracy" else f"{value:.4g}"


def _csv_cell(value: Any) -> Any:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    return value


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nan_to_none(v) for v in value]
    return value
