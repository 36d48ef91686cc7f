"""The LR range test: the suggestion on a least-squares problem whose
stability limit is known from its Hessian, the sweep's rules, and params and
optimizer state restored byte for byte."""

import itertools
import json
import math

import numpy as np
import pytest

import fastadapt as fa
from fastadapt.schedules.lr_finder import fastai_valley

from helpers import copy_tree, trees_same_bits


def least_squares(seed):
    """Full-batch least squares (batch None) and its Hessian, computed here from the data."""
    problem = fa.problems.least_squares(n_samples=256, n_features=10, condition=10.0, seed=seed)
    hessian = problem.X.T @ problem.X / len(problem.y)
    return problem.loss_and_grad, hessian


@pytest.mark.parametrize("seed", range(3))
def test_suggestion_is_stable_and_within_ten_times_the_hessian_limit(seed):
    loss_and_grad, hessian = least_squares(seed)
    eigenvalues = np.linalg.eigvalsh(hessian)
    limit = 2.0 / eigenvalues.max()   # f is quadratic: GD is stable iff lr < 2 / lambda_max
    assert limit == pytest.approx(2.0) and fa.problems.least_squares(256, 10, seed=seed).max_stable_lr == \
        pytest.approx(limit)
    params = {"w": np.zeros(hessian.shape[0])}
    result = fa.lr_find(fa.SGD(), params, loss_and_grad, itertools.repeat(None),
                        start_lr=1e-7, end_lr=10.0, num_steps=100)
    assert limit / 10 <= result.suggestion < limit
    # stable: every mode of gradient descent at that lr contracts, and a run converges
    assert np.max(np.abs(1.0 - result.suggestion * eigenvalues)) < 1.0
    opt = fa.SGD(lr=result.suggestion)
    first = loss_and_grad(params, None)[0]
    for _ in range(300):
        opt.update(params, loss_and_grad(params, None)[1])
    assert loss_and_grad(params, None)[0] < 1e-3 * first


def test_sweep_follows_the_exponential_rule_and_debiased_ema():
    loss_and_grad, hessian = least_squares(0)
    result = fa.lr_find(fa.SGD(), {"w": np.zeros(10)}, loss_and_grad, itertools.repeat(None),
                        start_lr=1e-6, end_lr=1e-1, num_steps=40, smoothing=0.9)
    k = np.arange(40)
    assert result.stop_reason == "completed" and len(result.lrs) == 40
    np.testing.assert_allclose(result.lrs, 1e-6 * (1e-1 / 1e-6) ** (k / 39), rtol=1e-14)
    avg, expected = 0.0, []
    for i, loss in enumerate(result.losses):
        avg = 0.9 * avg + 0.1 * loss
        expected.append(avg / (1 - 0.9 ** (i + 1)))
    np.testing.assert_allclose(result.smoothed_losses, expected, rtol=1e-14)
    assert result.smoothed_losses[0] == pytest.approx(result.losses[0], rel=1e-15)   # debiased: no pull to 0
    # fastai's steep: the most negative forward difference against log(lr), first 10 and last 5 ignored
    s, lrs = result.smoothed_losses[10:35], result.lrs[10:35]
    assert result.steep_index == 10 + int(np.argmin(np.diff(s) / np.diff(np.log(lrs))))
    assert result.steep == result.lrs[result.steep_index]
    # fastai's minimum: a tenth of the lr at the lowest smoothed loss of the same window
    assert result.minimum_index == 10 + int(np.argmin(s)) and result.minimum == result.lrs[result.minimum_index] / 10


def test_divergence_stops_the_sweep():
    loss_and_grad, _ = least_squares(1)
    result = fa.lr_find(fa.SGD(), {"w": np.zeros(10)}, loss_and_grad, itertools.repeat(None),
                        start_lr=1e-4, end_lr=1e3, num_steps=200)
    assert result.stop_reason == "diverged" and result.diverged
    assert len(result.lrs) < 200 and result.lrs[-1] > 2.0           # past the stability limit
    # stopped by the smoothed loss, or by two raw losses in a row, above 4x the best smoothed loss
    best = np.min(result.smoothed_losses[:-2])
    assert result.smoothed_losses[-1] > 4 * best or np.all(result.losses[-2:] > 4 * best)
    assert result.suggestion < 2.0 and result.suggestion_method == "verified"
    assert all(lr < result.lrs[-1] for lr in result.candidates)     # only lrs the sweep survived


