"""NAdam (docs/algorithms.md, "NAdam"); the C++ rule is cpp/rules/nadam.hpp."""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

from .. import _hyper as hv
from .._hyper import Hyper
from .base import Optimizer, Overrides


def _mu(beta1: float, momentum_decay: float, t: int) -> float:
    """The momentum coefficient of step t (Dozat's schedule, as torch)."""
    return beta1 * (1.0 - 0.5 * 0.96 ** (t * momentum_decay))


class NAdam(Optimizer):
    """NAdam (Dozat, 2016): Adam with Nesterov momentum, torch.optim.NAdam's
    definition and defaults. With ``mu_t = b1 * (1 - 0.5 * 0.96 ** (t * momentum_decay))``
    and ``mu_product`` the product of ``mu_1 .. mu_t`` (kept per group, saved
    in the state_dict per key as torch keeps it per parameter):

        g = g + wd * p                      (weight_decay, L2 form)
        p = p * (1 - lr * wd)               (decoupled_weight_decay=True instead)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        denom = sqrt(v / (1 - b2**t)) + eps
        p = p - lr * (1 - mu_t) / (1 - mu_product) * g / denom
        p = p - lr * mu_{t+1} / (1 - mu_product * mu_{t+1}) * m / denom

    ``lr``, ``betas``, ``eps``, ``weight_decay``, ``momentum_decay``,
    ``decoupled_weight_decay`` and ``maximize`` are as in torch.optim.NAdam.

    Parameters
    ----------
    lr
        learning rate.
    betas
        decay rates (beta1, beta2) of the moment estimates.
    eps
        added to the denominator for stability.
    weight_decay
        weight decay (L2, or decoupled with decoupled_weight_decay).
    momentum_decay
        momentum decay psi of the schedule mu_t.
    decoupled_weight_decay
        decay the weights directly, as AdamW (NAdamW), instead of L2.
    maximize
        ascend instead of descend.
    max_grad_norm, nonfinite, track_grad_norm, overrides, state_dtype, state_bits, master_weights, stochastic_rounding, seed
        the options every rule takes (gradient clipping, the NaN/Inf policy, per-key overrides, low
        precision): see [`Optimizer`][fastadapt.Optimizer].
    """

    algorithm = "nadam"
    _kernel = "nadam"
    _carried = ("mu_product",)
    _per_key = ("lr", "betas", "eps", "weight_decay", "momentum_decay", "decoupled_weight_decay", "maximize")

    lr = Hyper(hv.nonnegative, "Learning rate.")
    betas = Hyper(hv.betas, "Decay rates (beta1, beta2) of the moment estimates.")
    eps = Hyper(hv.nonnegative, "Added to the denominator for stability.")
    weight_decay = Hyper(hv.nonnegative, "Weight decay (L2, or decoupled with decoupled_weight_decay).")
    momentum_decay = Hyper(hv.nonnegative, "Momentum decay psi of the schedule mu_t.")
    decoupled_weight_decay = Hyper(hv.flag, "Decay the weights directly, as AdamW (NAdamW), instead of L2.")
    maximize = Hyper(hv.flag, "Ascend instead of descend.")

    def __init__(self, lr: float = 2e-3, betas: Tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum_decay: float = 4e-3, decoupled_weight_decay: bool = False,
                 *, maximize: bool = False, max_grad_norm: Optional[float] = None, nonfinite: str = "propagate",
                 track_grad_norm: bool = False, overrides: Overrides = None, state_dtype: Optional[str] = None,
                 state_bits: Optional[int] = None, master_weights: bool = False,
                 stochastic_rounding: bool = False, seed: int = 0):
        super().__init__(dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                              momentum_decay=momentum_decay, decoupled_weight_decay=decoupled_weight_decay,
                              maximize=maximize),
                         max_grad_norm=max_grad_norm, nonfinite=nonfinite,
                         track_grad_norm=track_grad_norm,
                         overrides=overrides, state_dtype=state_dtype, state_bits=state_bits,
                         master_weights=master_weights, stochastic_rounding=stochastic_rounding, seed=seed)

    def _carry(self, hp: Dict[str, Any], t: int, previous: Optional[Dict[str, float]]) -> Dict[str, float]:
        product = 1.0 if previous is None else previous["mu_product"]
        return {"mu_product": product * _mu(hp["betas"][0], hp["momentum_decay"], t)}

    def _scalars_for(self, hp: Dict[str, Any], t: int) -> Dict[str, float]:
        b1, b2 = hp["betas"]
        lr, wd = hp["lr"], hp["weight_decay"]
        mu, mu_next = _mu(b1, hp["momentum_decay"], t), _mu(b1, hp["momentum_decay"], t + 1)
        product = hp["mu_product"]
        return {"b1": b1, "one_minus_b1": 1.0 - b1, "b2": b2, "one_minus_b2": 1.0 - b2, "bc2": 1.0 - b2 ** t,
                "eps": hp["eps"], "grad_step": lr * (1.0 - mu) / (1.0 - product),
                "momentum_step": lr * mu_next / (1.0 - product * mu_next), "wd": wd, "decay": 1.0 - lr * wd}

    def _flags_for(self, hp: Dict[str, Any]) -> int:
        wd = hp["weight_decay"] != 0.0
        decoupled = hp["decoupled_weight_decay"]
        return self._flag_bits(l2=wd and not decoupled, decoupled=wd and decoupled, maximize=hp["maximize"])
