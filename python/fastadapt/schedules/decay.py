"""Decays from a base value: step, exponential, polynomial, inverse time."""

from __future__ import annotations

import math

from .._checks import flag, integer, real
from .base import Schedule, _positive, register

__all__ = ["step_decay", "exponential", "polynomial", "inverse_time"]


@register
def step_decay(base: float, step_size: int, gamma: float = 0.1) -> Schedule:
    """Step decay (torch's StepLR): ``base * gamma ** (k // step_size)``.

    Parameters
    ----------
    base
        value at step 0.
    step_size
        steps between two decays (>= 1).
    gamma
        the factor of each decay (> 0).

    Examples
    --------
    ``step_decay(0.1, step_size=30, gamma=0.1)``: 0.1 for steps 0-29, 0.01 for 30-59, ...
    """
    b = real("base", base)
    s = integer("step_size", step_size, 1)
    g = _positive("gamma", gamma)
    return Schedule(lambda k: b * g ** (k // s), "step_decay", {"base": base, "step_size": step_size, "gamma": gamma})


@register
def exponential(base: float, gamma: float) -> Schedule:
    """Exponential decay (torch's ExponentialLR): ``base * gamma ** k``.

    Parameters
    ----------
    base
        value at step 0.
    gamma
        the factor of every step (> 0).

    Examples
    --------
    ``exponential(1e-2, gamma=0.99)(100) == 1e-2 * 0.99 ** 100``.
    """
    b = real("base", base)
    g = _positive("gamma", gamma)
    return Schedule(lambda k: b * g ** k, "exponential", {"base": base, "gamma": gamma})


@register
def polynomial(base: float, total_steps: int, power: float = 1.0, end: float = 0.0) -> Schedule:
    """Polynomial decay (torch's PolynomialLR; optax's polynomial_schedule).

    Rule: ``end + (base - end) * (1 - min(k, T) / T) ** power``, so ``base``
    at step 0 and ``end`` from step ``T = total_steps`` on. With ``end=0``
    this is torch's PolynomialLR(total_iters=T, power=power) (its closed
    form); with ``end`` it is optax's ``polynomial_schedule(init_value=base,
    end_value=end, power=power, transition_steps=T)``. ``power=1`` is a
    linear decay.

    Parameters
    ----------
    base
        value at step 0.
    total_steps
        ``T`` >= 1, steps until ``end``.
    power
        the exponent (> 0).
    end
        final value.

    Examples
    --------
    ``polynomial(0.05, total_steps=50, power=0.9)``.
    """
    b, e = real("base", base), real("end", end)
    t = integer("total_steps", total_steps, 1)
    pw = _positive("power", power)
    return Schedule(lambda k: e + (b - e) * (1.0 - min(k, t) / t) ** pw, "polynomial",
                    {"base": base, "total_steps": total_steps, "power": power, "end": end})


@register
def inverse_time(base: float, decay_rate: float, decay_steps: float = 1, staircase: bool = False) -> Schedule:
    """Inverse-time decay, Keras's InverseTimeDecay.

    Rule: ``base / (1 + decay_rate * p)`` with ``p = k / decay_steps``
    (``staircase=True``: ``p = floor(k / decay_steps)``, a step every
    ``decay_steps``). With ``decay_steps=1`` it is the decay torch's Adagrad
    applies through ``lr_decay``: ``lr / (1 + (t - 1) * lr_decay)`` at update
    ``t`` is ``inverse_time(lr, lr_decay)(t - 1)``. (optax has no
    inverse-time schedule; Keras's is the one matched.)

    Parameters
    ----------
    base
        value at step 0.
    decay_rate
        the rate (>= 0): the value is ``base / (1 + decay_rate * p)``.
    decay_steps
        the steps over which ``p`` grows by 1 (> 0).
    staircase
        decay in whole steps of ``decay_steps``.

    Examples
    --------
    ``inverse_time(0.1, decay_rate=0.5, decay_steps=100)(200) == 0.05``.
    """
    b = real("base", base)
    r = real("decay_rate", decay_rate, low=0.0)
    d = _positive("decay_steps", decay_steps)
    stairs = flag("staircase", staircase)

    def fn(k: int) -> float:
        p = k / d
        return b / (1.0 + r * (math.floor(p) if stairs else p))

    return Schedule(fn, "inverse_time",
                    {"base": base, "decay_rate": decay_rate, "decay_steps": decay_steps, "staircase": staircase})
