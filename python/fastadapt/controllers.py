"""Controllers: callbacks that change hyperparameters (or stop training)
while a model trains.

- :class:`Scheduler` drives any hyperparameter from schedules, per step or per epoch;
- :class:`ReduceLROnPlateau` cuts the learning rate when a metric stops improving;
- :class:`EarlyStopping` stops when it stops improving and puts the best params back;
- :class:`AdaptiveLR` is the seed article's scheduler: warmup, then plateau
  reduction, with early-stop detection.

Each one works standalone (call ``.step(...)`` in your own loop) or as a
trainer callback (see :mod:`fastadapt.callbacks`), and has
``state_dict()`` / ``load_state_dict()`` so a resumed run continues exactly
as an uninterrupted one. The optimizer's own hyperparameters (the current
lr included) travel in the optimizer's ``state_dict``; checkpoint both.

Plateau counting (ALGORITHMS.md, Keras's count): after each epoch a metric
``x`` improves on ``best`` if ``x < best - |best| * threshold`` (``rel``) or
``x < best - threshold`` (``abs``), mirrored for ``mode="max"``. (For a
negative ``best`` the rel rule differs from torch's ``best * (1 - threshold)``,
which there accepts a worse value as an improvement.) On
improvement ``wait = 0``; otherwise ``wait += 1`` and the action (cut the
lr, stop) happens when ``wait >= patience``. torch's ReduceLROnPlateau
acts when ``wait > patience``, one epoch later: ``patience=p`` here
behaves like torch's ``patience=p-1``.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import numpy as np

from ._checks import array_leaves, choice, flag, integer, real
from .callbacks import Callback

__all__ = ["Scheduler", "ReduceLROnPlateau", "EarlyStopping", "AdaptiveLR"]

_MODES = ("min", "max")
_THRESHOLD_MODES = ("rel", "abs")


# ---- argument checks and small pieces ----------------------------------------------

def _count(name: str, value: Any) -> int:
    return integer(name, value, 0)


def _epoch_index(name: str, value: Any) -> int:
    return integer(name, value, -1)


def _monitor_key(monitor: Any) -> str:
    if not isinstance(monitor, str):
        raise TypeError(f"monitor={monitor!r} must be a log key such as 'val_loss'")
    return monitor


def _real_or_nan(name: str, value: Any) -> float:
    """A float; NaN and inf are allowed (a NaN metric never counts as an improvement)."""
    if isinstance(value, (str, bytes)):  # float("0.5") would pass silently
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}") from None


def _cut(lr: float, factor: float, min_lr: float) -> float:
    """One plateau cut: ``max(lr * factor, min_lr)``, but never above ``lr``
    (an lr already under ``min_lr`` stays where it is, as in torch and Keras)."""
    return min(lr, max(lr * factor, min_lr))


def _epoch_arg(owner: str, epoch: Any, last_epoch: int) -> int:
    if epoch is None:
        return last_epoch + 1
    return integer(f"{owner}.step(epoch=...)", epoch, 0)


def _monitored(owner: str, monitor: str, logs: Mapping[str, Any]) -> Any:
    if monitor not in logs:
        raise KeyError(f"{owner} monitors {monitor!r}, which this epoch's logs lack (logged: "
                       f"{', '.join(map(repr, sorted(logs))) or 'nothing'}); pass monitor= one of those or "
                       f"log {monitor!r}")
    return logs[monitor]


def _bound_optimizer(owner: str, optimizer: Any, needs: str) -> Any:
    if not hasattr(optimizer, needs):
        raise TypeError(f"{owner} needs a fastadapt optimizer (with .{needs}), got {type(optimizer).__name__}")
    return optimizer


def _optimizer_from(owner: str, trainer: Any) -> Any:
    optimizer = getattr(trainer, "optimizer", None)
    if optimizer is None:
        raise ValueError(f"{owner} was built without an optimizer and the trainer has none at "
                         f"on_train_begin; pass the optimizer to {owner}(...)")
    return optimizer


def _load_fields(owner: str, state_dict: Any, fields: Mapping[str, Callable[[str, Any], Any]]) -> Dict[str, Any]:
    """Check a controller state_dict (exact keys, each value) before anything changes."""
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"{owner}.load_state_dict needs a dict, got {type(state_dict).__name__}")
    if set(state_dict) != set(fields):
        missing, extra = set(fields) - set(state_dict), set(state_dict) - set(fields)
        raise ValueError(f"{owner} state_dict keys differ: missing {sorted(missing)}, unexpected {sorted(extra)}; "
                         f"pass what {owner}.state_dict() returned")
    return {k: check(f"state_dict[{k!r}]", state_dict[k]) for k, check in fields.items()}


def _best_metric(name: str, value: Any) -> float:
    """A saved ``best``: a number or +-inf (inf: nothing seen yet). Never NaN,
    which no metric can become (NaN never improves) and after which nothing would."""
    v = _real_or_nan(name, value)
    if math.isnan(v):
        raise ValueError(f"{name}={value!r} must be a number or +-inf, not NaN; pass what state_dict() returned")
    return v


def _opt_lr(name: str, value: Any) -> Optional[float]:
    return None if value is None else real(name, value, low=0.0)


# ---- the improvement test and plateau counter ----------------------------------------

class _Improvement:
    """``x`` improves on ``best``: ``x < best - margin`` (min mode) or
    ``x > best + margin`` (max mode), with ``margin = threshold`` (abs) or
    ``|best| * threshold`` (rel).

    The rel margin is taken from ``|best|``, not ALGORITHMS.md's (and
    torch's) ``best * (1 - threshold)``: with a negative ``best`` that
    product lies on the wrong side of ``best`` (best -10, threshold 0.1:
    -9.5 would "improve"), so a metric getting worse would keep resetting
    the count. For ``best >= 0`` the two are the same test.
    """

    def __init__(self, mode: str, threshold: float, threshold_mode: str, threshold_name: str = "threshold"):
        self.mode = choice("mode", mode, _MODES)
        self.threshold_mode = choice("threshold_mode", threshold_mode, _THRESHOLD_MODES)
        # rel: a margin of |best| or more would ask a loss to change sign to improve
        # (and best * (1 - 1) would turn an infinite best into NaN).
        high = 1.0 if threshold_mode == "rel" else math.inf
        self.threshold = real(threshold_name, threshold, low=0.0, high=high, high_open=True)

    @property
    def worst(self) -> float:
        return math.inf if self.mode == "min" else -math.inf

    def __call__(self, x: float, best: float) -> bool:
        t = self.threshold
        if self.mode == "min":
            if self.threshold_mode == "abs":
                return x < best - t
            # best * (1 -+ t) rather than best - |best| * t: bit for bit torch's bound when best >= 0
            return x < best * (1.0 - t if best >= 0 else 1.0 + t)
        if self.threshold_mode == "abs":
            return x > best + t
        return x > best * (1.0 + t if best >= 0 else 1.0 - t)


class _PlateauCounter:
    """best / wait / cooldown bookkeeping of the plateau rule.

    ``observe(x)`` returns True when patience has run out at this epoch;
    the owner then acts and calls ``acted()``, which restarts ``wait`` and
    begins ``cooldown`` epochs in which ``wait`` stays 0 (improvements still
    update ``best``). torch's cooldown lets the same number of epochs pass;
    Keras's counter lets one fewer.
    """

    def __init__(self, improves: _Improvement, patience: int, cooldown: int):
        self.improves = improves
        self.patience = patience
        self.cooldown = cooldown
        self.best = improves.worst
        self.wait = 0
        self.cooldown_left = 0
        self.improved = False

    def observe(self, x: float) -> bool:
        self.improved = self.improves(x, self.best)
        if self.improved:
            self.best = x
            self.wait = 0
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            self.wait = 0
            return False
        if self.improved:
            return False
        self.wait += 1
        return self.wait >= self.patience

    def acted(self) -> None:
        self.wait = 0
        self.cooldown_left = self.cooldown

    def state(self) -> Dict[str, Any]:
        return {"best": self.best, "wait": self.wait, "cooldown_left": self.cooldown_left}

    FIELDS = {"best": _best_metric, "wait": _count, "cooldown_left": _count}

    def load(self, checked: Mapping[str, Any]) -> None:
        self.best, self.wait, self.cooldown_left = checked["best"], checked["wait"], checked["cooldown_left"]


# ---- Scheduler -------------------------------------------------------------------

def _targets(optimizer: Any) -> Dict[str, Tuple[str, Optional[int]]]:
    """Schedulable names of an optimizer: real-valued hyperparameters, and
    ``<name><i>`` / ``<name>[i]`` for an element of a tuple (``betas0``)."""
    out: Dict[str, Tuple[str, Optional[int]]] = {}
    for name, value in optimizer.hyperparameters.items():
        if isinstance(value, tuple):
            for i in range(len(value)):
                out[f"{name}{i}"] = (name, i)
                out[f"{name}[{i}]"] = (name, i)
        elif value is None or (isinstance(value, numbers.Real) and not isinstance(value, bool)):
            out[name] = (name, None)
    return out


class Scheduler(Callback):
    """Drive optimizer hyperparameters from schedules, per step or per epoch.

    Each keyword names a hyperparameter and gives a schedule (any callable
    ``count -> value``, e.g. from :mod:`fastadapt.schedules`). An element of
    a tuple hyperparameter is named with its index: ``betas0`` (or
    ``"betas[0]"`` through ``**{...}``) is Adam's beta1. Like torch's
    schedulers, the values for count 0 are applied at construction (or when
    the optimizer is bound), and each :meth:`step` advances the count by one
    and applies the values for the new count. Per-key overrides of the
    optimizer keep their own values.

    As a trainer callback, ``per="step"`` steps after every batch
    (``on_batch_end``), ``per="epoch"`` after every epoch
    (``on_epoch_end``); the count is the scheduler's own, restored from its
    ``state_dict`` on resume.

    Args:
        optimizer: a fastadapt optimizer, or None to bind to
            ``trainer.optimizer`` in ``on_train_begin``.
        per: ``"step"`` or ``"epoch"``.
        **schedules: ``name=schedule`` for each hyperparameter to drive.

    A schedule value the optimizer rejects (``lr=-1``, ``betas0=1.0``)
    raises the optimizer's error, prefixed with the name and the count.

    Example::

        sched = fa.Scheduler(opt, lr=fa.schedules.one_cycle(1e-2, 1000),
                             betas0=fa.schedules.one_cycle_momentum(1000))
        for batch in batches:
            opt.update(params, grad_fn(params, batch))
            sched.step()
    """

    def __init__(self, optimizer: Any = None, *, per: str = "step", **schedules: Callable[[int], float]):
        self.per = choice("per", per, ("step", "epoch"))
        if not schedules:
            raise ValueError("Scheduler needs at least one schedule, e.g. Scheduler(opt, lr=fa.schedules.cosine(...))")
        for name, schedule in schedules.items():
            if not callable(schedule):
                raise TypeError(f"Scheduler({name}=...) must be a schedule (a callable count -> value), "
                                f"got {type(schedule).__name__} {schedule!r}")
        self.schedules: Dict[str, Callable[[int], float]] = dict(schedules)
        self.count = 0
        self.last_values: Dict[str, float] = {}
        self.optimizer: Any = None
        self._where: Dict[str, Tuple[str, Optional[int]]] = {}
        if optimizer is not None:
            self._bind(optimizer)

    def _bind(self, optimizer: Any) -> None:
        optimizer = _bound_optimizer("Scheduler", optimizer, "hyperparameters")
        valid = _targets(optimizer)
        for name in self.schedules:
            if name not in valid:
                shown = [n for n in valid if "[" not in n]
                raise ValueError(f"Scheduler: {type(optimizer).__name__} has no schedulable hyperparameter "
                                 f"{name!r}; valid names: {', '.join(shown)}")
        self.optimizer = optimizer
        self._where = {name: valid[name] for name in self.schedules}
        self._apply()

    def _apply(self) -> None:
        """Set every hyperparameter to its schedule's value at ``count``; if
        the optimizer refuses one, put back those already set and raise."""
        optimizer = self.optimizer
        previous: List[Tuple[str, Any]] = []
        values = {}
        for name, schedule in self.schedules.items():
            value = schedule(self.count)
            attr, index = self._where[name]
            previous.append((attr, getattr(optimizer, attr)))
            try:
                if index is None:
                    setattr(optimizer, attr, value)
                else:
                    elements = list(getattr(optimizer, attr))
                    elements[index] = value
                    setattr(optimizer, attr, tuple(elements))
            except (TypeError, ValueError) as err:
                for attr_set, old in reversed(previous):
                    setattr(optimizer, attr_set, old)
                raise type(err)(f"Scheduler: schedule for {name!r} gave {value!r} at {self.per} "
                                f"{self.count}: {err}") from err
            held = getattr(optimizer, attr)  # as the optimizer validated and stored it (a float)
            values[name] = held if index is None else held[index]
        self.last_values = values

    def step(self) -> Dict[str, float]:
        """Advance the count by one and apply the new values; returns them.
        A value the optimizer refuses leaves count and optimizer unchanged."""
        if self.optimizer is None:
            raise ValueError("Scheduler has no optimizer yet: pass it to Scheduler(opt, ...) or use the "
                             "scheduler as a trainer callback")
        self.count += 1
        try:
            self._apply()
        except BaseException:
            self.count -= 1
            raise
        return dict(self.last_values)

    # trainer hooks
    def on_train_begin(self, trainer: Any) -> None:
        if self.optimizer is None:
            self._bind(_optimizer_from("Scheduler", trainer))

    def on_batch_end(self, step: int, logs: Mapping[str, Any], trainer: Any) -> None:
        if self.per == "step":
            self.step()

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any], trainer: Any) -> None:
        if self.per == "epoch":
            self.step()

    def state_dict(self) -> Dict[str, Any]:
        return {"count": self.count}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore the count and re-apply the values for it (schedules are pure)."""
        checked = _load_fields("Scheduler", state_dict, {"count": _count})
        previous, self.count = self.count, checked["count"]
        if self.optimizer is not None:
            try:
                self._apply()  # puts back the values it set before a refusal
            except BaseException:
                self.count = previous
                raise

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.schedules.items())
        return f"Scheduler(per={self.per!r}, {shown})"


