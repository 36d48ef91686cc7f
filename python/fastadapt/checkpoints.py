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
from typing import Any, Dict, Union

import numpy as np

__all__ = ["save_state", "load_state"]

PathLike = Union[str, "os.PathLike[str]"]

_META = "__state__"
_ARRAY, _TUPLE = "__ndarray__", "__tuple__"


def _encode(value: Any, arrays: Dict[str, np.ndarray], where: str) -> Any:
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            raise TypeError(f"{where}: object arrays cannot be saved without pickle; store plain numbers")
        key = f"a{len(arrays)}"
        arrays[key] = value
        return {_ARRAY: key}
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"{where}: dict keys must be strings to be saved, got {type(k).__name__} {k!r}")
            out[k] = _encode(v, arrays, f"{where}[{k!r}]")
        if len(out) == 1 and (_ARRAY in out or _TUPLE in out):
            raise ValueError(f"{where}: a dict whose only key is {next(iter(out))!r} cannot be saved (reserved)")
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


def _decode(value: Any, arrays: Any) -> Any:
    if isinstance(value, dict):
        if len(value) == 1 and _ARRAY in value:
            return arrays[value[_ARRAY]]
        if len(value) == 1 and _TUPLE in value:
            return tuple(_decode(v, arrays) for v in value[_TUPLE])
        return {k: _decode(v, arrays) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v, arrays) for v in value]
    return value


def save_state(path: PathLike, state: Any) -> None:
    """Write ``state`` to ``path`` (an ``.npz`` file; the name is used as
    given). The previous file is replaced only once the new one is complete."""
    arrays: Dict[str, np.ndarray] = {}
    document = json.dumps(_encode(state, arrays, "state"))
    target = os.fspath(path)
    partial = target + ".partial"
    with open(partial, "wb") as f:
        np.savez(f, **{_META: np.array(document)}, **arrays)
    os.replace(partial, target)


def load_state(path: PathLike) -> Any:
    """Read a file written by :func:`save_state`."""
    with np.load(os.fspath(path), allow_pickle=False) as archive:
        if _META not in archive.files:
            raise ValueError(f"{os.fspath(path)} is not a fastadapt checkpoint (no {_META!r} member)")
        arrays = {name: archive[name] for name in archive.files if name != _META}
        return _decode(json.loads(str(archive[_META])), arrays)
