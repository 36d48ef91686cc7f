"""Cosine annealing, once (with an optional warmup) or with warm restarts."""

from __future__ import annotations

import math
from typing import Union

from .._checks import integer, real
from .base import Schedule, _positive, register
from .warmup import _warmup_start, _warmup_then, _with_warmup_start

__all__ = ["cosine", "cosine_restarts"]


def _cosine_value(base: float, end: float, t: int, period: int) -> float:
    return end + (base - end) * (1.0 + math.cos(math.pi * min(t, period) / period)) / 2.0


@register
def cosine(base: float, total_steps: int, end: float = 0.0, warmup_steps: int = 0,
           warmup_start: Union[float, None] = None) -> Schedule:
    """Cosine annealing from ``base`` to ``end``, with an optional linear warmup.

    Rule: with ``w = warmup_steps`` and ``T = total_steps - w``: the
    warmup of [`linear_warmup`][fastadapt.schedules.linear_warmup] for ``k < w``, then
    ``end + (base - end) * (1 + cos(pi * min(j, T) / T)) / 2`` with
    ``j = k - w``; ``end`` from step ``total_steps`` on (torch's
    CosineAnnealingLR climbs back up past ``T_max``; for cycles use
    [`cosine_restarts`][fastadapt.schedules.cosine_restarts]). ``total_steps`` counts the warmup (like
    Hugging Face's cosine-with-warmup and optax's warmup_cosine_decay_schedule).
    ``warmup_start=0`` makes the warmup theirs (from 0 at step 0 to ``base``
    at step ``w``, see [`linear_warmup`][fastadapt.schedules.linear_warmup]): ``cosine(base, T,
    warmup_steps=w, warmup_start=0.0)`` is Hugging Face's
    ``get_cosine_schedule_with_warmup(w, T)`` times ``base``, and optax's
    ``warmup_cosine_decay_schedule(0.0, base, w, T, end)``.

    Parameters
    ----------
    base
        peak value (reached at step ``w - 1`` and again at ``w``; with a ``warmup_start``, at step
        ``w``).
    total_steps
        length of warmup plus decay (> warmup_steps).
    end
        final value (torch's ``eta_min``).
    warmup_steps
        linear warmup steps (0: none).
    warmup_start
        None (the seed's warmup) or the value at step 0.

    Examples
    --------
    ``cosine(1e-3, total_steps=10_000, warmup_steps=500)``.
    """
    b, e = real("base", base), real("end", end)
    total = integer("total_steps", total_steps, 1)
    w = integer("warmup_steps", warmup_steps, 0)
    if total <= w:
        raise ValueError(f"total_steps={total_steps!r} must be > warmup_steps={warmup_steps!r}")
    start = _warmup_start(warmup_start)
    decay = total - w
    fn = _warmup_then(lambda j: _cosine_value(b, e, j, decay), w, start)
    return Schedule(fn, "cosine", _with_warmup_start(
        {"base": base, "total_steps": total_steps, "end": end, "warmup_steps": warmup_steps}, warmup_start))


@register
def cosine_restarts(base: float, first_period: int, period_mult: int = 1, end: float = 0.0,
                    cycle_decay: float = 1.0, warmup_steps: int = 0,
                    warmup_start: Union[float, None] = None) -> Schedule:
    """Cosine annealing with warm restarts (SGDR; torch's CosineAnnealingWarmRestarts).

    Rule: after the optional warmup, cycle ``i`` lasts ``T_i = T_0 * mult**i``
    steps; at position ``t`` in it the value is
    ``end + (base_i - end) * (1 + cos(pi * t / T_i)) / 2`` with
    ``base_i = base * cycle_decay**i``. Each restart jumps back to ``base_i``.

    Parameters
    ----------
    base
        value at the start of the first cycle.
    first_period
        ``T_0`` >= 1, steps in the first cycle.
    period_mult
        integer >= 1 growth of the period (torch's ``T_mult``).
    end
        floor of every cycle (``eta_min``).
    cycle_decay
        multiplies the peak at each restart (1: no decay).
    warmup_steps
        linear warmup to ``base`` before the first cycle.
    warmup_start
        None (the seed's warmup) or the value at step 0 (see
        [`linear_warmup`][fastadapt.schedules.linear_warmup]).

    Examples
    --------
    ``cosine_restarts(0.1, first_period=10, period_mult=2)``
    restarts at steps 10, 30, 70, ...
    """
    b, e = real("base", base), real("end", end)
    t0 = integer("first_period", first_period, 1)
    mult = integer("period_mult", period_mult, 1)
    decay = _positive("cycle_decay", cycle_decay)
    w = integer("warmup_steps", warmup_steps, 0)
    start = _warmup_start(warmup_start)

    def cycles(j: int) -> float:
        if mult == 1:
            i, t, period = j // t0, j % t0, t0
        else:  # periods grow geometrically: at most log_mult(j) iterations
            i, t, period = 0, j, t0
            while t >= period:
                t -= period
                period *= mult
                i += 1
        return _cosine_value(b * decay ** i, e, t, period)

    return Schedule(_warmup_then(cycles, w, start), "cosine_restarts", _with_warmup_start(
        {"base": base, "first_period": first_period, "period_mult": period_mult, "end": end,
         "cycle_decay": cycle_decay, "warmup_steps": warmup_steps}, warmup_start))
