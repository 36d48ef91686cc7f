"""Controllers: callbacks that change hyperparameters (or stop training)
while a model trains.

- :class:`Scheduler` drives any hyperparameter from schedules, per step or per epoch;
- :class:`ReduceLROnPlateau` cuts the learning rate when a metric stops improving;
- :class:`EarlyStopping` stops when it stops improving and puts the best params back;
- :class:`AdaptiveLR` is the seed article's scheduler: warmup, then plateau
  reduction, with early-stop detection.

Each one works standalone (call ``.step(...)`` in your own loop) or as a
trainer callback (see :mod:`fastadapt.callbacks`), and has
``state_dict()`` / ``load_state_dict()`` so a resumed run continues exactly
as an uninterrupted one. The optimizer's own hyperparameters (the current
lr included) travel in the optimizer's ``state_dict``; checkpoint both.

Parameter groups: like torch's schedulers, every controller moves every
group of the hyperparameter it drives (the optimizer's default, then each
``overrides`` entry that sets it; ``Optimizer.group_values``), each
relative to its own base: a :class:`Scheduler` keeps each group's ratio to
the default (``groups="relative"``) or gives all the same value
(``groups="same"``); the plateau cuts multiply every group's lr by
``factor`` (``min_lr`` may be one floor per group, as torch's
``min_lrs``); AdaptiveLR warms every group up to its own lr. The bases (or
the current group lrs) travel in each controller's ``state_dict`` too, so
a controller resumes exactly also beside an optimizer restored another way.

Plateau counting (docs/algorithms.md, Keras's count): after each epoch a metric
``x`` improves on ``best`` if ``x < best - |best| * threshold`` (``rel``) or
``x < best - threshold`` (``abs``), mirrored for ``mode="max"``. (For a
negative ``best`` the rel rule differs from torch's ``best * (1 - threshold)``,
which there accepts a worse value as an improvement.) On
improvement ``wait = 0``; otherwise ``wait += 1`` and the action (cut the
lr, stop) happens when ``wait >= patience``. torch's ReduceLROnPlateau
acts when ``wait > patience``, one epoch later: ``patience=p`` here
behaves like torch's ``patience=p-1``.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np

from .._checks import array_leaves, choice, flag, integer, real
from ..train.callbacks._drivers import claim, release
from ..train.callbacks.base import Callback

__all__ = ["Scheduler", "ReduceLROnPlateau", "EarlyStopping", "AdaptiveLR"]

_MODES = ("min", "max")
_THRESHOLD_MODES = ("rel", "abs")


# ---- argument checks and small pieces ----------------------------------------------

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
    if monitor not in logs:
        raise KeyError(f"{owner} monitors {monitor!r}, which this epoch's logs lack (logged: "
                       f"{', '.join(map(repr, sorted(logs))) or 'nothing'}); pass monitor= one of those or "
                       f"log {monitor!r}")
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


# ---- the improvement test and plateau counter ----------------------------------------

class _Improvement:
    """``x`` improves on ``best``: ``x < best - margin`` (min mode) or
    ``x > best + margin`` (max mode), with ``margin = threshold`` (abs) or
    ``|best| * threshold`` (rel).

    The rel margin is taken from ``|best|`` (docs/algorithms.md), not
    torch's ``best * (1 - threshold)``: with a negative ``best`` that
    product lies on the wrong side of ``best`` (best -10, threshold 0.1:
    -9.5 would "improve"), so a metric getting worse would keep resetting
    the count. For ``best >= 0`` the two are the same test.
    """

    def __init__(self, mode: str, threshold: float, threshold_mode: str, threshold_name: str = "threshold"):
        self.mode = choice("mode", mode, _MODES)
        self.threshold_mode = choice("threshold_mode", threshold_mode, _THRESHOLD_MODES)
        # rel: a margin of |best| or more would ask a loss to change sign to improve
        # (and best * (1 - 1) would turn an infinite best into NaN).
        high = 1.0 if threshold_mode == "rel" else math.inf
        self.threshold = real(threshold_name, threshold, low=0.0, high=high, high_open=True)

    @property
    def worst(self) -> float:
        return math.inf if self.mode == "min" else -math.inf

    def __call__(self, x: float, best: float) -> bool:
        t = self.threshold
        if self.mode == "min":
            if self.threshold_mode == "abs":
                return x < best - t
            # best * (1 -+ t) rather than best - |best| * t: bit for bit torch's bound when best >= 0
            return x < best * (1.0 - t if best >= 0 else 1.0 + t)
        if self.threshold_mode == "abs":
            return x > best + t
        return x > best * (1.0 + t if best >= 0 else 1.0 - t)


class _PlateauCounter:
    """best / wait / cooldown bookkeeping of the plateau rule.

    ``observe(x)`` returns True when patience has run out at this epoch;
    the owner then acts and calls ``acted()``, which restarts ``wait`` and
    begins ``cooldown`` epochs in which ``wait`` stays 0 (improvements still
    update ``best``). torch's cooldown lets the same number of epochs pass;
    Keras's counter lets one fewer.
    """

    def __init__(self, improves: _Improvement, patience: int, cooldown: int):
        self.improves = improves
        self.patience = patience
        self.cooldown = cooldown
        self.best = improves.worst
        self.wait = 0
        self.cooldown_left = 0
        self.improved = False

    def observe(self, x: float) -> bool:
        self.improved = self.improves(x, self.best)
        if self.improved:
            self.best = x
            self.wait = 0
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            self.wait = 0
            return False
        if self.improved:
            return False
        self.wait += 1
        return self.wait >= self.patience

    def acted(self) -> None:
        self.wait = 0
        self.cooldown_left = self.cooldown

    def state(self) -> Dict[str, Any]:
        return {"best": self.best, "wait": self.wait, "cooldown_left": self.cooldown_left}

    FIELDS = {"best": _best_metric, "wait": _count, "cooldown_left": _count}

    def load(self, checked: Mapping[str, Any]) -> None:
        self.best, self.wait, self.cooldown_left = checked["best"], checked["wait"], checked["cooldown_left"]


# ---- Scheduler -------------------------------------------------------------------

def _targets(optimizer: Any) -> Dict[str, Tuple[str, Optional[int]]]:
    """Schedulable names of an optimizer: real-valued hyperparameters, and
    ``<name><i>`` / ``<name>[i]`` for an element of a tuple (``betas0``)."""
    out: Dict[str, Tuple[str, Optional[int]]] = {}
    for name, value in optimizer.hyperparameters.items():
        if isinstance(value, tuple):
            for i in range(len(value)):
                out[f"{name}{i}"] = (name, i)
                out[f"{name}[{i}]"] = (name, i)
        elif value is None or (isinstance(value, numbers.Real) and not isinstance(value, bool)):
            out[name] = (name, None)
    return out


_GROUP_MODES = ("relative", "same")


def _bases_field(name: str, value: Any) -> Optional[Dict[str, List[Optional[float]]]]:
    """A saved ``bases``: None (saved before binding) or {schedule name: [value per group]}."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a dict {{hyperparameter: [base per group]}} or None, got "
                        f"{type(value).__name__}; pass what state_dict() returned")
    out: Dict[str, List[Optional[float]]] = {}
    for key, bases in value.items():
        if isinstance(bases, (str, bytes)) or not isinstance(bases, (list, tuple)) or not bases:
            raise TypeError(f"{name}[{key!r}]={bases!r} must be a list of one base per group")
        out[key] = [None if b is None else real(f"{name}[{key!r}][{i}]", b) for i, b in enumerate(bases)]
    return out


