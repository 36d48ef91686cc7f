"""One unit of tuner work and its outcome, the same on every executor.

A job rebuilds the trainable from its config, loads the trial's last state
(when there is one), trains ``budget`` more units, and sends back the metric
and the new state. Trainables never outlive a job, so a worker that dies
loses one job and nothing else, any executor can run any job, and the tuner
holds every state it needs to resume.
"""

from __future__ import annotations

import dataclasses
import pickle
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

import numpy as np

from .trainable import TrainableSpec, metric_is_valid, parse_report

__all__ = ["Job", "Outcome", "run_job", "reject_non_finite", "time_limit", "timed_out", "OK", "ERROR", "DIED",
           "TIMEOUT"]

OK, ERROR, DIED, TIMEOUT = "ok", "error", "died", "timeout"


@dataclass
class Job:
    """Train ``trial_id`` for ``budget`` more units from ``state``.

    ``trained`` is the budget the trial has already used; a non-resumable
    trainable is rebuilt and trained for ``trained + budget`` from scratch.
    ``apply_config`` calls ``set_config(config)`` after ``load`` (PBT: the
    loaded state may carry another member's hyperparameters). ``timeout``:
    the tuner's ``trial_timeout`` in seconds (None: no limit); every
    executor stops a job that runs past it and reports it as ``timeout``.
    """

    trial_id: int
    spec: TrainableSpec
    config: Dict[str, Any]
    state: Any
    trained: int
    budget: int
    metric: str
    apply_config: bool = False
    timeout: Optional[float] = None


@dataclass
class Outcome:
    """What came back: ``kind`` is ok, error (the trainable raised; ``error``
    holds the traceback), died (the worker process ended) or timeout."""

    trial_id: int
    kind: str
    metric: Optional[float] = None
    extras: Dict[str, float] = field(default_factory=dict)
    state: Any = None
    cost: int = 0
    seconds: float = 0.0
    error: Optional[str] = None

    @property
    def ok(self) -> bool:
        return self.kind == OK


def writeable_copy(state: Any) -> Any:
    """``state`` with every read-only NumPy array replaced by a writeable copy.

    Ray hands task arguments over as read-only views of its object store; an
    optimizer updating such params in place would refuse them, and a silent
    copy inside the trainable would be worse.
    """
    if isinstance(state, np.ndarray):
        return state if state.flags.writeable else state.copy()
    if isinstance(state, dict):
        return {k: writeable_copy(v) for k, v in state.items()}
    if isinstance(state, list):
        return [writeable_copy(v) for v in state]
    if isinstance(state, tuple) and not hasattr(state, "_fields"):
        return tuple(writeable_copy(v) for v in state)
    return state


def run_job(job: Job, threads: Optional[int] = None) -> Outcome:
    """Run one job where it lands (a worker process, a Ray task or the
    driver). Anything the trainable raises becomes an ``error`` outcome with
    its traceback; only KeyboardInterrupt escapes."""
    start = time.perf_counter()
    if threads is not None:
        from ..runtime import set_num_threads

        set_num_threads(threads)
    try:
        spec = job.spec
        trainable = spec.build(job.config)
        if spec.resumable:
            if job.state is not None:
                trainable.load(writeable_copy(job.state))
                if job.apply_config:
                    trainable.set_config(dict(job.config))
            report = trainable.train(job.budget)
            state = trainable.save()
            cost = job.budget
            # Checked here, where the job runs, so an unpicklable state fails this trial the same way on every
            # executor (a worker's pipe, Ray's object store and the checkpoint's state files all pickle it),
            # instead of failing the send, or the tuner itself when it writes the state file.
            try:
                pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as err:
                return Outcome(job.trial_id, ERROR, seconds=time.perf_counter() - start,
                               error=f"trial {job.trial_id}: save() returned a state that cannot be pickled "
                                     f"({type(err).__name__}: {err}); save() must return picklable data "
                                     f"(arrays, numbers, strings, lists and dicts of them)")
        else:
            total = job.trained + job.budget
            report = trainable.train(total)
            state = None
            cost = total
        metric, extras = parse_report(report, job.metric)
    except (Exception, SystemExit):  # SystemExit: a trial calling sys.exit() fails alone
        return Outcome(job.trial_id, ERROR, error=traceback.format_exc(), seconds=time.perf_counter() - start)
    return Outcome(job.trial_id, OK, metric=metric, extras=extras, state=state, cost=cost,
                   seconds=time.perf_counter() - start)


def reject_non_finite(outcome: Outcome) -> Outcome:
    """An ``ok`` outcome whose metric is NaN or infinite as an ``error``: the
    trainable diverged, and a metric of -inf (mode "min") or +inf ("max")
    would otherwise win. The metric, extras and cost stay (the evaluation is
    recorded in the trial's history); the state is dropped."""
    if outcome.kind != OK or metric_is_valid(outcome.metric):
        return outcome
    return dataclasses.replace(
        outcome, kind=ERROR, state=None,
        error=f"trial {outcome.trial_id} reported a non-finite metric ({outcome.metric!r}); a NaN or infinite "
              f"metric fails the trial (its training diverged), so it never ranks or wins")


def time_limit(job: Job, task_timeout: Optional[float]) -> Optional[Tuple[float, str]]:
    """``(seconds, option name)`` of the limit that applies to ``job``: the
    tuner's ``trial_timeout`` or the executor's own ``task_timeout``,
    whichever is smaller (None: neither is set)."""
    limits = []
    if job.timeout is not None:
        limits.append((float(job.timeout), "trial_timeout"))
    if task_timeout is not None:
        limits.append((float(task_timeout), "task_timeout"))
    # On a tie the tuner's own option is named: it is the one the user set for this run.
    return min(limits, key=lambda limit: (limit[0], limit[1] != "trial_timeout")) if limits else None


def timed_out(job: Job, limit: Tuple[float, str], what_happened: str) -> Outcome:
    """The ``timeout`` outcome of ``job``, past ``limit`` (from ``time_limit``)."""
    seconds, name = limit
    return Outcome(job.trial_id, TIMEOUT, seconds=seconds,
                   error=f"trial {job.trial_id} ran past {name}={seconds!r} s; {what_happened}")
