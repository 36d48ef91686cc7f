"""DoG and LDoG (Ivgi et al. 2023, "DoG is SGD's Best Friend"; the authors'
``dog-optimizer`` package) in plain NumPy, in docs/algorithms.md's operation
order.

Both are SGD with a learned step size ``eta = lr * rbar / sqrt(G)``: ``rbar``
the largest distance from the starting point ``x0`` seen so far, ``G`` the
running sum of squared gradient norms. DoG learns one ``eta`` per parameter
group (its tensors seen as one long vector), LDoG one per tensor. The step
therefore needs every reduction of the group before any parameter moves: the
kernel's first pass reads ``g, p, x0`` and emits two sums per tensor, a hook
turns the (group's or tensor's) sums into ``rbar, G, eta``, and the second
pass writes ``p``.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ._common import ReferenceOptimizer, global_sum

# The values each tensor carries from step to step (float64, 0-d): the
# package's group entries of the same names. DoG writes its group's values
# into every member tensor.
CARRIED = ("rbar", "G", "eta")


def dog_direction(p: np.ndarray, g: np.ndarray, *, weight_decay: float) -> np.ndarray:
    """``u = g + wd * p`` (the package adds the weight decay to the gradient
    itself, so ``G`` sums it too), or ``g`` when ``weight_decay == 0``: a
    function of ``(p, g)``, recomputed bit for bit by the second pass."""
    T = p.dtype.type
    if weight_decay != 0:
        return g + T(weight_decay) * p
    return g


def dog_summands(p: np.ndarray, u: np.ndarray, x0: np.ndarray, *, first: bool) -> Tuple[np.ndarray, np.ndarray]:
    """The float64 per-element values of the two sums: ``u**2`` and the
    squared distance from the start, ``(p - x0)**2`` with ``p - x0`` in ``T``
    (on the first step, when ``x0`` is ``p``, the package's ``||x0||``: ``p**2``)."""
    d = p if first else p - x0
    return u.astype(np.float64) ** 2, d.astype(np.float64) ** 2


def nan_max(a: float, b: float) -> float:
    """``torch.maximum``: NaN if either is NaN."""
    if math.isnan(a) or math.isnan(b):
        return math.nan
    return max(a, b)


def dog_scalars(u_sumsq: float, d_sumsq: float, previous: Optional[Tuple[float, float]], *, lr: float,
                reps_rel: float, eps: float, init_eta: Optional[float]) -> Tuple[float, float, float]:
    """``(rbar, G, eta)`` in float64 from one block's two sums (a group's for
    DoG, a tensor's for LDoG) and its ``(rbar, G)`` after the last step
    (``previous`` is None on the first step):

    - first step: ``rbar = reps_rel * (1 + ||x0||)`` (0 when ``init_eta`` is
      set: the package then sets reps_rel to 0), ``G = ||u||^2 + eps``;
    - later: ``rbar = max(rbar, ||p - x0||)`` (NaN-propagating),
      ``G = G + ||u||^2``;
    - ``eta = (lr * rbar) / sqrt(G)``, but 0 when ``G == 0`` (the package
      asserts G > 0; G is 0 only when every gradient so far was exactly 0, so
      the step moves nothing either way, and 0 keeps ``p`` free of the NaN of
      ``inf * 0``); on the first step ``init_eta``, when set, replaces it.

    The kernel's after-pass hook computes exactly these float64 operations.
    """
    if previous is None:
        rbar = 0.0 if init_eta is not None else reps_rel * (1.0 + math.sqrt(d_sumsq))
        G = u_sumsq + eps
    else:
        rbar = nan_max(previous[0], math.sqrt(d_sumsq))
        G = previous[1] + u_sumsq
    eta = 0.0 if G == 0.0 else (lr * rbar) / math.sqrt(G)
    if previous is None and init_eta is not None:
        eta = float(init_eta)
    return rbar, G, eta


def dog_rule(members: List[Tuple[np.ndarray, np.ndarray, Dict[str, np.ndarray]]], *, lr: float, reps_rel: float,
             eps: float, init_eta: Optional[float], weight_decay: float) -> float:
    """One step of one block, in place: ``members`` are the block's
    ``(p, g, state)`` in key order (``state`` holds ``init_buffer`` and the
    carried ``rbar``, ``G``, ``eta``; an empty state is the first step, which
    creates them). The block's sums run over all its members in one running
    total (``global_sum``: tensor by tensor, chunk by chunk), so a block of
    one tensor is LDoG's per-tensor sum. Returns ``eta``."""
    first = "init_buffer" not in members[0][2]
    us, usq, dsq = [], [], []
    for p, g, st in members:
        if first:
            st["init_buffer"] = p.copy()
        u = dog_direction(p, g, weight_decay=weight_decay)
        a, b = dog_summands(p, u, st["init_buffer"], first=first)
        us.append(u)
        usq.append(a)
        dsq.append(b)
    st0 = members[0][2]
    previous = None if first else (float(st0["rbar"]), float(st0["G"]))
    rbar, G, eta = dog_scalars(global_sum(usq), global_sum(dsq), previous, lr=lr, reps_rel=reps_rel, eps=eps,
                               init_eta=init_eta)
    for (p, _, st), u in zip(members, us):
        T = p.dtype.type
        p[...] = p - T(eta) * u
        for name, v in zip(CARRIED, (rbar, G, eta)):
            st[name] = np.array(v, dtype=np.float64)
    return eta


class DoG(ReferenceOptimizer):
    """DoG over parameter groups: the tensors that share their
    hyperparameters (fastadapt's groups: the default, and each override) are
    one block, as the package's param groups are."""

    defaults = dict(lr=1.0, reps_rel=1e-6, eps=1e-8, init_eta=None, weight_decay=0.0, maximize=False)
    per_tensor = False

    def update(self, params: Any, grads: Any) -> Any:
        # The base class pre-processes the gradients (non-finite policy,
        # clipping, maximize) and hands each tensor to _apply; the blocks are
        # stepped once all of them are in.
        self._queue: List[Tuple[str, np.ndarray, np.ndarray, Dict[str, Any]]] = []
        try:
            super().update(params, grads)
            queue = self._queue
        finally:
            self._queue = []
        blocks: Dict[Any, list] = {}
        for path, p, g, hp in queue:
            key = path if self.per_tensor else tuple(sorted(hp.items()))
            blocks.setdefault(key, []).append((path, p, g, hp))
        with np.errstate(all="ignore"):
            for members in blocks.values():
                hp = members[0][3]
                dog_rule([(p, g, self.state.setdefault(path, {})) for path, p, g, _ in members],
                         lr=hp["lr"], reps_rel=hp["reps_rel"], eps=hp["eps"], init_eta=hp["init_eta"],
                         weight_decay=hp["weight_decay"])
        return params

    def _apply(self, path: str, p: np.ndarray, g: np.ndarray) -> None:
        # (the hyperparameters as they are for this tensor: tests give the
        # reference per-key values by patching _apply)
        self._queue.append((path, p, g, {n: getattr(self, n) for n in self.defaults}))


class LDoG(DoG):
    """Layer-wise DoG: every tensor is its own block."""

    per_tensor = True
