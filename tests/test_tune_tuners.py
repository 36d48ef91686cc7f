"""Hyperband, successive halving, ASHA and PBT decisions on deterministic
fake trainables (tune_helpers), the result object, its exports and plots."""

import csv
import io
import json
import math
import sys

import pytest

import fastadapt as fa

import tune_helpers as H

T = fa.tune
SPACE = {"x": T.uniform(0.0, 1.0)}


# ---- Hyperband and successive halving ----------------------------------------
def test_hyperband_promotes_exactly_the_best_of_each_rung():
    tuner = T.Hyperband(H.ConstantMetric, SPACE, max_resource=27, eta=3, seed=1, executor="sequential")
    result = tuner.run()
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
    for trial in result.trials:
        # a trial stops at the resource of the last rung it was in, and trains no more
        last = max(r["resource"] for r in result.rungs if trial.trial_id in r["trials"])
        assert trial.budget == last == trial.cost
        assert trial.status == ("completed" if last == 27 else "stopped")
    assert result.total_cost == tuner.planned_cost()
    best = min(result.trials, key=lambda t: (t.metric, t.trial_id))
    assert result.best_trial is best and result.best_config == best.config


def test_function_trainable_retrains_from_scratch_and_costs_more():
    resumable = T.Hyperband(H.Quadratic, SPACE, max_resource=9, eta=3, seed=0, executor="sequential")
    function = T.Hyperband(H.quadratic_function, SPACE, max_resource=9, eta=3, seed=0, executor="sequential")
    a, b = resumable.run(), function.run()
    # same metrics and decisions (the metric depends on the total budget only) ...
    assert [(t.config, t.budget, t.history, t.status) for t in a.trials] == \
           [(t.config, t.budget, t.history, t.status) for t in b.trials]
    # ... but a function retrains every promoted config from scratch
    assert a.total_cost == resumable.planned_cost() < b.total_cost == function.planned_cost()
    assert b.best_state is None and a.best_state == {"trained": 9}


def test_best_is_the_best_evaluation_seen_and_its_state_is_kept():
    result = T.Hyperband(H.Overfits, SPACE, max_resource=9, eta=3, seed=0, executor="sequential").run()
    evaluations = [(h["metric"], t.trial_id, h["budget"]) for t in result.trials for h in t.history]
    metric, trial_id, budget = min(evaluations)
    assert (result.best_metric, result.best_trial.trial_id, result.best_budget) == (metric, trial_id, 3)
    # the trial went on past its best (or was stopped there); best_state is the snapshot from budget 3
    assert result.best_state == {"trained": 3}
    assert result.best_config == result.best_trial.config


def test_successive_halving_is_one_bracket():
    result = T.SuccessiveHalving(H.ConstantMetric, SPACE, num_trials=9, min_resource=1, max_resource=9, eta=3,
                                 seed=0, executor="sequential").run()
    assert [(len(r["trials"]), r["resource"]) for r in result.rungs] == [(9, 1), (3, 3), (1, 9)]
    assert result.count("completed") == 1 and result.count("stopped") == 8
    assert result.best_config["x"] == min(t.config["x"] for t in result.trials)


def test_initial_configs_run_first_and_partial_ones_are_completed():
    space = {"x": T.uniform(0.0, 1.0), "y": T.choice([1, 2])}
    result = T.SuccessiveHalving(H.ConstantMetric, space, num_trials=3, max_resource=3, eta=3, seed=0,
                                 executor="sequential", initial_configs=[{"x": 0.5, "y": 2}, {"x": 0.25}]).run()
    assert result.trials[0].config == {"x": 0.5, "y": 2}
    assert result.trials[1].config["x"] == 0.25 and result.trials[1].config["y"] in (1, 2)
    with pytest.raises(ValueError, match=r"initial_configs\[0\]\['x'\] = 3 is outside its domain"):
        T.Hyperband(H.ConstantMetric, space, max_resource=9, initial_configs=[{"x": 3}])


