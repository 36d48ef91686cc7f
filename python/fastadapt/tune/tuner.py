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

import dataclasses
import os
import time
import warnings
from typing import Any, Callable, ClassVar, Dict, List, Mapping, Optional, Sequence, Tuple, Union, cast

import numpy as np

from .. import _checks
from .._files import check_writable_dir
from . import schema as S
from .executor_choice import EXECUTORS, make_executor
from .executors import Executor
from .jobs import DIED, ERROR, OK, Job, Outcome, reject_non_finite
from .progress import TuneProgress
from .results import (FAILED, PAUSED, RUNNING, STATUSES, STOPPED, TrialRecord, TuneResult, best_evaluation,
                      evaluation_key, ranked)
from .searcher import RandomSearcher, Searcher, observations_of
from .space import (check_config, check_space, copy_config, domains, get_path, leaf_paths, plain_values,
                    sample_config, space_repr)
from .state import CheckpointStore, PathLike, encodable
from .trainable import TrainableSpec, as_trainable, metric_is_valid, parse_report

__all__ = ["Tuner", "Ask"]

OnResult = Callable[[TrialRecord], None]

_MISSING = object()

# The key under which the state behind the best evaluation is kept (trial states use their int ids).
BEST_STATE = "best"

_STORABLE = ("With checkpoint_dir= the tuner's state is JSON (never pickle), so constants, choice values and "
             "initial configs must be None, bool, int, float, str, bytes, NumPy scalars or arrays, or lists, "
             "tuples, sets and dicts of them; pass a name (a string) and look the object up in the trainable")


def _trial_fields(trial: TrialRecord) -> Dict[str, Any]:
    return {f.name: getattr(trial, f.name) for f in dataclasses.fields(trial)}


_HISTORY_ENTRY = S.record({"budget": S.integer(), "metric": S.real()}, extra=S.real())
_TRIAL = S.record({
    "trial_id": S.integer(), "config": S.dict_of(S.text, S.anything), "status": S.one_of(*STATUSES),
    "budget": S.integer(), "cost": S.integer(), "history": S.list_of(_HISTORY_ENTRY),
    "config_history": S.list_of(S.record({"budget": S.integer(), "config": S.dict_of(S.text, S.anything)})),
    "error": S.optional(S.text), "retries": S.integer(), "seconds": S.real(finite=True, low=0),
    "bracket": S.optional(S.integer())})


def _trial_from_fields(fields: Dict[str, Any]) -> TrialRecord:
    """A TrialRecord read back from a checkpoint, its fields checked first."""
    S.check(fields, _TRIAL, "a trial")
    return TrialRecord(**fields)


def ask_tell(config: Mapping[str, Any], budget: int) -> float:
    """The trainable of a tuner built with ``trainable=None``: you train, the
    tuner asks and is told (``Tuner.ask`` / ``Tuner.tell``)."""
    raise TypeError("this tuner was built without a trainable (trainable=None): drive it with ask() and tell()")


# Resumable: each job trains a trial on from what it completed (you keep each trial's model).
_ASK_TELL = TrainableSpec(ask_tell, is_function=False, resumable=True, configurable=False)


@dataclasses.dataclass(frozen=True)
class Ask:
    """One job of a tuner driven by ``ask()``/``tell()``: train trial
    ``trial_id`` (hyperparameters ``config``) from the ``trained`` units it has
    completed for ``budget`` more, to ``trained + budget`` in all, then
    ``tell`` the metric. A trial asked again continues its own model (keep it
    by ``trial_id``); a new trial starts from scratch (``trained == 0``)."""

    trial_id: int
    config: Dict[str, Any]
    budget: int
    trained: int

    @property
    def total(self) -> int:
        """Units completed once this job is done (``trained + budget``)."""
        return self.trained + self.budget


