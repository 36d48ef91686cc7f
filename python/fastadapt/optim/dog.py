"""DoG and LDoG (docs/algorithms.md, "DoG and LDoG"); the C++ rule is
cpp/rules/dog.hpp."""

from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np

from .. import _hyper as hv
from .._hyper import Hyper
from .base import Optimizer, Overrides


def _init_eta(name: str, value: Any) -> Optional[float]:
    if value is None:
        return None
    v = hv.as_float(name, value)
    if v <= 0:
        raise ValueError(f"Invalid {name}: {v} (must be > 0: the first step size; or None to start from "
                         f"reps_rel)")
    return v


class DoG(Optimizer):
    """DoG, "Distance over Gradients" (Ivgi et al., 2023), the dog-optimizer
    package's ``DoG``: SGD with a learned step size, one per parameter group
    (the default group and each ``overrides`` entry, all its tensors as one
    vector):

        u    = g + weight_decay * p
        rbar = max(rbar, ||p - x0||)         first step: reps_rel * (1 + ||x0||)
        G    = G + ||u||^2                   first step: ||u||^2 + eps
        eta  = lr * rbar / sqrt(G)           first step: init_eta, when set
        p    = p - eta * u

    ``x0`` is the parameter before the first step (state ``init_buffer``);
    ``rbar``, ``G`` and ``eta`` are carried per key (0-d float64 state), and
    ``opt.adapted`` reports them (of the group of the first key). The authors
    recommend iterate averaging on top (their package's
    PolynomialDecayAverager), which fastadapt does not provide.

    A G of 0 (eps = 0 and gradients of exact zeros so far), where the
    package asserts, gives eta = 0: the group does not move.

    Parameters
    ----------
    lr
        the paper's c; 1 (the authors advise not to change it).
    reps_rel
        the first step's distance, relative: reps_rel * (1 + ||x0||) (1e-6; the authors suggest 1e-4
        with batch normalization).
    eps
        added to G on the first step.
    init_eta
        the first step size, instead of the one reps_rel gives (then rbar starts at 0).
    weight_decay
        added to the gradient (L2), before G sums it.
    maximize
        ascend instead of descend.
    max_grad_norm, nonfinite, track_grad_norm, overrides, state_dtype, state_bits, master_weights, stochastic_rounding, seed
        the options every rule takes (gradient clipping, the NaN/Inf policy, per-key overrides, low
        precision): see [`Optimizer`][fastadapt.Optimizer].
    """

    algorithm = "dog"
    _kernel = "dog"
    lr_free = True
    _per_key = ("lr", "reps_rel", "eps", "init_eta", "weight_decay", "maximize")

    # >= 0, where the package wants > 0: a schedule may take lr to 0 (eta = 0).
    lr = Hyper(hv.nonnegative, "The paper's c: eta = lr * rbar / sqrt(G) (1; not advised to change).")
    reps_rel = Hyper(hv.nonnegative, "The first step's distance is reps_rel * (1 + ||x0||) (> 0 unless init_eta).")
    eps = Hyper(hv.nonnegative, "Added to G on the first step.")
    init_eta = Hyper(_init_eta, "The first step size (None: from reps_rel).")
    weight_decay = Hyper(hv.nonnegative, "L2 penalty added to the gradient.")
    maximize = Hyper(hv.flag, "Ascend instead of descend.")

    def __init__(self, lr: float = 1.0, reps_rel: float = 1e-6, eps: float = 1e-8, init_eta: Optional[float] = None,
                 weight_decay: float = 0.0, *, maximize: bool = False, max_grad_norm: Optional[float] = None,
                 nonfinite: str = "propagate", track_grad_norm: bool = False, overrides: Overrides = None, state_dtype: Optional[str] = None,
                 state_bits: Optional[int] = None, master_weights: bool = False,
                 stochastic_rounding: bool = False, seed: int = 0):
        super().__init__(dict(lr=lr, reps_rel=reps_rel, eps=eps, init_eta=init_eta, weight_decay=weight_decay,
                              maximize=maximize),
                         max_grad_norm=max_grad_norm, nonfinite=nonfinite,
                         track_grad_norm=track_grad_norm,
                         overrides=overrides, state_dtype=state_dtype, state_bits=state_bits,
                         master_weights=master_weights, stochastic_rounding=stochastic_rounding, seed=seed)

    def _check_consistency(self, hp: Dict[str, Any], where: str) -> None:
        if hp.get("init_eta") is None and hp.get("reps_rel", 1.0) <= 0:
            raise ValueError(f"{where}Invalid reps_rel: {hp['reps_rel']} (must be > 0 unless init_eta is set; "
                             f"suggested 1e-6, or 1e-4 for a model with batch normalization)")

    def _scalars_for(self, hp: Dict[str, Any], t: int) -> Dict[str, float]:
        init_eta = hp["init_eta"]
        return {"lr": hp["lr"], "reps_rel": hp["reps_rel"], "eps": hp["eps"],
                "init_eta": 0.0 if init_eta is None else init_eta, "wd": hp["weight_decay"]}

    def _flags_for(self, hp: Dict[str, Any]) -> int:
        return self._flag_bits(decay=hp["weight_decay"] != 0.0, init_eta=hp["init_eta"] is not None,
                               maximize=hp["maximize"])

    def _fresh_flag(self, slot: int) -> int:
        # The step that creates init_buffer (x0) is the group's first step.
        return self._flag_bits(first=True)

    def _new_state(self, slot: int, param: np.ndarray, hp: Dict[str, Any]) -> np.ndarray:
        return np.array(param, dtype=param.dtype, order="C", copy=True)  # x0: the parameter before the first step

    def _etas(self) -> list:
        """Each tensor's carried (eta, rbar, G) after the last step, in key
        order (empty before the first step). Called under the step lock (the
        public adapted / lr_estimate), so it reads the state directly."""
        if not self._paths or self._state["eta"][0] is None:
            return []
        return [tuple(float(self._state[n][i]) for n in ("eta", "rbar", "G")) for i in range(len(self._paths))]

    def _adapted(self) -> Dict[str, float]:
        """eta, rbar and G of group 0 (the group of the first key)."""
        etas = self._etas()
        return dict(zip(("eta", "rbar", "G"), etas[0])) if etas else {}

    def _lr_estimate(self) -> Optional[float]:
        return self._adapted().get("eta")


