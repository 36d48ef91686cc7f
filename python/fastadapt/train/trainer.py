"""The training loop: epochs of fused optimizer steps, a history, callbacks,
progress and checkpoints, for any model given as ``params`` plus
``loss_and_grad(params, batch) -> (loss, grads)``.

The seed article's ``AdvancedDynamicTuner`` done as Keras users expect
(``fit`` returns a History; callbacks follow ``fastadapt.callbacks``):

    model = fa.models.MLP([784, 128, 10], seed=0)
    trainer = fa.Trainer("adam", lr=1e-3, loss_and_grad=model.loss_and_grad, params=model.params,
                         loss_fn=model.loss, max_grad_norm=1.0, callbacks=[fa.EarlyStopping(patience=3)])
    history = trainer.fit(fa.batches(X, y, 32, shuffle=True, seed=0), epochs=20,
                          validation=(X_val, y_val), metrics={"accuracy": model.accuracy})
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import math
import numbers
import threading
import time
import warnings
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Sized, Tuple, Union

import numpy as np

from .._files import check_writable_file
from .._tree import flatten_any
from ..gradients import global_norm
from ..optim import _lowp
from ..optim import Optimizer, make_optimizer
from .callbacks.base import check_callbacks, hooks
from .checkpoints import PathLike, load_state, save_state
from .history import History
from .progress import make_progress

__all__ = ["Trainer"]

LossAndGrad = Callable[[Any, Any], Tuple[float, Any]]
Metric = Callable[[Any, Any], float]

CHECKPOINT_FORMAT = "fastadapt.trainer"
CHECKPOINT_VERSION = 1
# Per-layer gradient norms are logged for trees with this many top-level
# entries at most: enough for layer-wise models, not a flood of keys.
MAX_LAYER_NORMS = 32


def _batch_size(batch: Any) -> int:
    """Samples in a batch, for weighting means: len of its first array."""
    first = batch[0] if isinstance(batch, (tuple, list)) and batch else batch
    try:
        return max(len(first), 1)
    except TypeError:
        return 1


# What fastadapt passes each hook (Keras's pass (epoch, logs): the trainer is extra here).
_HOOK_ARGS = {"on_train_begin": ("trainer",), "on_epoch_begin": ("epoch", "trainer"),
              "on_batch_end": ("step", "logs", "trainer"), "on_epoch_end": ("epoch", "logs", "trainer"),
              "on_train_end": ("trainer",)}


def _check_hook_signatures(callbacks: Sequence[Any]) -> None:
    """A TypeError before any training for a hook that cannot take what fit passes it."""
    for i, cb in enumerate(callbacks):
        for name, args in _HOOK_ARGS.items():
            hook = getattr(cb, name, None)
            if not callable(hook):
                continue
            try:
                signature = inspect.signature(hook)
            except (TypeError, ValueError):  # no signature to read (a builtin): the call decides
                continue
            try:
                signature.bind(*args)
            except TypeError:
                raise TypeError(f"callbacks[{i}] ({type(cb).__name__}).{name}{signature} cannot be called as "
                                f"{name}({', '.join(args)}), which is how fit calls it (Keras's hooks take "
                                f"(epoch, logs); fastadapt's take the trainer too); define "
                                f"{name}(self, {', '.join(args)}), or pass Keras-style functions through "
                                f"fa.LambdaCallback({name}=...)") from None


def _as_loss(value: Any, where: str) -> float:
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(())[()]
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        raise TypeError(f"{where} must return a real scalar loss, got {type(value).__name__} {value!r:.80}")
    return float(value)


def _hyperparameter_values(optimizer: Optimizer) -> Dict[str, float]:
    """Numeric hyperparameters by history name (tuples flattened: betas0, betas1;
    a member that is not a number, as Adafactor's ``eps=(None, 1e-3)``, is left out)."""
    return _flatten_hyperparameters(optimizer.hyperparameters)


def _flatten_hyperparameters(hyperparameters: Mapping[str, Any]) -> Dict[str, float]:
    out: Dict[str, float] = {}
    for name, value in hyperparameters.items():
        if isinstance(value, tuple):
            for i, v in enumerate(value):
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    out[f"{name}{i}"] = float(v)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[name] = float(value)
    return out


def _has_eval_point(optimizer: Optimizer) -> bool:
    """Whether ``optimizer.eval`` / ``optimizer.train`` move the params
    (Schedule-Free keeps a training sequence and evaluates at its average);
    the base class's are no-ops, so only an override needs the trainer to
    keep the training point aside while the params show the other one."""
    cls = type(optimizer)
    return cls.eval is not Optimizer.eval or cls.train is not Optimizer.train


def _switch(optimizer: Optimizer, mode: str, params: Any) -> None:
    """``optimizer.eval(params)`` or ``optimizer.train(params)``."""
    if mode == "eval":
        optimizer.eval(params)
    else:
        optimizer.train(params)


def _digest(leaves: Sequence[np.ndarray]) -> bytes:
    """The bytes of the arrays, hashed: tells whether the params were changed
    (a restored best, a user's edit) while they showed the eval point,
    without a second copy of them. NaN payloads and signed zeros count."""
    h = hashlib.blake2b(digest_size=16)
    for leaf in leaves:
        # (an ndarray is a buffer; numpy's stubs do not say so to Python < 3.12)
        h.update(np.ascontiguousarray(leaf).reshape(-1).view(np.uint8))  # type: ignore[arg-type]
    return h.digest()


def _learned_values(optimizer: Optimizer) -> Dict[str, float]:
    """What a learning-rate-free rule learned, after a step, by history name:
    ``lr_estimate`` (the effective step size, when the rule has one) and
    ``adapted/<name>`` for each learned scalar (Prodigy's ``d``, DoG's ``eta``)."""
    out: Dict[str, float] = {}
    estimate = optimizer.lr_estimate
    if estimate is not None:
        out["lr_estimate"] = float(estimate)
    for name, value in optimizer.adapted.items():
        out[f"adapted/{name}"] = float(value)
    return out


class _LearnedTrace:
    """Mean, min and max over one epoch's steps of each learned value (NaN
    steps left out; an epoch with only NaN gets NaN)."""

    def __init__(self) -> None:
        self._stats: Dict[str, List[float]] = {}  # name -> [sum, count, min, max, nan seen]

    def add(self, values: Mapping[str, float]) -> None:
        for name, v in values.items():
            st = self._stats.setdefault(name, [0.0, 0, math.inf, -math.inf, 0])
            if math.isnan(v):
                st[4] = 1
                continue
            st[0] += v
            st[1] += 1
            st[2] = min(st[2], v)
            st[3] = max(st[3], v)

    def summary(self) -> Dict[str, Tuple[float, float, float]]:
        out = {}
        for name, (total, count, low, high, _) in self._stats.items():
            if not count:
                out[name] = (math.nan, math.nan, math.nan)
            elif low == high:
                out[name] = (low, low, high)  # constant: the value itself, not sum/count (which may round)
            else:
                # inf - inf is NaN: a step size that reached both infinities has no mean
                mean = total / count
                out[name] = (mean if math.isnan(mean) else min(max(mean, low), high), low, high)
        return out


class _HyperTrace:
    """The numeric hyperparameters the optimizer used for each step of one
    epoch, summarized per name as mean (over steps), min and max.

    Read before every step, because a per-step schedule moves them between
    steps and a callback at epoch end moves them for the *next* epoch: the
    values standing when the epoch ends are not what it used. Cheap per
    step: runs of steps with equal hyperparameters (the usual case) cost one
    dict comparison each; only a change is flattened and added up.
    """

    def __init__(self) -> None:
        self._held: Optional[Dict[str, Any]] = None  # the hyperparameters of the current run of steps
        self._run = 0                                 # steps in that run
        self.steps = 0
        self._sum: Dict[str, float] = {}
        self.min: Dict[str, float] = {}
        self.max: Dict[str, float] = {}

    def add(self, hyperparameters: Dict[str, Any]) -> None:
        """Count one step made with ``hyperparameters`` (a copy the caller will not change)."""
        if hyperparameters == self._held:
            self._run += 1
            return
        self._flush()
        self._held, self._run = hyperparameters, 1

    def _flush(self) -> None:
        if not self._run:
            return
        for name, value in _flatten_hyperparameters(self._held or {}).items():
            self._sum[name] = self._sum.get(name, 0.0) + value * self._run
            self.min[name] = min(self.min.get(name, value), value)
            self.max[name] = max(self.max.get(name, value), value)
        self.steps += self._run
        self._run = 0

    def summary(self) -> Dict[str, Tuple[float, float, float]]:
        """``{name: (mean, min, max)}`` over the steps counted so far."""
        self._flush()
        out = {}
        for name, total in self._sum.items():
            low, high = self.min[name], self.max[name]
            # A constant value is returned as it was, not as sum/steps (which may round),
            # and a rounded mean is kept inside the range it averages.
            out[name] = (low if low == high else min(max(total / self.steps, low), high), low, high)
        return out


class _EpochStats:
    """Running sums of one epoch's steps."""

    def __init__(self) -> None:
        self.loss_sum = 0.0
        self.loss_weight = 0
        self.norm_sum = 0.0
        self.norm_count = 0
        self.norm_max = -math.inf
        self.nonfinite_steps = 0
        self.steps = 0

    def add(self, loss: float, weight: int, grad_norm: Optional[float]) -> None:
        self.steps += 1
        finite_norm = grad_norm is None or math.isfinite(grad_norm)
        if not (math.isfinite(loss) and finite_norm):
            self.nonfinite_steps += 1
        if math.isfinite(loss):
            self.loss_sum += loss * weight
            self.loss_weight += weight
        if grad_norm is not None and math.isfinite(grad_norm):
            self.norm_sum += grad_norm
            self.norm_count += 1
            self.norm_max = max(self.norm_max, grad_norm)

    @property
    def loss(self) -> float:
        return self.loss_sum / self.loss_weight if self.loss_weight else math.nan

    @property
    def grad_norm_mean(self) -> float:
        return self.norm_sum / self.norm_count if self.norm_count else math.nan

    @property
    def grad_norm_max(self) -> float:
        return self.norm_max if self.norm_count else math.nan


class Trainer:
    """Fits ``params`` with a fastadapt optimizer over epochs of batches.

    The trainer turns on ``optimizer.track_grad_norm`` so every step's global
    gradient norm (before clipping) is known at no extra pass.

    Two sequences (Schedule-Free): an optimizer whose ``eval(params)`` /
    ``train(params)`` move the params trains at one point and is evaluated
    at another (its average). The trainer switches for you: the steps and
    ``on_batch_end`` see the training point; validation, metrics,
    ``on_epoch_end`` (EarlyStopping's best params, ModelCheckpoint),
    every checkpoint's ``params``, ``on_train_end`` and the params ``fit``
    leaves behind are the evaluation point. The training point is kept
    aside meanwhile and put back bit for bit when training goes on, so
    evaluating, checkpointing or early stopping never changes the training
    trajectory (``opt.train``'s own arithmetic would round it). Params
    changed while they showed the evaluation point (an EarlyStopping
    restore, your edit) are kept: the next epoch starts from what
    ``opt.train`` makes of them. [`eval_params`][fastadapt.Trainer.eval_params] gives you the
    evaluation point anywhere else. Other optimizers have one sequence and
    nothing is copied.

    Attributes a callback may use: ``optimizer``, ``params``, ``history``,
    ``stop_training`` (set True to stop after the current epoch), ``epoch``
    (epochs completed), ``step`` (optimizer steps completed).

    Parameters
    ----------
    optimizer
        a name ``fa.make_optimizer`` knows (``"adam"``, ``"lion"``, ...:
        ``fastadapt.optim.OPTIMIZERS``) or an optimizer instance.
    lr
        the learning rate of a named optimizer (None: its default). Other hyperparameters: pass an
        instance.
    max_grad_norm
        gradient clipping of a named optimizer (None: off).
    nonfinite
        the NaN/Inf policy of a named optimizer, ``"skip"`` by default: a batch with NaN/Inf
        gradients is skipped and counted (the history and the diagnosis report it) instead of
        poisoning the parameters. With an instance, configure it instead.
    loss_and_grad
        ``(params, batch) -> (loss, grads)``, grads shaped like params.
    params
        the parameter tree (nested dicts/lists of float arrays), updated in place.
    loss_fn
        ``(params, batch) -> loss`` for validation (default: the loss of ``loss_and_grad``, whose
        gradient is then computed for nothing).
    callbacks
        objects with some of the hooks of ``fastadapt.callbacks.Callback``.
    progress
        show progress on stderr (a tqdm bar per epoch on a terminal, else a line per epoch); False:
        silent.
    """

    def __init__(self, optimizer: Union[str, Optimizer] = "adam", lr: Optional[float] = None, *,
                 loss_and_grad: LossAndGrad, params: Any, loss_fn: Optional[Callable[[Any, Any], float]] = None,
                 max_grad_norm: Optional[float] = None, nonfinite: Optional[str] = None,
                 callbacks: Optional[Sequence[Any]] = None, progress: bool = True):
        built = self._build_optimizer(optimizer, lr, max_grad_norm, nonfinite)
        if not callable(loss_and_grad):
            raise TypeError(f"loss_and_grad must be a function (params, batch) -> (loss, grads), got "
                            f"{type(loss_and_grad).__name__}")
        if loss_fn is not None and not callable(loss_fn):
            raise TypeError(f"loss_fn must be a function (params, batch) -> loss or None, got "
                            f"{type(loss_fn).__name__}")
        self._check_params(params)
        callbacks = check_callbacks(callbacks)
        if not isinstance(progress, (bool, np.bool_)):
            raise TypeError(f"progress must be True or False, got {progress!r}")
        built.track_grad_norm = True  # only now: a bad argument above leaves a given optimizer untouched
        self.optimizer = built
        self.loss_and_grad = loss_and_grad
        self.loss_fn = loss_fn
        self.params = params
        self.callbacks: List[Any] = list(callbacks)
        self.progress = bool(progress)
        self.history = History()
        self.stop_training = False
        self.stopped_epoch: Optional[int] = None
        self.epoch = 0
        self.step = 0
        # Held by fit for each whole epoch (and its checkpoint), taken by
        # state_dict/load_state_dict: a snapshot from another thread is always
        # an epoch boundary, where params, optimizer, callbacks, history and
        # counters agree and a resumed run continues exactly. Reentrant, so
        # callbacks on the training thread may checkpoint.
        self._state_lock = threading.RLock()
        self._display = make_progress(False)
        # Where the params stand: the training point, or (_at_eval) the point
        # optimizer.eval gave; then _train_point holds the training point
        # (None for a one-sequence optimizer) and _eval_digest the bytes
        # optimizer.eval left, to tell whether anyone changed them since.
        self._at_eval = False
        self._train_point: Optional[List[np.ndarray]] = None
        self._eval_digest: Optional[bytes] = None

    # ---- construction ----------------------------------------------------------
    @staticmethod
    def _build_optimizer(optimizer: Union[str, Optimizer], lr: Optional[float], max_grad_norm: Optional[float],
                         nonfinite: Optional[str]) -> Optimizer:
        if isinstance(optimizer, Optimizer):
            given = [name for name, v in (("lr", lr), ("max_grad_norm", max_grad_norm), ("nonfinite", nonfinite))
                     if v is not None]
            if given:
                raise TypeError(f"Trainer got an optimizer instance and {', '.join(given)}=; set "
                                f"{given[0]} on the instance (e.g. fa.Adam({given[0]}=...)) or pass a name")
            return optimizer
        if not isinstance(optimizer, str):
            raise TypeError(f"optimizer must be a name such as 'adam' or a fastadapt optimizer, got "
                            f"{type(optimizer).__name__}")
        kwargs: Dict[str, Any] = {"nonfinite": "skip" if nonfinite is None else nonfinite,
                                  "max_grad_norm": max_grad_norm}
        if lr is not None:
            kwargs["lr"] = lr
        return make_optimizer(optimizer, **kwargs)

    @staticmethod
    def _check_params(params: Any) -> None:
        paths, leaves = flatten_any(params)
        if not leaves:
            raise ValueError("params is empty; pass the tree of arrays to train")
        for path, leaf in zip(paths, leaves):
            where = f"params[{path!r}]" if path else "params"
            if not isinstance(leaf, np.ndarray) or not _lowp.is_param_dtype(leaf.dtype):
                what = leaf.dtype.name if isinstance(leaf, np.ndarray) else type(leaf).__name__
                raise TypeError(f"{where} must be a float32, float64, float16 or bfloat16 NumPy array, got {what}")

    # ---- callbacks and messages ------------------------------------------------
    def _display_for(self, verbose: Union[None, int, str]) -> Any:
        """The progress display for ``fit(verbose=...)``, checked before anything runs."""
        if verbose is None:
            return make_progress(self.progress)
        if verbose == "auto":  # Keras's default, which is 1 outside a distribution strategy
            verbose = 1
        if isinstance(verbose, (bool, np.bool_)):
            verbose = int(verbose)
        if not isinstance(verbose, numbers.Integral) or verbose not in (0, 1, 2):
            raise ValueError(f"verbose must be 0 (silent), 1 (a progress bar per epoch), 2 (one line per epoch), "
                             f"'auto' or None (the trainer's progress=), got {verbose!r}")
        if verbose == 2:
            # One line per epoch even on a terminal (Keras's verbose=2, for logs
            # kept from a terminal session).
            return make_progress(True, lines=True)
        return make_progress(bool(verbose))


    def _hooks(self, name: str) -> List[Callable[..., Any]]:
        return hooks(self.callbacks, name)

    def log(self, message: str) -> None:
        """Print a message on stderr without tearing the progress bar."""
        self._display.write(message)

    # ---- the evaluation point ------------------------------------------------------
    def _enter_eval(self) -> None:
        """Params to the point to evaluate and save (``optimizer.eval``), the
        training point kept aside. Idempotent."""
        if self._at_eval:
            return
        leaves = flatten_any(self.params)[1]
        kept = [leaf.copy() for leaf in leaves] if _has_eval_point(self.optimizer) else None
        try:
            _switch(self.optimizer, "eval", self.params)
        except BaseException:
            if kept is not None:  # half switched: the training point is still here
                for leaf, saved in zip(leaves, kept):
                    np.copyto(leaf, saved)
            raise
        self.__dict__.update(_at_eval=True, _train_point=kept,
                             _eval_digest=None if kept is None else _digest(leaves))

    def _leave_eval(self) -> None:
        """Params back to the training point (``optimizer.train``): bit for bit
        the one kept aside when the params are as ``optimizer.eval`` left
        them; else what ``optimizer.train`` makes of their new values.
        Idempotent."""
        if not self._at_eval:
            return
        leaves = flatten_any(self.params)[1]
        kept = self._train_point
        untouched = kept is not None and _digest(leaves) == self._eval_digest
        _switch(self.optimizer, "train", self.params)
        if untouched and kept is not None:
            for leaf, saved in zip(leaves, kept):
                np.copyto(leaf, saved)
        self.__dict__.update(_at_eval=False, _train_point=None, _eval_digest=None)

    @contextlib.contextmanager
    def eval_params(self) -> Iterator[Any]:
        """``with trainer.eval_params() as params:`` the params at the point to
        evaluate and save (``optimizer.eval``: Schedule-Free's average; the
        params themselves for one-sequence optimizers). Afterwards they are
        back where they were: the training point bit for bit, if they were
        there and the block left them unchanged. Between epochs and after
        ``fit`` the params already are the evaluation point. With a
        two-sequence optimizer it holds the trainer's lock, so from another
        thread it waits for the current epoch to end."""
        if not _has_eval_point(self.optimizer):
            yield self.params
            return
        with self._state_lock:
            was_training = not self._at_eval
            self._enter_eval()
            try:
                yield self.params
            finally:
                if was_training:
                    self._leave_eval()

    # ---- evaluation ----------------------------------------------------------------
    def evaluate(self, data: Any, metrics: Optional[Mapping[str, Metric]] = None) -> Dict[str, float]:
        """``{"loss": ..., name: ...}`` on ``data``: one batch (e.g. ``(X, y)``), or a
        list of batches (means weighted by batch size). At the evaluation
        point ([`eval_params`][fastadapt.Trainer.eval_params])."""
        metrics = self._check_metrics(metrics)
        parts = data if isinstance(data, list) else [data]
        if not parts:
            raise ValueError("evaluate: data is an empty list; pass a batch such as (X, y) or a list of batches")
        sums = {name: 0.0 for name in ["loss", *metrics]}
        total = 0
        with self.eval_params() as params:
            for batch in parts:
                weight = _batch_size(batch)
                if self.loss_fn is not None:
                    loss = _as_loss(self.loss_fn(params, batch), "loss_fn")
                else:
                    loss = _as_loss(self._loss_and_grad(batch)[0], "loss_and_grad")
                sums["loss"] += loss * weight
                for name, fn in metrics.items():
                    sums[name] += _as_loss(fn(params, batch), f"metric {name!r}") * weight
                total += weight
        return {name: s / total for name, s in sums.items()}

    @staticmethod
    def _check_metrics(metrics: Optional[Mapping[str, Metric]]) -> Dict[str, Metric]:
        if metrics is None:
            return {}
        if not isinstance(metrics, Mapping):
            raise TypeError(f"metrics must be a dict name -> function (params, batch) -> float, got "
                            f"{type(metrics).__name__}; e.g. metrics={{'accuracy': model.accuracy}}")
        for name, fn in metrics.items():
            if not isinstance(name, str) or not name or name == "loss":
                raise ValueError(f"metric names must be non-empty strings other than 'loss', got {name!r}")
            if not callable(fn):
                raise TypeError(f"metrics[{name!r}] must be a function (params, batch) -> float, got "
                                f"{type(fn).__name__}")
        return dict(metrics)

    def _loss_and_grad(self, batch: Any) -> Tuple[Any, Any]:
        out = self.loss_and_grad(self.params, batch)
        if not (isinstance(out, tuple) and len(out) == 2):
            raise TypeError(f"loss_and_grad must return a pair (loss, grads), got {type(out).__name__}")
        return out

    # ---- the loop --------------------------------------------------------------------
    def fit(self, data: Any, epochs: int = 1, *, validation: Any = None,
            metrics: Optional[Mapping[str, Metric]] = None, checkpoint_path: Optional[PathLike] = None,
            verbose: Union[None, int, str] = None) -> History:
        """Train for ``epochs`` more epochs and return the history.

        A callback's ``on_train_begin`` may restore a checkpoint
        (``BackupAndRestore`` does): the epochs then run from the restored
        ``trainer.epoch`` to the last one this call would have run, so
        rerunning an interrupted script's ``fit`` finishes its run.

        Each epoch logs: ``loss`` (mean over finite batch losses, weighted by
        batch size), ``val_loss``, ``val_<metric>``, ``lr`` and every other
        numeric hyperparameter that has changed during training (``betas0``,
        ``momentum``, ...): the value the epoch's steps used, as the mean over
        its steps (read just before each step, so a per-step schedule's
        values count where they were used, and a change made at epoch end,
        such as ReduceLROnPlateau's cut, counts for the next epoch); from the
        first epoch in which it varied between steps, also ``<name>_min`` and
        ``<name>_max`` (earlier epochs get their constant value there). Only
        the default group's values are logged, not those of ``overrides``.
        ``grad_norm`` / ``grad_norm_max`` (mean / max
        over steps of the global norm before clipping), ``grad_norm.<layer>``
        (the last batch's norm per top-level entry of ``params``),
        ``param_norm`` (of the training point, after the epoch),
        ``nonfinite_steps`` (steps with a NaN/Inf loss or gradient),
        ``skipped_steps`` and ``nonfinite_grads`` (the optimizer's counters,
        this epoch), ``steps`` and ``seconds``.

        A learning-rate-free rule's learned step size, read after every step:
        ``lr_estimate`` (``optimizer.lr_estimate``, the effective step size)
        and ``adapted/<name>`` for each of ``optimizer.adapted`` (Prodigy's
        ``adapted/d``), as the mean over the epoch's steps, with
        ``<key>_min`` / ``<key>_max`` from the first epoch in which it varied
        (as for the lr); the per-batch logs of ``on_batch_end`` hold each
        step's values. Rules that learn nothing log none of these keys.

        The steps run at the training point; from the end of an epoch's
        steps (validation, ``on_epoch_end``, checkpoints) to the start of the
        next, and when ``fit`` returns, the params are the evaluation point
        ([`eval_params`][fastadapt.Trainer.eval_params]; the same for one-sequence optimizers).

        Parameters
        ----------
        data
            the batches of one epoch, iterated once per epoch: a list, ``fa.batches(...)`` (its
            ``set_epoch`` is called, so shuffles are reproducible and resumable), any re-iterable,
            or a function ``epoch -> iterable of batches``. A one-shot iterator (a generator) only
            serves ``epochs=1``.
        epochs
            how many epochs to run now. Epoch numbers continue from ``trainer.epoch``, so after
            ``load_checkpoint`` a ``fit(data, epochs=3)`` resumes where the saved run stopped (Keras
            would need ``initial_epoch``).
        validation
            evaluated after each epoch (see [`evaluate`][fastadapt.Trainer.evaluate]): logs ``val_loss`` and
            ``val_<metric>``.
        metrics
            ``{name: (params, batch) -> float}``, on ``validation``.
        checkpoint_path
            save a checkpoint there after every epoch, once its callbacks ran (so before
            ``on_train_end``: EarlyStopping's final restore of the best params is not in it, and
            resuming from the last one continues the run exactly).
        verbose
            Keras's switch for this call: 0 silent, 1 a progress bar per epoch (as
            ``progress=True``: on a terminal with tqdm, else a line per epoch), 2 one line per
            epoch, ``"auto"`` 1. None (the default): the trainer's ``progress=``.
        """
        if isinstance(epochs, bool) or not isinstance(epochs, numbers.Integral):
            raise TypeError(f"epochs must be an int >= 0, got {type(epochs).__name__} {epochs!r}")
        if epochs < 0:
            raise ValueError(f"epochs must be an int >= 0, got {epochs!r}")
        metrics = self._check_metrics(metrics)
        if metrics and validation is None:
            warnings.warn("fit(metrics=...) are computed on validation=, and none was given: they are not "
                          "logged; pass validation=(X_val, y_val)", UserWarning, stacklevel=2)
        _check_hook_signatures(self.callbacks)
        if isinstance(validation, list) and not validation:
            raise ValueError("validation is an empty list; pass a batch such as (X, y), a list of batches, or None")
        epoch_batches = self._epoch_source(data, int(epochs))
        display = self._display_for(verbose)
        if checkpoint_path is not None:  # before the first epoch, not after it
            check_writable_file(checkpoint_path, "checkpoint_path")
        self.stop_training = False
        self.stopped_epoch = None
        hyper_at_start = _hyperparameter_values(self.optimizer)
        # The configuration a run started with (fa.diagnose tailors advice to it, e.g. clipping already on).
        self.history.info.setdefault("optimizer", {"algorithm": self.optimizer.algorithm,
                                                   **self.optimizer.hyperparameters})
        first, last = self.epoch, self.epoch + int(epochs) - 1
        self._display = display
        try:
            for hook in self._hooks("on_train_begin"):
                hook(self)
            # A callback may have restored a checkpoint of this same run
            # (BackupAndRestore): go on from there, to the same last epoch.
            first = max(first, self.epoch)
            for epoch in range(first, last + 1):
                with self._state_lock:
                    self._run_epoch(epoch, last, epoch_batches(epoch), validation, metrics, hyper_at_start)
                    if checkpoint_path is not None:
                        self.save_checkpoint(checkpoint_path)
                    # The epoch boundary, after every callback's on_epoch_end and the
                    # counters: where a backup (BackupAndRestore) resumes exactly.
                    # Internal: a user's hook cannot see this point otherwise.
                    for hook in self._hooks("_on_epoch_saved"):
                        hook(epoch, self)
                if self.stop_training:
                    self.stopped_epoch = epoch
                    break
            with self._state_lock:
                self._enter_eval()  # (already there after an epoch) what the run hands back is the eval point
            for hook in self._hooks("on_train_end"):
                hook(self)
        finally:
            self._display.close()
            self._display = make_progress(False)
        return self.history

    def _epoch_source(self, data: Any, epochs: int) -> Callable[[int], Iterable[Any]]:
        if callable(data) and not hasattr(data, "__iter__"):
            return data
        # Keras's fit(X, y) habits: iterated, an array gives one row per "batch", a pair (X, y) two batches.
        if isinstance(data, np.ndarray):
            raise TypeError(f"data is one array ({data.dtype} {data.shape}), which would be iterated row by row as "
                            f"batches; pass fa.batches(X, batch_size=...) or [X] for one full batch")
        if isinstance(data, tuple) and len(data) == 2 and all(isinstance(a, np.ndarray) and a.ndim for a in data) \
                and len(data[0]) == len(data[1]) and data[0].shape != data[1].shape:
            raise TypeError(f"data is a pair of arrays {data[0].shape} and {data[1].shape}, which would be two "
                            f"batches; for (X, y) pass fa.batches(X, y, batch_size=...) or [(X, y)] for one full "
                            f"batch")
        if not hasattr(data, "__iter__"):
            raise TypeError(f"data must be an iterable of batches (a list, fa.batches(...)) or a function "
                            f"epoch -> batches, got {type(data).__name__}")
        if hasattr(data, "__len__") and len(data) == 0:
            raise ValueError("data has no batches (an empty dataset); pass at least one batch per epoch")
        if iter(data) is data and epochs > 1:
            raise TypeError("data is a one-shot iterator (e.g. a generator), which is exhausted after one epoch; "
                            "pass a list of batches, fa.batches(X, y, batch_size), or a function epoch -> batches")
        set_epoch = getattr(data, "set_epoch", None)

        def batches_of(epoch: int) -> Iterable[Any]:
            if callable(set_epoch):
                set_epoch(epoch)
            return data

        return batches_of

    def _run_epoch(self, epoch: int, last: int, batches: Iterable[Any], validation: Any,
                   metrics: Dict[str, Metric], hyper_at_start: Dict[str, float]) -> None:
        opt = self.optimizer
        started = time.perf_counter()
        self._leave_eval()  # the steps run at the training point
        for hook in self._hooks("on_epoch_begin"):
            hook(epoch, self)
        batch_hooks = self._hooks("on_batch_end")
        skipped_before, nonfinite_before = opt.skipped_steps, opt.total_nonfinite_count
        stats = _EpochStats()
        trace = _HyperTrace()
        learned = _LearnedTrace()
        grads: Any = None
        self._display.start_epoch(epoch, last, len(batches) if isinstance(batches, Sized) else None)
        for batch in batches:
            loss_value, grads = self._loss_and_grad(batch)
            loss = _as_loss(loss_value, "loss_and_grad")
            if self.step == 0:
                # Where training starts: a first epoch whose mean loss is far above
                # this diverged within the epoch (fa.diagnose's lr_too_high).
                self.history.info.setdefault("initial_loss", loss)
                self.history.info.setdefault("initial_param_norm", global_norm(self.params))
            used = opt.hyperparameters  # what this step runs with (a copy: later changes do not reach it)
            trace.add(used)
            lr = used["lr"]
            opt.update(self.params, grads)
            grad_norm = opt.last_grad_norm
            stats.add(loss, _batch_size(batch), grad_norm)
            step_learned = _learned_values(opt)
            learned.add(step_learned)
            self.step += 1
            if batch_hooks:
                step_logs = {"loss": loss, "lr": lr, "grad_norm": grad_norm, **step_learned}
                for hook in batch_hooks:
                    hook(self.step - 1, step_logs, self)
            self._display.batch_done(stats.loss)
        if stats.steps == 0:
            raise ValueError(f"epoch {epoch} had no batches; data must yield at least one batch per epoch")
        param_norm = global_norm(self.params)  # of the training point, as the gradients are
        # From here to the next epoch (validation, metrics, the callbacks'
        # on_epoch_end, checkpoints) the params are the evaluation point.
        self._enter_eval()

        logs: Dict[str, Any] = {"loss": stats.loss}
        if validation is not None:
            for name, value in self.evaluate(validation, metrics).items():
                logs[f"val_{name}"] = value
        # The hyperparameters this epoch's steps used (not the values standing
        # now: a per-step schedule has already moved them to the next epoch's).
        used_values = trace.summary()
        moved = [name for name, (_, low, high) in used_values.items()
                 if name == "lr" or name in self.history or not low == high == hyper_at_start.get(name)]
        logs.update({name: used_values[name][0] for name in moved})
        # The range within the epoch, from the first epoch in which the value varied.
        ranged = [name for name in moved
                  if used_values[name][1] != used_values[name][2] or f"{name}_min" in self.history]
        for name in ranged:
            logs[f"{name}_min"], logs[f"{name}_max"] = used_values[name][1], used_values[name][2]
        # What a learning-rate-free rule learned (lr_estimate, adapted/<name>):
        # the mean over the epoch's steps, and from the first epoch in which
        # it varied its range, as for the lr.
        summary = learned.summary()
        for name, (mean, low, high) in summary.items():
            logs[name] = mean
            # (no range where a rule learns a value named like it: d and d_max)
            clash = f"{name}_min" in summary or f"{name}_max" in summary
            if not clash and (not low == high == mean or f"{name}_min" in self.history):
                logs[f"{name}_min"], logs[f"{name}_max"] = low, high
                ranged.append(name)
        logs["grad_norm"] = stats.grad_norm_mean
        logs["grad_norm_max"] = stats.grad_norm_max
        logs.update(self._layer_grad_norms(grads))
        logs["param_norm"] = param_norm
        logs["nonfinite_steps"] = stats.nonfinite_steps
        logs["skipped_steps"] = opt.skipped_steps - skipped_before
        logs["nonfinite_grads"] = opt.total_nonfinite_count - nonfinite_before
        logs["steps"] = stats.steps
        logs["seconds"] = time.perf_counter() - started

        self.history.append(epoch, logs)
        for name in moved:
            if name in hyper_at_start:
                self.history.backfill(name, hyper_at_start[name])
        for name in ranged:  # earlier epochs held the value constant: min = max = their mean
            self.history.backfill_from(f"{name}_min", name)
            self.history.backfill_from(f"{name}_max", name)
        recorded = dict(logs)
        try:
            for hook in self._hooks("on_epoch_end"):
                hook(epoch, logs, self)
        except BaseException:
            # The epoch trained and is in the history: count it even when a callback raised (a Ctrl-C in
            # on_epoch_end), so the next fit goes on with the next epoch instead of recording this one again.
            self.epoch = epoch + 1
            raise
        # Keys callbacks added to the logs are recorded too (Keras's History sees them).
        added = {k: v for k, v in logs.items() if (k not in recorded or v is not recorded[k])
                 and (v is None or (isinstance(v, (numbers.Real, np.floating, np.integer))
                                    and not isinstance(v, (bool, np.bool_))))}
        if added:
            self.history.update_last(added)
        self.epoch = epoch + 1
        self._display.end_epoch(epoch, last, logs, time.perf_counter() - started)

    def _layer_grad_norms(self, grads: Any) -> Dict[str, float]:
        """Norm per top-level entry of the last batch's gradient: the signal of
        gradients vanishing in early layers, which the global norm hides."""
        if isinstance(grads, Mapping):
            entries = [(str(k), v) for k, v in grads.items()]
        elif isinstance(grads, (list, tuple)):
            entries = [(str(i), v) for i, v in enumerate(grads)]
        else:
            return {}
        if not 2 <= len(entries) <= MAX_LAYER_NORMS:
            return {}
        return {f"grad_norm.{name}": global_norm(value) for name, value in entries}

    # ---- checkpoints ----------------------------------------------------------------
    def state_dict(self) -> Dict[str, Any]:
        """Everything a resumed run needs, as plain data: params (copies),
        optimizer state, each callback's state, the history and the counters.
        Called from another thread while [`fit`][fastadapt.Trainer.fit] runs, it waits for the
        current epoch to end, so it is always an epoch boundary.

        ``params`` is the evaluation point ([`eval_params`][fastadapt.Trainer.eval_params]), the one to
        use; a two-sequence optimizer's training point, which a resumed run
        continues from, is ``train_params`` (present only then)."""
        with self._state_lock:
            return self._state_dict()

    def _state_dict(self) -> Dict[str, Any]:
        with self.eval_params():
            paths, leaves = flatten_any(self.params)
            kept = self._train_point

            def copies() -> Tuple[Dict[str, np.ndarray], Optional[Dict[str, np.ndarray]]]:
                params = {path: leaf.copy() for path, leaf in zip(paths, leaves)}
                return params, None if kept is None else {path: a.copy() for path, a in zip(paths, kept)}

            # Params and optimizer state copied under one hold of the optimizer's
            # lock: a step running in another thread cannot fall between them.
            optimizer, (params, train_params) = self.optimizer._snapshot(copies)
            edited = kept is not None and _digest(leaves) != self._eval_digest
        state = {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "epoch": self.epoch,
            "step": self.step,
            "params": params,
            "optimizer": optimizer,
            "callbacks": [{"type": type(cb).__name__,
                           "state": cb.state_dict() if callable(getattr(cb, "state_dict", None)) else None}
                          for cb in self.callbacks],
            "history": self.history.to_dict(),
        }
        if train_params is not None:
            state["train_params"] = train_params
            # Whether the params were changed since optimizer.eval made them (a
            # restored best): a resumed fit then starts, as this trainer's
            # next one would, from optimizer.train of them, not the saved point.
            state["eval_params_edited"] = edited
        return state

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore [`state_dict`][fastadapt.Trainer.state_dict]: params are copied into the trainer's own
        arrays. Checked first; a failure (or an interrupt) at any point leaves
        the trainer, its params, optimizer and callbacks as they were."""
        with self._state_lock:
            self._load_state_dict(state_dict)

    def _load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        sd = state_dict
        if not isinstance(sd, Mapping) or sd.get("format") != CHECKPOINT_FORMAT:
            raise ValueError("not a trainer checkpoint; pass what Trainer.state_dict() returned "
                             "(or a file from Trainer.save_checkpoint)")
        version = sd.get("version")
        if type(version) is not int or version != CHECKPOINT_VERSION:  # 1.0 and True are not version 1
            raise ValueError(f"unsupported trainer checkpoint version {sd.get('version')!r}; "
                             f"expected the integer {CHECKPOINT_VERSION}")
        for name in ("epoch", "step"):
            v = sd.get(name)
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 2 ** 62:
                raise ValueError(f"checkpoint[{name!r}] must be an int >= 0 and <= 2**62, got {v!r}")
        if not isinstance(sd.get("optimizer"), Mapping):
            raise ValueError(f"checkpoint['optimizer'] must be the optimizer's state_dict, got "
                             f"{type(sd.get('optimizer')).__name__}")
        saved: Any = sd.get("params")  # (a Mapping: checked below)
        train_saved = sd.get("train_params")
        paths, leaves = flatten_any(self.params)
        two_points = _has_eval_point(self.optimizer)
        if two_points and train_saved is None:
            raise ValueError(f"checkpoint has no 'train_params', the training point that "
                             f"{type(self.optimizer).__name__} (which evaluates at another point) resumes from; "
                             f"load a checkpoint written by Trainer.save_checkpoint with this optimizer")
        if train_saved is not None and not two_points:
            raise ValueError(f"checkpoint has 'train_params' (a training point apart from the params, as "
                             f"Schedule-Free keeps), but {type(self.optimizer).__name__} has one sequence; "
                             f"load it into a trainer with the optimizer that wrote it")
        edited = sd.get("eval_params_edited", False)
        if not isinstance(edited, bool):
            raise ValueError(f"checkpoint['eval_params_edited'] must be True or False, got {edited!r}")
        for name, arrays in (("params", saved), ("train_params", train_saved)):
            if name == "train_params" and arrays is None:
                continue
            if not isinstance(arrays, Mapping) or set(arrays) != set(paths):
                got = sorted(arrays) if isinstance(arrays, Mapping) else type(arrays).__name__
                raise ValueError(f"checkpoint {name} have keys {got}, this trainer's params have {sorted(paths)}; "
                                 f"load a checkpoint of the same model")
            for path, leaf in zip(paths, leaves):
                arr = arrays[path]
                if not isinstance(arr, np.ndarray) or arr.shape != leaf.shape or arr.dtype != leaf.dtype:
                    got = f"{arr.dtype.name} {arr.shape}" if isinstance(arr, np.ndarray) else type(arr).__name__
                    raise ValueError(f"checkpoint {name}[{path!r}]: expected {leaf.dtype.name} {leaf.shape}, got "
                                     f"{got}; load a checkpoint of the same model")
        for path, leaf in zip(paths, leaves):
            if not leaf.flags.writeable:
                raise ValueError(f"params[{path!r}] is read-only, so the checkpoint cannot be copied into it; "
                                 f"give the trainer writeable arrays")
        entries = sd.get("callbacks")
        names = [type(cb).__name__ for cb in self.callbacks]
        if not isinstance(entries, list) or [e.get("type") if isinstance(e, Mapping) and "state" in e else None
                                             for e in entries] != names:
            saved_names = [e.get("type") if isinstance(e, Mapping) else e for e in entries] \
                if isinstance(entries, list) else entries
            raise ValueError(f"checkpoint callbacks {saved_names} do not match this trainer's {names}; "
                             f"build the trainer with the same callbacks in the same order")
        try:
            history = History.from_dict(sd.get("history", {}))
        except (TypeError, ValueError) as e:
            raise ValueError(f"checkpoint['history']: {e}") from None

        optimizer_before = self.optimizer.state_dict()
        params_before = [leaf.copy() for leaf in leaves]
        loaded: List[Tuple[Any, Dict[str, Any]]] = []
        optimizer_loaded = copied = False
        mode = "eval" if self._at_eval else "train"  # the optimizer's, as the trainer last switched it
        mode_before = mode
        kept: Optional[List[np.ndarray]] = None
        digest: Optional[bytes] = None
        try:
            # Checked against this trainer's params now (keys, shapes, dtypes),
            # so a checkpoint of another model fails here, before anything
            # changes, instead of at the first step of the next fit.
            self.optimizer.load_state_dict(sd["optimizer"], params=self.params)
            optimizer_loaded = True
            for cb, entry in zip(self.callbacks, entries):
                if entry["state"] is None:
                    continue
                if not callable(getattr(cb, "load_state_dict", None)):
                    raise ValueError(f"checkpoint has state for {type(cb).__name__}, which has no load_state_dict")
                before = cb.state_dict()
                cb.load_state_dict(entry["state"])
                loaded.append((cb, before))
            copied = True
            if mode == "eval":
                _switch(self.optimizer, "train", self.params)
                mode = "train"
            if train_saved is not None:
                # The loaded run stands at its evaluation point, as the saving
                # trainer did: the optimizer switched to eval (from the saved
                # training point), the saved eval point in the params.
                for path, leaf in zip(paths, leaves):
                    np.copyto(leaf, train_saved[path])
                _switch(self.optimizer, "eval", self.params)
                mode = "eval"
                kept = [np.array(train_saved[path], copy=True) for path in paths]
            for path, leaf in zip(paths, leaves):
                np.copyto(leaf, saved[path])
            if kept is not None and not edited:
                digest = _digest(leaves)
        except BaseException:
            if mode != mode_before:
                _switch(self.optimizer, mode_before, self.params)
            if copied:
                for leaf, before in zip(leaves, params_before):
                    np.copyto(leaf, before)
            for cb, before in reversed(loaded):
                cb.load_state_dict(before)
            if optimizer_loaded:
                self.optimizer.load_state_dict(optimizer_before)
            raise
        self.__dict__.update(history=history, epoch=sd["epoch"], step=sd["step"], _at_eval=mode == "eval",
                             _train_point=kept, _eval_digest=digest)

    def save_checkpoint(self, path: PathLike) -> None:
        """Write [`state_dict`][fastadapt.Trainer.state_dict] to ``path`` (an ``.npz`` file, no pickle)."""
        save_state(path, self.state_dict())

    def load_checkpoint(self, path: PathLike) -> None:
        """Resume from a file written by [`save_checkpoint`][fastadapt.Trainer.save_checkpoint]."""
        self.load_state_dict(load_state(path))

    def __repr__(self) -> str:
        return (f"Trainer({self.optimizer!r}, epoch={self.epoch}, step={self.step}, "
                f"callbacks=[{', '.join(type(cb).__name__ for cb in self.callbacks)}])")
