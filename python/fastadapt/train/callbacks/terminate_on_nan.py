"""TerminateOnNaN: stop a run whose loss became NaN or infinite (Keras's
``keras.callbacks.TerminateOnNaN``)."""

from __future__ import annotations

import math
import numbers
from typing import Any, Dict, Mapping, Optional

from ._common import say
from .base import Callback

__all__ = ["TerminateOnNaN"]


def _nonfinite(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and not math.isfinite(value)


class TerminateOnNaN(Callback):
    """Set ``trainer.stop_training`` at the first step whose loss is NaN or
    infinite, and say so.

    fastadapt's trainer stops between epochs, so the epoch in which the
    loss went bad is finished first (with the default ``nonfinite="skip"``
    its non-finite steps change nothing; the epoch's ``loss`` is the mean of
    its finite ones). An epoch loss that is itself non-finite stops the run
    too (DataParallel, or a loss that overflowed in the mean).

    ``terminated_at``: ``(epoch, step)`` of the first bad loss (step None
    when seen at epoch end), or None.
    """

    def __init__(self) -> None:
        self.terminated_at: Optional[tuple] = None

    def on_train_begin(self, trainer: Any) -> None:
        self.terminated_at = None

    def _stop(self, trainer: Any, where: str, at: tuple) -> None:
        trainer.stop_training = True
        if self.terminated_at is None:
            self.terminated_at = at
            say(trainer, f"{where}: invalid loss, terminating training (TerminateOnNaN)")

    def on_batch_end(self, step: int, logs: Mapping[str, Any], trainer: Any) -> None:
        if _nonfinite(logs.get("loss")):
            self._stop(trainer, f"Step {step}", (getattr(trainer, "epoch", None), step))

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any], trainer: Any) -> None:
        if _nonfinite(logs.get("loss")):
            self._stop(trainer, f"Epoch {epoch + 1}", (epoch, None))

    def state_dict(self) -> Dict[str, Any]:
        """Empty: the callback keeps no state between epochs."""
        return {}
