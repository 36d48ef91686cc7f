"""What the two Schedule-Free rules share (docs/algorithms.md): the
float64 schedule of a step (warmup, lr_max, the averaging weight), the lerp
the kernels use, and the train/eval switch of the parameter arrays.

The parameter array holds the training point ``y``; the buffer ``z`` is the
base sequence and the averaged point is ``x = (y - (1 - b) * z) / b``
(``b``: beta1 or momentum), which ``eval`` writes into the parameter arrays
and ``train`` turns back into ``y``, as schedulefree's optimizer.eval() and
optimizer.train() do.
"""

from __future__ import annotations

from typing import Any, Dict, Tuple

import numpy as np

from .._tree import flatten_any
from ._common import ReferenceOptimizer


def schedulefree_schedule(*, lr: float, warmup_steps: int, r: float, weight_lr_power: float, t: int,
                          lr_max: float, weight_sum: float) -> Tuple[float, float, float, float]:
    """The scalars of step ``t`` (counted from 1) from ``lr_max`` and
    ``weight_sum`` after step ``t - 1`` (-1.0 and 0.0 before the first step).
    Returns ``(scheduled_lr, lr_max, weight_sum, ckp1)``, all float64:
    the warmed-up lr, the largest scheduled lr so far, the sum of the
    averaging weights so far, and this step's averaging weight over that sum
    (0 when the sum is 0: an lr of 0 with weight_lr_power > 0)."""
    sched = t / warmup_steps if t - 1 < warmup_steps else 1.0
    scheduled_lr = lr * sched
    lr_max = max(scheduled_lr, lr_max)
    weight = (float(t) ** r) * (lr_max ** weight_lr_power)
    weight_sum = weight_sum + weight
    ckp1 = weight / weight_sum if weight_sum != 0.0 else 0.0
    return scheduled_lr, lr_max, weight_sum, ckp1


def lerp(a: np.ndarray, b: np.ndarray, w: float) -> np.ndarray:
    """``a + w * (b - a)`` in the array dtype, in the form torch.lerp picks:
    from ``a`` when ``|w| < 0.5``, else from ``b`` (``b - (b - a) * (1 - w)``),
    so that ``w = 1`` gives ``b`` exactly. ``w`` and ``1 - w`` are float64,
    rounded once."""
    T = a.dtype.type
    d = b - a
    if abs(w) < 0.5:
        return a + T(w) * d
    return b - d * T(1.0 - w)


class ScheduleFreeReference(ReferenceOptimizer):
    """The Schedule-Free dict API: per-tensor carried scalars (``lr_max``,
    ``weight_sum``, ``scheduled_lr``, ``ckp1``, float64 0-d arrays, one per
    tensor as the Python class keeps them per key), ``z`` starting as a copy
    of the parameter, and the train/eval mode. Subclasses say which
    hyperparameter is ``b`` and implement ``_rule``."""

    carried = ("lr_max", "weight_sum", "scheduled_lr", "ckp1")
    # The hyperparameters read here (set from the subclass's defaults by
    # ReferenceOptimizer.__init__; declared for type checkers).
    lr: float
    warmup_steps: int
    r: float
    weight_lr_power: float

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        # Starts in train mode (schedulefree starts in eval mode and needs
        # .train() first; before the first step both points are the same).
        self.train_mode = True

    def _beta(self) -> float:
        raise NotImplementedError

    def update(self, params: Any, grads: Any) -> Any:
        if not self.train_mode:
            raise RuntimeError("update() in eval mode: call train(params) first")
        return super().update(params, grads)

    def _advance(self, path: str, p: np.ndarray) -> Dict[str, float]:
        """Create the tensor's state on its first step, advance its carried
        scalars to this step and return them."""
        st = self.state.setdefault(path, {})
        if "z" not in st:
            st["z"] = p.copy()
        lr_max = float(st["lr_max"]) if "lr_max" in st else -1.0
        weight_sum = float(st["weight_sum"]) if "weight_sum" in st else 0.0
        scheduled_lr, lr_max, weight_sum, ckp1 = schedulefree_schedule(
            lr=self.lr, warmup_steps=self.warmup_steps, r=self.r, weight_lr_power=self.weight_lr_power,
            t=self.step_count, lr_max=lr_max, weight_sum=weight_sum)
        now = dict(lr_max=lr_max, weight_sum=weight_sum, scheduled_lr=scheduled_lr, ckp1=ckp1)
        for name, v in now.items():
            st[name] = np.array(v, dtype=np.float64)
        return now

    def _switch(self, params: Any, to_train: bool) -> None:
        if self.train_mode == to_train:
            return  # as schedulefree: a second eval() (train()) changes nothing
        b = self._beta()
        # y -> x: lerp towards z with weight 1 - 1/b; x -> y: weight 1 - b.
        w = 1.0 - b if to_train else 1.0 - 1.0 / b
        paths, ps = flatten_any(params)
        with np.errstate(all="ignore"):
            for path, p in zip(paths, ps):
                if path in self.state:
                    p[...] = lerp(p, self.state[path]["z"], w)
        self.train_mode = to_train

    def eval(self, params: Any) -> None:
        """Write the averaged point x into ``params`` (from y and z)."""
        self._switch(params, to_train=False)

    def train(self, params: Any) -> None:
        """Write the training point y back into ``params`` (from x and z)."""
        self._switch(params, to_train=True)
