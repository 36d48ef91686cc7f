"""``fastadapt bench``: what it measures by default and with --full, the
estimate it prints before measuring, the re-measuring of cells whose rounds
disagree, and its progress on a terminal. Nothing here asserts on speed: the
timing itself is replaced by scripted samples, or runs on the smallest case
only to see the display."""

from __future__ import annotations

import re
import sys

import pytest

from fastadapt import cli
from fastadapt.cli import bench
from fastadapt.cli import benchmarks as fb
from fastadapt.cli import main
from fastadapt.runtime import get_num_threads

from test_progress_terminal import Screen, assert_fits, run_in_terminal


def _plan(*argv):
    return bench._plan(cli._parser().parse_args(["bench", *argv]))


def test_the_default_is_the_headline_cases_and_full_the_whole_grid():
    every = get_num_threads()
    plan = _plan()
    assert plan["rules"] == ["adam"] and plan["dtypes"] == ["float32"]
    assert plan["layouts"] == ["16M", "1M", "1000x100"] and plan["rounds"] == 9
    assert plan["threads"] == sorted({1, every})
    full = _plan("--full")
    assert full["rules"] == list(fb.RULES) and full["layouts"] == list(fb.LAYOUTS) and full["rounds"] == 15
    assert full["threads"] == sorted({1, every})
    # An explicit option replaces that part of either set, and only that part.
    plan = _plan("--rules", "sgd-momentum", "--rounds", "3")
    assert plan["rules"] == ["sgd-momentum"] and plan["rounds"] == 3 and plan["layouts"] == fb.HEADLINE["layouts"]
    plan = _plan("--full", "--layouts", "64K", "--threads", "1")
    assert plan["rules"] == list(fb.RULES) and plan["layouts"] == ["64K"] and plan["threads"] == [1]
    assert "numpy" not in _plan("--no-numpy")["impls"]
    assert "fastadapt+clip" in _plan("--variants")["impls"]


def test_the_estimate_follows_the_work():
    # The estimate is a model (no clock): more cases, rounds or a slower machine must cost more.
    impls = ["fastadapt", "roof", "numpy"]
    head = fb.estimate_seconds(["adam"], ["float32"], ["16M", "1M", "1000x100"], [1, 2], impls, 9)
    full = fb.estimate_seconds(list(fb.RULES), ["float32"], list(fb.LAYOUTS), [1, 2], impls, 15)
    assert 0 < head < full
    assert fb.estimate_seconds(["adam"], ["float32"], ["16M"], [1], impls, 18) > \
        fb.estimate_seconds(["adam"], ["float32"], ["16M"], [1], impls, 9)
    assert fb.estimate_seconds(["adam"], ["float64"], ["16M"], [1], impls, 9) > \
        fb.estimate_seconds(["adam"], ["float32"], ["16M"], [1], impls, 9)
    assert fb.estimate_seconds(["adam"], ["float32"], ["16M"], [1], impls, 9, speed=2.0) > \
        fb.estimate_seconds(["adam"], ["float32"], ["16M"], [1], impls, 9)
    with pytest.raises(ValueError, match="unknown layout"):
        fb.estimate_seconds(["adam"], ["float32"], ["2M"], [1], impls, 9)


def _fake_rows(rules, dtypes, layouts, threads, impls, rounds):
    return [{"rule": r, "dtype": d, "layout": l, "threads": t, "bytes": 7 * 4 * 65536,
             "seconds": {i: 1e-3 * (1 + k) for k, i in enumerate(impls)}, "skipped": {}, "ratios": {},
             "rechecked": {}, "unstable": ["numpy"] if (l, t) == (layouts[0], threads[0]) else []}
            for r in rules for d in dtypes for l in layouts for t in threads]


