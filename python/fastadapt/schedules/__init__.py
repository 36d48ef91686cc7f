"""Schedules: pure functions ``step -> value`` that can drive any
hyperparameter (lr, betas[0], momentum, weight decay) through
[`fastadapt.Scheduler`][fastadapt.Scheduler], or be called directly.

Every builder checks its arguments when the schedule is built (the message
names the argument: ``warmup_steps=-1 must be >= 0``) and returns a
[`Schedule`][fastadapt.schedules.Schedule]: a callable with a readable repr that pickles by its
arguments. ``step`` is the 0-based count of steps (or epochs) taken so far.
Past the end of a finite schedule the final value holds (torch's OneCycleLR
raises there instead, and its CosineAnnealingLR rises again).

    import fastadapt as fa
    sched = fa.schedules.cosine(base=1e-3, total_steps=10_000, warmup_steps=500)
    sched(0), sched(499), sched(10_000)      # 2e-06, 0.001, 0.0

Definitions are docs/algorithms.md's; one-cycle and cyclic follow torch's
OneCycleLR and CyclicLR step for step, polynomial torch's PolynomialLR
(optax's polynomial_schedule with ``end``), inverse_time Keras's
InverseTimeDecay, and [`join`][fastadapt.schedules.join] counts steps exactly as torch's
SequentialLR does.

Warmups: by default the seed article's rule, ``base * (k + 1) / w`` (step 0
already gets ``base / w``, the full value comes at step ``w - 1``); with
``warmup_start=s`` the optax / Hugging Face rule, ``s + (base - s) * k / w``
(``warmup_start=0`` starts from 0 and reaches ``base`` at step ``w``).

This package holds everything that moves a hyperparameter during a run:

- the schedules, a module per family: ``basic.py`` (constant, linear),
  ``warmup.py``, ``decay.py`` (step, exponential, polynomial, inverse
  time), ``cosine.py`` (with warm restarts too), ``one_cycle.py``,
  ``cyclic.py``, ``piecewise.py`` (piecewise constant, join); ``base.py``
  holds [`Schedule`][fastadapt.schedules.Schedule] and the registry a pickled schedule is rebuilt
  from;
- the controllers, callbacks that act on metrics or schedules, a module
  each: ``scheduler.py`` ([`Scheduler`][fastadapt.Scheduler]),
  ``reduce_lr_on_plateau.py``, ``early_stopping.py``, ``adaptive_lr.py``
  (the seed article's scheduler), with ``_plateau.py`` (the plateau rule
  they share) and ``_control.py`` (their argument and state checks);
- ``lr_finder.py``: the learning-rate range test, [`lr_find`][fastadapt.lr_find].

``fastadapt.schedules`` itself offers the schedules; the controllers and
``lr_find`` are ``fastadapt.<Name>``.
"""


from .base import Schedule, _rebuild  # noqa: F401  _rebuild: what pickled schedules call, by this path
from .basic import constant, linear
from .cosine import cosine, cosine_restarts
from .cyclic import cyclic
from .decay import exponential, inverse_time, polynomial, step_decay
from .one_cycle import one_cycle, one_cycle_momentum
from .piecewise import join, piecewise_constant
from .warmup import linear_warmup

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
