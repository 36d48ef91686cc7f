"""BOHB: Hyperband's brackets and rung decisions with configs from a TPE
model per budget; the same result on every executor, resumable,
failures contained, exports and the plot; the asynchronous variant on
ASHA; bad input."""

import json
import math
import os

import numpy as np
import pytest

import fastadapt as fa
from fastadapt.tune.bohb import BOHB_DEFAULTS, bohb_searcher
from fastadapt.tune.executors import ProcessExecutor

import tune_helpers as H

T = fa.tune
SPACE = {"x": T.uniform(0.0, 1.0)}
MIXED = {"lr": T.loguniform(1e-5, 1e-1), "x": T.uniform(-1.0, 1.0), "n": T.randint(1, 17),
         "act": T.choice(["tanh", "relu", "gelu"])}


def test_bohb_runs_hyperbands_bracket_table_and_rung_decisions():
    tuner = T.BOHB(H.ConstantMetric, SPACE, max_resource=27, eta=3, seed=1, executor="sequential")
    assert tuner.schedule == T.hyperband_schedule(27, 3)
    result = tuner.run()
    assert result.algorithm == "bohb" and result.settings["max_resource"] == 27 and result.settings["eta"] == 3
    assert result.settings["searcher"].startswith("tpe(n_startup=None, random_fraction=0.333")
    schedule = T.hyperband_schedule(27, 3)
    assert [len([t for t in result.trials if t.bracket == s]) for s in (3, 2, 1, 0)] == [b[0][0] for b in schedule]
    by_bracket = {}
    for rung in result.rungs:
        by_bracket.setdefault(rung["bracket"], []).append(rung)
    for s, bracket in zip((3, 2, 1, 0), schedule):
        rungs = by_bracket[s]
        assert [(len(r["trials"]), r["resource"]) for r in rungs] == bracket
        for rung, (n_i, _) in zip(rungs, bracket):
            xs = {tid: result.trial(tid).config["x"] for tid in rung["trials"]}
            expected = sorted(xs, key=xs.get)[:n_i // 3] if rung is not rungs[-1] else []
            assert rung["promoted"] == expected
    assert result.total_cost == tuner.planned_cost()


def test_the_first_bracket_is_random_and_later_ones_follow_the_model():
    hyperband = T.Hyperband(H.ConstantMetric, SPACE, max_resource=27, seed=3, executor="sequential").run()
    bohb = T.BOHB(H.ConstantMetric, SPACE, max_resource=27, seed=3, executor="sequential").run()
    first = [t.config for t in bohb.trials if t.bracket == 3]
    assert first == [t.config for t in hyperband.trials if t.bracket == 3]  # no budget has 2 observations yet
    later = [t.config["x"] for t in bohb.trials if t.bracket != 3]
    random = [t.config["x"] for t in hyperband.trials if t.bracket != 3]
    # the metric is x: the model proposes small x (a third of proposals stay random)
    assert np.mean(later) < 0.6 * np.mean(random)


def test_bohb_beats_hyperband_on_a_mixed_space():
    seeds = range(5)
    bohb = [T.BOHB(H.mixed_objective, MIXED, max_resource=27, seed=s, executor="sequential").run().best_metric
            for s in seeds]
    hyperband = [T.Hyperband(H.mixed_objective, MIXED, max_resource=27, seed=s, executor="sequential").run()
                 .best_metric for s in seeds]
    # measured (mean best): seeds 0-4 BOHB 0.36, Hyperband 0.50; seeds 0-19 BOHB 0.49, Hyperband 0.79
    assert np.mean(bohb) < 0.8 * np.mean(hyperband)


def test_one_seed_gives_the_same_result_on_the_sequential_and_process_executors():
    def run(executor):
        return T.BOHB(H.Quadratic, SPACE, max_resource=9, eta=3, seed=7, executor=executor).run()

    sequential = run("sequential")
    parallel = run(ProcessExecutor(max_workers=2))
    assert parallel.table() == sequential.table()
    assert parallel.rungs == sequential.rungs


def test_resume_after_an_interrupt_equals_the_uninterrupted_run(tmp_path):
    def make(**kwargs):
        return T.BOHB(H.Quadratic, SPACE, max_resource=9, eta=3, seed=5, executor="sequential", **kwargs)

    H.CALLS.clear()
    reference = make().run()
    uninterrupted_calls = len(H.CALLS)
    H.CALLS.clear()
    with pytest.raises(H.Interrupt):
        make(checkpoint_dir=tmp_path, on_result=H.interrupt_after(12)).run()
    assert len(H.CALLS) == 12
    resumed = make(checkpoint_dir=tmp_path, resume=True).run()
    assert len(H.CALLS) == uninterrupted_calls  # no finished job ran twice
    assert resumed.table() == reference.table() and resumed.rungs == reference.rungs


def test_failed_and_diverged_trials_are_contained():
    space = {"x": T.uniform(0.0, 1.0), "fail_above": 0.7}
    result = T.BOHB(H.RaisesAboveThreshold, space, max_resource=9, seed=0, executor="sequential").run()
    failed = [t for t in result.trials if t.status == "failed"]
    assert failed and all(t.config["x"] > 0.7 and "ValueError: boom" in t.error for t in failed)
    assert result.best_config["x"] <= 0.7
    diverged = T.BOHB(H.nan_above_half, SPACE, max_resource=9, seed=0, executor="sequential").run()
    nan_trials = [t for t in diverged.trials if t.status == "failed"]
    assert nan_trials and all(t.config["x"] > 0.5 for t in nan_trials)
    assert diverged.best_metric <= 0.5


def test_a_hung_trial_times_out_and_the_run_goes_on():
    space = {"x": T.uniform(0.0, 1.0), "how": "hang"}
    result = T.BOHB(H.Misbehaves, space, max_resource=3, seed=1, trial_timeout=1.0,
                    executor=ProcessExecutor(max_workers=2)).run()
    hung = [t for t in result.trials if t.config["x"] > 0.5]
    assert hung and all(t.status == "failed" and "trial_timeout=1.0 s" in t.error for t in hung)
    assert result.count("failed") == len(hung)


def test_result_json_csv_and_plot(tmp_path):
    result = T.BOHB(H.mixed_objective, MIXED, max_resource=9, seed=0, executor="sequential").run()
    data = json.loads(result.to_json(tmp_path / "result.json"))
    assert data["algorithm"] == "bohb" and len(data["trials"]) == len(result.trials)
    assert (tmp_path / "result.json").exists()
    text = result.to_csv(tmp_path / "result.csv")
    assert text.splitlines()[0].startswith("trial_id,status,bracket") and "config.lr" in text
    path = result.plot(tmp_path / "bohb.png", unit="epochs")
    assert os.path.getsize(path) > 10_000
    figure = result.plot()
    panels = [ax for ax in figure.axes if ax.get_xlabel() in MIXED]
    assert [ax.get_xlabel() for ax in panels] == list(MIXED)
    assert panels[0].get_xscale() == "log" and panels[1].get_xscale() == "linear"   # lr is a log domain
    assert [t.get_text() for t in panels[3].get_xticklabels()] == ["gelu", "relu", "tanh"]


def test_asynchronous_bohb_promotes_like_asha_with_bohbs_model():
    tuner = T.BOHB(H.Quadratic, SPACE, max_resource=9, asynchronous=True, num_trials=20, seed=2,
                   executor="sequential")
    assert isinstance(tuner, T.AsyncBOHB) and isinstance(tuner, T.ASHA)
    result = tuner.run()
    assert result.algorithm == "bohb_async" and len(result.trials) == 20
    # ASHA's mechanics with BOHB's searcher: the same run as ASHA given that searcher
    asha = T.ASHA(H.Quadratic, SPACE, num_trials=20, max_resource=9, seed=2, executor="sequential",
                  searcher=bohb_searcher()).run()
    assert result.table() == asha.table() and result.rungs == asha.rungs
    assert [r["resource"] for r in result.rungs] == [1, 3, 9]
    assert result.rungs[0]["promoted"] and result.count("completed") >= 1
    again = T.AsyncBOHB(H.Quadratic, SPACE, num_trials=20, max_resource=9, seed=2, executor="sequential").run()
    assert again.table() == result.table()


def test_the_model_settings_can_be_overridden():
    tuner = T.BOHB(H.Quadratic, SPACE, max_resource=9, random_fraction=0.5, n_candidates=16)
    assert tuner.searcher.random_fraction == 0.5 and tuner.searcher.n_candidates == 16
    assert tuner.searcher.gamma == BOHB_DEFAULTS["gamma"] and tuner.searcher.n_startup is None
    assert tuner.searcher.min_points(SPACE) == 2  # dims + 1


@pytest.mark.parametrize("kwargs, error, match", [
    ({"searcher": T.TPE()}, TypeError, "BOHB draws its configs from its own TPE model, so it takes no searcher="),
    ({"random_fraction": 2.0}, ValueError, "random_fraction"),
    ({"bandwidth": "x"}, ValueError, "bandwidth"),
    ({"num_trials": 10}, TypeError, "num_trials= belongs to asynchronous=True"),
    ({"asynchronous": "yes"}, TypeError, "asynchronous must be True or False"),
    ({"eta": 1}, ValueError, "eta"),
    ({"max_resource": 0}, ValueError, "max_resource"),
])
def test_bad_bohb_arguments_are_refused_before_anything_runs(kwargs, error, match):
    arguments = {"max_resource": 9, **kwargs}
    with pytest.raises(error, match=match):
        T.BOHB(H.Quadratic, SPACE, **arguments)


def test_bad_async_bohb_arguments():
    with pytest.raises(TypeError, match="no searcher="):
        T.BOHB(H.Quadratic, SPACE, max_resource=9, asynchronous=True, num_trials=5, searcher=T.TPE())
    with pytest.raises(TypeError, match="num_trials"):
        T.BOHB(H.Quadratic, SPACE, max_resource=9, asynchronous=True)


def test_the_plot_has_a_panel_for_each_branch_hyperparameter_of_a_conditional_space():
    space = {"optim": T.choice([{"name": "sgd", "momentum": T.uniform(0.0, 1.0)},
                                {"name": "adam", "beta": T.loguniform(1e-3, 1.0), "k": T.randint(0, 5)}])}
    result = T.BOHB(H.conditional_objective, space, max_resource=9, seed=0, executor="sequential").run()
    figure = result.plot()
    panels = {ax.get_xlabel(): ax for ax in figure.axes if ax.get_xlabel()}
    assert {"optim", "optim/momentum", "optim/beta", "optim/k"} <= set(panels)
    assert panels["optim/beta"].get_xscale() == "log" and panels["optim/momentum"].get_xscale() == "linear"
    sgd = sum(1 for t in result.trials for e in t.history if t.config_at(e["budget"])["optim"]["name"] == "sgd")
    assert len(panels["optim/momentum"].collections[0].get_offsets()) == sgd  # only evaluations on that branch
