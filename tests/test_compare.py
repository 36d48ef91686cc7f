"""`fastadapt compare` / `fa.compare`: each optimizer at its defaults against
grid-tuned Adam. The quick suite end to end (CLI and Python), the target /
tolerance / goal arithmetic on constructed runs, a user's workload, the
suite's models' gradients, and bad arguments."""

import csv
import io
import json
import math
import sys

import numpy as np
import pytest

import fastadapt as fa
from fastadapt.cli import main
from fastadapt.compare import models as cmodels
from fastadapt.compare import workloads as cworkloads
from fastadapt.compare.report import CompareResult, Run, within
from fastadapt.compare.running import lr_free_optimizers, lr_grid, train_run
from fastadapt.compare.workloads import SUITE, Workload
from fastadapt.optim import OPTIMIZERS, SGD, Lion

PNG = b"\x89PNG\r\n\x1a\n"


def _cli(capsys, *argv):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def _available():
    """The suite's workloads this machine can build (mlxtend, scikit-learn)."""
    return [name for name in SUITE if name not in dict(cworkloads.resolve([name])[1])]


# ---- end to end ---------------------------------------------------------------------------------------------

def _check_files(out, names, optimizers, grid_size):
    result = json.loads((out / "compare.json").read_text())
    assert result["format"] == "fastadapt.compare" and result["config"]["optimizers"] == optimizers
    assert [w["name"] for w in result["workloads"]] == names
    assert len(result["runs"]) == len(names) * (grid_size + len(optimizers))
    for w in result["workloads"]:
        runs = [r for r in result["runs"] if r["workload"] == w["name"]]
        higher = w["metric"] == "accuracy"
        grid = [r for r in runs if r["tuning"]]
        assert len(grid) == grid_size
        # The target is the best grid run's best metric, recomputed here from the curves in the file.
        bests = [max(r["metric"]) if higher else min(r["metric"]) for r in grid]
        assert w["target"] == pytest.approx(max(bests) if higher else min(bests), rel=1e-12)
        assert w["tuned_lr"] == grid[bests.index(w["target"])]["lr"]
        rows = {r["optimizer"]: r for r in w["rows"]}
        assert list(rows) == ["adam-tuned", *optimizers]
        assert rows["adam-tuned"]["runs"] == grid_size and all(rows[o]["runs"] == 1 for o in optimizers)
        assert rows["adam-tuned"]["within_target"]  # the target is its own best
        # the tuning's cost is the training time of the whole grid; the clock never counts evaluations backwards
        assert rows["adam-tuned"]["seconds"] == pytest.approx(sum(r["train_seconds"] for r in grid), rel=1e-12)
        assert all(r["seconds"] == sorted(r["seconds"]) and r["train_seconds"] >= r["seconds"][-1] for r in runs)
        for name in optimizers:
            run = next(r for r in runs if not r["tuning"] and r["optimizer"] == name)
            assert rows[name]["best"] == (max(run["metric"]) if higher else min(run["metric"]))
            # steps to target: the first evaluation within tolerance of the target, from the curve
            tol = result["config"]["accuracy_tolerance" if higher else "loss_tolerance"]
            first = next((s for s, v in zip(run["steps"], run["metric"])
                          if (v >= w["target"] - tol - 1e-12 if higher else v <= w["target"] * (1 + tol) + 1e-12)),
                         None)
            assert rows[name]["steps_to_target"] == first
            assert rows[name]["within_target"] == (first is not None)
        best_default = (max if higher else min)(optimizers, key=lambda o: rows[o]["best"])
        assert w["best_default"] == best_default and w["goal_met"] == rows[best_default]["within_target"]
    lines = list(csv.DictReader(io.StringIO((out / "compare.csv").read_text())))
    assert len(lines) == len(names) * (1 + len(optimizers))
    assert {line["optimizer"] for line in lines} == {"adam-tuned", *optimizers}
    for name in names:
        assert (out / f"curves-{name}.png").read_bytes()[:8] == PNG
    return result


def test_quick_suite_through_the_cli(tmp_path, capsys, mnist_subset):
    pytest.importorskip("matplotlib")
    names = _available()
    out = tmp_path / "cmp"
    code, printed, err = _cli(capsys, "compare", "--quick", "--optimizers", "adam,lion", "--out", out)
    assert code == 0, err
    result = _check_files(out, names, ["adam", "lion"], grid_size=3)
    assert result["config"]["quick"] and result["config"]["grid"] == pytest.approx([1e-4, 10 ** -2.5, 1e-1])
    for name in names:
        assert name in printed
    assert "adam-tuned" in printed and result["goal"]["text"] in printed
    assert "goal: the best of adam, lion (none of them lr_free" in printed
    assert f"[compare 1/{len(names) * 5}] " in err  # progress: a line per run off a terminal
    assert "compare.json" in printed.splitlines()[-1]