def test_bench_prints_the_estimate_before_measuring(monkeypatch, capsys):
    calls, before = [], []

    def fake_suite(rules, dtypes, layouts, threads, impls, rounds=15, progress=None, on_row=None, **kw):
        calls.append((rules, dtypes, layouts, threads, rounds))
        before.append(capsys.readouterr().err)  # what was printed before any measuring started
        rows = _fake_rows(rules, dtypes, layouts, threads, impls, rounds)
        for n, row in enumerate(rows, 1):
            progress(f"[{n}/{len(rows)}] a case")
            on_row(row)
        return rows

    monkeypatch.setattr(fb, "run_suite", fake_suite)
    monkeypatch.setattr(fb, "machine_speed", lambda: 1.0)
    assert main(["bench"]) == 0
    assert calls == [(["adam"], ["float32"], ["16M", "1M", "1000x100"], sorted({1, get_num_threads()}), 9)]
    out = capsys.readouterr().out
    assert "adam float32 1000x100" in out
    # The unstable cell: marked in the table, explained below it.
    assert re.search(r" 3\.0\? ", out) and "?: the rounds of that cell disagreed" in out

    assert "estimated" in before[0]
    assert main(["bench", "--full", "--threads", "1"]) == 0
    err = before[1]
    expected = fb.estimate_seconds(list(fb.RULES), ["float32"], list(fb.LAYOUTS), [1],
                                   _plan("--full", "--threads", "1")["impls"], 15)
    line = err.splitlines()[0]
    assert line.startswith(f"fastadapt bench: {len(fb.RULES) * len(fb.LAYOUTS)} combination(s) x 6 "
                           f"implementations, 15 rounds, the whole grid (--full); estimated "), line
    shown = re.search(r"estimated ([0-9.]+) (s|min) ", line)
    seconds = float(shown.group(1)) * (60 if shown.group(2) == "min" else 1)
    assert abs(seconds - expected) <= max(5, 0.06 * expected), (seconds, expected)  # the model's figure, rounded


