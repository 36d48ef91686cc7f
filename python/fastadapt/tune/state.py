"""The tuner's own checkpoint, so ``resume=`` continues after a crash.

A checkpoint directory holds:

    tuner.json                     the tuner: trials, decisions so far, random streams, jobs in flight
    states/trial-<id>-v<k>.pkl     each live trial's trainable state, version k
    states/trial-best-v<k>.pkl     the state behind the best evaluation so far

What is pickled and what is not:

- ``tuner.json`` is JSON (NumPy arrays, should a config hold one, inside it
  as base64 ``.npy`` read with ``allow_pickle=False``); random generators
  are their ``bit_generator.state`` dicts. Loading it never unpickles and so
  never runs code: a damaged or hostile ``tuner.json`` is a ``ValueError``
  naming the file and what is wrong, and nothing is changed.
- ``states/*.pkl`` are pickles of what the trainable's ``save()`` returned,
  the only pickles in a checkpoint. Unpickling can run code: load only
  checkpoints you wrote (resuming unpickles the states the tuner file names).

Every file is written through ``fastadapt._files`` (a fresh exclusive
temporary file in the same directory, fsync, then an atomic rename). The
tuner file is rewritten after every finished job and every decision. A
trial's new state is written under a new version *before* the tuner file
that names it, and older versions are deleted only after, so a crash at any
instant leaves a tuner file whose every state file exists and matches it.
"""

from __future__ import annotations

import base64
import io
import json
import math
import os
import pickle
import re
from typing import Any, Callable, Dict, Optional, Union

import numpy as np

from .._files import atomic_write, write_text

__all__ = ["CheckpointStore", "CHECKPOINT_FORMAT", "CHECKPOINT_VERSION", "encode", "decode", "encodable"]

PathLike = Union[str, "os.PathLike[str]"]

CHECKPOINT_FORMAT = "fastadapt.tune"
CHECKPOINT_VERSION = 1
_TUNER_FILE = "tuner.json"
_LEGACY_TUNER_FILE = "tuner.pkl"  # before the JSON format; never loaded (it is a pickle)
_STATES_DIR = "states"
_STATE_FILE = re.compile(r"^trial-(\w+)-v(\d+)\.pkl$")

# ---- JSON with types -----------------------------------------------------------
# Plain JSON loses what the tuner's state needs back exactly: int dict keys
# (trial ids), tuples, sets, non-finite floats, NumPy scalars and arrays,
# random generators. Each of those is a one-key object whose key starts with
# "$"; a dict with a "$" key or a non-string key is itself written as
# {"$dict": [[key, value], ...]}, so no user value is mistaken for a tag.
# Decoding builds only these types: nothing named in the file is imported or
# called.

_BIT_GENERATORS = {name: getattr(np.random, name) for name in ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")}
_TAGS = ("$float", "$tuple", "$set", "$dict", "$array", "$scalar", "$bytes", "$rng", "$object")


def _array_text(array: np.ndarray) -> str:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)  # object arrays refuse: they would need pickle
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _array_from_text(text: Any) -> np.ndarray:
    if not isinstance(text, str):
        raise ValueError("an array must be base64 text")
    return np.load(io.BytesIO(base64.b64decode(text.encode("ascii"), validate=True)), allow_pickle=False)


