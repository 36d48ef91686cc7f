"""Full-budget search and the searcher hook every tuner draws new configs from."""

import pytest

import fastadapt as fa
import tune_helpers as h

SPACE = {"x": fa.tune.uniform(0.0, 1.0)}


class Ladder(fa.tune.Searcher):
    """Proposes x = 0.1 * (number of observations so far), capped at 1."""

    name = "ladder"

    def suggest(self, space, rng, observations, pending):
        return {"x": min(1.0, 0.1 * len(observations))}


class Outside(fa.tune.Searcher):
    name = "outside"

    def suggest(self, space, rng, observations, pending):
        return {"x": 2.0}


class Incomplete(fa.tune.Searcher):
    name = "incomplete"

    def suggest(self, space, rng, observations, pending):
        return {}


def test_search_trains_every_trial_to_the_full_budget_in_steps():
    result = fa.tune.Search(h.Quadratic, SPACE, num_trials=4, max_resource=6, interval=2,
                            executor="sequential", seed=0).run()
    assert [t.status for t in result.trials] == ["completed"] * 4
    assert [[e["budget"] for e in t.history] for t in result.trials] == [[2, 4, 6]] * 4
    assert [t.cost for t in result.trials] == [6] * 4  # resumable: each step continues
    assert result.settings == {"num_trials": 4, "max_resource": 6, "interval": 2}


def test_search_with_the_default_searcher_samples_the_same_configs_as_the_space():
    import numpy as np
    result = fa.tune.Search(h.quadratic_function, SPACE, num_trials=3, max_resource=2, executor="sequential",
                            seed=5).run()
    rng = np.random.default_rng(np.random.SeedSequence(5).spawn(2)[0])
    assert [t.config for t in result.trials] == [fa.tune.sample_config(SPACE, rng) for _ in range(3)]


def test_a_searcher_sees_the_observations_recorded_before_it_proposes():
    result = fa.tune.Search(h.Quadratic, SPACE, num_trials=4, max_resource=3, interval=1,
                            executor="sequential", seed=0, searcher=Ladder()).run()
    # sequential: trial k starts after the 3 evaluations of each earlier trial
    assert [t.config["x"] for t in result.trials] == pytest.approx([0.0, 0.3, 0.6, 0.9])
    assert result.settings["searcher"] == "ladder()"


def test_initial_configs_come_before_the_searcher():
    result = fa.tune.Search(h.Quadratic, SPACE, num_trials=2, max_resource=1, executor="sequential", seed=0,
                            searcher=Ladder(), initial_configs=[{"x": 0.77}]).run()
    assert [t.config["x"] for t in result.trials] == pytest.approx([0.77, 0.1])


@pytest.mark.parametrize("searcher, message", [(Outside(), "outside its domain"), (Incomplete(), "lacks x")])
def test_a_proposal_outside_the_space_is_refused_naming_the_searcher(searcher, message):
    tuner = fa.tune.Search(h.Quadratic, SPACE, num_trials=2, max_resource=1, executor="sequential", seed=0,
                           searcher=searcher)
    with pytest.raises(ValueError, match=message) as info:
        tuner.run()
    assert searcher.name in str(info.value)


def test_a_searcher_that_is_not_one_is_a_type_error():
    with pytest.raises(TypeError, match="fa.tune.Searcher"):
        fa.tune.Search(h.Quadratic, SPACE, num_trials=2, max_resource=1, searcher="tpe")


def test_resume_with_another_searcher_is_refused(tmp_path):
    fa.tune.Search(h.Quadratic, SPACE, num_trials=2, max_resource=2, executor="sequential", seed=0,
                   searcher=Ladder(), checkpoint_dir=tmp_path).run()
    with pytest.raises(ValueError, match="searcher"):
        fa.tune.Search(h.Quadratic, SPACE, num_trials=2, max_resource=2, executor="sequential", seed=0,
                       checkpoint_dir=tmp_path, resume=True).prepare()


def test_a_resumed_search_continues_with_the_same_proposals(tmp_path):
    full = fa.tune.Search(h.Quadratic, SPACE, num_trials=5, max_resource=2, interval=1, executor="sequential",
                          seed=3, searcher=Ladder()).run()
    stop_after = []

    def interrupt(trial):
        stop_after.append(trial.trial_id)
        if len(stop_after) == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fa.tune.Search(h.Quadratic, SPACE, num_trials=5, max_resource=2, interval=1, executor="sequential",
                       seed=3, searcher=Ladder(), checkpoint_dir=tmp_path, on_result=interrupt).run()
    resumed = fa.tune.Search(h.Quadratic, SPACE, num_trials=5, max_resource=2, interval=1, executor="sequential",
                             seed=3, searcher=Ladder(), checkpoint_dir=tmp_path, resume=True).run()
    assert [t.config for t in resumed.trials] == [t.config for t in full.trials]
    assert [t.history for t in resumed.trials] == [t.history for t in full.trials]
