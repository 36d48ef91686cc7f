"""Lion (docs/algorithms.md, "Lion"); the C++ rule is cpp/rules/lion.hpp."""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

from .. import _hyper as hv
from .._hyper import Hyper
from .base import Optimizer, Overrides


class Lion(Optimizer):
    """Lion (Chen et al., 2023), lion-pytorch's definition and defaults:

        p = p * (1 - lr * wd)                       (weight_decay != 0)
        p = p - lr * sign(b1 * m + (1 - b1) * g)
        m = b2 * m + (1 - b2) * g

    ``sign`` is exact: +0 for a zero (p stays bit for bit), NaN for NaN (as
    optax; lion-pytorch's CPU sign gives 0 there). lion-pytorch's
    ``decoupled_weight_decay=True`` with learning rate ``lr0`` is
    ``weight_decay=wd / lr0`` here (the same bits).

    ``lr``, ``betas`` and ``weight_decay`` are as in lion_pytorch.Lion (lr 1e-4,
    betas (0.9, 0.99), weight_decay 0).

    Parameters
    ----------
    lr
        learning rate.
    betas
        (beta1, beta2): beta1 mixes momentum and gradient in the sign, beta2 decays the momentum.
    weight_decay
        decoupled weight decay: p = p * (1 - lr * weight_decay).
    maximize
        ascend instead of descend.
    max_grad_norm, nonfinite, track_grad_norm, overrides, state_dtype, state_bits, master_weights, stochastic_rounding, seed
        the options every rule takes (gradient clipping, the NaN/Inf policy, per-key overrides, low
        precision): see [`Optimizer`][fastadapt.Optimizer].
    """

    algorithm = "lion"
    _kernel = "lion"
    _per_key = ("lr", "betas", "weight_decay", "maximize")

    lr = Hyper(hv.nonnegative, "Learning rate.")
    betas = Hyper(hv.betas, "(beta1, beta2): beta1 mixes momentum and gradient in the sign, "
                            "beta2 decays the momentum.")
    weight_decay = Hyper(hv.nonnegative, "Decoupled weight decay: p = p * (1 - lr * weight_decay).")
    maximize = Hyper(hv.flag, "Ascend instead of descend.")

    def __init__(self, lr: float = 1e-4, betas: Tuple[float, float] = (0.9, 0.99), weight_decay: float = 0.0, *,
                 maximize: bool = False, max_grad_norm: Optional[float] = None, nonfinite: str = "propagate",
                 track_grad_norm: bool = False, overrides: Overrides = None, state_dtype: Optional[str] = None,
                 state_bits: Optional[int] = None, master_weights: bool = False,
                 stochastic_rounding: bool = False, seed: int = 0):
        super().__init__(dict(lr=lr, betas=betas, weight_decay=weight_decay, maximize=maximize),
                         max_grad_norm=max_grad_norm, nonfinite=nonfinite,
                         track_grad_norm=track_grad_norm,
                         overrides=overrides, state_dtype=state_dtype, state_bits=state_bits,
                         master_weights=master_weights, stochastic_rounding=stochastic_rounding, seed=seed)

    def _scalars_for(self, hp: Dict[str, Any], t: int) -> Dict[str, float]:
        b1, b2 = hp["betas"]
        return {"b1": b1, "one_minus_b1": 1.0 - b1, "b2": b2, "one_minus_b2": 1.0 - b2, "lr": hp["lr"],
                "decay": 1.0 - hp["lr"] * hp["weight_decay"]}

    def _flags_for(self, hp: Dict[str, Any]) -> int:
        return self._flag_bits(decay=hp["weight_decay"] != 0.0, maximize=hp["maximize"])
