"""BackupAndRestore: a crashed fit, rerun on a fresh trainer, finishes the
run exactly as the uninterrupted one; the backup goes when fit finishes."""

import numpy as np
import pytest
from helpers import trees_same_bits

import fastadapt as fa
from fastadapt.models import MLP


class Crash(fa.Callback):
    """Raises at the end of epoch `at` while armed (stands in for a crash)."""

    def __init__(self, at=None):
        self.at = at

    def on_epoch_end(self, epoch, logs, trainer):
        if epoch == self.at:
            raise RuntimeError("crash")


def _run(backup_dir, crash_at=None, epochs=5, extra=()):
    model = MLP([4, 5, 2], seed=0)
    rng = np.random.default_rng(1)
    X = rng.standard_normal((40, 4)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    callbacks = [Crash(crash_at), fa.ReduceLROnPlateau(patience=1, factor=0.5, monitor="loss"), *extra]
    if backup_dir is not None:
        callbacks.append(fa.BackupAndRestore(backup_dir))
    trainer = fa.Trainer("adam", lr=0.05, loss_and_grad=model.loss_and_grad, params=model.params,
                         callbacks=callbacks, progress=False)
    history = trainer.fit(fa.batches(X, y, 8, shuffle=True, seed=0), epochs=epochs)
    return trainer, history


def _same_history(a, b):
    keys = [k for k in a.keys() if k != "seconds"]      # wall time differs between runs
    return sorted(a.keys()) == sorted(b.keys()) and all(a[k] == b[k] for k in keys) and a.epoch == b.epoch


def test_rerun_after_a_crash_continues_the_same_run(tmp_path):
    whole, whole_history = _run(None)
    backup = tmp_path / "backup"
    with pytest.raises(RuntimeError, match="crash"):
        _run(backup, crash_at=3)
    assert (backup / "backup.npz").exists()                 # epochs 0..2 done and backed up
    resumed, history = _run(backup)                          # the same script, run again
    assert resumed.epoch == 5 and resumed.step == whole.step
    assert trees_same_bits(resumed.params, whole.params)
    assert _same_history(history, whole_history) and resumed.optimizer.lr == whole.optimizer.lr
    assert not backup.exists()                               # deleted (and its empty directory) at the end


def test_keeps_the_backup_when_asked_and_leaves_other_files(tmp_path):
    backup = tmp_path / "b"
    backup.mkdir()
    (backup / "mine.txt").write_text("x")
    model = MLP([4, 3, 2], seed=0)
    X = np.zeros((4, 4), np.float32)
    y = np.zeros(4, int)
    cb = fa.BackupAndRestore(backup, delete_checkpoint=False)
    trainer = fa.Trainer("sgd", lr=0.1, loss_and_grad=model.loss_and_grad, params=model.params, callbacks=[cb],
                         progress=False)
    trainer.fit([(X, y)], epochs=2)
    assert (backup / "backup.npz").exists() and (backup / "mine.txt").exists()
    again = fa.Trainer("sgd", lr=0.1, loss_and_grad=model.loss_and_grad, params=MLP([4, 3, 2], seed=0).params,
                       callbacks=[fa.BackupAndRestore(backup)], progress=False)
    again.fit([(X, y)], epochs=2)                            # the finished run's backup: nothing left to run
    assert again.epoch == 2 and again.step == 2 and (backup / "mine.txt").exists()
    assert not (backup / "backup.npz").exists()


def test_a_backup_of_another_model_is_refused_unchanged(tmp_path):
    backup = tmp_path / "b"
    with pytest.raises(RuntimeError):
        _run(backup, crash_at=1)
    model = MLP([4, 7, 2], seed=0)
    trainer = fa.Trainer("adam", lr=0.05, loss_and_grad=model.loss_and_grad, params=model.params,
                         callbacks=[Crash(), fa.ReduceLROnPlateau(monitor="loss"), fa.BackupAndRestore(backup)],
                         progress=False)
    with pytest.raises(ValueError, match="same model"):
        trainer.fit([(np.zeros((2, 4), np.float32), np.zeros(2, int))], epochs=1)
    assert trainer.epoch == 0 and (backup / "backup.npz").exists()


def test_bad_arguments_and_trainers():
    with pytest.raises(TypeError, match=r"backup_dir=...\) must be a path"):
        fa.BackupAndRestore(None)
    with pytest.raises(TypeError, match=r"delete_checkpoint=1\) must be True or False"):
        fa.BackupAndRestore("x", delete_checkpoint=1)
    with pytest.raises(TypeError, match="works with fa.Trainer.*resume=True"):
        fa.BackupAndRestore("x").on_train_begin(object())
