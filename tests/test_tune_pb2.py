"""PB2 (Population Based Bandits) and its Gaussian process: the GP against
direct NumPy algebra, the explore step's choices, and the guarantees every
tuner keeps (same results on every executor, resume, contained failures)."""

import math
import os

import numpy as np
import pytest

import fastadapt as fa
from fastadapt.tune import gp as G
from fastadapt.tune.executors import ProcessExecutor

import tune_helpers as H

T = fa.tune
RATE_SPACE = {"rate": T.uniform(0.1, 10.0)}


# ---- the Gaussian process --------------------------------------------------------


def kernel(t1, h1, t2, h2, lengthscale, eps):
    """The time-varying SE kernel written out pair by pair."""
    out = np.empty((len(t1), len(t2)))
    for i in range(len(t1)):
        for j in range(len(t2)):
            d2 = float(np.sum((h1[i] - h2[j]) ** 2))
            out[i, j] = (1 - eps) ** (abs(t1[i] - t2[j]) / 2) * math.exp(-d2 / (2 * lengthscale ** 2))
    return out


def sample_data(n=24, d=2, seed=0):
    rng = np.random.default_rng(seed)
    t = np.repeat(np.arange(n // 4, dtype=float), 4)
    h = rng.random((n, d))
    y = np.sin(5 * h[:, 0]) + 0.5 * h[:, 1] + 0.05 * t + 0.05 * rng.standard_normal(n)
    return t, h, y


def test_gp_posterior_equals_a_direct_solve():
    t, h, y = sample_data()
    params = (0.4, 0.1, 0.05)
    gp = G.TimeVaryingGP(t, h, y, params=params)
    tq, hq = np.array([5.0, 6.0, 2.5]), np.array([[0.1, 0.9], [0.5, 0.5], [0.95, 0.05]])
    mean, std = gp.predict(tq, hq)
    ys = (y - y.mean()) / y.std()
    k = kernel(t, h, t, h, 0.4, 0.1)
    a = k + 0.05 * np.eye(len(t))
    s2 = ys @ np.linalg.solve(a, ys) / len(t)            # the profiled signal variance
    cross = kernel(tq, hq, t, h, 0.4, 0.1)
    expected_mean = y.mean() + y.std() * cross @ np.linalg.solve(a, ys)
    expected_var = s2 * (1 - np.sum(cross * np.linalg.solve(a, cross.T).T, 1)) * y.std() ** 2
    np.testing.assert_allclose(mean, expected_mean, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(std, np.sqrt(expected_var), rtol=1e-6, atol=1e-9)
    # and the profiled marginal likelihood is the Gaussian log density of the standardised y
    sign, logdet = np.linalg.slogdet(s2 * a)
    direct = -0.5 * ys @ np.linalg.solve(s2 * a, ys) - 0.5 * logdet - 0.5 * len(t) * math.log(2 * math.pi)
    # (rel 1e-7: the GP adds a 1e-9 jitter to the diagonal)
    assert sign > 0 and gp.log_marginal_likelihood() == pytest.approx(direct, rel=1e-7)


def test_pending_points_shrink_the_variance_and_keep_the_mean():
    t, h, y = sample_data()
    gp = G.TimeVaryingGP(t, h, y, params=(0.3, 0.05, 0.05))
    query = np.array([[0.2, 0.2], [0.8, 0.8]])
    now = np.full(2, 6.0)
    mean, std = gp.predict(now, query)
    mean_p, std_p = gp.predict(now, query, pending_t=np.array([6.0]), pending_h=np.array([[0.2, 0.2]]))
    np.testing.assert_allclose(mean_p, mean)
    assert std_p[0] < 0.8 * std[0]                       # next to the pending point
    assert std_p[1] == pytest.approx(std[1], rel=0.02)   # far from it


def test_marginal_likelihood_gradient_matches_finite_differences():
    t, h, y = sample_data(seed=3)
    data = G.TimeVaryingGP(t, h, y, params=(0.5, 0.1, 0.1)).data
    theta = np.log([0.35, 0.07, 0.02])
    _, grad = G.log_marginal_likelihood(data, *np.exp(theta), gradient=True)
    for i in range(3):
        step = np.zeros(3)
        step[i] = 1e-5
        up = G.log_marginal_likelihood(data, *np.exp(theta + step))[0]
        down = G.log_marginal_likelihood(data, *np.exp(theta - step))[0]
        assert grad[i] == pytest.approx((up - down) / 2e-5, rel=1e-4, abs=1e-6)


def test_the_fit_is_a_likelihood_optimum_and_finds_the_scale_of_the_data():
    rng = np.random.default_rng(1)
    t = np.zeros(60)
    h = rng.random((60, 1))
    smooth = np.sin(2 * np.pi * h[:, 0])                  # varies on a scale of ~0.15
    gp = G.TimeVaryingGP(t, h, smooth + 0.05 * rng.standard_normal(60))
    best = gp.log_marginal_likelihood()
    for factor in (0.7, 1.4):                             # no nearby setting is better
        for changed in ((gp.lengthscale * factor, gp.eps, gp.noise_ratio),
                        (gp.lengthscale, gp.eps, gp.noise_ratio * factor)):
            assert G.log_marginal_likelihood(gp.data, *changed)[0] <= best + 1e-6
    assert 0.08 < gp.lengthscale < 0.5 and 1e-3 < gp.noise_ratio < 0.05   # noise var / signal var: ~0.005
    # Data that changes from one time to the next: a large eps forgets the old times.
    t2 = np.repeat(np.arange(6.0), 10)
    h2 = rng.random((60, 1))
    drifting = np.where(t2 % 2 == 0, 1.0, -1.0) * h2[:, 0]   # the slope flips every step
    assert G.TimeVaryingGP(t2, h2, drifting).eps > 10 * G.TimeVaryingGP(t2, h2, h2[:, 0]).eps


def test_without_data_the_gp_is_its_prior_and_maximize_stays_in_the_box():
    gp = G.TimeVaryingGP(np.zeros(0), np.zeros((0, 2)), np.zeros(0))
    mean, std = gp.predict(np.zeros(3), np.random.default_rng(0).random((3, 2)))
    np.testing.assert_allclose(mean, 0.0) and np.testing.assert_allclose(std, 1.0)
    rng = np.random.default_rng(0)
    best = G.maximize(lambda x: -np.sum((x - np.array([0.3, 1.4])) ** 2, 1), 2, rng)
    assert best[0] == pytest.approx(0.3, abs=0.02) and best[1] == 1.0    # the bound, not beyond
    assert G.ucb_beta(1) == pytest.approx(0.2) and G.ucb_beta(100) > G.ucb_beta(10) > G.ucb_beta(1)


def test_gp_refuses_mismatched_or_non_finite_data():
    with pytest.raises(ValueError, match="must agree"):
        G.TimeVaryingGP(np.zeros(3), np.zeros((2, 1)), np.zeros(3))
    with pytest.raises(ValueError, match="finite"):
        G.TimeVaryingGP(np.zeros(2), np.zeros((2, 1)), np.array([0.0, np.nan]))


# ---- PB2 ------------------------------------------------------------------------------


def pb2(trainable=H.Accumulator, space=RATE_SPACE, **kwargs):
    kwargs = {"population": 4, "perturbation_interval": 2, "max_resource": 16, "mode": "max", "seed": 3,
              "executor": "sequential", **kwargs}
    return T.PB2(trainable, space, **kwargs)


def test_pb2_exploits_like_pbt_and_explores_by_ucb_within_bounds():
    result = pb2(max_resource=24).run()
    assert result.algorithm == "pb2" and result.lineage
    assert any("rate" in e["changes"] for e in result.lineage)
    for event in result.lineage:
        # (a change is logged only where the value moved: the GP may pick the bound the donor had)
        assert event["donor"] is not None and event["changes"].get("rate", {"how": "copied, pb2-ucb"})["how"] \
            == "copied, pb2-ucb"
        assert 0.1 <= event["new_config"]["rate"] <= 10.0
        # a bottom member copies the top one (population 4, quantile 0.25: one each)
        assert event["donor_metric"] >= event["metric"]
    # The change of the metric per interval is 2 * rate: once it has observations (from generation 2 on)
    # the GP's first picks go to the top of the range. (Later, with the population there, UCB explores
    # the rest with the bottom member, as it should: it has not seen it lately.)
    first = [e["new_config"]["rate"] for e in result.lineage if e["generation"] in (2, 3)]
    assert first and min(first) > 9.0, first
    # the rates the members trained with are in the trials' config histories, at their budgets
    member = result.trial(result.lineage[-1]["member"])
    assert member.config_history[-1] == {"budget": result.lineage[-1]["budget"],
                                         "config": result.lineage[-1]["new_config"]}


def test_pb2_beats_random_perturbation_on_the_accumulator():
    # The same exploit and budget; only explore differs. Final score of the best member, mean of 4 seeds.
    def final(tuner):
        return max(t.metric for t in tuner.run().trials)

    pb2_scores = [final(pb2(seed=s)) for s in range(4)]
    pbt_scores = [final(T.PBT(H.Accumulator, RATE_SPACE, population=4, perturbation_interval=2, max_resource=16,
                              mode="max", seed=s, executor="sequential")) for s in range(4)]
    assert np.mean(pb2_scores) > np.mean(pbt_scores), (pb2_scores, pbt_scores)


def test_hyperparam_bounds_narrow_the_gp_and_log_integer_domains_are_respected():
    space = {"rate": T.loguniform(0.1, 10.0), "steps": T.randint(1, 5), "unused": T.uniform(0.0, 1.0)}
    result = pb2(space=space, hyperparam_bounds={"rate": (0.5, 2.0), "steps": (2, 3)}, max_resource=20).run()
    assert result.settings["hyperparam_bounds"] == {"rate": [0.5, 2.0], "steps": [2.0, 3.0]}
    assert result.lineage
    for event in result.lineage:
        new, how = event["new_config"], {k: v["how"] for k, v in event["changes"].items()}
        assert 0.5 <= new["rate"] <= 2.0 and new["steps"] in (2, 3) and isinstance(new["steps"], int)
        assert how.get("rate", "copied, pb2-ucb") == how.get("steps", "copied, pb2-ucb") == "copied, pb2-ucb"
        # "unused" is not in the bounds: explored as PBT does (a factor or a resample)
        assert how.get("unused", "copied, x").startswith("copied, x") or how["unused"] == "copied, resampled"
        assert 0.0 <= new["unused"] <= 1.0


def test_categorical_hyperparameters_are_explored_as_pbt_does():
    space = {"rate": T.uniform(0.1, 10.0), "unused": T.choice(["a", "b", "c"])}
    result = pb2(space=space, max_resource=24, resample_probability=0.0).run()
    hows = {e["changes"]["unused"]["how"] for e in result.lineage if "unused" in e["changes"]}
    assert hows == {"copied, neighbour"}
    # resample_probability=1: every categorical value is redrawn from its prior
    result = pb2(space=space, max_resource=24, resample_probability=1.0).run()
    assert {e["changes"]["unused"]["how"] for e in result.lineage if "unused" in e["changes"]} == \
        {"copied, resampled"}


def test_the_explore_only_ablation_explores_every_member_by_ucb():
    result = pb2(exploit=False, max_resource=8).run()
    # three decisions after generations 1..3, every member each time
    assert len(result.lineage) == 3 * 4 and all(e["donor"] is None for e in result.lineage)
    assert {e["changes"]["rate"]["how"] for e in result.lineage if "rate" in e["changes"]} == {"pb2-ucb"}
    # the first generation has no observation yet: the pending members spread the batch out
    first = sorted(e["new_config"]["rate"] for e in result.lineage if e["generation"] == 1)
    assert min(np.diff(first)) > 0.5, first


def process_two_workers():
    return ProcessExecutor(max_workers=2)


def test_process_executor_gives_the_sequential_results():
    space = {"rate": T.loguniform(0.1, 10.0), "unused": T.choice([1, 2, 3])}
    sequential = pb2(space=space, population=5, max_resource=10, seed=11).run()
    parallel = pb2(space=space, population=5, max_resource=10, seed=11, executor=process_two_workers()).run()
    assert parallel.table() == sequential.table()
    assert parallel.lineage == sequential.lineage
    # and one seed is one run: a second one gives the same bits
    assert pb2(space=space, population=5, max_resource=10, seed=11).run().lineage == sequential.lineage
    assert pb2(space=space, population=5, max_resource=10, seed=12).run().lineage != sequential.lineage


def test_resume_after_an_interrupt_equals_the_uninterrupted_run(tmp_path):
    H.CALLS.clear()
    space = {"x": T.uniform(0.0, 1.0)}
    make = lambda **kw: T.PB2(H.Quadratic, space, population=4, perturbation_interval=2, max_resource=10,  # noqa: E731
                              seed=5, executor="sequential", **kw)
    reference = make().run()
    uninterrupted_calls = len(H.CALLS)
    H.CALLS.clear()
    with pytest.raises(H.Interrupt):
        make(checkpoint_dir=tmp_path, on_result=H.interrupt_after(11)).run()
    assert len(H.CALLS) == 11
    resumed = make(checkpoint_dir=tmp_path, resume=True).run()
    assert len(H.CALLS) == uninterrupted_calls          # no finished job ran twice
    assert resumed.table() == reference.table() and resumed.lineage == reference.lineage
    assert any(e["changes"].get("x", {}).get("how") == "copied, pb2-ucb" for e in reference.lineage)
    with pytest.raises(ValueError, match="different tuner setup \\(differs in: settings\\)"):
        T.PB2(H.Quadratic, space, population=4, perturbation_interval=2, max_resource=10, kappa=2.0,
              executor="sequential", checkpoint_dir=tmp_path, resume=True).run()


class NaNAboveSeven(H.Accumulator):
    """Accumulator that diverges (NaN) once it trains with a rate above 7."""

    def train(self, budget):
        out = super().train(budget)
        return {**out, "metric": math.nan} if self.rate > 7.0 else out


class RaisesAboveSeven(H.Accumulator):
    def train(self, budget):
        if self.rate > 7.0:
            raise RuntimeError(f"rate {self.rate:.2f} too high")
        return super().train(budget)


@pytest.mark.parametrize("trainable", [NaNAboveSeven, RaisesAboveSeven], ids=["nan", "raises"])
def test_failing_members_are_contained_and_teach_the_gp(trainable):
    result = pb2(trainable=trainable, population=6, max_resource=20, seed=1).run()
    failed = [t for t in result.trials if t.status == "failed"]
    assert failed and len(failed) < 6
    assert all(t.status == "completed" for t in result.trials if t.status != "failed")
    assert result.best_metric is not None and math.isfinite(result.best_metric)
    if trainable is NaNAboveSeven:
        # The diverged intervals count as the worst change: the GP's later picks avoid them.
        picks = [e["new_config"]["rate"] for e in result.lineage if e["generation"] >= 3]
        assert picks and np.mean([p > 7.0 for p in picks]) < 0.5, picks


def test_the_plot_shows_the_schedules(tmp_path):
    result = pb2(space={"rate": T.loguniform(0.1, 10.0), "unused": T.choice([1, 2, 3])}, max_resource=12).run()
    path = result.plot(tmp_path / "pb2.png")
    assert os.path.getsize(path) > 10_000
    figure = result.plot()
    assert [ax.get_ylabel() for ax in figure.axes][:2] == ["rate", "unused"] or \
        [ax.get_ylabel() for ax in figure.axes][0] == "rate"
    assert figure.axes[-1].get_ylabel() == "metric"
    assert figure._suptitle.get_text().startswith("PB2")
    best = result.best_trial.trial_id
    widths = {line.get_color(): line.get_linewidth() for line in figure.axes[0].get_lines()
              if line.get_marker() in ("None", None, "")}   # the schedules, not the exploit markers
    assert widths[f"C{best}"] > max(w for c, w in widths.items() if c != f"C{best}")
    result.to_json(tmp_path / "r.json") and result.to_csv(tmp_path / "r.csv")
    assert '"algorithm": "pb2"' in (tmp_path / "r.json").read_text()


@pytest.mark.parametrize("kwargs, error, match", [
    ({"hyperparam_bounds": {"rate": (0.0, 2.0)}}, ValueError, r"hyperparam_bounds\['rate'\].*0.1 <= low < high"),
    ({"hyperparam_bounds": {"rate": (2.0, 1.0)}}, ValueError, "low < high"),
    ({"hyperparam_bounds": {"lr": (0.1, 1.0)}}, ValueError, r"names \['lr'\], which are not continuous"),
    ({"hyperparam_bounds": {"rate": 2.0}}, TypeError, r"must be a pair \(low, high\)"),
    ({"hyperparam_bounds": {}}, TypeError, "non-empty dict"),
    ({"kappa": -1.0}, ValueError, "kappa=-1.0 must be >= 0"),
    ({"kappa": "big"}, TypeError, "kappa='big' must be a real number"),
    ({"quantile": 0.75}, ValueError, "quantile"),
    ({"population": 1}, ValueError, "population=1 must be >= 2"),
])
def test_bad_arguments_are_refused_before_anything_runs(kwargs, error, match):
    with pytest.raises(error, match=match):
        pb2(**kwargs)


def test_a_space_without_continuous_hyperparameters_is_refused():
    with pytest.raises(ValueError, match="use fa.tune.PBT"):
        T.PB2(H.Accumulator, {"rate": T.choice([1.0, 2.0])}, population=4, perturbation_interval=1)
    with pytest.raises(TypeError, match="needs save\\(\\) and load\\(\\)"):
        T.PB2(H.quadratic_function, {"x": T.uniform(0.0, 1.0)}, population=2, perturbation_interval=1)


def test_a_hung_member_times_out_and_the_others_go_on():
    space = {"x": T.uniform(0.0, 1.0), "how": "hang"}
    result = T.PB2(H.Misbehaves, space, population=4, perturbation_interval=1, max_resource=4, seed=2,
                   trial_timeout=1.0, executor=ProcessExecutor(max_workers=2)).run()
    hung = [t for t in result.trials if t.status == "failed"]
    assert hung and all("ran past trial_timeout=1.0 s" in t.error for t in hung)
    assert all(t.status == "completed" and t.budget == 4 for t in result.trials if t.status != "failed")


def test_asynchronous_pb2_explores_against_the_members_in_flight():
    result = pb2(synchronous=False, max_resource=12, executor=ProcessExecutor(max_workers=2)).run()
    assert result.lineage and all(e["generation"] is None for e in result.lineage)
    assert {e["changes"]["rate"]["how"] for e in result.lineage if "rate" in e["changes"]} == {"copied, pb2-ucb"}
    assert all(t.budget == 12 and t.status == "completed" for t in result.trials)
