"""DataParallel: data-parallel training on Ray with a sharded parameter
server whose shards are stepped by fastadapt's fused optimizers.

The seed article's picture (parameter server hands out parameters, workers
compute gradients on their data, gradients are aggregated, the server
updates), run by Ray actors:

    driver ── param refs ──> workers (one data shard each): loss_and_grad
       │                        │ gradient, one object per shard
       └─ update k ──> servers (one param shard + optimizer each)

Arrays move only through Ray's object store: a worker reads the servers'
parameters as read-only views, a server reads the workers' gradient shards
as read-only views. The driver handles references and a few numbers per
step: it fixes the order of everything, and so makes runs reproducible,
restarts safe and checkpoints consistent.
"""

from __future__ import annotations

import collections
import math
import numbers
import os
import threading
import time
import warnings
from typing import Any, Callable, Deque, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from .._checks import integer, real
from .._files import check_writable_dir
from ..optim import Optimizer, make_optimizer
from ..train.callbacks.base import check_callbacks, hooks
from ..train.checkpoints import PathLike, load_state, save_state
from ..train.history import History
from ..train.progress import make_progress
from ..train.trainer import _EpochStats
from ._ray import RaySession
from .server import OptimizerSpec, ParameterServer, needs_global_pass, set_hyperparameters, shard_settings
from .sharding import ShardLayout
from .staleness import StalenessGate
from .worker import GradientWorker

__all__ = ["DataParallel", "CHECKPOINT_FILE"]

CHECKPOINT_FORMAT = "fastadapt.distributed"
CHECKPOINT_VERSION = 1
CHECKPOINT_FILE = "checkpoint.npz"
"""The file a checkpoint directory holds (``fit(checkpoint_dir=...)``,
[`DataParallel.save_checkpoint`][fastadapt.distributed.DataParallel.save_checkpoint]): one NumPy
``.npz`` archive, written atomically."""
MODES = ("sync", "async")
CHECKPOINT_ENTRIES = ("format", "version", "mode", "num_workers", "step", "epoch", "fit_start_epoch", "positions",
                      "epoch_progress", "params", "optimizer", "worker_restarts", "dropped_workers", "callbacks",
                      "history")

LossAndGrad = Callable[[Any, Any], Tuple[Any, Any]]


