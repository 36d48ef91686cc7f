"""fa.diagnose and the step size a learning-rate-free rule learns (issue 15):
one that explodes (grows by orders of magnitude after the loss was at its
best, and the loss diverges) or collapses (falls by orders of magnitude and
stays down while training stalls) is a finding whose advice names the
rule's own knobs; the growth these rules make by design while the loss
falls, and a small step at a converged loss, are not. Constructed
histories, shaped as Trainer.fit logs them (test_diagnostics.synthetic)."""

import json

import pytest
from test_diagnostics import HEALTHY_LOSS, HEALTHY_VAL, synthetic

import fastadapt as fa

PRODIGY = {"algorithm": "prodigy", "lr": 1.0, "d0": 1e-6, "d_coef": 1.0, "growth_rate": float("inf"),
           "safeguard_warmup": False, "weight_decay": 0.0, "max_grad_norm": None}
DOG = {"algorithm": "dog", "lr": 1.0, "reps_rel": 1e-6, "init_eta": None, "weight_decay": 0.0,
       "max_grad_norm": 1.0}
HD = {"algorithm": "hd_sgd", "lr": 1e-3, "hypergrad_lr": 1e-6, "momentum": 0.0, "max_grad_norm": None}

RUNAWAY_LOSS = [1.2, 0.8, 0.6, 0.55, 0.9, 2.5]
RUNAWAY_D = [1e-4, 5e-4, 6e-4, 6e-4, 0.2, 5.0]
STALLED_LOSS = [2.0, 1.2, 0.9, 0.89, 0.889, 0.889, 0.888]
FALLEN_LR = [1e-3, 2e-3, 1e-3, 1e-5, 5e-6, 1e-6, 1e-6]


def _with(history, config):
    history.info["optimizer"] = config
    return history


def _codes(history):
    return [f.code for f in fa.diagnose(history)]


def test_an_exploding_d_names_the_growth_the_loss_and_prodigys_knobs():
    h = _with(synthetic(RUNAWAY_LOSS, **{"adapted/d": RUNAWAY_D}), PRODIGY)
    (finding,) = fa.diagnose(h)
    assert finding.code == "step_size_explosion" and finding.severity == "error"
    assert finding.epochs == [4, 5] and finding.evidence["quantity"] == "d"
    first = finding.evidence["hits"][0]
    assert first == {"epoch": 4, "loss": 0.9, "best_loss": 0.55, "best_epoch": 3, "step_size": 0.2,
                     "step_size_at_best": 6e-4, "growth": 333.3, "learned": {}}
    assert "d grew 8,333x, from 0.0006 when the training loss was at its best (0.55, in epoch 4) to 5 in " \
           "epoch 6" in finding.message
    for words in ("d_coef (now 1)", "growth_rate (now inf)", "safeguard_warmup=True", "weight decay (now 0)",
                  "max_grad_norm=1.0"):
        assert words in finding.advice
    json.dumps(finding.to_dict(), allow_nan=False)


@pytest.mark.parametrize("config, words", [
    (DOG, ["lower reps_rel (now 1e-06) 100x, to 1e-08", "smaller init_eta (now None)"]),
    (HD, ["lower hypergrad_lr (now 1e-06) 10-100x, e.g. to 3.3e-08", "smaller lr (now 0.001)"]),
    ({"algorithm": "something_new", "lr": 1.0}, ["lower the rule's multiplier lr (now 1)"]),
])
def test_explosion_advice_follows_the_rule(config, words):
    (finding,) = fa.diagnose(_with(synthetic(RUNAWAY_LOSS, **{"adapted/eta": RUNAWAY_D}), config))
    assert finding.code == "step_size_explosion" and finding.evidence["quantity"] == "eta"
    for w in words:
        assert w.lower() in finding.advice.lower()
    assert ("max_grad_norm=1.0" in finding.advice) == (not config.get("max_grad_norm"))


def test_growth_by_design_while_the_loss_falls_is_healthy():
    # Prodigy: d from d0 = 1e-6 to ~1e-3 within the first epochs (the range within epoch 0 is wide).
    d = [2e-5, 4e-4, 9e-4, 1e-3] + [1.1e-3] * (len(HEALTHY_LOSS) - 4)
    h = synthetic(HEALTHY_LOSS, val=HEALTHY_VAL, **{"adapted/d": d, "adapted/d_min": [1e-6] + d[:-1],
                                                    "adapted/d_max": d, "lr_estimate": d})
    assert fa.diagnose(_with(h, PRODIGY)) == []


