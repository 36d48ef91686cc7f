"""TPE, the model-based searcher: it concentrates on good regions, samples
randomly until it has enough observations, honours its random fraction,
fits on the largest budget with enough observations, and models the
branches of conditional spaces; conditional spaces themselves."""

import math

import numpy as np
import pytest

import fastadapt as fa
from fastadapt.tune.searcher import Observation
from fastadapt.tune.space import check_config
from fastadapt.tune.tpe import model_budget

import tune_helpers as H

T = fa.tune
MIXED = {"lr": T.loguniform(1e-5, 1e-1), "x": T.uniform(-1.0, 1.0), "n": T.randint(1, 17),
         "act": T.choice(["tanh", "relu", "gelu"])}
CONDITIONAL = {"optim": T.choice([{"name": "sgd", "momentum": T.uniform(0.0, 1.0)},
                                  {"name": "adam", "beta": T.loguniform(1e-3, 1.0), "k": T.randint(0, 5)}]),
               "width": 32}


def search(seed, searcher=None, num_trials=40, space=MIXED, objective=H.mixed_objective, **kwargs):
    return T.Search(objective, space, num_trials=num_trials, max_resource=1, executor="sequential", seed=seed,
                    searcher=searcher, **kwargs).run()


def test_tpe_beats_random_search_with_the_same_number_of_trials():
    seeds = range(8)
    tpe = [search(s, T.TPE()).best_metric for s in seeds]
    random = [search(s).best_metric for s in seeds]
    # measured (mean best of 40 trials, seeds 0-7): TPE 0.09, random 0.78; TPE is better on 8 of 8 seeds
    assert np.mean(tpe) < 0.5 * np.mean(random)
    assert sum(t < r for t, r in zip(tpe, random)) >= 6


def test_tpe_is_random_search_until_n_startup_observations():
    tpe = search(4, T.TPE(n_startup=6), num_trials=12)
    random = search(4, num_trials=12)
    assert [t.config for t in tpe.trials[:6]] == [t.config for t in random.trials[:6]]
    assert [t.config for t in tpe.trials[6:]] != [t.config for t in random.trials[6:]]


def test_random_fraction_one_proposes_exactly_what_random_search_samples():
    tpe = search(2, T.TPE(n_startup=3, random_fraction=1.0), num_trials=15)
    random = search(2, num_trials=15)
    assert [t.config for t in tpe.trials] == [t.config for t in random.trials]


def test_random_fraction_is_the_share_of_random_proposals_once_the_model_is_used():
    space = {"x": T.uniform(0.0, 1.0)}
    observations = [Observation({"x": x}, 1, (x - 0.3) ** 2, i) for i, x in enumerate(np.linspace(0, 1, 12))]
    searcher = T.TPE(random_fraction=0.3)
    random_ones = 0
    for seed in range(200):
        proposal = searcher.suggest(space, np.random.default_rng(seed), observations, [])
        # the documented order of draws: a coin first, then a draw from the priors when it falls below 0.3
        rng = np.random.default_rng(seed)
        if rng.random() < 0.3:
            assert proposal == T.sample_config(space, rng)
            random_ones += 1
        else:
            assert proposal != T.sample_config(space, rng)
    assert 40 <= random_ones <= 80  # 200 coins at p = 0.3


def test_the_model_fits_the_largest_budget_with_enough_observations():
    space = {"x": T.uniform(0.0, 1.0)}
    xs = np.linspace(0.0, 1.0, 10)
    # at budget 1 the best x are near 0.1; at budget 3 near 0.9; budget 9 has only two observations
    observations = ([Observation({"x": x}, 1, abs(x - 0.1), i) for i, x in enumerate(xs)]
                    + [Observation({"x": x}, 3, abs(x - 0.9), i) for i, x in enumerate(xs[::2])]
                    + [Observation({"x": x}, 9, abs(x - 0.5), i) for i, x in enumerate(xs[:2])])
    assert model_budget(observations, 5) == 3
    assert model_budget(observations, 6) == 1
    assert model_budget(observations, 2) == 9
    assert model_budget(observations, 11) is None

    def proposals(n_startup):
        searcher = T.TPE(n_startup=n_startup, gamma=0.25)
        return np.array([searcher.suggest(space, np.random.default_rng(s), observations, [])["x"]
                         for s in range(40)])

    assert np.median(proposals(5)) > 0.7      # fitted on budget 3
    assert np.median(proposals(6)) < 0.3      # budget 3 has too few: fitted on budget 1
    unfitted = proposals(11)                  # no budget has 11: the prior
    assert np.array_equal(unfitted, [T.sample_config(space, np.random.default_rng(s))["x"] for s in range(40)])