# ---- the lr controllers: ReduceLROnPlateau and AdaptiveLR ---------------------------------

class _LRPlateau(Callback):
    """What ReduceLROnPlateau and AdaptiveLR share: the optimizer binding,
    the monitored metric, the plateau counter and its cut of the lr."""

    def __init__(self, optimizer: Any, *, monitor: str, mode: str, factor: float, patience: int, threshold: float,
                 threshold_mode: str, cooldown: int, min_lr: float):
        self.monitor = _monitor_key(monitor)
        self.factor = real("factor", factor, low=0.0, high=1.0, high_open=True)
        self.min_lr = real("min_lr", min_lr, low=0.0)
        self._plateau = _PlateauCounter(_Improvement(mode, threshold, threshold_mode),
                                        _count("patience", patience), _count("cooldown", cooldown))
        self.last_epoch = -1
        self.num_reductions = 0
        self.optimizer: Any = None
        if optimizer is not None:
            self._bind(optimizer)

    @property
    def best(self) -> float:
        """The best metric so far (inf / -inf before the first counted epoch)."""
        return self._plateau.best

    @property
    def wait(self) -> int:
        """Epochs without improvement counted towards the next cut."""
        return self._plateau.wait

    def _bind(self, optimizer: Any) -> None:
        self.optimizer = _bound_optimizer(type(self).__name__, optimizer, "lr")

    def _begin_step(self, metric: Any, epoch: Optional[int]) -> float:
        """Check the call, advance the epoch, return the metric as a float."""
        owner = type(self).__name__
        if self.optimizer is None:
            raise ValueError(f"{owner} has no optimizer yet: pass it to {owner}(opt, ...) or use it as a "
                             f"trainer callback")
        x = _real_or_nan(f"{owner}.step(metric)", metric)
        self.last_epoch = _epoch_arg(owner, epoch, self.last_epoch)
        return x

    def _plateau_cut(self, x: float, lr: float) -> float:
        """The lr after observing ``x``: cut when patience has run out."""
        if not self._plateau.observe(x):
            return lr
        self._plateau.acted()
        new_lr = _cut(lr, self.factor, self.min_lr)
        self.num_reductions += new_lr < lr
        return new_lr

    def step(self, metric: float, epoch: Optional[int] = None) -> float:
        raise NotImplementedError

    def on_train_begin(self, trainer: Any) -> None:
        if self.optimizer is None:
            self._bind(_optimizer_from(type(self).__name__, trainer))

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any], trainer: Any) -> None:
        self.step(_monitored(type(self).__name__, self.monitor, logs), epoch)

    def state_dict(self) -> Dict[str, Any]:
        return {**self._plateau.state(), "last_epoch": self.last_epoch, "num_reductions": self.num_reductions}

    _FIELDS: Dict[str, Callable[[str, Any], Any]] = {**_PlateauCounter.FIELDS, "last_epoch": _epoch_index,
                                                     "num_reductions": _count}

    def _load_common(self, checked: Mapping[str, Any]) -> None:
        self._plateau.load(checked)
        self.last_epoch, self.num_reductions = checked["last_epoch"], checked["num_reductions"]


