"""The Ray executor on a local Ray (the ``ray`` extra): the same synchronous
results as the process executor, and failures handled the same way.

One local Ray (2 CPUs, no dashboard) serves the whole module. The tuner
reuses a Ray that is already initialized and leaves it running, so the
fixture passes the tests directory to Ray's workers itself (a Ray started
by the executor does this on its own).
"""

import os

import pytest

ray = pytest.importorskip("ray")

import fastadapt as fa  # noqa: E402
from fastadapt.tune.executors import ProcessExecutor  # noqa: E402

import tune_helpers as H  # noqa: E402

T = fa.tune
SPACE = {"x": T.uniform(0.0, 1.0)}
MIXED = {"lr": T.loguniform(1e-5, 1e-1), "x": T.uniform(-1.0, 1.0), "n": T.randint(1, 17),
         "act": T.choice(["tanh", "relu", "gelu"])}

# No warning filter: with Ray 2.60 nothing here warns, so the project-wide
# "error" filter stays in force (a Ray release that starts warning shows up here).


@pytest.fixture(scope="module")
def local_ray():
    tests_dir = os.path.dirname(os.path.abspath(__file__))
    paths = os.pathsep.join([tests_dir] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": paths}})
    yield
    if started:
        ray.shutdown()


@pytest.mark.parametrize("make", [
    lambda ex: T.Hyperband(H.Quadratic, SPACE, max_resource=9, eta=3, seed=3, executor=ex),
    lambda ex: T.PBT(H.Accumulator, {"rate": T.loguniform(0.1, 10.0)}, population=4, perturbation_interval=2,
                     max_resource=6, mode="max", seed=3, executor=ex),
    lambda ex: T.BOHB(H.mixed_objective, MIXED, max_resource=9, eta=3, seed=3, executor=ex),
    lambda ex: T.Hyperband(H.mixed_objective, MIXED, max_resource=9, eta=3, seed=3, executor=ex, iterations=2,
                           searcher=T.TPE(n_startup=3)),
    lambda ex: T.PB2(H.Accumulator, {"rate": T.loguniform(0.1, 10.0)}, population=4, perturbation_interval=2,
                     max_resource=6, mode="max", seed=3, executor=ex),
], ids=["hyperband", "pbt", "bohb", "hyperband-tpe", "pb2"])
def test_ray_gives_the_process_executor_results(local_ray, make):
    on_ray = make(T.RayExecutor()).run()
    on_processes = make(ProcessExecutor(max_workers=2)).run()
    assert on_ray.table() == on_processes.table()
    assert on_ray.lineage == on_processes.lineage and on_ray.rungs == on_processes.rungs
    assert ray.is_initialized()      # a Ray the executor did not start is left running


def test_ray_records_raising_and_dying_trials(local_ray):
    space = {"x": T.uniform(0.0, 1.0), "fail_above": 0.8}
    raising = T.SuccessiveHalving(H.RaisesAboveThreshold, space, num_trials=3, max_resource=3, eta=3, seed=0,
                                  executor="ray").run()
    failed = [t for t in raising.trials if t.status == "failed"]
    assert failed and all("ValueError: boom" in t.error and t.retries == 0 for t in failed)
    dying = T.SuccessiveHalving(H.Misbehaves, {**SPACE, "how": "die"}, num_trials=3, max_resource=3, eta=3, seed=0,
                                executor=T.RayExecutor(max_concurrent=2)).run()
    dead = [t for t in dying.trials if t.config["x"] > 0.5]
    assert dead and all(t.status == "failed" and t.retries == 1 and "Ray worker" in t.error for t in dead)
    assert all(t.status != "failed" for t in dying.trials if t.config["x"] <= 0.5)


@pytest.mark.filterwarnings("ignore:.*every trial failed:RuntimeWarning")  # (about the errors, not the warning)
def test_ray_fails_an_unpicklable_state_and_a_hung_trial_like_the_other_executors(local_ray):
    unpicklable = T.SuccessiveHalving(H.UnpicklableState, SPACE, num_trials=3, max_resource=3, eta=3, seed=1,
                                      executor="ray").run()
    bad = [t for t in unpicklable.trials if t.config["x"] > 0.5]
    assert bad and all(t.status == "failed" and f"trial {t.trial_id}: save() returned a state that cannot be "
                       f"pickled" in t.error for t in bad)
    assert all(t.status != "failed" for t in unpicklable.trials if t.config["x"] <= 0.5)
    # Generous against Ray's task start-up (a fresh worker on a loaded 2-core machine took over 5 s; the
    # timeout counts from the submission); the hung trials sleep for an hour.
    hung = T.SuccessiveHalving(H.Misbehaves, {**SPACE, "how": "hang"}, num_trials=3, max_resource=3, eta=3, seed=1,
                               trial_timeout=15, executor=T.RayExecutor(max_concurrent=2)).run()
    timed_out = [t for t in hung.trials if t.config["x"] > 0.5]
    assert timed_out and all(t.status == "failed" and t.error.startswith(
        f"trial {t.trial_id} ran past trial_timeout=15.0 s") for t in timed_out)
    assert all(t.status != "failed" for t in hung.trials if t.config["x"] <= 0.5)