# ---- ASHA ----------------------------------------------------------------------
def test_asha_promotes_without_waiting_for_a_full_rung():
    H.CALLS.clear()
    result = T.ASHA(H.Quadratic, SPACE, num_trials=12, max_resource=9, eta=3, seed=0,
                    executor="sequential").run()
    # Job order with one worker: three new configs at rung 0, then at once a promotion of the best of them.
    starts = [call["from"] for call in H.CALLS]
    assert starts[:4] == [0, 0, 0, 1]
    first_three = [call["x"] for call in H.CALLS[:3]]
    best_of_three = min(first_three, key=lambda x: (x - 0.3) ** 2)
    assert H.CALLS[3]["x"] == best_of_three and H.CALLS[3]["budget"] == 2   # rung 0 (1 unit) -> rung 1 (3 units)
    # Every promotion out of rung k was in the top floor(|rung k| / eta) of the results there at that moment.
    rung0 = {}
    for call in H.CALLS:
        if call["from"] == 0:
            rung0[call["x"]] = (call["x"] - 0.3) ** 2 + 0.5
        elif call["from"] == 1:
            quota = len(rung0) // 3
            assert call["x"] in sorted(rung0, key=rung0.get)[:quota]
    assert result.rungs[0]["resource"] == 1 and result.rungs[-1]["resource"] == 9
    assert len(result.trials) == 12 and result.count("failed") == 0
    assert result.count("completed") == len(result.rungs[-1]["trials"]) >= 1
    assert all(t.status in ("completed", "stopped") for t in result.trials)


def test_asha_is_reproducible_with_the_sequential_executor():
    runs = [T.ASHA(H.Quadratic, SPACE, num_trials=15, max_resource=27, eta=3, seed=4,
                   executor="sequential").run().table() for _ in range(2)]
    assert runs[0] == runs[1]


# ---- PBT -------------------------------------------------------------------------
RATE_SPACE = {"rate": T.uniform(0.1, 10.0)}


def test_pbt_exploit_copies_state_and_config_of_a_top_member():
    rates = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
    result = T.PBT(H.Accumulator, RATE_SPACE, population=8, perturbation_interval=2, max_resource=4,
                   quantile=0.25, explore=False, mode="max", seed=0, executor="sequential",
                   initial_configs=[{"rate": r} for r in rates]).run()
    # After the first interval the scores are 2 * rate: members 0, 1 are the bottom quarter, 6, 7 the top.
    events = result.lineage
    assert [e["member"] for e in events] == [0, 1]
    for event in events:
        assert event["donor"] in (6, 7) and event["generation"] == 1 and event["budget"] == 2
        assert event["new_config"] == {"rate": rates[event["donor"]]}
        assert event["changes"] == {"rate": {"from": rates[event["member"]], "to": rates[event["donor"]],
                                             "how": "copied"}}
        member = result.trial(event["member"])
        donor_score = 2 * rates[event["donor"]]
        # the next metric continues from the donor's score with the donor's rate
        assert member.history[1]["metric"] == donor_score + 2 * rates[event["donor"]]
    untouched = result.trial(4)
    assert [h["metric"] for h in untouched.history] == [10.0, 20.0]


def test_pbt_explore_perturbs_within_bounds_and_set_config_wins_over_loaded_state():
    result = T.PBT(H.Accumulator, {"rate": T.uniform(0.5, 2.0)}, population=6, perturbation_interval=1,
                   max_resource=40, quantile=0.5, resample_probability=0.2, perturbation_factors=(0.5, 2.0),
                   boundary="reflect", mode="max", seed=3, executor="sequential").run()
    assert len(result.lineage) == 3 * 39          # the bottom half of six, at every ready point but the last
    hows = set()
    for event in result.lineage:
        assert event["donor"] is not None and event["metric"] <= event["donor_metric"]
        change = event["changes"]["rate"]
        hows.add(change["how"])
        assert 0.5 <= event["new_config"]["rate"] <= 2.0
    assert {"copied, resampled", "copied, x0.5", "copied, x2"} <= hows
    for trial in result.trials:
        for entry in trial.config_history:
            assert 0.5 <= entry["config"]["rate"] <= 2.0
        # the rate the trainable trained with is always the member's own config, never the loaded donor's
        for h in trial.history:
            config = [e["config"] for e in trial.config_history if e["budget"] < h["budget"]][-1]
            assert h["rate_in_effect"] == config["rate"]


