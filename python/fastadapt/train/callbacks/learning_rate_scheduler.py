"""LearningRateScheduler: the lr of each epoch from ``schedule(epoch, lr)``
(Keras's ``keras.callbacks.LearningRateScheduler``)."""

from __future__ import annotations

import inspect
import math
import numbers
from typing import Any, Callable, Dict, List, Mapping, Optional

from ._common import check_state_keys, say, verbose_arg
from ._drivers import claim, release
from .base import Callback

__all__ = ["LearningRateScheduler"]


def _schedule_args(schedule: Callable[..., Any]) -> int:
    """How many arguments ``schedule`` gets: 2 (epoch, lr) as Keras calls it,
    or 1 (epoch) for a function of the epoch alone (Keras 1's form, which
    Keras still accepts). Read from the signature, not by catching a
    TypeError, which would also hide a TypeError raised inside the schedule."""
    try:
        signature = inspect.signature(schedule)
    except (TypeError, ValueError):
        return 2
    params = list(signature.parameters.values())
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        return 2
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = sum(p.default is p.empty for p in positional)
    if required <= 2 <= len(positional):
        return 2
    if required <= 1 <= len(positional):
        return 1
    raise TypeError(f"LearningRateScheduler(schedule=...) must be a function (epoch, lr) -> new lr, as in Keras; "
                    f"{schedule!r:.60} takes {len(positional)} positional arguments ({required} required)")


class LearningRateScheduler(Callback):
    """At the start of every epoch, set the lr to ``schedule(epoch, lr)``:
    ``epoch`` is the 0-based index of the epoch about to run and ``lr`` the
    optimizer's current (default group's) lr. A function of the epoch alone
    (``schedule(epoch)``) works too.

    Every parameter group moves, as the other controllers move them (and as
    torch's schedulers do): group ``i`` gets ``new_lr * base_i / base_0``,
    its ratio to the default group when the callback was bound (the first
    ``on_train_begin``); a group whose lr is 0 stays 0, and nonzero groups
    beside a default of 0 are refused at binding. The bases travel in
    ``state_dict``, so a resumed run keeps the original ratios.

    Another controller that also drives the lr (ReduceLROnPlateau,
    AdaptiveLR, a Scheduler of lr) on the same optimizer is warned about
    when both are bound: each would overwrite the other.

    Parameters
    ----------
    schedule
        ``(epoch, lr) -> lr``; the value must be a finite number the optimizer accepts (>= 0).
    verbose
        1 prints the lr it sets.

    Examples
    --------
        def schedule(epoch, lr):
            return lr if epoch < 10 else lr * math.exp(-0.1)
        trainer.fit(data, epochs=20, ...)  # with callbacks=[fa.LearningRateScheduler(schedule)]
    """

    def __init__(self, schedule: Callable[..., Any], verbose: int = 0):
        if not callable(schedule):
            raise TypeError(f"LearningRateScheduler(schedule=...) must be a function (epoch, lr) -> lr, got "
                            f"{type(schedule).__name__} {schedule!r:.60}")
        self._args = _schedule_args(schedule)
        self.schedule = schedule
        self.verbose = verbose_arg("LearningRateScheduler", verbose)
        self.optimizer: Any = None
        self._bases: Optional[List[float]] = None  # each group's lr when bound (or as loaded)
        self.last_lr: Optional[float] = None

    # ---- binding ------------------------------------------------------------------
    def on_train_begin(self, trainer: Any) -> None:
        optimizer = getattr(trainer, "optimizer", None)
        if optimizer is None or not callable(getattr(optimizer, "group_values", None)):
            raise TypeError(f"LearningRateScheduler needs a trainer with a fastadapt optimizer, got "
                            f"{type(optimizer).__name__}")
        lrs = [float(v) for v in optimizer.group_values("lr")]
        bases = lrs if self._bases is None else self._bases
        if len(bases) != len(lrs):
            raise ValueError(f"LearningRateScheduler: the saved bases have {len(bases)} lr groups, the optimizer "
                             f"has {len(lrs)}; load a state saved for an optimizer with the same overrides")
        if bases[0] == 0 and any(b != 0 for b in bases[1:]):
            raise ValueError(f"LearningRateScheduler: the default group's lr is 0, so the override groups' lrs "
                             f"{bases[1:]} have no ratio to it to keep; give the optimizer a nonzero lr")
        self.optimizer, self._bases = optimizer, bases
        claim(self, optimizer, ["lr"])

    def on_train_end(self, trainer: Any) -> None:
        if self.optimizer is not None:
            release(self, self.optimizer)  # it acts only while a fit runs

    # ---- the schedule -------------------------------------------------------------
    def on_epoch_begin(self, epoch: int, trainer: Any) -> None:
        if self.optimizer is None or self._bases is None:  # used outside a fit, or a state saved unbound
            self.on_train_begin(trainer)
        assert self._bases is not None
        lr = float(self.optimizer.lr)
        new = self.schedule(epoch, lr) if self._args == 2 else self.schedule(epoch)
        if isinstance(new, (bool, str, bytes)) or not isinstance(new, numbers.Real) or not math.isfinite(new):
            raise ValueError(f"LearningRateScheduler: schedule({epoch}{', ' + repr(lr) if self._args == 2 else ''}) "
                             f"returned {new!r}; it must return a finite number (the new lr)")
        new = float(new)
        base = self._bases[0]
        values = [new] + [new * b / base if base else 0.0 for b in self._bases[1:]]
        try:
            self.optimizer.set_group_values("lr", values)  # checked first: a refusal changes nothing
        except (TypeError, ValueError) as e:
            raise type(e)(f"LearningRateScheduler: schedule gave lr={new!r} for epoch {epoch}: {e}") from e
        self.last_lr = new
        if self.verbose:
            say(trainer, f"Epoch {epoch + 1}: LearningRateScheduler setting learning rate to {new:.6g}.")

    # ---- state --------------------------------------------------------------------
    def state_dict(self) -> Dict[str, Any]:
        """``{"bases": [...]}``: every lr group's lr when the callback was bound
        (None before), so a resumed run keeps the groups' original ratios."""
        return {"bases": None if self._bases is None else list(self._bases)}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore what [`state_dict`][fastadapt.LearningRateScheduler.state_dict] returned.

        Raises
        ------
        ValueError
            when the key is missing or extra, the bases are not a list of finite
            lrs >= 0, or a bound optimizer has another number of lr groups.
        """
        check_state_keys("LearningRateScheduler", state_dict, ("bases",))
        bases = state_dict["bases"]
        if bases is not None:
            if (not isinstance(bases, (list, tuple)) or not bases or any(
                    isinstance(b, bool) or not isinstance(b, numbers.Real) or not math.isfinite(b) or b < 0
                    for b in bases)):
                raise ValueError(f"LearningRateScheduler state_dict['bases']={bases!r} must be a list of lrs >= 0")
            if self.optimizer is not None and len(bases) != len(self.optimizer.group_values("lr")):
                raise ValueError(f"LearningRateScheduler state_dict['bases'] has {len(bases)} lr groups, the "
                                 f"optimizer has {len(self.optimizer.group_values('lr'))}")
            bases = [float(b) for b in bases]
        self._bases = bases

    def __repr__(self) -> str:
        return f"LearningRateScheduler({getattr(self.schedule, '__name__', self.schedule)!r})"
