"""Full-budget search: every configuration trains to the full budget (random
search, or a model-based searcher such as TPE on its own), optionally in
steps so that each trial's learning curve is recorded and an early-stopping
rule (``MedianStopping``) can end it."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from .. import _checks
from .jobs import Outcome
from .results import COMPLETED, PAUSED, STOPPED, TrialRecord
from .tuner import Tuner

__all__ = ["Search"]


class Search(Tuner):
    """Full-budget search: ``num_trials`` configs from the searcher, each trained to ``max_resource``.

    With the default searcher this is random search (Bergstra & Bengio, JMLR
    2012); with ``searcher=fa.tune.TPE()`` it is [`TPE`][fastadapt.tune.TPE] on its own (Optuna's
    default study without a pruner). Each trial trains in jobs of
    ``interval`` units (default: all of ``max_resource`` in one job); every
    job's metric is one point of the trial's learning curve, which the
    anytime plots use and early-stopping subclasses
    ([`MedianStopping`][fastadapt.tune.MedianStopping]) judge.

    Whenever a worker is free, a started trial that has not reached
    ``max_resource`` goes on (lowest id first), else a new config starts. A
    searcher that learns from results sees those recorded when it proposes,
    so proposals depend on the order jobs finish: the same seed gives the
    same result with ``executor="sequential"`` (one job at a time), as with
    any sequential model-based search; with random sampling every executor
    gives the same configs.

    Parameters
    ----------
    num_trials
        configs to try (int >= 1).
    max_resource
        units each config trains (int >= 1).
    interval
        units per job (default: ``max_resource``, one job per trial). A trainable without
        ``save``/``load`` retrains from scratch at each job, so keep the default for those.

    Other Parameters
    ----------------
    **kwargs
        the arguments of [`fastadapt.tune.Tuner`][fastadapt.tune.Tuner] (``searcher``, ``seed``,
        ``executor``, ``checkpoint_dir``, ``trial_timeout``, ...).

    Examples
    --------
        result = fa.tune.Search(MyTrainable, space, num_trials=40, max_resource=9,
                                searcher=fa.tune.TPE(), seed=0).run()
    """

    algorithm = "search"

    def __init__(self, trainable: Any, space: Any, *, num_trials: int, max_resource: int,
                 interval: Optional[int] = None, **kwargs: Any):
        self.num_trials = _checks.integer("num_trials", num_trials, 1)
        self.max_resource = _checks.integer("max_resource", max_resource, 1)
        self.interval = self.max_resource if interval is None else _checks.integer("interval", interval, 1)
        super().__init__(trainable, space, **kwargs)

    def settings(self) -> Dict[str, Any]:
        return {"num_trials": self.num_trials, "max_resource": self.max_resource, "interval": self.interval}

    def planned_jobs(self) -> Optional[int]:  # (Optional: early-stopping subclasses cannot know)
        return self.num_trials * -(-self.max_resource // self.interval)

    def _open_trials(self) -> List[int]:
        """Started trials that go on: evaluated, not finished, not stopped, not running."""
        return [tid for tid, t in sorted(self._trials.items())
                if t.status == PAUSED and t.budget < self.max_resource and tid not in self._in_flight]

    def _next_jobs(self, free: int) -> List[Tuple[int, int]]:
        jobs: List[Tuple[int, int]] = []
        for tid in self._open_trials()[:free]:
            jobs.append((tid, min(self.interval, self.max_resource - self._trials[tid].budget)))
        while len(jobs) < free and len(self._trials) < self.num_trials:
            trial = self._new_trial()
            jobs.append((trial.trial_id, min(self.interval, self.max_resource)))
        return jobs

    def _on_outcome(self, trial: TrialRecord, outcome: Outcome) -> None:
        if not outcome.ok:
            return
        if trial.budget >= self.max_resource:
            trial.status = COMPLETED
        elif self._should_stop(trial):
            trial.status = STOPPED

    def _should_stop(self, trial: TrialRecord) -> bool:
        """Whether to end ``trial`` before ``max_resource`` (early-stopping subclasses decide)."""
        return False

    def _finish(self) -> None:
        for trial in self._trials.values():
            if trial.status == PAUSED:  # (only when a run ends early; every trial normally completes)
                trial.status = STOPPED