def test_pbt_perturbation_factors_scale_the_donor_value():
    result = T.PBT(H.Accumulator, RATE_SPACE, population=4, perturbation_interval=1, max_resource=6,
                   quantile=0.25, resample_probability=0.0, mode="max", seed=5, executor="sequential").run()
    for event in result.lineage:
        donor_rate = result.trial(event["donor"]).config_history
        copied_from = [e["config"]["rate"] for e in donor_rate if e["budget"] <= event["budget"]][-1]
        factor = float(event["changes"]["rate"]["how"].split("x")[1])
        assert factor in (0.8, 1.2)
        assert event["new_config"]["rate"] == pytest.approx(min(max(copied_from * factor, 0.1), 10.0))


def test_pbt_best_config_is_the_config_at_the_best_evaluation():
    result = T.PBT(H.Accumulator, RATE_SPACE, population=4, perturbation_interval=1, max_resource=5, mode="max",
                   seed=1, executor="sequential").run()
    best, budget = result.best_trial, result.best_budget
    assert result.best_metric == max(h["metric"] for t in result.trials for h in t.history)
    entry = next(h for h in best.history if h["budget"] == budget)
    assert result.best_config["rate"] == entry["rate_in_effect"]
    assert result.best_state["score"] == result.best_metric


def test_pbt_explore_only_perturbs_every_member_and_grid_changes_nothing():
    explore_only = T.PBT(H.Accumulator, RATE_SPACE, population=3, perturbation_interval=2, max_resource=6,
                         exploit=False, mode="max", seed=0, executor="sequential").run()
    assert [(e["generation"], e["member"]) for e in explore_only.lineage] == [(1, 0), (1, 1), (1, 2),
                                                                             (2, 0), (2, 1), (2, 2)]
    assert all(e["donor"] is None for e in explore_only.lineage)
    grid = T.PBT(H.Accumulator, RATE_SPACE, population=3, perturbation_interval=2, max_resource=6,
                 exploit=False, explore=False, mode="max", seed=0, executor="sequential").run()
    assert grid.lineage == [] and all(len(t.config_history) == 1 for t in grid.trials)
    assert all(t.budget == 6 and t.status == "completed" for t in grid.trials)


def test_asynchronous_pbt_decides_per_member_against_the_latest_metrics():
    result = T.PBT(H.Accumulator, RATE_SPACE, population=4, perturbation_interval=2, max_resource=8,
                   synchronous=False, mode="max", seed=0, executor="sequential").run()
    assert all(t.budget == 8 and t.status == "completed" for t in result.trials)
    assert result.lineage and all(e["generation"] is None for e in result.lineage)
    for event in result.lineage:
        assert event["donor_budget"] >= 2   # a donor always has a saved state behind its metric


def test_asynchronous_pbt_shares_fewer_workers_fairly_among_the_members():
    # One worker, four members: the least-trained member runs next (ties by id), so the members take turns
    # instead of the first training to the end before the next starts (then every donor would be a finished
    # member and async PBT would be sequential training with copies).
    order = []
    result = T.PBT(H.Accumulator, RATE_SPACE, population=4, perturbation_interval=2, max_resource=8,
                   synchronous=False, mode="max", seed=0, executor="sequential",
                   on_result=lambda trial: order.append((trial.budget, trial.trial_id))).run()
    assert order == sorted(order) and len(order) == 16
    assert result.lineage and all(e["donor_budget"] in (e["budget"] - 2, e["budget"]) for e in result.lineage)