def test_non_finite_loss_and_gradient_stop_the_sweep():
    calls = []

    def exploding(params, batch):
        calls.append(1)
        bad = len(calls) == 6
        return (math.inf if bad else 1.0), {"w": np.ones(2)}

    result = fa.lr_find(fa.Adam(), {"w": np.zeros(2)}, exploding, itertools.repeat(None), num_steps=50)
    assert result.stop_reason == "non-finite loss" and len(result.lrs) == 6
    assert math.isnan(result.smoothed_losses[-1])
    calls.clear()

    def nan_gradient(params, batch):
        calls.append(1)
        return 1.0, {"w": np.full(2, np.nan if len(calls) == 4 else 1.0)}

    params = {"w": np.zeros(2)}
    result = fa.lr_find(fa.SGD(nonfinite="raise"), params, nan_gradient, itertools.repeat(None), num_steps=50)
    assert result.stop_reason == "non-finite gradient" and len(result.lrs) == 4 and np.all(params["w"] == 0)


def test_batches_cycle_and_a_one_shot_iterator_ends():
    seen = []

    def record(params, batch):
        seen.append(batch)
        return 1.0, {"w": np.zeros(1)}

    fa.lr_find(fa.SGD(), {"w": np.zeros(1)}, record, [0, 1, 2], num_steps=7, verify_steps=0)
    assert seen == [0, 1, 2, 0, 1, 2, 0]
    seen.clear()
    result = fa.lr_find(fa.SGD(), {"w": np.zeros(1)}, record, iter([0, 1, 2]), num_steps=7)
    assert seen == [0, 1, 2] and result.stop_reason == "batches exhausted" and len(result.lrs) == 3
    result = fa.lr_find(fa.SGD(), {"w": np.zeros(1)}, record, [], num_steps=7)
    assert result.stop_reason == "batches exhausted" and len(result.lrs) == 0 and result.suggestion is None


def _train(opt, params, grads_of, steps):
    for _ in range(steps):
        opt.update(params, grads_of(params))


OPTIMIZERS = {
    "adam": lambda: fa.Adam(lr=1e-2, amsgrad=True, max_grad_norm=10.0),
    "adamw": lambda: fa.AdamW(lr=1e-2),
    "adagrad": lambda: fa.AdaGrad(lr=0.1, lr_decay=0.01),
    "rmsprop": lambda: fa.RMSProp(lr=1e-2, momentum=0.9, centered=True),
    "sgd": lambda: fa.SGD(lr=1e-2, momentum=0.9, nesterov=True, overrides={"b.c": {"weight_decay": 0.1}}),
}


def _two_layer_problem(seed=0):
    rng = np.random.default_rng(seed)
    params = {"a": rng.standard_normal(6), "b": {"c": rng.standard_normal((4, 3)).astype(np.float32)}}
    target_a = rng.standard_normal(6)
    target_c = rng.standard_normal((4, 3)).astype(np.float32)

    def grads_of(p):
        return {"a": p["a"] - target_a, "b": {"c": (p["b"]["c"] - target_c) * np.float32(2)}}

    def loss_and_grad(p, batch):
        loss = 0.5 * float(np.sum((p["a"] - target_a) ** 2)) + float(np.sum((p["b"]["c"] - target_c) ** 2))
        return loss, grads_of(p)

    return params, grads_of, loss_and_grad


def _state_bytes(opt):
    sd = opt.state_dict()
    return ({k: v for k, v in sd.items() if k != "state"},
            {key: {name: arr.tobytes() for name, arr in buffers.items()} for key, buffers in sd["state"].items()})


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_params_and_optimizer_state_come_back_byte_for_byte(name):
    params, grads_of, loss_and_grad = _two_layer_problem()
    opt, twin = OPTIMIZERS[name](), OPTIMIZERS[name]()
    twin_params = copy_tree(params)
    _train(opt, params, grads_of, 3)
    _train(twin, twin_params, grads_of, 3)
    arrays = [params["a"], params["b"]["c"]]
    before_params, before_state = copy_tree(params), _state_bytes(opt)
    before_counters = (opt.last_grad_norm, opt.last_nonfinite_count)

    result = fa.lr_find(opt, params, loss_and_grad, itertools.repeat(None), num_steps=30, end_lr=1.0)

    assert len(result.lrs) > 1
    assert params["a"] is arrays[0] and params["b"]["c"] is arrays[1]       # the same arrays ...
    assert trees_same_bits(params, before_params)                            # ... with the same bytes
    assert _state_bytes(opt) == before_state
    assert (opt.last_grad_norm, opt.last_nonfinite_count) == before_counters
    # and training goes on exactly as if lr_find had never run
    _train(opt, params, grads_of, 2)
    _train(twin, twin_params, grads_of, 2)
    assert trees_same_bits(params, twin_params)