class _EpochProgress:
    """One epoch's running numbers: the trainer's loss and norm sums plus
    what distribution adds. Plain data, so a checkpoint taken mid-epoch
    resumes with the same epoch means."""

    EXTRA = ("samples", "seconds", "overhead", "skipped", "nonfinite", "restarts", "discarded", "staleness_sum",
             "staleness_max", "lr_sum", "lr_steps", "lr_min", "lr_max")

    def __init__(self) -> None:
        self.base = _EpochStats()
        self.samples = 0
        self.seconds = 0.0      # wall time spent in this epoch (across a resume)
        self.overhead = 0.0     # sync: step wall time not spent computing or stepping
        self.skipped = 0        # steps the non-finite policy 'skip' skipped
        self.nonfinite = 0      # non-finite gradient values seen (policies zero and skip)
        self.restarts = 0
        self.discarded = 0      # async: gradients recomputed to respect max_staleness
        self.staleness_sum = 0
        self.staleness_max = 0
        # The lrs the updates used (the history logs their mean and range, as
        # Trainer does: a schedule may move the lr within an epoch).
        self.lr_sum = 0.0
        self.lr_steps = 0
        self.lr_min = math.inf
        self.lr_max = -math.inf

    def add_lr(self, lr: float) -> None:
        self.lr_sum += lr
        self.lr_steps += 1
        self.lr_min = min(self.lr_min, lr)
        self.lr_max = max(self.lr_max, lr)

    def to_dict(self) -> Dict[str, Any]:
        return {**vars(self.base), **{name: getattr(self, name) for name in self.EXTRA}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "_EpochProgress":
        progress = cls()
        for name, value in data.items():
            target = progress if name in cls.EXTRA else progress.base
            if not hasattr(target, name):
                raise ValueError(f"checkpoint epoch_progress has unknown entry {name!r}")
            setattr(target, name, value)
        return progress


class DataParallel:
    """Data-parallel training with a sharded parameter server on Ray.

    Parameters
    ----------
    params
        the parameter tree (nested dicts/lists/tuples of float32 or float64 arrays). Copied to the
        servers; your arrays are not changed (pull the trained ones with
        [`params`][fastadapt.distributed.DataParallel.params]).
    optimizer
        a fastadapt optimizer (its class, hyperparameters, overrides and any state it has are what
        every shard starts from) or a name such as ``"adam"``. It stays on the driver as the
        template: assign ``ps.optimizer.lr = ...`` (or let a schedule or callback do it) and the
        servers follow from the next step.
    loss_and_grad
        ``(params, batch) -> (loss, grads)``, run on the workers. It must be picklable (a
        module-level function, a bound method of a picklable model such as ``fa.models.MLP``); it
        gets read-only parameter arrays.
    num_workers
        gradient workers, one data shard each.
    num_shards
        parameter-server actors; arrays are assigned whole, balanced by bytes
        ([`assign_shards`][fastadapt.distributed.assign_shards]).
    mode
        ``"sync"``: every step averages one batch from each worker in worker order, then updates
        once (equal to single-process training on the concatenated batch). ``"async"``: each
        worker's gradient is applied on its own as it finishes, on parameters at most
        ``max_staleness`` updates old.
    max_staleness
        async only; default ``num_workers - 1`` (every worker busy). 0 makes async training
        sequential SGD.
    address
        None: a local Ray started on demand (shut down again by
        [`shutdown`][fastadapt.distributed.DataParallel.shutdown]). A string: the cluster to connect
        to (``"auto"``, ``"ray://head:10001"``, a GCS address);
        [`shutdown`][fastadapt.distributed.DataParallel.shutdown] then only disconnects. A process
        already connected to Ray keeps using that session either way (and
        [`shutdown`][fastadapt.distributed.DataParallel.shutdown] leaves it running). A Ray one
        DataParallel started stays up while another one built after it uses it: the last to shut
        down stops it.
    ray_init
        extra ``ray.init`` keywords when this object starts Ray (e.g. ``{"num_cpus": 4}``).
    worker_options, server_options
        Ray actor options (``num_cpus``, ``resources``, ...). Defaults: workers 1 CPU, servers 0
        CPUs (they only run the memory-bound update while workers wait).
    start_timeout
        seconds a fit waits for its workers to be placed and started before it gives up with an
        error that says why.
    max_worker_restarts
        how often one worker may be replaced after it dies before it is dropped (its data shard is
        then left out and sync steps average the remaining workers).
    callbacks
        as for [`fastadapt.Trainer`][fastadapt.Trainer]; the ``trainer`` they get is this object
        (``optimizer``, ``history``, ``stop_training``, ``epoch``, ``step``; ``params()`` pulls a
        copy).
    progress
        show progress on stderr.

    Examples
    --------
        model = fa.models.MLP([784, 128, 10], seed=0)
        with fa.distributed.DataParallel(model.params, fa.Adam(lr=1e-3), loss_and_grad=model.loss_and_grad,
                                         num_workers=2, num_shards=2) as ps:
            history = ps.fit(fa.distributed.shard_batches(X, y, num_workers=2, batch_size=64), epochs=5)
            params = ps.params()
    """

    def __init__(self, params: Any, optimizer: Union[str, Optimizer] = "adam", *, loss_and_grad: LossAndGrad,
                 num_workers: int = 2, num_shards: int = 1, mode: str = "sync", max_staleness: Optional[int] = None,
                 address: Optional[str] = None, ray_init: Optional[Mapping[str, Any]] = None,
                 worker_options: Optional[Mapping[str, Any]] = None,
                 server_options: Optional[Mapping[str, Any]] = None, max_worker_restarts: int = 3,
                 start_timeout: float = 300.0, callbacks: Optional[Sequence[Any]] = None, progress: bool = False):
        self.optimizer = optimizer if isinstance(optimizer, Optimizer) else self._named_optimizer(optimizer)
        if not callable(loss_and_grad):
            raise TypeError(f"loss_and_grad must be a function (params, batch) -> (loss, grads), got "
                            f"{type(loss_and_grad).__name__}")
        self.num_workers = integer("num_workers", num_workers, 1)
        self.max_worker_restarts = integer("max_worker_restarts", max_worker_restarts, 0)
        self.start_timeout = real("start_timeout", start_timeout, low=0.0, low_open=True)
        if mode not in MODES:
            raise ValueError(f"mode={mode!r} must be 'sync' or 'async'")
        self.mode = mode
        if max_staleness is not None and mode != "async":
            raise ValueError("max_staleness applies to mode='async' only; drop it or pass mode='async'")
        self.max_staleness = self.num_workers - 1 if max_staleness is None else \
            integer("max_staleness", max_staleness, 0)
        self.layout = ShardLayout.of(params, integer("num_shards", num_shards, 1))
        self.callbacks = check_callbacks(callbacks)
        if not isinstance(progress, (bool, np.bool_)):
            raise TypeError(f"progress must be True or False, got {progress!r}")
        self.progress = bool(progress)
        self._worker_options = self._actor_options("worker_options", worker_options, {"num_cpus": 1})
        self._server_options = self._actor_options("server_options", server_options, {"num_cpus": 0})

        spec = OptimizerSpec.of(self.optimizer)
        flat = self.layout.flat(params)
        initial = self.optimizer.state_dict()
        # A shard's optimizer would check this state only at its first update,
        # in the middle of a fit; the params are known here, so check it now.
        self._check_optimizer_state(initial, flat, "optimizer",
                                    "pass an optimizer that trained these params, or call optimizer.reset() to "
                                    "start from fresh state")
        for pattern in spec.unmatched(flat):
            warnings.warn(f"override {pattern!r} matched no parameter (keys: {', '.join(self.layout.paths[:8])})",
                          UserWarning, stacklevel=2)
        self._session = RaySession(address, ray_init)
        ray = self._ray = self._session.ray
        try:
            server_class = ray.remote(ParameterServer).options(**self._server_options)
            shards = self.layout.split(flat)
            self.servers = [server_class.remote(s, shard, spec.for_shard(shard), self.layout.paths)
                            for s, shard in enumerate(shards)]
            if initial["step"] or initial["state"] or initial["skipped_steps"]:
                ray.get([srv.load.remote(shard, sd, 0) for srv, shard, sd
                         in zip(self.servers, shards, self._split_optimizer_state(initial))])
            self._worker_class = ray.remote(GradientWorker).options(**self._worker_options)
            self._loss_ref: Any = ray.put(loss_and_grad)
            # Started now, without data, so their start-up overlaps the rest of
            # the set-up and is paid once, not at every fit.
            self._data_refs: List[Any] = [None] * self.num_workers
            self.workers: List[Any] = [self._new_worker(w) for w in range(self.num_workers)]
        except BaseException:
            for handle in getattr(self, "servers", []) + getattr(self, "workers", []):
                ray.kill(handle, no_restart=True)
            self._session.close()
            raise
        self._live: List[int] = list(range(self.num_workers))
        self._sent_hyper = self.optimizer.hyperparameters
        # The servers' newest params as refs for the workers. Valid only
        # inside fit (set by _resync, advanced by each update): a failed
        # update leaves error refs here, which must not outlive the fit that
        # reported them. Snapshots (params(), checkpoints) ask the servers.
        self._param_refs: List[Any] = []
        # Held while an update or a load is submitted to the servers, and
        # while a snapshot is: every server then sees the snapshot on the same
        # side of every update, even with fit running in another thread.
        self._submit_lock = threading.Lock()
        self.history = History()
        self.step = 0
        self.epoch = 0
        self.stop_training = False
        self.worker_restarts = [0] * self.num_workers
        self.dropped_workers: List[int] = []
        self._positions = [0] * self.num_workers
        self._partial: Optional[_EpochProgress] = None
        self._fit_start_epoch = 0
        self._display = make_progress(False)
        self._closed = False

    # ---- argument checks -------------------------------------------------------------
    @staticmethod
    def _named_optimizer(name: Any) -> Optimizer:
        if not isinstance(name, str):
            raise TypeError(f"optimizer must be a fastadapt optimizer (fa.Adam(lr=1e-3)) or a name such as 'adam', "
                            f"got {type(name).__name__}")
        return make_optimizer(name)

    @staticmethod
    def _actor_options(name: str, options: Optional[Mapping[str, Any]], default: Dict[str, Any]) -> Dict[str, Any]:
        if options is None:
            return dict(default)
        if not isinstance(options, Mapping):
            raise TypeError(f"{name} must be a dict of Ray actor options such as {default}, got "
                            f"{type(options).__name__}")
        return {**default, **options}

    def _check_data(self, data: Any) -> List[int]:
        """Batches per epoch of each worker's data."""
        fix = (f"pass a list with one entry per worker (num_workers={self.num_workers}), each a list of batches or "
               f"fa.batches(...); fa.distributed.shard_batches(X, y, num_workers={self.num_workers}, "
               f"batch_size=...) builds one")
        if isinstance(data, (str, bytes)) or not isinstance(data, Sequence):
            raise TypeError(f"data must be a list of per-worker data, got {type(data).__name__}; {fix}")
        if len(data) != self.num_workers:
            raise ValueError(f"data has {len(data)} entries for {self.num_workers} workers; {fix}")
        lengths = []
        for w, part in enumerate(data):
            if not hasattr(part, "__iter__") or not hasattr(part, "__len__") or iter(part) is part:
                raise TypeError(f"data[{w}] must be re-iterable with a length (a list of batches or fa.batches(...)), "
                                f"got {type(part).__name__}")
            lengths.append(len(part))
            if lengths[-1] < 1:
                raise ValueError(f"data[{w}] has no batches; every worker needs at least one batch per epoch")
        if self.mode == "sync" and len(set(lengths)) > 1:
            raise ValueError(f"mode='sync' steps all workers together, so each needs the same number of batches per "
                             f"epoch; got {lengths}. Give every worker equally many (shard_batches does), or use "
                             f"mode='async'")
        return lengths

    # ---- workers ---------------------------------------------------------------------
    def _send_data(self, data: Sequence[Any]) -> None:
        ray = self._ray
        self._data_refs = [ray.put(part) for part in data]
        self._live = [w for w in range(self.num_workers) if w not in self.dropped_workers]
        calls = {w: self.workers[w].set_data.remote(self._data_refs[w]) for w in self._live}
        # A worker Ray cannot place (too few CPUs for worker_options) would
        # otherwise make fit wait forever without a word.
        ready, _ = ray.wait(list(calls.values()), num_returns=len(calls), timeout=self.start_timeout)
        if len(ready) < len(calls):
            raise RuntimeError(f"{len(calls) - len(ready)} of {len(calls)} workers did not start within "
                               f"start_timeout={self.start_timeout} s. Each asks for {self._worker_options}; Ray has "
                               f"{ray.available_resources()} free. Lower worker_options['num_cpus'], use fewer "
                               f"workers, or shut down other DataParallel objects")
        for w, call in calls.items():
            try:
                ray.get(call)
            except ray.exceptions.RayActorError:  # died between two fits: a fresh one gets the data
                self.workers[w] = self._new_worker(w)

    def _new_worker(self, w: int) -> Any:
        return self._worker_class.remote(w, self._loss_ref, self.layout, self._data_refs[w])

    def _submit(self, w: int, epoch: int, index: int) -> Tuple[Any, List[Any]]:
        refs = self.workers[w].compute.options(num_returns=1 + self.layout.num_shards).remote(
            epoch, index, *self._param_refs)
        return refs[0], refs[1:]

    def _replace(self, w: int, progress: _EpochProgress, error: BaseException) -> bool:
        """Worker ``w`` died (``error`` says how): start a new one in its place
        (True), or drop it once it has used up its restarts (False)."""
        self._ray.kill(self.workers[w], no_restart=True)
        self.worker_restarts[w] += 1
        progress.restarts += 1
        if self.worker_restarts[w] > self.max_worker_restarts:
            self._live.remove(w)
            self.dropped_workers.append(w)
            if not self._live:
                raise RuntimeError(f"every worker died more than max_worker_restarts={self.max_worker_restarts} "
                                   f"times; training cannot go on (the servers keep the last applied step). "
                                   f"The last death: {str(error).strip().splitlines()[-1]}") from error
            return False
        self.workers[w] = self._new_worker(w)
        return True

    # ---- the update (shared by both modes) -------------------------------------------------
    def _push_hyperparameters(self) -> None:
        """Send the template's hyperparameters to the servers when a schedule
        or callback changed them (actor calls from here run in order, so
        they take effect from the next update)."""
        hyper = self.optimizer.hyperparameters
        if hyper != self._sent_hyper:
            self._ray.get([srv.configure.remote(hyper) for srv in self.servers])
            self._sent_hyper = hyper

    def _update(self, calls: Mapping[int, Tuple[Any, List[Any]]], then: Optional[Callable[[], None]] = None
                ) -> Dict[str, Any]:
        """Apply update ``self.step`` on every shard from the workers' results
        ``calls[w] = (info ref, [grad ref per shard])``, combined in worker order.
        The refs go to the servers as they are: a server starts as soon as the
        workers' objects exist, without a round trip through the driver.

        Without clipping, skip or raise, each server combines and steps in one
        call. Otherwise each server first reduces (per-chunk sums of squares,
        non-finite count), then every server gets all the reduce results and
        adds them up in the order one fused optimizer over all params would
        (key paths in tree order, chunks in order): the norm, the clipping
        scale and the skip/raise decision are single-process training's, the
        same on every shard, and no server waits for the driver. ``then``
        runs once the update is submitted and the new parameters' refs are
        known, before waiting for it."""
        ray, k = self._ray, self.step
        hyper = self._sent_hyper
        order = sorted(calls)
        info_refs = [calls[w][0] for w in order]

        def parts(s: int) -> List[Any]:
            return [*info_refs, *(calls[w][1][s] for w in order)]

        global_pass = needs_global_pass(hyper)
        with self._submit_lock:
            if global_pass:
                reduced = [srv.reduce.remote(k, len(order), *parts(s)) for s, srv in enumerate(self.servers)]
                updates = [srv.apply.options(num_returns=2).remote(k, *reduced) for srv in self.servers]
            else:
                updates = [srv.reduce_and_apply.options(num_returns=2).remote(k, len(order), *parts(s))
                           for s, srv in enumerate(self.servers)]
        self._param_refs = [u[1] for u in updates]
        if then is not None:
            then()
        infos = ray.get([u[0] for u in updates])
        if global_pass:
            norm = infos[0]["norm"]
            if "raised" in infos[0]:
                raise FloatingPointError(f"grads[{infos[0]['raised']!r}] contains NaN or Inf ({infos[0]['nonfinite']} "
                                         f"non-finite value(s) in this step); nothing was updated. Pass "
                                         f"nonfinite='zero' or 'skip' to tolerate them.")
        else:
            norm_sq = [i["norm_sq"] for i in infos]
            norm = math.sqrt(math.fsum(norm_sq)) if None not in norm_sq else None
        self.step += 1
        return {"grad_norm": norm, "skipped": infos[0]["skipped"], "nonfinite": sum(i["nonfinite"] for i in infos),
                "server_seconds": max(i["seconds"] for i in infos)}

    # ---- training ----------------------------------------------------------------------
    def fit(self, data: Sequence[Any], epochs: int = 1, *, checkpoint_dir: Optional[PathLike] = None,
            checkpoint_every: Optional[int] = None, resume: bool = False) -> History:
        """Train for ``epochs`` epochs and return the history (the same
        [`History`][fastadapt.History] as ``Trainer.fit``).

        Each epoch logs ``loss`` (mean over batches, weighted by batch size),
        ``lr``, ``grad_norm`` / ``grad_norm_max`` (the global gradient norm
        before clipping, mean / max over steps), ``nonfinite_steps``,
        ``skipped_steps``, ``nonfinite_grads``, ``steps``, ``samples``,
        ``seconds``, ``samples_per_second``, ``worker_restarts``; sync mode
        ``ray_overhead_ms`` (mean per step of the wall time not spent in
        ``loss_and_grad`` by the slowest worker or in the slowest server's
        update); async mode ``staleness_mean``, ``staleness_max`` and
        ``recomputed`` (gradients recomputed to respect ``max_staleness``).

        Parameters
        ----------
        data
            one entry per worker: that worker's batches of one epoch (a list of batches, or
            ``fa.batches(...)``, whose ``set_epoch`` is called). Sync mode needs the same number of
            batches for every worker; [`shard_batches`][fastadapt.distributed.shard_batches] splits
            arrays that way.
        epochs
            epochs to run, counted from where this object stands (``ps.epoch``), as ``Trainer.fit``.
        checkpoint_dir
            save a checkpoint there after every epoch (and every ``checkpoint_every`` steps); see
            [`save_checkpoint`][fastadapt.distributed.DataParallel.save_checkpoint].
        checkpoint_every
            also save after every this many steps.
        resume
            with ``checkpoint_dir``: if it holds a checkpoint, load it and continue the run that
            wrote it: ``epochs`` then counts from where *that* ``fit`` call started, so running the
            same call again after a crash finishes the same run.
        """
        self._check_open()
        integer("epochs", epochs, 0)
        if checkpoint_every is not None:
            integer("checkpoint_every", checkpoint_every, 1)
            if checkpoint_dir is None:
                raise ValueError("checkpoint_every needs checkpoint_dir= (where to write the checkpoints)")
        if not isinstance(resume, (bool, np.bool_)):
            raise TypeError(f"resume must be True or False, got {resume!r}")
        if resume and checkpoint_dir is None:
            raise ValueError("resume=True needs checkpoint_dir= (where the checkpoint to resume from is)")
        lengths = self._check_data(data)
        if len(self.dropped_workers) >= self.num_workers:
            raise RuntimeError(f"every worker was dropped after dying more than max_worker_restarts="
                               f"{self.max_worker_restarts} times, so there is no one left to train; build a new "
                               f"DataParallel (save_checkpoint first, then fit(checkpoint_dir=..., resume=True))")
        if checkpoint_dir is not None:
            check_writable_dir(checkpoint_dir, "checkpoint_dir")
        # Everything is checked before anything changes: the checkpoint to
        # resume from, and that its position lies within this data.
        checkpoint = None
        if resume and checkpoint_dir is not None and os.path.exists(os.path.join(os.fspath(checkpoint_dir),
                                                                                 CHECKPOINT_FILE)):
            checkpoint = self._read_checkpoint(checkpoint_dir)
        positions, epoch = ((checkpoint["positions"], checkpoint["epoch"]) if checkpoint is not None
                            else (self._positions, self.epoch))
        if any(positions) and any(p > n for p, n in zip(positions, lengths)):
            raise ValueError(f"the checkpoint stopped at batches {positions} of epoch {epoch}, beyond this "
                             f"data's {lengths} batches per epoch; resume with the data of the interrupted run")
        if checkpoint is not None:
            self._install_checkpoint(checkpoint)
        self._resync()
        if checkpoint is None:
            self._fit_start_epoch = self.epoch
        end_epoch = self._fit_start_epoch + int(epochs)
        self.history.info.setdefault("optimizer", {"algorithm": self.optimizer.algorithm,
                                                   **self.optimizer.hyperparameters})
        self.history.info.update(mode=self.mode, num_workers=self.num_workers, num_shards=self.layout.num_shards)
        self.stop_training = False
        self._send_data(data)
        self._display = make_progress(self.progress)
        try:
            for hook in self._hooks("on_train_begin"):
                hook(self)
            while self.epoch < end_epoch and not self.stop_training:
                self._run_epoch(self.epoch, end_epoch - 1, lengths, checkpoint_dir, checkpoint_every)
            for hook in self._hooks("on_train_end"):
                hook(self)
        except BaseException:
            # As with Trainer, a later fit starts the interrupted epoch over;
            # continuing mid-epoch is what a checkpoint (resume=True) is for.
            # The error is this call's: the refs of a failed update would
            # raise it again, so they go (the next fit asks the servers anew).
            self._positions = [0] * self.num_workers
            self._partial = None
            self._param_refs = []
            raise
        finally:
            self._display.close()
            self._display = make_progress(False)
        return self.history

    def _hooks(self, name: str) -> List[Callable[..., Any]]:
        return hooks(self.callbacks, name)

    def _resync(self) -> None:
        """Align the driver's update count with the servers' (a previous fit
        may have been interrupted between two calls)."""
        counts = set(self._ray.get([srv.get_version.remote() for srv in self.servers]))
        if len(counts) != 1:
            raise RuntimeError(f"the parameter servers disagree on the number of applied updates ({sorted(counts)}): "
                               f"an update was interrupted halfway; load a checkpoint (load_checkpoint) to go on")
        self.step = counts.pop()
        self._param_refs = [srv.get_params.remote() for srv in self.servers]

    def _run_epoch(self, epoch: int, last: int, lengths: List[int], checkpoint_dir: Optional[PathLike],
                   checkpoint_every: Optional[int]) -> None:
        progress = self._partial or _EpochProgress()
        self._partial = progress
        started = time.perf_counter() - progress.seconds
        for hook in self._hooks("on_epoch_begin"):
            hook(epoch, self)
        self._display.start_epoch(epoch, last, max(lengths) if self.mode == "sync" else sum(lengths))

        def after_step(step_logs: Dict[str, Any]) -> None:
            progress.seconds = time.perf_counter() - started
            for hook in self._hooks("on_batch_end"):
                hook(self.step - 1, step_logs, self)
            self._display.batch_done(progress.base.loss)
            if checkpoint_every is not None and checkpoint_dir is not None and self.step % checkpoint_every == 0:
                self.save_checkpoint(checkpoint_dir)

        if self.mode == "sync":
            self._sync_epoch(epoch, lengths[0], progress, after_step)
        else:
            self._async_epoch(epoch, lengths, progress, after_step)
        progress.seconds = time.perf_counter() - started
        logs = self._epoch_logs(progress)
        self.history.append(epoch, logs)
        if "lr_min" in logs:  # earlier epochs held the lr constant: min = max = their mean
            self.history.backfill_from("lr_min", "lr")
            self.history.backfill_from("lr_max", "lr")
        self.epoch = epoch + 1
        self._positions = [0] * self.num_workers
        self._partial = None
        recorded = dict(logs)
        for hook in self._hooks("on_epoch_end"):
            hook(epoch, logs, self)
        added = {k: v for k, v in logs.items() if k not in recorded and isinstance(v, (numbers.Real, type(None)))
                 and not isinstance(v, bool)}
        if added:
            self.history.update_last(added)
        if checkpoint_dir is not None:
            self.save_checkpoint(checkpoint_dir)
        self._display.end_epoch(epoch, last, logs, progress.seconds)

    def _epoch_logs(self, progress: _EpochProgress) -> Dict[str, Any]:
        base = progress.base
        steps = max(base.steps, 1)
        logs: Dict[str, Any] = {
            "loss": base.loss,
            # the mean lr the epoch's updates used (not the one standing now,
            # which a callback may already have moved for the next epoch)
            "lr": progress.lr_sum / progress.lr_steps if progress.lr_steps else self.optimizer.hyperparameters["lr"],
            "grad_norm": base.grad_norm_mean, "grad_norm_max": base.grad_norm_max,
            "nonfinite_steps": base.nonfinite_steps, "skipped_steps": progress.skipped,
            "nonfinite_grads": progress.nonfinite,
        }
        if progress.lr_min != progress.lr_max or "lr_min" in self.history:
            logs["lr_min"], logs["lr_max"] = progress.lr_min, progress.lr_max
        logs.update(steps=base.steps, samples=progress.samples, seconds=progress.seconds,
                    samples_per_second=progress.samples / progress.seconds if progress.seconds > 0 else math.nan,
                    worker_restarts=progress.restarts)
        if self.mode == "sync":
            logs["ray_overhead_ms"] = progress.overhead / steps * 1e3
        else:
            logs.update(staleness_mean=progress.staleness_sum / steps, staleness_max=progress.staleness_max,
                        recomputed=progress.discarded)
        return logs

    def _record(self, progress: _EpochProgress, infos: List[Dict[str, Any]], outcome: Dict[str, Any]) -> Dict[str, Any]:
        samples = sum(i["samples"] for i in infos)
        loss = math.fsum(i["loss"] * i["samples"] for i in infos) / samples
        progress.base.add(loss, samples, outcome["grad_norm"])
        progress.samples += samples
        progress.skipped += int(outcome["skipped"])
        progress.nonfinite += outcome["nonfinite"]
        progress.add_lr(self._sent_hyper["lr"])
        return {"loss": loss, "lr": self._sent_hyper["lr"], "grad_norm": outcome["grad_norm"]}

    # ---- sync mode -------------------------------------------------------------------------
    def _sync_epoch(self, epoch: int, num_batches: int, progress: _EpochProgress,
                    after_step: Callable[[Dict[str, Any]], None]) -> None:
        prefetched: Optional[Dict[int, Tuple[Any, List[Any]]]] = None

        def prefetch(index: int) -> Callable[[], None]:
            # Submitted as soon as the update's parameter refs exist: a worker
            # starts the next batch the moment the servers have stepped, not
            # one driver round trip later.
            def submit() -> None:
                nonlocal prefetched
                if index < num_batches:
                    prefetched = {w: self._submit(w, epoch, index) for w in self._live}
            return submit

        ray = self._ray
        for index in range(self._positions[0], num_batches):
            step_started = time.perf_counter()
            self._push_hyperparameters()
            calls = prefetched or {w: self._submit(w, epoch, index) for w in self._live}
            prefetched = None
            while True:
                params_before = self._param_refs
                try:
                    outcome = self._update(calls, then=prefetch(index + 1))
                    break
                except ray.exceptions.RayActorError:
                    # A worker died: the update did not run on any server (Ray
                    # does not start a task whose argument failed), and what
                    # was submitted after it fails too. Replace the dead
                    # workers, recompute their batches at the same parameters.
                    self._param_refs, prefetched = params_before, None
                    if not self._recompute_dead(calls, epoch, index, progress):
                        raise
            infos = ray.get([calls[w][0] for w in sorted(calls)])
            progress.overhead += (time.perf_counter() - step_started - max(i["seconds"] for i in infos)
                                  - outcome["server_seconds"])
            self._positions = [index + 1] * self.num_workers
            after_step(self._record(progress, infos, outcome))

    def _recompute_dead(self, calls: Dict[int, Tuple[Any, List[Any]]], epoch: int, index: int,
                        progress: _EpochProgress) -> bool:
        """Find the workers in ``calls`` that died, replace them and resubmit
        their batch (dropped ones leave ``calls``). False if none died: the
        failure was not a worker's."""
        ray = self._ray
        dead = {}
        for w, (info_ref, _) in calls.items():
            try:
                ray.get(info_ref)
            except ray.exceptions.RayActorError as error:
                dead[w] = error
        for w, died in dead.items():
            del calls[w]
            if self._replace(w, progress, died):
                calls[w] = self._submit(w, epoch, index)
        return bool(dead)

    # ---- async mode --------------------------------------------------------------------------
    def _async_epoch(self, epoch: int, lengths: List[int], progress: _EpochProgress,
                     after_step: Callable[[Dict[str, Any]], None]) -> None:
        """Workers compute as soon as they may; finished gradients are applied
        one at a time, in the order they finish, as far as the staleness
        gate allows (see ``fastadapt.distributed.staleness``)."""
        ray = self._ray
        gate = StalenessGate(self.max_staleness)
        idle: Deque[int] = collections.deque(w for w in self._live if self._positions[w] < lengths[w])
        running: Dict[Any, Tuple[int, List[Any]]] = {}        # info ref -> (worker, grad refs)
        finished: List[Tuple[int, Dict[str, Any], Any, List[Any]]] = []   # (worker, info, info ref, grad refs)

        def start_idle() -> None:
            while idle and gate.may_start():
                w = idle.popleft()
                info_ref, grad_refs = self._submit(w, epoch, self._positions[w])
                running[info_ref] = (w, grad_refs)
                gate.started(w, self.step)

        def apply(item: Tuple[int, Dict[str, Any], Any, List[Any]]) -> None:
            w, info, info_ref, grad_refs = item
            staleness = gate.staleness(w, self.step)
            self._push_hyperparameters()
            outcome = self._update({w: (info_ref, grad_refs)})
            gate.applied(w)
            finished.remove(item)
            progress.staleness_sum += staleness
            progress.staleness_max = max(progress.staleness_max, staleness)
            self._positions[w] += 1
            if self._positions[w] < lengths[w] and w in self._live:
                idle.append(w)
            after_step(self._record(progress, [info], outcome))

        def recompute(w: int) -> None:
            gate.forget(w)
            if w in self._live:
                idle.appendleft(w)

        start_idle()
        while running or finished:
            ready = next((item for item in finished if gate.may_apply(item[0], self.step)), None)
            if ready is not None:
                apply(ready)
            elif running:
                done, _ = ray.wait(list(running), num_returns=1)
                w, grad_refs = running.pop(done[0])
                try:
                    finished.append((w, ray.get(done[0]), done[0], grad_refs))
                except ray.exceptions.RayActorError as error:
                    self._replace(w, progress, error)
                    recompute(w)
            else:
                # Every unapplied gradient is done and the bound lets only one
                # of those read at the oldest version through: apply the first
                # to finish, recompute the others on fresh parameters.
                apply(finished[0])
                for w in gate.too_stale(self.step):
                    finished[:] = [item for item in finished if item[0] != w]
                    progress.discarded += 1
                    recompute(w)
            start_idle()

    # ---- results ---------------------------------------------------------------------------
    def _snapshot(self, optimizer: bool) -> Tuple[int, List[Dict[str, Any]]]:
        """``(update count, each server's state)`` at one update count. A
        server answers between two updates, in the order calls reach it;
        the lock puts this snapshot on the same side of every update on all
        servers. Servers that still disagree had an update interrupted
        after it reached some of them (the driver stopped mid-submission,
        one server failed): their arrays are of different steps, and are
        refused rather than mixed."""
        self._check_open()
        with self._submit_lock:
            refs = [srv.state.remote(optimizer) for srv in self.servers]
        states = self._ray.get(refs)
        versions = [st["version"] for st in states]
        if len(set(versions)) != 1:
            raise RuntimeError(f"the parameter servers have applied different numbers of updates ({versions}, by "
                               f"shard): an update was interrupted after it reached some of them, so their params "
                               f"and optimizer states are of different steps and cannot be combined; load a "
                               f"checkpoint (load_checkpoint) to go on")
        return versions[0], states

    def params(self) -> Any:
        """The current parameters, pulled from the servers: a new tree of
        writeable NumPy arrays shaped like the params you passed, all of one
        step."""
        _, states = self._snapshot(optimizer=False)
        flat = {p: np.array(a, copy=True) for st in states for p, a in st["params"].items()}
        return self.layout.tree(flat)

    def optimizer_state_dict(self) -> Dict[str, Any]:
        """The shards' optimizer states merged into one ``state_dict`` in the
        single-process format: ``fa.make_optimizer(...).load_state_dict`` of it
        continues the same training in one process."""
        _, states = self._snapshot(optimizer=True)
        return self._merge_optimizer_states([st["optimizer"] for st in states])

    def _merge_optimizer_states(self, shard_states: List[Dict[str, Any]]) -> Dict[str, Any]:
        merged_state: Dict[str, Any] = {}
        for sd in shard_states:
            merged_state.update(sd["state"])
        first = shard_states[0]
        return {"algorithm": first["algorithm"], "step": first["step"], "skipped_steps": first["skipped_steps"],
                "total_nonfinite_count": sum(sd["total_nonfinite_count"] for sd in shard_states),
                "hyperparameters": self.optimizer.hyperparameters,
                "state": {p: merged_state[p] for p in self.layout.paths if p in merged_state}}

    def _split_optimizer_state(self, sd: Mapping[str, Any]) -> List[Dict[str, Any]]:
        settings = shard_settings(sd["hyperparameters"])
        return [{"algorithm": sd["algorithm"], "step": sd["step"], "skipped_steps": sd["skipped_steps"],
                 # the count is a sum over shards: shard 0 carries it
                 "total_nonfinite_count": sd["total_nonfinite_count"] if s == 0 else 0,
                 "hyperparameters": settings,
                 "state": {p: sd["state"][p] for p in shard if p in sd["state"]}}
                for s, shard in enumerate(self.layout.shards)]

    def _check_optimizer_state(self, sd: Mapping[str, Any], params: Mapping[str, np.ndarray], where: str,
                               fix: str) -> None:
        """An optimizer state_dict checked by the optimizer's own rules against
        ``params`` (``{key path: array}`` shaped as this model's): format,
        counts, hyperparameters, and the buffers' keys, shapes, dtypes and
        completeness. A shard's optimizer would check the buffers only at its
        first update, in the middle of a later fit, after the load changed
        everything; here the params are known, so it happens first."""
        probe = OptimizerSpec.of(self.optimizer).build()
        try:
            with warnings.catch_warnings():
                # unmatched overrides: DataParallel warned about them once already
                warnings.simplefilter("ignore")
                probe.load_state_dict(sd, params=params)
        except (TypeError, ValueError) as e:
            raise type(e)(f"{where}: {e}; {fix}") from None

    # ---- checkpoints -------------------------------------------------------------------------
    def save_checkpoint(self, directory: PathLike) -> str:
        """Write the whole training state to ``directory/checkpoint.npz``:
        params, the merged optimizer state, the update count, the data
        position (epoch and next batch of each worker), the running epoch's
        sums, the history and the callbacks' states. The file is replaced
        only once the new one is complete. Returns its path."""
        version, states = self._snapshot(optimizer=True)
        if any(self._positions) and version != self.step:
            # Mid-epoch, the data positions and epoch sums are the driver's at
            # update self.step: the servers' arrays must be of that update.
            raise RuntimeError(f"save_checkpoint ran while fit was between two updates (the servers are at update "
                               f"{version}, the driver at {self.step}); save from a callback or with "
                               f"fit(checkpoint_dir=...)")
        params = {p: a for st in states for p, a in st["params"].items()}
        state = {
            "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION,
            "mode": self.mode, "num_workers": self.num_workers,
            # the servers' count: after an interrupted fit it can be ahead of
            # the driver's, and it is the count of the arrays written here
            "step": version, "epoch": self.epoch, "fit_start_epoch": self._fit_start_epoch,
            "positions": list(self._positions),
            "epoch_progress": self._partial.to_dict() if self._partial is not None and any(self._positions) else None,
            "params": {p: params[p] for p in self.layout.paths},
            "optimizer": self._merge_optimizer_states([st["optimizer"] for st in states]),
            "worker_restarts": list(self.worker_restarts), "dropped_workers": list(self.dropped_workers),
            "callbacks": [{"type": type(cb).__name__,
                           "state": cb.state_dict() if callable(getattr(cb, "state_dict", None)) else None}
                          for cb in self.callbacks],
            "history": self.history.to_dict(),
        }
        path = os.path.join(check_writable_dir(directory, "checkpoint directory"), CHECKPOINT_FILE)
        save_state(path, state)    # the shared writer: complete new file or the old one, never a mix
        return path

    def load_checkpoint(self, directory: PathLike) -> None:
        """Restore what [`save_checkpoint`][fastadapt.distributed.DataParallel.save_checkpoint]
        wrote (into this object's servers; the params' keys, shapes and dtypes, the optimizer's
        algorithm and state, the callbacks and, mid-epoch, ``num_workers`` and ``mode`` must match).
        Everything is checked before anything changes: a checkpoint that does not fit raises and
        leaves this object as it was. The next [`fit`][fastadapt.distributed.DataParallel.fit]
        continues from the saved position."""
        self._check_open()
        self._install_checkpoint(self._read_checkpoint(directory))

    def _read_checkpoint(self, directory: PathLike) -> Dict[str, Any]:
        """Read and check a checkpoint against this object; changes nothing."""
        path = os.path.join(os.fspath(directory), CHECKPOINT_FILE)
        if not os.path.exists(path):
            raise FileNotFoundError(f"no checkpoint at {path}; save one with save_checkpoint or fit(checkpoint_dir=)")
        sd = load_state(path)
        if not isinstance(sd, Mapping) or sd.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{path} is not a DataParallel checkpoint")
        version = sd.get("version")
        if type(version) is not int or version != CHECKPOINT_VERSION:  # 1.0 and True are not version 1
            raise ValueError(f"{path}: unsupported checkpoint version {version!r}, expected the integer "
                             f"{CHECKPOINT_VERSION}")
        missing = [name for name in CHECKPOINT_ENTRIES if name not in sd]
        if missing:
            raise ValueError(f"{path} lacks {missing}; it was not written by DataParallel.save_checkpoint")
        self._check_checkpoint_fields(path, sd)
        fix = "load a checkpoint of the same model"
        params = sd["params"]
        if not isinstance(params, Mapping) or set(params) != set(self.layout.paths):
            keys = sorted(params) if isinstance(params, Mapping) else type(params).__name__
            raise ValueError(f"{path} holds params {keys}, this model has {sorted(self.layout.paths)}; {fix}")
        for p in self.layout.paths:
            arr = params[p]
            if not isinstance(arr, np.ndarray) or arr.dtype.name != self.layout.dtypes[p]:
                got = arr.dtype.name if isinstance(arr, np.ndarray) else type(arr).__name__
                raise TypeError(f"{path}: params[{p!r}] is {got}, this model's is {self.layout.dtypes[p]}; {fix}")
            if arr.shape != self.layout.shapes[p]:
                raise ValueError(f"{path}: params[{p!r}] has shape {arr.shape}, this model's has "
                                 f"{self.layout.shapes[p]}; {fix}")
        opt = sd["optimizer"]
        if not isinstance(opt, Mapping) or opt.get("algorithm") != self.optimizer.algorithm:
            got = opt.get("algorithm") if isinstance(opt, Mapping) else type(opt).__name__
            raise ValueError(f"{path} was written with {got!r}, this DataParallel runs "
                             f"{self.optimizer.algorithm!r}; pass the same optimizer")
        # the params were checked against this model's just above
        self._check_optimizer_state(opt, params, f"{path}: optimizer", fix)
        positions = list(sd["positions"])
        if any(positions) and sd["mode"] != self.mode:
            # async workers stop at different batches; sync would restart them
            # all at one position, and the epoch's numbers mean other things
            raise ValueError(f"{path} stopped mid-epoch in mode={sd['mode']!r}; resume it with "
                             f"mode={sd['mode']!r} (or from an end-of-epoch checkpoint)")
        if any(positions) and len(positions) != self.num_workers:
            raise ValueError(f"{path} stopped mid-epoch with {len(positions)} workers; resume with "
                             f"num_workers={len(positions)} (or from an end-of-epoch checkpoint)")
        names = [type(cb).__name__ for cb in self.callbacks]
        saved_names = [entry["type"] for entry in sd["callbacks"]]
        if saved_names != names:
            raise ValueError(f"{path} has callbacks {saved_names}, this DataParallel has {names}; build it with the "
                             f"same callbacks in the same order")
        try:
            history = History.from_dict(sd["history"])
            progress = _EpochProgress.from_dict(sd["epoch_progress"]) if sd["epoch_progress"] else None
        except (TypeError, ValueError, KeyError) as e:
            raise ValueError(f"{path}: its history or epoch progress is damaged ({type(e).__name__}: {e})") from None
        return {"sd": sd, "history": history, "progress": progress,
                "positions": positions if any(positions) else [0] * self.num_workers, "epoch": sd["epoch"]}

    @staticmethod
    def _check_checkpoint_fields(path: str, sd: Mapping[str, Any]) -> None:
        """Types and ranges of the checkpoint's counters and lists, so a
        damaged file fails here, not inside the next fit."""
        def count(name: str, value: Any) -> int:
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) \
                    or not 0 <= value <= 2 ** 62:
                raise ValueError(f"{path}: {name} must be an integer >= 0, got {value!r}")
            return int(value)

        for name in ("step", "epoch", "fit_start_epoch", "num_workers"):
            count(name, sd[name])
        if sd["fit_start_epoch"] > sd["epoch"]:
            raise ValueError(f"{path}: fit_start_epoch {sd['fit_start_epoch']} is after epoch {sd['epoch']}")
        if sd["mode"] not in MODES:
            raise ValueError(f"{path}: mode must be 'sync' or 'async', got {sd['mode']!r}")
        for name in ("positions", "worker_restarts", "dropped_workers"):
            if not isinstance(sd[name], list):
                raise ValueError(f"{path}: {name} must be a list of integers, got {type(sd[name]).__name__}")
            for i, v in enumerate(sd[name]):
                count(f"{name}[{i}]", v)
        if any(w >= len(sd["worker_restarts"]) for w in sd["dropped_workers"]):
            raise ValueError(f"{path}: dropped_workers {sd['dropped_workers']} name workers it does not have")
        if sd["epoch_progress"] is not None and not isinstance(sd["epoch_progress"], Mapping):
            raise ValueError(f"{path}: epoch_progress must be a dict or None, got "
                             f"{type(sd['epoch_progress']).__name__}")
        entries = sd["callbacks"]
        if not isinstance(entries, list) or not all(isinstance(e, Mapping) and set(e) == {"type", "state"}
                                                    for e in entries):
            raise ValueError(f"{path}: callbacks must be a list of {{'type', 'state'}} entries")

    def _install_checkpoint(self, checkpoint: Mapping[str, Any]) -> None:
        """Put a checkpoint ``_read_checkpoint`` accepted in place."""
        sd = checkpoint["sd"]
        opt = sd["optimizer"]
        # A callback may still refuse its state: the ones already loaded get
        # theirs back, and nothing else has changed yet.
        before = [cb.state_dict() if callable(getattr(cb, "state_dict", None)) else None for cb in self.callbacks]
        try:
            for cb, entry in zip(self.callbacks, sd["callbacks"]):
                if entry["state"] is not None:
                    cb.load_state_dict(entry["state"])
        except BaseException:
            for cb, state in zip(self.callbacks, before):
                if state is not None:
                    cb.load_state_dict(state)
            raise
        with self._submit_lock:
            loads = [srv.load.remote(shard, shard_sd, sd["step"]) for srv, shard, shard_sd in
                     zip(self.servers, self.layout.split(sd["params"]), self._split_optimizer_state(opt))]
        self._ray.get(loads)
        # The shards' state carries their own settings (never clipping, say);
        # the global rules (max_grad_norm, nonfinite) are the checkpoint's too.
        self._ray.get([srv.configure.remote(opt["hyperparameters"]) for srv in self.servers])
        set_hyperparameters(self.optimizer, opt["hyperparameters"])
        self._sent_hyper = self.optimizer.hyperparameters
        self.history = checkpoint["history"]
        self.step, self.epoch, self._fit_start_epoch = sd["step"], sd["epoch"], sd["fit_start_epoch"]
        self._positions = list(checkpoint["positions"])
        self._partial = checkpoint["progress"]
        if len(sd["worker_restarts"]) == self.num_workers:
            self.worker_restarts = list(sd["worker_restarts"])
            self.dropped_workers = list(sd["dropped_workers"])

    # ---- lifecycle -----------------------------------------------------------------------------
    @property
    def started_ray(self) -> bool:
        """Whether this object started the Ray session it uses (and so shuts it
        down, once no other DataParallel uses it)."""
        return self._session.started

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this DataParallel was shut down; build a new one")
        if not self._session.alive():
            # Ray would otherwise start a new, empty session on the next call
            # and fail there with "Can't find actor".
            raise RuntimeError("the Ray session this DataParallel runs in was shut down (ray.shutdown()), and its "
                               "workers and servers with it; build a new DataParallel (resume from a checkpoint "
                               "with fit(checkpoint_dir=..., resume=True))")

    def shutdown(self) -> None:
        """Stop the workers and servers, and Ray itself if this object started
        it (once no other DataParallel uses that Ray). Pull what you need
        ([`params`][fastadapt.distributed.DataParallel.params]) first. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._session.alive():   # not after a ray.shutdown(): the handles are gone with their session
                for handle in self.workers + self.servers:
                    self._ray.kill(handle, no_restart=True)
        finally:
            self.workers, self.servers = [], []
            self._session.close()

    def __enter__(self) -> "DataParallel":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        return (f"DataParallel({self.optimizer!r}, mode={self.mode!r}, num_workers={self.num_workers}, "
                f"num_shards={self.layout.num_shards}, epoch={self.epoch}, step={self.step})")
