"""What a training run recorded, epoch by epoch, and its JSON file.

Like Keras's ``History``: ``history.epoch`` is the list of epoch indices and
``history.history`` maps each logged name (``loss``, ``val_loss``, ``lr``,
``grad_norm``, ...) to one value per epoch. ``history.info`` holds run-level
values (``test_accuracy``, the configuration, where training stopped).

JSON layout (strict JSON, readable by any tool):

    {"format": "fastadapt.history", "version": 1,
     "epoch": [0, 1, ...],
     "history": {"loss": [2.3, 0.41, ...], "val_loss": [...], ...},
     "test_accuracy": 0.93, ...}          # the info entries, at the top level

A value a run did not log for some epoch is ``null`` (``None`` in Python);
non-finite numbers are the strings ``"nan"``, ``"inf"`` and ``"-inf"``
(plain JSON has no NaN), read back as floats.

Epoch numbers: ``epoch`` holds 0-based indices, as Keras's ``History.epoch``
does, and so does every field of a file that names an epoch (``best_epoch``
of ``fastadapt mnist``, a finding's ``epochs``). Text for people counts from
1, as the progress display does (``epoch 1/20``): epoch index ``i`` is
"epoch ``i + 1``", and a plot's x axis of epochs completed puts it at
``i + 1``.

Hyperparameters (as ``Trainer.fit`` logs them): ``lr`` (and ``betas0``,
``momentum``, ... once they move) is the value the epoch's optimizer steps
used, averaged over its steps, never the value left standing at the end of
the epoch (a per-step schedule has by then moved it on to the next epoch's
first value; ReduceLROnPlateau's cut at epoch end belongs to the next
epoch). From the first epoch in which it varied between steps, ``lr_min``
and ``lr_max`` hold its range within each epoch (earlier epochs: their
constant value).

Learned step sizes (a learning-rate-free rule's, as ``Trainer.fit`` logs
them): ``lr_estimate`` (the effective step size, ``opt.lr_estimate``) and
``adapted/<name>`` for each value the rule learns (``opt.adapted``:
Prodigy's ``adapted/d``), each the mean over the epoch's steps of the value
read after every step, with ``<key>_min`` / ``<key>_max`` as for the lr.
"""

from __future__ import annotations

import json
import math
import numbers
import os
from typing import Any, Dict, Iterator, List, Mapping, Optional, Union

import numpy as np

from .._files import write_text

__all__ = ["History"]

FORMAT = "fastadapt.history"
VERSION = 1
_RESERVED = ("format", "version", "epoch", "history")
_NONFINITE_OUT = {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf")}

Value = Optional[float]


def _as_value(name: str, value: Any) -> Value:
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        raise TypeError(f"history values must be real numbers or None; {name!r} got "
                        f"{type(value).__name__} {value!r}")
    return float(value)


def _encode(value: Value) -> Any:
    if value is None or math.isfinite(value):
        return value
    return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")


def _decode(name: str, value: Any) -> Value:
    if isinstance(value, str):
        if value not in _NONFINITE_OUT:
            raise ValueError(f"history[{name!r}]: unexpected string {value!r} (only 'nan', 'inf', '-inf')")
        return _NONFINITE_OUT[value]
    return _as_value(name, value)


def _plain(value: Any) -> Any:
    """Info values as JSON-ready plain data (NumPy scalars/arrays included)."""
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (numbers.Integral, np.integer)):
        return int(value)
    if isinstance(value, (numbers.Real, np.floating)):
        return _encode(float(value))
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, str):
        return value
    raise TypeError(f"history.info values must be plain data (numbers, strings, lists, dicts), got "
                    f"{type(value).__name__} {value!r}")