def test_quick_suite_through_the_python_api(tmp_path, mnist_subset):
    pytest.importorskip("matplotlib")
    names = _available()
    result = fa.compare(None, ["lion", "sgd"], quick=True, progress=False, seeds=[0, 1], grid_size=2)
    files = result.save(tmp_path)
    assert sorted(files) == sorted([str(tmp_path / "compare.json"), str(tmp_path / "compare.csv")]
                                   + [str(tmp_path / f"curves-{n}.png") for n in names])
    saved = json.loads((tmp_path / "compare.json").read_text())
    assert saved["config"]["seeds"] == [0, 1] and len(saved["runs"]) == len(names) * 2 * (2 + 2)
    for w in result.workloads:
        assert w.row("adam-tuned").seeds == 2 and w.row("adam-tuned").runs == 2
    table = result.table()
    assert all(name in table for name in names) and table.endswith(result.goal_text())


# ---- the arithmetic of targets and the goal --------------------------------------------------------------------

def _workload(name, metric):
    return Workload(name, lambda seed: {"x": np.zeros(1)}, lambda p, b: (0.0, {"x": np.zeros(1)}),
                    (np.zeros((4, 1)),), (np.zeros((4, 1)),), metric=metric,
                    accuracy=(lambda p, v: 0.0) if metric == "accuracy" else None, steps=30, evals=3)


def _run(workload, optimizer, metric, *, lr, tuning=False, seed=0, diverged_at=None, higher=True):
    steps = [0, 10, 20, 30][:len(metric)]
    return Run(workload=workload, optimizer=optimizer, entry=optimizer, lr=lr, seed=seed, tuning=tuning,
               steps=steps, metric=list(metric), train_loss=[math.nan] * len(metric),
               seconds=[0.5 * s for s in steps], total_steps=30, train_seconds=0.5 * steps[-1],
               diverged_at=diverged_at, higher_is_better=higher)


CONFIG = {"optimizers": ["rule_a", "rule_b"], "tuned": "adam", "grid": [1e-3, 1e-2], "seeds": [0],
          "accuracy_tolerance": 0.01, "loss_tolerance": 0.05, "lr_free": {"rule_a": True, "rule_b": True}}


def test_within_is_one_accuracy_point_or_five_percent_of_the_loss():
    assert within(0.94, 0.95, "accuracy") and not within(0.9399, 0.95, "accuracy")
    assert within(0.96, 0.95, "accuracy")  # better than the target is within it
    assert within(1.05, 1.0, "loss") and not within(1.0501, 1.0, "loss") and within(0.5, 1.0, "loss")
    assert within(-0.95, -1.0, "loss") and not within(-0.94, -1.0, "loss")  # 5% of |target| for a negative loss
    assert not within(math.nan, 1.0, "loss") and not within(0.9, math.nan, "accuracy")
    assert within(0.93, 0.95, "accuracy", accuracy_tolerance=0.02) and not within(1.06, 1.0, "loss")


def test_target_steps_and_goal_on_constructed_accuracy_runs():
    w = _workload("cls", "accuracy")
    runs = [_run("cls", "adam", [0.1, 0.80, 0.90, 0.95], lr=1e-3, tuning=True),
            _run("cls", "adam", [0.1, 0.92, 0.96, 0.93], lr=1e-2, tuning=True),   # best 0.96: the tuned lr
            _run("cls", "rule_a", [0.1, 0.50, 0.95, 0.94], lr=1.0),             # best 0.95: within 1 point
            _run("cls", "rule_b", [0.1, 0.94, 0.949, 0.949], lr=1.0)]           # best 0.949: not within
    result = CompareResult.build([w], runs, CONFIG)
    report = result.workloads[0]
    assert report.target == 0.96 and report.tuned_lr == 1e-2
    tuned, a, b = report.row("adam-tuned"), report.row("rule_a"), report.row("rule_b")
    assert (tuned.best, tuned.final, tuned.runs, tuned.lr) == (0.96, 0.93, 2, 1e-2)
    assert tuned.steps_to_target == 20 and tuned.seconds_to_target == 10.0  # 0.92 at step 10 is below 0.95
    assert a.within_target and a.steps_to_target == 20 and a.seconds_to_target == 10.0 and a.final == 0.94
    assert not b.within_target and b.steps_to_target is None and b.seconds_to_target is None
    # the tuned row's cost is every grid run's training time; a default row's is its own run's
    assert tuned.seconds == 2 * 15.0 and a.seconds == 15.0
    assert report.best_default == "rule_a" and report.goal_met and result.goal_met
    assert "MET, 1/1 workloads" in result.goal_text()