def test_explosion_needs_the_loss_to_diverge_and_the_growth_after_its_best():
    assert _codes(synthetic(HEALTHY_LOSS[:6], **{"adapted/d": RUNAWAY_D})) == []
    # All the growth came before the best epoch: a diverging loss then is lr_too_high, not the estimate.
    early = [1e-6, 1e-4, 1e-3, 1.2e-3, 1.3e-3, 1.3e-3]
    assert _codes(synthetic(RUNAWAY_LOSS, **{"adapted/d": early})) == ["lr_too_high"]
    # Against the loss at initialization (one batch's, noisy) only a jump counts, and the value then is
    # the first epoch's smallest.
    h = synthetic([2.4, 5.0], initial_loss=2.3, **{"adapted/d": [1e-6, 1e-3], "adapted/d_min": [1e-6, 1e-4],
                                                   "adapted/d_max": [1e-5, 1e-3]})
    (finding,) = fa.diagnose(h)
    assert finding.code == "step_size_explosion" and finding.evidence["hits"][0]["best_epoch"] is None
    assert finding.evidence["hits"][0]["growth"] == 1000.0 and "at initialization" in finding.message


def test_a_step_size_that_ran_to_inf_with_a_nan_loss():
    h = synthetic([1.0, 0.6, float("nan")], **{"adapted/d": [1e-3, 1e-3, float("inf")]})
    assert _codes(h) == ["nonfinite", "step_size_explosion"]
    hit = fa.diagnose(h)[1].evidence["hits"][0]
    assert hit["step_size"] == "inf" and hit["loss"] == "nan" and hit["growth"] == "inf"
    json.dumps(fa.diagnose(h)[1].to_dict(), allow_nan=False)


def test_a_collapsed_lr_names_the_fall_the_stall_and_the_hypergradient_knob():
    h = _with(synthetic(STALLED_LOSS, **{"adapted/lr": FALLEN_LR}), HD)
    (finding,) = fa.diagnose(h)
    assert finding.code == "step_size_collapse" and finding.severity == "error"
    assert finding.epochs == [3, 4, 5, 6]
    assert finding.evidence["peak"] == 2e-3 and finding.evidence["peak_epoch"] == 1
    assert finding.evidence["ratios"] == [0.005, 0.0025, 0.0005, 0.0005]
    assert "lr fell from its peak of 0.002 (epoch 2) to 1e-06 (2,000x below it) and stayed down for 4 " \
           "epochs" in finding.message and "0.89 -> best 0.888" in finding.message
    assert finding.advice.startswith("Lower hypergrad_lr (now 1e-06) 10-100x") and "larger batches" in finding.advice


@pytest.mark.parametrize("config, words", [
    (DOG, ["raise reps_rel (now 1e-06) 100x, to 0.0001", "larger init_eta (now None)"]),
    (dict(PRODIGY, safeguard_warmup=True, weight_decay=0.1),
     ["raise d_coef (now 1), e.g. to 4", "raise d0 (now 1e-06)", "safeguard_warmup off", "lower weight_decay (now 0.1)"]),
])
def test_collapse_advice_follows_the_rule(config, words):
    (finding,) = fa.diagnose(_with(synthetic(STALLED_LOSS, **{"adapted/eta": FALLEN_LR}), config))
    assert finding.code == "step_size_collapse"
    for w in words:
        assert w.lower() in finding.advice.lower()


def test_a_step_size_pushed_below_zero_is_collapsed():
    lr = FALLEN_LR[:-2] + [-1e-5, -2e-5]  # a hypergradient can drive the lr negative
    (finding,) = fa.diagnose(synthetic(STALLED_LOSS, **{"adapted/lr": lr}))
    assert finding.code == "step_size_collapse" and "to -2e-05 (at or below zero)" in finding.message


def test_collapse_needs_the_fall_to_stay_and_training_to_stall():
    # The lr falls 100x while the loss keeps improving: annealing, not a collapse.
    assert _codes(synthetic(HEALTHY_LOSS[:7], **{"adapted/lr": FALLEN_LR})) == []
    # At a converged loss a tiny step is fine.
    converged = [2.3, 0.5, 0.01, 0.01, 0.01, 0.01, 0.01]
    assert _codes(synthetic(converged, **{"adapted/lr": FALLEN_LR})) == []
    # It came back up by the last epoch: not "stays down" (the stall is a plain plateau then).
    recovered = FALLEN_LR[:-1] + [1e-3]
    stalled = [2.0, 1.2, 0.9, 0.89, 0.889, 0.889, 0.888, 0.888, 0.888]
    assert _codes(synthetic(stalled, **{"adapted/lr": recovered + [1e-3, 1e-3]})) == ["plateau"]


