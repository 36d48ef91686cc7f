"""Schedules: pure functions ``step -> value`` that can drive any
hyperparameter (lr, betas[0], momentum, weight decay) through
:class:`fastadapt.Scheduler`, or be called directly.

Every builder checks its arguments when the schedule is built (the message
names the argument: ``warmup_steps=-1 must be >= 0``) and returns a
:class:`Schedule`: a callable with a readable repr that pickles by its
arguments. ``step`` is the 0-based count of steps (or epochs) taken so far.
Past the end of a finite schedule the final value holds (torch's OneCycleLR
raises there instead, and its CosineAnnealingLR rises again).

    import fastadapt as fa
    sched = fa.schedules.cosine(base=1e-3, total_steps=10_000, warmup_steps=500)
    sched(0), sched(499), sched(10_000)      # 2e-06, 0.001, 0.0

Definitions are docs/algorithms.md's; one-cycle and cyclic follow torch's
OneCycleLR and CyclicLR step for step, polynomial torch's PolynomialLR
(optax's polynomial_schedule with ``end``), inverse_time Keras's
InverseTimeDecay, and :func:`join` counts steps exactly as torch's
SequentialLR does.

Warmups: by default the seed article's rule, ``base * (k + 1) / w`` (step 0
already gets ``base / w``, the full value comes at step ``w - 1``); with
``warmup_start=s`` the optax / Hugging Face rule, ``s + (base - s) * k / w``
(``warmup_start=0`` starts from 0 and reaches ``base`` at step ``w``).
"""

from __future__ import annotations

import bisect
import math
import operator
from typing import Any, Callable, Dict, List, Sequence, Tuple, Union

from .._checks import choice, flag, integer, real

__all__ = [
    "Schedule",
    "constant",
    "linear",
    "linear_warmup",
    "step_decay",
    "exponential",
    "polynomial",
    "inverse_time",
    "cosine",
    "cosine_restarts",
    "one_cycle",
    "one_cycle_momentum",
    "cyclic",
    "piecewise_constant",
    "join",
]

ScheduleLike = Union["Schedule", Callable[[int], float]]


class Schedule:
    """A pure function of the step count with a readable repr.

    Built by the functions of this module; calling it with a step (an
    integer >= 0) returns a float. It pickles as "call builder(**args)
    again", so schedules travel to worker processes.
    """

    __slots__ = ("_fn", "_builder", "_args")

    def __init__(self, fn: Callable[[int], float], builder: str, args: Dict[str, Any]):
        self._fn = fn
        self._builder = builder
        self._args = args

    def __call__(self, step: int) -> float:
        return float(self._fn(_check_step(step)))

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self._args.items())
        return f"{self._builder}({shown})"

    def __reduce__(self) -> Tuple[Any, ...]:
        return (_rebuild, (self._builder, self._args))


def _rebuild(builder: str, args: Dict[str, Any]) -> Schedule:
    if builder not in __all__ or builder == "Schedule":
        raise ValueError(f"no schedule named {builder!r}")
    return globals()[builder](**args)


# ---- argument checks: messages name the argument and its value -------------

def _check_step(step: Any) -> int:
    if isinstance(step, bool):
        raise TypeError(f"step must be an integer >= 0, got {step!r}")
    try:
        k = operator.index(step)
    except TypeError:
        raise TypeError(f"step must be an integer >= 0, got {type(step).__name__} {step!r}") from None
    if k < 0:
        raise ValueError(f"step={k} must be >= 0")
    return k


def _positive(name: str, value: Any) -> float:
    return real(name, value, low=0.0, low_open=True)


def _schedule_arg(name: str, value: Any) -> ScheduleLike:
    if not callable(value):
        raise TypeError(f"{name}={value!r} must be a schedule (a callable step -> value)")
    return value


def _boundaries(name: str, value: Any) -> List[int]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(f"{name}={value!r} must be a list of step counts")
    out = [integer(f"{name}[{i}]", b, 1) for i, b in enumerate(value)]
    for i in range(1, len(out)):
        if out[i] <= out[i - 1]:
            raise ValueError(f"{name}={list(value)!r} must be strictly increasing "
                             f"({name}[{i}]={out[i]} <= {name}[{i - 1}]={out[i - 1]})")
    return out


# ---- the schedules -----------------------------------------------------------

def constant(value: float) -> Schedule:
    """``value`` at every step.

    Example: ``constant(1e-3)(12345) == 1e-3``.
    """
    v = real("value", value)
    return Schedule(lambda k: v, "constant", {"value": value})