class Scheduler(Callback):
    """Drive optimizer hyperparameters from schedules, per step or per epoch.

    Each keyword names a hyperparameter and gives a schedule (any callable
    ``count -> value``, e.g. from :mod:`fastadapt.schedules`). An element of
    a tuple hyperparameter is named with its index: ``betas0`` (or
    ``"betas[0]"`` through ``**{...}``) is Adam's beta1. Like torch's
    schedulers, the values for count 0 are applied at construction (or when
    the optimizer is bound), and each :meth:`step` advances the count by one
    and applies the values for the new count.

    Parameter groups (the optimizer's default, then each ``overrides``
    entry that sets the hyperparameter; see ``Optimizer.group_values``):
    the schedule gives the default group's value ``s(k)``. With
    ``groups="relative"`` (the default) every other group keeps the ratio to
    the default it had when the scheduler was bound: group ``i`` gets
    ``s(k) * base_i / base_0``. That is torch's rule for its multiplicative
    schedulers (LambdaLR, StepLR, MultiStepLR, ExponentialLR, LinearLR,
    PolynomialLR, and CosineAnnealingLR with ``eta_min=0``): build the
    schedule from the optimizer's default value (``exponential(opt.lr,
    gamma)``) and each group moves exactly as the torch group of the same
    base. (torch's CosineAnnealingLR keeps one absolute ``eta_min`` for all
    groups; here a group's floor is ``end * base_i / base_0``, so no group
    is ever pushed above its own base.) With ``groups="same"`` every group
    gets ``s(k)`` itself, as torch's OneCycleLR and CyclicLR do given one
    ``max_lr`` / momentum. For an element of a tuple (``betas0``) only that
    element of each group's tuple moves; the other element of every group
    keeps its value. A group whose base is 0 stays 0; a nonzero group
    beside a default of 0 has no ratio and is refused at binding (use
    ``groups="same"``).

    As a trainer callback, ``per="step"`` steps after every batch
    (``on_batch_end``), ``per="epoch"`` after every epoch
    (``on_epoch_end``); the count and the group bases are the scheduler's
    own, restored from its ``state_dict`` on resume.

    Args:
        optimizer: a fastadapt optimizer, or None to bind to
            ``trainer.optimizer`` in ``on_train_begin``.
        per: ``"step"`` or ``"epoch"``.
        groups: ``"relative"`` or ``"same"``, how override groups follow.
        **schedules: ``name=schedule`` for each hyperparameter to drive.

    A schedule value the optimizer rejects (``lr=-1``, ``betas0=1.0``, or
    an override group's scaled value) raises the optimizer's error, prefixed
    with the name and the count, and changes nothing.

    Example::

        sched = fa.Scheduler(opt, lr=fa.schedules.one_cycle(1e-2, 1000),
                             betas0=fa.schedules.one_cycle_momentum(1000))
        for batch in batches:
            opt.update(params, grad_fn(params, batch))
            sched.step()
    """

    def __init__(self, optimizer: Any = None, *, per: str = "step", groups: str = "relative",
                 **schedules: Callable[[int], float]):
        self.per = choice("per", per, ("step", "epoch"))
        self.groups = choice("groups", groups, _GROUP_MODES)
        if not schedules:
            raise ValueError("Scheduler needs at least one schedule, e.g. Scheduler(opt, lr=fa.schedules.cosine(...))")
        for name, schedule in schedules.items():
            if not callable(schedule):
                raise TypeError(f"Scheduler({name}=...) must be a schedule (a callable count -> value), "
                                f"got {type(schedule).__name__} {schedule!r}")
        self.schedules: Dict[str, Callable[[int], float]] = dict(schedules)
        self.count = 0
        self.last_values: Dict[str, float] = {}
        self.optimizer: Any = None
        self._where: Dict[str, Tuple[str, Optional[int]]] = {}
        # Each group's value when bound (or as loaded from a checkpoint): what ratios are kept to.
        self._bases: Optional[Dict[str, List[Optional[float]]]] = None
        self._ratios: Dict[str, List[float]] = {}
        if optimizer is not None:
            self._bind(optimizer)

    @property
    def bases(self) -> Optional[Dict[str, List[Optional[float]]]]:
        """Per scheduled name, each group's base (None before binding)."""
        return None if self._bases is None else {k: list(v) for k, v in self._bases.items()}

    @staticmethod
    def _group_elements(optimizer: Any, where: Tuple[str, Optional[int]]) -> List[Any]:
        attr, index = where
        return [v if index is None else v[index] for v in optimizer.group_values(attr)]

    def _ratios_for(self, bases: Mapping[str, List[Optional[float]]]) -> Dict[str, List[float]]:
        """Each group's ratio to the default (checked: a nonzero group needs a nonzero default)."""
        ratios = {}
        for name, b in bases.items():
            if self.groups == "same" or len(b) == 1:
                ratios[name] = [1.0] * len(b)
                continue
            b0, out = b[0], [1.0]
            for i, bi in enumerate(b[1:]):
                if bi is None or bi == 0:
                    out.append(0.0)
                elif b0 is None or b0 == 0:
                    raise ValueError(f"Scheduler: {name!r} is {b0!r} in the optimizer's default group, so override "
                                     f"group {i} ({name}={bi!r}) has no ratio to it to keep; give the optimizer a "
                                     f"nonzero default {name} or use Scheduler(groups='same')")
                else:
                    out.append(bi / b0)
            ratios[name] = out
        return ratios

    def _bind(self, optimizer: Any) -> None:
        optimizer = _bound_optimizer("Scheduler", optimizer, "hyperparameters")
        optimizer = _bound_optimizer("Scheduler", optimizer, "group_values")
        valid = _targets(optimizer)
        for name in self.schedules:
            if name not in valid:
                shown = [n for n in valid if "[" not in n]
                raise ValueError(f"Scheduler: {type(optimizer).__name__} has no schedulable hyperparameter "
                                 f"{name!r}; valid names: {', '.join(shown)}")
        where = {name: valid[name] for name in self.schedules}
        current = {name: self._group_elements(optimizer, where[name]) for name in self.schedules}
        bases = current if self._bases is None else self._bases  # loaded before binding: the saved bases
        for name in self.schedules:
            _same_groups("Scheduler", f"bases[{name!r}]", bases[name], len(current[name]), name)
        ratios = self._ratios_for(bases)
        self.optimizer, self._where, self._bases, self._ratios = optimizer, where, bases, ratios
        self._apply()
        # after _apply: a binding that failed takes nothing over
        claim(self, optimizer, self._driven())

    def _apply(self) -> None:
        """Set every group of every hyperparameter to its schedule's value at
        ``count``; if the optimizer refuses one, put back those already set and raise."""
        optimizer = self.optimizer
        previous: List[Tuple[str, List[Any]]] = []
        values = {}
        for name, schedule in self.schedules.items():
            value = schedule(self.count)
            attr, index = self._where[name]
            old = optimizer.group_values(attr)
            try:
                ratios = self._ratios[name]
                if len(ratios) > 1 and (isinstance(value, bool) or not isinstance(value, numbers.Real)):
                    raise TypeError(f"a value for {len(ratios)} groups must be a real number")
                # The default group gets the value itself (bit for bit), the others their ratio of it.
                targets = [value] + [value * r for r in ratios[1:]]
                if index is None:
                    new = targets
                else:
                    new = [tuple(t if j == index else e for j, e in enumerate(v)) for t, v in zip(targets, old)]
                optimizer.set_group_values(attr, new)  # checks every group first: a refusal sets nothing
            except (TypeError, ValueError) as err:
                for attr_set, vals in reversed(previous):
                    optimizer.set_group_values(attr_set, vals)
                raise type(err)(f"Scheduler: schedule for {name!r} gave {value!r} at {self.per} "
                                f"{self.count}: {err}") from err
            previous.append((attr, old))
            held = getattr(optimizer, attr)  # as the optimizer validated and stored it (a float)
            values[name] = held if index is None else held[index]
        self.last_values = values

    def step(self) -> Dict[str, float]:
        """Advance the count by one and apply the new values; returns the
        default group's. A value the optimizer refuses leaves count and optimizer unchanged."""
        if self.optimizer is None:
            raise ValueError("Scheduler has no optimizer yet: pass it to Scheduler(opt, ...) or use the "
                             "scheduler as a trainer callback")
        self.count += 1
        try:
            self._apply()
        except BaseException:
            self.count -= 1
            raise
        return dict(self.last_values)

    # trainer hooks
    def on_train_begin(self, trainer: Any) -> None:
        if self.optimizer is None:
            self._bind(_optimizer_from("Scheduler", trainer))
        else:  # it drives again from this fit on (its last fit's on_train_end let go)
            claim(self, self.optimizer, self._driven())

    def _driven(self) -> List[str]:
        return [attr if index is None else f"{attr}{index}" for attr, index in self._where.values()]

    def on_train_end(self, trainer: Any) -> None:
        if self.optimizer is not None:
            release(self, self.optimizer)

    def on_batch_end(self, step: int, logs: Mapping[str, Any], trainer: Any) -> None:
        if self.per == "step":
            self.step()

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any], trainer: Any) -> None:
        if self.per == "epoch":
            self.step()

    def state_dict(self) -> Dict[str, Any]:
        return {"count": self.count, "bases": self.bases}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore the count and the group bases and re-apply the values for
        the count (schedules are pure). A state without ``bases`` (saved
        before binding, or by an older fastadapt) keeps the bases this
        scheduler found when it was bound."""
        checked = _load_fields("Scheduler", state_dict, {"count": _count, "bases": _bases_field},
                               optional=("bases",))
        bases = checked["bases"]
        if bases is not None and set(bases) != set(self.schedules):
            raise ValueError(f"Scheduler state_dict['bases'] is for {sorted(bases)}, this scheduler drives "
                             f"{sorted(self.schedules)}; load a state saved by the same schedules")
        if bases is None:
            bases = self._bases
        saved = (self.count, self._bases, self._ratios)
        if self.optimizer is not None and bases is not None:
            for name in self.schedules:
                groups = len(self.optimizer.group_values(self._where[name][0]))
                _same_groups("Scheduler", f"state_dict['bases'][{name!r}]", bases[name], groups, name)
            ratios = self._ratios_for(bases)
        else:
            ratios = self._ratios
        self.count, self._bases, self._ratios = checked["count"], bases, ratios
        if self.optimizer is not None:
            try:
                self._apply()  # puts back the values it set before a refusal
            except BaseException:
                self.count, self._bases, self._ratios = saved
                raise

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.schedules.items())
        extra = "" if self.groups == "relative" else f", groups={self.groups!r}"
        return f"Scheduler(per={self.per!r}{extra}, {shown})"


# ---- the lr controllers: ReduceLROnPlateau and AdaptiveLR ---------------------------------

class _LRPlateau(Callback):
    """What ReduceLROnPlateau and AdaptiveLR share: the optimizer binding,
    the monitored metric, the plateau counter and its cut of every group's lr."""

    def __init__(self, optimizer: Any, *, monitor: str, mode: str, factor: float, patience: int, threshold: float,
                 threshold_mode: str, cooldown: int, min_lr: Union[float, List[float]]):
        self.monitor = _monitor_key(monitor)
        self.factor = real("factor", factor, low=0.0, high=1.0, high_open=True)
        self.min_lr = _min_lrs(min_lr)
        self._plateau = _PlateauCounter(_Improvement(mode, threshold, threshold_mode),
                                        _count("patience", patience), _count("cooldown", cooldown))
        self.last_epoch = -1
        self.num_reductions = 0
        self.optimizer: Any = None
        if optimizer is not None:
            self._bind(optimizer)

    @property
    def best(self) -> float:
        """The best metric so far (inf / -inf before the first counted epoch)."""
        return self._plateau.best

    @property
    def wait(self) -> int:
        """Epochs without improvement counted towards the next cut."""
        return self._plateau.wait

    def _bind(self, optimizer: Any) -> None:
        owner = type(self).__name__
        optimizer = _bound_optimizer(owner, optimizer, "lr")
        optimizer = _bound_optimizer(owner, optimizer, "group_values")
        if isinstance(self.min_lr, list):
            _same_groups(owner, "min_lr", self.min_lr, len(optimizer.group_values("lr")))
        claim(self, optimizer, ["lr"])
        self.optimizer = optimizer

    def _min_lrs(self, groups: int) -> List[float]:
        return list(self.min_lr) if isinstance(self.min_lr, list) else [self.min_lr] * groups

    def _begin_step(self, metric: Any, epoch: Optional[int]) -> float:
        """Check the call, advance the epoch, return the metric as a float."""
        owner = type(self).__name__
        if self.optimizer is None:
            raise ValueError(f"{owner} has no optimizer yet: pass it to {owner}(opt, ...) or use it as a "
                             f"trainer callback")
        x = _real_or_nan(f"{owner}.step(metric)", metric)
        self.last_epoch = _epoch_arg(owner, epoch, self.last_epoch)
        return x

    def _plateau_cut(self, x: float, lrs: List[float]) -> List[float]:
        """Every group's lr after observing ``x``: all cut together when patience
        has run out (torch's ReduceLROnPlateau cuts every param group)."""
        if not self._plateau.observe(x):
            return lrs
        self._plateau.acted()
        new_lrs = [_cut(lr, self.factor, floor) for lr, floor in zip(lrs, self._min_lrs(len(lrs)))]
        self.num_reductions += any(new < lr for new, lr in zip(new_lrs, lrs))
        return new_lrs

    def step(self, metric: float, epoch: Optional[int] = None) -> float:
        raise NotImplementedError

    def on_train_begin(self, trainer: Any) -> None:
        if self.optimizer is None:
            self._bind(_optimizer_from(type(self).__name__, trainer))
        else:  # it drives again from this fit on (its last fit's on_train_end let go)
            claim(self, self.optimizer, ["lr"])

    def on_train_end(self, trainer: Any) -> None:
        if self.optimizer is not None:
            release(self, self.optimizer)

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any], trainer: Any) -> None:
        self.step(_monitored(type(self).__name__, self.monitor, logs), epoch)

    def state_dict(self) -> Dict[str, Any]:
        return {**self._plateau.state(), "last_epoch": self.last_epoch, "num_reductions": self.num_reductions}

    _FIELDS: Dict[str, Callable[[str, Any], Any]] = {**_PlateauCounter.FIELDS, "last_epoch": _epoch_index,
                                                     "num_reductions": _count}

    def _load_common(self, checked: Mapping[str, Any]) -> None:
        self._plateau.load(checked)
        self.last_epoch, self.num_reductions = checked["last_epoch"], checked["num_reductions"]


