"""Checkpoint files: nested plain data with NumPy arrays, without pickle.

A state (``trainer.state_dict()``, ``opt.state_dict()``, a callback's state)
is numbers, strings, None, lists, tuples, string-keyed dicts and NumPy
arrays. It is written as one ``.npz`` file: the arrays as its members, the
rest as a JSON document that points at them. Loading never unpickles
(``allow_pickle=False``), so a checkpoint from elsewhere cannot run code,
and it gives back exactly what was saved (floats round-trip through JSON's
shortest repr; tuples stay tuples; NaN and infinities are kept).
"""

from __future__ import annotations

import json
import numbers
import os
import zipfile
import zlib
from typing import Any, Dict, Union

import numpy as np

from .._files import atomic_write

__all__ = ["save_state", "load_state"]

PathLike = Union[str, "os.PathLike[str]"]

_META = "__state__"
_ARRAY, _TUPLE = "__ndarray__", "__tuple__"
# .npy has no code for NumPy's extension dtypes: it writes ml_dtypes.bfloat16 as
# raw 2-byte voids ('|V2'). Such an array is saved as its bits (uint16) with the
# dtype's name beside the member, and viewed back on load. Only these names.
_DTYPE = "__dtype__"
_EXTENSION_DTYPES = ("bfloat16",)
_MAX_DEPTH = 200  # far deeper than any real state


