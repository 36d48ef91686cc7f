"""MedianStopping: the median stopping rule's decisions on handcrafted curves,
its grace period and minimum sample count, resume, executors, failures and
bad input."""

import math
import os

import pytest

import fastadapt as fa
from fastadapt.tune.executors import ProcessExecutor
from fastadapt.tune.median import running_average

import median_helpers as M
import tune_helpers as H

T = fa.tune
CURVE_SPACE = {"k": T.choice(sorted(M.CURVES))}
ORDER = [{"k": k} for k in sorted(M.CURVES)]


def curves(**kwargs):
    args = dict(num_trials=len(ORDER), max_resource=6, interval=1, initial_configs=ORDER, seed=0,
                executor="sequential")
    args.update(kwargs)
    return T.MedianStopping(M.Curve, CURVE_SPACE, **args)


def stopped_at(result):
    return {t.config["k"]: t.budget for t in result.trials if t.status == "stopped"}


def test_the_rule_on_handcrafted_curves():
    result = curves().run()
    # Trials 0-2 complete (fewer than min_samples=3 others before them). Worked by hand, see median_helpers:
    # k=3 at t=1: best 9 > median(5, 6, 7) = 6; k=4 at t=5: best 4.3 > median of running averages (3, 4, 5) = 4,
    # though at t=3 its 4.5 beat the averages' median 5 (the last values' median, 4, would have stopped it);
    # k=5 at t=2: best 5.8 > median(4.5, 5.25, 5.5, 6.5) = 5.375, after passing t=1 (5.8 < 6).
    assert stopped_at(result) == {3: 1, 4: 5, 5: 2}
    assert [t.status for t in result.trials[:3]] == ["completed"] * 3
    assert [e["budget"] for e in result.trials[4].history] == [1, 2, 3, 4, 5]
    assert result.total_cost == 3 * 6 + 1 + 5 + 2
    assert result.algorithm == "median_stopping"
    assert result.settings == {"num_trials": 6, "max_resource": 6, "interval": 1, "grace_period": 1,
                               "min_samples": 3}
    assert result.best_config == {"k": 0}


def test_running_average_is_the_mean_loss_up_to_the_budget():
    trial = T.TrialRecord(trial_id=0, config={}, history=[{"budget": 1, "metric": 4.0},
                                                          {"budget": 2, "metric": 2.0},
                                                          {"budget": 3, "metric": 0.0}])
    assert running_average(trial, 2, "min") == 3.0
    assert running_average(trial, 3, "max") == -2.0   # signed: lower is better
    trial.history.append({"budget": 4, "metric": math.nan})
    assert running_average(trial, 4, "min") == math.inf


def test_mode_max_flips_the_comparison():
    negated = {k: [-v for v in c] for k, c in M.CURVES.items()}
    original = dict(M.CURVES)
    M.CURVES.update(negated)
    try:
        result = curves(mode="max").run()
    finally:
        M.CURVES.update(original)
    assert stopped_at(result) == {3: 1, 4: 5, 5: 2}


def test_no_trial_stops_before_the_grace_period():
    result = curves(grace_period=3).run()
    # k=3 at t=3: best 9 > median(4, 5, 6); k=5 first judged at t=3 (running averages 4, 5, 6, 9, 5.0): 5.8 > 5
    assert stopped_at(result) == {3: 3, 4: 5, 5: 3}
    assert all(t.budget >= 3 for t in result.trials)


def test_no_trial_stops_until_min_samples_others_reached_its_budget():
    result = curves(min_samples=4).run()
    # k=3 has only 3 others before it: it completes, and then counts for the later ones.
    assert result.trial(3).status == "completed"
    assert 3 not in stopped_at(result) and 5 in stopped_at(result)
    assert curves(min_samples=6).run().count("stopped") == 0


def test_with_interval_the_rule_judges_every_interval_units():
    result = curves(interval=2).run()
    for trial in result.trials:
        assert [e["budget"] for e in trial.history] == list(range(2, trial.budget + 1, 2))
    assert stopped_at(result)[3] == 2


def test_the_same_seed_gives_the_same_result():
    space = {"x": T.uniform(0.0, 1.0)}
    runs = [T.MedianStopping(H.Quadratic, space, num_trials=12, max_resource=6, interval=2, min_samples=2,
                             seed=4, executor="sequential").run() for _ in range(2)]
    assert runs[0].table() == runs[1].table()
    assert runs[0].count("stopped") >= 1   # the rule did something worth reproducing


def test_resume_after_an_interrupted_run_repeats_nothing(tmp_path):
    space = {"x": T.uniform(0.0, 1.0)}

    def make(**kw):
        return T.MedianStopping(H.Quadratic, space, num_trials=10, max_resource=6, interval=1, min_samples=2,
                                seed=7, executor="sequential", **kw)

    H.CALLS.clear()
    reference = make().run()
    total_calls = len(H.CALLS)
    assert reference.count("stopped") >= 1
    H.CALLS.clear()
    with pytest.raises(H.Interrupt):
        make(checkpoint_dir=tmp_path, on_result=H.interrupt_after(13)).run()
    resumed = make(checkpoint_dir=tmp_path, resume=True).run()
    assert len(H.CALLS) == total_calls   # no finished job ran twice
    assert resumed.table() == reference.table()
    with pytest.raises(ValueError, match="differs in: settings"):
        T.MedianStopping(H.Quadratic, space, num_trials=10, max_resource=6, interval=1, min_samples=3, seed=7,
                         executor="sequential", checkpoint_dir=tmp_path, resume=True).prepare()