def test_tuned_steps_to_target_counts_its_first_evaluation_within_tolerance():
    w = _workload("cls", "accuracy")
    runs = [_run("cls", "adam", [0.1, 0.949, 0.96, 0.96], lr=1e-3, tuning=True),
            _run("cls", "adam", [0.1, 0.2, 0.3, 0.4], lr=1e-2, tuning=True),
            _run("cls", "rule_a", [0.1, 0.2, 0.3, 0.4], lr=1.0), _run("cls", "rule_b", [0.1, 0.2, 0.3, 0.4], lr=1.0)]
    report = CompareResult.build([w], runs, CONFIG).workloads[0]
    assert report.tuned_lr == 1e-3 and report.row("adam-tuned").steps_to_target == 20  # 0.949 < 0.95
    assert report.best_default in ("rule_a", "rule_b") and not report.goal_met


def test_loss_goal_diverged_runs_and_seeds():
    w = _workload("reg", "loss")
    config = {**CONFIG, "seeds": [0, 1]}
    runs = [_run("reg", "adam", [4.0, 2.0, 1.0, 1.0], lr=1e-3, tuning=True, seed=s, higher=False) for s in (0, 1)]
    # lr 1e-2 reaches 0.5 with seed 0 and then diverges; seed 1 diverges after its first evaluation (4.0): the
    # grid point's best is the mean over seeds, 2.25, worse than lr 1e-3's 1.0 although seed 0 alone did better
    runs += [_run("reg", "adam", [4.0, 0.5, math.nan], lr=1e-2, tuning=True, seed=0, diverged_at=20, higher=False),
             _run("reg", "adam", [4.0, math.nan], lr=1e-2, tuning=True, seed=1, diverged_at=10, higher=False)]
    runs += [_run("reg", "rule_a", [4.0, 1.2, 1.05, 1.05], lr=1.0, seed=0, higher=False),   # 5% above: within
             _run("reg", "rule_a", [4.0, 1.04, 1.05, 1.04], lr=1.0, seed=1, higher=False),
             _run("reg", "rule_b", [4.0, 0.9, 3.0, 3.0], lr=1.0, seed=0, higher=False),     # best 0.9 ...
             _run("reg", "rule_b", [4.0, 3.0, 3.0, 3.0], lr=1.0, seed=1, higher=False)]     # ... mean (0.9+3)/2
    result = CompareResult.build([w], runs, config)
    report = result.workloads[0]
    assert report.tuned_lr == 1e-3 and report.target == 1.0
    assert [g["diverged"] for g in report.grid] == [0, 2] and report.grid[1]["best"] == 2.25
    assert math.isnan(report.grid[1]["final"])
    a, b = report.row("rule_a"), report.row("rule_b")
    assert a.best == pytest.approx(1.045) and a.within_target
    assert a.steps_to_target == 15.0  # seed 0 at step 20, seed 1 at step 10: the mean
    assert b.best == pytest.approx(1.95) and not b.within_target
    assert b.steps_to_target is None  # seed 1 never got there
    assert report.best_default == "rule_a" and report.goal_met


def test_the_goal_is_about_the_lr_free_rules_when_there_are_any():
    w = _workload("cls", "accuracy")
    config = {**CONFIG, "lr_free": {"rule_a": False, "rule_b": True}}
    runs = [_run("cls", "adam", [0.1, 0.96], lr=1e-3, tuning=True), _run("cls", "adam", [0.1, 0.5], lr=1e-2,
                                                                          tuning=True),
            _run("cls", "rule_a", [0.1, 0.96], lr=1e-3), _run("cls", "rule_b", [0.1, 0.90], lr=1.0)]
    result = CompareResult.build([w], runs, config)
    report = result.workloads[0]
    # rule_a (not lr-free) matches the target, but the goal is about the lr-free rule_b, which misses it
    assert report.row("rule_a").within_target and report.best_default == "rule_b" and not report.goal_met
    assert result.candidates == ["rule_b"] and "NOT MET, 0/1 workloads (missed: cls)" in result.goal_text()
    assert "none of them lr_free" not in result.goal_text()


