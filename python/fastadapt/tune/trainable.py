"""The trainable protocol: what a tuner needs from the thing it tunes.

A trainable is a class built from a config:

    class MyTrainable(fa.tune.Trainable):
        def __init__(self, config):
            self.model = fa.models.MLP([784, 64, 10], seed=0)
            self.opt = fa.SGD(lr=config["lr"], momentum=config["momentum"])
        def train(self, budget):            # train `budget` more units (epochs, steps), return the metric
            ...
            return val_loss                  # or {"val_loss": ..., "accuracy": ...} with metric="val_loss"
        def save(self):                      # plain, picklable state: params and optimizer state
            return {"params": self.model.params, "opt": self.opt.state_dict()}
        def load(self, state):
            self.model.params = state["params"]; self.opt.load_state_dict(state["opt"])
        def set_config(self, config):        # PBT: new hyperparameters for the loaded state
            self.opt.lr = config["lr"]; self.opt.momentum = config["momentum"]

``save``/``load`` make a trainable *resumable*: a promoted Hyperband/ASHA
trial continues where it stopped, and PBT copies a member's state into
another. Without them, a trial that goes on is rebuilt and trained from
scratch for its whole budget (``cost`` in the result counts that). A plain
function ``f(config, budget) -> metric`` is accepted the same way: it trains
from scratch for ``budget`` units each time it is called.

Trials run in other processes (the default executor), so the class or
function must be importable by its module path: defined at the top level of
a module, not inside a function, not a lambda.
"""

from __future__ import annotations

import inspect
import math
import numbers
from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

__all__ = ["Trainable", "FunctionTrainable", "TrainableSpec", "as_trainable", "parse_report"]


class Trainable:
    """Base class documenting the protocol (subclassing it is optional: any
    class with these methods works).

    A trainable is built from a config dict, ``__init__(config)``, and has
    [`train`][fastadapt.tune.Trainable.train]. Three more methods are optional:

    - ``save() -> state``: picklable state (params, optimizer
      ``state_dict()``, counters); with ``load``, it makes the trainable
      resumable. A state that cannot be pickled fails the trial (on every
      executor), and with ``checkpoint_dir`` states are written as pickles
      (the tuner's own state is JSON; see ``fastadapt.tune.state``).
    - ``load(state)``: restore what ``save`` returned. Hyperparameters in
      the state (an optimizer's lr) may be another member's: PBT calls
      ``set_config`` right after ``load``.
    - ``set_config(config)``: apply new hyperparameters to a trained state.
      Needed by PBT; a Hyperband trial's config never changes.

    Parameters
    ----------
    config
        the trial's hyperparameters, one value per key of the space.
    """

    def __init__(self, config: Mapping[str, Any]):
        self.config = dict(config)

    def train(self, budget: int) -> Any:
        """Train ``budget`` *more* units and return the metric after them.

        Parameters
        ----------
        budget
            resource units (epochs, steps, ...) to train on top of those done,
            an int >= 1.

        Returns
        -------
        Any
            the metric, a number or a dict holding the tuner's ``metric`` key
            (other numbers in the dict are kept in the trial's history). A NaN
            or infinite metric fails the trial: it diverged.

        Raises
        ------
        NotImplementedError
            here; a trainable defines its own.
        """
        raise NotImplementedError(f"{type(self).__name__}.train(budget) must train `budget` more units and "
                                  f"return the metric")


class FunctionTrainable:
    """Adapter: a function ``f(config, budget) -> metric`` as a non-resumable
    trainable (each call trains from scratch for ``budget`` units)."""

    def __init__(self, function: Callable[[Dict[str, Any], int], Any], config: Mapping[str, Any]):
        self.function = function
        self.config = dict(config)

    def train(self, budget: int) -> Any:
        return self.function(dict(self.config), budget)


def _has_method(cls: type, name: str) -> bool:
    member = getattr(cls, name, None)
    return callable(member)


