"""What every reference rule shares: the kernels' fixed summation order
(chunks of CHUNK_ELEMENTS, 16 float64 lanes per chunk, chunks in order), the
clip scale, and the dict-API optimizer that calls one rule per tensor.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional

import numpy as np

from .._tree import flatten_any

CHUNK_ELEMENTS = 16384
"""Elements per chunk of the kernels' reductions (norms, per-tensor sums): a tensor is
summed chunk by chunk, in order, so the result never depends on the thread count."""
NORM_LANES = 16
"""float64 lanes per chunk: lane ``j`` adds elements ``j, j + 16, j + 32, ...`` in order,
then the lanes are added pairwise (8 + 8, 4 + 4, then ``(s0 + s2) + (s1 + s3)``)."""


def _lanes_sum(lanes: np.ndarray) -> float:
    """The kernels' fixed pairwise order over the 16 lanes of a chunk."""
    s8 = lanes[:8] + lanes[8:]
    s4 = s8[:4] + s8[4:]
    return float((s4[0] + s4[2]) + (s4[1] + s4[3]))


def _chunk_sum(values: np.ndarray) -> float:
    """One chunk of float64 values summed as the kernels do: lane j adds
    elements j, j+16, j+32, ... strictly in order, then the 16 lanes pairwise."""
    full = values.size - values.size % NORM_LANES
    lanes = np.zeros(NORM_LANES)
    if full:
        lanes = np.cumsum(values[:full].reshape(-1, NORM_LANES), axis=0)[-1].copy()
    for j, v in enumerate(values[full:]):
        lanes[j] = lanes[j] + v
    return _lanes_sum(lanes)


def _chunk_sumsq(x: np.ndarray) -> float:
    return _chunk_sum(x.astype(np.float64) ** 2)


def tensor_sum(values: np.ndarray) -> float:
    """A per-tensor reduction exactly as a rule's pass computes it: ``values``
    (float64, one per element, e.g. ``p.astype(np.float64) ** 2``) in chunks of
    CHUNK_ELEMENTS, each chunk summed in 16 lanes, chunk sums added in order
    starting from 0.0."""
    flat = np.asarray(values, dtype=np.float64).reshape(-1)
    total = 0.0
    for b in range(0, flat.size, CHUNK_ELEMENTS):
        total += _chunk_sum(flat[b:b + CHUNK_ELEMENTS])
    return total


def global_sum(values: List[np.ndarray]) -> float:
    """A global reduction: every tensor's chunk sums added in one running
    total, tensor by tensor and chunk by chunk (the order of the norm)."""
    total = 0.0
    for v in values:
        flat = np.asarray(v, dtype=np.float64).reshape(-1)
        for b in range(0, flat.size, CHUNK_ELEMENTS):
            total += _chunk_sum(flat[b:b + CHUNK_ELEMENTS])
    return total


def global_sumsq(arrays: List[np.ndarray]) -> float:
    """Sum of squares exactly as the kernels add it: per tensor, chunks of
    CHUNK_ELEMENTS; per chunk, 16 float64 lanes; chunks added in order."""
    return global_sum([a.astype(np.float64) ** 2 for a in arrays])


def global_norm(arrays: List[np.ndarray]) -> float:
    """The global L2 norm, ``sqrt`` of [`global_sumsq`][fastadapt.reference.global_sumsq]: the norm that
    gradient clipping and ``last_grad_norm`` use, bit for bit."""
    return math.sqrt(global_sumsq(arrays))


def clip_scale(norm: float, max_norm: float) -> float:
    """``max_norm / max(norm, max_norm)``, NaN propagating."""
    return max_norm / (norm if (math.isnan(norm) or norm > max_norm) else max_norm)


class ReferenceOptimizer:
    """The dict API in plain NumPy (the seed article's way): one rule call
    per tensor, hyperparameters as plain mutable attributes."""

    rule = "adam"
    defaults: Dict[str, Any] = {}
    buffers: tuple = ()

    def __init__(self, *, max_grad_norm: Optional[float] = None, nonfinite: str = "propagate", **hyper: Any):
        unknown = set(hyper) - set(self.defaults)
        if unknown:
            raise TypeError(f"unknown hyperparameters {sorted(unknown)}")
        for k, v in {**self.defaults, **hyper}.items():
            setattr(self, k, v)
        self.max_grad_norm = max_grad_norm
        self.nonfinite = nonfinite
        self.step_count = 0
        self.skipped_steps = 0
        self.last_grad_norm: Optional[float] = None
        self.state: Dict[str, Dict[str, np.ndarray]] = {}

    def update(self, params: Any, grads: Any) -> Any:
        """One step: update ``params`` in place from ``grads`` and return ``params``.

        The gradients are pre-processed as the kernels do, in this order: the
        ``nonfinite`` policy (``"zero"`` replaces NaN/Inf by 0, ``"skip"`` counts
        the step in ``skipped_steps`` and changes nothing, ``"raise"`` raises),
        clipping to ``max_grad_norm`` (which sets ``last_grad_norm``), then the
        sign flip of ``maximize``. The rule then runs on each tensor in key order,
        with ``step_count`` already advanced (the first step is ``t = 1``).

        Parameters
        ----------
        params
            the parameter tree (nested dicts/lists of float arrays), updated in place.
        grads
            the gradients, a tree of the same structure.

        Returns
        -------
        Any
            ``params``.

        Raises
        ------
        FloatingPointError
            with ``nonfinite="raise"`` when a gradient holds NaN or Inf (the
            message is the key path); nothing is updated."""
        paths, ps = flatten_any(params)
        _, gs = flatten_any(grads)
        gs = [np.asarray(g) for g in gs]
        if self.nonfinite in ("zero", "skip", "raise"):
            bad = [int(np.size(g) - np.count_nonzero(np.isfinite(g))) for g in gs]
            if sum(bad) and self.nonfinite == "skip":
                self.skipped_steps += 1
                return params
            if sum(bad) and self.nonfinite == "raise":
                raise FloatingPointError(paths[next(i for i, b in enumerate(bad) if b)])
            if self.nonfinite == "zero":
                gs = [np.where(np.isfinite(g), g, g.dtype.type(0)) for g in gs]
        if self.max_grad_norm is not None:
            # (the norm is computed only when clipping, so the benchmark
            # baseline does no work the article's code does not)
            with np.errstate(over="ignore"):  # huge float64 grads: the norm is inf, as in the kernels
                self.last_grad_norm = global_norm(gs)
            scale = clip_scale(self.last_grad_norm, self.max_grad_norm)
            gs = [g * g.dtype.type(scale) for g in gs]
        if getattr(self, "maximize", False):
            gs = [-g for g in gs]
        self.step_count += 1
        # IEEE results without warnings, as the kernels give them: centered
        # RMSProp's sq - ga*ga can round below 0 (sqrt -> NaN, as in torch).
        with np.errstate(all="ignore"):
            for path, p, g in zip(paths, ps, gs):
                self._apply(path, p, g)
        return params

    def _buffer(self, path: str, name: str, p: np.ndarray, fill: float = 0.0) -> np.ndarray:
        st = self.state.setdefault(path, {})
        if name not in st:
            st[name] = np.full_like(p, fill)
        return st[name]

    def _apply(self, path: str, p: np.ndarray, g: np.ndarray) -> None:
        raise NotImplementedError