class ReduceLROnPlateau(_LRPlateau):
    """Multiply the learning rate by ``factor`` when a metric stops improving.

    Rule (ALGORITHMS.md): after each epoch with metric ``x``, ``x``
    improves if ``x < best - |best| * threshold`` (``threshold_mode="rel"``)
    or ``x < best - threshold`` (``"abs"``); ``mode="max"`` mirrors both.
    On improvement ``best = x, wait = 0``; otherwise ``wait += 1`` and when
    ``wait >= patience``: ``lr = max(lr * factor, min_lr)`` (never raised:
    an lr already below ``min_lr`` stays), ``wait = 0``, and for the next
    ``cooldown`` epochs ``wait`` stays 0. A NaN metric never improves.

    Differences from torch.optim.lr_scheduler.ReduceLROnPlateau: the cut
    comes when ``wait >= patience`` (Keras's count), torch's one epoch later
    (``wait > patience``); so ``patience=p`` here matches torch's
    ``patience=p-1``; torch also skips a cut smaller than ``eps=1e-8``, here
    every cut applies. The rel threshold is taken from ``|best|``; torch's
    ``best * (1 - threshold)`` counts a worse value as an improvement when
    ``best < 0`` (for ``best >= 0`` they agree). Only the optimizer's
    default lr is changed, per-key overrides keep theirs. The lr is read
    from the optimizer at each cut, so an lr you set by hand is the one cut;
    a Scheduler driving ``lr`` would overwrite the cut at its next step, so
    let one controller own the lr.

    Args:
        optimizer: a fastadapt optimizer, or None to bind to
            ``trainer.optimizer`` in ``on_train_begin``.
        monitor: the epoch-log key read by ``on_epoch_end``.
        mode: ``"min"`` (a loss) or ``"max"`` (an accuracy).
        factor: in [0, 1): the multiplier of each cut.
        patience: epochs without improvement before a cut (>= 0; 0 acts like 1).
        threshold, threshold_mode: how much better counts as better
            (``rel``: a fraction in [0, 1); ``abs``: an amount >= 0).
        cooldown: epochs after a cut in which no waiting is counted.
        min_lr: the lr never goes below this.

    Example::

        plateau = fa.ReduceLROnPlateau(opt, factor=0.5, patience=5)
        for epoch in range(epochs):
            train_one_epoch()
            plateau.step(validation_loss())
    """

    def __init__(self, optimizer: Any = None, *, monitor: str = "val_loss", mode: str = "min", factor: float = 0.1,
                 patience: int = 10, threshold: float = 1e-4, threshold_mode: str = "rel", cooldown: int = 0,
                 min_lr: float = 0.0):
        super().__init__(optimizer, monitor=monitor, mode=mode, factor=factor, patience=patience,
                         threshold=threshold, threshold_mode=threshold_mode, cooldown=cooldown, min_lr=min_lr)

    def step(self, metric: float, epoch: Optional[int] = None) -> float:
        """Record the metric of an epoch; cut the lr if it is time. Returns the lr."""
        x = self._begin_step(metric, epoch)
        lr = self.optimizer.lr
        new_lr = self._plateau_cut(x, lr)
        if new_lr != lr:
            self.optimizer.lr = new_lr
        return self.optimizer.lr

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        self._load_common(_load_fields("ReduceLROnPlateau", state_dict, self._FIELDS))


