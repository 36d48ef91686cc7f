"""EarlyStopping: stop when a metric stops improving, and put the best params
back."""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional

import numpy as np

from .._checks import array_leaves, flag, monitor_mode, real
from ..train.callbacks.base import Callback
from ._control import (_best_metric, _count, _epoch_arg, _epoch_index, _load_fields, _monitor_key, _monitored,
                       _real_or_nan)
from ._plateau import _Improvement

__all__ = ["EarlyStopping"]


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
    best params); [`restore_best_params`][fastadapt.EarlyStopping.restore_best_params] does it by hand. With
    ``fa.Trainer`` and a two-sequence optimizer (Schedule-Free), the params it
    snapshots in ``on_epoch_end`` and restores are the evaluation point: the
    trainer shows that point to ``on_epoch_end`` and ``on_train_end``.

    Parameters
    ----------
    params
        the parameter tree to snapshot, or None to bind to ``trainer.params`` in ``on_train_begin``
        (needed only with ``restore_best=True``).
    monitor
        the epoch-log key to watch (``"val_loss"``, ``"val_accuracy"``, ...).
    mode
        its direction: ``"min"`` (a loss), ``"max"`` (an accuracy) or ``"auto"`` (the default, Keras's
        rule: ``"max"`` when ``monitor`` names an accuracy, AUC or F-measure, else ``"min"``).
    min_delta
        how much better counts as better (absolute, >= 0).
    patience
        epochs without improvement before stopping (>= 0).
    baseline
        a value the metric must beat, or None.
    start_epoch
        epochs before this one are ignored (Keras's start_from_epoch).
    restore_best
        snapshot and restore the best params.

    Examples
    --------
        stopper = fa.EarlyStopping(params, patience=10)
        for epoch in range(1000):
            train_one_epoch()
            if stopper.step(validation_loss()):
                break               # params now hold the best epoch's values
    """

    def __init__(self, params: Any = None, *, monitor: str = "val_loss", mode: str = "auto", min_delta: float = 0.0,
                 patience: int = 10, baseline: Optional[float] = None, start_epoch: int = 0,
                 restore_best: bool = True):
        self.monitor = _monitor_key(monitor)
        self._improves = _Improvement(monitor_mode(mode, self.monitor), min_delta, "abs", threshold_name="min_delta")
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
        if self.stopped_epoch is not None:
            # A new fit after a stop (the same callback reused, as in Keras): watch it afresh. A run that
            # was not stopped (resumed from a checkpoint, continued) keeps its count.
            self.best, self.best_epoch, self.wait, self.stopped_epoch = self._improves.worst, -1, 0, None
            self._snapshot = None
        if self._paths is None and self.restore_best:
            params = getattr(trainer, "params", None)
            if params is None:
                raise ValueError("EarlyStopping(restore_best=True) was built without params and the trainer has "
                                 "none at on_train_begin; pass EarlyStopping(params, ...)")
            self._bind(params)

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any], trainer: Any) -> None:
        value = _monitored("EarlyStopping", self.monitor, logs)
        if value is not None and self.step(value, epoch):
            trainer.stop_training = True

    def on_train_end(self, trainer: Any) -> None:
        if self.restore_best:
            self.restore_best_params()

    def state_dict(self) -> Dict[str, Any]:
        """The monitor's state (``best``, ``best_epoch``, ``wait``, ``last_epoch``,
        ``stopped_epoch``) and, with ``restore_best``, copies of the best params
        (``best_params``; None before the first snapshot)."""
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait, "last_epoch": self.last_epoch,
                "stopped_epoch": self.stopped_epoch,
                "best_params": None if self._snapshot is None else [a.copy() for a in self._snapshot]}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore what [`state_dict`][fastadapt.EarlyStopping.state_dict] returned (the saved best params are
        copied, and checked against the bound params' shapes and dtypes).

        Raises
        ------
        ValueError
            when a key is missing or extra or a value is out of range.
        TypeError
            when ``best_params`` is neither None nor a list of NumPy arrays.
        """
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