def test_a_fresh_optimizer_comes_back_fresh():
    params, grads_of, loss_and_grad = _two_layer_problem()
    opt = fa.Adam(lr=3e-4)
    before = _state_bytes(opt)
    fa.lr_find(opt, params, loss_and_grad, itertools.repeat(None), num_steps=20)
    assert _state_bytes(opt) == before and opt.lr == 3e-4 and opt.step_count == 0 and opt.state == {}
    other = {"x": np.zeros(3)}                      # not bound to the sweep's structure
    opt.update(other, {"x": np.ones(3)})
    assert opt.step_count == 1


def test_restored_when_loss_and_grad_raises():
    params, grads_of, loss_and_grad = _two_layer_problem()
    opt = fa.RMSProp(lr=1e-2, momentum=0.5)
    _train(opt, params, grads_of, 2)
    before_params, before_state = copy_tree(params), _state_bytes(opt)
    calls = []

    def failing(p, batch):
        calls.append(1)
        if len(calls) == 8:
            raise RuntimeError("data loader broke")
        return loss_and_grad(p, batch)

    with pytest.raises(RuntimeError, match="data loader broke"):
        fa.lr_find(opt, params, failing, itertools.repeat(None), num_steps=20)
    assert trees_same_bits(params, before_params) and _state_bytes(opt) == before_state


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(start_lr=0.0), ValueError, r"start_lr=0.0 must be > 0"),
    (dict(start_lr=1.0, end_lr=0.5), ValueError, r"end_lr=0.5 must be > start_lr=1.0"),
    (dict(num_steps=1), ValueError, r"num_steps=1 must be >= 2"),
    (dict(num_steps=10.0), TypeError, r"num_steps=10.0 must be an integer"),
    (dict(smoothing=1.0), ValueError, r"smoothing=1.0 must be in \[0, 1\)"),
    (dict(diverge_factor=1.0), ValueError, r"diverge_factor=1.0 must be > 1"),
    (dict(skip_end=-1), ValueError, r"skip_end=-1 must be >= 0"),
    (dict(verify_steps=1), ValueError, r"verify_steps=1 must be 0 \(no verification\) or >= 2"),
    (dict(verify_steps=-2), ValueError, r"verify_steps=-2 must be >= 0"),
    (dict(end_lr=float("inf")), ValueError, r"end_lr=inf must be finite"),
])
def test_bad_arguments(kwargs, error, message):
    params, _, loss_and_grad = _two_layer_problem()
    with pytest.raises(error, match=message):
        fa.lr_find(fa.SGD(), params, loss_and_grad, [None], **kwargs)


def test_bad_inputs_named():
    _, _, loss_and_grad = _two_layer_problem()
    with pytest.raises(TypeError, match="needs a fastadapt optimizer, got str"):
        fa.lr_find("sgd", {"w": np.zeros(2)}, loss_and_grad, [None])
    with pytest.raises(TypeError, match=r"loss_and_grad must be a callable"):
        fa.lr_find(fa.SGD(), {"w": np.zeros(2)}, None, [None])
    with pytest.raises(TypeError, match=r"batches must be an iterable .* itertools.repeat\(batch\)"):
        fa.lr_find(fa.SGD(), {"w": np.zeros(2)}, loss_and_grad, 5)
    with pytest.raises(TypeError, match=r"params\['w'\] must be a NumPy array, got list"):
        fa.lr_find(fa.SGD(), {"w": [0.0, 1.0]}, loss_and_grad, [None])


def test_valley_is_fastais():
    # fastai: lds = 1,2,1,3,4,1,5,1; max_end = 6, max_start = 6 - 5 = 1; d = 5:
    # 1 + int(5/3) + int(5/3/2) = 2
    assert fastai_valley(np.array([5.0, 4.0, 6.0, 3.0, 2.0, 7.0, 1.0, 8.0])) == 2
    assert fastai_valley(np.array([1.0, 2.0, 3.0])) == 0      # no decrease: max_start = max_end = 0
    assert fastai_valley(np.array([2.0, 1.0])) == 1           # max_start = -1: fastai's lrs[-1]


def test_result_to_json_and_plot(tmp_path):
    loss_and_grad, _ = least_squares(2)
    result = fa.lr_find(fa.SGD(), {"w": np.zeros(10)}, loss_and_grad, itertools.repeat(None),
                        start_lr=1e-4, end_lr=1e3, num_steps=120)
    data = json.loads(json.dumps(result.to_dict()))
    assert data["suggestion"] == result.suggestion and data["stop_reason"] == "diverged"
    assert len(data["lrs"]) == len(result.lrs) and data["settings"]["optimizer"] == "SGD"
    pytest.importorskip("matplotlib")
    path = result.plot(str(tmp_path / "lr_find.png"))
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    figure = result.plot()
    axes = figure.axes[0]
    assert axes.get_xscale() == "log" and any("suggestion" in t.get_text() for t in axes.get_legend().get_texts())