def test_pbt_refuses_trainables_it_cannot_drive():
    with pytest.raises(TypeError, match="needs save\\(\\) and load\\(\\).*plain function cannot"):
        T.PBT(H.quadratic_function, SPACE, population=2, perturbation_interval=1)
    with pytest.raises(TypeError, match="set_config\\(config\\); define it"):
        T.PBT(H.NoSetConfig, SPACE, population=2, perturbation_interval=1)
    with pytest.raises(ValueError, match="quantile=0.75 must be in \\(0, 0.5\\]"):
        T.PBT(H.Accumulator, RATE_SPACE, population=4, perturbation_interval=1, quantile=0.75)
    with pytest.raises(ValueError, match="mutations names \\['lr'\\]"):
        T.PBT(H.Accumulator, RATE_SPACE, population=4, perturbation_interval=1, mutations=["lr"])
    assert T.PBT(H.Accumulator, RATE_SPACE, population=4, perturbation_interval=3).max_resource == 30


# ---- results ---------------------------------------------------------------------
def test_result_exports_json_and_csv(tmp_path):
    result = T.Hyperband(H.RaisesAboveThreshold, {"x": T.uniform(0.0, 1.0), "fail_above": 0.8}, max_resource=9,
                         eta=3, seed=2, executor="sequential").run()
    text = result.to_json(tmp_path / "r.json")
    data = json.loads((tmp_path / "r.json").read_text())
    assert data == json.loads(text)
    assert data["algorithm"] == "hyperband" and data["settings"] == {"max_resource": 9, "eta": 3}
    assert data["best"]["trial_id"] == result.best_trial.trial_id
    assert len(data["trials"]) == len(result.trials) and data["total_cost"] == result.total_cost
    failed = [t for t in data["trials"] if t["status"] == "failed"]
    assert failed and all("ValueError: boom" in t["error"] for t in failed)
    rows = list(csv.DictReader(io.StringIO(result.to_csv(tmp_path / "r.csv"))))
    assert (tmp_path / "r.csv").read_text() == result.to_csv()
    assert [int(r["trial_id"]) for r in rows] == [t.trial_id for t in result.trials]
    assert {"status", "budget", "cost", "metric", "config.x", "config.fail_above", "error"} <= set(rows[0])
    assert {r["error"] for r in rows if r["status"] == "failed"} == {f"ValueError: boom at x={t.config['x']:.3f}"
                                                                     for t in result.trials if t.status == "failed"}


def test_json_has_no_nan():
    result = T.SuccessiveHalving(H.nan_above_half, SPACE, num_trials=9, max_resource=9, seed=0,
                                 executor="sequential").run()
    data = json.loads(result.to_json())
    nan_trials = [t for t in result.trials if t.metric is not None and math.isnan(t.metric)]
    assert nan_trials and all(data["trials"][t.trial_id]["history"][0]["metric"] is None for t in nan_trials)
    assert not math.isnan(result.best_metric)
    promoted = {tid for r in result.rungs for tid in r["promoted"]}
    assert not promoted & {t.trial_id for t in nan_trials}   # NaN ranks last and is never promoted


