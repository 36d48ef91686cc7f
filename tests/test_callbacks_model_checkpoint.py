"""ModelCheckpoint: Keras's filepath fields (1-based epoch), best/last,
monitor and mode, weights only, steps, resume of the best value, bad arguments."""

import math

import numpy as np
import pytest

import fastadapt as fa
from fastadapt._tree import flatten_any
from fastadapt.train.checkpoints import load_state
from helpers import mlp_trainer as _trainer, two_batches as _data


class Feed(fa.Callback):
    """Puts a chosen metric in each epoch's logs (runs before ModelCheckpoint)."""

    def __init__(self, values):
        self.values = list(values)

    def on_epoch_end(self, epoch, logs, trainer):
        logs["score"] = self.values[epoch]


def test_every_epoch_with_keras_epoch_numbers(tmp_path):
    cb = fa.ModelCheckpoint(str(tmp_path / "model-{epoch:02d}.npz"), save_best_only=False)
    trainer = _trainer([cb])
    trainer.fit(_data(), epochs=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model-01.npz", "model-02.npz", "model-03.npz"]
    saved = load_state(tmp_path / "model-02.npz")
    assert saved["format"] == "fastadapt.trainer" and saved["epoch"] == 2  # a resumable trainer checkpoint
    assert cb.last_saved == str(tmp_path / "model-03.npz")


@pytest.mark.parametrize("mode, values, saved_at", [
    ("min", [3.0, 1.0, 2.0, 0.5], [1, 2, 4]),
    ("max", [3.0, 1.0, 4.0, 0.5], [1, 3]),
    ("min", [float("nan"), 2.0, float("nan"), 1.0], [2, 4]),   # NaN never improves
])
def test_best_only_follows_monitor_and_mode(tmp_path, mode, values, saved_at):
    cb = fa.ModelCheckpoint(str(tmp_path / "best-{epoch}.npz"), monitor="score", mode=mode, save_best_only=True)
    _trainer([Feed(values), cb]).fit(_data(), epochs=len(values))
    assert sorted(int(p.stem.split("-")[1]) for p in tmp_path.iterdir()) == saved_at


def test_auto_mode_is_keras_rule():
    assert fa.ModelCheckpoint("x.npz", monitor="val_accuracy").mode == "max"
    assert fa.ModelCheckpoint("x.npz", monitor="val_auc").mode == "max"
    assert fa.ModelCheckpoint("x.npz", monitor="val_loss").mode == "min"


def test_best_file_holds_the_best_epoch_and_logs_fill_the_name(tmp_path):
    path = tmp_path / "best.npz"
    cb = fa.ModelCheckpoint(path, monitor="score", save_best_only=True)
    _trainer([Feed([2.0, 1.0, 3.0]), cb]).fit(_data(), epochs=3)
    assert load_state(path)["epoch"] == 2 and cb.best == 1.0
    named = fa.ModelCheckpoint(str(tmp_path / "s-{score:.1f}.npz"))
    _trainer([Feed([2.0]), named]).fit(_data(), epochs=1)
    assert (tmp_path / "s-2.0.npz").exists()


def test_weights_only_saves_params(tmp_path):
    cb = fa.ModelCheckpoint(tmp_path / "w.npz", save_weights_only=True)
    trainer = _trainer([cb])
    trainer.fit(_data(), epochs=1)
    saved = load_state(tmp_path / "w.npz")
    assert saved["format"] == "fastadapt.params" and set(saved) == {"format", "version", "params"}
    paths, leaves = flatten_any(trainer.params)
    assert sorted(saved["params"]) == sorted(paths)
    for path, leaf in zip(paths, leaves):
        np.testing.assert_array_equal(saved["params"][path], leaf)


def test_save_freq_in_steps_and_missing_directories_are_created(tmp_path):
    cb = fa.ModelCheckpoint(str(tmp_path / "sub" / "e{epoch}-b{batch}.npz"), save_freq=3)
    _trainer([cb]).fit(_data(), epochs=3)  # 6 steps: saves after steps 3 and 6
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["e2-b3.npz", "e3-b6.npz"]


def test_best_value_travels_in_the_checkpoint(tmp_path):
    cb = fa.ModelCheckpoint(tmp_path / "best.npz", monitor="score", save_best_only=True)
    trainer = _trainer([Feed([1.0, 5.0, 5.0]), cb])
    trainer.fit(_data(), epochs=1, checkpoint_path=tmp_path / "run.npz")
    again = fa.ModelCheckpoint(tmp_path / "best.npz", monitor="score", save_best_only=True)
    resumed = _trainer([Feed([1.0, 5.0, 5.0]), again])
    resumed.load_checkpoint(tmp_path / "run.npz")
    assert again.best == 1.0
    resumed.fit(_data(), epochs=1)          # 5.0 is worse: the best file stays epoch 1's
    assert load_state(tmp_path / "best.npz")["epoch"] == 1


def test_missing_monitor_and_filepath_fields_name_the_logs(tmp_path):
    with pytest.raises(KeyError, match="monitors 'val_loss'.*logged: .*'loss'"):
        _trainer([fa.ModelCheckpoint(tmp_path / "b.npz", save_best_only=True)]).fit(_data(), epochs=1)
    with pytest.raises(KeyError, match=r"names \['nope'\]"):
        _trainer([fa.ModelCheckpoint(str(tmp_path / "{nope}.npz"))]).fit(_data(), epochs=1)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(filepath=3), TypeError, r"filepath=...\) must be a path"),
    (dict(filepath="a{epoch"), ValueError, "not a valid format string"),
    (dict(filepath="a{0}.npz"), ValueError, "fields must be names"),
    (dict(filepath="x.npz", mode="best"), ValueError, r"mode='best'\) must be 'auto', 'min' or 'max'"),
    (dict(filepath="x.npz", save_freq="batch"), ValueError, r"save_freq='batch'\) must be 'epoch' or an int"),
    (dict(filepath="x.npz", save_freq=0), ValueError, r"save_freq=0 must be >= 1"),
    (dict(filepath="x.npz", save_best_only=1), TypeError, r"save_best_only=1\) must be True or False"),
    (dict(filepath="x.npz", monitor=""), TypeError, "monitor=''"),
    (dict(filepath="x.npz", verbose=3), ValueError, r"verbose=3\) must be 0 or 1"),
])
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        fa.ModelCheckpoint(**kwargs)


def test_initial_value_threshold_and_state_checks(tmp_path):
    cb = fa.ModelCheckpoint(tmp_path / "b.npz", monitor="score", save_best_only=True, initial_value_threshold=0.5)
    _trainer([Feed([1.0]), cb]).fit(_data(), epochs=1)
    assert not (tmp_path / "b.npz").exists() and cb.best == 0.5
    with pytest.raises(ValueError, match="keys"):
        cb.load_state_dict({"best": 1.0})
    with pytest.raises(ValueError, match="NaN|number"):
        cb.load_state_dict({"best": math.nan, "steps_since_save": 0})
