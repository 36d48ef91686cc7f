"""Schedule-Free AdamW: the fused kernel against fastadapt's NumPy reference
bit for bit (every ISA path and thread count, both dtypes, every option,
clipping, non-finite policies, overrides, eval()/train(), checkpoints in
either mode), and the reference and fa.ScheduleFreeAdamW against the
schedulefree package's AdamWScheduleFree (float64 to 1e-13 relative, skipped
without it) with hyperparameters changed mid-run and eval()/train() switches."""

import numpy as np
import pytest

import fastadapt as fa
from fastadapt.reference import schedulefree_adamw as ref

import schedulefree_parity as sfp
from rule_parity import DTYPES, PREP, assert_not_options, pair_is_reference
from schedulefree_trajectory import (OPTIONS, defaults_are_the_packages, eval_and_train_as_the_package,
                                     float32_stays_float32_and_near_package, package, package_changes, run_vs_package,
                                     zero_lr_start_matches_package)

STATE = ("z", "exp_avg_sq")
IMPLS = pytest.mark.parametrize("impl", [ref.ScheduleFreeAdamW, fa.ScheduleFreeAdamW], ids=["reference", "fastadapt"])

# ---- the kernel against the reference, bit for bit --------------------------------------

# (c >= 0.5 at the first step and while warming up: both lerp forms run)
CHANGES = [dict(lr=3e-3), dict(betas=(0.8, 0.99), warmup_steps=10), dict(eps=1e-3, weight_decay=0.05),
           dict(r=1.0, weight_lr_power=1.0), dict(betas=(0.5, 0.9), lr=2e-2)]
PER_KEY = {"layer.odd": {"weight_decay": 0.0, "lr": 0.1, "warmup_steps": 2}, "big": {"r": 2.0, "eps": 1e-6},
           "layer.matrix": {"maximize": True}}


@DTYPES
@pytest.mark.parametrize("options", sfp.KERNEL_OPTIONS, ids=sfp.options_id)
def test_kernel_is_reference_bit_for_bit(options, dtype, isa, threads):
    pair_is_reference(fa.ScheduleFreeAdamW, ref.ScheduleFreeAdamW, dict(lr=1e-2, **options), dtype, steps=6,
                      changes=CHANGES)


@DTYPES
@pytest.mark.parametrize("prep", PREP, ids=str)
def test_gradient_preprocessing_is_reference_bit_for_bit(prep, dtype, isa, threads):
    sfp.gradient_preprocessing_is_reference(fa.ScheduleFreeAdamW, ref.ScheduleFreeAdamW, prep, dtype)


@DTYPES
def test_overrides_are_reference_bit_for_bit(dtype, isa, threads):
    sfp.overrides_are_reference(fa.ScheduleFreeAdamW, ref.ScheduleFreeAdamW, dtype, CHANGES, PER_KEY)


@DTYPES
def test_eval_and_train_are_reference_bit_for_bit(dtype, isa, threads):
    sfp.eval_train_bit_for_bit(fa.ScheduleFreeAdamW, ref.ScheduleFreeAdamW, dict(lr=1e-2, weight_decay=0.1),
                               dtype, steps=6, changes=CHANGES, per_key={"layer.odd": {"lr": 0.1}})


@DTYPES
@pytest.mark.parametrize("prep", [p for p in PREP if p.get("nonfinite_grads")], ids=str)
def test_eval_and_train_with_nonfinite_gradients_are_reference(prep, dtype):
    sfp.eval_train_bit_for_bit(fa.ScheduleFreeAdamW, ref.ScheduleFreeAdamW, dict(lr=1e-2), dtype, **prep)


@DTYPES
def test_eval_with_a_beta1_override_is_a_reference_per_group(dtype, threads):
    """The override's beta1 is the b of its keys' eval (x = lerp(y, z, 1 - 1/b1))."""
    sfp.eval_per_group(fa.ScheduleFreeAdamW, ref.ScheduleFreeAdamW, dict(lr=1e-2),
                       dict(betas=(0.5, 0.9), lr=0.05, warmup_steps=2), dtype)