class ReduceLROnPlateau(_LRPlateau):
    """Multiply the learning rate of every group by ``factor`` when a metric stops improving.

    Rule (docs/algorithms.md): after each epoch with metric ``x``, ``x``
    improves if ``x < best - |best| * threshold`` (``threshold_mode="rel"``)
    or ``x < best - threshold`` (``"abs"``); ``mode="max"`` mirrors both.
    On improvement ``best = x, wait = 0``; otherwise ``wait += 1`` and when
    ``wait >= patience``: every lr group ``i`` (the optimizer's default, then
    each override that sets ``lr``) gets ``lr_i = max(lr_i * factor,
    min_lr_i)`` (never raised: an lr already below its ``min_lr`` stays),
    ``wait = 0``, and for the next ``cooldown`` epochs ``wait`` stays 0. A
    NaN metric never improves.

    Differences from torch.optim.lr_scheduler.ReduceLROnPlateau: the cut
    comes when ``wait >= patience`` (Keras's count), torch's one epoch later
    (``wait > patience``); so ``patience=p`` here matches torch's
    ``patience=p-1``; torch also skips a cut smaller than ``eps=1e-8``, here
    every cut applies. The rel threshold is taken from ``|best|``; torch's
    ``best * (1 - threshold)`` counts a worse value as an improvement when
    ``best < 0`` (for ``best >= 0`` they agree). Like torch, every group is
    cut and ``min_lr`` may be a list, one floor per group. The lrs are read
    from the optimizer at each cut, so an lr you set by hand is the one cut;
    a Scheduler driving ``lr`` would overwrite the cut at its next step, so
    let one controller own the lr. The ``state_dict`` carries every group's
    lr (as the optimizer's own ``state_dict`` does), and loading it into a
    bound controller sets them.

    Args:
        optimizer: a fastadapt optimizer, or None to bind to
            ``trainer.optimizer`` in ``on_train_begin``.
        monitor: the epoch-log key read by ``on_epoch_end``.
        mode: ``"min"`` (a loss) or ``"max"`` (an accuracy).
        factor: in [0, 1): the multiplier of each cut.
        patience: epochs without improvement before a cut (>= 0; 0 acts like 1).
        threshold, threshold_mode: how much better counts as better
            (``rel``: a fraction in [0, 1); ``abs``: an amount >= 0).
        cooldown: epochs after a cut in which no waiting is counted.
        min_lr: the lr never goes below this; a number for every group or a
            list with one per lr group.

    Example::

        plateau = fa.ReduceLROnPlateau(opt, factor=0.5, patience=5)
        for epoch in range(epochs):
            train_one_epoch()
            plateau.step(validation_loss())
    """

    def __init__(self, optimizer: Any = None, *, monitor: str = "val_loss", mode: str = "min", factor: float = 0.1,
                 patience: int = 10, threshold: float = 1e-4, threshold_mode: str = "rel", cooldown: int = 0,
                 min_lr: Union[float, List[float]] = 0.0):
        self._pending_lrs: Optional[List[float]] = None  # loaded before binding: applied when bound
        super().__init__(optimizer, monitor=monitor, mode=mode, factor=factor, patience=patience,
                         threshold=threshold, threshold_mode=threshold_mode, cooldown=cooldown, min_lr=min_lr)

    def _bind(self, optimizer: Any) -> None:
        super()._bind(optimizer)
        if self._pending_lrs is not None:
            _same_groups("ReduceLROnPlateau", "state_dict['lrs']", self._pending_lrs,
                         len(optimizer.group_values("lr")))
            optimizer.set_group_values("lr", self._pending_lrs)
            self._pending_lrs = None

    def step(self, metric: float, epoch: Optional[int] = None) -> float:
        """Record the metric of an epoch; cut every group's lr if it is time.
        Returns the default group's lr."""
        x = self._begin_step(metric, epoch)
        lrs = self.optimizer.group_values("lr")
        new_lrs = self._plateau_cut(x, lrs)
        if new_lrs != lrs:
            self.optimizer.set_group_values("lr", new_lrs)
        return self.optimizer.lr

    def state_dict(self) -> Dict[str, Any]:
        lrs = self.optimizer.group_values("lr") if self.optimizer is not None else self._pending_lrs
        return {**super().state_dict(), "lrs": None if lrs is None else list(lrs)}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore the state; every group's saved lr goes to a bound optimizer
        (or to the one bound later). A state without ``lrs`` (saved by an
        older fastadapt) leaves the optimizer's lrs as they are."""
        checked = _load_fields("ReduceLROnPlateau", state_dict, {**self._FIELDS, "lrs": _opt_lrs},
                               optional=("lrs",))
        lrs = checked["lrs"]
        if self.optimizer is not None and lrs is not None:
            _same_groups("ReduceLROnPlateau", "state_dict['lrs']", lrs, len(self.optimizer.group_values("lr")))
            self.optimizer.set_group_values("lr", lrs)  # checked first: a refusal changes nothing
        elif self.optimizer is None:
            self._pending_lrs = lrs
        self._load_common(checked)


