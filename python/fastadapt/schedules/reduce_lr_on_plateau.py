"""ReduceLROnPlateau: cut every lr group when a metric stops improving
(torch's and Keras's ReduceLROnPlateau)."""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Union

from ._control import _load_fields, _opt_lrs, _same_groups
from ._plateau import _LRPlateau

__all__ = ["ReduceLROnPlateau"]


class ReduceLROnPlateau(_LRPlateau):
    """Multiply the learning rate of every group by ``factor`` when a metric stops improving.

    Rule (docs/algorithms.md): after each epoch with metric ``x``, ``x``
    improves if ``x < best - |best| * threshold`` (``threshold_mode="rel"``)
    or ``x < best - threshold`` (``"abs"``); ``mode="max"`` mirrors both.
    On improvement ``best = x, wait = 0``; otherwise ``wait += 1`` and when
    ``wait >= patience``: every lr group ``i`` (the optimizer's default, then
    each override that sets ``lr``) gets ``lr_i = max(lr_i * factor,
    min_lr_i)`` (never raised: an lr already below its ``min_lr`` stays),
    ``wait = 0``, and for the next ``cooldown`` epochs ``wait`` stays 0. A
    NaN metric never improves.

    Differences from torch.optim.lr_scheduler.ReduceLROnPlateau: the cut
    comes when ``wait >= patience`` (Keras's count), torch's one epoch later
    (``wait > patience``); so ``patience=p`` here matches torch's
    ``patience=p-1``; torch also skips a cut smaller than ``eps=1e-8``, here
    every cut applies. The rel threshold is taken from ``|best|``; torch's
    ``best * (1 - threshold)`` counts a worse value as an improvement when
    ``best < 0`` (for ``best >= 0`` they agree). Like torch, every group is
    cut and ``min_lr`` may be a list, one floor per group. The lrs are read
    from the optimizer at each cut, so an lr you set by hand is the one cut;
    a Scheduler driving ``lr`` would overwrite the cut at its next step, so
    let one controller own the lr. The ``state_dict`` carries every group's
    lr (as the optimizer's own ``state_dict`` does), and loading it into a
    bound controller sets them.

    Parameters
    ----------
    optimizer
        a fastadapt optimizer, or None to bind to ``trainer.optimizer`` in ``on_train_begin``.
    monitor
        the epoch-log key read by ``on_epoch_end``.
    mode
        ``"min"`` (a loss), ``"max"`` (an accuracy) or ``"auto"`` (the default, Keras's rule: ``"max"``
        when ``monitor`` names an accuracy, AUC or F-measure, else ``"min"``).
    factor
        in [0, 1): the multiplier of each cut.
    patience
        epochs without improvement before a cut (>= 0; 0 acts like 1).
    threshold
        how much better counts as better: with ``threshold_mode="rel"`` a fraction in [0, 1) of
        the best value, with ``"abs"`` an amount >= 0.
    threshold_mode
        ``"rel"`` or ``"abs"``.
    cooldown
        epochs after a cut in which no waiting is counted.
    min_lr
        the lr never goes below this; a number for every group or a list with one per lr group.

    Examples
    --------
        plateau = fa.ReduceLROnPlateau(opt, factor=0.5, patience=5)
        for epoch in range(epochs):
            train_one_epoch()
            plateau.step(validation_loss())
    """

    def __init__(self, optimizer: Any = None, *, monitor: str = "val_loss", mode: str = "auto", factor: float = 0.1,
                 patience: int = 10, threshold: float = 1e-4, threshold_mode: str = "rel", cooldown: int = 0,
                 min_lr: Union[float, List[float]] = 0.0):
        self._pending_lrs: Optional[List[float]] = None  # loaded before binding: applied when bound
        super().__init__(optimizer, monitor=monitor, mode=mode, factor=factor, patience=patience,
                         threshold=threshold, threshold_mode=threshold_mode, cooldown=cooldown, min_lr=min_lr)

    def _bind(self, optimizer: Any) -> None:
        super()._bind(optimizer)
        if self._pending_lrs is not None:
            _same_groups("ReduceLROnPlateau", "state_dict['lrs']", self._pending_lrs,
                         len(optimizer.group_values("lr")))
            optimizer.set_group_values("lr", self._pending_lrs)
            self._pending_lrs = None

    def step(self, metric: float, epoch: Optional[int] = None) -> float:
        """Record the metric of an epoch; cut every group's lr if it is time.
        Returns the default group's lr."""
        x = self._begin_step(metric, epoch)
        lrs = self.optimizer.group_values("lr")
        new_lrs = self._plateau_cut(x, lrs)
        if new_lrs != lrs:
            self.optimizer.set_group_values("lr", new_lrs)
        return self.optimizer.lr

    def state_dict(self) -> Dict[str, Any]:
        """The plateau state (``best``, ``wait``, ``cooldown_left``, ``last_epoch``,
        ``num_reductions``) and ``lrs``, every lr group's current lr (as the
        optimizer's own ``state_dict`` has them)."""
        lrs = self.optimizer.group_values("lr") if self.optimizer is not None else self._pending_lrs
        return {**super().state_dict(), "lrs": None if lrs is None else list(lrs)}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore the state; every group's saved lr goes to a bound optimizer
        (or to the one bound later). A state without ``lrs`` (saved by an
        older fastadapt) leaves the optimizer's lrs as they are."""
        checked = _load_fields("ReduceLROnPlateau", state_dict, {**self._FIELDS, "lrs": _opt_lrs},
                               optional=("lrs",))
        lrs = checked["lrs"]
        if self.optimizer is not None and lrs is not None:
            _same_groups("ReduceLROnPlateau", "state_dict['lrs']", lrs, len(self.optimizer.group_values("lr")))
            self.optimizer.set_group_values("lr", lrs)  # checked first: a refusal changes nothing
        elif self.optimizer is None:
            self._pending_lrs = lrs
        self._load_common(checked)
