"""HD-Adam (docs/algorithms.md, "HD-Adam"); the C++ rule is cpp/rules/hd_adam.hpp."""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

from .. import _hyper as hv
from .._hyper import Hyper
from ._hypergradient import HypergradientMixin
from .base import Optimizer, Overrides


class HypergradientAdam(HypergradientMixin, Optimizer):
    """Adam with hypergradient descent on its learning rate (Baydin et al.,
    "Online Learning Rate Adaptation with Hypergradient Descent", ICLR 2018:
    Adam-HD; the authors' ``AdamHD``):

        g = g + wd * p
        alpha = alpha + hypergrad_lr * sum(g . d_prev)   (one alpha per group)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        d = (m / (1 - b1**t)) / (sqrt(v / (1 - b2**t)) + eps)
        p = p - alpha * d;  d_prev = d

    alpha starts at ``lr`` (assigning ``lr`` restarts it from the new value)
    and is state: ``opt.adapted["lr"]``, ``opt.lr_estimate``,
    ``opt.state[key]["lr"]``.

    ``betas``, ``eps``, ``weight_decay`` and ``maximize`` are as in fa.Adam (L2
    weight decay).

    Parameters
    ----------
    lr
        the initial learning rate alpha_0.
    betas
        decay rates (beta1, beta2) of the moment estimates.
    eps
        added to the denominator for stability.
    weight_decay
        L2 weight decay.
    hypergrad_lr
        beta, the learning rate of alpha (the authors' default 1e-8; the paper's experiments use
        1e-7 and 1e-8 with lr 1e-3).
    maximize
        ascend instead of descend.
    max_grad_norm, nonfinite, track_grad_norm, overrides, state_dtype, state_bits, master_weights, stochastic_rounding, seed
        the options every rule takes (gradient clipping, the NaN/Inf policy, per-key overrides, low
        precision): see [`Optimizer`][fastadapt.Optimizer].
    """

    algorithm = "hd-adam"
    _kernel = "hd_adam"
    _per_key = ("lr", "betas", "eps", "weight_decay", "hypergrad_lr", "maximize")

    lr = Hyper(hv.nonnegative, "Initial learning rate alpha_0 (assigning it restarts the adapted rate).")
    betas = Hyper(hv.betas, "Decay rates (beta1, beta2) of the moment estimates.")
    eps = Hyper(hv.nonnegative, "Added to the denominator for stability.")
    weight_decay = Hyper(hv.nonnegative, "L2 weight decay.")
    hypergrad_lr = Hyper(hv.nonnegative, "Hypergradient learning rate beta: the step size of alpha.")
    maximize = Hyper(hv.flag, "Ascend instead of descend.")

    def __init__(self, lr: float = 1e-3, betas: Tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, hypergrad_lr: float = 1e-8, *, maximize: bool = False,
                 max_grad_norm: Optional[float] = None, nonfinite: str = "propagate",
                 track_grad_norm: bool = False, overrides: Overrides = None, state_dtype: Optional[str] = None,
                 state_bits: Optional[int] = None, master_weights: bool = False,
                 stochastic_rounding: bool = False, seed: int = 0):
        super().__init__(dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, hypergrad_lr=hypergrad_lr,
                              maximize=maximize),
                         max_grad_norm=max_grad_norm, nonfinite=nonfinite,
                         track_grad_norm=track_grad_norm,
                         overrides=overrides, state_dtype=state_dtype, state_bits=state_bits,
                         master_weights=master_weights, stochastic_rounding=stochastic_rounding, seed=seed)

    def _scalars_for(self, hp: Dict[str, Any], t: int) -> Dict[str, float]:
        b1, b2 = hp["betas"]
        return {"b1": b1, "one_minus_b1": 1.0 - b1, "b2": b2, "one_minus_b2": 1.0 - b2,
                "bc1": 1.0 - b1 ** t, "bc2": 1.0 - b2 ** t, "eps": hp["eps"], "wd": hp["weight_decay"],
                "lr": hp["lr"], "hypergrad_lr": hp["hypergrad_lr"]}

    def _flags_for(self, hp: Dict[str, Any]) -> int:
        return self._flag_bits(l2=hp["weight_decay"] != 0.0, maximize=hp["maximize"])