def test_json_writes_a_diverged_runs_nan_as_null(tmp_path):
    w = _workload("reg", "loss")
    runs = [_run("reg", "adam", [4.0, 1.0], lr=1e-3, tuning=True, higher=False),
            _run("reg", "adam", [4.0, math.nan], lr=1e-2, tuning=True, diverged_at=10, higher=False),
            _run("reg", "rule_a", [4.0, 1.0], lr=1.0, higher=False),
            _run("reg", "rule_b", [4.0, math.nan], lr=1.0, diverged_at=10, higher=False)]
    result = CompareResult.build([w], runs, CONFIG)
    result.to_json(tmp_path / "c.json")
    saved = json.loads((tmp_path / "c.json").read_text())
    rows = {r["optimizer"]: r for r in saved["workloads"][0]["rows"]}
    assert rows["rule_b"]["final"] is None and rows["rule_b"]["best"] == 4.0 and rows["rule_b"]["diverged"] == 1
    assert "nan" in result.table()


# ---- a user's workload, optimizer hooks -----------------------------------------------------------------------

def _quadratic(name="quad", **kw):
    rng = np.random.default_rng(0)
    A = rng.standard_normal((64, 5))
    b = A @ np.arange(1.0, 6.0)

    def loss_and_grad(params, batch):
        X, y = batch
        r = X @ params["x"] - y
        return 0.5 * float(np.mean(r * r)), {"x": X.T @ r / len(y)}

    return Workload(name, lambda seed: {"x": np.random.default_rng(seed).standard_normal(5)}, loss_and_grad,
                    (A[:48], b[:48]), (A[48:], b[48:]), **{"metric": "loss", "steps": 200, "batch_size": 16, **kw})


def test_a_user_workload_next_to_a_built_in_one():
    result = fa.compare([_quadratic(), "ill-conditioned-lsq"], ["sgd"], lrs=[1e-2, 1e-1], quick=True,
                        progress=False)
    quad = result.workloads[0]
    assert [w.name for w in result.workloads] == ["quad", "ill-conditioned-lsq"] and quad.steps == 20
    assert quad.tuned_lr == 1e-1 and quad.target < quad.grid[0]["best"]  # the larger lr goes further in 20 steps
    assert quad.row("sgd").lr == 1e-3 and quad.row("sgd").best > quad.target  # SGD's default lr 1e-3: slower


def test_evaluation_is_bracketed_by_eval_and_train():
    seen = []

    class EvalTrain(SGD):
        """SGD with Schedule-Free's eval/train hooks, recording what the evaluation saw."""

        def eval(self, params):
            params["x"] += 100.0
            seen.append("eval")

        def train(self, params):
            params["x"] -= 100.0
            seen.append("train")

    w = _quadratic(steps=4, evals=2)
    values = []
    w_checked = Workload(w.name, w.init_params, w.loss_and_grad, w.train, w.val, metric="loss",
                         loss=lambda p, v: values.append(p["x"].copy()) or 0.0, steps=4, evals=2)
    run = train_run(w_checked, lambda: EvalTrain(lr=0.1), optimizer="sgd", entry="sgd", seed=0, lr=0.1)
    assert seen == ["eval", "train"] * 3 and run.steps == [0, 2, 4]
    assert np.all(values[0] == w.init_params(0)["x"] + 100.0)  # evaluated at the eval point, trained at the other


def test_the_default_selection_is_the_lr_free_classes(monkeypatch):
    before = lr_free_optimizers()
    assert "lion" not in before
    monkeypatch.setattr(Lion, "lr_free", True, raising=False)
    assert lr_free_optimizers() == sorted(before + ["lion"])
    result = fa.compare([_quadratic()], quick=True, progress=False, lrs=[1e-2])
    assert result.config["optimizers"] == sorted(before + ["lion"]) and result.candidates == result.config["optimizers"]
    assert result.config["lr_free"]["lion"] is True