def test_cli_lr_find_on_least_squares(tmp_path, capsys):
    from fastadapt.cli import main

    out = tmp_path / "out"
    assert main(["lr-find", "--problem", "least-squares", "--optimizer", "sgd", "--num-steps", "80",
                 "--out", str(out)]) == 0
    with open(out / "lr_find.json") as f:
        data = json.load(f)
    assert data["problem"] == "least-squares" and data["optimizer"].startswith("SGD(")
    assert 0.2 <= data["suggestion"] < data["full_batch_sgd_max_stable_lr"] == pytest.approx(2.0)
    assert "suggested lr (verified" in capsys.readouterr().out
    if (out / "lr_find.png").exists():
        assert (out / "lr_find.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(SystemExit) as exit_info:  # argparse checks the name against the registry
        main(["lr-find", "--optimizer", "adamm", "--out", str(out)])
    assert exit_info.value.code == 2 and "unknown optimizer 'adamm'" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--num-steps", "1"], "num_steps=1 must be >= 2"),
    (["--start-lr", "0"], "start_lr=0.0 must be > 0"),
    (["--start-lr", "1", "--end-lr", "0.1"], "end_lr=0.1 must be > start_lr=1.0"),
    (["--batch-size", "0"], "--batch-size 0 must be >= 1"),
])
def test_cli_lr_find_bad_arguments_exit_2_with_the_message(tmp_path, capsys, argv, message):
    from fastadapt.cli import main

    out = tmp_path / "out"
    assert main(["lr-find", "--problem", "least-squares", "--out", str(out), *argv]) == 2
    assert capsys.readouterr().err.strip() == f"fastadapt lr-find: {message}"
    assert not out.exists()                     # nothing ran, nothing written


def test_least_squares_problem_compares_by_identity_and_has_a_short_repr():
    problem = fa.problems.least_squares(64, 4, seed=1)
    assert problem == problem and problem != fa.problems.least_squares(64, 4, seed=1)   # no element-wise ==
    assert {problem: 1}[problem] == 1
    assert repr(problem) == "LeastSquares(n_samples=64, n_features=4, dtype=float64, max_stable_lr=2)"


def test_negative_losses_do_not_count_as_divergence():
    # smooth > 4 * best is the rule for losses >= 0; with best = -3 it would call
    # -2.9 a blow-up. The bound is taken from |best|: best + 3 * |best|.
    def falling(p, batch):
        falling.k += 1
        return -10.0 - 0.01 * falling.k, {"w": np.zeros(1)}

    falling.k = 0
    result = fa.lr_find(fa.SGD(), {"w": np.zeros(1)}, falling, [None], num_steps=30)
    assert result.stop_reason == "completed" and len(result.lrs) == 30

    def rising(p, batch):
        rising.k += 1
        return (-3.0 if rising.k < 10 else 7.0), {"w": np.zeros(1)}

    rising.k = 0
    result = fa.lr_find(fa.SGD(), {"w": np.zeros(1)}, rising, [None], num_steps=30, smoothing=0.0)
    assert result.stop_reason == "diverged" and len(result.lrs) == 10     # 7 > -3 + 3 * 3


def test_plot_of_a_flat_curve_does_not_zoom_into_rounding_noise():
    pytest.importorskip("matplotlib")
    result = fa.lr_find(fa.SGD(), {"w": np.zeros(2)}, lambda p, b: (1.0, {"w": np.zeros(2)}), [None], num_steps=30)
    low, high = result.plot().axes[0].get_ylim()
    assert low < 1.0 < high and high - low >= 1e-3


def test_restored_when_a_one_shot_iterator_runs_out():
    params, grads_of, loss_and_grad = _two_layer_problem()
    opt = fa.AdaGrad(lr=0.1, lr_decay=0.01)
    _train(opt, params, grads_of, 2)
    before_params, before_state = copy_tree(params), _state_bytes(opt)
    result = fa.lr_find(opt, params, loss_and_grad, iter([None] * 7), num_steps=20)
    assert result.stop_reason == "batches exhausted" and len(result.lrs) == 7
    assert trees_same_bits(params, before_params) and _state_bytes(opt) == before_state and opt.lr == 0.1