class Tuner:
    """Base class of [`Hyperband`][fastadapt.tune.Hyperband],
    [`SuccessiveHalving`][fastadapt.tune.SuccessiveHalving], [`ASHA`][fastadapt.tune.ASHA],
    [`PBT`][fastadapt.tune.PBT], [`Search`][fastadapt.tune.Search] and [`BOHB`][fastadapt.tune.BOHB];
    its arguments (below) are theirs too.

    Checkpoints: the tuner's own state is written as JSON (``tuner.json``,
    never a pickle, so resuming never runs code from it); only what the
    trainable's ``save()`` returns is pickled (``states/*.pkl``). Load only
    checkpoints you wrote. See ``fastadapt.tune.state``.

    A metric that is NaN or infinite fails its trial (it diverged) and never
    ranks or wins; a ``save()`` result that cannot be pickled fails its
    trial too, the same on every executor.

    Parameters
    ----------
    trainable
        a class following [`fastadapt.tune.Trainable`][fastadapt.tune.Trainable]'s protocol, or a function
        ``f(config, budget) -> metric``; or None: you train, driving the tuner with
        [`ask`][fastadapt.tune.Tuner.ask] and [`tell`][fastadapt.tune.Tuner.tell] (not PBT/PB2).
    space
        dict of name -> domain (``fa.tune.uniform`` ...) or constant.
    metric
        the key to read when ``train`` returns a dict.
    mode
        "min" (lower is better) or "max".
    seed
        seeds every random draw (configs, PBT decisions); None draws a fresh seed, recorded in the
        result.
    executor
        "process" (local worker processes, the default), "sequential" (in this process), "ray", or
        an Executor instance.
    initial_configs
        configs (possibly partial; the rest is sampled) to try before sampled ones, as Optuna's
        ``enqueue_trial`` and Ray Tune's ``points_to_evaluate``.
    max_retries
        times a job is re-run after its worker process died (a trainable that raises is not retried:
        it would raise again).
    checkpoint_dir
        where the tuner saves itself after every outcome.
    resume
        False: start afresh (an existing checkpoint is overwritten); True: continue from
        ``checkpoint_dir`` (it must exist); "auto": continue when a checkpoint is there, else start.
    progress
        report each finished job on stderr.
    on_result
        called with the trial after each recorded outcome (after the checkpoint is written); raising
        stops the run.
    searcher
        what proposes each new trial's config: None (default) samples the space's priors
        ([`RandomSearcher`][fastadapt.tune.RandomSearcher]); [`TPE`][fastadapt.tune.TPE] proposes from the
        results so far. Initial configs are tried first, as given (their missing keys sampled).
    trial_timeout
        seconds one job of a trial (one ``train`` call with its ``load``/``save``) may run; None
        (default): no limit. A job past it fails its trial ("trial 3 ran past trial_timeout=2.0 s")
        and the run goes on. Every executor honours it: the process pool kills the worker process,
        Ray cancels the task (killing its worker); the sequential executor runs the job in a thread
        and, as Python cannot kill a thread, abandons it (it may keep running in the background; its
        result is discarded). Not part of the checkpoint's setup check: a resumed run may change it.
    """

    algorithm: ClassVar[str] = ""
    # Whether ask()/tell() can drive it (PBT cannot: it copies states between trials).
    _asks: ClassVar[bool] = True

    def __init__(self, trainable: Any, space: Mapping[str, Any], *, metric: str = "metric", mode: str = "min",
                 seed: Optional[int] = None, executor: Union[str, Executor] = "process",
                 initial_configs: Optional[Sequence[Mapping[str, Any]]] = None, max_retries: int = 1,
                 checkpoint_dir: Optional[PathLike] = None, resume: Union[bool, str] = False,
                 progress: bool = False, on_result: Optional[OnResult] = None,
                 trial_timeout: Optional[float] = None, searcher: Optional[Searcher] = None):
        if trainable is None and not self._asks:
            raise TypeError(f"{type(self).__name__} copies members' states between trials, so it needs a trainable "
                            f"class with save() and load(); ask()/tell() (trainable=None) leaves states with you")
        self.spec: TrainableSpec = _ASK_TELL if trainable is None else as_trainable(trainable)
        self.space = check_space(space)
        if not isinstance(metric, str) or not metric:
            raise TypeError(f"metric must be a non-empty string (the key read when train() returns a dict), "
                            f"got {metric!r}")
        self.metric = metric
        self.mode = _checks.choice("mode", mode, ("min", "max"))
        self._seed_argument = seed
        # None: fresh entropy, recorded in the result so the run can be repeated.
        # (a SeedSequence made without entropy draws an int)
        self.seed = (int(cast(int, np.random.SeedSequence().entropy)) if seed is None
                     else _checks.integer("seed", seed, 0))
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
        self.trial_timeout = None if trial_timeout is None else _checks.real(
            "trial_timeout", trial_timeout, low=0, low_open=True)
        if searcher is not None and not isinstance(searcher, Searcher):
            raise TypeError(f"searcher must be a fa.tune.Searcher such as fa.tune.TPE() (or None: random "
                            f"sampling), got {type(searcher).__name__}")
        self.searcher: Searcher = RandomSearcher() if searcher is None else searcher
        if self._store is not None:
            self._check_storable()
        self._prepared = False
        # ask()/tell(): jobs in flight not yet handed out by ask(), when each was asked, whether the run ended
        self._unasked: List[int] = []
        self._asked_at: Dict[int, float] = {}
        self._finished = False

    def _check_storable(self) -> None:
        """With a checkpoint, refuse now (not mid-run) a config value that its
        JSON cannot hold: constants, choice values and initial configs are
        the only values a config gets that the tuner did not make itself."""
        # (plain_values walks the branches of conditional choices too; their domains make floats and ints)
        for name, v in plain_values(self.space):
            problem = encodable(v)
            if problem is not None:
                raise TypeError(f"{name} = {v!r:.60} cannot be stored in the checkpoint ({problem}). "
                                f"{_STORABLE}")
        for i, config in enumerate(self.initial_configs):
            problem = encodable(config)
            if problem is not None:
                raise TypeError(f"initial_configs[{i}] cannot be stored in the checkpoint ({problem}). {_STORABLE}")

    def _check_initial_configs(self, configs: Any) -> List[Dict[str, Any]]:
        if configs is None:
            return []
        if isinstance(configs, Mapping) or not isinstance(configs, Sequence):
            raise TypeError("initial_configs must be a list of config dicts, e.g. [{'lr': 1e-3}]")
        out = []
        for i, config in enumerate(configs):
            if not isinstance(config, Mapping):
                raise TypeError(f"initial_configs[{i}] must be a dict, got {type(config).__name__}")
            # unknown keys, nested too, and bounds; part of a conditional branch is filled in when sampled
            check_config(self.space, config, f"initial_configs[{i}]", partial_branches=True)
            out.append(copy_config(config))
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
        self._best_key: Optional[Tuple[float, int, float]] = None
        self._start_algorithm()

    def _field_specs(self) -> Dict[str, S.Spec]:
        """The attributes a checkpoint saves, each with the check its value
        read back must pass; subclasses add their algorithm's."""
        trial_id = S.integer()
        return {
            "_sample_rng": S.RNG, "_decision_rng": S.RNG,
            "_trials": S.dict_of(trial_id, S.instance(TrialRecord)),
            "_in_flight": S.dict_of(trial_id, S.integer(1)),
            "_state_versions": S.dict_of(S.either(trial_id, S.one_of(BEST_STATE)), S.integer(1)),
            "_lineage": S.list_of(S.dict_of(S.text, S.anything)),
            "_rungs": S.list_of(S.dict_of(S.text, S.anything)),
            "_initial_used": S.integer(0, len(self.initial_configs)),
            "_elapsed": S.real(finite=True, low=0),
            "_best_key": S.optional(S.tuple_of(S.real(finite=True), trial_id, S.integer())),
        }

    def _check_restored(self, fields: Dict[str, Any]) -> None:
        """Cross-checks of restored fields (types are checked already):
        ValueError when they do not fit together. Subclasses extend it."""
        trials = fields["_trials"]
        if sorted(trials) != list(range(len(trials))):
            raise ValueError("its trial ids are not 0..n-1")
        for tid, trial in trials.items():
            if trial.trial_id != tid:
                raise ValueError(f"trial {tid} is recorded with trial_id={trial.trial_id}")
        for name in ("_in_flight", "_state_versions"):
            unknown = [k for k in fields[name] if k != BEST_STATE and k not in trials]
            if unknown:
                raise ValueError(f"{name} names trials {unknown[:5]} that it does not hold")
        if self.spec.resumable:
            # Every trial that may train on needs the state its next job loads.
            stateless = [tid for tid, t in trials.items()
                         if t.budget > 0 and t.status not in (STOPPED, FAILED) and tid not in fields["_state_versions"]]
            if stateless:
                raise ValueError(f"trials {stateless[:5]} have trained but name no state file")

    def _check_trial_ids(self, ids: Any, fields: Dict[str, Any], name: str) -> None:
        unknown = [tid for tid in ids if tid not in fields["_trials"]]
        if unknown:
            raise ValueError(f"{name} names trials {sorted(unknown)[:5]} that it does not hold")

    def _fingerprint(self) -> Dict[str, Any]:
        fingerprint = {"algorithm": self.algorithm, "trainable": self.spec.name, "space": space_repr(self.space),
                       "metric": self.metric, "mode": self.mode, "settings": self.settings(),
                       "initial_configs": repr(self.initial_configs)}
        if type(self.searcher) is not RandomSearcher:
            # (absent for the default, so checkpoints written before searchers existed still resume)
            fingerprint["searcher"] = self.searcher.describe()
        return fingerprint

    def _save_checkpoint(self) -> None:
        self._prune_states()
        if self._store is None:
            return
        fields = {name: getattr(self, name) for name in self._field_specs()}
        self._store.save({"fingerprint": self._fingerprint(), "seed": self.seed, "fields": fields},
                         dict(self._state_versions), objects={TrialRecord: _trial_fields})

    def _restore(self) -> None:
        """Continue from the checkpoint. Everything is read and checked
        before the tuner changes: on any error (a ValueError naming the
        file) the tuner is as it was, and no file is touched."""
        assert self._store is not None
        document = self._store.load(objects={"TrialRecord": _trial_from_fields})
        try:
            S.check(document, S.record({"format": S.anything, "version": S.anything,
                                        "fingerprint": S.dict_of(S.text, S.anything), "seed": S.integer(),
                                        "fields": S.record(self._field_specs())}), "the document")
            fields = document["fields"]
            self._check_restored(fields)
        except ValueError as err:
            raise ValueError(f"tuner checkpoint {self._store.tuner_file} is not valid: {err}; pass resume=False "
                             f"to start over") from None
        saved, current = document["fingerprint"], self._fingerprint()
        differing = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
        if differing:
            raise ValueError(f"the checkpoint in {self._store.directory!r} was written by a different tuner setup "
                             f"(differs in: {', '.join(differing)}); resume with the same arguments, or pass "
                             f"resume=False to start over")
        if self._seed_argument is not None and self._seed_argument != document["seed"]:
            raise ValueError(f"the checkpoint in {self._store.directory!r} used seed={document['seed']}, not "
                             f"seed={self._seed_argument}; pass the same seed (or seed=None) to resume")
        states = {key: self._store.read_state(key, version) for key, version in fields["_state_versions"].items()}
        # Nothing above changed the tuner; from here on nothing can fail.
        self.seed = document["seed"]
        self._start_fresh()
        for name, value in fields.items():
            setattr(self, name, value)
        self._states = states

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
            if key != BEST_STATE and self._trials[cast(int, key)].status in (STOPPED, FAILED):
                del self._states[key]
                del self._state_versions[key]

    def _snapshot_if_best(self, trial: TrialRecord, state: Any) -> None:
        """Keep ``state`` as ``best_state`` when the trial's newest metric is the
        best seen (ties as ``best_evaluation`` breaks them)."""
        metric = trial.history[-1]["metric"]
        if not metric_is_valid(metric):
            return
        key = evaluation_key(metric, trial.trial_id, trial.budget, self.mode)
        if self._best_key is None or key < self._best_key:
            self._best_key = key
            self._put_state(BEST_STATE, state)

    def _new_trial(self, bracket: Optional[int] = None) -> TrialRecord:
        if self._initial_used < len(self.initial_configs):
            given = self.initial_configs[self._initial_used]
            self._initial_used += 1
            config = sample_config(self.space, self._sample_rng, given)
        else:
            config = self._suggested_config()
        trial = TrialRecord(trial_id=len(self._trials), config=config, bracket=bracket,
                            config_history=[{"budget": 0, "config": copy_config(config)}])
        self._trials[trial.trial_id] = trial
        return trial

    def _suggested_config(self) -> Dict[str, Any]:
        """The searcher's proposal from every evaluation so far, checked against the space."""
        trials = [self._trials[k] for k in sorted(self._trials)]
        pending = [copy_config(t.config) for t in trials if not t.history and t.status != FAILED]
        config = self.searcher.suggest(self.space, self._sample_rng, observations_of(trials, self.mode), pending)
        if not isinstance(config, dict):
            raise TypeError(f"{self.searcher.describe()}.suggest() returned {type(config).__name__}, not a config dict")
        where = f"the config {self.searcher.describe()} proposed"
        check_config(self.space, config, where)
        missing = [path for path, _ in leaf_paths(self.space) if get_path(config, path, _MISSING) is _MISSING]
        if missing:
            raise ValueError(f"{where} lacks {', '.join('/'.join(p) for p in missing)}; a searcher must give "
                             f"every key of the space")
        return copy_config(config)

    def _ranking(self, trial_ids: Sequence[int]) -> List[Tuple[int, Optional[float]]]:
        return ranked([(tid, self._trials[tid].metric) for tid in trial_ids], self.mode)

    # ---- the loop ----------------------------------------------------------
    def _job(self, trial_id: int, budget: int) -> Job:
        trial = self._trials[trial_id]
        return Job(trial_id=trial_id, spec=self.spec, config=copy_config(trial.config),
                   state=self._states.get(trial_id), trained=trial.budget, budget=budget, metric=self.metric,
                   apply_config=self._apply_config(), timeout=self.trial_timeout)

    def _submit(self, executor: Executor, trial_id: int, budget: int) -> None:
        if budget < 1:
            raise AssertionError(f"tuner bug: job of {budget} units for trial {trial_id}")
        self._in_flight[trial_id] = budget
        self._trials[trial_id].status = RUNNING
        executor.submit(self._job(trial_id, budget))

    def _record(self, outcome: Outcome, budget: int) -> TrialRecord:
        trial = self._trials[outcome.trial_id]
        trial.seconds += outcome.seconds
        if outcome.ok or outcome.metric is not None:
            # A job that reported a non-finite metric (see reject_non_finite) did train: its evaluation is
            # kept in the history, and the trial fails below.
            trial.budget += budget
            trial.cost += outcome.cost
            entry: Dict[str, Any] = {"budget": trial.budget, "metric": outcome.metric}
            entry.update((k, v) for k, v in outcome.extras.items() if k not in entry)  # ours win a name clash
            trial.history.append(entry)
        if outcome.ok:
            trial.status = PAUSED
            if self.spec.resumable:
                self._put_state(trial.trial_id, outcome.state)
                self._snapshot_if_best(trial, outcome.state)
        else:
            trial.status = FAILED
            trial.error = outcome.error
        return trial

    def prepare(self) -> None:
        """Read the checkpoint (when resuming) or set up a fresh run, without
        running any job. [`run`][fastadapt.tune.Tuner.run] calls it; call it first to have a
        missing, damaged or mismatched checkpoint refused before anything
        else starts (ValueError or FileNotFoundError naming the file)."""
        store = self._store
        if store is not None:
            # Before any trial runs (and before the tuner changes): a checkpoint_dir that cannot take files
            # would otherwise fail the run at its first checkpoint. The probe file leaves no trace.
            check_writable_dir(store.directory, "checkpoint_dir")
        legacy = store is not None and os.path.isfile(store.legacy_tuner_file)
        if self.resume and store is not None and (self.resume is True or store.exists() or legacy):
            if not store.exists():
                if legacy:
                    raise ValueError(f"{store.legacy_tuner_file} is a checkpoint of an older fastadapt, a pickle "
                                     f"of the whole tuner; this version never loads it (unpickling can run code) "
                                     f"and keeps its state as JSON in {store.tuner_file}; pass resume=False to "
                                     f"start over")
                raise FileNotFoundError(f"resume=True but {store.tuner_file} does not exist; pass "
                                        f"resume='auto' to start when there is no checkpoint yet")
            self._restore()
        else:
            self._start_fresh()
        self._prepared = True

    def run(self) -> TuneResult:
        """Run to the end (or continue a checkpointed run) and return the result.

        An exception that stops the run (a KeyboardInterrupt, an ``on_result``
        that raises) propagates; ``result()`` then gives the trials finished so
        far, and with ``checkpoint_dir`` a new tuner continues the run
        (``resume=True``). A run in which every trial failed warns (a
        ``RuntimeWarning`` with the first error): a wrong ``metric`` name or a
        trainable that always raises should not pass for a result."""
        if self.spec is _ASK_TELL:
            raise TypeError(f"{type(self).__name__} was built without a trainable (trainable=None): drive it with "
                            f"ask() and tell(), or pass a trainable to run it")
        if not self._prepared:
            self.prepare()
        self._prepared = False  # a second run() prepares again
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
                # A NaN or infinite metric fails the trial here, in the driver, whatever executor ran it.
                outcome = reject_non_finite(executor.next_outcome())
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
        failed = [t for t in self._trials.values() if t.status == FAILED]
        if failed and len(failed) == len(self._trials):
            first = min(failed, key=lambda t: t.trial_id)
            last_line = (first.error or "").strip().splitlines()[-1:] or ["(no error recorded)"]
            warnings.warn(f"[{self.algorithm}] every trial failed ({len(failed)} of {len(self._trials)}); there is "
                          f"no best config. Trial {first.trial_id}: {last_line[0]} (the full traceback is in "
                          f"result.trials[{first.trial_id}].error)", RuntimeWarning, stacklevel=2)
        return self._result()

    # ---- ask and tell (trainable=None) ---------------------------------------
    def ask(self) -> Optional[Ask]:
        """The next job to train, or None: when jobs asked before must be told
        first (a rung decides once all its jobs are in), or when the run is
        over (``done``). Only for a tuner built with ``trainable=None``; the
        same decisions ``run()`` makes, job by job, as Optuna's ``study.ask()``.

        Examples
        --------
            tuner = fa.tune.Hyperband(None, space, max_resource=27, seed=0)
            while not tuner.done:
                job = tuner.ask()
                if job is None:
                    break                       # (here: every job is told before the next ask)
                tuner.tell(job, train(job.config, job.trial_id, job.total))
            result = tuner.result()
        """
        self._check_ask_tell("ask")
        if not self._prepared:
            self.prepare()
            self._asked_at, self._finished = {}, False
            # in flight at the checkpoint (asked, never told): asked again first
            self._unasked = sorted(self._in_flight)
        if not self._unasked:
            # The jobs the tuner starts now (a synchronous rung: all of it), in flight from here on.
            jobs = self._next_jobs(1)
            if not jobs:
                self._finish_if_done()
                return None
            for trial_id, budget in jobs:
                if budget < 1:
                    raise AssertionError(f"tuner bug: job of {budget} units for trial {trial_id}")
                self._in_flight[trial_id] = budget
                self._trials[trial_id].status = RUNNING
                self._unasked.append(trial_id)
            self._save_checkpoint()
        trial_id = self._unasked.pop(0)
        budget = self._in_flight[trial_id]
        self._asked_at[trial_id] = time.perf_counter()
        trial = self._trials[trial_id]
        return Ask(trial_id=trial_id, config=copy_config(trial.config), budget=budget, trained=trial.budget)

    def tell(self, job: Union[Ask, int], value: Any = None, *, error: Optional[str] = None) -> TrialRecord:
        """Report an asked job: ``value`` is what a trainable's ``train()``
        would return (the metric, or a dict holding ``metric``); or
        ``error=`` (a message) fails the trial, as Optuna's ``TrialState.FAIL``.
        A NaN or infinite metric fails the trial, as in ``run()``. Returns the
        trial's record."""
        self._check_ask_tell("tell")
        trial_id = job.trial_id if isinstance(job, Ask) else job
        waiting = sorted(set(getattr(self, "_in_flight", {})) - set(self._unasked))
        if isinstance(trial_id, bool) or not isinstance(trial_id, (int, np.integer)) or int(trial_id) not in waiting:
            raise ValueError(f"tell({job!r}): no job of that trial was asked and not yet told (waiting: {waiting})")
        trial_id = int(trial_id)
        if (error is None) == (value is None):
            raise TypeError("tell() takes the job's value (the metric, or a dict with it) or error='message', "
                            "one of them")
        if error is not None and not isinstance(error, str):
            raise TypeError(f"error must be a message (str), got {type(error).__name__}")
        started = self._asked_at.pop(trial_id, time.perf_counter())
        budget = self._in_flight[trial_id]
        seconds = time.perf_counter() - started
        if error is not None:
            outcome = Outcome(trial_id, ERROR, error=error, seconds=seconds)
        else:
            metric, extras = parse_report(value, self.metric)  # (TypeError/KeyError/ValueError: nothing changes)
            outcome = reject_non_finite(Outcome(trial_id, OK, metric=metric, extras=extras, cost=budget,
                                                seconds=seconds))
        del self._in_flight[trial_id]
        trial = self._record(outcome, budget)
        self._on_outcome(trial, outcome)
        self._elapsed += seconds
        self._save_checkpoint()
        if self.on_result is not None:
            self.on_result(trial)
        return trial

    @property
    def done(self) -> bool:
        """Whether an ask/tell run is over: no job to ask and none waiting to be told."""
        if self.spec is not _ASK_TELL or not self._prepared:
            return False
        return not self._in_flight and not self._unasked and self._finished

    def _finish_if_done(self) -> None:
        if not self._in_flight and not self._finished:
            self._finish()
            self._save_checkpoint()
            self._finished = True

    def _check_ask_tell(self, what: str) -> None:
        if self.spec is not _ASK_TELL:
            raise TypeError(f"{what}() drives a tuner built without a trainable (trainable=None); this one runs "
                            f"{self.spec.name} itself: call run()")

    def result(self) -> TuneResult:
        """The result so far: after ``run()`` returned, the same as its
        result; after a run stopped by an exception, the trials it finished."""
        return self._result()

    def _result(self) -> TuneResult:
        settings = self.settings()
        if type(self.searcher) is not RandomSearcher:
            settings["searcher"] = self.searcher.describe()
        result = TuneResult(algorithm=self.algorithm, metric=self.metric, mode=self.mode, seed=self.seed,
                            settings=settings, trials=[self._trials[k] for k in sorted(self._trials)],
                            lineage=list(self._lineage), rungs=list(self._rungs), seconds=self._elapsed,
                            space=dict(space_repr(self.space)))
        result.best_state = self._states.get(BEST_STATE)
        return result

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in self.settings().items())
        return f"{type(self).__name__}({self.spec.name}, {settings}, mode={self.mode!r}, seed={self.seed})"