class LDoG(DoG):
    """LDoG, layer-wise DoG (Ivgi et al., 2023), the dog-optimizer package's
    ``LDoG``: DoG's rule with rbar, G and eta per tensor (see fa.DoG).
    ``opt.adapted`` reports the mean, smallest and largest eta over the
    tensors (``eta``, ``eta_min``, ``eta_max``); ``lr_estimate`` is the mean.

    Parameters
    ----------
    lr
        the paper's c: eta = lr * rbar / sqrt(G) (1; not advised to change).
    reps_rel
        the first step's distance is reps_rel * (1 + ||x0||) (> 0 unless init_eta).
    eps
        added to G on the first step.
    init_eta
        the first step size (None: from reps_rel).
    weight_decay
        L2 penalty added to the gradient.
    maximize
        ascend instead of descend.
    max_grad_norm, nonfinite, track_grad_norm, overrides, state_dtype, state_bits, master_weights, stochastic_rounding, seed
        the options every rule takes (gradient clipping, the NaN/Inf policy, per-key overrides, low
        precision): see [`Optimizer`][fastadapt.Optimizer].
    """

    algorithm = "ldog"
    _kernel = "ldog"

    def _adapted(self) -> Dict[str, float]:
        etas = [e[0] for e in self._etas()]
        if not etas:
            return {}
        return {"eta": float(np.mean(etas)), "eta_min": min(etas), "eta_max": max(etas)}