# ---- EarlyStopping ------------------------------------------------------------------------

class EarlyStopping(Callback):
    """Stop when a metric has stopped improving; put the best params back.

    Rule: from epoch ``start_epoch`` on, ``x`` improves if
    ``x < best - min_delta`` (``mode="max"``: ``x > best + min_delta``).
    On improvement ``best = x`` and the params are snapshotted; ``wait``
    restarts at 0 unless a ``baseline`` is given and not yet beaten.
    Otherwise ``wait += 1``. Training should stop when
    ``wait >= patience`` (Keras's count; Lightning's too). With a baseline,
    a run that improves but stays worse than the baseline for ``patience``
    epochs stops as well (Keras would keep going while it improves).

    With ``restore_best=True`` the best params are copied back into the
    *same arrays* (``np.copyto``) when the stop is decided, and again in
    ``on_train_end`` (so a run that ends without stopping also ends on its
    best params); :meth:`restore_best_params` does it by hand.

    Args:
        params: the parameter tree to snapshot, or None to bind to
            ``trainer.params`` in ``on_train_begin`` (needed only with
            ``restore_best=True``).
        monitor, mode: the epoch-log key and its direction.
        min_delta: >= 0, how much better counts as better (absolute).
        patience: epochs without improvement before stopping (>= 0).
        baseline: a value the metric must beat, or None.
        start_epoch: epochs before this one are ignored (Keras's start_from_epoch).
        restore_best: snapshot and restore the best params.

    Example::

        stopper = fa.EarlyStopping(params, patience=10)
        for epoch in range(1000):
            train_one_epoch()
            if stopper.step(validation_loss()):
                break               # params now hold the best epoch's values
    """

    def __init__(self, params: Any = None, *, monitor: str = "val_loss", mode: str = "min", min_delta: float = 0.0,
                 patience: int = 10, baseline: Optional[float] = None, start_epoch: int = 0,
                 restore_best: bool = True):
        self.monitor = _monitor_key(monitor)
        self._improves = _Improvement(mode, min_delta, "abs", threshold_name="min_delta")
        self.patience = _count("patience", patience)
        self.baseline = None if baseline is None else real("baseline", baseline)
        self.start_epoch = _count("start_epoch", start_epoch)
        self.restore_best = flag("restore_best", restore_best)
        self.best = self._improves.worst
        self.best_epoch = -1
        self.wait = 0
        self.last_epoch = -1
        self.stopped_epoch: Optional[int] = None
        self._paths: Optional[List[str]] = None  # set once the params are bound
        self._leaves: List[np.ndarray] = []
        self._snapshot: Optional[List[np.ndarray]] = None
        if params is not None:
            self._bind(params)

    @property
    def should_stop(self) -> bool:
        """True once the stop has been decided."""
        return self.stopped_epoch is not None

    def _bind(self, params: Any) -> None:
        paths, leaves = array_leaves(params, "EarlyStopping: ")
        if self._snapshot is not None:  # loaded from a checkpoint before the params were known
            self._check_snapshot(self._snapshot, leaves, paths)
        self._paths, self._leaves = paths, leaves

    @staticmethod
    def _check_snapshot(snapshot: List[np.ndarray], leaves: List[np.ndarray], paths: List[str]) -> None:
        if len(snapshot) != len(leaves):
            raise ValueError(f"EarlyStopping: the saved best params have {len(snapshot)} arrays, the params "
                             f"{len(leaves)}; load a state_dict saved for these params")
        for path, saved, leaf in zip(paths, snapshot, leaves):
            if saved.shape != leaf.shape or saved.dtype != leaf.dtype:
                raise ValueError(f"EarlyStopping: saved best params[{path!r}] is {saved.dtype} {saved.shape}, "
                                 f"the params are {leaf.dtype} {leaf.shape}; load a state_dict saved for these params")

    def _take_snapshot(self) -> None:
        if self._snapshot is None:
            self._snapshot = [leaf.copy() for leaf in self._leaves]
        else:  # reuse the buffers: no allocation per improvement
            for saved, leaf in zip(self._snapshot, self._leaves):
                np.copyto(saved, leaf)

    def restore_best_params(self) -> bool:
        """Copy the best params seen into the params arrays; False if there is no snapshot yet."""
        if self._snapshot is None:
            return False
        if self._paths is None:
            raise ValueError("EarlyStopping has a snapshot but no params to restore it into; pass "
                             "EarlyStopping(params, ...)")
        for leaf, saved in zip(self._leaves, self._snapshot):
            np.copyto(leaf, saved)
        return True

    def step(self, metric: float, epoch: Optional[int] = None) -> bool:
        """Record the metric of an epoch; returns True when training should stop."""
        if self.restore_best and self._paths is None:
            raise ValueError("EarlyStopping(restore_best=True) needs the params to snapshot: pass "
                             "EarlyStopping(params, ...) or restore_best=False")
        x = _real_or_nan("EarlyStopping.step(metric)", metric)
        self.last_epoch = _epoch_arg("EarlyStopping", epoch, self.last_epoch)
        if self.last_epoch < self.start_epoch or self.should_stop:
            return self.should_stop
        if self._improves(x, self.best):
            self.best, self.best_epoch = x, self.last_epoch
            if self.restore_best:
                self._take_snapshot()
            beaten = self.baseline is None or self._improves(x, self.baseline)
            self.wait = 0 if beaten else self.wait + 1
        else:
            self.wait += 1
        if self.wait > 0 and self.wait >= self.patience:  # patience 0 acts like 1, as in Keras
            self.stopped_epoch = self.last_epoch
            if self.restore_best:
                self.restore_best_params()
        return self.should_stop

    def on_train_begin(self, trainer: Any) -> None:
        if self._paths is None and self.restore_best:
            params = getattr(trainer, "params", None)
            if params is None:
                raise ValueError("EarlyStopping(restore_best=True) was built without params and the trainer has "
                                 "none at on_train_begin; pass EarlyStopping(params, ...)")
            self._bind(params)

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any], trainer: Any) -> None:
        if self.step(_monitored("EarlyStopping", self.monitor, logs), epoch):
            trainer.stop_training = True

    def on_train_end(self, trainer: Any) -> None:
        if self.restore_best:
            self.restore_best_params()

    def state_dict(self) -> Dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait, "last_epoch": self.last_epoch,
                "stopped_epoch": self.stopped_epoch,
                "best_params": None if self._snapshot is None else [a.copy() for a in self._snapshot]}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        def arrays(name: str, value: Any) -> Optional[List[np.ndarray]]:
            if value is None:
                return None
            if not isinstance(value, (list, tuple)) or not all(isinstance(a, np.ndarray) for a in value):
                raise TypeError(f"EarlyStopping {name} must be None or a list of NumPy arrays")
            return [np.array(a, copy=True) for a in value]

        checked = _load_fields("EarlyStopping", state_dict,
                               {"best": _best_metric, "best_epoch": _epoch_index, "wait": _count,
                                "last_epoch": _epoch_index,
                                "stopped_epoch": lambda n, v: None if v is None else _count(n, v),
                                "best_params": arrays})
        if checked["best_params"] is not None and self._paths is not None:
            self._check_snapshot(checked["best_params"], self._leaves, self._paths)
        self.best, self.best_epoch, self.wait = checked["best"], checked["best_epoch"], checked["wait"]
        self.last_epoch, self.stopped_epoch = checked["last_epoch"], checked["stopped_epoch"]
        self._snapshot = checked["best_params"]


