"""Low-precision params and state for the optimizer base (optim/base.py):
the dtypes, the option validators, and the conversion of a fresh float32
state buffer to its storage (bfloat16, or 8-bit block-quantized codes with
their float32 block scales). The kernels do the per-step work
(cpp/core/lowp.hpp); fastadapt.reference.lowp states it in NumPy.
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np

from .. import _core

STATE_DTYPES = ("float32", "bfloat16", "int8")
_BITS = {8: "int8", 16: "bfloat16", 32: "float32"}
# The options' defaults (what a checkpoint from before low precision existed means, and what repr leaves out).
LOWP_DEFAULTS = {"state_dtype": None, "master_weights": False, "stochastic_rounding": False, "seed": 0}
LOWP_HYPER = tuple(LOWP_DEFAULTS)
# (state_dtype, master_weights, stochastic_rounding) may differ per key; the seed is one per optimizer.
LOWP_PER_KEY = ("state_dtype", "master_weights", "stochastic_rounding")

_bf16: Optional[np.dtype] = None


def bfloat16() -> np.dtype:
    """``ml_dtypes.bfloat16`` as a NumPy dtype (the optional dependency)."""
    global _bf16
    if _bf16 is None:
        try:
            import ml_dtypes
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError("bfloat16 state needs the ml_dtypes package (NumPy's bfloat16 dtype, as JAX uses): "
                              "pip install ml_dtypes, or install fastadapt with the 'lowp' extra") from e
        _bf16 = np.dtype(ml_dtypes.bfloat16)
    return _bf16


def is_bfloat16(dtype: Any) -> bool:
    dtype = np.dtype(dtype)
    return dtype.itemsize == 2 and dtype.name == "bfloat16"


def is_low(dtype: Any) -> bool:
    """bfloat16 or float16: stored low, computed in float32."""
    dtype = np.dtype(dtype)
    return dtype == np.float16 or is_bfloat16(dtype)


def is_param_dtype(dtype: Any) -> bool:
    dtype = np.dtype(dtype)
    return dtype in (np.float32, np.float64) or is_low(dtype)


def compute_dtype(dtype: Any) -> np.dtype:
    return np.dtype(np.float64) if np.dtype(dtype) == np.float64 else np.dtype(np.float32)


def widen(a: np.ndarray) -> np.ndarray:
    """A float32 copy of a float32/float16/bfloat16 array (exact)."""
    if is_bfloat16(a.dtype):
        return (a.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
    return np.array(a, dtype=np.float32, copy=True, order="C")


def state_dtype(name: str, value: Any) -> Optional[str]:
    """None (the params' compute type), "float32", "bfloat16" or "int8"."""
    if value is None:
        return None
    if not isinstance(value, str):
        # a dtype, as optax's mu_dtype takes one: np.float32 or ml_dtypes.bfloat16 (8-bit is "int8")
        try:
            as_dtype = np.dtype(value)
        except TypeError:
            as_dtype = None
        if as_dtype is not None and (as_dtype == np.float32 or is_bfloat16(as_dtype)):
            value = as_dtype.name
        else:
            raise TypeError(f"{name} must be None, one of {', '.join(map(repr, STATE_DTYPES))} or the dtype "
                            f"np.float32 / ml_dtypes.bfloat16, got {type(value).__name__} {value!r}")
    if value not in STATE_DTYPES:
        raise ValueError(f"Invalid {name}: {value!r} (expected None or one of {', '.join(map(repr, STATE_DTYPES))})")
    if value == "bfloat16":
        bfloat16()  # fail now, not at the first step
    return value


def state_bits(name: str, value: Any) -> Optional[str]:
    """``state_bits`` (None, 8, 16 or 32) as the ``state_dtype`` it stands for."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be None or an int (8, 16 or 32), got {type(value).__name__} {value!r}")
    if int(value) not in _BITS:
        raise ValueError(f"Invalid {name}: {value!r} (expected None, 8 (block-quantized), 16 (bfloat16) or 32 "
                         f"(float32))")
    return state_dtype(name, _BITS[int(value)])


def seed(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= int(value) < 2 ** 64:
        raise ValueError(f"Invalid {name}: {value!r} (expected an integer in [0, 2**64))")
    return int(value)


def resolve(state_dtype_value: Any, state_bits_value: Any) -> Optional[str]:
    """One storage from the two spellings (``state_dtype="bfloat16"`` or ``state_bits=16``)."""
    a = state_dtype("state_dtype", state_dtype_value)
    b = state_bits("state_bits", state_bits_value)
    if a is not None and b is not None and a != b:
        raise ValueError(f"state_dtype={state_dtype_value!r} and state_bits={state_bits_value!r} disagree; "
                         f"give one of them")
    return a if a is not None else b


def storage_dtype(storage: Optional[str], param_dtype: Any, key: str = "") -> np.dtype:
    """The dtype of a state buffer kept as ``storage`` for a param of ``param_dtype`` (``key``: its path)."""
    compute = compute_dtype(param_dtype)
    if storage is None or storage == "float32" and compute == np.float32:
        return compute
    if compute == np.float64:
        which = f"params[{key!r}] is float64" if key else "float64 params"
        raise ValueError(f"{which}: state_dtype={storage!r} is for float32, float16 and bfloat16 params; float64 "
                         f"params keep float64 state (pass float32 params, or give this key "
                         f"overrides={{{key or '...'!r}: {{'state_dtype': None}}}})")
    return bfloat16() if storage == "bfloat16" else np.dtype(np.uint8)


def to_storage(buf: np.ndarray, storage_dtype_: np.dtype, signed: bool) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """A fresh float32 buffer in its storage: (array, block scales or None)."""
    if storage_dtype_ == buf.dtype:
        return buf, None
    if storage_dtype_ == np.uint8:
        codes, absmax = _core._quantize(np.ascontiguousarray(buf, dtype=np.float32).reshape(-1), signed)
        return codes.reshape(buf.shape), absmax
    bits = _core._round_bf16(np.ascontiguousarray(buf, dtype=np.float32).reshape(-1))
    return bits.view(storage_dtype_).reshape(buf.shape), None


def blocks(size: int) -> int:
    """Block scales of an 8-bit buffer of ``size`` elements."""
    return -(-size // _core.QBLOCK)