def test_diverged_observations_count_as_the_worst():
    space = {"x": T.uniform(0.0, 1.0)}
    xs = np.linspace(0.0, 1.0, 20)
    # below 0.5 the trials diverged (loss inf); above, finite but large losses
    observations = [Observation({"x": x}, 1, math.inf if x < 0.5 else 100 + x, i) for i, x in enumerate(xs)]
    proposed = [T.TPE().suggest(space, np.random.default_rng(s), observations, [])["x"] for s in range(30)]
    assert np.mean(np.array(proposed) > 0.5) > 0.8


def test_log_int_and_choice_dimensions_are_proposed_inside_their_domains():
    result = search(0, T.TPE(n_startup=5), num_trials=25)
    for trial in result.trials:
        check_config(MIXED, trial.config, "config")
        assert isinstance(trial.config["n"], int) and isinstance(trial.config["lr"], float)
    late = result.trials[15:]
    # the model found the log scale: most late proposals within a decade and a half of 10**-2.5
    assert np.mean([abs(math.log10(t.config["lr"]) + 2.5) < 1.5 for t in late]) >= 0.6


def test_bad_tpe_arguments_are_refused_naming_the_argument():
    for kwargs, error, name in [({"n_startup": 0}, ValueError, "n_startup"), ({"n_startup": 2.5}, TypeError, "n_startup"),
                                ({"random_fraction": 1.5}, ValueError, "random_fraction"),
                                ({"n_candidates": 0}, ValueError, "n_candidates"),
                                ({"gamma": 1.0}, ValueError, "gamma"), ({"gamma": 0}, ValueError, "gamma"),
                                ({"bandwidth_factor": 0}, ValueError, "bandwidth_factor"),
                                ({"min_bandwidth": 0}, ValueError, "min_bandwidth"),
                                ({"prior_weight": -1}, ValueError, "prior_weight"),
                                ({"bandwidth": "silverman"}, ValueError, "bandwidth")]:
        with pytest.raises(error, match=name):
            T.TPE(**kwargs)
    with pytest.raises(TypeError):
        T.TPE(10)  # keyword-only: TPE(10) would not say which setting 10 is


def test_tpe_describes_itself_and_a_resume_with_other_settings_is_refused(tmp_path):
    assert T.TPE(n_startup=4).describe().startswith("tpe(n_startup=4, random_fraction=0.0")
    search(0, T.TPE(n_startup=4), num_trials=3, checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="searcher"):
        T.Search(H.mixed_objective, MIXED, num_trials=3, max_resource=1, executor="sequential", seed=0,
                 searcher=T.TPE(n_startup=5), checkpoint_dir=tmp_path, resume=True).prepare()


def test_a_resumed_tpe_search_continues_with_the_same_proposals(tmp_path):
    full = search(3, T.TPE(n_startup=4), num_trials=12)
    with pytest.raises(H.Interrupt):
        search(3, T.TPE(n_startup=4), num_trials=12, checkpoint_dir=tmp_path, on_result=H.interrupt_after(7))
    resumed = search(3, T.TPE(n_startup=4), num_trials=12, checkpoint_dir=tmp_path, resume=True)
    assert resumed.table() == full.table()


# ---- conditional spaces ------------------------------------------------------------------------------------
def test_a_conditional_space_samples_a_branch_and_only_its_domains():
    rng = np.random.default_rng(0)
    configs = [T.sample_config(CONDITIONAL, rng) for _ in range(40)]
    names = {c["optim"]["name"] for c in configs}
    assert names == {"sgd", "adam"}
    for c in configs:
        assert c["width"] == 32
        keys = set(c["optim"])
        assert keys == ({"name", "momentum"} if c["optim"]["name"] == "sgd" else {"name", "beta", "k"})
        assert all(not isinstance(v, T.Domain) for v in c["optim"].values())
        check_config(CONDITIONAL, c, "config")


@pytest.mark.parametrize("bad, message", [
    ({"optim": {"name": "sgd", "momentum": 1.5}, "width": 32}, "outside its domain"),
    ({"optim": {"name": "sgd", "beta": 0.1, "k": 2}, "width": 32}, "outside its domain"),   # adam's keys, sgd's name
    ({"optim": {"name": "adam", "beta": 0.1}, "width": 32}, "outside its domain"),          # k missing
])
def test_a_config_that_fits_no_branch_is_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        check_config(CONDITIONAL, bad, "config")
    if "k" not in bad["optim"] and bad["optim"]["name"] == "adam":
        # an initial config may be part of one branch: the tuner samples the rest (k) of it
        search = T.Search(H.conditional_objective, CONDITIONAL, num_trials=2, max_resource=1, seed=0,
                          executor="sequential", progress=False, initial_configs=[bad])
        first = search.run().trials[0].config["optim"]
        assert first["name"] == "adam" and first["beta"] == 0.1 and "k" in first
        return
    with pytest.raises(ValueError, match=message):
        T.Search(H.conditional_objective, CONDITIONAL, num_trials=2, max_resource=1, initial_configs=[bad])


