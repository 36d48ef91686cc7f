"""What the D-adaptation rules (DAdaptAdam, Prodigy) share in the reference:
a step that needs every tensor's sums before any parameter moves, and one
set of learned scalars (d, ...) for all tensors.

``update`` runs the base class's gradient pre-processing, which calls
``_apply`` once per tensor; here ``_apply`` only records the tensor, its
pre-processed gradient and its resolved hyperparameters (so per-key
hyperparameters, e.g. tests/rule_parity.py's ``patch_per_key``, work as for
any rule). Then, as the kernels do: pass 0 over every tensor (state updates,
per-tensor sums), the global scalar update (the kernels' ``after_pass``
hook), pass 1 over every tensor (the parameter).

The learned scalars are kept per tensor in ``state[path][name]`` as 0-d
float64 arrays, every tensor holding the same value (the core API's tensor
scalars); the rule reads them from the first tensor.
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

import numpy as np

from ._common import ReferenceOptimizer


def pymax(a: float, b: float) -> float:
    """Python's ``max(a, b)``: ``b`` only when ``b > a``, so a NaN ``b`` is
    ignored and a NaN ``a`` is kept (the references use the builtins)."""
    return b if b > a else a


def pymin(a: float, b: float) -> float:
    """Python's ``min(a, b)``: ``b`` only when ``b < a``."""
    return b if b < a else a


class GlobalStepReference(ReferenceOptimizer):
    """Two passes over all tensors around one global scalar update."""

    scalars: Tuple[str, ...] = ()     # the learned scalars, kept per tensor
    global_hyper: Tuple[str, ...] = ()   # read from the optimizer (group 0), never per key

    def _initial_scalars(self) -> Dict[str, float]:
        return {name: 0.0 for name in self.scalars}

    def update(self, params: Any, grads: Any) -> Any:
        self._calls: List[tuple] = []
        before = self.step_count
        super().update(params, grads)
        if self.step_count == before:        # skipped (nonfinite="skip")
            return params
        calls, self._calls = self._calls, []
        if not calls:
            return params
        try:
            self._check(calls)
        except Exception:
            self.step_count = before        # nothing changed
            raise
        glob = {name: getattr(self, name) for name in self.global_hyper}
        first = calls[0][0]
        if first not in self.state:
            learned = self._initial_scalars()
        else:
            learned = {name: float(self.state[first][name]) for name in self.scalars}
        with np.errstate(all="ignore"):
            new = self._step(calls, glob, learned)
        if new is not None:
            learned = new
        for path, _, _, _ in calls:
            st = self.state[path]
            for name in self.scalars:
                st[name] = np.array(learned[name], dtype=np.float64)
        return params

    def _apply(self, path: str, p: np.ndarray, g: np.ndarray) -> None:
        self._calls.append((path, p, g, {name: getattr(self, name) for name in self.defaults}))

    def _check(self, calls) -> None:
        """The references' rule for several learning rates: each group's lr is
        the largest one or 0 (a group with lr 0 adds nothing to d's estimate
        and updates no moment, but still takes the step)."""
        lr = max(hp["lr"] for _, _, _, hp in calls)
        for path, _, _, hp in calls:
            if hp["lr"] not in (lr, 0.0):
                raise ValueError(f"lr of {path!r} is {hp['lr']}: every key's lr must be the largest lr ({lr}) "
                                 "or 0 (d is one step size for all keys)")

    def _step(self, calls, glob: Dict[str, Any], learned: Dict[str, float]):
        """Both passes and the global update; returns the new learned scalars,
        or None to keep them (the references' early return)."""
        raise NotImplementedError