def test_plots_are_written(tmp_path):
    pytest.importorskip("matplotlib")
    hb = T.Hyperband(H.Quadratic, SPACE, max_resource=27, eta=3, seed=0, executor="sequential").run()
    assert hb.plot(tmp_path / "rungs.png") == str(tmp_path / "rungs.png")
    pbt = T.PBT(H.Accumulator, RATE_SPACE, population=4, perturbation_interval=2, max_resource=10, mode="max",
                seed=0, executor="sequential").run()
    assert pbt.plot(tmp_path / "population.png") == str(tmp_path / "population.png")
    for name in ("rungs.png", "population.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    figure = pbt.plot_population()
    assert [ax.get_ylabel() for ax in figure.axes] == ["rate", "metric"]


def test_progress_lines(capsys):
    T.SuccessiveHalving(H.Quadratic, SPACE, num_trials=3, max_resource=3, eta=3, seed=0, executor="sequential",
                        progress=True).run()
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 4 and lines[0].startswith("[successive_halving 1/4] trial 0 budget 1: metric ")
    assert "| best " in lines[-1]


@pytest.mark.parametrize("kwargs, error, match", [
    ({"mode": "minimize"}, ValueError, "mode='minimize' must be one of 'min', 'max'"),
    ({"executor": "threads"}, ValueError, "executor must be one of 'sequential', 'process', 'ray'"),
    ({"executor": 3}, TypeError, "executor must be"),
    ({"seed": -1}, ValueError, "seed=-1 must be >= 0"),
    ({"max_retries": -1}, ValueError, "max_retries=-1 must be >= 0"),
    ({"resume": True}, ValueError, "resume needs checkpoint_dir="),
    ({"resume": "yes", "checkpoint_dir": "x"}, ValueError, "resume must be False, True or 'auto'"),
    ({"metric": ""}, TypeError, "metric must be a non-empty string"),
    ({"initial_configs": {"x": 0.5}}, TypeError, "initial_configs must be a list"),
])
def test_bad_tuner_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        T.Hyperband(H.Quadratic, SPACE, max_resource=9, **kwargs).run()


def test_an_unknown_executor_is_refused_when_the_tuner_is_built():
    with pytest.raises(ValueError, match="executor must be one of 'sequential', 'process', 'ray'.*got 'threads'"):
        T.Hyperband(H.Quadratic, SPACE, max_resource=9, executor="threads")


def test_bad_trainables():
    with pytest.raises(TypeError, match="has no train\\(budget\\) method"):
        T.Hyperband(dict, SPACE, max_resource=9)
    with pytest.raises(TypeError, match="does not accept two positional arguments"):
        T.Hyperband(lambda config: 0.0, SPACE, max_resource=9)
    with pytest.raises(TypeError, match="trainable must be a class"):
        T.Hyperband(3, SPACE, max_resource=9)

    class SaveOnly:
        def train(self, budget):
            return 0.0

        def save(self):
            return None

    with pytest.raises(TypeError, match="defines save without load"):
        T.Hyperband(SaveOnly, SPACE, max_resource=9)


def test_train_returning_a_dict_needs_the_metric_key():
    with pytest.warns(RuntimeWarning, match=r"every trial failed \(3 of 3\)"):
        result = T.SuccessiveHalving(H.Accumulator, RATE_SPACE, num_trials=3, max_resource=3, metric="loss",
                                     seed=0, executor="sequential").run()
    assert result.count("failed") == 3 and result.best_trial is None
    assert "without the tuner's metric 'loss' (keys: ['metric', 'rate_in_effect'])" in result.trials[0].error
    ok = T.SuccessiveHalving(H.Accumulator, RATE_SPACE, num_trials=3, max_resource=3, mode="max", seed=0,
                             executor="sequential").run()
    assert set(ok.trials[0].history[0]) == {"budget", "metric", "rate_in_effect"}


def test_optional_dependencies_are_named_when_missing(monkeypatch):
    result = T.SuccessiveHalving(H.Quadratic, SPACE, num_trials=3, max_resource=3, seed=0,
                                 executor="sequential").run()
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)   # import fails as if matplotlib were absent
    with pytest.raises(ImportError, match=r'pip install "matplotlib>=3\.6" \(from a fastadapt checkout: pip install "\.\[plot\]"\)'):
        result.plot()
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ImportError, match=r'executor="ray" needs Ray: pip install "ray>=2\.9" \(from a fastadapt checkout: pip install "\.\[ray\]"\)'):
        T.SuccessiveHalving(H.Quadratic, SPACE, num_trials=3, max_resource=3, executor="ray").run()
