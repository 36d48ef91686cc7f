"""Failure injection and recovery: trials that raise, worker processes that
die or hang, a driver interrupted mid-run and resumed, and the process
executor giving the sequential executor's results."""

import os
import subprocess
import sys
import textwrap

import pytest

import fastadapt as fa
from fastadapt.tune.executors import ProcessExecutor

import tune_helpers as H

T = fa.tune
SPACE = {"x": T.uniform(0.0, 1.0)}


def two_workers(**kwargs):
    return ProcessExecutor(max_workers=2, **kwargs)


def test_a_raising_trial_is_recorded_and_the_run_goes_on():
    space = {"x": T.uniform(0.0, 1.0), "fail_above": 0.6}
    result = T.Hyperband(H.RaisesAboveThreshold, space, max_resource=9, eta=3, seed=0,
                         executor=two_workers()).run()
    failed = [t for t in result.trials if t.status == "failed"]
    assert failed and len(failed) < len(result.trials)
    for trial in failed:
        assert trial.config["x"] > 0.6 and trial.history == [] and trial.retries == 0
        assert "Traceback (most recent call last)" in trial.error and "ValueError: boom" in trial.error
        assert "tune_helpers.py" in trial.error    # the worker's traceback, not the driver's
    assert result.best_config["x"] <= 0.6 and result.count("completed") >= 1


def test_a_dying_worker_is_retried_once(tmp_path):
    marker = str(tmp_path / "died-once")
    space = {"x": T.uniform(0.0, 1.0), "die": T.choice([False, True]), "marker": marker}
    result = T.SuccessiveHalving(H.DiesOnce, space, num_trials=9, max_resource=9, eta=3, seed=0,
                                 executor=two_workers()).run()
    assert os.path.exists(marker)
    retried = [t for t in result.trials if t.retries]
    assert len(retried) == 1 and retried[0].config["die"] and retried[0].status != "failed"
    assert result.count("failed") == 0
    # The retry left no trace in the results: the same table as a run in which nothing died.
    clean = T.SuccessiveHalving(H.DiesOnce, space, num_trials=9, max_resource=9, eta=3, seed=0,
                                executor="sequential").run()   # the marker exists now: nobody dies
    strip = [{k: v for k, v in row.items() if k != "retries"} for row in result.table()]
    assert strip == [{k: v for k, v in row.items() if k != "retries"} for row in clean.table()]


def test_a_worker_that_always_dies_fails_its_trial_without_hanging():
    space = {"x": T.uniform(0.0, 1.0), "how": "die"}
    result = T.SuccessiveHalving(H.Misbehaves, space, num_trials=9, max_resource=9, eta=3, seed=0, max_retries=1,
                                 executor=two_workers()).run()
    dead = [t for t in result.trials if t.config["x"] > 0.5]
    assert dead and all(t.status == "failed" and t.retries == 1 for t in dead)
    assert all("died (killed by signal" not in t.error and "exit code 9" in t.error for t in dead)
    assert all(t.status != "failed" for t in result.trials if t.config["x"] <= 0.5)


def test_a_hung_trial_times_out():
    space = {"x": T.uniform(0.0, 1.0), "how": "hang"}
    result = T.SuccessiveHalving(H.Misbehaves, space, num_trials=3, max_resource=3, eta=3, seed=1,
                                 executor=two_workers(task_timeout=1.0)).run()
    hung = [t for t in result.trials if t.config["x"] > 0.5]
    assert hung and all(t.status == "failed" and "task_timeout=1.0 s" in t.error for t in hung)
    assert result.count("failed") == len(hung)


def test_unpicklable_trainable_is_a_clear_error():
    def local_objective(config, budget):
        return config["x"]

    with pytest.raises(TypeError, match="must be importable.*or pass executor='sequential'"):
        T.SuccessiveHalving(local_objective, SPACE, num_trials=3, max_resource=3, executor=two_workers()).run()
    result = T.SuccessiveHalving(local_objective, SPACE, num_trials=3, max_resource=3, seed=0,
                                 executor="sequential").run()
    assert result.count("failed") == 0


