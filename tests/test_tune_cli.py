"""`fastadapt tune {hyperband,asha,pbt}` on the MNIST MLP: the files it
writes, resuming, and its errors."""

import csv
import io
import json

import pytest

from fastadapt.cli import main


SMALL = ["--hidden", "16", "--train-samples", "600", "--seed", "0"]


@pytest.mark.parametrize("algorithm, flags, jobs", [
    ("hyperband", ["--max-resource", "3"], 3 + 1 + 2),                    # brackets (3,1),(1,3) and (2,3)
    ("asha", ["--max-resource", "3", "--num-trials", "4"], None),
    ("pbt", ["--max-resource", "4", "--population", "4", "--interval", "2"], 8),
    ("bohb", ["--max-resource", "3"], 3 + 1 + 2),                         # Hyperband's table
    ("tpe", ["--max-resource", "2", "--num-trials", "3"], 3),               # one full-budget job per trial
    ("pb2", ["--max-resource", "4", "--population", "4", "--interval", "2"], 8),
    ("median", ["--max-resource", "3", "--num-trials", "4"], None),
])
def test_tune_writes_the_table_and_a_plot(mnist_subset, tmp_path, capsys, algorithm, flags, jobs):
    pytest.importorskip("matplotlib")
    out = tmp_path / algorithm
    assert main(["tune", algorithm, "--out", str(out), "--workers", "2", *SMALL, *flags]) == 0
    printed = capsys.readouterr()
    result = json.loads((out / "result.json").read_text())
    algorithm = {"tpe": "search", "median": "median_stopping"}.get(algorithm, algorithm)  # the tuners' own names
    assert result["algorithm"] == algorithm and result["metric"] == "val_loss" and result["mode"] == "min"
    assert result["space"]["lr"] == "loguniform(0.001, 1.0)" and result["space"]["hidden"] == "16"
    if jobs is not None:
        assert sum(len(t["history"]) for t in result["trials"]) == jobs
    best = result["best"]
    assert 0 < best["metric"] < 2.4 and set(best["config"]) >= {"lr", "batch_size", "momentum"}
    rows = list(csv.DictReader(io.StringIO((out / "result.csv").read_text())))
    assert len(rows) == len(result["trials"]) and "config.lr" in rows[0]
    if algorithm in ("search", "median_stopping"):
        assert result["settings"].get("searcher", "random").startswith("tpe(") == (algorithm == "search")
    assert list(out.glob("*.png"))[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"[{algorithm} 1" in printed.err                # progress: one line per job off a terminal
    assert f"best: trial {best['trial_id']}" in printed.out and "test accuracy of that model: 0." in printed.out
    assert "result.json" in printed.out


def test_tune_resume_continues_from_the_checkpoint(mnist_subset, tmp_path, capsys):
    args = ["tune", "pbt", "--out", str(tmp_path), "--executor", "sequential", "--population", "2",
            "--interval", "1", "--max-resource", "2", "--quantile", "0.5", *SMALL]
    assert main(args) == 0
    first = json.loads((tmp_path / "result.json").read_text())
    capsys.readouterr()
    assert main(args + ["--resume"]) == 0                   # a finished run resumes to its result
    again = json.loads((tmp_path / "result.json").read_text())
    assert "[pbt" not in capsys.readouterr().err            # no job ran again
    assert again["trials"] == first["trials"] and again["best"] == first["best"]
    # a new run never overwrites a previous one in the same --out
    before = (tmp_path / "result.json").read_bytes()
    assert main(args) == 2
    assert "holds a previous run (result.json, checkpoint/tuner.json); pass --resume" in capsys.readouterr().err
    assert (tmp_path / "result.json").read_bytes() == before


@pytest.mark.parametrize("flags, message", [
    (["hyperband", "--eta", "1"], "--eta 1 must be >= 2"),          # the tuner's errors in the flags' names
    (["pbt", "--quantile", "0.9"], "--quantile 0.9 must be in (0, 0.5]"),
    (["asha", "--max-resource", "3", "--min-resource", "9"], "--min-resource (9) must be <= --max-resource (3)"),
    (["pbt", "--interval", "40", "--max-resource", "30"], "--interval 40 >= --max-resource 30"),
    (["hyperband", "--data-dir", "/nonexistent/mnist"], "is not a directory"),
    (["pb2", "--searcher", "tpe"], "--searcher applies to hyperband, asha and median"),
    (["median", "--max-resource", "3", "--grace-period", "3"], "--grace-period 3 >= --max-resource 3"),
    # flags of other algorithms are refused, not ignored
    (["hyperband", "--population", "5"], "--population applies to pbt, pb2, not to hyperband; drop it"),
    (["pbt", "--eta", "2"], "--eta applies to hyperband, asha, bohb, not to pbt"),
    (["bohb", "--num-trials", "7"], "--num-trials applies to bohb --asynchronous only"),
    (["hyperband", "--resume"], "has no checkpoint to continue"),
])
def test_tune_errors_exit_2_naming_the_problem(tmp_path, capsys, flags, message):
    assert main(["tune", *flags, "--out", str(tmp_path / "never")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "never").exists()
