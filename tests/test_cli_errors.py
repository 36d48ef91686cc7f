"""Every user error of the ``fastadapt`` command is one line on stderr and
exit status 2, found before any training or timing starts, with nothing
written; a bug inside the library still shows its traceback."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import fastadapt as fa
from fastadapt import datasets
from fastadapt.cli import main
from fastadapt.data import mnist_example
from fastadapt.problems import shuffled_batches
from fastadapt.schedules import lr_finder
from test_datasets import DAMAGES, _damage, _fake_mnist_dir


@pytest.fixture(autouse=True)
def _no_mnist_dir_from_the_environment(monkeypatch):
    monkeypatch.delenv(datasets.ENV_DIR, raising=False)


def _cli(capsys, *argv):
    """(exit status, stdout, stderr) of ``fastadapt argv``, argparse's SystemExit included."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def _one_line(err, command):
    assert err.startswith(f"fastadapt {command}: ") and err.endswith("\n") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


@pytest.fixture
def damaged(tmp_path, request):
    data = tmp_path / "mnist"
    data.mkdir()
    _fake_mnist_dir(data, gz=True, n_train=30, n_test=10)
    blamed, message = _damage(data, request.param)
    return data, blamed, message


@pytest.fixture
def no_training(monkeypatch):
    """Fail the test if training or the LR sweep starts."""
    def started(*args, **kwargs):
        raise AssertionError("work started before the input was checked")

    monkeypatch.setattr(mnist_example, "Trainer", started)
    monkeypatch.setattr(lr_finder, "lr_find", started)


# ---- fastadapt mnist -------------------------------------------------------------

@pytest.mark.parametrize("damaged", DAMAGES, indirect=True)
def test_mnist_with_damaged_data_files(damaged, tmp_path, capsys, no_training):
    data, blamed, message = damaged
    code, out, err = _cli(capsys, "mnist", "--data-dir", data, "--out", tmp_path / "out", "--no-progress")
    assert code == 2 and out == ""
    _one_line(err, "mnist")
    assert str(blamed) in err and re.search(message, err)
    assert not (tmp_path / "out").exists()  # a data error creates no output directory


def test_mnist_out_that_is_a_file_is_refused_before_training(tmp_path, capsys, no_training):
    data = tmp_path / "mnist"
    data.mkdir()
    _fake_mnist_dir(data, gz=True, n_train=30, n_test=10)
    afile = tmp_path / "taken"
    afile.write_text("keep me")
    code, _, err = _cli(capsys, "mnist", "--data-dir", data, "--out", afile, "--no-progress")
    assert code == 2 and afile.read_text() == "keep me"
    assert _one_line(err, "mnist") == f"fastadapt mnist: --out {str(afile)!r} exists and is not a directory; " \
                                      f"pass a directory path\n"
    code, _, err = _cli(capsys, "mnist", "--data-dir", data, "--out", afile / "sub", "--no-progress")
    assert code == 2 and "cannot be written" in _one_line(err, "mnist")


def test_mnist_with_one_training_sample(tmp_path, capsys, no_training):
    _fake_mnist_dir(tmp_path, gz=False, n_train=1, n_test=1)
    code, _, err = _cli(capsys, "mnist", "--data-dir", tmp_path, "--out", tmp_path / "out")
    assert code == 2 and "training needs at least 2" in _one_line(err, "mnist")


@pytest.mark.parametrize("flag, value, message", [
    ("--epochs", "0", "must be >= 1, got 0"),
    ("--epochs", "ten", "expected an integer >= 1, got 'ten'"),
    ("--batch-size", "-3", "must be >= 1, got -3"),
    ("--lr", "0", "must be a finite number > 0"),
    ("--lr", "nan", "must be a finite number > 0"),
    ("--max-grad-norm", "-1", "must be a finite number >= 0"),
    ("--train-size", "0", "must be >= 1, got 0"),
    ("--seed", "-1", "must be >= 0, got -1"),
])
def test_mnist_bad_numbers(tmp_path, capsys, no_training, flag, value, message):
    code, _, err = _cli(capsys, "mnist", flag, value, "--out", tmp_path / "out")
    assert code == 2 and f"argument {flag}: {message}" in _one_line(err, "mnist")
    assert not (tmp_path / "out").exists()