def test_a_rules_learned_step_size_is_recorded_and_the_goal_is_about_it():
    class Learns(SGD):
        """SGD that says it is learning-rate-free and reports a learned step size (as Prodigy's d * lr)."""

        algorithm = "learns_for_the_compare_test"
        lr_free = True

        def _lr_estimate(self):
            return 0.125 * self.step_count

        def _adapted(self):
            return {"d": 0.5}

    try:
        result = fa.compare([_quadratic()], ["sgd", Learns.algorithm], lrs=[1e-2], quick=True, progress=False)
        run = next(r for r in result.runs if r.optimizer == Learns.algorithm)
        assert run.lr_estimate == 0.125 * 20 and run.adapted == {"d": 0.5}  # after the 20 steps of quick
        row = result.workloads[0].row(Learns.algorithm)
        assert row.lr_free and row.lr_estimate == 2.5 and result.workloads[0].row("sgd").lr_estimate is None
        assert result.candidates == [Learns.algorithm] and result.workloads[0].best_default == Learns.algorithm
        table = result.table()
        assert f"{Learns.algorithm} *" in table and "0.001 (→2.5)" in table and "none of them lr_free" not in table
    finally:
        OPTIMIZERS.pop(Learns.algorithm)


def test_a_missing_package_skips_its_workloads_with_the_reason(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "sklearn", None)  # import sklearn raises ImportError
    built, skipped = cworkloads.resolve(["digits-softmax", "ill-conditioned-lsq", "diabetes-linear"])
    assert [w.name for w in built] == ["ill-conditioned-lsq"]
    assert [name for name, _ in skipped] == ["digits-softmax", "diabetes-linear"]
    assert all('pip install "scikit-learn>=1.0" (from a fastadapt checkout: pip install ".[examples]")' in reason
               for _, reason in skipped)
    code, printed, err = _cli(capsys, "compare", "--quick", "--optimizers", "sgd", "--grid-size", "1",
                              "--workloads", "wine-softmax,ill-conditioned-lsq", "--out", tmp_path, "--no-progress")
    assert code == 0, err
    assert "skipped wine-softmax: needs scikit-learn" in printed and "ill-conditioned-lsq" in printed
    code, _, err = _cli(capsys, "compare", "--quick", "--optimizers", "sgd", "--workloads", "wine-softmax",
                        "--out", tmp_path / "none", "--no-progress")
    assert code == 2 and "every workload was skipped" in err and "needs scikit-learn" in err


# ---- the suite's models: exact gradients ----------------------------------------------------------------------

def _finite_difference_check(model_loss_and_grad, params, batch, eps=1e-6):
    loss, grads = model_loss_and_grad(params, batch)
    leaves = [(params, grads, k) for k in params if isinstance(params[k], np.ndarray)]
    leaves += [(params[k], grads[k], j) for k in params if isinstance(params[k], dict) for j in params[k]]
    rng = np.random.default_rng(0)
    for holder, gholder, key in leaves:
        a, g = holder[key], gholder[key]
        assert g.shape == a.shape and g.dtype == a.dtype
        for index in rng.choice(a.size, size=min(6, a.size), replace=False):
            idx = np.unravel_index(index, a.shape)
            old = a[idx]
            a[idx] = old + eps
            up = model_loss_and_grad(params, batch)[0]
            a[idx] = old - eps
            down = model_loss_and_grad(params, batch)[0]
            a[idx] = old
            assert g[idx] == pytest.approx((up - down) / (2 * eps), rel=1e-5, abs=1e-8), (key, idx)
    return loss


def test_the_suite_models_gradients_match_finite_differences():
    rng = np.random.default_rng(3)
    logreg = cmodels.LogisticRegression(7)
    params = {"w": rng.standard_normal(7), "b": rng.standard_normal(1)}
    X, y = rng.standard_normal((20, 7)) * 3, (rng.random(20) > 0.5).astype(float)
    loss = _finite_difference_check(logreg.loss_and_grad, params, (X, y))
    assert loss == pytest.approx(logreg.loss(params, (X, y)))

    ae = cmodels.Autoencoder(9, 4, dtype=np.float64)
    params = ae.init_params(1)
    X = rng.random((11, 9))
    _finite_difference_check(ae.loss_and_grad, params, (X,))

    mf = cmodels.MatrixFactorization(6, 5, 2, l2=0.1)
    params = mf.init_params(2)
    ij = np.array([[0, 1], [0, 1], [3, 4], [5, 0], [0, 2]])  # a repeated entry and a repeated row
    values = rng.standard_normal(len(ij))
    loss = _finite_difference_check(mf.loss_and_grad, params, (ij, values))
    assert loss > mf.mse(params, (ij, values))  # the penalty is in the training loss, not in the metric


