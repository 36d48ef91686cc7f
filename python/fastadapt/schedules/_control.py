"""What the controllers share: argument checks, the optimizer binding, state_dict
loading, the lr groups."""

from __future__ import annotations

import math
import warnings
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

from .._checks import integer, real

_MODES = ("min", "max")
_THRESHOLD_MODES = ("rel", "abs")


def _count(name: str, value: Any) -> int:
    return integer(name, value, 0)


def _epoch_index(name: str, value: Any) -> int:
    return integer(name, value, -1)


def _monitor_key(monitor: Any) -> str:
    if not isinstance(monitor, str):
        raise TypeError(f"monitor={monitor!r} must be a log key such as 'val_loss'")
    return monitor


def _real_or_nan(name: str, value: Any) -> float:
    """A float; NaN and inf are allowed (a NaN metric never counts as an improvement)."""
    if isinstance(value, (str, bytes)):  # float("0.5") would pass silently
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}") from None


def _cut(lr: float, factor: float, min_lr: float) -> float:
    """One plateau cut: ``max(lr * factor, min_lr)``, but never above ``lr``
    (an lr already under ``min_lr`` stays where it is, as in torch and Keras)."""
    return min(lr, max(lr * factor, min_lr))


def _epoch_arg(owner: str, epoch: Any, last_epoch: int) -> int:
    if epoch is None:
        return last_epoch + 1
    return integer(f"{owner}.step(epoch=...)", epoch, 0)


def _monitored(owner: str, monitor: str, logs: Mapping[str, Any]) -> Any:
    """The monitored value, or None (with a warning, as Keras) when the logs lack it: training goes on,
    and this epoch does not count for the callback."""
    if monitor not in logs:
        hint = " (pass validation= to fit)" if monitor.startswith("val_") and not any(
            k.startswith("val_") for k in logs) else ""
        warnings.warn(f"{owner} monitors {monitor!r}, which this epoch's logs lack{hint}, so it did nothing this "
                      f"epoch (logged: {', '.join(map(repr, sorted(logs))) or 'nothing'}); pass monitor= one of "
                      f"those or log {monitor!r}", RuntimeWarning, stacklevel=3)
        return None
    return logs[monitor]


def _bound_optimizer(owner: str, optimizer: Any, needs: str) -> Any:
    if not hasattr(optimizer, needs):
        raise TypeError(f"{owner} needs a fastadapt optimizer (with .{needs}), got {type(optimizer).__name__}")
    return optimizer


def _optimizer_from(owner: str, trainer: Any) -> Any:
    optimizer = getattr(trainer, "optimizer", None)
    if optimizer is None:
        raise ValueError(f"{owner} was built without an optimizer and the trainer has none at "
                         f"on_train_begin; pass the optimizer to {owner}(...)")
    return optimizer


def _load_fields(owner: str, state_dict: Any, fields: Mapping[str, Callable[[str, Any], Any]],
                 optional: Tuple[str, ...] = ()) -> Dict[str, Any]:
    """Check a controller state_dict (exact keys, each value) before anything
    changes. Keys in ``optional`` may be absent (None then): they were added
    later, and checkpoints written before them must still load."""
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"{owner}.load_state_dict needs a dict, got {type(state_dict).__name__}")
    given, required = set(state_dict), set(fields) - set(optional)
    if not required <= given <= set(fields):
        missing, extra = required - given, given - set(fields)
        raise ValueError(f"{owner} state_dict keys differ: missing {sorted(missing)}, unexpected {sorted(extra)}; "
                         f"pass what {owner}.state_dict() returned")
    return {k: check(f"state_dict[{k!r}]", state_dict[k]) if k in state_dict else None for k, check in fields.items()}


def _best_metric(name: str, value: Any) -> float:
    """A saved ``best``: a number or +-inf (inf: nothing seen yet). Never NaN,
    which no metric can become (NaN never improves) and after which nothing would."""
    v = _real_or_nan(name, value)
    if math.isnan(v):
        raise ValueError(f"{name}={value!r} must be a number or +-inf, not NaN; pass what state_dict() returned")
    return v


def _opt_lrs(name: str, value: Any) -> Optional[List[float]]:
    """None, or one lr >= 0 per group. A single number (what checkpoints held
    before groups were moved) is the default group's alone."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        if not value:
            raise ValueError(f"{name}=[] must hold one lr per group; pass what state_dict() returned")
        return [real(f"{name}[{i}]", v, low=0.0) for i, v in enumerate(value)]
    return [real(name, value, low=0.0)]


def _min_lrs(value: Any) -> Union[float, List[float]]:
    """One floor for every group, or one per group (torch's ``min_lrs``)."""
    if isinstance(value, (list, tuple)):
        if not value:
            raise ValueError("min_lr=[] must be a number or one number per lr group")
        return [real(f"min_lr[{i}]", v, low=0.0) for i, v in enumerate(value)]
    return real("min_lr", value, low=0.0)


def _same_groups(owner: str, what: str, values: List[Any], groups: int, name: str = "lr") -> None:
    if len(values) != groups:
        raise ValueError(f"{owner}: {what} has {len(values)} values, the optimizer has {groups} {name} groups (the "
                         f"default, then each override that sets {name!r}); use one value per group (a state "
                         f"saved for an optimizer with the same overrides)")
