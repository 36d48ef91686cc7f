"""Plain NumPy implementations of every fastadapt kernel, in exactly the
operation order of docs/algorithms.md: the oracle of the parity tests (bit
for bit) and the "seed implementation" baseline of the benchmarks.

Each rule updates its arrays in place. Scalars are computed in float64 and
rounded to the array dtype once (``T(x)``), as the kernels do.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional

import numpy as np

from ._tree import flatten_any

__all__ = ["CHUNK_ELEMENTS", "NORM_LANES", "global_sumsq", "global_norm", "clip_scale",
           "adam_rule", "adagrad_rule", "rmsprop_rule", "sgd_rule", "ReferenceOptimizer",
           "Adam", "AdamW", "AdaGrad", "RMSProp", "SGD"]

CHUNK_ELEMENTS = 16384
NORM_LANES = 16


def _lanes_sum(lanes: np.ndarray) -> float:
    """The kernels' fixed pairwise order over the 16 lanes of a chunk."""
    s8 = lanes[:8] + lanes[8:]
    s4 = s8[:4] + s8[4:]
    return float((s4[0] + s4[2]) + (s4[1] + s4[3]))


def _chunk_sumsq(x: np.ndarray) -> float:
    sq = x.astype(np.float64) ** 2
    full = sq.size - sq.size % NORM_LANES
    lanes = np.zeros(NORM_LANES)
    if full:
        # lane j adds elements j, j+16, j+32, ... strictly in order
        lanes = np.cumsum(sq[:full].reshape(-1, NORM_LANES), axis=0)[-1].copy()
    for j, v in enumerate(sq[full:]):
        lanes[j] = lanes[j] + v
    return _lanes_sum(lanes)


def global_sumsq(arrays: List[np.ndarray]) -> float:
    """Sum of squares exactly as the kernels add it: per tensor, chunks of
    CHUNK_ELEMENTS; per chunk, 16 float64 lanes; chunks added in order."""
    total = 0.0
    for a in arrays:
        flat = a.reshape(-1)
        for b in range(0, flat.size, CHUNK_ELEMENTS):
            total += _chunk_sumsq(flat[b:b + CHUNK_ELEMENTS])
    return total


def global_norm(arrays: List[np.ndarray]) -> float:
    return math.sqrt(global_sumsq(arrays))


def clip_scale(norm: float, max_norm: float) -> float:
    """``max_norm / max(norm, max_norm)``, NaN propagating."""
    return max_norm / (norm if (math.isnan(norm) or norm > max_norm) else max_norm)


def adam_rule(p, g, m, v, vmax, *, t, lr, betas, eps, weight_decay, amsgrad, decoupled):
    T = p.dtype.type
    b1, b2 = betas
    if weight_decay != 0 and not decoupled:
        g = g + T(weight_decay) * p
    if decoupled and weight_decay != 0:
        p[...] = p * T(1.0 - lr * weight_decay)
    m[...] = T(b1) * m + T(1.0 - b1) * g
    v[...] = T(b2) * v + T(1.0 - b2) * (g * g)
    vv = v
    if amsgrad:
        vmax[...] = np.maximum(vmax, v)
        vv = vmax
    denom = np.sqrt(vv) / T(math.sqrt(1.0 - b2 ** t)) + T(eps)
    p[...] = p - T(lr / (1.0 - b1 ** t)) * (m / denom)


def adagrad_rule(p, g, s, *, t, lr, lr_decay, weight_decay, eps):
    T = p.dtype.type
    if weight_decay != 0:
        g = g + T(weight_decay) * p
    s[...] = s + g * g
    p[...] = p - T(lr / (1.0 + (t - 1) * lr_decay)) * (g / (np.sqrt(s) + T(eps)))


def rmsprop_rule(p, g, sq, ga, buf, *, lr, alpha, eps, weight_decay, momentum, centered):
    T = p.dtype.type
    if weight_decay != 0:
        g = g + T(weight_decay) * p
    sq[...] = T(alpha) * sq + T(1.0 - alpha) * (g * g)
    if centered:
        ga[...] = T(alpha) * ga + T(1.0 - alpha) * g
        avg = np.sqrt(sq - ga * ga) + T(eps)
    else:
        avg = np.sqrt(sq) + T(eps)
    if momentum > 0:
        buf[...] = T(momentum) * buf + g / avg
        p[...] = p - T(lr) * buf
    else:
        p[...] = p - T(lr) * (g / avg)


def sgd_rule(p, g, buf, *, first, lr, momentum, dampening, weight_decay, nesterov):
    T = p.dtype.type
    if weight_decay != 0:
        g = g + T(weight_decay) * p
    if momentum != 0:
        if first:
            buf[...] = g
        else:
            buf[...] = T(momentum) * buf + T(1.0 - dampening) * g
        g = g + T(momentum) * buf if nesterov else buf.copy()
    p[...] = p - T(lr) * g


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


class Adam(ReferenceOptimizer):
    defaults = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, maximize=False)
    decoupled = False

    def _apply(self, path, p, g):
        m = self._buffer(path, "exp_avg", p)
        v = self._buffer(path, "exp_avg_sq", p)
        vmax = self._buffer(path, "max_exp_avg_sq", p) if self.amsgrad else None
        adam_rule(p, g, m, v, vmax, t=self.step_count, lr=self.lr, betas=self.betas, eps=self.eps,
                  weight_decay=self.weight_decay, amsgrad=self.amsgrad, decoupled=self.decoupled)


class AdamW(Adam):
    defaults = dict(Adam.defaults, weight_decay=1e-2)
    decoupled = True


class AdaGrad(ReferenceOptimizer):
    defaults = dict(lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10,
                    maximize=False)

    def _apply(self, path, p, g):
        s = self._buffer(path, "sum", p, self.initial_accumulator_value)
        adagrad_rule(p, g, s, t=self.step_count, lr=self.lr, lr_decay=self.lr_decay,
                     weight_decay=self.weight_decay, eps=self.eps)


class RMSProp(ReferenceOptimizer):
    defaults = dict(lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False,
                    maximize=False)

    def _apply(self, path, p, g):
        sq = self._buffer(path, "square_avg", p)
        ga = self._buffer(path, "grad_avg", p) if self.centered else None
        buf = self._buffer(path, "momentum_buffer", p) if self.momentum > 0 else None
        rmsprop_rule(p, g, sq, ga, buf, lr=self.lr, alpha=self.alpha, eps=self.eps,
                     weight_decay=self.weight_decay, momentum=self.momentum, centered=self.centered)


class SGD(ReferenceOptimizer):
    defaults = dict(lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, maximize=False)

    def _apply(self, path, p, g):
        buf = None
        first = False
        if self.momentum != 0:
            first = "momentum_buffer" not in self.state.get(path, {})
            buf = self._buffer(path, "momentum_buffer", p)
        sgd_rule(p, g, buf, first=first, lr=self.lr, momentum=self.momentum, dampening=self.dampening,
                 weight_decay=self.weight_decay, nesterov=self.nesterov)