def encode(value: Any, objects: Optional[Dict[type, Callable[[Any], Dict[str, Any]]]] = None) -> Any:
    """``value`` as JSON-ready data that ``decode`` turns back into an
    equal value of the same types. ``objects``: class -> function giving a
    dict of its fields (decoded by a matching ``decode`` hook). TypeError
    naming the type for anything else (functions, arbitrary objects)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int) and type(value) is int:
        return value
    if type(value) is float:
        return value if math.isfinite(value) else {"$float": repr(value)}
    if isinstance(value, np.generic):
        if value.dtype.hasobject:
            raise TypeError(f"a NumPy scalar of dtype {value.dtype} cannot be stored without pickle")
        return {"$scalar": _array_text(np.asarray(value))}
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            raise TypeError(f"a NumPy array of dtype {value.dtype} cannot be stored without pickle")
        return {"$array": _array_text(value)}
    if isinstance(value, np.random.Generator):
        return {"$rng": encode(value.bit_generator.state)}
    if type(value) is list:
        return [encode(v, objects) for v in value]
    if type(value) is tuple:
        return {"$tuple": [encode(v, objects) for v in value]}
    if type(value) in (set, frozenset):
        items = sorted(value, key=repr) if not all(type(v) is int for v in value) else sorted(value)
        return {"$set": [encode(v, objects) for v in items], **({"frozen": True} if type(value) is frozenset else {})}
    if type(value) is dict:
        if all(type(k) is str and not k.startswith("$") for k in value):
            return {k: encode(v, objects) for k, v in value.items()}
        return {"$dict": [[encode(k, objects), encode(v, objects)] for k, v in value.items()]}
    if type(value) is bytes:
        return {"$bytes": base64.b64encode(value).decode("ascii")}
    if objects is not None and type(value) in objects:
        return {"$object": type(value).__name__, "fields": encode(objects[type(value)](value), objects)}
    raise TypeError(f"a {type(value).__module__}.{type(value).__qualname__} cannot be stored in JSON")


def decode(data: Any, objects: Optional[Dict[str, Callable[[Dict[str, Any]], Any]]] = None) -> Any:
    """The value ``encode`` wrote. ValueError (or TypeError/KeyError,
    which ``CheckpointStore.load`` reports as ValueError) for anything
    that is not such data. ``objects``: name -> function building the
    object from its decoded fields (it must check them)."""
    if data is None or isinstance(data, (bool, str, int, float)):
        return data
    if isinstance(data, list):
        return [decode(v, objects) for v in data]
    if not isinstance(data, dict):
        raise ValueError(f"unexpected JSON value {data!r:.60}")
    tags = [k for k in data if k.startswith("$")]
    if not tags:
        return {k: decode(v, objects) for k, v in data.items()}
    tag = tags[0]
    body = data[tag]
    extra = set(data) - {tag} - ({"fields"} if tag == "$object" else {"frozen"} if tag == "$set" else set())
    if len(tags) != 1 or tag not in _TAGS or extra:
        raise ValueError(f"unknown tagged value with keys {sorted(data)[:5]}")
    if tag == "$float":
        if body not in ("nan", "inf", "-inf"):
            raise ValueError(f"$float must be 'nan', 'inf' or '-inf', got {body!r:.40}")
        return float(body)
    if tag == "$tuple":
        return tuple(decode(_list(body, tag), objects))
    if tag == "$set":
        items = decode(_list(body, tag), objects)
        return frozenset(items) if data.get("frozen") is True else set(items)
    if tag == "$dict":
        out = {}
        for pair in _list(body, tag):
            if not isinstance(pair, list) or len(pair) != 2:
                raise ValueError("$dict entries must be [key, value] pairs")
            out[decode(pair[0], objects)] = decode(pair[1], objects)
        return out
    if tag == "$array":
        return _array_from_text(body)
    if tag == "$scalar":
        array = _array_from_text(body)
        if array.shape != ():
            raise ValueError("$scalar must hold a 0-d array")
        return array[()]
    if tag == "$bytes":
        if not isinstance(body, str):
            raise ValueError("$bytes must be base64 text")
        return base64.b64decode(body.encode("ascii"), validate=True)
    if tag == "$rng":
        state = decode(body)
        name = state.get("bit_generator") if isinstance(state, dict) else None
        if name not in _BIT_GENERATORS:
            raise ValueError(f"$rng names the bit generator {name!r}, not one of {sorted(_BIT_GENERATORS)}")
        bit_generator = _BIT_GENERATORS[name]()
        bit_generator.state = state
        return np.random.Generator(bit_generator)
    # "$object"
    if objects is None or body not in objects or not isinstance(data.get("fields"), dict):
        raise ValueError(f"unknown object type {body!r:.40}")
    return objects[body](decode(data["fields"], objects))


def _list(body: Any, tag: str) -> list:
    if not isinstance(body, list):
        raise ValueError(f"{tag} must hold a list")
    return body


def encodable(value: Any) -> Optional[str]:
    """None when ``encode`` can store ``value`` (and gives it back equal),
    else why not."""
    try:
        encode(value)
    except (TypeError, ValueError) as err:
        return str(err)
    return None


# ---- states pickled before the package had folders -------------------------------
# A state pickle names every class in it by the module that defined it when it
# was written. Those modules of the flat layout that moved into folders are
# found at their new places here, so that a checkpoint written then (a History
# or a controller in what save() returned) still resumes. (fastadapt.callbacks,
# .datasets, .models, .problems and .schedules kept their paths.)
_MOVED_PACKAGES = {"fastadapt.callback_library": "fastadapt.train.callbacks"}
_MOVED = {
    "fastadapt.batching": ("fastadapt.data.batching",),
    "fastadapt.benchmarks": ("fastadapt.cli.benchmarks",),
    "fastadapt.checkpoints": ("fastadapt.train.checkpoints",),
    "fastadapt.controllers": ("fastadapt.schedules.scheduler", "fastadapt.schedules.reduce_lr_on_plateau",
                              "fastadapt.schedules.early_stopping", "fastadapt.schedules.adaptive_lr",
                              "fastadapt.schedules._plateau", "fastadapt.schedules._control"),
    "fastadapt.diagnostics": ("fastadapt.train.diagnostics",),
    "fastadapt.history": ("fastadapt.train.history",),
    "fastadapt.lr_finder": ("fastadapt.schedules.lr_finder",),
    "fastadapt.mnist_example": ("fastadapt.data.mnist_example",),
    "fastadapt.plotting": ("fastadapt.train.plotting",),
    "fastadapt.progress": ("fastadapt.train.progress",),
    "fastadapt.trainer": ("fastadapt.train.trainer",),
    "fastadapt.tune.command": ("fastadapt.cli.tune",),
}


class _StateUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        for old, new in _MOVED_PACKAGES.items():
            if module == old or module.startswith(old + "."):
                module = new + module[len(old):]
        for candidate in _MOVED.get(module, ()):
            try:
                return super().find_class(candidate, name)
            except AttributeError:  # the old module's names went to several: the next one
                continue
        return super().find_class(module, name)


# ---- the directory --------------------------------------------------------------
class CheckpointStore:
    """Reads and writes one tuner's checkpoint directory."""

    def __init__(self, directory: PathLike):
        self.directory = os.fspath(directory)
        self._states_dir = os.path.join(self.directory, _STATES_DIR)

    @property
    def tuner_file(self) -> str:
        return os.path.join(self.directory, _TUNER_FILE)

    @property
    def legacy_tuner_file(self) -> str:
        return os.path.join(self.directory, _LEGACY_TUNER_FILE)

    def exists(self) -> bool:
        return os.path.isfile(self.tuner_file)

    def _state_path(self, trial_id: Any, version: int) -> str:
        return os.path.join(self._states_dir, f"trial-{trial_id}-v{version}.pkl")

    def write_state(self, trial_id: Any, version: int, state: Any) -> None:
        """Write a trainable's state (a pickle: it is whatever ``save()`` returned)."""
        os.makedirs(self._states_dir, exist_ok=True)
        with atomic_write(self._state_path(trial_id, version), "wb") as f:
            pickle.dump(state, f, protocol=pickle.HIGHEST_PROTOCOL)

    def read_state(self, trial_id: Any, version: int) -> Any:
        """Unpickle a trainable's state: ValueError naming the file when it
        is missing or cannot be unpickled. Load only checkpoints you wrote."""
        path = self._state_path(trial_id, version)
        try:
            with open(path, "rb") as f:
                return _StateUnpickler(f).load()
        except FileNotFoundError:
            raise ValueError(f"{self.tuner_file} names the state file {path}, which is missing; the checkpoint "
                             f"was edited or copied partially (pass resume=False to start over)") from None
        except Exception as err:  # truncated or damaged: pickle raises many kinds (EOFError, UnpicklingError, ...)
            raise ValueError(f"the state file {path} (named by {self.tuner_file}) cannot be unpickled "
                             f"({type(err).__name__}: {err}); it is damaged (pass resume=False to start "
                             f"over)") from None

    def save(self, payload: Dict[str, Any], live_versions: Dict[Any, int],
             objects: Optional[Dict[type, Callable[[Any], Dict[str, Any]]]] = None) -> None:
        """Write the tuner file, then delete state files it no longer names
        (``live_versions``: state key -> its current version)."""
        document = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **payload}
        # Encoded before anything is written: a value that cannot be stored leaves the old file in place.
        text = json.dumps(encode(document, objects), allow_nan=False, separators=(",", ":"))
        os.makedirs(self.directory, exist_ok=True)
        write_text(self.tuner_file, text + "\n")
        if not os.path.isdir(self._states_dir):
            return
        live = {str(key): version for key, version in live_versions.items()}
        for name in os.listdir(self._states_dir):
            match = _STATE_FILE.match(name)
            if match and live.get(match.group(1)) != int(match.group(2)):
                os.remove(os.path.join(self._states_dir, name))

    def load(self, objects: Optional[Dict[str, Callable[[Dict[str, Any]], Any]]] = None) -> Dict[str, Any]:
        """The tuner file's document (format and version checked), or one
        ValueError naming the file and what is wrong. Never unpickles."""
        path = self.tuner_file
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except OSError as err:
            raise ValueError(f"tuner checkpoint {path} cannot be read: {err.strerror or err}") from None
        if not raw.strip():
            raise ValueError(f"tuner checkpoint {path} is empty (a crash while it was first written, or the file "
                             f"was truncated); pass resume=False to start over")
        try:
            data = json.loads(raw.decode("utf-8"))
        except RecursionError:
            raise ValueError(f"tuner checkpoint {path} is nested too deeply to be a fastadapt checkpoint") from None
        except (UnicodeDecodeError, ValueError) as err:
            raise ValueError(f"tuner checkpoint {path} is not valid JSON ({err}); it is truncated or damaged "
                             f"(pass resume=False to start over)") from None
        if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{path} is not a fastadapt tuner checkpoint (no \"format\": "
                             f"\"{CHECKPOINT_FORMAT}\")")
        version = data.get("version")
        # Exactly the int: JSON's 1.0 and true compare equal to 1 in Python but are not this format's version.
        if type(version) is not int or version != CHECKPOINT_VERSION:
            raise ValueError(f"{path} has checkpoint version {version!r}; this fastadapt reads version "
                             f"{CHECKPOINT_VERSION} (an integer)")
        try:
            document = decode(data, objects)
        except RecursionError:
            raise ValueError(f"tuner checkpoint {path} is nested too deeply to be a fastadapt checkpoint") from None
        except Exception as err:  # decoding builds plain data only, so any failure means a damaged file
            raise ValueError(f"tuner checkpoint {path} holds a value that is not valid: {err}") from None
        return document
