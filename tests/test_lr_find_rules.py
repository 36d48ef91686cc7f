"""lr_find's rules on curves whose answers are known: divergence read off the
raw losses, the verification picking its best candidate, every lr group
moved relative to its own base (checked against torch's param groups), the
fallback when verification cannot run, and a plot that shows its markers.
(bench/test_lr_find_regret.py measures how well the suggestion trains.)"""

import itertools
import math

import numpy as np
import pytest

import fastadapt as fa
from fastadapt.schedules.lr_finder import LRFindResult


def scripted(values):
    """A loss_and_grad that returns ``values`` in turn (then the last one), gradient zero."""
    calls = []

    def loss_and_grad(params, batch):
        calls.append(1)
        return values[min(len(calls), len(values)) - 1], {"w": np.zeros(1)}

    return loss_and_grad


def test_a_jump_in_the_raw_loss_stops_the_sweep_where_it_happens():
    # 1.0 for 30 steps, then 6.0: the 0.98 EMA would need ~45 more steps to pass 4x its
    # best; two raw losses in a row above that bound stop the sweep at step 32.
    result = fa.lr_find(fa.SGD(), {"w": np.zeros(1)}, scripted([1.0] * 30 + [6.0] * 100), [None],
                        num_steps=100, verify_steps=0)
    assert result.stop_reason == "diverged" and result.diverged and len(result.lrs) == 32
    assert result.smoothed_losses[-1] < 4.0       # the EMA alone would have called this "completed"


def test_one_bad_batch_is_not_a_divergence():
    values = [1.0] * 30 + [50.0] + [1.0] * 69
    result = fa.lr_find(fa.SGD(), {"w": np.zeros(1)}, scripted(values), [None], num_steps=100, verify_steps=0)
    assert result.stop_reason == "completed" and len(result.lrs) == 100


def quadratic():
    """f(w) = |w - 1|^2 / 2 over 4 coordinates: SGD at lr contracts the error by
    |1 - lr| a step, so lr = 1 is best, lr > 2 blows up."""
    def loss_and_grad(params, batch):
        error = params["w"] - 1.0
        return 0.5 * float(error @ error), {"w": error.copy()}

    return loss_and_grad


def test_the_suggestion_is_the_verified_candidate_with_the_lowest_score():
    params = {"w": np.zeros(4)}
    result = fa.lr_find(fa.SGD(), params, quadratic(), itertools.repeat(None), num_steps=100, verify_steps=20)
    assert result.suggestion_method == "verified" and len(result.candidates) >= 4
    best = min(result.candidates.values())
    assert result.candidates[result.suggestion] == best
    # the best of the runs contracts fastest: |1 - lr| is smallest near lr = 1
    assert 0.5 <= result.suggestion <= 1.8
    ranked = sorted(result.candidates, key=lambda lr: abs(1 - lr))
    assert result.candidates[ranked[0]] == best
    assert np.all(params["w"] == 0)                                      # restored after the runs


def test_verification_runs_each_candidate_from_the_same_start_on_the_same_batches():
    seen = []

    def record(params, batch):
        seen.append((batch, float(params["w"][0])))
        return 1.0 + float(params["w"][0]) ** 2, {"w": 2 * params["w"] - 0.1}

    fa.lr_find(fa.SGD(), {"w": np.zeros(1)}, record, [0, 1, 2], num_steps=30, verify_steps=6)
    runs = [seen[i:i + 6] for i in range(30, len(seen), 6)]
    assert len(runs) >= 3 and len(seen) == 30 + 6 * len(runs)
    for run in runs:     # every run starts at w = 0 on batch 0 and walks the batches in order
        assert run[0] == (0, 0.0) and [b for b, _ in run] == [0, 1, 2, 0, 1, 2]


def test_a_one_shot_iterator_that_runs_out_falls_back_to_the_curve():
    loss_and_grad = quadratic()
    result = fa.lr_find(fa.SGD(), {"w": np.zeros(4)}, loss_and_grad, iter([None] * 130), num_steps=100)
    assert result.stop_reason == "diverged" or len(result.lrs) == 100
    assert result.suggestion_method == "curve" and result.candidates == {}
    assert result.suggestion is not None and result.suggestion < 2.0


def test_verify_steps_zero_runs_only_the_sweep():
    calls = []

    def counted(params, batch):
        calls.append(1)
        return quadratic()(params, batch)

    result = fa.lr_find(fa.SGD(), {"w": np.zeros(4)}, counted, itertools.repeat(None), num_steps=50,
                        verify_steps=0)
    assert len(calls) == len(result.lrs) and result.suggestion_method == "curve"


