"""CSVLogger: Keras's columns (epoch 0-based, sorted keys), separator,
append, columns that appear later, resume through a checkpoint."""

import csv

import pytest

import fastadapt as fa
from helpers import mlp_trainer as _trainer, two_batches as _data


def _rows(path, sep=","):
    with open(path, newline="") as f:
        return list(csv.reader(f, delimiter=sep))


class Late(fa.Callback):
    """Logs 'extra' from epoch 1 on."""

    def on_epoch_end(self, epoch, logs, trainer):
        if epoch >= 1:
            logs["extra"] = 10.0 + epoch


def test_rows_match_history(tmp_path):
    path = tmp_path / "log.csv"
    history = _trainer([fa.CSVLogger(path)]).fit(_data(), epochs=3)
    rows = _rows(path)
    header, body = rows[0], rows[1:]
    assert header[0] == "epoch" and header[1:] == sorted(header[1:]) and "loss" in header
    assert [r[0] for r in body] == ["0", "1", "2"]
    losses = [float(r[header.index("loss")]) for r in body]
    assert losses == history["loss"]  # repr round-trips exactly


def test_separator_and_a_column_that_appears_later(tmp_path):
    path = tmp_path / "log.tsv"
    _trainer([Late(), fa.CSVLogger(path, separator="\t")]).fit(_data(), epochs=3)
    rows = _rows(path, "\t")
    extra = rows[0].index("extra")
    assert [r[extra] for r in rows[1:]] == ["NA", "11.0", "12.0"]


def test_append_keeps_earlier_rows_and_default_starts_anew(tmp_path):
    path = tmp_path / "log.csv"
    trainer = _trainer([fa.CSVLogger(path, append=True)])
    trainer.fit(_data(), epochs=2)
    trainer.fit(_data(), epochs=1)
    assert [r[0] for r in _rows(path)[1:]] == ["0", "1", "2"]
    fresh = _trainer([fa.CSVLogger(path)])
    fresh.fit(_data(), epochs=1)
    assert [r[0] for r in _rows(path)[1:]] == ["0"]
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="does not start with an 'epoch' column"):
        _trainer([fa.CSVLogger(tmp_path / "other.csv", append=True)]).fit(_data(), epochs=1)


def test_resumed_run_writes_the_uninterrupted_file(tmp_path):
    whole = tmp_path / "whole.csv"
    _trainer([fa.CSVLogger(whole)]).fit(_data(), epochs=3)
    part = tmp_path / "part.csv"
    first = _trainer([fa.CSVLogger(part)])
    first.fit(_data(), epochs=2, checkpoint_path=tmp_path / "run.npz")
    first.fit(_data(), epochs=1)           # an epoch the checkpoint does not have: its row is dropped on resume
    resumed = _trainer([fa.CSVLogger(part)])
    resumed.load_checkpoint(tmp_path / "run.npz")
    resumed.fit(_data(), epochs=1)
    drop = {"seconds"}                       # wall time differs between runs
    keep = [i for i, k in enumerate(_rows(whole)[0]) if k not in drop]
    assert [[r[i] for i in keep] for r in _rows(part)] == [[r[i] for i in keep] for r in _rows(whole)]


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(filename=None), TypeError, r"filename=...\) must be a path"),
    (dict(filename="x.csv", separator=";;"), ValueError, "separator=';;'"),
    (dict(filename="x.csv", append="yes"), TypeError, r"append='yes'\) must be True or False"),
])
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        fa.CSVLogger(**kwargs)


def test_unwritable_file_fails_before_training(tmp_path):
    trainer = _trainer([fa.CSVLogger(tmp_path / "missing" / "log.csv")])
    with pytest.raises(ValueError, match="CSVLogger filename"):
        trainer.fit(_data(), epochs=1)
    assert trainer.step == 0
