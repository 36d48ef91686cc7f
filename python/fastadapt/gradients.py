"""Gradient utilities over nested structures: the global L2 norm, clipping
by it, and replacing non-finite values. Each is one C++ call over all arrays,
chunked like the optimizer step (same norm bits for any thread count).

bfloat16 and float16 arrays (low-precision params and grads, as the
optimizers take them) are read in float32, exactly; clipping and sanitizing
write them back rounded to nearest even, as the optimizer rounds its
low-precision params."""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from . import _core
from ._tree import flatten_any
from .optim import _lowp

__all__ = ["global_norm", "clip_by_global_norm", "sanitize"]


def _leaves(grads: Any):
    if isinstance(grads, np.ndarray):
        return ("",), [grads]
    paths, leaves = flatten_any(grads)
    return tuple(paths), leaves


def _in_float32(paths: Any, leaves: list) -> tuple:
    """The leaves with each bfloat16/float16 array widened to a float32 copy
    (exact), and the indices of those. A non-contiguous one is refused, as the
    C++ call refuses a float32 one: nothing is copied that would not be."""
    out, low = list(leaves), []
    for i, a in enumerate(leaves):
        if isinstance(a, np.ndarray) and _lowp.is_low(a.dtype):
            if not a.flags.c_contiguous:
                where = f"grads[{paths[i]!r}]" if paths[i] else "grads"
                raise ValueError(f"{where}: the array is not C-contiguous; pass np.ascontiguousarray(g)")
            out[i] = _lowp.widen(a)
            low.append(i)
    return out, low


def _write_back(leaves: list, widened: list, low: list) -> None:
    """Round the float32 copies back into their bfloat16/float16 arrays (to nearest even)."""
    for i in low:
        a = leaves[i]
        if _lowp.is_bfloat16(a.dtype):
            a.view(np.uint16)[...] = _core._round_bf16(widened[i].reshape(-1)).reshape(a.shape)
        else:
            a[...] = widened[i].astype(np.float16)


def global_norm(grads: Any) -> float:
    """``sqrt(sum of g*g over all arrays)``, accumulated in float64 in a
    fixed order. NaN/Inf propagate. Arrays must be float32/float64 (or
    bfloat16/float16, read in float32) and C-contiguous.

    Parameters
    ----------
    grads
        a gradient tree (nested dicts, lists or tuples of arrays) or one array. Arrays must be
        float32/float64 (or bfloat16/float16, read in float32) and C-contiguous.

    Returns
    -------
    float
        the norm (0.0 for an empty tree).

    Raises
    ------
    TypeError
        for an array of another dtype (the message names its key).
    ValueError
        for a non-contiguous array (pass ``np.ascontiguousarray(g)``).
    """
    paths, leaves = _leaves(grads)
    sumsq, _ = _core.global_sumsq(paths, _in_float32(paths, leaves)[0], False)
    return math.sqrt(sumsq)


def clip_by_global_norm(grads: Any, max_norm: float) -> float:
    """Scale all arrays in place by ``max_norm / max(norm, max_norm)`` (no
    change when the norm is within bounds) and return the norm before
    clipping, like ``torch.nn.utils.clip_grad_norm_``.

    Parameters
    ----------
    grads
        a gradient tree (nested dicts, lists or tuples of arrays) or one array. Arrays must be
        float32/float64 (or bfloat16/float16, read in float32) and C-contiguous.
    max_norm
        the largest global norm allowed, a finite number > 0.

    Returns
    -------
    float
        the global norm before clipping.

    Raises
    ------
    TypeError
        for a ``max_norm`` that is not a number, or an array of another dtype.
    ValueError
        for a ``max_norm`` that is not finite and > 0, or a non-contiguous array.
    """
    if isinstance(max_norm, (bool, np.bool_)) or not isinstance(max_norm, (numbers.Real, np.floating, np.integer)):
        raise TypeError(f"max_norm must be a real number > 0, got {type(max_norm).__name__} {max_norm!r}")
    limit = float(max_norm)
    if not (math.isfinite(limit) and limit > 0):
        raise ValueError(f"Invalid max_norm: {limit} (must be a finite number > 0)")
    paths, leaves = _leaves(grads)
    widened, low = _in_float32(paths, leaves)
    norm, _ = _core.clip_by_global_norm(paths, widened, limit)
    if low and norm > limit:
        _write_back(leaves, widened, low)
    return norm


def sanitize(grads: Any) -> int:
    """Replace NaN and ±Inf by 0 in place; return how many were replaced.

    Parameters
    ----------
    grads
        a gradient tree (nested dicts, lists or tuples of arrays) or one array. Arrays must be
        float32/float64 (or bfloat16/float16, read in float32) and C-contiguous.

    Returns
    -------
    int
        how many values were replaced (0: the tree was finite).

    Raises
    ------
    TypeError
        for an array of another dtype (the message names its key).
    ValueError
        for a non-contiguous array (pass ``np.ascontiguousarray(g)``).
    """
    paths, leaves = _leaves(grads)
    widened, low = _in_float32(paths, leaves)
    count = int(_core.sanitize(paths, widened))
    if low and count:
        _write_back(leaves, widened, low)
    return count
