"""The callback protocol shared by the training loop and the controllers.

A callback is any object with some of these methods; `Callback` gives no-op
defaults so subclasses override only what they need. The trainer (or a
user's own loop) calls them in this order::

    on_train_begin(trainer)
    for each epoch:
        on_epoch_begin(epoch, trainer)
        for each batch:   (after the optimizer update)
            on_batch_end(step, logs, trainer)     # logs: {"loss": float, ...}
        on_epoch_end(epoch, logs, trainer)        # logs: {"loss", "val_loss", "val_<metric>", "lr", ...}
    on_train_end(trainer)

`epoch` and `step` are 0-based counts of *completed* epochs/steps before this
one finished, i.e. the index of the epoch/step that just ran.

What a callback may read and write on `trainer` (Keras's ``model`` role):

- ``trainer.optimizer``: the fastadapt optimizer (hyperparameters are
  attributes: assign ``trainer.optimizer.lr = ...``);
- ``trainer.params``: the parameter tree being trained (arrays updated in place);
- ``trainer.history``: what has been recorded so far;
- ``trainer.stop_training``: set it to True to stop after the current epoch.

Controllers that take an optimizer (``ReduceLROnPlateau(opt, ...)``) also
accept ``None`` and bind to ``trainer.optimizer`` in ``on_train_begin``, so
they can be listed before the trainer builds its optimizer. Every callback
with state implements ``state_dict()`` / ``load_state_dict()`` returning and
taking plain data (numbers, strings, lists, dicts, NumPy arrays), so a run
resumed from a checkpoint continues exactly.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence

HOOKS = ("on_train_begin", "on_epoch_begin", "on_batch_end", "on_epoch_end", "on_train_end")


class Callback:
    """Base class: every hook is a no-op; stateless by default."""

    def on_train_begin(self, trainer: Any) -> None:
        """Called once before the first epoch."""

    def on_epoch_begin(self, epoch: int, trainer: Any) -> None:
        """Called before epoch `epoch` (0-based) starts."""

    def on_batch_end(self, step: int, logs: Mapping[str, Any], trainer: Any) -> None:
        """Called after the optimizer update of global step `step` (0-based)."""

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any], trainer: Any) -> None:
        """Called after epoch `epoch` (0-based), with its logged values."""

    def on_train_end(self, trainer: Any) -> None:
        """Called once after the last epoch (also after an early stop)."""

    def state_dict(self) -> Dict[str, Any]:
        """Plain-data state for checkpoints (empty for stateless callbacks)."""
        return {}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore what `state_dict` returned."""
        if state_dict:
            raise ValueError(f"{type(self).__name__} is stateless; got state keys {sorted(state_dict)}")


def hooks(callbacks: Sequence[Any], name: str) -> List[Any]:
    """The bound `name` hooks of the callbacks that have one, in their order."""
    return [h for h in (getattr(cb, name, None) for cb in callbacks) if callable(h)]


def check_callbacks(callbacks: Optional[Sequence[Any]]) -> List[Any]:
    """A list of the given callbacks (None: none); TypeError naming the
    argument when it is not a list of objects with at least one hook."""
    if callbacks is None:
        return []
    if isinstance(callbacks, (str, bytes)) or not isinstance(callbacks, Sequence):
        raise TypeError(f"callbacks must be a list of callbacks, got {type(callbacks).__name__}; "
                        f"wrap a single one: callbacks=[cb]")
    for i, cb in enumerate(callbacks):
        if not any(callable(getattr(cb, hook, None)) for hook in HOOKS):
            raise TypeError(f"callbacks[{i}] ({type(cb).__name__}) has none of the hooks {', '.join(HOOKS)}; "
                            f"subclass fastadapt.callbacks.Callback")
    return list(callbacks)