def test_a_bug_during_training_keeps_its_traceback(tmp_path, monkeypatch):
    # Only checking and loading count as user input; a ValueError from inside
    # training is a bug and must not be dressed up as "exit 2".
    _fake_mnist_dir(tmp_path, gz=False, n_train=30, n_test=10)

    def buggy(*args, **kwargs):
        raise ValueError("an internal bug")

    monkeypatch.setattr(mnist_example, "Trainer", buggy)
    with pytest.raises(ValueError, match="an internal bug"):
        main(["mnist", "--data-dir", str(tmp_path), "--out", str(tmp_path / "out")])


# ---- fastadapt bench -------------------------------------------------------------

@pytest.fixture
def no_bench(monkeypatch):
    from fastadapt.cli import benchmarks

    def started(*args, **kwargs):
        raise AssertionError("the benchmark started before its arguments were checked")

    monkeypatch.setattr(benchmarks, "run_suite", started)


@pytest.mark.parametrize("argv, message", [
    (["--threads", "0"], "argument --threads: thread counts must be >= 1 (or 'all'), got 0"),
    (["--threads", "abc"], "argument --threads: expected thread counts >= 1 or 'all', got 'abc'"),
    (["--threads", "1,,-2"], "argument --threads: thread counts must be >= 1 (or 'all'), got -2"),
    (["--rounds", "0"], "argument --rounds: must be >= 1, got 0"),
    (["--rounds", "-3"], "argument --rounds: must be >= 1, got -3"),
    (["--rounds", "1.5"], "argument --rounds: expected an integer >= 1, got '1.5'"),
    (["--dtypes", "float16"], "argument --dtypes: unknown dtype 'float16'; expected float32, float64"),
    (["--dtypes", ","], "argument --dtypes: expected a comma list of dtypes"),
    (["--rules", "adam,adamm"], "argument --rules: unknown rule 'adamm'"),
    (["--layouts", "2M"], "argument --layouts: unknown layout '2M'"),
])
def test_bench_bad_arguments(capsys, no_bench, argv, message):
    code, out, err = _cli(capsys, "bench", *argv)
    assert code == 2 and out == ""
    assert message in _one_line(err, "bench")


def test_bench_output_paths_are_checked_before_timing(tmp_path, capsys, no_bench):
    afile = tmp_path / "file"
    afile.write_text("x")
    code, _, err = _cli(capsys, "bench", "--json", tmp_path)
    assert code == 2 and _one_line(err, "bench") == f"fastadapt bench: --json {str(tmp_path)!r} is a directory; " \
                                                    f"pass a file path\n"
    code, _, err = _cli(capsys, "bench", "--json", f"{tmp_path}/new/")
    assert code == 2 and "is a directory" in _one_line(err, "bench") and not (tmp_path / "new").exists()
    code, _, err = _cli(capsys, "bench", "--json", "")
    assert code == 2 and _one_line(err, "bench") == "fastadapt bench: --json needs a file path\n"
    code, _, err = _cli(capsys, "bench", "--markdown", afile / "table.md")
    assert code == 2 and "the directory of --markdown" in _one_line(err, "bench")
    assert afile.read_text() == "x"


def test_bench_writes_its_files_whole(tmp_path, capsys):
    json_path, md_path = tmp_path / "new" / "bench.json", tmp_path / "bench.md"
    md_path.write_text("old table")
    code, out, _ = _cli(capsys, "bench", "--rules", "adam", "--layouts", "64K", "--threads", "1", "--rounds", "1",
                        "--no-numpy", "--json", json_path, "--markdown", md_path)
    assert code == 0 and "adam" in out
    payload = json.loads(json_path.read_text())
    assert payload["rounds"] == 1 and [row["rule"] for row in payload["rows"]] == ["adam"]
    assert "adam" in md_path.read_text() and "old table" not in md_path.read_text()
    assert sorted(os.listdir(tmp_path)) == ["bench.md", "new"] and os.listdir(tmp_path / "new") == ["bench.json"]


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(rounds=0), ValueError, "rounds must be an int >= 1"),
    (dict(threads=[0]), ValueError, "thread counts must be ints >= 1"),
    (dict(threads="1"), TypeError, "threads must be a non-empty list"),
    (dict(dtypes=["float16"]), ValueError, "unknown dtype 'float16'"),
    (dict(impls=["fastadapt+fast"]), ValueError, "unknown implementation 'fastadapt+fast'"),
])
def test_run_suite_checks_its_arguments_before_measuring(kwargs, error, message):
    from fastadapt.cli import benchmarks

    given = dict(rules=["adam"], dtypes=["float32"], layouts=["64K"], threads=[1], impls=["fastadapt"], rounds=1)
    given.update(kwargs)
    with pytest.raises(error, match=re.escape(message)):
        benchmarks.run_suite(**given, progress=lambda msg: pytest.fail("measuring started"))


