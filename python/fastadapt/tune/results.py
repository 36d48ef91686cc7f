"""What a tuner returns: every trial with its config, budget, metric history
and status; the best one; PBT's lineage and the rung decisions; export to
JSON and CSV; plots.

    result = fa.tune.Hyperband(MyTrainable, space, max_resource=81).run()
    result.best_config, result.best_metric
    result.to_json("hb.json"); result.to_csv("hb.csv"); result.plot("hb.png")
"""

from __future__ import annotations

import csv
import io
import json
import math
import numbers
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

from .._files import atomic_write, write_text
from .status import COMPLETED, FAILED, PAUSED, PENDING, RUNNING, STATUSES, STOPPED  # re-exported
from .trainable import metric_is_valid

__all__ = ["TrialRecord", "TuneResult", "ranked", "best_evaluation", "evaluation_key", "PENDING", "RUNNING", "PAUSED", "COMPLETED", "STOPPED",
           "FAILED", "STATUSES"]

PathLike = Union[str, "os.PathLike[str]"]

# Trial statuses. "paused": waiting for a decision (a promotion, the next
# generation); "stopped": early-stopped by the scheduler; "completed": reached
# its full budget; "failed": raised, died past its retries, timed out, returned
# an unpicklable state or reported a NaN or infinite metric.


def ranked(scores: Iterable[Tuple[int, Optional[float]]], mode: str) -> List[Tuple[int, Optional[float]]]:
    """``(trial_id, metric)`` pairs best first. NaN and missing metrics rank
    last; ties go to the lower trial id, so every ranking is deterministic."""
    sign = 1.0 if mode == "min" else -1.0

    def key(item: Tuple[int, Optional[float]]) -> Tuple[int, float, int]:
        trial_id, metric = item
        if not metric_is_valid(metric):
            return (1, 0.0, trial_id)
        return (0, sign * float(metric), trial_id)  # type: ignore[arg-type]

    return sorted(scores, key=key)


def evaluation_key(metric: float, trial_id: int, budget: float, mode: str) -> Tuple[float, int, float]:
    """Sort key of one evaluation, best first: the metric (signed by mode),
    then the lower trial id, then the smaller budget."""
    return (metric if mode == "min" else -metric, trial_id, budget)


def best_evaluation(trials: Iterable["TrialRecord"], mode: str) -> Optional[Tuple["TrialRecord", Dict[str, Any]]]:
    """``(trial, history entry)`` of the best metric any trial reported, or
    None. This is Hyperband's output in the paper (the best intermediate
    loss seen), and it is what a tuner snapshots as ``best_state``: a
    config whose metric worsens with more budget is caught at its best.
    NaN never wins; ties go to the lower trial id, then the smaller budget.
    """
    best: Optional[Tuple["TrialRecord", Dict[str, Any]]] = None
    best_key = None
    for trial in trials:
        for entry in trial.history:
            if not metric_is_valid(entry["metric"]):
                continue
            key = evaluation_key(entry["metric"], trial.trial_id, entry["budget"], mode)
            if best_key is None or key < best_key:
                best, best_key = (trial, entry), key
    return best


@dataclass
class TrialRecord:
    """One trial (a PBT member is one trial whose config changes).

    Numbering (the project's one convention: counts from 1 for people,
    0-based indices in files): every budget here is a count of units
    *completed*, so with epochs as the unit a history entry with
    ``budget == 9`` is the metric after epoch 9 (history.json's index 8),
    drawn at x = 9 in the plots, and printed as "after 9 epochs".

    Attributes
    ----------
    trial_id
        its id, in the order trials were created (from 0; an id, not a count: the same number in
        tables, plots and progress lines).
    config
        its current (for PBT: final) hyperparameters.
    status
        pending, running, paused, completed, stopped or failed.
    budget
        resource units the trial's model has been trained for (completed).
    cost
        units actually computed for it; larger than ``budget`` when a non-resumable trainable was
        retrained from scratch.
    history
        one entry per finished job: ``{"budget": b, "metric": m, ...}`` (``m`` measured after ``b``
        units completed) plus any other numbers train() returned.
    config_history
        ``{"budget": b, "config": c}`` each time the config was set, ``c`` used from ``b`` units
        completed on (PBT's exploit/explore adds entries).
    error
        the traceback (or death/timeout notice) of a failed trial.
    retries
        jobs re-run after their worker died.
    seconds
        time spent in its jobs.
    bracket
        the Hyperband bracket ``s`` (None for other tuners).
    """

    trial_id: int
    config: Dict[str, Any]
    status: str = PENDING
    budget: int = 0
    cost: int = 0
    history: List[Dict[str, float]] = field(default_factory=list)
    config_history: List[Dict[str, Any]] = field(default_factory=list)
    error: Optional[str] = None
    retries: int = 0
    seconds: float = 0.0
    bracket: Optional[int] = None

    @property
    def metric(self) -> Optional[float]:
        """The last reported metric (None before the first)."""
        return self.history[-1]["metric"] if self.history else None

    def config_at(self, budget: int) -> Dict[str, Any]:
        """The config the trial trained with in the job that ended at ``budget``
        (PBT changes configs; for the other tuners it is ``config``)."""
        current = self.config_history[0]["config"] if self.config_history else self.config
        for entry in self.config_history:
            if entry["budget"] < budget:
                current = entry["config"]
        return dict(current)

    @property
    def error_summary(self) -> Optional[str]:
        """The last line of ``error`` (``ValueError: boom``)."""
        if not self.error:
            return None
        lines = [line for line in self.error.strip().splitlines() if line.strip()]
        return lines[-1].strip() if lines else None