def test_lr_estimate_falling_with_a_scheduled_lr_is_not_a_collapse():
    # lr_estimate = d * lr: a schedule that cuts the multiplier lr 1000x moves it as much; that part
    # is the user's, not the rule's.
    lr = [1.0, 1.0, 1.0, 1e-3, 1e-3, 1e-3, 1e-3]
    estimate = [1e-3 * v for v in lr]
    h = synthetic(STALLED_LOSS, **{"lr_estimate": estimate})
    for i, v in enumerate(lr):
        h.history["lr"][i] = v
    assert _codes(h) == []
    h.history["lr"] = [1.0] * len(lr)  # the same fall with the multiplier constant: the rule's
    assert _codes(h) == ["step_size_collapse"]


def test_the_thresholds_are_adjustable():
    runaway = synthetic(RUNAWAY_LOSS, **{"adapted/d": RUNAWAY_D})
    assert _codes(runaway) == ["step_size_explosion"]
    assert [f.code for f in fa.diagnose(runaway, fa.Thresholds(step_growth=1e4))] == ["lr_too_high"]
    stalled = synthetic(STALLED_LOSS, **{"adapted/lr": FALLEN_LR})
    assert [f.code for f in fa.diagnose(stalled, fa.Thresholds(step_collapse=1e-4))] == []
    with pytest.raises(ValueError, match="Thresholds.step_growth must be a finite number > 0"):
        fa.Thresholds(step_growth=0)


def test_lr_estimate_is_the_step_size_judged_and_the_rules_values_are_cited():
    # Prodigy logs lr_estimate (d * lr) and d: the finding judges lr_estimate and cites d beside it.
    h = _with(synthetic(RUNAWAY_LOSS, **{"lr_estimate": RUNAWAY_D, "adapted/d": [v * 2 for v in RUNAWAY_D]}), PRODIGY)
    (finding,) = fa.diagnose(h)
    assert finding.evidence["quantity"] == "lr_estimate"
    assert finding.evidence["hits"][-1]["learned"] == {"d": [0.0012, 10.0]}
    assert "diverged there (2.5) (the rule's d 0.0012 -> 10): the step size estimate overshot" in finding.message


def test_learned_values_that_are_not_step_sizes_are_not_judged():
    # Schedule-Free's averaging weight falls as 1/t and DoG's G only grows, by design: with
    # lr_estimate logged, only it is judged, however they move.
    stalled = [2.0, 1.5, 1.2, 1.0, 1.0, 0.999, 0.998, 0.998, 0.997]
    n = len(stalled)
    h = synthetic(stalled, **{"lr_estimate": [0.01] * n, "adapted/weight": [1.0 / (100 * i + 1) for i in range(n)],
                              "adapted/G": [10.0 ** i for i in range(n)]})
    assert _codes(h) == ["plateau"]
    h = synthetic(RUNAWAY_LOSS, **{"lr_estimate": [1e-3] * 6, "adapted/G": [10.0 ** i for i in range(6)]})
    assert _codes(h) == ["lr_too_high"]


def test_a_warmup_of_the_multiplier_is_not_an_explosion():
    # lr_estimate = d * lr, the lr raised 1000x by a schedule after the best epoch while d stayed: the
    # growth is the user's (the loss diverging is lr_too_high's).
    lr = [1e-3, 1e-3, 1e-3, 1e-3, 1.0, 1.0]
    h = synthetic(RUNAWAY_LOSS, **{"lr_estimate": [v * 1e-3 for v in lr]})
    assert _codes(h) == ["step_size_explosion"]  # with the multiplier logged constant, it is the rule's
    h.history["lr"] = lr
    assert _codes(h) == ["lr_too_high"]