# ---- fastadapt lr-find -----------------------------------------------------------

@pytest.mark.parametrize("damaged", ["gzip cut short", "wrong magic", "counts differ", "non-finite pixels",
                                     "not 28x28", "labels out of range", "empty"], indirect=True)
@pytest.mark.parametrize("problem", ["auto", "mnist"])
def test_lr_find_with_damaged_data(damaged, problem, tmp_path, capsys, no_training):
    data, blamed, _ = damaged
    code, out, err = _cli(capsys, "lr-find", "--problem", problem, "--data-dir", data, "--out", tmp_path / "out")
    assert code == 2 and out == "" and str(blamed) in _one_line(err, "lr-find")
    assert not (tmp_path / "out").exists()


def test_lr_find_does_not_fall_back_when_the_named_data_is_missing(tmp_path, capsys, no_training):
    # --data-dir names the data to use; running least squares instead would hide the mistake.
    code, _, err = _cli(capsys, "lr-find", "--data-dir", tmp_path / "nowhere", "--out", tmp_path / "out")
    assert code == 2 and "MNIST is not available: data_dir" in _one_line(err, "lr-find")


def test_lr_find_out_and_seed_are_checked_before_the_sweep(tmp_path, capsys, no_training):
    afile = tmp_path / "taken"
    afile.write_text("x")
    code, _, err = _cli(capsys, "lr-find", "--problem", "least-squares", "--out", afile)
    assert code == 2 and "--out" in _one_line(err, "lr-find") and "is not a directory" in err
    code, _, err = _cli(capsys, "lr-find", "--problem", "least-squares", "--seed", "-1")
    assert code == 2 and "argument --seed: must be >= 0" in _one_line(err, "lr-find")
    code, _, err = _cli(capsys, "lr-find", "--problem", "least-squares", "--start-lr", "nan")
    assert code == 2 and "start_lr=nan must be finite" in _one_line(err, "lr-find")


def test_lr_find_on_good_idx_data_writes_its_files(tmp_path, capsys):
    data = tmp_path / "mnist"
    data.mkdir()
    _fake_mnist_dir(data, gz=True, n_train=40, n_test=5)
    code, out, _ = _cli(capsys, "lr-find", "--data-dir", data, "--num-steps", "12", "--batch-size", "8",
                        "--out", tmp_path / "out")
    assert code == 0 and "lr-find on mnist" in out
    written = json.loads((tmp_path / "out" / "lr_find.json").read_text())
    assert written["problem"] == "mnist" and written["train_samples"] == 40
    assert not [n for n in os.listdir(tmp_path / "out") if n.endswith(".tmp")]


# ---- empty data ------------------------------------------------------------------

def test_empty_data_is_a_valueerror_before_any_batch():
    with pytest.raises(ValueError, match="the arrays are empty"):
        fa.batches(np.empty((0, 784)), np.empty(0, np.int64), 32)
    with pytest.raises(ValueError, match="the data is empty"):  # it used to make one empty batch (a NaN loss)
        shuffled_batches(np.empty((0, 784)), np.empty(0, np.int64), 32)
    with pytest.raises(ValueError, match="X has 3 rows but y has 2"):
        shuffled_batches(np.zeros((3, 2)), np.zeros(2), 2)


# ---- the console script ----------------------------------------------------------

def _script(*argv):
    env = dict(os.environ)
    env.pop(datasets.ENV_DIR, None)
    return subprocess.run([sys.executable, "-m", "fastadapt.cli", *map(str, argv)], capture_output=True, text=True,
                          env=env, timeout=120)


@pytest.mark.parametrize("damaged", ["gzip damaged"], indirect=True)
def test_console_script_errors_are_one_line_without_a_traceback(damaged, tmp_path):
    data, blamed, _ = damaged
    done = _script("mnist", "--data-dir", data, "--out", tmp_path / "out")
    assert done.returncode == 2 and done.stdout == ""
    assert _one_line(done.stderr, "mnist").startswith(f"fastadapt mnist: {blamed}: the gzip data is damaged")
    done = _script("bench", "--threads", "0")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == "fastadapt bench: argument --threads: thread counts must be >= 1 (or 'all'), got 0 " \
                          "(see fastadapt bench --help)\n"



def test_a_closed_output_pipe_ends_quietly():
    # fastadapt info | head: the reader is gone before the output is written.
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run([sys.executable, "-m", "fastadapt.cli", "info", "--json"], stdout=write_end,
                              stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write_end)
    assert done.returncode == 1 and done.stderr == ""
