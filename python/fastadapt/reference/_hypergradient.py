"""What the two hypergradient-descent rules (HD-SGD, HD-Adam; Baydin et al.,
ICLR 2018) share in plain NumPy: one adapted learning rate per group,
updated once per step from a reduction over all of the group's tensors, so a
step is two passes, as the fused kernels run it.

Pass 0, per tensor: the preprocessed gradient ``g`` (weight decay added),
its products with the previous direction ``d_prev`` (float64, summed later
in the kernels' order), the rule's own state update and the new direction
``d`` (stored; it does not depend on the new learning rate).
Between the passes, in float64: ``alpha = alpha_prev + hypergrad_lr * sum``
(the paper's ``alpha_t = alpha_{t-1} - beta h_t`` with
``h_t = g_t . grad_alpha u_{t-1} = -g_t . d_{t-1}``), the sum being
``global_sum`` over the group's tensors in key order.
Pass 1, per tensor: ``p = p - T(alpha) * d``.

The adapted rate is kept per tensor as two float64 scalars, ``lr`` (alpha
after the last step) and ``lr_base`` (the value of the ``lr``
hyperparameter that alpha started from): assigning a new ``lr`` restarts the
adaptation from it, as assigning ``group['lr']`` does in the authors'
PyTorch optimizers.
"""

from __future__ import annotations

from typing import Any, List, Tuple

import numpy as np

from ._common import ReferenceOptimizer, global_sum


def next_lr(lr_prev: float, lr_base: float, lr: float, hypergrad_lr: float, dot: float) -> Tuple[float, float]:
    """``(alpha_t, lr_base)`` from the last step's alpha and base, the ``lr``
    hyperparameter now, ``beta`` and ``sum g_t . d_{t-1}`` (float64)."""
    if lr != lr_base:  # lr assigned since the last step: start again from it
        lr_prev, lr_base = lr, lr
    return float(np.float64(lr_prev) + np.float64(hypergrad_lr) * np.float64(dot)), lr_base


class HypergradientReference(ReferenceOptimizer):
    """The dict API of a hypergradient rule: the base class's preprocessing
    (non-finite policy, clipping, maximize) and counters, with the update
    split into the two passes above. Subclasses implement ``_pass0(path, p,
    g) -> (dot_values, d)`` (float64 per-element products and the new
    direction, already stored in the state)."""

    # The hyperparameters read here (set from the subclass's defaults by
    # ReferenceOptimizer.__init__; declared for type checkers).
    lr: float
    hypergrad_lr: float

    def update(self, params: Any, grads: Any) -> Any:
        self._pending: List[Tuple[str, np.ndarray, np.ndarray, np.ndarray]] = []
        before = self.step_count
        super().update(params, grads)  # runs pass 0 through _apply
        if self.step_count == before:  # a skipped step changes nothing
            return params
        paths = [path for path, *_ in self._pending]
        first = self.state[paths[0]] if paths else {}
        lr_prev = float(first.get("lr", self.lr))
        lr_base = float(first.get("lr_base", self.lr))
        dot = global_sum([dots for _, _, _, dots in self._pending])
        alpha, lr_base = next_lr(lr_prev, lr_base, self.lr, self.hypergrad_lr, dot)
        self.last_hypergradient_sum = dot
        with np.errstate(all="ignore"):
            for path, p, d, _ in self._pending:
                T = p.dtype.type
                p[...] = p - T(alpha) * d
                self.state[path]["lr"] = np.array(alpha, np.float64)
                self.state[path]["lr_base"] = np.array(lr_base, np.float64)
        self._pending = []
        return params

    def _apply(self, path: str, p: np.ndarray, g: np.ndarray) -> None:
        dots, d = self._pass0(path, p, g)
        self._pending.append((path, p, d, dots))

    def _pass0(self, path: str, p: np.ndarray, g: np.ndarray):
        raise NotImplementedError

    @property
    def adapted_lr(self) -> float:
        """alpha after the last step (``lr`` before the first)."""
        for bufs in self.state.values():
            if "lr" in bufs:
                return float(bufs["lr"])
        return float(self.lr)
