"""Small pieces the callbacks in this package share."""

from __future__ import annotations

import os
import sys
from typing import Any, Mapping, Sequence


def say(trainer: Any, message: str) -> None:
    """A callback's ``verbose`` message: through ``trainer.log`` when it has
    one (so a progress bar is not torn), else on stderr."""
    log = getattr(trainer, "log", None)
    if callable(log):
        log(message)
    else:
        print(message, file=sys.stderr, flush=True)


def path_arg(owner: str, name: str, value: Any) -> str:
    """A file or directory argument as a string; TypeError naming it otherwise."""
    if isinstance(value, bytes) or not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{owner}({name}=...) must be a path (str or os.PathLike), got {type(value).__name__} "
                        f"{value!r:.80}")
    path = os.fspath(value)
    if not isinstance(path, str) or not path:
        raise ValueError(f"{owner}({name}={value!r}) must be a non-empty path")
    return path


def verbose_arg(owner: str, value: Any) -> int:
    """Keras's ``verbose``: 0 (silent) or 1 (a line when the callback acts)."""
    if isinstance(value, bool):
        return int(value)
    if not isinstance(value, int) or value not in (0, 1):
        raise ValueError(f"{owner}(verbose={value!r}) must be 0 or 1")
    return value


def check_state_keys(owner: str, state_dict: Any, keys: Sequence[str]) -> None:
    """``state_dict`` is a dict with exactly ``keys``; ValueError naming the
    callback and what it got otherwise."""
    if not isinstance(state_dict, Mapping) or set(state_dict) != set(keys):
        got = sorted(state_dict) if isinstance(state_dict, Mapping) else type(state_dict).__name__
        raise ValueError(f"{owner} state_dict must have keys {sorted(keys)}, got {got}; pass what "
                         f"{owner}.state_dict() returned")
