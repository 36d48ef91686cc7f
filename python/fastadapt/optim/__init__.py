"""The optimizers: one module per rule, each a subclass of
[`Optimizer`][fastadapt.Optimizer] over its C++ rule (cpp/rules).

Importing a rule's module registers it (``Optimizer.__init_subclass__``):
adding an optimizer is its module plus one import line here.
"""

from __future__ import annotations

from typing import Any, Union

from .base import OPTIMIZERS, Optimizer, Overrides
from .adadelta import Adadelta
from .adafactor import Adafactor
from .adagrad import AdaGrad, Adagrad
from .adam import Adam, AdamW
from .adamax import Adamax
from .dadapt_adagrad import DAdaptAdaGrad
from .dadapt_sgd import DAdaptSGD
from .dog import DoG, LDoG
from .hd_adam import HypergradientAdam
from .hd_sgd import HypergradientSGD
from .dadapt_adam import DAdaptAdam
from .lamb import LAMB
from .lars import LARS
from .lion import Lion
from .muon import Muon
from .nadam import NAdam
from .prodigy import Prodigy
from .radam import RAdam
from .rmsprop import RMSProp, RMSprop
from .sgd import SGD
from .schedulefree_adamw import ScheduleFreeAdamW
from .schedulefree_sgd import ScheduleFreeSGD

__all__ = ["Optimizer", "OPTIMIZERS", "Overrides", "make_optimizer", "Adam", "AdamW", "Adagrad", "AdaGrad",
           "RMSprop", "RMSProp", "SGD", "NAdam", "RAdam", "Adamax", "Adadelta", "Adafactor",
           "Lion", "LAMB", "LARS", "Muon"]
__all__ += ["DoG", "LDoG"]
__all__ += ["HypergradientSGD", "HypergradientAdam"]
__all__ += ["DAdaptSGD", "DAdaptAdaGrad"]
__all__ += ["ScheduleFreeAdamW", "ScheduleFreeSGD"]
__all__ += ["Prodigy", "DAdaptAdam"]


def make_optimizer(name: Union[str, Optimizer], **kwargs: Any) -> Optimizer:
    """An optimizer by name (case-insensitive; ``fastadapt.optim.OPTIMIZERS``
    lists them: adam, adamw, adagrad, rmsprop, sgd, ...) with keyword
    hyperparameters. An optimizer instance is returned as is (no keywords
    allowed then).

    Parameters
    ----------
    name
        a registered name (``"adam"``, ``"prodigy"``, ``"schedulefree-adamw"``, ...) or an optimizer.
    **kwargs
        the optimizer's constructor arguments (``lr=1e-3``, ``max_grad_norm=1.0``, ...).

    Returns
    -------
    Optimizer
        a new optimizer, or ``name`` itself when it is one.

    Raises
    ------
    ValueError
        for an unknown name (the message lists the registered ones).
    TypeError
        for a name that is not a string, or an instance given with keywords.
    """
    if isinstance(name, Optimizer):
        if kwargs:
            raise TypeError("make_optimizer got an optimizer instance and keyword arguments; pass one or the other")
        return name
    if not isinstance(name, str):
        raise TypeError(f"optimizer name must be a string, got {type(name).__name__}")
    cls = OPTIMIZERS.get(name.lower())
    if cls is None:
        raise ValueError(f"unknown optimizer {name!r}; expected one of {', '.join(sorted(OPTIMIZERS))}")
    return cls(**kwargs)
