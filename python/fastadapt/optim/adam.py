"""Adam and AdamW (docs/algorithms.md, "Adam"); the C++ rule is cpp/rules/adam.hpp."""

from __future__ import annotations

import math
from typing import Any, Dict, Optional, Tuple


from .. import _hyper as hv
from .._hyper import Hyper
from .base import Optimizer, Overrides


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015), with torch.optim's definition and defaults.

    Update (docs/algorithms.md, t counts from 1):

        g = g + wd * p                      (weight_decay, L2 form)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g       (amsgrad: vmax = max(vmax, v))
        p = p - lr / (1 - b1**t) * m / (sqrt(v) / sqrt(1 - b2**t) + eps)

    ``lr``, ``betas``, ``eps``, ``weight_decay``, ``amsgrad`` and ``maximize``
    are as in torch.optim.Adam.

    Parameters
    ----------
    lr
        learning rate.
    betas
        decay rates (beta1, beta2) of the moment estimates.
    eps
        added to the denominator for stability.
    weight_decay
        weight decay (L2 for Adam, decoupled for AdamW).
    amsgrad
        use the running maximum of the second moment (AMSGrad).
    maximize
        ascend instead of descend.
    max_grad_norm, nonfinite, track_grad_norm, overrides, state_dtype, state_bits, master_weights, stochastic_rounding, seed
        the options every rule takes (gradient clipping, the NaN/Inf policy, per-key overrides, low
        precision): see [`Optimizer`][fastadapt.Optimizer].

    Examples
    --------
        opt = fa.Adam(lr=1e-3)
        opt.update(params, grads)   # in place
    """

    algorithm = "adam"
    _kernel = "adam"
    _decoupled = False
    _per_key = ("lr", "betas", "eps", "weight_decay", "amsgrad", "maximize")

    lr = Hyper(hv.nonnegative, "Learning rate.")
    betas = Hyper(hv.betas, "Decay rates (beta1, beta2) of the moment estimates.")
    eps = Hyper(hv.nonnegative, "Added to the denominator for stability.")
    weight_decay = Hyper(hv.nonnegative, "Weight decay (L2 for Adam, decoupled for AdamW).")
    amsgrad = Hyper(hv.flag, "Use the running maximum of the second moment (AMSGrad).")
    maximize = Hyper(hv.flag, "Ascend instead of descend.")

    def __init__(self, lr: float = 1e-3, betas: Tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False, *, maximize: bool = False,
                 max_grad_norm: Optional[float] = None, nonfinite: str = "propagate",
                 track_grad_norm: bool = False, overrides: Overrides = None, state_dtype: Optional[str] = None,
                 state_bits: Optional[int] = None, master_weights: bool = False,
                 stochastic_rounding: bool = False, seed: int = 0):
        super().__init__(dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                              maximize=maximize),
                         max_grad_norm=max_grad_norm, nonfinite=nonfinite,
                         track_grad_norm=track_grad_norm,
                         overrides=overrides, state_dtype=state_dtype, state_bits=state_bits,
                         master_weights=master_weights, stochastic_rounding=stochastic_rounding, seed=seed)

    def _scalars_for(self, hp: Dict[str, Any], t: int) -> Dict[str, float]:
        b1, b2 = hp["betas"]
        lr, wd = hp["lr"], hp["weight_decay"]
        return {"b1": b1, "one_minus_b1": 1.0 - b1, "b2": b2, "one_minus_b2": 1.0 - b2,
                "bc2_sqrt": math.sqrt(1.0 - b2 ** t), "eps": hp["eps"],
                "step_size": lr / (1.0 - b1 ** t), "wd": wd, "decay": 1.0 - lr * wd}

    def _flags_for(self, hp: Dict[str, Any]) -> int:
        wd = hp["weight_decay"] != 0.0
        return self._flag_bits(l2=wd and not self._decoupled, decoupled=wd and self._decoupled,
                          amsgrad=hp["amsgrad"], maximize=hp["maximize"])


class AdamW(Adam):
    """AdamW (Loshchilov & Hutter, 2019): Adam with decoupled weight decay,
    ``p = p * (1 - lr * wd)`` before the Adam step. Default weight_decay 1e-2,
    as torch.optim.AdamW.

    Parameters
    ----------
    lr
        learning rate.
    betas
        decay rates (beta1, beta2) of the moment estimates.
    eps
        added to the denominator for stability.
    weight_decay
        weight decay (L2 for Adam, decoupled for AdamW).
    amsgrad
        use the running maximum of the second moment (AMSGrad).
    maximize
        ascend instead of descend.
    max_grad_norm, nonfinite, track_grad_norm, overrides, state_dtype, state_bits, master_weights, stochastic_rounding, seed
        the options every rule takes (gradient clipping, the NaN/Inf policy, per-key overrides, low
        precision): see [`Optimizer`][fastadapt.Optimizer].
    """

    algorithm = "adamw"
    _decoupled = True

    def __init__(self, lr: float = 1e-3, betas: Tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False, *, maximize: bool = False,
                 max_grad_norm: Optional[float] = None, nonfinite: str = "propagate",
                 track_grad_norm: bool = False, overrides: Overrides = None, state_dtype: Optional[str] = None,
                 state_bits: Optional[int] = None, master_weights: bool = False,
                 stochastic_rounding: bool = False, seed: int = 0):
        super().__init__(lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                         max_grad_norm=max_grad_norm, nonfinite=nonfinite,
                         track_grad_norm=track_grad_norm,
                         overrides=overrides, state_dtype=state_dtype, state_bits=state_bits,
                         master_weights=master_weights, stochastic_rounding=stochastic_rounding, seed=seed)
