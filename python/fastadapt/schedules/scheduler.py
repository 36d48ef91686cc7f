"""Scheduler: optimizer hyperparameters driven from schedules, per step or per epoch."""

from __future__ import annotations

import numbers
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from .._checks import choice, real
from ..train.callbacks._drivers import claim, release
from ..train.callbacks.base import Callback
from ._control import _bound_optimizer, _count, _load_fields, _optimizer_from, _same_groups

__all__ = ["Scheduler"]


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
    ``count -> value``, e.g. from ``fastadapt.schedules``). An element of
    a tuple hyperparameter is named with its index: ``betas0`` (or
    ``"betas[0]"`` through ``**{...}``) is Adam's beta1. Like torch's
    schedulers, the values for count 0 are applied at construction (or when
    the optimizer is bound), and each [`step`][fastadapt.Scheduler.step] advances the count by one
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

    A schedule value the optimizer rejects (``lr=-1``, ``betas0=1.0``, or
    an override group's scaled value) raises the optimizer's error, prefixed
    with the name and the count, and changes nothing.

    Parameters
    ----------
    optimizer
        a fastadapt optimizer, or None to bind to ``trainer.optimizer`` in ``on_train_begin``.
    per
        ``"step"`` or ``"epoch"``.
    groups
        ``"relative"`` or ``"same"``, how override groups follow.
    **schedules
        ``name=schedule`` for each hyperparameter to drive.

    Examples
    --------
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
                new: List[Any]
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
        """``{"count": ..., "bases": ...}``: the steps (or epochs) counted so far
        and each driven hyperparameter's group values when the scheduler was
        bound (None before), which the schedules' values scale."""
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