def test_one_process_worker_gives_the_sequential_result():
    sequential = curves().run()
    one_worker = curves(executor=ProcessExecutor(max_workers=1)).run()
    assert one_worker.table() == sequential.table()


def test_two_process_workers_run_every_trial_to_an_end():
    result = curves(executor=ProcessExecutor(max_workers=2)).run()
    assert {t.status for t in result.trials} <= {"completed", "stopped"}
    # Which trials stop depends on the order jobs finish; the best curve (k=0) is never worse than a median.
    assert result.trial(0).status == "completed" and result.best_config == {"k": 0}
    assert all([e["budget"] for e in t.history] == list(range(1, t.budget + 1)) for t in result.trials)


def test_on_ray():
    ray = pytest.importorskip("ray")
    tests_dir = os.path.dirname(os.path.abspath(__file__))
    paths = os.pathsep.join([tests_dir] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": paths}})
    try:
        # one CPU: one job at a time, so Ray gives the sequential decisions
        assert curves(executor="ray").run().table() == curves().run().table()
    finally:
        if started:
            ray.shutdown()


def test_failed_nan_and_hung_trials_are_contained():
    space = {"x": T.uniform(0.0, 1.0), "fail_above": 0.8}
    raising = T.MedianStopping(H.RaisesAboveThreshold, space, num_trials=10, max_resource=4, min_samples=2,
                               seed=1, executor="sequential").run()
    failed = [t for t in raising.trials if t.status == "failed"]
    assert failed and all(t.config["x"] > 0.8 and "boom" in t.error for t in failed)
    assert raising.count("failed") < len(raising.trials) and raising.best_config["x"] <= 0.8

    nan = T.MedianStopping(H.nan_above_half, {"x": T.uniform(0.0, 1.0)}, num_trials=8, max_resource=3,
                           min_samples=2, seed=2, executor="sequential").run()
    assert {t.status for t in nan.trials if t.config["x"] > 0.5} == {"failed"}
    assert nan.best_config["x"] <= 0.5

    hung = T.MedianStopping(H.Misbehaves, {"x": T.uniform(0.0, 1.0), "how": "hang"}, num_trials=3,
                            max_resource=2, seed=1, executor=ProcessExecutor(max_workers=2),
                            trial_timeout=1.0).run()
    late = [t for t in hung.trials if t.config["x"] > 0.5]
    assert late and all(t.status == "failed" and "trial_timeout=1.0" in t.error for t in late)


def test_diverged_others_count_as_the_worst():
    # Two of the three others diverged at step 1: the median is inf, so nothing finite is stopped.
    trials = [T.TrialRecord(trial_id=i, config={}, budget=1, history=[{"budget": 1, "metric": m}])
              for i, m in enumerate([1.0, math.nan, math.inf, 50.0])]
    tuner = curves()
    tuner.prepare()
    tuner._trials = dict(enumerate(trials))
    assert tuner.median_at(trials[3]) == math.inf and not tuner._should_stop(trials[3])
    trials[1].history[0]["metric"] = 2.0
    assert tuner.median_at(trials[3]) == 2.0 and tuner._should_stop(trials[3])


def test_result_files_and_plot(tmp_path):
    pytest.importorskip("matplotlib")
    result = curves().run()
    result.to_json(tmp_path / "r.json")
    result.to_csv(tmp_path / "r.csv")
    assert '"algorithm": "median_stopping"' in (tmp_path / "r.json").read_text()
    assert (tmp_path / "r.csv").read_text().count("stopped") == 3
    assert result.plot(tmp_path / "r.png", unit="epochs") == str(tmp_path / "r.png")
    figure = result.plot()
    texts = [t.get_text() for ax in figure.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
    assert any("stopped by the median rule: 3 trials" in t for t in texts)
    assert any("trained to the full budget" in t for t in texts)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"interval": 6}, ValueError, "interval=6 >= max_resource=6.*fa.tune.Search"),
    ({"interval": 0}, ValueError, "interval"),
    ({"grace_period": 6}, ValueError, "grace_period=6 >= max_resource=6"),
    ({"grace_period": 0}, ValueError, "grace_period"),
    ({"min_samples": 0}, ValueError, "min_samples"),
    ({"min_samples": 2.5}, TypeError, "min_samples"),
    ({"max_resource": 1}, ValueError, "max_resource"),
    ({"num_trials": 0}, ValueError, "num_trials"),
    ({"searcher": "tpe"}, TypeError, "fa.tune.Searcher"),
])
def test_bad_input_is_refused_before_anything_runs(kwargs, error, message):
    H.CALLS.clear()
    with pytest.raises(error, match=message):
        T.MedianStopping(H.Quadratic, {"x": T.uniform(0.0, 1.0)},
                         **{"num_trials": 4, "max_resource": 6, **kwargs})
    assert H.CALLS == []
