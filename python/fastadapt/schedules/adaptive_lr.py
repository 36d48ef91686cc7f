"""AdaptiveLR, the seed article's scheduler: warmup, then plateau reduction,
with early-stop detection."""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Union

from .._checks import flag, integer, real
from ._control import _count, _load_fields, _opt_lrs, _same_groups
from ._plateau import _LRPlateau

__all__ = ["AdaptiveLR"]


class AdaptiveLR(_LRPlateau):
    """The seed article's scheduler: linear warmup, then plateau reduction,
    with early-stop detection.

    Rule (docs/algorithms.md; the article's ``AdaptiveLRScheduler``), with
    ``w = warmup_epochs`` and ``init`` the lr warmup climbs to:

    - the lr used in epoch ``e < w`` is ``init * (e + 1) / w``, exactly
      the article's, and exactly ``Scheduler(per="epoch",
      lr=linear_warmup(init, w))``: epoch 0 trains at ``init / w`` (applied
      at construction or binding, as torch's schedulers apply their first
      value), epoch ``w - 1`` at ``init``;
    - [`step`][fastadapt.AdaptiveLR.step] is called after each epoch ``e`` with its metric ``x``
      and sets the lr of epoch ``e + 1``. From ``e + 1 >= w`` on it applies
      the plateau rule of [`ReduceLROnPlateau`][fastadapt.ReduceLROnPlateau] to ``x`` with the
      article's defaults (``threshold=0``: any decrease is an improvement,
      no cooldown, no floor): on ``wait >= patience``,
      ``lr = max(lr * factor, min_lr)``. The first metric counted is that
      of epoch ``w - 1``, the first one trained at the full lr; earlier
      metrics are ignored. The article's ``step(val_loss, epoch)`` returns
      the lr for ``epoch`` given the loss seen before it: the lr here for
      epoch ``n >= 1`` equals its ``step(metric of epoch n - 1, n)``, for
      any metric sequence (NaN included: it never improves);
    - ``should_stop`` turns True after ``stop_patience`` counted epochs
      without improvement (cuts do not restart this count); as a trainer
      callback it then sets ``trainer.stop_training``.

    The article counts like Keras, one epoch ahead of torch (see
    [`ReduceLROnPlateau`][fastadapt.ReduceLROnPlateau]). The lr is the controller's own
    (``current_lr``, as in the article) and is written to the optimizer at
    every step. Every lr group moves (the optimizer's default, then each
    override that sets ``lr``): group ``i`` warms up to its own lr at
    binding (``init_lrs[i]``; ``init_lr`` replaces the default group's), and
    the plateau cuts all groups together, as [`ReduceLROnPlateau`][fastadapt.ReduceLROnPlateau]
    does. ``init_lrs`` and ``current_lrs`` travel in the ``state_dict``.

    Parameters
    ----------
    optimizer
        a fastadapt optimizer, or None to bind to ``trainer.optimizer`` in ``on_train_begin``.
    warmup_epochs
        epochs of linear warmup (0: none, epoch 0 trains at ``init``).
    patience
        epochs without improvement before a cut (>= 0), as
        [`ReduceLROnPlateau`][fastadapt.ReduceLROnPlateau]'s.
    factor
        in [0, 1): the multiplier of each cut.
    min_lr
        the lr never goes below this; a number for every group or a list with one per lr group.
    cooldown
        epochs after a cut in which no waiting is counted.
    threshold
        how much better counts as better (``threshold_mode="rel"``: a fraction in [0, 1) of the best
        value; ``"abs"``: an amount >= 0).
    threshold_mode
        ``"rel"`` or ``"abs"``.
    mode
        ``"min"`` (a loss), ``"max"`` (an accuracy) or ``"auto"`` (the default, Keras's rule: ``"max"``
        when ``monitor`` names an accuracy, AUC or F-measure, else ``"min"``).
    stop_patience
        counted epochs without improvement before ``should_stop``; default ``3 * patience`` (three
        cuts brought nothing).
    monitor
        the epoch-log key read by ``on_epoch_end``.
    init_lr
        the lr the default group warms up to; default the optimizer's lr when bound.

    Examples
    --------
        adaptive = fa.AdaptiveLR(opt, warmup_epochs=10, patience=5, factor=0.5)
        for epoch in range(epochs):
            train_one_epoch()
            adaptive.step(validation_loss())
            if adaptive.should_stop:
                break
    """

    def __init__(self, optimizer: Any = None, *, warmup_epochs: int = 10, patience: int = 5, factor: float = 0.5,
                 min_lr: Union[float, List[float]] = 0.0, cooldown: int = 0, threshold: float = 0.0,
                 threshold_mode: str = "rel", mode: str = "auto", stop_patience: Optional[int] = None,
                 monitor: str = "val_loss", init_lr: Optional[float] = None):
        self.warmup_epochs = _count("warmup_epochs", warmup_epochs)
        patience = _count("patience", patience)
        self.stop_patience = max(1, 3 * patience) if stop_patience is None else integer("stop_patience",
                                                                                      stop_patience, 1)
        self._init_lr_arg = None if init_lr is None else real("init_lr", init_lr, low=0.0)
        self.init_lrs: Optional[List[float]] = None
        self.current_lrs: Optional[List[float]] = None
        self.epochs_since_best = 0
        self.should_stop = False
        super().__init__(optimizer, monitor=monitor, mode=mode, factor=factor, patience=patience,
                         threshold=threshold, threshold_mode=threshold_mode, cooldown=cooldown, min_lr=min_lr)

    @property
    def init_lr(self) -> Optional[float]:
        """The default group's warmup target (None until known)."""
        return self.init_lrs[0] if self.init_lrs is not None else self._init_lr_arg

    @property
    def current_lr(self) -> Optional[float]:
        """The default group's current lr (None before binding)."""
        return None if self.current_lrs is None else self.current_lrs[0]

    def _bind(self, optimizer: Any) -> None:
        super()._bind(optimizer)
        groups = len(optimizer.group_values("lr"))
        for what, lrs in (("state_dict['init_lr']", self.init_lrs), ("state_dict['current_lr']", self.current_lrs)):
            if lrs is not None:  # loaded before binding
                _same_groups("AdaptiveLR", what, lrs, groups)
        self._start()

    def _lrs_for_epoch(self, n: int) -> List[float]:
        """Every group's lr for epoch ``n`` while warming up (``n < w``), the
        article's ``init * (n + 1) / w``; ``init`` itself from ``w`` on."""
        assert self.init_lrs is not None
        if n < self.warmup_epochs:
            return [init * (n + 1) / self.warmup_epochs for init in self.init_lrs]
        return list(self.init_lrs)

    def _start(self) -> None:
        """Fill in the lrs a state saved before binding lacks (init_lrs: the
        optimizer's group lrs, the default's replaced by ``init_lr``;
        current_lrs: those of the next epoch's warmup) and apply current_lrs."""
        if self.init_lrs is None:
            bases = list(self.optimizer.group_values("lr"))
            if self._init_lr_arg is not None:
                bases[0] = self._init_lr_arg
            self.init_lrs = bases
        if self.current_lrs is None:
            self.current_lrs = self._lrs_for_epoch(self.last_epoch + 1)
        self.optimizer.set_group_values("lr", self.current_lrs)

    def step(self, metric: float, epoch: Optional[int] = None) -> float:
        """Record the metric of epoch ``epoch`` (default: the next one) and set
        the lr of the epoch after it; returns the default group's."""
        x = self._begin_step(metric, epoch)
        upcoming = self.last_epoch + 1  # the epoch the new lr is for
        if upcoming < self.warmup_epochs:
            self.current_lrs = self._lrs_for_epoch(upcoming)
        else:
            lrs = self.current_lrs
            assert lrs is not None  # (set when the optimizer was bound: _begin_step checked it is)
            self.current_lrs = self._plateau_cut(x, lrs)
            self.epochs_since_best = 0 if self._plateau.improved else self.epochs_since_best + 1
            if self.epochs_since_best >= self.stop_patience:
                self.should_stop = True
        self.optimizer.set_group_values("lr", self.current_lrs)
        return self.current_lrs[0]

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any], trainer: Any) -> None:
        super().on_epoch_end(epoch, logs, trainer)
        if self.should_stop:
            trainer.stop_training = True

    def state_dict(self) -> Dict[str, Any]:
        """The plateau state (``best``, ``wait``, ``cooldown_left``, ``last_epoch``,
        ``num_reductions``), the warmup targets ``init_lr`` and current lrs
        ``current_lr`` of every group (None before binding),
        ``epochs_since_best`` and ``should_stop``."""
        return {**super().state_dict(),
                "init_lr": None if self.init_lrs is None else list(self.init_lrs),
                "current_lr": None if self.current_lrs is None else list(self.current_lrs),
                "epochs_since_best": self.epochs_since_best, "should_stop": self.should_stop}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore the state; a bound optimizer gets the saved lrs (every
        group). A state saved before binding has no lrs yet: a bound
        controller then keeps the init_lrs its own binding found."""
        checked = _load_fields("AdaptiveLR", state_dict,
                               {**self._FIELDS, "init_lr": _opt_lrs, "current_lr": _opt_lrs,
                                "epochs_since_best": _count, "should_stop": flag})
        if self.optimizer is not None:
            groups = len(self.optimizer.group_values("lr"))
            for key in ("init_lr", "current_lr"):
                if checked[key] is not None:
                    _same_groups("AdaptiveLR", f"state_dict[{key!r}]", checked[key], groups)
        bound_init_lrs = self.init_lrs
        self._load_common(checked)
        self.init_lrs = checked["init_lr"] if checked["init_lr"] is not None else (
            bound_init_lrs if self.optimizer is not None else None)
        self.current_lrs = checked["current_lr"]
        self.epochs_since_best, self.should_stop = checked["epochs_since_best"], checked["should_stop"]
        if self.optimizer is not None:
            self._start()