# Numbers of a real run: HD-SGD (lr 0.01) on a small MLP with hypergrad_lr 0.3: the lr falls and goes
# below zero in epochs 9-11 (the rule ascends), the loss stops improving and rises.
HD_LOSS = [1.24, 0.537, 0.35, 0.255, 0.207, 0.178, 0.158, 0.148, 0.145, 0.145, 0.153, 0.17]
HD_LR = [0.441, 0.397, 0.351, 0.261, 0.202, 0.156, 0.0657, 0.0213, -0.0217, -0.0504, -0.0552, 0.0134]
HD_LR_MAX = [0.697, 0.451, 0.409, 0.305, 0.249, 0.19, 0.0948, 0.0354, 0.00528, -0.038, -0.0412, 0.0615]


def test_a_step_size_that_went_below_zero_while_the_loss_rose():
    h = _with(synthetic(HD_LOSS, **{"lr_estimate": HD_LR, "lr_estimate_min": [min(HD_LR)] * 12,
                                    "lr_estimate_max": HD_LR_MAX, "adapted/lr": HD_LR}), dict(HD, hypergrad_lr=0.3))
    (finding,) = fa.diagnose(h)
    assert finding.code == "step_size_collapse" and finding.epochs == [8, 9, 10]
    assert finding.evidence["kind"] == "at_or_below_zero" and finding.evidence["lowest"] == -0.0552
    assert finding.evidence["peak"] == 0.697 and finding.evidence["peak_epoch"] == 0
    assert "went to or below zero in epochs 9-11 (down to -0.0552; its peak 0.697 in epoch 1) (the rule's lr " \
           "0.441 -> -0.0552): the rule stepped against the gradient, and the training loss has not improved " \
           "since (0.145 in epoch 9 -> best 0.145, last 0.17)" in finding.message
    assert finding.advice.startswith("Lower hypergrad_lr (now 0.3) 10-100x")
    # Below zero for a while, but the loss went on improving: nothing to report.
    improving = [1.24, 0.537, 0.35, 0.255, 0.207, 0.178, 0.158, 0.148, 0.13, 0.11, 0.09, 0.07]
    assert _codes(synthetic(improving, **{"lr_estimate": HD_LR})) == []


def test_an_lr_flung_negative_within_the_first_epoch_is_judged_from_the_configured_lr():
    # Real: HD-SGD with hypergrad_lr 1.0: in its first epoch the lr reached 1.8e6 (mean -2.4e12), the loss
    # 2e18, then NaN. The step it started from is the configured lr, 0.01.
    nan = float("nan")
    h = synthetic([2.08e18] + [nan] * 3, grad=[1e9] + [nan] * 3, param=[17.0] * 4, initial_loss=2.158,
                  **{"lr_estimate": [-2.37e12] + [nan] * 3, "lr_estimate_min": [-5e12] + [nan] * 3,
                     "lr_estimate_max": [1.76e6] + [nan] * 3}, nonfinite_steps=[0, 16, 16, 16])
    _with(h, dict(HD, hypergrad_lr=1.0, lr=0.01))
    codes = _codes(h)
    assert codes[:2] == ["nonfinite", "step_size_explosion"] and "lr_too_high" not in codes
    hit = fa.diagnose(h)[1].evidence["hits"][0]
    assert hit["step_size_at_best"] == 0.01 and hit["growth"] == 1.76e8 and hit["best_epoch"] is None


def test_a_diverging_loss_under_an_lr_free_rule_gets_the_rules_advice_not_lower_the_lr():
    # The step size grew only 2x (no explosion), yet the loss diverged: the
    # lr_too_high finding names the step the rule learned and its own knobs
    # (its lr is a multiplier: "lower the learning rate 3-10x" is Adam's advice).
    loss = [1.2, 0.8, 0.6, 0.55, 0.9, 2.5]
    learned = [1e-3, 2e-3, 2e-3, 2e-3, 3e-3, 4e-3]
    h = _with(synthetic(loss, lr_estimate=learned, **{"adapted/d": learned}), dict(PRODIGY, growth_rate="inf"))
    (finding,) = [f for f in fa.diagnose(h) if f.code == "lr_too_high"]
    assert "learned step size up to 0.004" in finding.message
    assert finding.evidence["learned_step_size"] == 4e-3
    assert "d_coef (now 1)" in finding.advice and "growth_rate (now inf)" in finding.advice
    assert "Lower the learning rate 3-10x" not in finding.advice
    # Without a learned step size the advice stays the classic one.
    (plain,) = [f for f in fa.diagnose(synthetic(loss)) if f.code == "lr_too_high"]
    assert plain.advice.startswith("Lower the learning rate 3-10x")
