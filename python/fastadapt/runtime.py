"""What the native core runs on: SIMD paths and threads."""

from __future__ import annotations

import os
import warnings
from typing import Any, Dict

from . import _core

__all__ = ["simd_info", "set_num_threads", "get_num_threads"]


def simd_info() -> Dict[str, Any]:
    """The SIMD paths compiled in, those this CPU supports, the active one,
    what ``FASTADAPT_SIMD`` asked for, the chunk size and the thread count.

    Returns
    -------
    Dict[str, Any]
        ``compiled`` and ``supported`` (lists of ``"avx512"``, ``"avx2"``, ``"baseline"``, ...),
        ``active``, ``requested`` (the variable's value or None), ``chunk_elements`` and
        ``num_threads``.
    """
    return {
        "compiled": list(_core.compiled_isas()),
        "supported": list(_core.supported_isas()),
        "active": _core.active_isa(),
        "requested": os.environ.get("FASTADAPT_SIMD"),
        "chunk_elements": int(_core.CHUNK_ELEMENTS),
        "num_threads": _core.get_num_threads(),
    }


def set_num_threads(n: int) -> None:
    """Threads used by every fused kernel (the calling thread included).

    Parameters
    ----------
    n
        the thread count, an int >= 1 (``FASTADAPT_NUM_THREADS`` sets it at import).

    Raises
    ------
    TypeError
        when ``n`` is not an int.
    ValueError
        when ``n`` < 1.
    """
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"num_threads must be an int, got {type(n).__name__}")
    _core.set_num_threads(n)


def get_num_threads() -> int:
    """Threads used by the fused kernels (default: the CPUs this process may run on)."""
    return int(_core.get_num_threads())


def _apply_environment() -> None:
    """FASTADAPT_NUM_THREADS sets the thread count; a bad FASTADAPT_SIMD is
    reported (the core already ignored it)."""
    raw = os.environ.get("FASTADAPT_NUM_THREADS")
    if raw:
        try:
            n = int(raw)
            if n < 1:
                raise ValueError
            _core.set_num_threads(n)
        except ValueError:
            warnings.warn(f"FASTADAPT_NUM_THREADS={raw!r} is not a positive integer; using "
                          f"{_core.get_num_threads()} threads", RuntimeWarning, stacklevel=3)
    simd = os.environ.get("FASTADAPT_SIMD")
    if simd and simd != _core.active_isa():
        known = simd in _core.compiled_isas()
        why = "this CPU cannot run it" if known else "unknown path (expected avx512, avx2 or baseline)"
        warnings.warn(f"FASTADAPT_SIMD={simd!r} ignored: {why}; using {_core.active_isa()}",
                      RuntimeWarning, stacklevel=3)
