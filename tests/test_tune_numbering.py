"""One numbering for what a person reads from a tuner (issue 13, part 1).

The project's convention: counts from 1 for people, 0-based indices in
files. For the tuners: a budget is the units *completed* (x = 9 in a plot,
"after 9 epochs" in the CLI, ``budget: 9`` in result.json and the CSV are
the same evaluation); rungs are "rung k + 1" for ``rungs[i]["rung"] == k``;
PBT's ``generation`` is the count of generations completed, the number on
the plot's top axis. These tests check that every place agrees.
"""

import csv
import io
import json
import re

import numpy as np
import pytest

import fastadapt as fa
import tune_helpers as H
from fastadapt.cli import main

pytest.importorskip("matplotlib")

SPACE = {"x": fa.tune.uniform(0.0, 1.0)}


def _data_lines(ax):
    return [line for line in ax.get_lines() if line.get_transform().contains_branch(ax.transData)]


def _top_axis(ax):
    (top,) = [child for child in ax.get_children() if type(child).__name__ == "SecondaryAxis"]
    return top


def _ticks(axis_owner):
    labels = [t.get_text() for t in axis_owner.xaxis.get_ticklabels()]
    return list(axis_owner.get_xticks()), labels


def test_rung_plot_points_stand_at_the_budgets_completed():
    result = fa.tune.Hyperband(H.Quadratic, SPACE, max_resource=9, eta=3, seed=0, executor="sequential").run()
    figure = result.plot_rungs(unit="epochs")
    figure.canvas.draw()
    panels = [ax for ax in figure.axes if ax.axison and _data_lines(ax)]
    drawn = {tuple(zip(line.get_xdata(), line.get_ydata())) for ax in panels for line in _data_lines(ax)
             if len(line.get_xdata()) and line.get_marker() == "o"}
    recorded = {tuple((h["budget"], h["metric"]) for h in t.history) for t in result.trials if t.history}
    assert recorded <= drawn                                  # x of a point = its history entry's budget
    # the best evaluation: star, title and result agree on "after N epochs"
    (star,) = [line for ax in panels for line in ax.get_lines() if line.get_marker() == "*"]
    assert (star.get_xdata()[0], star.get_ydata()[0]) == (result.best_budget, result.best_metric)
    title = figure._suptitle.get_text()
    assert f"trial {result.best_trial.trial_id} after {result.best_budget} epochs" in title
    assert all(ax.get_xlabel() in ("", "epochs completed (budget)") for ax in panels)
    assert any(ax.get_xlabel() for ax in panels)  # the bottom row carries the label


def test_rungs_are_numbered_from_one_over_their_budgets():
    result = fa.tune.Hyperband(H.Quadratic, SPACE, max_resource=9, eta=3, seed=0, executor="sequential").run()
    figure = result.plot_rungs()
    figure.canvas.draw()
    panels = [ax for ax in figure.axes if ax.axison and _data_lines(ax)]
    for ax in panels:
        bracket = int(re.match(r"bracket s=(\d+)", ax.get_title()).group(1))
        rungs = sorted((r for r in result.rungs if r["bracket"] == bracket), key=lambda r: r["rung"])
        ticks, labels = _ticks(_top_axis(ax))
        assert ticks == [r["resource"] for r in rungs]
        assert labels == [str(r["rung"] + 1) for r in rungs]   # the file's rung 0 is "rung 1"
        assert labels[0] == "1"


def test_pbt_generations_count_from_one_on_the_plot_and_in_the_lineage():
    interval, top = 2, 7   # the last generation is short (6 -> 7)
    result = fa.tune.PBT(H.Quadratic, SPACE, population=4, perturbation_interval=interval, max_resource=top,
                         quantile=0.5, seed=0, executor="sequential").run()
    assert result.lineage
    for event in result.lineage:
        # generation g: the count completed when the exploit ran, at g * interval units
        assert event["generation"] >= 1 and event["budget"] == min(event["generation"] * interval, top)
    figure = result.plot_population(unit="epochs")
    figure.canvas.draw()
    ticks, labels = _ticks(_top_axis(figure.axes[0]))
    assert labels == ["1", "2", "3", "4"] and ticks == [2, 4, 6, 7]
    for event in result.lineage:
        assert ticks[labels.index(str(event["generation"]))] == event["budget"]
    # the exploit marks stand where the lineage says
    marks = {float(line.get_xdata()[0]) for line in figure.axes[0].get_lines() if line.get_marker() == "v"}
    assert marks == {float(e["budget"]) for e in result.lineage if e["donor"] is not None}
    assert [ax.get_xlabel() for ax in figure.axes if ax.get_xlabel()] == ["epochs completed per member (budget)"]
    assert _top_axis(figure.axes[0]).get_xlabel() == "generations completed"


def test_table_and_csv_say_where_the_best_metric_was_reached():
    result = fa.tune.Hyperband(H.Overfits, SPACE, max_resource=9, eta=3, seed=0, executor="sequential").run()
    rows = result.table()
    for row, trial in zip(rows, result.trials):
        entry = next(h for h in trial.history if h["metric"] == row["best_metric"])
        assert row["best_budget"] == entry["budget"] and row["budget"] == trial.budget
    best = next(row for row in rows if row["trial_id"] == result.best_trial.trial_id)
    assert (best["best_metric"], best["best_budget"]) == (result.best_metric, result.best_budget)
    parsed = list(csv.DictReader(io.StringIO(result.to_csv())))
    assert [int(r["best_budget"]) for r in parsed] == [r["best_budget"] for r in rows]


def test_cli_summary_plot_json_and_csv_agree_on_the_best_epoch(mnist_subset, tmp_path, capsys, monkeypatch):
    from fastadapt.tune import plots

    figures = []
    real_save = plots.save_figure
    monkeypatch.setattr(plots, "save_figure", lambda fig, path, dpi: (figures.append(fig),
                                                                      real_save(fig, path, dpi=dpi)))
    out = tmp_path / "asha"
    assert main(["tune", "asha", "--out", str(out), "--executor", "sequential", "--num-trials", "4",
                 "--max-resource", "3", "--hidden", "16", "--train-samples", "600", "--seed", "0"]) == 0
    printed = capsys.readouterr().out
    best = json.loads((out / "result.json").read_text())["best"]
    epochs = int(re.search(r"val_loss [0-9.]+.* after (\d+) epochs", printed).group(1))
    assert epochs == best["budget"]                                          # console = file
    (star,) = [line for ax in figures[0].axes for line in ax.get_lines() if line.get_marker() == "*"]
    assert star.get_xdata()[0] == epochs                                     # = the plot's marker
    assert re.search(rf"trial {best['trial_id']} after {epochs} ", figures[0]._suptitle.get_text())
    rows = list(csv.DictReader(io.StringIO((out / "result.csv").read_text())))
    (row,) = [r for r in rows if int(r["trial_id"]) == best["trial_id"]]
    assert int(row["best_budget"]) == epochs and np.isclose(float(row["best_metric"]), best["metric"])