def test_bad_bench_arguments_are_refused_before_the_estimate(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["bench", "--layouts", "2M"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "unknown layout '2M'" in err and "estimated" not in err


# --- re-measuring cells whose rounds disagree ------------------------------------------------------------


def _scripted(monkeypatch, script):
    """measure_samples returning the next scripted samples (per case, per round) for the cases it gets."""
    seen = []

    def fake(cases, rounds=15, **kw):
        impls = [c.impl for c in cases]
        seen.append(impls)
        answer = script.pop(0)
        return [list(answer[impl]) for impl in impls]

    monkeypatch.setattr(fb, "measure_samples", fake)
    return seen


STEADY = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
# numpy's rounds: half of them 10x the others (a busy machine), against a steady fastadapt.
DISAGREE = [2.0, 20.0, 2.0, 20.0, 2.0, 20.0, 2.0, 20.0, 2.0]


def test_a_cell_whose_rounds_disagree_is_measured_again(monkeypatch):
    seen = _scripted(monkeypatch, [
        {"fastadapt": STEADY, "roof": [0.9] * 9, "numpy": DISAGREE},
        {"fastadapt": STEADY, "numpy": [3.0] * 9},       # the re-measurement agrees with itself
    ])
    [row] = fb.run_suite(["adam"], ["float32"], ["64K"], [1], ["fastadapt", "roof", "numpy"], rounds=9,
                         check=False)
    assert seen == [["fastadapt", "roof", "numpy"], ["fastadapt", "numpy"]]   # only the disagreeing cell again
    assert row["ratios"] == {"numpy": 3.0} and row["rechecked"] == {"numpy": 1} and row["unstable"] == []
    cells = fb._cells(row)
    assert cells[5] == "3.0"              # the re-measured ratio, not the first run's median (2.0 / 1.0)
    assert cells[4] == "90%"              # roof / fastadapt (0.9 s / 1.0 s) from the first run: it agreed


def test_a_cell_that_never_agrees_is_marked(monkeypatch):
    seen = _scripted(monkeypatch, [{"fastadapt": STEADY, "numpy": DISAGREE}]
                     + [{"fastadapt": STEADY, "numpy": DISAGREE}] * fb.RECHECKS)
    [row] = fb.run_suite(["adam"], ["float32"], ["64K"], [1], ["fastadapt", "numpy"], rounds=9, check=False)
    assert len(seen) == 1 + fb.RECHECKS
    assert row["unstable"] == ["numpy"] and fb._cells(row)[5] == "2.0?"
    assert "2.0?" in fb.format_table([row]) and "2.0?" in fb.format_markdown([row])


def test_one_odd_round_is_not_an_outlier(monkeypatch):
    # A single hiccup among 9 rounds leaves the median alone: no re-measurement.
    seen = _scripted(monkeypatch, [{"fastadapt": STEADY, "numpy": [2.0] * 8 + [500.0]}])
    [row] = fb.run_suite(["adam"], ["float32"], ["64K"], [1], ["fastadapt", "numpy"], rounds=9, check=False)
    assert len(seen) == 1 and row["ratios"] == {} and fb._cells(row)[5] == "2.0"


# --- on a terminal -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("columns", [80, 60])
def test_bench_progress_fits_the_terminal(tmp_path, columns):
    pytest.importorskip("tqdm")
    code, raw, out = run_in_terminal([sys.executable, "-m", "fastadapt.cli", "bench", "--layouts", "64K",
                                      "--threads", "1", "--rounds", "2"], columns)
    assert code == 0, raw
    screen = Screen(columns).feed(raw)
    assert_fits(screen, columns)
    text = " ".join(line.strip() for line in screen.lines)
    assert re.search(r"estimated [0-9.]+ (s|min) on an idle machine", text), screen.text
    # The finished row, every column by name and whole (wrapped between columns).
    names = ["fastadapt", "GB/s", "of roof", "x numpy"]
    if fb.torch is not None:
        names += ["x torch fused", "x torch foreach", "x torch single"]
    for name in names:
        assert re.search(rf"{re.escape(name)} [0-9.%?]+|[0-9.%?]+ {re.escape(name)}", text), \
            (name, screen.text)
    assert any(line.startswith("bench: 100%") and "1/1" in line for line in screen.lines), screen.text
    assert "adam float32 64K" in out   # the table, on stdout


# --- --precision: low-precision storage against float32 -------------------------------------------------------


def test_precision_prints_every_storage_with_its_roof_and_state_bytes(capsys, tmp_path):
    """The smallest case, one round: the table's rows and the bytes it counts (not the speed)."""
    out = tmp_path / "p.json"
    assert main(["bench", "--precision", "--layouts", "64K", "--threads", "1", "--rounds", "1",
                 "--json", str(out)]) == 0
    text = capsys.readouterr().out
    for storage, state in (("float32", "8.00"), ("bf16-state", "4.00"), ("int8-state", "2.03"),
                           ("bf16-params-int8-state", "2.03")):
        assert re.search(rf"adam 64K\s+1\s+{storage}\s+.*\s{state}$", text, re.M), (storage, text)
    import json

    rows = json.loads(out.read_text())["rows"]
    by = {r["precision"]: r for r in rows}
    n = 65536
    # bytes a step must move: float32 Adam 28 per element; 8-bit state 4+4+4 (p, g, p) + 4 x 1 (m, v) + scales
    assert by["float32"]["bytes"] == 28 * n
    assert by["bf16-state"]["bytes"] == 20 * n
    assert by["int8-state"]["bytes"] == (16 + 2 * 8 / 256) * n
    assert by["bf16-params-int8-state"]["bytes"] == (10 + 2 * 8 / 256) * n
    assert by["float32"]["x_float32"] == 1.0
    assert all(r["seconds"] > 0 and r["roof_seconds"] > 0 for r in rows)
    # the compute floor: seconds, or None ('?') where one round's slope was not positive
    assert all(r["compute_seconds"] is None or r["compute_seconds"] > 0 for r in rows)
    assert "compute floor ms" in text


def test_precision_refuses_what_it_does_not_measure(capsys):
    assert main(["bench", "--precision", "--rules", "lamb"]) == 2
    assert "unknown rule 'lamb' for --precision" in capsys.readouterr().err
    assert main(["bench", "--precision", "--full"]) == 2
    assert "--precision measures its own grid" in capsys.readouterr().err
    assert main(["bench", "--precision", "--layouts", "1000x100"]) == 2
    assert "one tensor" in capsys.readouterr().err