def _encode(value: Any, arrays: Dict[str, np.ndarray], where: str) -> Any:
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            raise TypeError(f"{where}: object arrays cannot be saved without pickle; store plain numbers")
        key = f"a{len(arrays)}"
        if value.dtype.name in _EXTENSION_DTYPES and value.dtype.itemsize == 2:
            arrays[key] = value.view(np.uint16)
            return {_ARRAY: key, _DTYPE: value.dtype.name}
        if value.dtype.kind == "V" and not value.dtype.names:
            raise TypeError(f"{where}: arrays of dtype {value.dtype} cannot be saved (.npy stores them as raw "
                            f"bytes); save a standard NumPy dtype or bfloat16")
        arrays[key] = value
        return {_ARRAY: key}
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"{where}: dict keys must be strings to be saved, got {type(k).__name__} {k!r}")
            out[k] = _encode(v, arrays, f"{where}[{k!r}]")
        if (len(out) == 1 and (_ARRAY in out or _TUPLE in out)) or set(out) == {_ARRAY, _DTYPE}:
            raise ValueError(f"{where}: a dict whose keys are {', '.join(map(repr, out))} cannot be saved "
                             f"(reserved)")
        return out
    if isinstance(value, tuple):
        return {_TUPLE: [_encode(v, arrays, f"{where}[{i}]") for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, arrays, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (numbers.Integral, np.integer)):
        return int(value)
    if isinstance(value, (numbers.Real, np.floating)):
        return float(value)
    if value is None or isinstance(value, str):
        return value
    raise TypeError(f"{where}: cannot save {type(value).__name__} {value!r}; a state holds numbers, strings, "
                    f"None, lists, tuples, dicts and NumPy arrays")


def save_state(path: PathLike, state: Any) -> None:
    """Write ``state`` to ``path`` (an ``.npz`` file; the name is used as
    given). The new file is written to an exclusive temporary file beside
    ``path`` and renamed over it once complete (``fastadapt._files``), so a
    crash, a second writer or a planted symlink never leaves a torn file."""
    arrays: Dict[str, np.ndarray] = {}
    document = json.dumps(_encode(state, arrays, "state"))
    with atomic_write(path, "wb") as f:
        # (numpy's stubs fear a member named allow_pickle; ours are __state__, a0, a1, ...)
        np.savez(f, **{_META: np.array(document)}, **arrays)  # type: ignore[arg-type]


class _Corrupt(Exception):
    """What is wrong with a checkpoint's document (becomes one ValueError)."""


def _member(archive: Any, member: str) -> np.ndarray:
    """One array of the archive; a member that is not a .npy array (NpzFile
    hands back raw bytes for those) or holds objects is corrupt."""
    try:
        value = archive[member]
    except ValueError as e:
        if "pickle" in str(e):
            raise _Corrupt(f"its member {member!r} is an object array, which would need pickle") from None
        raise
    if not isinstance(value, np.ndarray):
        raise _Corrupt(f"its member {member!r} is not a .npy array")
    return value


def _decode_checked(value: Any, arrays: Dict[str, np.ndarray], depth: int = 0) -> Any:
    # Depth-limited: a hostile document nested 100 000 deep must fail with a
    # message, not a RecursionError.
    if depth > _MAX_DEPTH:
        raise _Corrupt(f"its document is nested deeper than {_MAX_DEPTH} levels")
    if isinstance(value, dict):
        if len(value) == 1 and _ARRAY in value:
            key = value[_ARRAY]
            if not isinstance(key, str) or key not in arrays:
                raise _Corrupt(f"its document refers to an array {key!r} that the file does not contain")
            return arrays[key]
        if set(value) == {_ARRAY, _DTYPE}:
            key, name = value[_ARRAY], value[_DTYPE]
            if not isinstance(key, str) or key not in arrays:
                raise _Corrupt(f"its document refers to an array {key!r} that the file does not contain")
            if name not in _EXTENSION_DTYPES:
                raise _Corrupt(f"its array {key!r} has an unknown dtype {name!r}")
            bits = arrays[key]
            if bits.dtype != np.uint16:
                raise _Corrupt(f"its {name} array {key!r} is stored as {bits.dtype}, not as its uint16 bits")
            return bits.view(_extension_dtype(name))
        if len(value) == 1 and _TUPLE in value:
            items = value[_TUPLE]
            if not isinstance(items, list):
                raise _Corrupt(f"its document has a malformed tuple ({type(items).__name__})")
            return tuple(_decode_checked(v, arrays, depth + 1) for v in items)
        return {k: _decode_checked(v, arrays, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode_checked(v, arrays, depth + 1) for v in value]
    return value


def _extension_dtype(name: str) -> np.dtype:
    try:
        import ml_dtypes
    except ImportError:
        raise _Corrupt(f"it holds {name} arrays, which need the ml_dtypes package (pip install ml_dtypes, or "
                       f"fastadapt's 'lowp' extra)") from None
    return np.dtype(getattr(ml_dtypes, name))


def load_state(path: PathLike) -> Any:
    """Read a file written by ``save_state``. Anything else (an empty or
    truncated file, a plain ``.npy``, a corrupt archive, member or document)
    is one ``ValueError`` naming the file and what is wrong; nothing is
    executed."""
    name = os.fspath(path)
    try:
        # Our own file object, closed whatever np.load makes of the bytes.
        with open(name, "rb") as f:
            try:
                loaded = np.load(f, allow_pickle=False)
            except ValueError as e:
                if "pickle" not in str(e):
                    raise
                # np.load takes any unknown header for a pickle (refused here).
                raise _Corrupt("its header is neither a .npz archive nor a .npy array (pickles are never "
                               "loaded)") from None
            if not hasattr(loaded, "files"):  # an ndarray: np.load read a plain .npy
                raise _Corrupt("it is a single .npy array, not a checkpoint archive (.npz)")
            with loaded as archive:
                if _META not in archive.files:
                    raise _Corrupt(f"it has no {_META!r} member")
                members = {n: _member(archive, n) for n in archive.files}
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except _Corrupt as e:
        raise ValueError(f"{name} is not a valid fastadapt checkpoint: {e}") from None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError, zlib.error, NotImplementedError) as e:
        # np.load's and zipfile's own errors for an empty file, a truncated or
        # corrupt archive, an unsupported compression method.
        raise ValueError(f"{name} is not a valid fastadapt checkpoint (a .npz written by save_state): "
                         f"{type(e).__name__}: {e}") from None
    meta = members.pop(_META)
    if meta.dtype.kind != "U" or meta.shape != ():
        raise ValueError(f"{name} is not a valid fastadapt checkpoint: its {_META!r} member is not a JSON string")
    arrays = members
    try:
        document = json.loads(str(meta))
    except RecursionError:
        raise ValueError(f"{name} is not a valid fastadapt checkpoint: its JSON document is nested too "
                         f"deeply") from None
    except ValueError as e:
        raise ValueError(f"{name} is not a valid fastadapt checkpoint: its document is not valid JSON "
                         f"({e})") from None
    try:
        return _decode_checked(document, arrays)
    except _Corrupt as e:
        raise ValueError(f"{name} is not a valid fastadapt checkpoint: {e}") from None