def linear(start: float, end: float, total_steps: int) -> Schedule:
    """Linear interpolation: ``start + (end - start) * min(k, T) / T``, then ``end``.

    Args:
        start: value at step 0.
        end: value from step ``total_steps`` on.
        total_steps: ``T``, the length of the ramp (>= 1).

    Example: ``linear(0.0, 1.0, 4)`` gives 0, 0.25, 0.5, 0.75, 1, 1, ...
    """
    a, b = real("start", start), real("end", end)
    t = integer("total_steps", total_steps, 1)
    return Schedule(lambda k: a + (b - a) * min(k, t) / t, "linear",
                    {"start": start, "end": end, "total_steps": total_steps})


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

    Args:
        target: the value (or the schedule) to warm up to.
        warmup_steps: ``w`` >= 0 (0: no warmup).
        warmup_start: None (the seed's rule) or the value at step 0.

    Example: ``linear_warmup(1e-3, 10)`` gives 1e-4, 2e-4, ..., 1e-3, 1e-3, ...;
    ``linear_warmup(1e-3, 10, warmup_start=0.0)`` gives 0, 1e-4, ..., 9e-4, 1e-3, ...
    """
    w = integer("warmup_steps", warmup_steps, 0)
    start = _warmup_start(warmup_start)
    inner = _schedule_arg("target", target) if callable(target) else constant(real("target", target))
    return Schedule(_warmup_then(inner, w, start), "linear_warmup",
                    _with_warmup_start({"target": target, "warmup_steps": warmup_steps}, warmup_start))


def step_decay(base: float, step_size: int, gamma: float = 0.1) -> Schedule:
    """Step decay (torch's StepLR): ``base * gamma ** (k // step_size)``.

    Example: ``step_decay(0.1, step_size=30, gamma=0.1)``: 0.1 for steps
    0-29, 0.01 for 30-59, ...
    """
    b = real("base", base)
    s = integer("step_size", step_size, 1)
    g = _positive("gamma", gamma)
    return Schedule(lambda k: b * g ** (k // s), "step_decay", {"base": base, "step_size": step_size, "gamma": gamma})


def exponential(base: float, gamma: float) -> Schedule:
    """Exponential decay (torch's ExponentialLR): ``base * gamma ** k``.

    Example: ``exponential(1e-2, gamma=0.99)(100) == 1e-2 * 0.99 ** 100``.
    """
    b = real("base", base)
    g = _positive("gamma", gamma)
    return Schedule(lambda k: b * g ** k, "exponential", {"base": base, "gamma": gamma})


def polynomial(base: float, total_steps: int, power: float = 1.0, end: float = 0.0) -> Schedule:
    """Polynomial decay (torch's PolynomialLR; optax's polynomial_schedule).

    Rule: ``end + (base - end) * (1 - min(k, T) / T) ** power``, so ``base``
    at step 0 and ``end`` from step ``T = total_steps`` on. With ``end=0``
    this is torch's PolynomialLR(total_iters=T, power=power) (its closed
    form); with ``end`` it is optax's ``polynomial_schedule(init_value=base,
    end_value=end, power=power, transition_steps=T)``. ``power=1`` is a
    linear decay.

    Args:
        base: value at step 0.
        total_steps: ``T`` >= 1, steps until ``end``.
        power: > 0, the exponent.
        end: final value.

    Example: ``polynomial(0.05, total_steps=50, power=0.9)``.
    """
    b, e = real("base", base), real("end", end)
    t = integer("total_steps", total_steps, 1)
    pw = _positive("power", power)
    return Schedule(lambda k: e + (b - e) * (1.0 - min(k, t) / t) ** pw, "polynomial",
                    {"base": base, "total_steps": total_steps, "power": power, "end": end})


def inverse_time(base: float, decay_rate: float, decay_steps: float = 1, staircase: bool = False) -> Schedule:
    """Inverse-time decay, Keras's InverseTimeDecay.

    Rule: ``base / (1 + decay_rate * p)`` with ``p = k / decay_steps``
    (``staircase=True``: ``p = floor(k / decay_steps)``, a step every
    ``decay_steps``). With ``decay_steps=1`` it is the decay torch's Adagrad
    applies through ``lr_decay``: ``lr / (1 + (t - 1) * lr_decay)`` at update
    ``t`` is ``inverse_time(lr, lr_decay)(t - 1)``. (optax has no
    inverse-time schedule; Keras's is the one matched.)

    Args:
        base: value at step 0.
        decay_rate: >= 0.
        decay_steps: > 0, the steps over which ``p`` grows by 1.
        staircase: decay in whole steps of ``decay_steps``.

    Example: ``inverse_time(0.1, decay_rate=0.5, decay_steps=100)(200) == 0.05``.
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


def _cosine_value(base: float, end: float, t: int, period: int) -> float:
    return end + (base - end) * (1.0 + math.cos(math.pi * min(t, period) / period)) / 2.0


def cosine(base: float, total_steps: int, end: float = 0.0, warmup_steps: int = 0,
           warmup_start: Union[float, None] = None) -> Schedule:
    """Cosine annealing from ``base`` to ``end``, with an optional linear warmup.

    Rule: with ``w = warmup_steps`` and ``T = total_steps - w``: the
    warmup of :func:`linear_warmup` for ``k < w``, then
    ``end + (base - end) * (1 + cos(pi * min(j, T) / T)) / 2`` with
    ``j = k - w``; ``end`` from step ``total_steps`` on (torch's
    CosineAnnealingLR climbs back up past ``T_max``; for cycles use
    :func:`cosine_restarts`). ``total_steps`` counts the warmup (like
    Hugging Face's cosine-with-warmup and optax's warmup_cosine_decay_schedule).
    ``warmup_start=0`` makes the warmup theirs (from 0 at step 0 to ``base``
    at step ``w``, see :func:`linear_warmup`): ``cosine(base, T,
    warmup_steps=w, warmup_start=0.0)`` is Hugging Face's
    ``get_cosine_schedule_with_warmup(w, T)`` times ``base``, and optax's
    ``warmup_cosine_decay_schedule(0.0, base, w, T, end)``.

    Args:
        base: peak value (reached at step ``w - 1`` and again at ``w``;
            with a ``warmup_start``, at step ``w``).
        total_steps: length of warmup plus decay (> warmup_steps).
        end: final value (torch's ``eta_min``).
        warmup_steps: linear warmup steps (0: none).
        warmup_start: None (the seed's warmup) or the value at step 0.

    Example: ``cosine(1e-3, total_steps=10_000, warmup_steps=500)``.
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


def cosine_restarts(base: float, first_period: int, period_mult: int = 1, end: float = 0.0,
                    cycle_decay: float = 1.0, warmup_steps: int = 0,
                    warmup_start: Union[float, None] = None) -> Schedule:
    """Cosine annealing with warm restarts (SGDR; torch's CosineAnnealingWarmRestarts).

    Rule: after the optional warmup, cycle ``i`` lasts ``T_i = T_0 * mult**i``
    steps; at position ``t`` in it the value is
    ``end + (base_i - end) * (1 + cos(pi * t / T_i)) / 2`` with
    ``base_i = base * cycle_decay**i``. Each restart jumps back to ``base_i``.

    Args:
        base: value at the start of the first cycle.
        first_period: ``T_0`` >= 1, steps in the first cycle.
        period_mult: integer >= 1 growth of the period (torch's ``T_mult``).
        end: floor of every cycle (``eta_min``).
        cycle_decay: multiplies the peak at each restart (1: no decay).
        warmup_steps: linear warmup to ``base`` before the first cycle.
        warmup_start: None (the seed's warmup) or the value at step 0 (see
            :func:`linear_warmup`).

    Example: ``cosine_restarts(0.1, first_period=10, period_mult=2)``
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


_ANNEAL = ("cos", "linear")


def _anneal(kind: str, start: float, stop: float, pct: float) -> float:
    if kind == "cos":
        return stop + (start - stop) / 2.0 * (math.cos(math.pi * pct) + 1.0)
    return start + (stop - start) * pct


def _one_cycle_phases(total: int, pct_start: float, three_phase: bool) -> List[float]:
    """Last step of each phase, as torch's OneCycleLR places them."""
    up_end = pct_start * total - 1.0
    if not 0.0 < up_end:
        raise ValueError(f"pct_start={pct_start!r} with total_steps={total} leaves the rising phase empty; "
                         f"need pct_start * total_steps > 1")
    ends = [up_end, 2.0 * pct_start * total - 2.0, total - 1.0] if three_phase else [up_end, total - 1.0]
    if not all(a < b for a, b in zip(ends, ends[1:])):
        raise ValueError(f"pct_start={pct_start!r} with total_steps={total} leaves a phase empty; need "
                         f"pct_start < {'0.5' if three_phase else '1'} and more total_steps")
    return ends


def _piecewise_anneal(ends: List[float], values: List[float], kind: str) -> Callable[[int], float]:
    """Anneal from values[i] to values[i+1] over phase i; hold the last value."""

    def fn(k: int) -> float:
        start = 0.0
        for i, stop in enumerate(ends):
            if k <= stop or i == len(ends) - 1:
                pct = min((k - start) / (stop - start), 1.0)
                return _anneal(kind, values[i], values[i + 1], pct)
            start = stop
        raise AssertionError("unreachable")

    return fn


def _one_cycle_phase_ends(total_steps: int, pct_start: float, anneal: str, three_phase: bool) -> List[float]:
    """The arguments one_cycle and one_cycle_momentum share, checked; the phase ends."""
    total = integer("total_steps", total_steps, 2)
    pct = real("pct_start", pct_start)
    if not 0.0 < pct < 1.0:
        raise ValueError(f"pct_start={pct_start!r} must be in (0, 1)")
    choice("anneal", anneal, _ANNEAL)
    flag("three_phase", three_phase)
    return _one_cycle_phases(total, pct, three_phase)


def one_cycle(max_value: float, total_steps: int, pct_start: float = 0.3, div_factor: float = 25.0,
              final_div_factor: float = 1e4, anneal: str = "cos", three_phase: bool = False) -> Schedule:
    """The 1cycle learning rate (Smith & Topin 2017; torch's OneCycleLR).

    Rule: from ``initial = max_value / div_factor`` up to ``max_value`` by
    step ``pct_start * total_steps - 1``, then down to
    ``initial / final_div_factor`` at step ``total_steps - 1`` (held after).
    ``three_phase=True`` goes back to ``initial`` by step
    ``2 * pct_start * total_steps - 2`` before the final descent.
    Pair it with :func:`one_cycle_momentum` (same ``total_steps``,
    ``pct_start``, ``anneal``, ``three_phase``) for the momentum/beta1 curve.

    Args:
        max_value: the peak learning rate.
        total_steps: steps in the cycle (>= 2).
        pct_start: fraction of the steps spent rising, in (0, 1).
        div_factor: ``initial = max_value / div_factor``.
        final_div_factor: ``final = initial / final_div_factor``.
        anneal: ``"cos"`` (default) or ``"linear"``.
        three_phase: add the symmetric descent to ``initial`` (fastai's old variant).

    Example::

        lr = fa.schedules.one_cycle(1e-2, total_steps=1000)
        b1 = fa.schedules.one_cycle_momentum(total_steps=1000)
        fa.Scheduler(opt, lr=lr, betas0=b1)
    """
    peak = real("max_value", max_value)
    div = _positive("div_factor", div_factor)
    final_div = _positive("final_div_factor", final_div_factor)
    ends = _one_cycle_phase_ends(total_steps, pct_start, anneal, three_phase)
    initial = peak / div
    values = [initial, peak, initial, initial / final_div] if three_phase else [initial, peak, initial / final_div]
    return Schedule(_piecewise_anneal(ends, values, anneal), "one_cycle",
                    {"max_value": max_value, "total_steps": total_steps, "pct_start": pct_start,
                     "div_factor": div_factor, "final_div_factor": final_div_factor, "anneal": anneal,
                     "three_phase": three_phase})


def one_cycle_momentum(total_steps: int, pct_start: float = 0.3, base_momentum: float = 0.85,
                       max_momentum: float = 0.95, anneal: str = "cos", three_phase: bool = False) -> Schedule:
    """The momentum (or Adam's beta1) curve that goes with :func:`one_cycle`.

    Rule: inverse to the learning rate: ``max_momentum`` at step 0, down to
    ``base_momentum`` when the lr peaks, back up to ``max_momentum`` at the
    end (torch's OneCycleLR with ``cycle_momentum=True``). Use the same
    ``total_steps``, ``pct_start``, ``anneal`` and ``three_phase`` as the lr.

    Example: ``fa.Scheduler(opt, betas0=one_cycle_momentum(1000))`` drives Adam's beta1.
    """
    lo, hi = real("base_momentum", base_momentum), real("max_momentum", max_momentum)
    if lo > hi:
        raise ValueError(f"base_momentum={base_momentum!r} must be <= max_momentum={max_momentum!r}")
    ends = _one_cycle_phase_ends(total_steps, pct_start, anneal, three_phase)
    values = [hi, lo, hi, hi] if three_phase else [hi, lo, hi]
    return Schedule(_piecewise_anneal(ends, values, anneal), "one_cycle_momentum",
                    {"total_steps": total_steps, "pct_start": pct_start, "base_momentum": base_momentum,
                     "max_momentum": max_momentum, "anneal": anneal, "three_phase": three_phase})


_CYCLIC_MODES = ("triangular", "triangular2", "exp_range")


def cyclic(base: float, max_value: float, step_size: int, step_size_down: Union[int, None] = None,
           mode: str = "triangular", gamma: float = 1.0) -> Schedule:
    """Cyclical values (Smith 2017; torch's CyclicLR).

    Rule: a cycle is ``up = step_size`` steps rising from ``base`` to
    ``max_value``, then ``down = step_size_down`` (default ``up``) steps
    falling back. At position ``p = k mod (up + down)`` the fraction is
    ``p / up`` while ``p <= up``, else ``(up + down - p) / down``, and the
    value is ``base + (max_value - base) * fraction * scale`` with
    ``scale`` 1 (``triangular``), ``0.5 ** (k // (up + down))``
    (``triangular2``: the amplitude halves every cycle) or ``gamma ** k``
    (``exp_range``). ``max_value < base`` gives the inverse curve (momentum).

    Example: ``cyclic(1e-4, 1e-2, step_size=2000)``: 1e-4 at step 0,
    1e-2 at 2000, 1e-4 at 4000, ...
    """
    lo, hi = real("base", base), real("max_value", max_value)
    up = integer("step_size", step_size, 1)
    down = up if step_size_down is None else integer("step_size_down", step_size_down, 1)
    choice("mode", mode, _CYCLIC_MODES)
    g = _positive("gamma", gamma)
    period = up + down

    def fn(k: int) -> float:
        p = k % period
        fraction = p / up if p <= up else (period - p) / down
        if mode == "triangular":
            scale = 1.0
        elif mode == "triangular2":
            scale = 0.5 ** (k // period)
        else:
            scale = g ** k
        return lo + (hi - lo) * fraction * scale

    return Schedule(fn, "cyclic", {"base": base, "max_value": max_value, "step_size": step_size,
                                   "step_size_down": step_size_down, "mode": mode, "gamma": gamma})


def piecewise_constant(boundaries: Sequence[int], values: Sequence[float]) -> Schedule:
    """``values[i]`` for ``boundaries[i-1] <= k < boundaries[i]``.

    The new value starts *at* the boundary step (like torch's MultiStepLR;
    Keras's PiecewiseConstantDecay switches one step later).

    Args:
        boundaries: strictly increasing step counts >= 1.
        values: one more value than boundaries.

    Example: ``piecewise_constant([100, 200], [1e-2, 1e-3, 1e-4])``.
    """
    bounds = _boundaries("boundaries", boundaries)
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise TypeError(f"values={values!r} must be a list of numbers")
    vals = [real(f"values[{i}]", v) for i, v in enumerate(values)]
    if len(vals) != len(bounds) + 1:
        raise ValueError(f"values has {len(vals)} entries; with {len(bounds)} boundaries it needs {len(bounds) + 1}")
    return Schedule(lambda k: vals[bisect.bisect_right(bounds, k)], "piecewise_constant",
                    {"boundaries": list(boundaries), "values": list(values)})


def join(schedules: Sequence[ScheduleLike], boundaries: Sequence[int]) -> Schedule:
    """Schedules in sequence (optax's join_schedules, torch's SequentialLR).

    Rule: ``schedules[i]`` runs for ``boundaries[i-1] <= k < boundaries[i]``
    and sees the step counted from its own start, ``k - boundaries[i-1]``.
    This is how torch's SequentialLR counts too: at step ``k == milestone``
    it restarts the next scheduler at its step 0 (``_update_lr(0)``), so
    ``join([a, b], [m])`` equals ``SequentialLR([A, B], milestones=[m])``
    (``boundaries`` are torch's ``milestones``) for closed-form schedulers;
    no separate ``sequential`` is needed.

    Args:
        schedules: callables ``step -> value``, one more than boundaries.
        boundaries: strictly increasing step counts >= 1 where the next
            schedule takes over.

    Example: a 100-step warmup from 0, then exponential decay::

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