class History:
    """Per-epoch logs of a run (``history.history[name][i]`` belongs to
    ``history.epoch[i]``) plus run-level ``info``.

    ``history["loss"]`` is ``history.history["loss"]``; ``len(history)`` is the
    number of recorded epochs; ``history.last("val_loss")`` the latest value.
    """

    def __init__(self) -> None:
        self.epoch: List[int] = []
        self.history: Dict[str, List[Value]] = {}
        self.info: Dict[str, Any] = {}

    # ---- recording ------------------------------------------------------------
    def append(self, epoch: int, logs: Mapping[str, Any]) -> None:
        """Record epoch ``epoch``. A name first seen now gets ``None`` for the
        earlier epochs; a known name missing from ``logs`` gets ``None`` now."""
        if isinstance(epoch, bool) or not isinstance(epoch, numbers.Integral):
            raise TypeError(f"epoch must be an int, got {type(epoch).__name__} {epoch!r}")
        row = {str(k): _as_value(str(k), v) for k, v in logs.items()}
        n = len(self.epoch)
        for name in row:
            if name not in self.history:
                self.history[name] = [None] * n
        for name, values in self.history.items():
            values.append(row.get(name))
        self.epoch.append(int(epoch))

    def update_last(self, logs: Mapping[str, Any]) -> None:
        """Add or overwrite values of the latest epoch (what callbacks added to its logs)."""
        if not self.epoch:
            raise ValueError("update_last needs a recorded epoch; call append first")
        n = len(self.epoch)
        for k, v in logs.items():
            name = str(k)
            if name not in self.history:
                self.history[name] = [None] * n
            self.history[name][-1] = _as_value(name, v)

    def backfill(self, name: str, value: Any) -> None:
        """Give ``name`` the value ``value`` in every recorded epoch that lacks it
        (a hyperparameter that was constant until a schedule started moving it)."""
        v = _as_value(name, value)
        values = self.history.setdefault(name, [None] * len(self.epoch))
        self.history[name] = [v if old is None else old for old in values]

    def backfill_from(self, name: str, source: str) -> None:
        """Give ``name``, in every recorded epoch that lacks it, the value
        ``source`` has there (``lr_min`` / ``lr_max`` first logged when the lr
        first varied within an epoch: before, each epoch's lr was constant)."""
        values = self.history.setdefault(name, [None] * len(self.epoch))
        self.history[name] = [v if v is not None else s for v, s in zip(values, self[source])]

    # ---- reading ----------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.epoch)

    def __getitem__(self, name: str) -> List[Value]:
        try:
            return self.history[name]
        except KeyError:
            raise KeyError(f"history has no {name!r}; it has {', '.join(sorted(self.history)) or 'nothing'}") \
                from None

    def __contains__(self, name: object) -> bool:
        return name in self.history

    def __iter__(self) -> Iterator[str]:
        return iter(self.history)

    def keys(self):
        """The recorded names (``"loss"``, ``"val_loss"``, ``"lr"``, ...), in the
        order they were first logged; ``history[name]`` is each one's list."""
        return self.history.keys()

    def array(self, name: str) -> np.ndarray:
        """``history[name]`` as a float64 array, missing values as NaN."""
        return np.array([np.nan if v is None else v for v in self[name]], dtype=np.float64)

    def last(self, name: str) -> Value:
        """The latest value of ``name`` (None when the last epoch lacks it)."""
        values = self[name]
        return values[-1] if values else None

    def rows(self) -> List[Dict[str, Value]]:
        """One dict per epoch: ``{"epoch": e, "loss": ..., ...}``."""
        return [dict({"epoch": e}, **{k: v[i] for k, v in self.history.items()}) for i, e in enumerate(self.epoch)]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, History):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"History(epochs={len(self)}, keys={sorted(self.history)!r})"

    # ---- plain data and JSON ----------------------------------------------------
    def to_dict(self) -> Dict[str, Any]:
        """The JSON layout as a dict (strict-JSON values)."""
        clash = [k for k in self.info if k in _RESERVED]
        if clash:
            raise ValueError(f"history.info must not use the reserved names {list(_RESERVED)}; rename {clash[0]!r}")
        out: Dict[str, Any] = {"format": FORMAT, "version": VERSION, "epoch": list(self.epoch),
                               "history": {k: [_encode(v) for v in vs] for k, vs in self.history.items()}}
        out.update(_plain(self.info))
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "History":
        """Inverse of [`to_dict`][fastadapt.History.to_dict] (also accepts Keras's plain
        ``{name: [values]}``)."""
        if not isinstance(data, Mapping):
            raise TypeError(f"expected a dict, got {type(data).__name__}")
        h = cls()
        if "history" not in data or "epoch" not in data:
            # Keras's model.fit(...).history: {name: [one value per epoch]}
            if not all(isinstance(v, (list, tuple)) for v in data.values()) or \
                    len({len(v) for v in data.values()}) > 1:
                raise ValueError("expected fastadapt's history layout (History.to_dict) or a dict of "
                                 "equally long lists (Keras's history.history)")
            n = len(next(iter(data.values()))) if data else 0
            h.epoch = list(range(n))
            h.history = {str(k): [_decode(str(k), v) for v in vs] for k, vs in data.items()}
            return h
        version = data.get("version", VERSION)
        # Exactly the int 1: 1.0 and True compare equal to 1 but are not what save writes.
        if data.get("format", FORMAT) != FORMAT or type(version) is not int or version != VERSION:
            raise ValueError(f"unsupported history format {data.get('format')!r} version {version!r}; "
                             f"expected {FORMAT!r} version {VERSION} (an int)")
        epochs = data["epoch"]
        if not isinstance(epochs, list) or not all(isinstance(e, int) and not isinstance(e, bool) for e in epochs):
            raise TypeError("history 'epoch' must be a list of ints")
        logged = data["history"]
        if not isinstance(logged, Mapping):
            raise TypeError("history 'history' must be a dict of lists")
        for name, values in logged.items():
            if not isinstance(values, list) or len(values) != len(epochs):
                raise ValueError(f"history[{name!r}] must be a list with one value per epoch ({len(epochs)})")
        h.epoch = list(epochs)
        h.history = {str(k): [_decode(str(k), v) for v in vs] for k, vs in logged.items()}
        h.info = {k: v for k, v in data.items() if k not in _RESERVED}
        return h

    def save(self, path: Union[str, "os.PathLike[str]"]) -> None:
        """Write the JSON file (strict JSON), atomically: a failure (an info
        value that is not plain data, a full disk, Ctrl-C) leaves the file that
        was there before."""
        text = json.dumps(self.to_dict(), indent=1, allow_nan=False) + "\n"
        write_text(path, text)

    @classmethod
    def load(cls, path: Union[str, "os.PathLike[str]"]) -> "History":
        """Read a file written by [`save`][fastadapt.History.save] (or Keras's history dict as JSON).

        A file that is not such a history (empty, cut short, not UTF-8 or not
        JSON, nested too deeply, the wrong layout or version) is one
        ValueError naming the file and what is wrong; a missing or unreadable
        file is the OSError ``open`` raises.
        """
        name = os.fspath(path)
        with open(name, "rb") as f:
            raw = f.read()
        try:
            data = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as err:
            raise ValueError(f"history file {name!r} is not UTF-8 text ({err.reason} at byte {err.start}); "
                             f"expected a JSON file written by History.save") from None
        except json.JSONDecodeError as err:
            what = "is empty" if not raw.strip() else f"is not valid JSON ({err.msg} at line {err.lineno} " \
                                                     f"column {err.colno})"
            raise ValueError(f"history file {name!r} {what}; expected a JSON file written by History.save") \
                from None
        except RecursionError:
            raise ValueError(f"history file {name!r} nests JSON too deeply to be a history; expected a JSON file "
                             f"written by History.save") from None
        try:
            return cls.from_dict(data)
        except (TypeError, ValueError) as err:
            raise ValueError(f"history file {name!r}: {err}") from None