# ---- EarlyStopping ------------------------------------------------------------------------

class EarlyStopping(Callback):
    """Stop when a metric has stopped improving; put the best params back.

    Rule: from epoch ``start_epoch`` on, ``x`` improves if
    ``x < best - min_delta`` (``mode="max"``: ``x > best + min_delta``).
    On improvement ``best = x`` and the params are snapshotted; ``wait``
    restarts at 0 unless a ``baseline`` is given and not yet beaten.
    Otherwise ``wait += 1``. Training should stop when
    ``wait >= patience`` (Keras's count; Lightning's too). With a baseline,
    a run that improves but stays worse than the baseline for ``patience``
    epochs stops as well (Keras would keep going while it improves).

    With ``restore_best=True`` the best params are copied back into the
    *same arrays* (``np.copyto``) when the stop is decided, and again in
    ``on_train_end`` (so a run that ends without stopping also ends on its
    best params); :meth:`restore_best_params` does it by hand.

    Args:
        params: the parameter tree to snapshot, or None to bind to
            ``trainer.params`` in ``on_train_begin`` (needed only with
            ``restore_best=True``).
        monitor, mode: the epoch-log key and its direction.
        min_delta: >= 0, how much better counts as better (absolute).
        patience: epochs without improvement before stopping (>= 0).
        baseline: a value the metric must beat, or None.
        start_epoch: epochs before this one are ignored (Keras's start_from_epoch).
        restore_best: snapshot and restore the best params.

    Example::

        stopper = fa.EarlyStopping(params, patience=10)
        for epoch in range(1000):
            train_one_epoch()
            if stopper.step(validation_loss()):
                break               # params now hold the best epoch's values
    """

    def __init__(self, params: Any = None, *, monitor: str = "val_loss", mode: str = "min", min_delta: float = 0.0,
                 patience: int = 10, baseline: Optional[float] = None, start_epoch: int = 0,
                 restore_best: bool = True):
        self.monitor = _monitor_key(monitor)
        self._improves = _Improvement(mode, min_delta, "abs", threshold_name="min_delta")
        self.patience = _count("patience", patience)
        self.baseline = None if baseline is None else real("baseline", baseline)
        self.start_epoch = _count("start_epoch", start_epoch)
        self.restore_best = flag("restore_best", restore_best)
        self.best = self._improves.worst
        self.best_epoch = -1
        self.wait = 0
        self.last_epoch = -1
        self.stopped_epoch: Optional[int] = None
        self._paths: Optional[List[str]] = None  # set once the params are bound
        self._leaves: List[np.ndarray] = []
        self._snapshot: Optional[List[np.ndarray]] = None
        if params is not None:
            self._bind(params)

    @property
    def should_stop(self) -> bool:
        """True once the stop has been decided."""
        return self.stopped_epoch is not None

    def _bind(self, params: Any) -> None:
        paths, leaves = array_leaves(params, "EarlyStopping: ")
        if self._snapshot is not None:  # loaded from a checkpoint before the params were known
            self._check_snapshot(self._snapshot, leaves, paths)
        self._paths, self._leaves = paths, leaves

    @staticmethod
    def _check_snapshot(snapshot: List[np.ndarray], leaves: List[np.ndarray], paths: List[str]) -> None:
        if len(snapshot) != len(leaves):
            raise ValueError(f"EarlyStopping: the saved best params have {len(snapshot)} arrays, the params "
                             f"{len(leaves)}; load a state_dict saved for these params")
        for path, saved, leaf in zip(paths, snapshot, leaves):
            if saved.shape != leaf.shape or saved.dtype != leaf.dtype:
                raise ValueError(f"EarlyStopping: saved best params[{path!r}] is {saved.dtype} {saved.shape}, "
                                 f"the params are {leaf.dtype} {leaf.shape}; load a state_dict saved for these params")

    def _take_snapshot(self) -> None:
        if self._snapshot is None:
            self._snapshot = [leaf.copy() for leaf in self._leaves]
        else:  # reuse the buffers: no allocation per improvement
            for saved, leaf in zip(self._snapshot, self._leaves):
                np.copyto(saved, leaf)

    def restore_best_params(self) -> bool:
        """Copy the best params seen into the params arrays; False if there is no snapshot yet."""
        if self._snapshot is None:
            return False
        if self._paths is None:
            raise ValueError("EarlyStopping has a snapshot but no params to restore it into; pass "
                             "EarlyStopping(params, ...)")
        for leaf, saved in zip(self._leaves, self._snapshot):
            np.copyto(leaf, saved)
        return True

    def step(self, metric: float, epoch: Optional[int] = None) -> bool:
        """Record the metric of an epoch; returns True when training should stop."""
        if self.restore_best and self._paths is None:
            raise ValueError("EarlyStopping(restore_best=True) needs the params to snapshot: pass "
                             "EarlyStopping(params, ...) or restore_best=False")
        x = _real_or_nan("EarlyStopping.step(metric)", metric)
        self.last_epoch = _epoch_arg("EarlyStopping", epoch, self.last_epoch)
        if self.last_epoch < self.start_epoch or self.should_stop:
            return self.should_stop
        if self._improves(x, self.best):
            self.best, self.best_epoch = x, self.last_epoch
            if self.restore_best:
                self._take_snapshot()
            beaten = self.baseline is None or self._improves(x, self.baseline)
            self.wait = 0 if beaten else self.wait + 1
        else:
            self.wait += 1
        if self.wait > 0 and self.wait >= self.patience:  # patience 0 acts like 1, as in Keras
            self.stopped_epoch = self.last_epoch
            if self.restore_best:
                self.restore_best_params()
        return self.should_stop

    def on_train_begin(self, trainer: Any) -> None:
        if self._paths is None and self.restore_best:
            params = getattr(trainer, "params", None)
            if params is None:
                raise ValueError("EarlyStopping(restore_best=True) was built without params and the trainer has "
                                 "none at on_train_begin; pass EarlyStopping(params, ...)")
            self._bind(params)

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any], trainer: Any) -> None:
        if self.step(_monitored("EarlyStopping", self.monitor, logs), epoch):
            trainer.stop_training = True

    def on_train_end(self, trainer: Any) -> None:
        if self.restore_best:
            self.restore_best_params()

    def state_dict(self) -> Dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait, "last_epoch": self.last_epoch,
                "stopped_epoch": self.stopped_epoch,
                "best_params": None if self._snapshot is None else [a.copy() for a in self._snapshot]}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        def arrays(name: str, value: Any) -> Optional[List[np.ndarray]]:
            if value is None:
                return None
            if not isinstance(value, (list, tuple)) or not all(isinstance(a, np.ndarray) for a in value):
                raise TypeError(f"EarlyStopping {name} must be None or a list of NumPy arrays")
            return [np.array(a, copy=True) for a in value]

        checked = _load_fields("EarlyStopping", state_dict,
                               {"best": _best_metric, "best_epoch": _epoch_index, "wait": _count,
                                "last_epoch": _epoch_index,
                                "stopped_epoch": lambda n, v: None if v is None else _count(n, v),
                                "best_params": arrays})
        if checked["best_params"] is not None and self._paths is not None:
            self._check_snapshot(checked["best_params"], self._leaves, self._paths)
        self.best, self.best_epoch, self.wait = checked["best"], checked["best_epoch"], checked["wait"]
        self.last_epoch, self.stopped_epoch = checked["last_epoch"], checked["stopped_epoch"]
        self._snapshot = checked["best_params"]


