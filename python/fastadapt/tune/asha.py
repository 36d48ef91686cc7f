"""ASHA: asynchronous successive halving (Li, Jamieson, Rostamizadeh,
Gonina, Ben-Tzur, Hardt, Recht, Talwalkar: "A System for Massively Parallel
Hyperparameter Tuning", MLSys 2020, Algorithm 2)."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Set, Tuple

from .. import _checks
from . import schema as S
from .hyperband import rung_resources
from .jobs import Outcome
from .results import COMPLETED, PAUSED, STOPPED, TrialRecord
from .trainable import metric_is_valid
from .tuner import Tuner

__all__ = ["ASHA"]


class ASHA(Tuner):
    """Asynchronous successive halving: whenever a worker is free, promote a
    config from rung ``k`` to ``k + 1`` as soon as it is in the top
    ``floor(|rung k| / eta)`` of the results recorded at rung ``k`` and not yet
    promoted (highest rung first); otherwise start a new config at rung 0.
    It never waits for a rung to fill, so no worker idles while a straggler
    finishes (a synchronous bracket's weakness).

    The run starts ``num_trials`` configs and ends when no job is running and
    no config can be promoted. Trials left below the top rung are "stopped".
    Decisions depend on the order in which jobs finish, so results are
    reproducible with ``executor="sequential"`` (one job at a time) but may
    differ between parallel runs, as with any asynchronous scheduler.

    Parameters
    ----------
    num_trials
        configs to start.
    max_resource
        ``R``, units at the top rung.
    min_resource
        ``r``, units at least at rung 0 (the grace period).
    eta
        promotion rate (int >= 2).

    Other Parameters
    ----------------
    trial_timeout : Optional[float]
        seconds one job (one rung's training of one trial) may run before the trial fails; None
        (default): no limit. Honoured by every executor; see [`fastadapt.tune.Tuner`][fastadapt.tune.Tuner].
    **kwargs
        the other arguments of [`fastadapt.tune.Tuner`][fastadapt.tune.Tuner].

    Examples
    --------
        result = fa.tune.ASHA(MyTrainable, space, num_trials=50, max_resource=81, eta=3, seed=0).run()
    """

    algorithm = "asha"

    def __init__(self, trainable: Any, space: Any, *, num_trials: int, max_resource: int, min_resource: int = 1,
                 eta: int = 3, **kwargs: Any):
        self.num_trials = _checks.integer("num_trials", num_trials, 1)
        self.resources = rung_resources(min_resource, max_resource, eta)  # the rungs of successive halving
        self.min_resource, self.max_resource, self.eta = min_resource, max_resource, eta
        super().__init__(trainable, space, **kwargs)

    def settings(self) -> Dict[str, Any]:
        return {"num_trials": self.num_trials, "min_resource": self.min_resource,
                "max_resource": self.max_resource, "eta": self.eta}

    def _field_specs(self) -> Dict[str, S.Spec]:
        rungs = len(self.resources)
        return {**super()._field_specs(),
                "_rung_results": S.list_of(S.dict_of(S.integer(), S.real()), length=rungs),
                "_promoted": S.list_of(S.set_of(S.integer()), length=rungs),
                "_rung_of": S.dict_of(S.integer(), S.integer(0, rungs - 1))}

    def _check_restored(self, fields: Dict[str, Any]) -> None:
        super()._check_restored(fields)
        self._check_trial_ids(fields["_rung_of"], fields, "_rung_of")
        for k in range(len(self.resources)):
            self._check_trial_ids(fields["_rung_results"][k], fields, f"_rung_results[{k}]")
            self._check_trial_ids(fields["_promoted"][k], fields, f"_promoted[{k}]")

    def _start_algorithm(self) -> None:
        rungs = len(self.resources)
        self._rung_results: List[Dict[int, float]] = [{} for _ in range(rungs)]
        self._promoted: List[Set[int]] = [set() for _ in range(rungs)]
        self._rung_of: Dict[int, int] = {}  # the rung a trial's current (or last) job reaches

    def _promotable(self) -> Optional[Tuple[int, int]]:
        """``(trial_id, rung)`` of the config to promote out of ``rung``, highest rung first."""
        for k in range(len(self.resources) - 2, -1, -1):
            results = self._rung_results[k]
            quota = len(results) // self.eta
            for trial_id, metric in self._ranking(list(results))[:quota]:
                if trial_id not in self._promoted[k] and metric_is_valid(metric):
                    return trial_id, k
        return None

    def _next_jobs(self, free: int) -> List[Tuple[int, int]]:
        jobs = []
        for _ in range(free):
            promotion = self._promotable()
            if promotion is not None:
                trial_id, k = promotion
                self._promoted[k].add(trial_id)
                self._rung_of[trial_id] = k + 1
                jobs.append((trial_id, self.resources[k + 1] - self._trials[trial_id].budget))
            elif len(self._trials) < self.num_trials:
                trial = self._new_trial()
                self._rung_of[trial.trial_id] = 0
                jobs.append((trial.trial_id, self.resources[0]))
            else:
                break
        return jobs

    def _on_outcome(self, trial: TrialRecord, outcome: Outcome) -> None:
        if not outcome.ok:
            return
        k = self._rung_of[trial.trial_id]
        self._rung_results[k][trial.trial_id] = trial.metric  # type: ignore[assignment]
        if k == len(self.resources) - 1:
            trial.status = COMPLETED

    def _finish(self) -> None:
        for trial in self._trials.values():
            if trial.status == PAUSED:
                trial.status = STOPPED
        self._rungs = [{"rung": k, "resource": r, "trials": sorted(self._rung_results[k]),
                        "metrics": dict(sorted(self._rung_results[k].items())),
                        "promoted": sorted(self._promoted[k])}
                       for k, r in enumerate(self.resources)]
