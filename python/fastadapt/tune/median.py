"""The median stopping rule (Golovin, Solnik, Moitra, Kochanski, Karro,
Sculley: "Google Vizier: A Service for Black-Box Optimization", KDD 2017,
section 3.2.1): stop a trial at step ``t`` when its best objective so far is
strictly worse than the median of the other trials' running averages up to
``t``. Ray Tune's ``MedianStoppingRule`` and Optuna's ``MedianPruner`` are
variants of it."""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional

import numpy as np

from .. import _checks
from .results import TrialRecord
from .search import Search
from .searcher import signed_loss

__all__ = ["MedianStopping", "running_average"]


def running_average(trial: TrialRecord, budget: int, mode: str) -> float:
    """Mean loss (the metric signed so lower is better; ``inf`` for a NaN or
    infinite one) of ``trial``'s evaluations made at ``budget`` units or fewer."""
    losses = [signed_loss(e["metric"], mode) for e in trial.history if e["budget"] <= budget]
    if not losses:
        return math.inf
    if any(math.isinf(v) for v in losses):
        return math.inf  # a curve that diverged before t averages to the worst, never to NaN
    return float(np.mean(losses))


class MedianStopping(Search):
    """Full-budget search with the median stopping rule: each trial trains in
    jobs of ``interval`` units; after each job, a trial that has trained at
    least ``grace_period`` units stops when its best metric so far is
    strictly worse than the median of the running averages (mean of the
    metrics reported up to the same budget) of the other trials whose curves
    reach that budget, provided there are at least ``min_samples`` of them.

    The rule of Google Vizier (Golovin et al., KDD 2017), as Ray Tune's
    ``MedianStoppingRule`` (``grace_period``, ``min_samples_required``) and,
    near enough, Optuna's ``MedianPruner`` (``n_warmup_steps``,
    ``n_startup_trials``). The other trials counted are every trial but the
    one judged (completed, stopped, failed or still training) that reported
    at or beyond its budget; a NaN or infinite metric averages as the worst
    loss. Every decision is made from the trials' recorded histories, so a
    checkpointed run resumes to the same decisions with no extra state.

    Whenever a worker is free a started trial goes on (lowest id first), so
    with ``executor="sequential"`` each trial trains until it completes or
    stops before the next starts, and the same seed gives the same result.
    With parallel workers decisions depend on the order jobs finish, as with
    any asynchronous early-stopping rule.

    Give a resumable trainable (``save``/``load``): a plain function is
    retrained from scratch at every job, costing ``1 + 2 + ... `` intervals.

    Parameters
    ----------
    num_trials
        configs to try (int >= 1).
    max_resource
        units a trial trains unless stopped (int >= 2).
    interval
        units per job, the evaluation period: the rule judges a trial after every job (int >= 1,
        below ``max_resource``; default 1).
    grace_period
        units a trial trains before it can be stopped (int >= 1, below ``max_resource``; default 1:
        from its first evaluation on).
    min_samples
        other trials that must have reported at the judged budget before the rule stops anything
        (int >= 1; default 3).

    Other Parameters
    ----------------
    **kwargs
        the arguments of [`fastadapt.tune.Tuner`][fastadapt.tune.Tuner] (``searcher``, ``seed``,
        ``executor``, ``checkpoint_dir``, ``trial_timeout``, ...): with a model-based searcher
        (``searcher=fa.tune.TPE()``) the median rule prunes what it proposes.

    Examples
    --------
        result = fa.tune.MedianStopping(MyTrainable, space, num_trials=40, max_resource=27, interval=3,
                                        grace_period=3, min_samples=3, seed=0,
                                        executor="sequential").run()
        stopped = [t.trial_id for t in result.trials if t.status == "stopped"]
    """

    algorithm = "median_stopping"

    def __init__(self, trainable: Any, space: Any, *, num_trials: int, max_resource: int, interval: int = 1,
                 grace_period: int = 1, min_samples: int = 3, **kwargs: Any):
        max_resource = _checks.integer("max_resource", max_resource, 2)
        interval = _checks.integer("interval", interval, 1)
        if interval >= max_resource:
            raise ValueError(f"interval={interval} >= max_resource={max_resource}: every trial would train in "
                             f"one job, so the rule could never stop one; pass a smaller interval (the "
                             f"evaluation period), or use fa.tune.Search for full-budget trials without stopping")
        self.grace_period = _checks.integer("grace_period", grace_period, 1)
        if self.grace_period >= max_resource:
            raise ValueError(f"grace_period={grace_period} >= max_resource={max_resource}: no trial could be "
                             f"stopped; pass a grace_period below max_resource")
        self.min_samples = _checks.integer("min_samples", min_samples, 1)
        super().__init__(trainable, space, num_trials=num_trials, max_resource=max_resource, interval=interval,
                         **kwargs)

    def settings(self) -> Dict[str, Any]:
        return {**super().settings(), "grace_period": self.grace_period, "min_samples": self.min_samples}

    def planned_jobs(self) -> Optional[int]:
        return None  # stopped trials make it unknown in advance

    def median_at(self, trial: TrialRecord) -> Optional[float]:
        """The median of the other trials' running averages (as losses) at ``trial``'s budget, or None
        when fewer than ``min_samples`` other trials reached that budget."""
        t = trial.budget
        others: List[float] = [running_average(other, t, self.mode) for tid, other in sorted(self._trials.items())
                               if tid != trial.trial_id and other.history and other.history[-1]["budget"] >= t]
        if len(others) < self.min_samples:
            return None
        return float(np.median(others))

    def _should_stop(self, trial: TrialRecord) -> bool:
        if trial.budget < self.grace_period:
            return False
        median = self.median_at(trial)
        if median is None:
            return False
        best = min(signed_loss(e["metric"], self.mode) for e in trial.history)
        # An inf median (half the others diverged) stops nothing: no finite best is strictly worse.
        return best > median