# ---- bad arguments ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("flags, message", [
    (["--optimizers", "adam,adamm"], "unknown optimizer 'adamm' in optimizers"),
    (["--optimizers", "adam,adam"], "optimizer 'adam' is listed twice"),
    (["--optimizers", "adam", "--workloads", "mnist-mlp,nope"], "unknown workload 'nope' in --workloads"),
    (["--optimizers", "adam", "--lr-min", "0.1", "--lr-max", "0.01"], "lr_min (0.1) must be below lr_max (0.01)"),
    (["--optimizers", "adam", "--seeds", "0,0"], "seeds must be distinct"),
    (["--optimizers", "adam", "--seeds", "a"], "expected integers separated by commas"),
    (["--optimizers", "adam", "--grid-size", "0"], "must be >= 1"),
    (["--optimizers", "adam", "--accuracy-tolerance", "2"], "--accuracy-tolerance must be a number in [0, 1)"),
    (["--optimizers", "adam,,lion"], "expected names separated by commas"),
])
def test_cli_errors_exit_2_naming_the_problem(tmp_path, capsys, flags, message):
    code, out, err = _cli(capsys, "compare", *flags, "--out", tmp_path / "never")
    assert code == 2 and out == "" and message in err and "Traceback" not in err
    assert err.count("\n") == 1
    assert not (tmp_path / "never").exists()


def test_without_lr_free_rules_the_cli_asks_for_optimizers(tmp_path, capsys, monkeypatch):
    for cls in OPTIMIZERS.values():  # this build may or may not have lr-free rules: make sure it has none
        if getattr(cls, "lr_free", False):
            monkeypatch.setattr(cls, "lr_free", False)
    code, out, err = _cli(capsys, "compare", "--out", tmp_path / "never")
    assert code == 2 and "no registered optimizer has lr_free = True" in err and "--optimizers adam,lion" in err
    assert not (tmp_path / "never").exists()
    with pytest.raises(ValueError, match="no registered optimizer has lr_free = True"):
        fa.compare(["wine-softmax"])


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(optimizers="adam"), TypeError, "optimizers must be a list of registered names"),
    (dict(optimizers=[]), ValueError, "optimizers is empty"),
    (dict(optimizers=["adam"], workloads="quad"), TypeError, "workloads must be a list of names"),
    (dict(optimizers=["adam"], workloads=[]), ValueError, "workloads is empty"),
    (dict(optimizers=["adam"], workloads=[42]), TypeError, "workloads must hold names or"),
    (dict(optimizers=["adam"], seeds=[-1]), ValueError, "seeds must hold ints >= 0"),
    (dict(optimizers=["adam"], lrs=[1e-3], grid_size=3), ValueError, "not both"),
    (dict(optimizers=["adam"], lrs=[0.0]), ValueError, "lr_min must be a finite number > 0"),
    (dict(optimizers=["adam"], loss_tolerance=-0.1), ValueError, "loss_tolerance must be a number in [0, 1)"),
    (dict(optimizers=["adam"], quick="yes"), TypeError, "quick must be True or False"),
])
def test_api_errors_name_the_argument(kwargs, error, message):
    kwargs.setdefault("workloads", [_quadratic()])
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        fa.compare(**kwargs, progress=False)


def test_user_workload_errors_name_the_field():
    good = _quadratic()
    with pytest.raises(ValueError, match="metric must be 'accuracy'"):
        Workload("w", good.init_params, good.loss_and_grad, good.train, good.val, metric="f1")
    with pytest.raises(TypeError, match="metric='accuracy' needs accuracy="):
        Workload("w", good.init_params, good.loss_and_grad, good.train, good.val, metric="accuracy")
    with pytest.raises(ValueError, match="share their first axis"):
        Workload("w", good.init_params, good.loss_and_grad, (np.zeros((3, 2)), np.zeros(4)), good.val)
    with pytest.raises(ValueError, match="name must be a non-empty string"):
        Workload("a/b", good.init_params, good.loss_and_grad, good.train, good.val)
    with pytest.raises(ValueError, match="batch_size must be an int >= 1 or None"):
        Workload("w", good.init_params, good.loss_and_grad, good.train, good.val, batch_size=0)
    with pytest.raises(TypeError, match="loss_and_grad must be a function"):
        Workload("w", good.init_params, None, good.train, good.val)
    with pytest.raises(ValueError, match="workload names must be unique"):
        fa.compare([good, _quadratic()], ["adam"], progress=False)


def test_lr_grid_is_log_spaced():
    assert lr_grid(1e-4, 1e-1, 4) == pytest.approx([1e-4, 1e-3, 1e-2, 1e-1], rel=1e-12)
    assert lr_grid(1e-3, 1e-3, 1) == [1e-3]
