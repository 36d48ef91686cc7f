"""LAMB (docs/algorithms.md, "LAMB"); the C++ rule is cpp/rules/lamb.hpp."""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

from .. import _hyper as hv
from .._hyper import Hyper
from .base import Optimizer, Overrides


class LAMB(Optimizer):
    """LAMB (You et al., 2020), optax.lamb's definition and defaults:

        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        u = m / (1 - b1**t) / (sqrt(v / (1 - b2**t) + eps_root) + eps) + wd * p
        p = p - lr * trust_ratio * u,   trust_ratio = ||p|| / ||u||  per tensor
                                        (1 when either norm is 0)

    ``lr``, ``betas``, ``eps``, ``eps_root`` and ``weight_decay`` are
    optax.lamb's learning_rate (default 1e-3 here), (b1, b2), eps, eps_root,
    weight_decay.

    Parameters
    ----------
    lr
        learning rate.
    betas
        decay rates (beta1, beta2) of the moment estimates.
    eps
        added to the denominator, outside the square root.
    eps_root
        added to the second moment, inside the square root.
    weight_decay
        weight decay, added to the update before the trust ratio.
    maximize
        ascend instead of descend.
    max_grad_norm, nonfinite, track_grad_norm, overrides, state_dtype, state_bits, master_weights, stochastic_rounding, seed
        the options every rule takes (gradient clipping, the NaN/Inf policy, per-key overrides, low
        precision): see [`Optimizer`][fastadapt.Optimizer].
    """

    algorithm = "lamb"
    _kernel = "lamb"
    _per_key = ("lr", "betas", "eps", "eps_root", "weight_decay", "maximize")

    lr = Hyper(hv.nonnegative, "Learning rate.")
    betas = Hyper(hv.betas, "Decay rates (beta1, beta2) of the moment estimates.")
    eps = Hyper(hv.nonnegative, "Added to the denominator, outside the square root.")
    eps_root = Hyper(hv.nonnegative, "Added to the second moment, inside the square root.")
    weight_decay = Hyper(hv.nonnegative, "Weight decay, added to the update before the trust ratio.")
    maximize = Hyper(hv.flag, "Ascend instead of descend.")

    def __init__(self, lr: float = 1e-3, betas: Tuple[float, float] = (0.9, 0.999), eps: float = 1e-6,
                 eps_root: float = 0.0, weight_decay: float = 0.0, *, maximize: bool = False,
                 max_grad_norm: Optional[float] = None, nonfinite: str = "propagate",
                 track_grad_norm: bool = False, overrides: Overrides = None, state_dtype: Optional[str] = None,
                 state_bits: Optional[int] = None, master_weights: bool = False,
                 stochastic_rounding: bool = False, seed: int = 0):
        super().__init__(dict(lr=lr, betas=betas, eps=eps, eps_root=eps_root, weight_decay=weight_decay,
                              maximize=maximize),
                         max_grad_norm=max_grad_norm, nonfinite=nonfinite,
                         track_grad_norm=track_grad_norm,
                         overrides=overrides, state_dtype=state_dtype, state_bits=state_bits,
                         master_weights=master_weights, stochastic_rounding=stochastic_rounding, seed=seed)

    def _scalars_for(self, hp: Dict[str, Any], t: int) -> Dict[str, float]:
        b1, b2 = hp["betas"]
        return {"b1": b1, "one_minus_b1": 1.0 - b1, "b2": b2, "one_minus_b2": 1.0 - b2,
                "bc1": 1.0 - b1 ** t, "bc2": 1.0 - b2 ** t, "eps_root": hp["eps_root"], "eps": hp["eps"],
                "wd": hp["weight_decay"], "lr": hp["lr"]}

    def _flags_for(self, hp: Dict[str, Any]) -> int:
        return self._flag_bits(decay=hp["weight_decay"] != 0.0, maximize=hp["maximize"])