@dataclass(frozen=True)
class TrainableSpec:
    """What a job needs to rebuild the trainable anywhere: the user's class or
    function and what it can do. Picklable when the target is importable."""

    target: Any
    is_function: bool
    resumable: bool
    configurable: bool

    @property
    def name(self) -> str:
        return f"{getattr(self.target, '__module__', '?')}.{getattr(self.target, '__qualname__', repr(self.target))}"

    def build(self, config: Mapping[str, Any]) -> Any:
        if self.is_function:
            return FunctionTrainable(self.target, config)
        return self.target(dict(config))


def as_trainable(trainable: Any) -> TrainableSpec:
    """Check a trainable class or function and describe it; TypeError saying
    what the protocol needs otherwise."""
    if isinstance(trainable, TrainableSpec):
        return trainable
    if isinstance(trainable, type):
        if not _has_method(trainable, "train"):
            raise TypeError(f"trainable class {trainable.__qualname__} has no train(budget) method; a trainable "
                            f"is built from a config and has train(budget) -> metric (and save/load/set_config "
                            f"for resuming and PBT); see fa.tune.Trainable")
        has_save, has_load = _has_method(trainable, "save"), _has_method(trainable, "load")
        if has_save != has_load:
            raise TypeError(f"trainable class {trainable.__qualname__} defines "
                            f"{'save' if has_save else 'load'} without {'load' if has_save else 'save'}; "
                            f"define both (resumable) or neither (trained from scratch each time)")
        configurable = _has_method(trainable, "set_config")
        return TrainableSpec(trainable, is_function=False, resumable=has_save, configurable=configurable)
    if callable(trainable):
        try:
            signature = inspect.signature(trainable)
            signature.bind({}, 1)
        except TypeError:
            raise TypeError(f"a function trainable is called as f(config, budget) -> metric; "
                            f"{getattr(trainable, '__qualname__', trainable)!r} does not accept two "
                            f"positional arguments") from None
        except ValueError:  # builtins without a signature: let the call itself decide
            pass
        return TrainableSpec(trainable, is_function=True, resumable=False, configurable=False)
    raise TypeError(f"trainable must be a class (built from a config, with train(budget)) or a function "
                    f"f(config, budget) -> metric, got {type(trainable).__name__} {trainable!r:.80}")


def parse_report(report: Any, metric: str) -> Tuple[float, Dict[str, float]]:
    """``(metric, extras)`` from what ``train`` returned: a real number, or a
    dict holding ``metric`` (its other real-number entries become extras)."""
    if isinstance(report, Mapping):
        if metric not in report:
            raise KeyError(f"train() returned a dict without the tuner's metric {metric!r} "
                           f"(keys: {sorted(map(str, report))}); return it, or pass metric=<one of them> "
                           f"to the tuner")
        value = _as_metric(report[metric], f"train()[{metric!r}]")
        clash = [k for k in ("budget", "metric") if k in report and k != metric]
        if clash:
            raise ValueError(f"train() returned {clash[0]!r} besides the tuner's metric {metric!r}; a history entry "
                             f"keeps the budget and the tuner's metric under the names 'budget' and 'metric', so "
                             f"that entry would be lost: rename it")
        extras = {}
        for key, extra in report.items():
            if key != metric and isinstance(key, str) and isinstance(extra, numbers.Real) \
                    and not isinstance(extra, bool):
                extras[key] = float(extra)
        return value, extras
    return _as_metric(report, "train()"), {}


def _as_metric(value: Any, where: str) -> float:
    if hasattr(value, "shape") and getattr(value, "shape", None) == () and hasattr(value, "item"):
        value = value.item()  # a NumPy scalar or 0-d array
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{where} must return a real number (the metric), got {type(value).__name__} "
                        f"{value!r:.80}")
    return float(value)


def metric_is_valid(value: Optional[float]) -> bool:
    """Rankable: a finite real value. NaN and infinities are what a diverged
    training reports; a trial reporting one is failed (see
    ``jobs.reject_non_finite``), and such a value never ranks or wins."""
    return value is not None and math.isfinite(value)
