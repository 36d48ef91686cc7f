"""CSVLogger: each epoch's logs as a row of a CSV file (Keras's
``keras.callbacks.CSVLogger``)."""

from __future__ import annotations

import csv
import io
import math
import os
from typing import Any, Dict, List, Mapping

from ..._files import check_writable_file, write_text
from ._common import check_state_keys, path_arg
from .base import Callback

__all__ = ["CSVLogger"]

MISSING = "NA"  # Keras's mark for a key an epoch did not log


def _cell(value: Any) -> str:
    if value is None:
        return MISSING
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)  # shortest round-trip repr; nan, inf
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_cell(v) for v in value) + "]"  # Keras joins iterables the same way
    return str(value)


class CSVLogger(Callback):
    """Write ``epoch`` (0-based, as Keras writes it) and every key of each
    epoch's logs to ``filename``, one row per epoch.

    The columns are the first epoch's keys in sorted order; a key that first
    appears later (``lr_min`` once the lr varies within an epoch) gets a new
    column, and rows without a value hold ``NA``. The file is rewritten
    whole, atomically, after each epoch (``fastadapt._files``), so a crash
    never leaves a torn row and the columns stay aligned.

    The rows travel in ``state_dict``: a run resumed from a checkpoint
    (``BackupAndRestore``, ``trainer.load_checkpoint``) writes exactly the
    rows of the epochs before the checkpoint, then its own.

    Parameters
    ----------
    filename
        the CSV file (its directory must exist).
    separator
        the field separator (one character).
    append
        keep the rows already in the file (Keras's ``append``; a header that differs is merged as
        above); False starts it anew at every ``fit``.
    """

    def __init__(self, filename: Any, separator: str = ",", append: bool = False):
        self.filename = path_arg("CSVLogger", "filename", filename)
        if not isinstance(separator, str) or len(separator) != 1 or separator in "\r\n\"":
            raise ValueError(f"CSVLogger(separator={separator!r}) must be one character other than a quote or "
                             f"a line break")
        if not isinstance(append, bool):
            raise TypeError(f"CSVLogger(append={append!r}) must be True or False")
        self.separator = separator
        self.append = append
        self.keys: List[str] = []           # the columns after 'epoch'
        self.rows: List[Dict[str, str]] = []  # the written cells, by column
        self._restored = False               # rows came from load_state_dict: on_train_begin keeps them

    def on_train_begin(self, trainer: Any) -> None:
        check_writable_file(self.filename, "CSVLogger filename")  # before the first epoch, not after it
        if self._restored:
            self._restored = False
            return
        self.keys, self.rows = [], []
        if self.append and os.path.exists(self.filename):
            self._read_existing()

    def _read_existing(self) -> None:
        with open(self.filename, newline="", encoding="utf-8") as f:
            reader = csv.reader(f, delimiter=self.separator)
            header = next(reader, None)
            if header is None:  # an empty file: nothing to keep
                return
            if not header or header[0] != "epoch":
                raise ValueError(f"CSVLogger(append=True): {self.filename!r} does not start with an 'epoch' column "
                                 f"(its header: {header}); it is not a CSVLogger file with separator "
                                 f"{self.separator!r}, so pass another filename or append=False")
            self.keys = header[1:]
            for line in reader:
                if line:
                    self.rows.append(dict(zip(header, line)))

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any], trainer: Any) -> None:
        self._restored = False  # restored mid-fit (BackupAndRestore after this callback): used up now
        new = sorted(k for k in logs if isinstance(k, str) and k not in self.keys and k != "epoch")
        self.keys.extend(new)
        row = {"epoch": str(epoch)}
        row.update({k: _cell(v) for k, v in logs.items() if isinstance(k, str) and k != "epoch"})
        self.rows.append(row)
        self._write()

    def _write(self) -> None:
        buffer = io.StringIO()
        writer = csv.writer(buffer, delimiter=self.separator, lineterminator="\n")
        columns = ["epoch", *self.keys]
        writer.writerow(columns)
        for row in self.rows:
            writer.writerow([row.get(c, MISSING) for c in columns])
        write_text(self.filename, buffer.getvalue())

    def state_dict(self) -> Dict[str, Any]:
        """``{"keys": [...], "rows": [...]}``: the columns and every row written so
        far (as cell text), so a resumed run rewrites exactly the rows of the
        epochs before its checkpoint."""
        return {"keys": list(self.keys), "rows": [dict(r) for r in self.rows]}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore what [`state_dict`][fastadapt.CSVLogger.state_dict] returned; the next write starts from
        these rows instead of the file's.

        Raises
        ------
        ValueError
            when a key is missing or extra, or the columns or rows are not lists
            of strings and of ``{column: text}`` dicts.
        """
        check_state_keys("CSVLogger", state_dict, ("keys", "rows"))
        keys, rows = state_dict["keys"], state_dict["rows"]
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise ValueError("CSVLogger state_dict['keys'] must be a list of column names")
        if not isinstance(rows, list) or not all(
                isinstance(r, Mapping) and all(isinstance(k, str) and isinstance(v, str) for k, v in r.items())
                for r in rows):
            raise ValueError("CSVLogger state_dict['rows'] must be a list of {column: cell text} dicts")
        self.keys, self.rows = list(keys), [dict(r) for r in rows]
        self._restored = True

    def __repr__(self) -> str:
        return f"CSVLogger({self.filename!r}, separator={self.separator!r}, append={self.append})"