def _plain(value: Any) -> Any:
    """JSON-ready data: NumPy scalars and arrays to Python, tuples to lists,
    non-finite floats to None (strict JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        v = float(value)
        return v if math.isfinite(v) else None
    if value is None or isinstance(value, str):
        return value
    return repr(value)


@dataclass
class TuneResult:
    """The outcome of ``tuner.run()``.

    Attributes
    ----------
    algorithm
        "hyperband", "successive_halving", "asha" or "pbt".
    metric, mode
        what was optimized and in which direction.
    seed
        the seed that reproduces the run.
    settings
        the tuner's arguments (max_resource, eta, population, ...).
    trials
        every trial, by id.
    lineage
        PBT's exploit/explore events, in order: who copied whom (``member``, ``donor``), when
        (``budget``: units the member had completed; ``generation``: synchronous PBT's generations
        completed, so 1 after the first, the number the plot shows; None when asynchronous), the
        metrics then, and each hyperparameter's change (``changes``).
    rungs
        the successive-halving decisions: per rung its ``resource`` (the budget its trials
        complete), its trials and those promoted; ``rung`` is the 0-based index of the papers'
        ``r_0 .. r_s``, so ``rung: 0`` is what plots and tables call "rung 1"; Hyperband's also name
        their ``bracket`` (the paper's ``s``, a parameter kept as it is, not a position).
    seconds
        wall time of the run (summed over resumed parts).
    space
        each hyperparameter's domain (or constant) as text.
    best_state
        the trainable's state at the best evaluation (resumable trainables; None for functions).
    """

    algorithm: str
    metric: str
    mode: str
    seed: int
    settings: Dict[str, Any]
    trials: List[TrialRecord]
    lineage: List[Dict[str, Any]] = field(default_factory=list)
    rungs: List[Dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    space: Dict[str, str] = field(default_factory=dict)
    best_state: Any = field(default=None, repr=False)

    # ---- the best evaluation ------------------------------------------------
    @property
    def best_trial(self) -> Optional[TrialRecord]:
        """The trial that reported the best metric (see ``best_evaluation``),
        or None when no trial reported a rankable metric."""
        best = best_evaluation(self.trials, self.mode)
        return None if best is None else best[0]

    @property
    def best_metric(self) -> Optional[float]:
        """The best metric reported, by any trial at any budget."""
        best = best_evaluation(self.trials, self.mode)
        return None if best is None else best[1]["metric"]

    @property
    def best_budget(self) -> Optional[int]:
        """The budget at which [`best_metric`][fastadapt.tune.TuneResult.best_metric] was reported."""
        best = best_evaluation(self.trials, self.mode)
        return None if best is None else best[1]["budget"]

    @property
    def best_config(self) -> Optional[Dict[str, Any]]:
        """The config that produced [`best_metric`][fastadapt.tune.TuneResult.best_metric] (for PBT:
        the member's config at that time)."""
        best = best_evaluation(self.trials, self.mode)
        return None if best is None else best[0].config_at(best[1]["budget"])

    def trial(self, trial_id: int) -> TrialRecord:
        """The trial with id ``trial_id``.

        Parameters
        ----------
        trial_id
            an id from ``trials`` (0-based, in the order trials were created).

        Returns
        -------
        TrialRecord
            that trial's record.

        Raises
        ------
        KeyError
            when no trial has that id.
        """
        for t in self.trials:
            if t.trial_id == trial_id:
                return t
        raise KeyError(f"no trial {trial_id!r}; trial ids are 0..{len(self.trials) - 1}")

    @property
    def total_cost(self) -> int:
        """Resource units computed over all trials."""
        return sum(t.cost for t in self.trials)

    def count(self, status: str) -> int:
        """How many trials ended in (or, for an interrupted run, are in)
        ``status``: ``"completed"``, ``"stopped"``, ``"failed"``, ``"paused"``,
        ``"running"`` or ``"pending"``."""
        return sum(t.status == status for t in self.trials)

    # ---- tables --------------------------------------------------------------
    def _config_keys(self) -> List[str]:
        keys: Dict[str, None] = {}
        for t in self.trials:
            keys.update(dict.fromkeys(_flat_config(t.config)))
        return list(keys)

    def table(self) -> List[Dict[str, Any]]:
        """One row per trial: id, status, bracket, budget (units completed),
        cost, last metric, best metric and ``best_budget`` (the units completed
        when it was reported), retries, the config (one column per value; a
        nested one as ``config.outer/inner``, the names ``space`` uses, empty
        where a conditional branch lacks it) and the error's last line. It holds
        no timings, so one seed gives the same table on every executor (for
        the synchronous tuners)."""
        keys = self._config_keys()
        rows = []
        for t in self.trials:
            found = best_evaluation([t], self.mode)
            best = found[1] if found is not None else {"metric": None, "budget": None}
            row: Dict[str, Any] = {"trial_id": t.trial_id, "status": t.status, "bracket": t.bracket,
                                   "budget": t.budget, "cost": t.cost, "metric": t.metric,
                                   "best_metric": best["metric"],
                                   # where best_metric was reached: "after N epochs", as the CLI and plot say it
                                   "best_budget": best["budget"],
                                   "retries": t.retries}
            flat = _flat_config(t.config)
            row.update({f"config.{k}": flat.get(k) for k in keys})
            row["error"] = t.error_summary
            rows.append(row)
        return rows

    def to_dict(self) -> Dict[str, Any]:
        """Everything but ``best_state``, as JSON-ready plain data."""
        best = self.best_trial
        return _plain({
            "algorithm": self.algorithm, "metric": self.metric, "mode": self.mode, "seed": self.seed,
            "settings": self.settings, "space": self.space, "seconds": self.seconds,
            "total_cost": self.total_cost,
            "best": None if best is None else {"trial_id": best.trial_id, "config": self.best_config,
                                               "metric": self.best_metric, "budget": self.best_budget},
            "trials": [{"trial_id": t.trial_id, "status": t.status, "config": t.config, "budget": t.budget,
                        "cost": t.cost, "bracket": t.bracket, "retries": t.retries, "seconds": t.seconds,
                        "history": t.history, "config_history": t.config_history, "error": t.error}
                       for t in self.trials],
            "lineage": self.lineage,
            "rungs": self.rungs,
        })

    def to_json(self, path: Optional[PathLike] = None, *, indent: int = 1) -> str:
        """The result as JSON (written to ``path`` when given, atomically, UTF-8); returns the text."""
        text = json.dumps(self.to_dict(), indent=indent, allow_nan=False)
        if path is not None:
            write_text(path, text + "\n")  # atomic: a reader never sees half a file
        return text

    @classmethod
    def from_json(cls, path: PathLike) -> "TuneResult":
        """A result written by [`to_json`][fastadapt.tune.TuneResult.to_json]
        (``result.json`` of ``fastadapt tune``), to read, tabulate and plot
        again, as Optuna's ``load_study`` or Ray Tune's ``ExperimentAnalysis``.
        Everything but ``best_state`` (never in the file). A file that is not
        such a result is a ``ValueError`` naming what is wrong."""
        name = os.fspath(path)
        with open(name, encoding="utf-8") as f:
            try:
                data = json.load(f)
            except ValueError as err:
                raise ValueError(f"{name} is not a tuning result (not JSON: {err})") from None

        def need(mapping: Any, key: str, kind: Any, where: str) -> Any:
            if not isinstance(mapping, dict) or key not in mapping:
                raise ValueError(f"{name} is not a tuning result written by TuneResult.to_json: {where} has no "
                                 f"{key!r}")
            value = mapping[key]
            if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
                raise ValueError(f"{name} is not a tuning result written by TuneResult.to_json: {where}[{key!r}] "
                                 f"is {type(value).__name__}")
            return value

        trials = []
        for i, t in enumerate(need(data, "trials", list, "the file")):
            where = f"trials[{i}]"
            status = need(t, "status", str, where)
            if status not in STATUSES:
                raise ValueError(f"{name}: {where}['status'] = {status!r} is not one of {', '.join(STATUSES)}")
            trials.append(TrialRecord(
                trial_id=need(t, "trial_id", int, where), config=need(t, "config", dict, where), status=status,
                budget=need(t, "budget", int, where), cost=need(t, "cost", int, where),
                history=need(t, "history", list, where), config_history=need(t, "config_history", list, where),
                error=need(t, "error", (str, type(None)), where), retries=need(t, "retries", int, where),
                seconds=float(need(t, "seconds", numbers.Real, where)),
                bracket=need(t, "bracket", (int, type(None)), where)))
        return cls(algorithm=need(data, "algorithm", str, "the file"), metric=need(data, "metric", str, "the file"),
                   mode=need(data, "mode", str, "the file"), seed=need(data, "seed", int, "the file"),
                   settings=need(data, "settings", dict, "the file"), trials=trials,
                   lineage=need(data, "lineage", list, "the file"), rungs=need(data, "rungs", list, "the file"),
                   seconds=float(need(data, "seconds", numbers.Real, "the file")),
                   space=need(data, "space", dict, "the file"))

    def to_csv(self, path: Optional[PathLike] = None) -> str:
        """[`table`][fastadapt.tune.TuneResult.table] as CSV (written to ``path`` when given,
        atomically, UTF-8); returns the text."""
        rows = self.table()
        out = io.StringIO()
        columns = list(rows[0]) if rows else ["trial_id", "status"]
        writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
        text = out.getvalue()
        if path is not None:
            with atomic_write(path, "w", encoding="utf-8", newline="") as f:
                f.write(text)
        return text

    # ---- plots ---------------------------------------------------------------
    def plot(self, path: Optional[PathLike] = None, **kwargs: Any) -> Any:
        """PBT and PB2: [`plot_population`][fastadapt.tune.TuneResult.plot_population] (the
        hyperparameter schedules found); BOHB:
        [`plot_budgets`][fastadapt.tune.TuneResult.plot_budgets]; the others:
        [`plot_rungs`][fastadapt.tune.TuneResult.plot_rungs]. Both take ``unit`` (what one budget
        unit is, "epochs", for the labels) and ``title``."""
        if self.algorithm in ("pbt", "pb2"):
            return self.plot_population(path, **kwargs)
        if self.algorithm in ("bohb", "bohb_async"):
            return self.plot_budgets(path, **kwargs)
        return self.plot_rungs(path, **kwargs)

    def plot_rungs(self, path: Optional[PathLike] = None, *, log_x: Optional[bool] = None,
                   unit: Optional[str] = None, title: Optional[str] = None) -> Any:
        """Each trial's metric against the budget it had completed, one panel
        per bracket (a grid of at most three columns), promoted paths drawn
        over stopped ones, the best trial and evaluation highlighted, rungs
        numbered from 1 on top; for a full-budget search ([`Search`][fastadapt.tune.Search],
        [`MedianStopping`][fastadapt.tune.MedianStopping]) one panel of learning curves, where
        early-stopped trials end in an X. The budget axis is logarithmic with rungs, linear
        without (``log_x`` True/False overrides). Diverged evaluations far off the others are
        marked at the axis' edge instead of stretching it. Written to
        ``path`` (PNG) when given, else a matplotlib Figure."""
        from .plots import plot_rungs

        return plot_rungs(self, path, log_x=log_x, unit=unit, title=title)

    def plot_budgets(self, path: Optional[PathLike] = None, *, unit: Optional[str] = None,
                     title: Optional[str] = None) -> Any:
        """BOHB: every evaluated configuration at the budget it reached, one
        panel per hyperparameter (x: its value, log axis for log domains;
        y: budget), coloured by metric, the best marked. Written to ``path``
        (PNG) when given, else a matplotlib Figure."""
        from .plots import plot_budgets

        return plot_budgets(self, path, unit=unit, title=title)

    def plot_population(self, path: Optional[PathLike] = None, *, names: Optional[Sequence[str]] = None,
                        unit: Optional[str] = None, title: Optional[str] = None) -> Any:
        """PBT and PB2: each member's hyperparameters over its budget (one panel per
        hyperparameter, exploit events marked; PB2: the best member's drawn bold) and its metric, generations
        numbered from 1 on top. Written to ``path`` (PNG) when given, else a
        matplotlib Figure."""
        from .plots import plot_population

        return plot_population(self, path, names=names, unit=unit, title=title)


def _flat_config(config: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    """A (nested) config as one level, ``outer/inner`` names (as ``TuneResult.space``)."""
    out: Dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(_flat_config(value, f"{prefix}{key}/"))
        else:
            out[f"{prefix}{key}"] = value
    return out
