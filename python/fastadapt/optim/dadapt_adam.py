"""DAdaptAdam (docs/algorithms.md, "DAdaptAdam"); the C++ rule is cpp/rules/dadapt_adam.hpp."""

from __future__ import annotations

import math
from typing import Any, Dict, Optional, Tuple

from .. import _hyper as hv
from .._hyper import Hyper
from . import _d_adam as da
from .base import Overrides


class DAdaptAdam(da.DAdaptOptimizer):
    """D-Adapted Adam (Defazio & Mishchenko, 2023), the dadaptation package's
    ``DAdaptAdam``: Adam whose step size ``d * lr`` is learned; leave ``lr``
    at 1.0 unless it is unstable. With ``dlr = d * lr`` (times Adam's bias
    correction when ``use_bias_correction``), ``sb2 = sqrt(b2)`` and
    ``r = layer_scale``:

        numerator_weighted = sb2 * numerator_weighted
                             + (1 - sb2) * r * dlr * sum(g * s / (sqrt(v) + eps))   (old s, v)
        m = b1 * m + r * dlr * (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        s = sb2 * s + dlr * (1 - sb2) * g
        d = max(d, min(numerator_weighted / ((1 - sb2) * r * sum|s|), d * growth_rate))
        p = p - m / (sqrt(v) + eps)

    One ``d`` for all keys (``opt.adapted``; per key in ``opt.state[key]["d"]``).
    docs/algorithms.md gives the exact update, the early return before any
    gradient signal and what differs from the package.

    ``lr``, ``betas``, ``eps``, ``weight_decay``, ``decouple``,
    ``use_bias_correction``, ``d0`` and ``growth_rate`` are as in
    dadaptation.DAdaptAdam (log_every and fsdp_in_use are not offered). betas,
    decouple, use_bias_correction, d0, growth_rate shape the one d and are not
    per key; a key's lr must be the largest lr or 0.

    Parameters
    ----------
    lr
        scales the learned step size d (leave at 1.0); a key's lr is the largest or 0.
    betas
        decay rates (beta1, beta2) of the moment estimates.
    eps
        added to the denominator, outside the square root.
    weight_decay
        weight decay (L2 unless decouple=True: AdamW form).
    decouple
        decay the weights directly (AdamW) instead of adding the L2 term to g.
    use_bias_correction
        multiply the step size by Adam's bias correction.
    d0
        the starting d.
    growth_rate
        the most d may grow per step, as a factor (inf: no limit).
    layer_scale
        the package's param-group key: scales a key's share of d's estimate and its step (per key
        through ``overrides``).
    maximize
        ascend instead of descend.
    max_grad_norm, nonfinite, track_grad_norm, overrides, state_dtype, state_bits, master_weights, stochastic_rounding, seed
        the options every rule takes (gradient clipping, the NaN/Inf policy, per-key overrides, low
        precision): see [`Optimizer`][fastadapt.Optimizer].
    """

    algorithm = "dadapt-adam"
    _kernel = "dadapt-adam"
    _per_key = ("lr", "eps", "weight_decay", "layer_scale", "maximize")

    # (lr, betas, decouple, use_bias_correction, d0, growth_rate, maximize: da.DAdaptOptimizer's)
    eps = Hyper(da.positive, "Added to the denominator, outside the square root.")
    weight_decay = Hyper(hv.nonnegative, "Weight decay (L2 unless decouple=True: AdamW form).")
    layer_scale = Hyper(hv.nonnegative, "Scales a key's share of d's estimate and its step (per key).")

    def __init__(self, lr: float = 1.0, betas: Tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, decouple: bool = False, use_bias_correction: bool = False,
                 d0: float = 1e-6, growth_rate: float = float("inf"), *, layer_scale: float = 1.0,
                 maximize: bool = False, max_grad_norm: Optional[float] = None, nonfinite: str = "propagate",
                 track_grad_norm: bool = False, overrides: Overrides = None, state_dtype: Optional[str] = None,
                 state_bits: Optional[int] = None, master_weights: bool = False,
                 stochastic_rounding: bool = False, seed: int = 0):
        super().__init__(dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, decouple=decouple,
                              use_bias_correction=use_bias_correction, d0=d0, growth_rate=growth_rate,
                              layer_scale=layer_scale, maximize=maximize),
                         max_grad_norm=max_grad_norm, nonfinite=nonfinite,
                         track_grad_norm=track_grad_norm,
                         overrides=overrides, state_dtype=state_dtype, state_bits=state_bits,
                         master_weights=master_weights, stochastic_rounding=stochastic_rounding, seed=seed)

    def _initial_tensor_scalars(self, hp: Dict[str, Any]) -> Dict[str, float]:
        return {"d": hp["d0"], "numerator_weighted": 0.0, "k": 0.0}

    def _scalars_for(self, hp: Dict[str, Any], t: int) -> Dict[str, float]:
        learned = self._learned()
        b1, b2 = hp["betas"]
        sb2 = math.sqrt(b2)
        r = hp["layer_scale"]
        dlr = self._step_size(learned, self._step_lr(), hp)
        wd = hp["weight_decay"]
        return {"b1": b1, "b2": b2, "one_minus_b2": 1.0 - b2, "sb2": sb2, "m_coef": r * dlr * (1.0 - b1),
                "s_coef": dlr * (1.0 - sb2), "wd": wd, "eps": hp["eps"], "wd_dlr": wd * dlr, "num_factor": r * dlr,
                "layer_scale": r, "growth_rate": hp["growth_rate"], "skip": 0.0}

    def _flags_for(self, hp: Dict[str, Any]) -> int:
        return self._common_flags(hp)
