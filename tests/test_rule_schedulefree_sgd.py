"""Schedule-Free SGD: the fused kernel against fastadapt's NumPy reference
bit for bit (every ISA path and thread count, both dtypes, every option,
clipping, non-finite policies, overrides, eval()/train(), checkpoints in
either mode), and the reference and fa.ScheduleFreeSGD against the
schedulefree package's SGDScheduleFree (float64 to 1e-13 relative, skipped
without it) with hyperparameters changed mid-run and eval()/train() switches."""

import numpy as np
import pytest

import fastadapt as fa
from fastadapt.reference import schedulefree_sgd as ref

import schedulefree_parity as sfp
from rule_parity import DTYPES, PREP, assert_not_options, pair_is_reference
from schedulefree_trajectory import (OPTIONS, defaults_are_the_packages, eval_and_train_as_the_package,
                                     float32_stays_float32_and_near_package, package, package_changes, run_vs_package,
                                     zero_lr_start_matches_package)

STATE = ("z",)
IMPLS = pytest.mark.parametrize("impl", [ref.ScheduleFreeSGD, fa.ScheduleFreeSGD], ids=["reference", "fastadapt"])

# ---- the kernel against the reference, bit for bit --------------------------------------

# (c >= 0.5 at the first step and while warming up: both lerp forms run;
# momentum 0.5 makes eval's weight -1 and train's 0.5: their second form)
CHANGES = [dict(lr=3e-3), dict(momentum=0.8, warmup_steps=10), dict(weight_decay=0.05),
           dict(r=1.0, weight_lr_power=1.0), dict(momentum=0.5, lr=2e-2)]
PER_KEY = {"layer.odd": {"weight_decay": 0.0, "lr": 0.1, "warmup_steps": 2}, "big": {"r": 2.0},
           "layer.matrix": {"maximize": True}}


@DTYPES
@pytest.mark.parametrize("options", sfp.KERNEL_OPTIONS, ids=sfp.options_id)
def test_kernel_is_reference_bit_for_bit(options, dtype, isa, threads):
    pair_is_reference(fa.ScheduleFreeSGD, ref.ScheduleFreeSGD, dict(lr=1e-2, **options), dtype, steps=6,
                      changes=CHANGES)


@DTYPES
@pytest.mark.parametrize("prep", PREP, ids=str)
def test_gradient_preprocessing_is_reference_bit_for_bit(prep, dtype, isa, threads):
    sfp.gradient_preprocessing_is_reference(fa.ScheduleFreeSGD, ref.ScheduleFreeSGD, prep, dtype)


@DTYPES
def test_overrides_are_reference_bit_for_bit(dtype, isa, threads):
    sfp.overrides_are_reference(fa.ScheduleFreeSGD, ref.ScheduleFreeSGD, dtype, CHANGES, PER_KEY)


@DTYPES
def test_eval_and_train_are_reference_bit_for_bit(dtype, isa, threads):
    sfp.eval_train_bit_for_bit(fa.ScheduleFreeSGD, ref.ScheduleFreeSGD, dict(lr=1e-2, weight_decay=0.1), dtype,
                               steps=6, changes=CHANGES, per_key={"layer.odd": {"lr": 0.1}})


@DTYPES
@pytest.mark.parametrize("prep", [p for p in PREP if p.get("nonfinite_grads")], ids=str)
def test_eval_and_train_with_nonfinite_gradients_are_reference(prep, dtype):
    sfp.eval_train_bit_for_bit(fa.ScheduleFreeSGD, ref.ScheduleFreeSGD, dict(lr=1e-2), dtype, **prep)


@DTYPES
def test_eval_with_a_momentum_override_is_a_reference_per_group(dtype, threads):
    sfp.eval_per_group(fa.ScheduleFreeSGD, ref.ScheduleFreeSGD, dict(lr=1e-2),
                       dict(momentum=0.5, lr=0.05, warmup_steps=2), dtype)


@DTYPES
def test_state_dict_round_trip_in_train_mode_equals_uninterrupted_run(dtype):
    sfp.round_trip_in_train_mode(fa.ScheduleFreeSGD, dtype, CHANGES, PER_KEY)


@DTYPES
@pytest.mark.parametrize("bind_first", [False, True], ids=["train-first", "eval-then-train"])
def test_checkpoint_in_eval_mode_resumes_bit_for_bit(dtype, bind_first):
    sfp.checkpoint_in_eval_mode_resumes(
        lambda: fa.ScheduleFreeSGD(lr=1e-2, weight_decay=0.1, warmup_steps=3, overrides=PER_KEY), dtype,
        changes=CHANGES, bind_first=bind_first)


def test_the_mode_travels_with_the_state_dict():
    sfp.checkpoint_in_train_mode_loads_train_mode(fa.ScheduleFreeSGD, np.float64)
    sfp.bad_mode_in_state_dict_is_refused(fa.ScheduleFreeSGD, np.float32)


@DTYPES
def test_eval_and_train_are_atomic(dtype):
    sfp.eval_and_train_are_atomic(lambda: fa.ScheduleFreeSGD(lr=1e-2), dtype)


def test_adapted_is_the_schedule():
    sfp.adapted_is_the_schedule(fa.ScheduleFreeSGD, ref.ScheduleFreeSGD, dict(lr=1e-2, warmup_steps=3), CHANGES)


def test_an_overflowing_averaging_weight_is_refused():
    sfp.overflowing_weight_is_refused(fa.ScheduleFreeSGD)


def test_not_options():
    assert_not_options(fa.ScheduleFreeSGD, ("foreach", "nesterov", "dampening", "betas"))


# ---- against the schedulefree package --------------------------------------------------

# (momentum moved at steps 10 and 24)
PACKAGE_CHANGES = package_changes(0.2, {10: dict(momentum=0.5), 24: dict(momentum=0.95)})


def test_defaults_are_the_packages():
    defaults_are_the_packages(package().SGDScheduleFree, ref.ScheduleFreeSGD, fa.ScheduleFreeSGD)


@IMPLS
@pytest.mark.parametrize("options", OPTIONS, ids=sfp.options_id)
@pytest.mark.parametrize("maximize", [False, True])
def test_matches_package_with_hyperparameters_changed_mid_run(impl, options, maximize):
    sf = package()
    kwargs = dict(lr=0.2, momentum=0.9, **options)
    run_vs_package(sf.SGDScheduleFree, impl(maximize=maximize, **kwargs), kwargs=kwargs,
                   changes=PACKAGE_CHANGES, maximize=maximize, state_keys=STATE, switch_at=(3, 15, 36))


@IMPLS
@pytest.mark.parametrize("foreach", [False, True])
def test_defaults_trajectory_matches_package(impl, foreach):
    sf = package()
    # lr 1.0 (the default) on these gradients diverges; the rest is default
    run_vs_package(sf.SGDScheduleFree, impl(lr=0.05), kwargs=dict(lr=0.05), steps=40, foreach=foreach,
                   state_keys=STATE, switch_at=(1, 20, 40))


@IMPLS
def test_zero_lr_start_matches_package(impl):
    zero_lr_start_matches_package(package().SGDScheduleFree, impl, 0.1, STATE)


@IMPLS
def test_float32_stays_float32_and_near_package(impl):
    float32_stays_float32_and_near_package(package().SGDScheduleFree, impl, 0.1, STATE)


@IMPLS
def test_eval_and_train_as_the_package(impl):
    sf = package()
    eval_and_train_as_the_package(sf.SGDScheduleFree, impl(lr=0.1), 0.9, dict(lr=0.1))
