"""What the two D-Adaptation references share: a ``ReferenceOptimizer`` whose
step sees every tensor before it updates any (d and its sums are global), the
learned scalars kept per key as 0-d float64 arrays (as the fused class keeps
its tensor scalars), and Python's ``max``/``min`` spelled out."""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

import numpy as np

from ._common import ReferenceOptimizer


def pymax(a: float, b: float) -> float:
    """Python's ``max(a, b)``: ``b`` only if ``b > a`` (a NaN ``b`` gives ``a``)."""
    return b if b > a else a


def pymin(a: float, b: float) -> float:
    """Python's ``min(a, b)``: ``b`` only if ``b < a`` (a NaN ``a`` stays)."""
    return b if b < a else a


class GlobalReference(ReferenceOptimizer):
    """The base class's gradient pre-processing, then one ``_global_step``
    over all tensors. ``_apply`` only collects each tensor with the
    hyperparameters it sees at that moment (``per_tensor``), so that
    per-key values (``rule_parity.patch_per_key``) reach the global step."""

    per_tensor: Tuple[str, ...] = ()
    learned: Dict[str, float] = {}  # learned scalar -> its value before the first step (d0 is read from self)

    def update(self, params: Any, grads: Any) -> Any:
        self._pending: List[Tuple[str, np.ndarray, np.ndarray, Dict[str, Any]]] = []
        super().update(params, grads)
        if self._pending:
            with np.errstate(all="ignore"):
                self._global_step(self._pending)
        self._pending = []
        return params

    def _apply(self, path, p, g):
        self._pending.append((path, p, g, {n: getattr(self, n) for n in self.per_tensor}))

    def _learned(self) -> Dict[str, float]:
        """The learned scalars as the last committed step left them."""
        if not self.state:
            return self._initial_learned()
        st = next(iter(self.state.values()))
        return {n: float(st[n]) for n in self._initial_learned()}

    def _initial_learned(self) -> Dict[str, float]:
        raise NotImplementedError

    def _store_learned(self, paths, values: Dict[str, float]) -> None:
        for path in paths:
            st = self.state.setdefault(path, {})
            for n, v in values.items():
                st[n] = np.array(v, dtype=np.float64)

    def _global_step(self, pending) -> None:
        raise NotImplementedError