def test_initial_configs_and_checkpoints_hold_conditional_configs(tmp_path):
    given = {"optim": {"name": "adam", "beta": 0.1, "k": 2}}
    full = search(1, T.TPE(n_startup=4), num_trials=10, space=CONDITIONAL, objective=H.conditional_objective,
                  initial_configs=[given])
    assert full.trials[0].config == {"optim": {"name": "adam", "beta": 0.1, "k": 2}, "width": 32}
    with pytest.raises(H.Interrupt):
        search(1, T.TPE(n_startup=4), num_trials=10, space=CONDITIONAL, objective=H.conditional_objective,
               initial_configs=[given], checkpoint_dir=tmp_path, on_result=H.interrupt_after(5))
    resumed = search(1, T.TPE(n_startup=4), num_trials=10, space=CONDITIONAL, objective=H.conditional_objective,
                     initial_configs=[given], checkpoint_dir=tmp_path, resume=True)
    assert resumed.table() == full.table()
    assert '"name": "adam"' in resumed.to_json() and "config.optim" in resumed.to_csv()


def test_a_constant_in_a_branch_that_a_checkpoint_cannot_store_is_refused(tmp_path):
    space = {"optim": T.choice([{"name": "sgd", "fn": object(), "momentum": T.uniform(0, 1)}, {"name": "adam"}])}
    with pytest.raises(TypeError, match=r"space\['optim'\] choice 0\['fn'\] .* cannot be stored in the checkpoint"):
        T.Search(H.conditional_objective, space, num_trials=2, max_resource=1, checkpoint_dir=tmp_path)


def test_tpe_models_a_branch_only_on_the_observations_where_it_was_active():
    # sgd's observations: good near momentum 0.8; adam's: all bad. TPE proposes sgd near 0.8.
    observations = []
    for i, m in enumerate(np.linspace(0.0, 1.0, 12)):
        observations.append(Observation({"optim": {"name": "sgd", "momentum": m}, "width": 32}, 1, abs(m - 0.8), i))
    for i, b in enumerate(np.geomspace(1e-3, 1.0, 12)):
        observations.append(Observation({"optim": {"name": "adam", "beta": b, "k": i % 5}, "width": 32}, 1,
                                        5.0 + b, 12 + i))
    proposals = [T.TPE(gamma=0.2).suggest(CONDITIONAL, np.random.default_rng(s), observations, [])
                 for s in range(30)]
    sgd = [p["optim"]["momentum"] for p in proposals if p["optim"]["name"] == "sgd"]
    assert len(sgd) >= 24
    assert np.median(np.abs(np.array(sgd) - 0.8)) < 0.15
    for p in proposals:
        check_config(CONDITIONAL, p, "proposal")


def test_a_branch_nobody_observed_is_sampled_from_its_prior():
    observations = [Observation({"optim": {"name": "sgd", "momentum": m}, "width": 32}, 1, -m, i)
                    for i, m in enumerate(np.linspace(0.0, 1.0, 12))]
    proposals = [T.TPE(prior_weight=5.0).suggest(CONDITIONAL, np.random.default_rng(s), observations, [])
                 for s in range(60)]
    adam = [p for p in proposals if p["optim"]["name"] == "adam"]
    assert adam  # the prior kernel still reaches the unobserved branch
    for p in adam:
        check_config(CONDITIONAL, p, "proposal")


def test_pbt_runs_on_a_conditional_space_and_explore_can_switch_branches():
    result = T.PBT(H.ConditionalPBT, CONDITIONAL, population=6, perturbation_interval=2, max_resource=16, seed=0,
                   resample_probability=0.0, executor="sequential").run()
    for trial in result.trials:
        for entry in trial.config_history:
            check_config(CONDITIONAL, entry["config"], "config")
    switched = [e for e in result.lineage if e["old_config"]["optim"]["name"] != e["new_config"]["optim"]["name"]]
    assert switched
    # a move onto the other branch samples that branch's own domains
    for event in switched:
        assert set(event["new_config"]["optim"]) == ({"name", "momentum"} if event["new_config"]["optim"]["name"]
                                                      == "sgd" else {"name", "beta", "k"})
