"""The callback protocol shared by the training loop and the controllers.

A callback is any object with some of these methods; `Callback` gives no-op
defaults so subclasses override only what they need. The trainer (or a
user's own loop) calls them in this order:

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

A public method named like a hook that is not one (Keras's
``on_train_batch_end``, a typo such as ``on_epoch_ned``) would never be
called; the trainer warns once per class and name, naming the hooks.

The ready-made callbacks are one per module beside this one (this
package, ``fastadapt.callbacks``, gathers them with the protocol).
"""

from __future__ import annotations

import difflib
import threading
import warnings
import weakref
from typing import Any, Dict, List, Mapping, Optional, Sequence, Set

HOOKS = ("on_train_begin", "on_epoch_begin", "on_batch_end", "on_epoch_end", "on_train_end")

__all__ = ["Callback", "HOOKS", "hooks", "check_callbacks"]


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
            unknown = _unknown_hooks(cb)
            hint = "".join(f"; {_advice(type(cb).__name__, name)}" for name in unknown)
            raise TypeError(f"callbacks[{i}] ({type(cb).__name__}) has none of the hooks {', '.join(HOOKS)}"
                            f"{hint}; subclass fastadapt.callbacks.Callback")
        _warn_unknown_hooks(cb)
    return list(callbacks)


# ---- hook names that are not hooks ---------------------------------------------------
# A method named like a hook but not one (Keras's on_train_batch_end, a typo
# such as on_epoch_ned) is never called, and nothing else would say so: the
# callback just silently does nothing. Warned once per class and name, so a
# callback built for every run of a sweep does not repeat it.

# Keras (and Lightning) hook names and what to use here instead.
_FOREIGN_HOOKS = {
    "on_batch_begin": "there is no batch-begin hook: do the work in on_batch_end, after the previous step, "
                      "or in on_epoch_begin",
    "on_train_batch_begin": "there is no batch-begin hook: do the work in on_batch_end, after the previous step, "
                            "or in on_epoch_begin",
    "on_train_batch_end": "Keras's on_train_batch_end is on_batch_end(step, logs, trainer) here",
    "on_train_epoch_begin": "Lightning's on_train_epoch_start is on_epoch_begin(epoch, trainer) here",
    "on_train_epoch_start": "Lightning's on_train_epoch_start is on_epoch_begin(epoch, trainer) here",
    "on_train_epoch_end": "Lightning's on_train_epoch_end is on_epoch_end(epoch, logs, trainer) here",
    "on_train_start": "Lightning's on_train_start is on_train_begin(trainer) here",
    "on_fit_start": "Lightning's on_fit_start is on_train_begin(trainer) here",
    "on_fit_end": "Lightning's on_fit_end is on_train_end(trainer) here",
    "on_epoch_start": "on_epoch_start is on_epoch_begin(epoch, trainer) here",
}
# Words that make an on_* name look like a training hook (a helper such as
# on_plateau_found is left alone).
_HOOK_WORDS = ("train", "epoch", "batch", "step", "fit", "test", "predict", "validation", "begin", "start", "end")

_warned: "weakref.WeakKeyDictionary[type, Set[str]]" = weakref.WeakKeyDictionary()  # classes die with their tests
_warned_lock = threading.Lock()


def _unknown_hooks(cb: Any) -> List[str]:
    """Callable public ``on_*`` attributes of ``cb`` that look like hooks but are not."""
    out = []
    for name in dir(cb):
        if not name.startswith("on_") or name in HOOKS:
            continue
        looks_like_hook = (name in _FOREIGN_HOOKS or any(w in _HOOK_WORDS for w in name.split("_")[1:])
                           or difflib.get_close_matches(name, HOOKS, n=1, cutoff=0.75))
        if looks_like_hook and callable(getattr(cb, name, None)):
            out.append(name)
    return out


def _advice(owner: str, name: str) -> str:
    close = difflib.get_close_matches(name, HOOKS, n=1, cutoff=0.75)
    why = _FOREIGN_HOOKS.get(name) or (f"did you mean {close[0]}?" if close else "")
    return f"{owner}.{name} is not a hook and is never called{' (' + why + ')' if why else ''}"


def _warn_unknown_hooks(cb: Any) -> None:
    cls = type(cb)
    unknown = _unknown_hooks(cb)
    if not unknown:
        return
    with _warned_lock:
        try:
            seen = _warned.setdefault(cls, set())
        except TypeError:  # a class that cannot be weakly referenced: warn every time rather than leak
            seen = set()
        new = [name for name in unknown if name not in seen]
        seen.update(new)
    for name in new:
        # stacklevel 4: the user's Trainer(...) / DataParallel(...) call
        warnings.warn(f"{_advice(cls.__name__, name)}. The hooks are {', '.join(HOOKS)} "
                      f"(fastadapt.callbacks.Callback)", UserWarning, stacklevel=4)