def test_a_script_without_a_main_guard_gets_told_why(tmp_path):
    script = tmp_path / "unguarded.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        import fastadapt as fa, tune_helpers
        fa.tune.SuccessiveHalving(tune_helpers.Quadratic, {{"x": fa.tune.uniform(0, 1)}}, num_trials=3,
                                  max_resource=3, executor=fa.tune.ProcessExecutor(max_workers=1)).run()
    """))
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert run.returncode != 0
    assert "RuntimeError: a worker process exited while starting" in run.stderr
    assert 'if __name__ == \\"__main__\\":' in run.stderr or 'if __name__ == "__main__":' in run.stderr




@pytest.mark.parametrize("make", [
    lambda **kw: T.Hyperband(H.Quadratic, SPACE, max_resource=9, eta=3, seed=5, **kw),
    lambda **kw: T.ASHA(H.Quadratic, SPACE, num_trials=10, max_resource=9, eta=3, seed=5, **kw),
    lambda **kw: T.PBT(H.Quadratic, SPACE, population=4, perturbation_interval=2, max_resource=8, seed=5, **kw),
], ids=["hyperband", "asha", "pbt"])
def test_resume_after_an_interrupted_run_loses_nothing(tmp_path, make):
    H.CALLS.clear()
    reference = make(executor="sequential").run()
    uninterrupted_calls = len(H.CALLS)
    H.CALLS.clear()
    with pytest.raises(H.Interrupt):
        make(executor="sequential", checkpoint_dir=tmp_path, on_result=H.interrupt_after(7)).run()
    assert len(H.CALLS) == 7
    resumed = make(executor="sequential", checkpoint_dir=tmp_path, resume=True).run()
    # No finished job ran twice, and the result is the uninterrupted one.
    assert len(H.CALLS) == uninterrupted_calls
    assert resumed.table() == reference.table()
    assert resumed.lineage == reference.lineage and resumed.rungs == reference.rungs
    # Only states a result can need stay on disk, one version each: the completed trials' and the best's.
    files = os.listdir(tmp_path / "states")
    completed = {str(t.trial_id) for t in resumed.trials if t.status == "completed"}
    assert len(files) == len(completed) + 1 and {name.split("-")[1] for name in files} == completed | {"best"}
    assert resumed.best_state == reference.best_state is not None


def test_resume_after_a_crash_with_the_process_executor(tmp_path):
    reference = T.Hyperband(H.Quadratic, SPACE, max_resource=9, eta=3, seed=9, executor="sequential").run()
    with pytest.raises(H.Interrupt):
        T.Hyperband(H.Quadratic, SPACE, max_resource=9, eta=3, seed=9, executor=two_workers(),
                    checkpoint_dir=tmp_path, on_result=H.interrupt_after(10)).run()
    resumed = T.Hyperband(H.Quadratic, SPACE, max_resource=9, eta=3, seed=9, executor=two_workers(),
                          checkpoint_dir=tmp_path, resume="auto").run()
    assert resumed.table() == reference.table()


@pytest.mark.parametrize("algorithm", ["hyperband", "asha", "pbt"])
def test_resume_after_the_driver_process_died_loses_and_repeats_nothing(tmp_path, monkeypatch, algorithm):
    # A real crash, not an exception: the trainable os._exit()s the driver (sequential executor) mid-run.
    make = {"hyperband": "T.Hyperband(H.ExitsTheDriver, SPACE, max_resource=9, eta=3, seed=5, **kw)",
            "asha": "T.ASHA(H.ExitsTheDriver, SPACE, num_trials=10, max_resource=9, eta=3, seed=5, **kw)",
            "pbt": "T.PBT(H.ExitsTheDriver, SPACE, population=4, perturbation_interval=2, max_resource=8, "
                   "seed=5, **kw)"}[algorithm]
    script = tmp_path / "crash.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        import fastadapt as fa, tune_helpers as H
        T, SPACE = fa.tune, {{"x": fa.tune.uniform(0.0, 1.0)}}
        kw = dict(executor="sequential", checkpoint_dir=sys.argv[1])
        {make}.run()
    """))
    monkeypatch.setenv("FASTADAPT_TUNE_TEST_LOG", str(tmp_path / "reference.log"))
    kw = dict(executor="sequential")
    reference = eval(make)
    reference = reference.run()
    monkeypatch.setenv("FASTADAPT_TUNE_TEST_LOG", str(tmp_path / "crashed.log"))
    env = {**os.environ, "FASTADAPT_TUNE_TEST_EXIT_AT": "7"}
    crashed = subprocess.run([sys.executable, str(script), str(tmp_path / "ck")], env=env, timeout=120)
    assert crashed.returncode == 3
    kw = dict(executor="sequential", checkpoint_dir=tmp_path / "ck", resume=True)
    resumed = eval(make).run()
    # Every job ran exactly once over the crashed and the resumed process, and the result is the same.
    assert sorted((tmp_path / "crashed.log").read_text().splitlines()) == \
        sorted((tmp_path / "reference.log").read_text().splitlines())
    assert resumed.table() == reference.table() and resumed.lineage == reference.lineage
    assert resumed.rungs == reference.rungs


def test_resume_checks_the_setup(tmp_path):
    with pytest.raises(FileNotFoundError, match="resume=True but .*tuner.json does not exist.*resume='auto'"):
        T.Hyperband(H.Quadratic, SPACE, max_resource=9, checkpoint_dir=tmp_path, resume=True).run()
    T.Hyperband(H.Quadratic, SPACE, max_resource=9, seed=1, executor="sequential", checkpoint_dir=tmp_path).run()
    with pytest.raises(ValueError, match="different tuner setup \\(differs in: settings\\)"):
        T.Hyperband(H.Quadratic, SPACE, max_resource=27, checkpoint_dir=tmp_path, resume=True).run()
    with pytest.raises(ValueError, match="used seed=1, not seed=2"):
        T.Hyperband(H.Quadratic, SPACE, max_resource=9, seed=2, checkpoint_dir=tmp_path, resume=True).run()
    finished = T.Hyperband(H.Quadratic, SPACE, max_resource=9, checkpoint_dir=tmp_path, resume=True,
                           executor="sequential").run()   # a finished run resumes to its result, seed read back
    assert finished.seed == 1 and finished.count("completed") >= 1


@pytest.mark.parametrize("make", [
    lambda ex: T.Hyperband(H.Quadratic, SPACE, max_resource=27, eta=3, seed=11, executor=ex),
    lambda ex: T.PBT(H.Accumulator, {"rate": T.loguniform(0.1, 10.0), "unused": T.choice([1, 2, 3])},
                     population=6, perturbation_interval=2, max_resource=10, mode="max", seed=11, executor=ex),
], ids=["hyperband", "pbt"])
def test_process_executor_gives_the_sequential_results(make):
    sequential = make("sequential").run()
    parallel = make(two_workers()).run()
    assert parallel.table() == sequential.table()
    assert parallel.lineage == sequential.lineage and parallel.rungs == sequential.rungs
