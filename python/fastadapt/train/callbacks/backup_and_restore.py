"""BackupAndRestore: a crashed ``fit`` rerun resumes where it stopped
(Keras's ``keras.callbacks.BackupAndRestore``)."""

from __future__ import annotations

import contextlib
import os
from typing import Any, Dict, Optional

from ..._files import check_writable_dir
from ._common import path_arg
from .base import Callback

__all__ = ["BackupAndRestore"]

BACKUP_FILE = "backup.npz"


class BackupAndRestore(Callback):
    """Back the run up after every epoch; when the same ``fit`` is run again
    after a crash (an exception, a kill, a lost machine), restore the backup
    and go on from the epoch after it.

    The backup is the trainer's own checkpoint (``Trainer.save_checkpoint``:
    params, optimizer state, every callback's state, the history and the
    counters), written atomically to ``backup_dir/backup.npz`` once each
    epoch and all its callbacks are done. At ``on_train_begin`` an existing
    backup is loaded (``Trainer.load_checkpoint``, which checks it belongs
    to a trainer with the same params and callbacks), and ``fit`` then runs
    only the epochs the interrupted call had left: rerunning
    ``trainer.fit(data, epochs=10)`` on a fresh trainer after a crash in
    epoch 7 runs epochs 7 to 10 (1-based), and the result is the run that
    was not interrupted. When ``fit`` finishes (early stopping included)
    the backup is deleted, as Keras deletes it, unless
    ``delete_checkpoint=False``; an exception leaves it in place.

    Works with [`fastadapt.Trainer`][fastadapt.Trainer]; DataParallel has the same built in
    (``fit(checkpoint_dir=..., resume=True)``).

    Parameters
    ----------
    backup_dir
        a directory for the backup (created if missing). Use one per run: two runs sharing it would
        restore each other's state.
    delete_checkpoint
        delete the backup when ``fit`` finishes.
    """

    def __init__(self, backup_dir: Any, delete_checkpoint: bool = True):
        self.backup_dir = path_arg("BackupAndRestore", "backup_dir", backup_dir)
        if not isinstance(delete_checkpoint, bool):
            raise TypeError(f"BackupAndRestore(delete_checkpoint={delete_checkpoint!r}) must be True or False")
        self.delete_checkpoint = delete_checkpoint
        self.restored_epoch: Optional[int] = None  # the trainer.epoch restored by the last on_train_begin (None: none)

    @property
    def path(self) -> str:
        """The backup file."""
        return os.path.join(self.backup_dir, BACKUP_FILE)

    def on_train_begin(self, trainer: Any) -> None:
        from ..trainer import Trainer  # here: the trainer imports callbacks.base, which loads this package

        if not isinstance(trainer, Trainer):
            raise TypeError(f"BackupAndRestore works with fa.Trainer, got {type(trainer).__name__}; DataParallel "
                            f"has it built in: fit(checkpoint_dir=..., resume=True)")
        check_writable_dir(self.backup_dir, "BackupAndRestore backup_dir")  # before the first epoch
        self.restored_epoch = None
        if os.path.exists(self.path):
            trainer.load_checkpoint(self.path)  # checked whole first: a backup of another run changes nothing
            self.restored_epoch = trainer.epoch

    def _on_epoch_saved(self, epoch: int, trainer: Any) -> None:
        # Trainer calls this at the epoch boundary, after every callback's
        # on_epoch_end: a backup taken in on_epoch_end would miss the
        # callbacks after this one and the epoch counter, and the resumed
        # run would differ from the uninterrupted one.
        trainer.save_checkpoint(self.path)

    def on_train_end(self, trainer: Any) -> None:
        if self.delete_checkpoint:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            with contextlib.suppress(OSError):  # only when empty: the directory may hold the user's files
                os.rmdir(self.backup_dir)

    def state_dict(self) -> Dict[str, Any]:
        """Empty: the backup is the checkpoint itself; nothing of it goes into one."""
        return {}

    def __repr__(self) -> str:
        return f"BackupAndRestore({self.backup_dir!r})"
