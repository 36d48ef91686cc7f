"""Linear warmup, and the warmup rule the cosine schedules share.

The seed article's rule, ``base * (k + 1) / w`` (step 0 already gets
``base / w``, the full value comes at step ``w - 1``); with
``warmup_start=s`` the optax / Hugging Face rule, ``s + (base - s) * k / w``
(``warmup_start=0`` starts from 0 and reaches ``base`` at step ``w``).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Union

from .._checks import integer, real
from .base import Schedule, ScheduleLike, _schedule_arg, register
from .basic import constant

__all__ = ["linear_warmup"]


def _warmup_start(value: Any) -> Union[float, None]:
    return None if value is None else real("warmup_start", value)


def _warmup_then(target: ScheduleLike, w: int, start: Union[float, None] = None) -> Callable[[int], float]:
    """Warmup for ``k < w``, then ``target`` shifted by w.

    ``start=None``: the seed's warmup, ``target(0) * (k + 1) / w`` (step w-1
    and step w both give target(0)). ``start=s``: optax's / Hugging Face's,
    ``s + (target(0) - s) * k / w`` (step 0 gives s, step w gives target(0)).
    """
    if w == 0:
        return target
    peak = float(target(0))
    if start is None:
        return lambda k: peak * (k + 1) / w if k < w else target(k - w)
    return lambda k: start + (peak - start) * k / w if k < w else target(k - w)


def _with_warmup_start(args: Dict[str, Any], warmup_start: Any) -> Dict[str, Any]:
    # Shown (and pickled) only when set, so the reprs of existing schedules do not change.
    return args if warmup_start is None else {**args, "warmup_start": warmup_start}


@register
def linear_warmup(target: Union[float, ScheduleLike], warmup_steps: int,
                  warmup_start: Union[float, None] = None) -> Schedule:
    """Linear warmup to ``target``, then ``target`` (a value or a schedule).

    Rule (docs/algorithms.md), with ``base = target(0)`` and ``w = warmup_steps``:

    - ``warmup_start=None`` (the seed article's warmup): ``base * (k + 1) / w``
      for ``k < w``. The first step already gets ``base / w`` (never 0),
      and the ramp ends at ``base`` at step ``w - 1``;
    - ``warmup_start=s`` (optax's ``linear_schedule`` / Hugging Face's
      warmup, ``s=0``; torch's ``LinearLR(start_factor=s / base)``):
      ``s + (base - s) * k / w`` for ``k < w``, so step 0 gives ``s`` and
      ``base`` comes at step ``w``;

    then ``target(k - w)``.

    Parameters
    ----------
    target
        the value (or the schedule) to warm up to.
    warmup_steps
        ``w`` >= 0 (0: no warmup).
    warmup_start
        None (the seed's rule) or the value at step 0.

    Examples
    --------
    ``linear_warmup(1e-3, 10)`` gives 1e-4, 2e-4, ..., 1e-3, 1e-3, ...;
    ``linear_warmup(1e-3, 10, warmup_start=0.0)`` gives 0, 1e-4, ..., 9e-4, 1e-3, ...
    """
    w = integer("warmup_steps", warmup_steps, 0)
    start = _warmup_start(warmup_start)
    inner = _schedule_arg("target", target) if callable(target) else constant(real("target", target))
    return Schedule(_warmup_then(inner, w, start), "linear_warmup",
                    _with_warmup_start({"target": target, "warmup_steps": warmup_steps}, warmup_start))