# ---- AdaptiveLR ---------------------------------------------------------------------

class AdaptiveLR(_LRPlateau):
    """The seed article's scheduler: linear warmup, then plateau reduction,
    with early-stop detection.

    Rule, after each epoch ``e`` with metric ``x`` (the article's
    ``AdaptiveLRScheduler.step(val_loss, epoch)``):

    - warmup, ``e < warmup_epochs``: ``lr = init_lr * (e + 1) / warmup_epochs``;
      the metric is ignored;
    - then the plateau rule of :class:`ReduceLROnPlateau` with the
      article's defaults (``threshold=0``: any decrease is an improvement,
      no cooldown, no floor): on ``wait >= patience``,
      ``lr = max(lr * factor, min_lr)``;
    - ``should_stop`` turns True after ``stop_patience`` post-warmup epochs
      without improvement (cuts do not restart this count); as a trainer
      callback it then sets ``trainer.stop_training``.

    With the defaults, the lr after each :meth:`step` equals the article's
    return value for any metric sequence (NaN included: it never improves).
    One difference: before the first ``step`` the article leaves the lr at
    ``init_lr``, so epoch 0 would train without warmup; here the first
    warmup value ``init_lr / warmup_epochs`` is applied at construction (or
    binding), as torch's schedulers apply their initial value. The article
    counts like Keras, one epoch ahead of torch (see :class:`ReduceLROnPlateau`).
    The lr is the controller's own (``current_lr``, as in the article) and
    is written to the optimizer at every step.

    Args:
        optimizer: a fastadapt optimizer, or None to bind to
            ``trainer.optimizer`` in ``on_train_begin``.
        warmup_epochs: epochs of linear warmup (0: none).
        patience, factor, min_lr, cooldown, threshold, threshold_mode, mode,
            monitor: as :class:`ReduceLROnPlateau` (defaults: the article's).
        stop_patience: post-warmup epochs without improvement before
            ``should_stop``; default ``3 * patience`` (three cuts brought nothing).
        init_lr: the lr warmup climbs to; default the optimizer's lr when bound.

    Example::

        adaptive = fa.AdaptiveLR(opt, warmup_epochs=10, patience=5, factor=0.5)
        for epoch in range(epochs):
            train_one_epoch()
            adaptive.step(validation_loss())
            if adaptive.should_stop:
                break
    """

    def __init__(self, optimizer: Any = None, *, warmup_epochs: int = 10, patience: int = 5, factor: float = 0.5,
                 min_lr: float = 0.0, cooldown: int = 0, threshold: float = 0.0, threshold_mode: str = "rel",
                 mode: str = "min", stop_patience: Optional[int] = None, monitor: str = "val_loss",
                 init_lr: Optional[float] = None):
        self.warmup_epochs = _count("warmup_epochs", warmup_epochs)
        patience = _count("patience", patience)
        self.stop_patience = max(1, 3 * patience) if stop_patience is None else integer("stop_patience",
                                                                                      stop_patience, 1)
        self.init_lr = None if init_lr is None else real("init_lr", init_lr, low=0.0)
        self.current_lr: Optional[float] = None
        self.epochs_since_best = 0
        self.should_stop = False
        super().__init__(optimizer, monitor=monitor, mode=mode, factor=factor, patience=patience,
                         threshold=threshold, threshold_mode=threshold_mode, cooldown=cooldown, min_lr=min_lr)

    def _bind(self, optimizer: Any) -> None:
        super()._bind(optimizer)
        self._start(float(optimizer.lr))

    def _start(self, default_init_lr: float) -> None:
        """Fill in the lrs a state saved before binding lacks (init_lr:
        ``default_init_lr``; current_lr: the first warmup value) and apply current_lr."""
        if self.init_lr is None:
            self.init_lr = default_init_lr
        if self.current_lr is None:
            self.current_lr = self.init_lr / self.warmup_epochs if self.warmup_epochs else self.init_lr
        self.optimizer.lr = self.current_lr

    def step(self, metric: float, epoch: Optional[int] = None) -> float:
        """Record the metric of epoch ``epoch`` (default: the next one) and set the lr; returns it."""
        x = self._begin_step(metric, epoch)
        if self.last_epoch < self.warmup_epochs:
            self.current_lr = self.init_lr * (self.last_epoch + 1) / self.warmup_epochs
        else:
            self.current_lr = self._plateau_cut(x, self.current_lr)
            self.epochs_since_best = 0 if self._plateau.improved else self.epochs_since_best + 1
            if self.epochs_since_best >= self.stop_patience:
                self.should_stop = True
        self.optimizer.lr = self.current_lr
        return self.current_lr

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any], trainer: Any) -> None:
        super().on_epoch_end(epoch, logs, trainer)
        if self.should_stop:
            trainer.stop_training = True

    def state_dict(self) -> Dict[str, Any]:
        return {**super().state_dict(), "init_lr": self.init_lr, "current_lr": self.current_lr,
                "epochs_since_best": self.epochs_since_best, "should_stop": self.should_stop}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore the state; a bound optimizer gets the saved current lr. A
        state saved before binding has no lrs yet: a bound controller then
        keeps the init_lr its own binding found."""
        checked = _load_fields("AdaptiveLR", state_dict,
                               {**self._FIELDS, "init_lr": _opt_lr, "current_lr": _opt_lr,
                                "epochs_since_best": _count, "should_stop": flag})
        bound_init_lr = self.init_lr
        self._load_common(checked)
        self.init_lr, self.current_lr = checked["init_lr"], checked["current_lr"]
        self.epochs_since_best, self.should_stop = checked["epochs_since_best"], checked["should_stop"]
        if self.optimizer is not None:
            self._start(bound_init_lr)