# ---- AdaptiveLR ---------------------------------------------------------------------

class AdaptiveLR(_LRPlateau):
    """The seed article's scheduler: linear warmup, then plateau reduction,
    with early-stop detection.

    Rule (docs/algorithms.md; the article's ``AdaptiveLRScheduler``), with
    ``w = warmup_epochs`` and ``init`` the lr warmup climbs to:

    - the lr used in epoch ``e < w`` is ``init * (e + 1) / w``, exactly
      the article's, and exactly ``Scheduler(per="epoch",
      lr=linear_warmup(init, w))``: epoch 0 trains at ``init / w`` (applied
      at construction or binding, as torch's schedulers apply their first
      value), epoch ``w - 1`` at ``init``;
    - :meth:`step` is called after each epoch ``e`` with its metric ``x``
      and sets the lr of epoch ``e + 1``. From ``e + 1 >= w`` on it applies
      the plateau rule of :class:`ReduceLROnPlateau` to ``x`` with the
      article's defaults (``threshold=0``: any decrease is an improvement,
      no cooldown, no floor): on ``wait >= patience``,
      ``lr = max(lr * factor, min_lr)``. The first metric counted is that
      of epoch ``w - 1``, the first one trained at the full lr; earlier
      metrics are ignored. The article's ``step(val_loss, epoch)`` returns
      the lr for ``epoch`` given the loss seen before it: the lr here for
      epoch ``n >= 1`` equals its ``step(metric of epoch n - 1, n)``, for
      any metric sequence (NaN included: it never improves);
    - ``should_stop`` turns True after ``stop_patience`` counted epochs
      without improvement (cuts do not restart this count); as a trainer
      callback it then sets ``trainer.stop_training``.

    The article counts like Keras, one epoch ahead of torch (see
    :class:`ReduceLROnPlateau`). The lr is the controller's own
    (``current_lr``, as in the article) and is written to the optimizer at
    every step. Every lr group moves (the optimizer's default, then each
    override that sets ``lr``): group ``i`` warms up to its own lr at
    binding (``init_lrs[i]``; ``init_lr`` replaces the default group's), and
    the plateau cuts all groups together, as :class:`ReduceLROnPlateau`
    does. ``init_lrs`` and ``current_lrs`` travel in the ``state_dict``.

    Args:
        optimizer: a fastadapt optimizer, or None to bind to
            ``trainer.optimizer`` in ``on_train_begin``.
        warmup_epochs: epochs of linear warmup (0: none, epoch 0 trains at ``init``).
        patience, factor, min_lr, cooldown, threshold, threshold_mode, mode,
            monitor: as :class:`ReduceLROnPlateau` (defaults: the article's).
        stop_patience: counted epochs without improvement before
            ``should_stop``; default ``3 * patience`` (three cuts brought nothing).
        init_lr: the lr the default group warms up to; default the
            optimizer's lr when bound.

    Example::

        adaptive = fa.AdaptiveLR(opt, warmup_epochs=10, patience=5, factor=0.5)
        for epoch in range(epochs):
            train_one_epoch()
            adaptive.step(validation_loss())
            if adaptive.should_stop:
                break
    """

    def __init__(self, optimizer: Any = None, *, warmup_epochs: int = 10, patience: int = 5, factor: float = 0.5,
                 min_lr: Union[float, List[float]] = 0.0, cooldown: int = 0, threshold: float = 0.0,
                 threshold_mode: str = "rel", mode: str = "min", stop_patience: Optional[int] = None,
                 monitor: str = "val_loss", init_lr: Optional[float] = None):
        self.warmup_epochs = _count("warmup_epochs", warmup_epochs)
        patience = _count("patience", patience)
        self.stop_patience = max(1, 3 * patience) if stop_patience is None else integer("stop_patience",
                                                                                      stop_patience, 1)
        self._init_lr_arg = None if init_lr is None else real("init_lr", init_lr, low=0.0)
        self.init_lrs: Optional[List[float]] = None
        self.current_lrs: Optional[List[float]] = None
        self.epochs_since_best = 0
        self.should_stop = False
        super().__init__(optimizer, monitor=monitor, mode=mode, factor=factor, patience=patience,
                         threshold=threshold, threshold_mode=threshold_mode, cooldown=cooldown, min_lr=min_lr)

    @property
    def init_lr(self) -> Optional[float]:
        """The default group's warmup target (None until known)."""
        return self.init_lrs[0] if self.init_lrs is not None else self._init_lr_arg

    @property
    def current_lr(self) -> Optional[float]:
        """The default group's current lr (None before binding)."""
        return None if self.current_lrs is None else self.current_lrs[0]

    def _bind(self, optimizer: Any) -> None:
        super()._bind(optimizer)
        groups = len(optimizer.group_values("lr"))
        for what, lrs in (("state_dict['init_lr']", self.init_lrs), ("state_dict['current_lr']", self.current_lrs)):
            if lrs is not None:  # loaded before binding
                _same_groups("AdaptiveLR", what, lrs, groups)
        self._start()

    def _lrs_for_epoch(self, n: int) -> List[float]:
        """Every group's lr for epoch ``n`` while warming up (``n < w``), the
        article's ``init * (n + 1) / w``; ``init`` itself from ``w`` on."""
        assert self.init_lrs is not None
        if n < self.warmup_epochs:
            return [init * (n + 1) / self.warmup_epochs for init in self.init_lrs]
        return list(self.init_lrs)

    def _start(self) -> None:
        """Fill in the lrs a state saved before binding lacks (init_lrs: the
        optimizer's group lrs, the default's replaced by ``init_lr``;
        current_lrs: those of the next epoch's warmup) and apply current_lrs."""
        if self.init_lrs is None:
            bases = list(self.optimizer.group_values("lr"))
            if self._init_lr_arg is not None:
                bases[0] = self._init_lr_arg
            self.init_lrs = bases
        if self.current_lrs is None:
            self.current_lrs = self._lrs_for_epoch(self.last_epoch + 1)
        self.optimizer.set_group_values("lr", self.current_lrs)

    def step(self, metric: float, epoch: Optional[int] = None) -> float:
        """Record the metric of epoch ``epoch`` (default: the next one) and set
        the lr of the epoch after it; returns the default group's."""
        x = self._begin_step(metric, epoch)
        upcoming = self.last_epoch + 1  # the epoch the new lr is for
        if upcoming < self.warmup_epochs:
            self.current_lrs = self._lrs_for_epoch(upcoming)
        else:
            self.current_lrs = self._plateau_cut(x, self.current_lrs)
            self.epochs_since_best = 0 if self._plateau.improved else self.epochs_since_best + 1
            if self.epochs_since_best >= self.stop_patience:
                self.should_stop = True
        self.optimizer.set_group_values("lr", self.current_lrs)
        return self.current_lrs[0]

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any], trainer: Any) -> None:
        super().on_epoch_end(epoch, logs, trainer)
        if self.should_stop:
            trainer.stop_training = True

    def state_dict(self) -> Dict[str, Any]:
        return {**super().state_dict(),
                "init_lr": None if self.init_lrs is None else list(self.init_lrs),
                "current_lr": None if self.current_lrs is None else list(self.current_lrs),
                "epochs_since_best": self.epochs_since_best, "should_stop": self.should_stop}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore the state; a bound optimizer gets the saved lrs (every
        group). A state saved before binding has no lrs yet: a bound
        controller then keeps the init_lrs its own binding found."""
        checked = _load_fields("AdaptiveLR", state_dict,
                               {**self._FIELDS, "init_lr": _opt_lrs, "current_lr": _opt_lrs,
                                "epochs_since_best": _count, "should_stop": flag})
        if self.optimizer is not None:
            groups = len(self.optimizer.group_values("lr"))
            for key in ("init_lr", "current_lr"):
                if checked[key] is not None:
                    _same_groups("AdaptiveLR", f"state_dict[{key!r}]", checked[key], groups)
        bound_init_lrs = self.init_lrs
        self._load_common(checked)
        self.init_lrs = checked["init_lr"] if checked["init_lr"] is not None else (
            bound_init_lrs if self.optimizer is not None else None)
        self.current_lrs = checked["current_lr"]
        self.epochs_since_best, self.should_stop = checked["epochs_since_best"], checked["should_stop"]
        if self.optimizer is not None:
            self._start()
