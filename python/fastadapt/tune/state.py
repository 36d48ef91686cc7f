"""The tuner's own checkpoint, so ``resume=`` continues after a crash.

A checkpoint directory holds::

    tuner.pkl                      the tuner: trials, decisions so far, random streams, jobs in flight
    states/trial-<id>-v<k>.pkl     each live trial's trainable state, version k
    states/trial-best-v<k>.pkl     the state behind the best evaluation so far

The tuner file is rewritten (atomically: a temporary file, then a rename)
after every finished job and every decision. A trial's new state is written
under a new version *before* the tuner file that names it, and older
versions are deleted only after, so a crash at any instant leaves a tuner
file whose every state file exists and matches it.

The files are pickles: they hold the trainables' states as ``save()``
returned them. Load only checkpoints you wrote.
"""

from __future__ import annotations

import os
import pickle
import re
from typing import Any, Dict, Union

__all__ = ["CheckpointStore", "CHECKPOINT_FORMAT", "CHECKPOINT_VERSION"]

PathLike = Union[str, "os.PathLike[str]"]

CHECKPOINT_FORMAT = "fastadapt.tune"
CHECKPOINT_VERSION = 1
_TUNER_FILE = "tuner.pkl"
_STATES_DIR = "states"
_STATE_FILE = re.compile(r"^trial-(\w+)-v(\d+)\.pkl$")


def _write_atomically(path: str, payload: Any) -> None:
    partial = path + ".partial"
    with open(partial, "wb") as f:
        pickle.dump(payload, f, protocol=pickle.HIGHEST_PROTOCOL)
        f.flush()
        os.fsync(f.fileno())
    os.replace(partial, path)


class CheckpointStore:
    """Reads and writes one tuner's checkpoint directory."""

    def __init__(self, directory: PathLike):
        self.directory = os.fspath(directory)
        self._states_dir = os.path.join(self.directory, _STATES_DIR)

    @property
    def tuner_file(self) -> str:
        return os.path.join(self.directory, _TUNER_FILE)

    def exists(self) -> bool:
        return os.path.isfile(self.tuner_file)

    def _state_path(self, trial_id: Any, version: int) -> str:
        return os.path.join(self._states_dir, f"trial-{trial_id}-v{version}.pkl")

    def write_state(self, trial_id: Any, version: int, state: Any) -> None:
        os.makedirs(self._states_dir, exist_ok=True)
        _write_atomically(self._state_path(trial_id, version), state)

    def read_state(self, trial_id: Any, version: int) -> Any:
        path = self._state_path(trial_id, version)
        try:
            with open(path, "rb") as f:
                return pickle.load(f)
        except FileNotFoundError:
            raise FileNotFoundError(f"checkpoint {self.directory!r} names the state file {path!r}, which is "
                                    f"missing; the checkpoint was edited or copied partially") from None

    def save(self, payload: Dict[str, Any], live_versions: Dict[Any, int]) -> None:
        """Write the tuner file, then delete state files it no longer names
        (``live_versions``: state key -> its current version)."""
        os.makedirs(self.directory, exist_ok=True)
        document = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **payload}
        _write_atomically(self.tuner_file, document)
        if not os.path.isdir(self._states_dir):
            return
        live = {str(key): version for key, version in live_versions.items()}
        for name in os.listdir(self._states_dir):
            match = _STATE_FILE.match(name)
            if match and live.get(match.group(1)) != int(match.group(2)):
                os.remove(os.path.join(self._states_dir, name))

    def load(self) -> Dict[str, Any]:
        with open(self.tuner_file, "rb") as f:
            document = pickle.load(f)
        if not isinstance(document, dict) or document.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{self.tuner_file} is not a fastadapt tuner checkpoint")
        if document.get("version") != CHECKPOINT_VERSION:
            raise ValueError(f"{self.tuner_file} has checkpoint version {document.get('version')!r}; this "
                             f"fastadapt reads version {CHECKPOINT_VERSION}")
        return document
