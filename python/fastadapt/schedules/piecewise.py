"""Schedules in pieces: constant values between boundaries, or whole
schedules one after another."""

from __future__ import annotations

import bisect
from typing import Sequence

from .._checks import real
from .base import Schedule, ScheduleLike, _boundaries, _schedule_arg, register

__all__ = ["piecewise_constant", "join"]


@register
def piecewise_constant(boundaries: Sequence[int], values: Sequence[float]) -> Schedule:
    """``values[i]`` for ``boundaries[i-1] <= k < boundaries[i]``.

    The new value starts *at* the boundary step (like torch's MultiStepLR;
    Keras's PiecewiseConstantDecay switches one step later).

    Parameters
    ----------
    boundaries
        strictly increasing step counts >= 1.
    values
        one more value than boundaries.

    Examples
    --------
    ``piecewise_constant([100, 200], [1e-2, 1e-3, 1e-4])``.
    """
    bounds = _boundaries("boundaries", boundaries)
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise TypeError(f"values={values!r} must be a list of numbers")
    vals = [real(f"values[{i}]", v) for i, v in enumerate(values)]
    if len(vals) != len(bounds) + 1:
        raise ValueError(f"values has {len(vals)} entries; with {len(bounds)} boundaries it needs {len(bounds) + 1}")
    return Schedule(lambda k: vals[bisect.bisect_right(bounds, k)], "piecewise_constant",
                    {"boundaries": list(boundaries), "values": list(values)})


@register
def join(schedules: Sequence[ScheduleLike], boundaries: Sequence[int]) -> Schedule:
    """Schedules in sequence (optax's join_schedules, torch's SequentialLR).

    Rule: ``schedules[i]`` runs for ``boundaries[i-1] <= k < boundaries[i]``
    and sees the step counted from its own start, ``k - boundaries[i-1]``.
    This is how torch's SequentialLR counts too: at step ``k == milestone``
    it restarts the next scheduler at its step 0 (``_update_lr(0)``), so
    ``join([a, b], [m])`` equals ``SequentialLR([A, B], milestones=[m])``
    (``boundaries`` are torch's ``milestones``) for closed-form schedulers;
    no separate ``sequential`` is needed.

    Parameters
    ----------
    schedules
        callables ``step -> value``, one more than boundaries.
    boundaries
        strictly increasing step counts >= 1 where the next schedule takes over.

    Examples
    --------
    A 100-step warmup from 0, then exponential decay:

        join([linear(0.0, 1e-3, 100), exponential(1e-3, 0.999)], boundaries=[100])
    """
    bounds = _boundaries("boundaries", boundaries)
    if isinstance(schedules, (str, bytes)) or not isinstance(schedules, Sequence):
        raise TypeError(f"schedules={schedules!r} must be a list of schedules")
    parts = [_schedule_arg(f"schedules[{i}]", s) for i, s in enumerate(schedules)]
    if len(parts) != len(bounds) + 1:
        raise ValueError(f"schedules has {len(parts)} entries; with {len(bounds)} boundaries it needs "
                         f"{len(bounds) + 1}")
    starts = [0] + bounds

    def fn(k: int) -> float:
        i = bisect.bisect_right(bounds, k)
        return parts[i](k - starts[i])

    return Schedule(fn, "join", {"schedules": list(schedules), "boundaries": list(boundaries)})
