"""The driver shared by every tuner: it creates trials, hands jobs to an
executor, records outcomes, retries jobs whose worker died, checkpoints
itself after every outcome and builds the result.

A tuner subclass only decides: which jobs to run next (``_next_jobs``) and
what an outcome means for its trials (``_on_outcome``). Every random draw
and every decision happens here in the driver, in a fixed order, so a
synchronous tuner gives the same result whatever executor ran its jobs and
in whatever order they finished.
"""

from __future__ import annotations

import time
from typing import Any, Callable, ClassVar, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from .. import _checks
from .executors import EXECUTORS, Executor, make_executor
from .jobs import DIED, Job, Outcome
from .progress import TuneProgress
from .results import (FAILED, PAUSED, RUNNING, STOPPED, TrialRecord, TuneResult, best_evaluation, evaluation_key,
                      ranked)
from .space import check_config, check_space, domains, sample_config, space_repr
from .state import CheckpointStore, PathLike
from .trainable import TrainableSpec, as_trainable, metric_is_valid

__all__ = ["Tuner"]

OnResult = Callable[[TrialRecord], None]

# The key under which the state behind the best evaluation is kept (trial states use their int ids).
BEST_STATE = "best"


class Tuner:
    """Base class of :class:`Hyperband`, :class:`SuccessiveHalving`,
    :class:`ASHA` and :class:`PBT`. Common arguments:

    Args:
        trainable: a class following :class:`fastadapt.tune.Trainable`'s
            protocol, or a function ``f(config, budget) -> metric``.
        space: dict of name -> domain (``fa.tune.uniform`` ...) or constant.
        metric: the key to read when ``train`` returns a dict.
        mode: "min" (lower is better) or "max".
        seed: seeds every random draw (configs, PBT decisions); None draws a
            fresh seed, recorded in the result.
        executor: "process" (local worker processes, the default),
            "sequential" (in this process), "ray", or an Executor instance.
        initial_configs: configs (possibly partial; the rest is sampled) to
            try before sampled ones, as Optuna's ``enqueue_trial`` and Ray
            Tune's ``points_to_evaluate``.
        max_retries: times a job is re-run after its worker process died (a
            trainable that raises is not retried: it would raise again).
        checkpoint_dir: where the tuner saves itself after every outcome.
        resume: False: start afresh (an existing checkpoint is overwritten);
            True: continue from ``checkpoint_dir`` (it must exist); "auto":
            continue when a checkpoint is there, else start.
        progress: report each finished job on stderr.
        on_result: called with the trial after each recorded outcome (after
            the checkpoint is written); raising stops the run.
    """

    algorithm: ClassVar[str] = ""
    # Attributes (beyond the base's) that a checkpoint saves; set by subclasses.
    _algorithm_fields: ClassVar[Tuple[str, ...]] = ()

    def __init__(self, trainable: Any, space: Mapping[str, Any], *, metric: str = "metric", mode: str = "min",
                 seed: Optional[int] = None, executor: Union[str, Executor] = "process",
                 initial_configs: Optional[Sequence[Mapping[str, Any]]] = None, max_retries: int = 1,
                 checkpoint_dir: Optional[PathLike] = None, resume: Union[bool, str] = False,
                 progress: bool = False, on_result: Optional[OnResult] = None):
        self.spec: TrainableSpec = as_trainable(trainable)
        self.space = check_space(space)
        if not isinstance(metric, str) or not metric:
            raise TypeError(f"metric must be a non-empty string (the key read when train() returns a dict), "
                            f"got {metric!r}")
        self.metric = metric
        self.mode = _checks.choice("mode", mode, ("min", "max"))
        self._seed_argument = seed
        # None: fresh entropy, recorded in the result so the run can be repeated.
        self.seed = int(np.random.SeedSequence().entropy) if seed is None else _checks.integer("seed", seed, 0)
        if not isinstance(executor, (str, Executor)):
            raise TypeError(f"executor must be 'sequential', 'process', 'ray' or an Executor instance, "
                            f"got {type(executor).__name__}")
        if isinstance(executor, str) and executor not in EXECUTORS:
            make_executor(executor)  # raises the ValueError naming the executors, now rather than in run()
        self.executor = executor
        self.initial_configs = self._check_initial_configs(initial_configs)
        self.max_retries = _checks.integer("max_retries", max_retries, 0)
        if resume not in (False, True, "auto"):
            raise ValueError(f"resume must be False, True or 'auto', got {resume!r}")
        if resume and checkpoint_dir is None:
            raise ValueError("resume needs checkpoint_dir= (the directory a previous run saved itself to)")
        self._store = None if checkpoint_dir is None else CheckpointStore(checkpoint_dir)
        self.resume = resume
        if not isinstance(progress, bool):
            raise TypeError(f"progress must be True or False, got {progress!r}")
        self.progress = progress
        if on_result is not None and not callable(on_result):
            raise TypeError(f"on_result must be a callable taking a TrialRecord, got {on_result!r}")
        self.on_result = on_result

    def _check_initial_configs(self, configs: Any) -> List[Dict[str, Any]]:
        if configs is None:
            return []
        if isinstance(configs, Mapping) or not isinstance(configs, Sequence):
            raise TypeError("initial_configs must be a list of config dicts, e.g. [{'lr': 1e-3}]")
        out = []
        for i, config in enumerate(configs):
            if not isinstance(config, Mapping):
                raise TypeError(f"initial_configs[{i}] must be a dict, got {type(config).__name__}")
            unknown = sorted(set(config) - set(self.space))
            if unknown:
                raise ValueError(f"initial_configs[{i}] has keys {unknown} that the space does not define "
                                 f"(space keys: {', '.join(self.space)})")
            check_config(self.space, config, f"initial_configs[{i}]")
            out.append(dict(config))
        return out

    # ---- what subclasses provide -------------------------------------------
    def settings(self) -> Dict[str, Any]:
        """The algorithm's arguments (recorded in the result and the checkpoint)."""
        return {}

    def planned_jobs(self) -> Optional[int]:
        """Jobs the run will take when known in advance (progress display)."""
        return None

    def _start_algorithm(self) -> None:
        """Set the algorithm's fresh state."""

    def _next_jobs(self, free: int) -> List[Tuple[int, int]]:
        """``(trial_id, budget)`` jobs to start now; ``free`` executor slots are idle."""
        raise NotImplementedError

    def _on_outcome(self, trial: TrialRecord, outcome: Outcome) -> None:
        """React to a recorded outcome (promotions, exploit/explore)."""

    def _finish(self) -> None:
        """Final statuses once no job is left."""

    def _apply_config(self) -> bool:
        """Whether a job calls ``set_config`` after ``load`` (PBT)."""
        return False

    # ---- shared state ------------------------------------------------------
    def _start_fresh(self) -> None:
        streams = np.random.SeedSequence(self.seed).spawn(2)
        self._sample_rng = np.random.default_rng(streams[0])   # configs
        self._decision_rng = np.random.default_rng(streams[1])  # PBT's donors and perturbations
        self._trials: Dict[int, TrialRecord] = {}
        self._in_flight: Dict[int, int] = {}
        self._states: Dict[Union[int, str], Any] = {}
        self._state_versions: Dict[Union[int, str], int] = {}
        self._lineage: List[Dict[str, Any]] = []
        self._rungs: List[Dict[str, Any]] = []
        self._initial_used = 0
        self._elapsed = 0.0
        self._best_key: Optional[Tuple[float, int, int]] = None
        self._start_algorithm()

    _BASE_FIELDS = ("_sample_rng", "_decision_rng", "_trials", "_in_flight", "_state_versions", "_lineage",
                    "_rungs", "_initial_used", "_elapsed", "_best_key")

    def _fingerprint(self) -> Dict[str, Any]:
        return {"algorithm": self.algorithm, "trainable": self.spec.name, "space": space_repr(self.space),
                "metric": self.metric, "mode": self.mode, "settings": self.settings(),
                "initial_configs": repr(self.initial_configs)}

    def _save_checkpoint(self) -> None:
        self._prune_states()
        if self._store is None:
            return
        fields = {name: getattr(self, name) for name in self._BASE_FIELDS + self._algorithm_fields}
        self._store.save({"fingerprint": self._fingerprint(), "seed": self.seed, "fields": fields},
                         dict(self._state_versions))

    def _restore(self) -> None:
        assert self._store is not None
        document = self._store.load()
        saved, current = document["fingerprint"], self._fingerprint()
        differing = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
        if differing:
            raise ValueError(f"the checkpoint in {self._store.directory!r} was written by a different tuner setup "
                             f"(differs in: {', '.join(differing)}); resume with the same arguments, or pass "
                             f"resume=False to start over")
        if self._seed_argument is not None and self._seed_argument != document["seed"]:
            raise ValueError(f"the checkpoint in {self._store.directory!r} used seed={document['seed']}, not "
                             f"seed={self._seed_argument}; pass the same seed (or seed=None) to resume")
        self.seed = document["seed"]
        self._start_fresh()
        for name, value in document["fields"].items():
            setattr(self, name, value)
        self._states = {tid: self._store.read_state(tid, version) for tid, version in self._state_versions.items()}

    def _put_state(self, key: Union[int, str], state: Any) -> None:
        """Make ``state`` the current state of ``key`` (a trial id, or
        BEST_STATE), written to disk at once under a new version, before any
        tuner file names it."""
        version = self._state_versions.get(key, 0) + 1
        if self._store is not None:
            self._store.write_state(key, version, state)
        self._states[key] = state
        self._state_versions[key] = version

    def _prune_states(self) -> None:
        """Forget the states of stopped and failed trials: no decision needs
        them (the best evaluation's state is its own snapshot)."""
        for key in list(self._states):
            if key != BEST_STATE and self._trials[key].status in (STOPPED, FAILED):
                del self._states[key]
                del self._state_versions[key]

    def _snapshot_if_best(self, trial: TrialRecord, state: Any) -> None:
        """Keep ``state`` as ``best_state`` when the trial's newest metric is the
        best seen (ties as :func:`best_evaluation` breaks them)."""
        metric = trial.history[-1]["metric"]
        if not metric_is_valid(metric):
            return
        key = evaluation_key(metric, trial.trial_id, trial.budget, self.mode)
        if self._best_key is None or key < self._best_key:
            self._best_key = key
            self._put_state(BEST_STATE, state)

    def _new_trial(self, bracket: Optional[int] = None) -> TrialRecord:
        given = None
        if self._initial_used < len(self.initial_configs):
            given = self.initial_configs[self._initial_used]
            self._initial_used += 1
        config = sample_config(self.space, self._sample_rng, given)
        trial = TrialRecord(trial_id=len(self._trials), config=config, bracket=bracket,
                            config_history=[{"budget": 0, "config": dict(config)}])
        self._trials[trial.trial_id] = trial
        return trial

    def _ranking(self, trial_ids: Sequence[int]) -> List[Tuple[int, Optional[float]]]:
        return ranked([(tid, self._trials[tid].metric) for tid in trial_ids], self.mode)

    # ---- the loop ----------------------------------------------------------
    def _job(self, trial_id: int, budget: int) -> Job:
        trial = self._trials[trial_id]
        return Job(trial_id=trial_id, spec=self.spec, config=dict(trial.config), state=self._states.get(trial_id),
                   trained=trial.budget, budget=budget, metric=self.metric, apply_config=self._apply_config())

    def _submit(self, executor: Executor, trial_id: int, budget: int) -> None:
        if budget < 1:
            raise AssertionError(f"tuner bug: job of {budget} units for trial {trial_id}")
        self._in_flight[trial_id] = budget
        self._trials[trial_id].status = RUNNING
        executor.submit(self._job(trial_id, budget))

    def _record(self, outcome: Outcome, budget: int) -> TrialRecord:
        trial = self._trials[outcome.trial_id]
        trial.seconds += outcome.seconds
        if outcome.ok:
            trial.budget += budget
            trial.cost += outcome.cost
            entry: Dict[str, Any] = {"budget": trial.budget, "metric": outcome.metric}
            entry.update((k, v) for k, v in outcome.extras.items() if k not in entry)  # ours win a name clash
            trial.history.append(entry)
            trial.status = PAUSED
            if self.spec.resumable:
                self._put_state(trial.trial_id, outcome.state)
                self._snapshot_if_best(trial, outcome.state)
        else:
            trial.status = FAILED
            trial.error = outcome.error
        return trial

    def run(self) -> TuneResult:
        """Run to the end (or continue a checkpointed run) and return the result."""
        if self.resume and self._store is not None and (self.resume is True or self._store.exists()):
            if not self._store.exists():
                raise FileNotFoundError(f"resume=True but {self._store.tuner_file} does not exist; pass "
                                        f"resume='auto' to start when there is no checkpoint yet")
            self._restore()
        else:
            self._start_fresh()
        executor = make_executor(self.executor)
        started = time.perf_counter()
        elapsed_before = self._elapsed
        progress = TuneProgress(self.algorithm, self.planned_jobs(), self.progress,
                                [name for name, _ in domains(self.space)])
        progress.done = sum(len(t.history) for t in self._trials.values())
        executor.start()
        aborted = True
        try:
            free = executor.capacity
            # Jobs in flight when the checkpoint was written start again from their saved states.
            resumed = dict(self._in_flight)
            for trial_id in sorted(resumed):
                self._submit(executor, trial_id, resumed[trial_id])
            while True:
                for trial_id, budget in self._next_jobs(max(free - len(self._in_flight), 0)):
                    self._submit(executor, trial_id, budget)
                if not self._in_flight:
                    break
                outcome = executor.next_outcome()
                budget = self._in_flight.pop(outcome.trial_id)
                trial = self._trials[outcome.trial_id]
                if outcome.kind == DIED and trial.retries < self.max_retries:
                    trial.retries += 1
                    progress.write(f"[{self.algorithm}] {outcome.error}; retrying "
                                   f"({trial.retries}/{self.max_retries})")
                    self._submit(executor, trial.trial_id, budget)
                    continue
                self._record(outcome, budget)
                self._on_outcome(trial, outcome)
                self._elapsed = elapsed_before + time.perf_counter() - started
                self._save_checkpoint()
                progress.job_done(trial, best_evaluation(self._trials.values(), self.mode))
                if self.on_result is not None:
                    self.on_result(trial)
            self._finish()
            self._elapsed = elapsed_before + time.perf_counter() - started
            self._save_checkpoint()
            aborted = False
        finally:
            executor.close(abort=aborted)
            progress.close()
        return self._result()

    def _result(self) -> TuneResult:
        result = TuneResult(algorithm=self.algorithm, metric=self.metric, mode=self.mode, seed=self.seed,
                            settings=self.settings(), trials=[self._trials[k] for k in sorted(self._trials)],
                            lineage=list(self._lineage), rungs=list(self._rungs), seconds=self._elapsed,
                            space=dict(space_repr(self.space)))
        result.best_state = self._states.get(BEST_STATE)
        return result

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in self.settings().items())
        return f"{type(self).__name__}({self.spec.name}, {settings}, mode={self.mode!r}, seed={self.seed})"
