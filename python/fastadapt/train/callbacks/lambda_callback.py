"""LambdaCallback: a callback made of functions (Keras's
``keras.callbacks.LambdaCallback``)."""

from __future__ import annotations

import inspect
from typing import Any, Callable, Dict, Mapping, Optional

from .base import HOOKS, Callback

__all__ = ["LambdaCallback"]

# Keras's arguments of each hook; the trainer is passed as one more.
_KERAS_ARGS = {"on_train_begin": 1, "on_epoch_begin": 2, "on_batch_end": 2, "on_epoch_end": 2, "on_train_end": 1}


def _takes_trainer(owner: str, fn: Callable[..., Any], keras_args: int) -> bool:
    """True when ``fn`` takes Keras's arguments plus the trainer; TypeError
    when it can take neither Keras's arguments nor those plus the trainer."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # some builtins have none: call them the Keras way
        return False
    positional = [p for p in signature.parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if any(p.kind == p.VAR_POSITIONAL for p in signature.parameters.values()):
        return True
    required = sum(p.default is p.empty for p in positional)
    if required <= keras_args + 1 <= len(positional):
        return True
    if required <= keras_args <= len(positional):
        return False
    raise TypeError(f"LambdaCallback({owner}=...) must take {keras_args} argument{'s' if keras_args > 1 else ''} "
                    f"as in Keras ({_keras_signature(owner)}), or those and the trainer; {fn!r:.60} takes "
                    f"{len(positional)}")


def _keras_signature(hook: str) -> str:
    return {"on_train_begin": "logs", "on_train_end": "logs", "on_epoch_begin": "epoch, logs",
            "on_epoch_end": "epoch, logs", "on_batch_end": "batch, logs"}[hook]


class LambdaCallback(Callback):
    """Build a callback from functions, one per hook, called with Keras's
    arguments: ``on_epoch_begin(epoch, logs)``, ``on_epoch_end(epoch, logs)``,
    ``on_batch_end(batch, logs)``, ``on_train_begin(logs)``,
    ``on_train_end(logs)``. A function that takes one more positional
    argument also gets the trainer (``lambda epoch, logs, trainer: ...``).

    ``epoch`` is 0-based; ``batch`` is the trainer's 0-based global step
    (fastadapt's ``on_batch_end`` counts steps across epochs). ``logs`` is
    the epoch's logs (a callback may add keys; the history records numbers
    added at epoch end), the step's logs for ``on_batch_end`` and an empty
    dict where the trainer has none (train and epoch begin). There is no
    batch-begin hook in fastadapt; passing one (or any other name) is a
    TypeError naming the hooks.

    Examples
    --------
        fa.LambdaCallback(on_epoch_end=lambda epoch, logs: print(epoch, logs["loss"]))
    """

    def __init__(self, on_epoch_begin: Optional[Callable[..., Any]] = None,
                 on_epoch_end: Optional[Callable[..., Any]] = None,
                 on_batch_end: Optional[Callable[..., Any]] = None,
                 on_train_begin: Optional[Callable[..., Any]] = None,
                 on_train_end: Optional[Callable[..., Any]] = None, **others: Any):
        if others:
            raise TypeError(f"LambdaCallback got {', '.join(sorted(others))}, which fastadapt's trainer never calls; "
                            f"the hooks are {', '.join(HOOKS)} (no batch-begin hook: use on_batch_end or "
                            f"on_epoch_begin)")
        given = {"on_epoch_begin": on_epoch_begin, "on_epoch_end": on_epoch_end, "on_batch_end": on_batch_end,
                 "on_train_begin": on_train_begin, "on_train_end": on_train_end}
        self._fns: Dict[str, Callable[..., Any]] = {}
        self._with_trainer: Dict[str, bool] = {}
        for hook, fn in given.items():
            if fn is None:
                continue
            if not callable(fn):
                raise TypeError(f"LambdaCallback({hook}=...) must be a function, got {type(fn).__name__} {fn!r:.60}")
            self._with_trainer[hook] = _takes_trainer(hook, fn, _KERAS_ARGS[hook])
            self._fns[hook] = fn

    def _call(self, hook: str, trainer: Any, *args: Any) -> None:
        fn = self._fns.get(hook)
        if fn is not None:
            fn(*args, trainer) if self._with_trainer[hook] else fn(*args)

    def on_train_begin(self, trainer: Any) -> None:
        self._call("on_train_begin", trainer, {})

    def on_epoch_begin(self, epoch: int, trainer: Any) -> None:
        self._call("on_epoch_begin", trainer, epoch, {})

    def on_batch_end(self, step: int, logs: Mapping[str, Any], trainer: Any) -> None:
        self._call("on_batch_end", trainer, step, logs)

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any], trainer: Any) -> None:
        self._call("on_epoch_end", trainer, epoch, logs)

    def on_train_end(self, trainer: Any) -> None:
        self._call("on_train_end", trainer, {})

    def __repr__(self) -> str:
        return f"LambdaCallback({', '.join(f'{k}=...' for k in self._fns)})"
