"""Hyperband and successive halving (Li, Jamieson, DeSalvo, Rostamizadeh,
Talwalkar: "Hyperband: A Novel Bandit-Based Approach to Hyperparameter
Optimization", JMLR 18, 2018, Algorithm 1).

Every count is integer arithmetic. ``s_max = floor(log_eta(R))`` is the
largest ``s`` with ``eta**s <= R``, found by multiplying; a float logarithm
gets it wrong where ``R`` is a power of ``eta`` (``math.log(243, 3)`` is
``4.999...``, so ``int()`` gives 4 and drops the most aggressive bracket).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from .. import _checks
from . import schema as S
from .jobs import Outcome
from .results import COMPLETED, FAILED, STOPPED, TrialRecord
from .trainable import metric_is_valid
from .tuner import Tuner

__all__ = ["hyperband_schedule", "successive_halving_schedule", "rung_resources", "int_log", "Hyperband",
           "SuccessiveHalving"]

Bracket = List[Tuple[int, int]]


def int_log(x: int, base: int) -> int:
    """``floor(log_base(x))`` exactly: the largest ``s`` with ``base**s <= x``."""
    x = _checks.integer("x", x, 1)
    base = _checks.integer("base", base, 2)
    s, power = 0, base
    while power <= x:
        s += 1
        power *= base
    return s


def _rungs(n: int, s: int, max_resource: int, eta: int) -> Bracket:
    """Rungs ``(n_i, r_i)``, i = 0..s, of a bracket of ``n`` configs ending at ``max_resource``.

    ``n_i = floor(n / eta**i)``; ``r_i = floor(R / eta**(s - i))``, the
    paper's ``r * eta**i`` with ``r = R / eta**s``, rounded down to whole
    resource units (exact when ``eta**s`` divides ``R``; the last rung is
    always ``R``).
    """
    return [(n // eta ** i, max_resource // eta ** (s - i)) for i in range(s + 1)]


def hyperband_schedule(max_resource: int, eta: int = 3, min_resource: int = 1) -> List[Bracket]:
    """Hyperband's bracket table without training anything.

    Returns ``[[(n_0, r_0), ..., (n_s, r_s)] for s = s_max, ..., 0]``:
    bracket ``s`` starts ``n_0`` configs with ``r_0`` units each and keeps the
    best ``floor(n_i / eta)`` of each rung for the next. Per Algorithm 1:

        s_max = floor(log_eta(R / r_min));  B = (s_max + 1) R
        n = ceil(B / R * eta**s / (s + 1)) = ceil((s_max + 1) eta**s / (s + 1))
        n_i = floor(n eta**-i);  r_i = R eta**(i - s)   (rounded down to whole units)

    Parameters
    ----------
    max_resource
        ``R``, the most units (epochs, steps) one config gets; int >= 1.
    eta
        the halving rate; int >= 2 (3 in the paper).
    min_resource
        ``r_min``, the fewest units a config gets at the first rung (int >= 1, default 1; as
        Optuna's ``HyperbandPruner(min_resource=...)``): fewer, less aggressive brackets when the
        metric after one unit says little.

    Examples
    --------
    >>> fa.tune.hyperband_schedule(81, 3)[0]
    [(81, 1), (27, 3), (9, 9), (3, 27), (1, 81)]
    """
    max_resource = _checks.integer("max_resource", max_resource, 1)
    eta = _checks.integer("eta", eta, 2)
    min_resource = _checks.integer("min_resource", min_resource, 1)
    if min_resource > max_resource:
        raise ValueError(f"min_resource ({min_resource}) must be <= max_resource ({max_resource})")
    s_max = int_log(max_resource // min_resource, eta)
    brackets = []
    for s in range(s_max, -1, -1):
        n = -(-(s_max + 1) * eta ** s // (s + 1))  # ceil of an exact integer ratio
        brackets.append(_rungs(n, s, max_resource, eta))
    return brackets


def rung_resources(min_resource: int, max_resource: int, eta: int = 3) -> List[int]:
    """The resources of successive halving's rungs from ``min_resource`` up to
    ``max_resource``: ``floor(R / eta**(s - k))`` for k = 0..s, with ``s`` the
    largest such that ``min_resource * eta**s <= R``. The first rung gives at
    least ``min_resource``, the last exactly ``R`` (successive halving, ASHA)."""
    min_resource = _checks.integer("min_resource", min_resource, 1)
    max_resource = _checks.integer("max_resource", max_resource, 1)
    eta = _checks.integer("eta", eta, 2)
    if min_resource > max_resource:
        raise ValueError(f"min_resource ({min_resource}) must be <= max_resource ({max_resource})")
    s = int_log(max_resource // min_resource, eta)
    return [max_resource // eta ** (s - k) for k in range(s + 1)]


def successive_halving_schedule(num_trials: int, min_resource: int, max_resource: int, eta: int = 3) -> Bracket:
    """One bracket: ``num_trials`` configs from ``min_resource`` units up to
    ``max_resource``, keeping the best ``1/eta`` at each rung: rungs
    ``(floor(n / eta**i), r_i)`` with ``r_i`` from ``rung_resources``."""
    num_trials = _checks.integer("num_trials", num_trials, 1)
    resources = rung_resources(min_resource, max_resource, eta)
    s = len(resources) - 1
    if num_trials < eta ** s:
        raise ValueError(f"num_trials={num_trials} is too few for {s + 1} rungs at eta={eta}: the last rung would "
                         f"be empty; pass num_trials >= {eta ** s}, or raise min_resource")
    return [(num_trials // eta ** i, r) for i, r in enumerate(resources)]


class _BracketTuner(Tuner):
    """Runs brackets one after another, each rung as one synchronous batch:
    every config of the rung trains up to ``r_i``, then the best
    ``floor(n_i / eta)`` (by metric, ties by trial id) go on and the rest stop.
    Trials that failed are never promoted; a rung with fewer successes keeps
    all of them."""


    def __init__(self, trainable: Any, space: Any, brackets: List[Bracket], bracket_ids: List[Optional[int]],
                 eta: int, **kwargs: Any):
        super().__init__(trainable, space, **kwargs)
        self.eta = eta
        self._brackets = brackets
        self._bracket_ids = bracket_ids

    @property
    def schedule(self) -> List[Bracket]:
        """The brackets this tuner runs, as ``[(n_i, r_i), ...]`` lists."""
        return [list(b) for b in self._brackets]

    def planned_jobs(self) -> int:
        return sum(n for bracket in self._brackets for n, _ in bracket)

    def planned_cost(self) -> int:
        """Resource units the run computes when no trial fails: a resumable
        trainable continues from ``r_(i-1)`` to ``r_i``; a non-resumable one
        (or a function) trains ``r_i`` from scratch at every rung."""
        total = 0
        for bracket in self._brackets:
            previous = 0
            for n, r in bracket:
                total += n * ((r - previous) if self.spec.resumable else r)
                previous = r
        return total

    def _field_specs(self) -> Dict[str, S.Spec]:
        return {**super()._field_specs(), "_bracket_index": S.integer(0, len(self._brackets)),
                "_rung_index": S.integer(), "_rung_members": S.optional(S.list_of(S.integer()))}

    def _check_restored(self, fields: Dict[str, Any]) -> None:
        super()._check_restored(fields)
        index = fields["_bracket_index"]
        if index < len(self._brackets) and fields["_rung_index"] >= len(self._brackets[index]):
            raise ValueError(f"_rung_index={fields['_rung_index']} is past bracket {index}'s rungs")
        self._check_trial_ids(fields["_rung_members"] or [], fields, "_rung_members")

    def _start_algorithm(self) -> None:
        self._bracket_index = 0
        self._rung_index = 0
        self._rung_members: Optional[List[int]] = None  # None: the bracket's configs are not drawn yet

    def _next_jobs(self, free: int) -> List[Tuple[int, int]]:
        if self._in_flight or self._bracket_index >= len(self._brackets):
            return []
        bracket = self._brackets[self._bracket_index]
        if self._rung_members is None:
            n0 = bracket[0][0]
            self._rung_members = [self._new_trial(self._bracket_ids[self._bracket_index]).trial_id
                                  for _ in range(n0)]
            self._rung_index = 0
        resource = bracket[self._rung_index][1]
        return [(tid, resource - self._trials[tid].budget) for tid in self._rung_members]

    def _on_outcome(self, trial: TrialRecord, outcome: Outcome) -> None:
        if self._in_flight:
            return  # the rung is not complete; decisions wait for all of it
        assert self._rung_members is not None
        bracket = self._brackets[self._bracket_index]
        n_i, resource = bracket[self._rung_index]
        last_rung = self._rung_index == len(bracket) - 1
        alive = [tid for tid in self._rung_members if self._trials[tid].status != FAILED]
        ranking = [tid for tid, metric in self._ranking(alive) if metric_is_valid(metric)]
        promoted = [] if last_rung else ranking[:n_i // self.eta]
        self._rungs.append({"bracket": self._bracket_ids[self._bracket_index], "rung": self._rung_index,
                            "resource": resource, "trials": list(self._rung_members),
                            "metrics": {tid: self._trials[tid].metric for tid in self._rung_members},
                            "promoted": list(promoted)})
        for tid in alive:
            if last_rung:
                self._trials[tid].status = COMPLETED
            elif tid not in promoted:
                self._trials[tid].status = STOPPED
        if promoted:
            self._rung_members = sorted(promoted)
            self._rung_index += 1
        else:
            self._bracket_index += 1
            self._rung_members = None


class SuccessiveHalving(_BracketTuner):
    """Successive halving (Jamieson & Talwalkar 2016; one Hyperband bracket).

    ``num_trials`` configs train ``r_0`` units each; the best ``floor(n_i / eta)`` of every rung
    continue to the next, up to ``max_resource`` (see
    [`successive_halving_schedule`][fastadapt.tune.successive_halving_schedule]). Synchronous: the
    same seed gives the same result on every executor.

    ``trial_timeout=`` (seconds, None: no limit) fails a trial whose job runs
    longer, on every executor; other arguments: see [`fastadapt.tune.Tuner`][fastadapt.tune.Tuner].

    Examples
    --------
        result = fa.tune.SuccessiveHalving(MyTrainable, space, num_trials=27, min_resource=1,
                                           max_resource=27, eta=3, seed=0).run()
    """

    algorithm = "successive_halving"

    def __init__(self, trainable: Any, space: Any, *, num_trials: int, max_resource: int, min_resource: int = 1,
                 eta: int = 3, **kwargs: Any):
        bracket = successive_halving_schedule(num_trials, min_resource, max_resource, eta)
        self.num_trials, self.min_resource, self.max_resource = num_trials, min_resource, max_resource
        super().__init__(trainable, space, [bracket], [None], eta, **kwargs)

    def settings(self) -> Dict[str, Any]:
        return {"num_trials": self.num_trials, "min_resource": self.min_resource,
                "max_resource": self.max_resource, "eta": self.eta}


class Hyperband(_BracketTuner):
    """Hyperband (Li et al., JMLR 2018, Algorithm 1): successive halving over
    every trade-off between many configs on a small budget and few on the
    full one, brackets ``s = s_max, ..., 0`` of [`hyperband_schedule`][fastadapt.tune.hyperband_schedule].

    Brackets run one after another, each rung as a synchronous batch (its
    jobs run in parallel on the executor), so the same seed gives the same
    result table on every executor. A promoted trial continues from its
    saved state when the trainable is resumable (``save``/``load``);
    otherwise it retrains from scratch (``planned_cost()`` says how much
    that costs). As in the paper, the result's best is the best metric seen
    at any rung (``best_metric``, ``best_budget``, ``best_config``), and
    ``best_state`` is the trainable's state at that evaluation.

    Parameters
    ----------
    max_resource
        ``R``, the most units one config trains (int >= 1).
    eta
        halving rate (int >= 2).
    iterations
        times the whole bracket table runs, one after another (int >= 1; default 1): the paper's
        outer loop, as hpbandster's ``n_iterations``. Each iteration costs the table's budget again.
    min_resource
        the fewest units a config trains at a first rung (int >= 1; default 1): brackets start no
        lower (Optuna's ``HyperbandPruner(min_resource=...)``; ``hyperband_schedule``).

    Other Parameters
    ----------------
    trial_timeout : Optional[float]
        seconds one job (a rung's training of one trial) may run before the trial fails; None
        (default): no limit. Honoured by every executor; see [`fastadapt.tune.Tuner`][fastadapt.tune.Tuner].
    **kwargs
        the other arguments of [`fastadapt.tune.Tuner`][fastadapt.tune.Tuner].

    Examples
    --------
        space = {"lr": fa.tune.loguniform(1e-5, 1e-1), "momentum": fa.tune.uniform(0.0, 0.99)}
        fa.tune.hyperband_schedule(81, 3)          # preview: 5 brackets, 143 configs, 206 jobs
        result = fa.tune.Hyperband(MyTrainable, space, max_resource=81, eta=3, mode="min", seed=0).run()
        result.best_config, result.best_metric
    """

    algorithm = "hyperband"

    def __init__(self, trainable: Any, space: Any, *, max_resource: int, eta: int = 3, iterations: int = 1,
                 min_resource: int = 1, **kwargs: Any):
        brackets = hyperband_schedule(max_resource, eta, min_resource)
        s_max = len(brackets) - 1
        self.max_resource, self.min_resource = max_resource, min_resource
        # The paper's outer loop: the whole table again, `iterations` times (hpbandster's n_iterations).
        # Random Hyperband gains little from it; a model-based searcher (BOHB) learns from every
        # iteration before.
        self.iterations = _checks.integer("iterations", iterations, 1)
        bracket_ids: List[Optional[int]] = list(range(s_max, -1, -1))
        super().__init__(trainable, space, brackets * self.iterations, bracket_ids * self.iterations, eta,
                         **kwargs)

    def settings(self) -> Dict[str, Any]:
        settings: Dict[str, Any] = {"max_resource": self.max_resource, "eta": self.eta}
        if self.iterations != 1:  # (absent by default: checkpoints written before it existed still resume)
            settings["iterations"] = self.iterations
        if self.min_resource != 1:  # (likewise)
            settings["min_resource"] = self.min_resource
        return settings