@DTYPES
def test_state_dict_round_trip_in_train_mode_equals_uninterrupted_run(dtype):
    sd = sfp.round_trip_in_train_mode(fa.ScheduleFreeAdamW, dtype, CHANGES, PER_KEY)
    for name in ("lr_max", "weight_sum", "scheduled_lr", "ckp1"):
        v = sd["state"]["big"][name]
        assert v.dtype == np.float64 and v.shape == ()


@DTYPES
@pytest.mark.parametrize("bind_first", [False, True], ids=["train-first", "eval-then-train"])
def test_checkpoint_in_eval_mode_resumes_bit_for_bit(dtype, bind_first):
    sfp.checkpoint_in_eval_mode_resumes(
        lambda: fa.ScheduleFreeAdamW(lr=1e-2, weight_decay=0.1, warmup_steps=3, overrides=PER_KEY), dtype,
        changes=CHANGES, bind_first=bind_first)


def test_the_mode_travels_with_the_state_dict():
    sfp.checkpoint_in_train_mode_loads_train_mode(fa.ScheduleFreeAdamW, np.float32)
    sfp.bad_mode_in_state_dict_is_refused(fa.ScheduleFreeAdamW, np.float64)


@DTYPES
def test_eval_and_train_are_atomic(dtype):
    sfp.eval_and_train_are_atomic(lambda: fa.ScheduleFreeAdamW(lr=1e-2), dtype)


def test_adapted_is_the_schedule():
    sfp.adapted_is_the_schedule(fa.ScheduleFreeAdamW, ref.ScheduleFreeAdamW, dict(lr=1e-2, warmup_steps=3),
                                CHANGES)


def test_an_overflowing_averaging_weight_is_refused():
    sfp.overflowing_weight_is_refused(fa.ScheduleFreeAdamW)


def test_not_options():
    assert_not_options(fa.ScheduleFreeAdamW, ("foreach", "amsgrad", "momentum"))


# ---- against the schedulefree package --------------------------------------------------

# (betas and eps moved at steps 10 and 24)
PACKAGE_CHANGES = package_changes(2e-2, {10: dict(betas=(0.8, 0.95), eps=1e-3),
                                         24: dict(betas=(0.95, 0.999), eps=1e-8)})


def test_defaults_are_the_packages():
    defaults_are_the_packages(package().AdamWScheduleFree, ref.ScheduleFreeAdamW, fa.ScheduleFreeAdamW)


@IMPLS
@pytest.mark.parametrize("options", OPTIONS, ids=sfp.options_id)
@pytest.mark.parametrize("maximize", [False, True])
def test_matches_package_with_hyperparameters_changed_mid_run(impl, options, maximize):
    sf = package()
    kwargs = dict(lr=2e-2, betas=(0.9, 0.99), eps=1e-8, **options)
    run_vs_package(sf.AdamWScheduleFree, impl(maximize=maximize, **kwargs), kwargs=kwargs,
                   changes=PACKAGE_CHANGES, maximize=maximize, state_keys=STATE, switch_at=(3, 15, 36))


@IMPLS
@pytest.mark.parametrize("foreach", [False, True])
def test_defaults_trajectory_matches_package(impl, foreach):
    sf = package()
    run_vs_package(sf.AdamWScheduleFree, impl(), kwargs={}, steps=40, foreach=foreach, state_keys=STATE,
                   switch_at=(1, 20, 40))


@IMPLS
def test_zero_lr_start_matches_package(impl):
    zero_lr_start_matches_package(package().AdamWScheduleFree, impl, 1e-2, STATE)


@IMPLS
def test_float32_stays_float32_and_near_package(impl):
    float32_stays_float32_and_near_package(package().AdamWScheduleFree, impl, 1e-2, STATE)


@IMPLS
def test_eval_and_train_as_the_package(impl):
    sf = package()
    eval_and_train_as_the_package(sf.AdamWScheduleFree, impl(lr=0.1), 0.9, dict(lr=0.1))