@pytest.mark.parametrize("seed", range(3))
def test_a_noisy_curve_still_gets_a_stable_suggestion(seed):
    # 20% multiplicative noise on the reported loss; the old rule's steepest
    # slope landed decades low (1e-6) on such curves
    problem = fa.problems.least_squares(n_samples=256, n_features=10, seed=seed)
    rng = np.random.default_rng(seed)

    def noisy(params, batch):
        loss, grads = problem.loss_and_grad(params, batch)
        return loss * math.exp(0.2 * rng.standard_normal()), grads

    result = fa.lr_find(fa.SGD(), problem.init_params(), noisy, itertools.repeat(None), num_steps=100)
    assert problem.max_stable_lr / 10 <= result.suggestion < problem.max_stable_lr


def _group_lr_recorder(opt):
    seen = []

    def loss_and_grad(params, batch):
        seen.append(list(opt.group_values("lr")))
        return 1.0, {"a": np.zeros(2), "b": np.zeros(2), "c": np.zeros(2)}

    return seen, loss_and_grad


def test_every_lr_group_moves_relative_to_its_own_base():
    opt = fa.SGD(lr=1e-3, overrides={"b": {"lr": 1e-2}, "c": {"weight_decay": 0.1}})
    seen, loss_and_grad = _group_lr_recorder(opt)
    params = {"a": np.zeros(2), "b": np.zeros(2), "c": np.zeros(2)}
    result = fa.lr_find(opt, params, loss_and_grad, [None], start_lr=1e-6, end_lr=1.0, num_steps=20,
                        verify_steps=4)
    sweep = np.array(seen[:20])
    np.testing.assert_allclose(sweep[:, 0], result.lrs, rtol=1e-12)
    np.testing.assert_allclose(sweep[:, 1], 10 * result.lrs, rtol=1e-12)     # b keeps its 10x
    for lrs in seen[20:]:                                                     # so do the verification runs
        assert lrs[1] == pytest.approx(10 * lrs[0], rel=1e-12)
    assert result.group_lrs == pytest.approx([result.suggestion, 10 * result.suggestion], rel=1e-12)
    assert opt.group_values("lr") == [1e-3, 1e-2]                            # restored


def test_group_lrs_match_torch_param_groups_under_a_scheduler():
    torch = pytest.importorskip("torch")
    opt = fa.SGD(lr=1e-3, overrides={"b": {"lr": 1e-2}})
    seen, loss_and_grad = _group_lr_recorder(opt)
    params = {"a": np.zeros(2), "b": np.zeros(2), "c": np.zeros(2)}
    n, start, end = 25, 1e-6, 1.0
    fa.lr_find(opt, params, loss_and_grad, [None], start_lr=start, end_lr=end, num_steps=n, verify_steps=0)

    # torch: two param groups with their own lr; a LambdaLR multiplies each group's
    # initial lr by the same factor, the sweep's lr_k / (default base)
    groups = [{"params": [torch.zeros(2, requires_grad=True)], "lr": 1e-3},
              {"params": [torch.zeros(2, requires_grad=True)], "lr": 1e-2}]
    torch_opt = torch.optim.SGD(groups)
    factor = lambda k: start * (end / start) ** (k / (n - 1)) / 1e-3   # noqa: E731
    scheduler = torch.optim.lr_scheduler.LambdaLR(torch_opt, lr_lambda=factor)
    expected = []
    for _ in range(n):
        expected.append([g["lr"] for g in torch_opt.param_groups])
        torch_opt.step()
        scheduler.step()
    np.testing.assert_allclose(np.array(seen), np.array(expected), rtol=1e-12)


def test_the_plot_keeps_its_markers_in_view():
    pytest.importorskip("matplotlib")
    # a suggestion far up the blow-up: the old y-limits (up to the first/median loss) cut it off
    lrs = np.geomspace(1e-4, 10, 40)
    smoothed = np.concatenate([np.linspace(2.0, 1.0, 30), np.geomspace(1.5, 50.0, 10)])
    result = LRFindResult(lrs=lrs, losses=smoothed.copy(), smoothed_losses=smoothed, suggestion=float(lrs[36]),
                          suggestion_index=36, valley=float(lrs[10]), valley_index=10, stop_reason="diverged")
    low, high = result.plot().axes[0].get_ylim()
    assert low < smoothed[10] < high and low < smoothed[36] < high
