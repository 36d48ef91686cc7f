"""The plateau rule ReduceLROnPlateau, AdaptiveLR and EarlyStopping share: the
improvement test, the wait / cooldown counter, and the lr controllers' base.

Plateau counting (docs/algorithms.md, Keras's count): after each epoch a metric
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
from typing import Any, Callable, Dict, List, Mapping, Optional, Union

from .._checks import choice, monitor_mode, real
from ..train.callbacks._drivers import claim, release
from ..train.callbacks.base import Callback
from ._control import (_best_metric, _bound_optimizer, _count, _cut, _epoch_arg, _epoch_index, _min_lrs, _MODES,
                       _monitor_key, _monitored, _optimizer_from, _real_or_nan, _same_groups, _THRESHOLD_MODES)


class _Improvement:
    """``x`` improves on ``best``: ``x < best - margin`` (min mode) or
    ``x > best + margin`` (max mode), with ``margin = threshold`` (abs) or
    ``|best| * threshold`` (rel).

    The rel margin is taken from ``|best|`` (docs/algorithms.md), not
    torch's ``best * (1 - threshold)``: with a negative ``best`` that
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


class _LRPlateau(Callback):
    """What ReduceLROnPlateau and AdaptiveLR share: the optimizer binding,
    the monitored metric, the plateau counter and its cut of every group's lr."""

    def __init__(self, optimizer: Any, *, monitor: str, mode: str, factor: float, patience: int, threshold: float,
                 threshold_mode: str, cooldown: int, min_lr: Union[float, List[float]]):
        self.monitor = _monitor_key(monitor)
        self.factor = real("factor", factor, low=0.0, high=1.0, high_open=True)
        self.min_lr = _min_lrs(min_lr)
        self._plateau = _PlateauCounter(_Improvement(monitor_mode(mode, self.monitor), threshold, threshold_mode),
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
        owner = type(self).__name__
        optimizer = _bound_optimizer(owner, optimizer, "lr")
        optimizer = _bound_optimizer(owner, optimizer, "group_values")
        if isinstance(self.min_lr, list):
            _same_groups(owner, "min_lr", self.min_lr, len(optimizer.group_values("lr")))
        claim(self, optimizer, ["lr"])
        self.optimizer = optimizer

    def _min_lrs(self, groups: int) -> List[float]:
        return list(self.min_lr) if isinstance(self.min_lr, list) else [self.min_lr] * groups

    def _begin_step(self, metric: Any, epoch: Optional[int]) -> float:
        """Check the call, advance the epoch, return the metric as a float."""
        owner = type(self).__name__
        if self.optimizer is None:
            raise ValueError(f"{owner} has no optimizer yet: pass it to {owner}(opt, ...) or use it as a "
                             f"trainer callback")
        x = _real_or_nan(f"{owner}.step(metric)", metric)
        self.last_epoch = _epoch_arg(owner, epoch, self.last_epoch)
        return x

    def _plateau_cut(self, x: float, lrs: List[float]) -> List[float]:
        """Every group's lr after observing ``x``: all cut together when patience
        has run out (torch's ReduceLROnPlateau cuts every param group)."""
        if not self._plateau.observe(x):
            return lrs
        self._plateau.acted()
        new_lrs = [_cut(lr, self.factor, floor) for lr, floor in zip(lrs, self._min_lrs(len(lrs)))]
        self.num_reductions += any(new < lr for new, lr in zip(new_lrs, lrs))
        return new_lrs

    def step(self, metric: float, epoch: Optional[int] = None) -> float:
        raise NotImplementedError

    def on_train_begin(self, trainer: Any) -> None:
        if self.optimizer is None:
            self._bind(_optimizer_from(type(self).__name__, trainer))
        else:  # it drives again from this fit on (its last fit's on_train_end let go)
            claim(self, self.optimizer, ["lr"])

    def on_train_end(self, trainer: Any) -> None:
        if self.optimizer is not None:
            release(self, self.optimizer)

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any], trainer: Any) -> None:
        value = _monitored(type(self).__name__, self.monitor, logs)
        if value is not None:
            self.step(value, epoch)

    def state_dict(self) -> Dict[str, Any]:
        """The plateau counter (``best``, ``wait``, ``cooldown_left``),
        ``last_epoch`` and ``num_reductions``; subclasses add their lrs."""
        return {**self._plateau.state(), "last_epoch": self.last_epoch, "num_reductions": self.num_reductions}

    _FIELDS: Dict[str, Callable[[str, Any], Any]] = {**_PlateauCounter.FIELDS, "last_epoch": _epoch_index,
                                                     "num_reductions": _count}

    def _load_common(self, checked: Mapping[str, Any]) -> None:
        self._plateau.load(checked)
        self.last_epoch, self.num_reductions = checked["last_epoch"], checked["num_reductions"]
