"""Prodigy: the fused fa.Prodigy against fastadapt's NumPy reference bit for
bit (every ISA path and thread count, float32 and float64, odd sizes, a
pool-sized tensor, every option, clipping, non-finite policies, maximize,
overrides, a key with lr 0, the early return, the learned scalars), and both
against prodigyopt's ``Prodigy`` (float64 trajectories of 40 steps, several
tensors in several parameter groups, hyperparameters changed mid-run, every
option, d, d_max, d_numerator and k compared after every step; skipped
without prodigyopt); checkpoints; bad hyperparameters."""

import math

import numpy as np
import pytest

import fastadapt as fa
from fastadapt.reference import prodigy as ref_prodigy

import d_adam_parity as dap
from d_adam_parity import D0, learned, options_id
from d_adam_trajectory import changes_for, lr_0_group_matches_package, package_trajectory
from rule_parity import DTYPES, PREP, assert_bad_assignments_change_nothing, assert_not_options, pair_is_reference

IMPLS = {"fa": fa.Prodigy, "reference": ref_prodigy.Prodigy}
BUFFERS = (("exp_avg_sq", "exp_avg_sq"), ("s", "s"), ("p0", "p0"))
SCALARS = (("d", "d"), ("d_max", "d_max"), ("d_numerator", "d_numerator"), ("k", "k"))

OPTIONS = [dict(), dict(weight_decay=0.1), dict(weight_decay=0.1, decouple=False),
           dict(use_bias_correction=True, safeguard_warmup=True), dict(betas=(0.0, 0.99), beta3=0.9),
           dict(d_coef=0.5, growth_rate=1.02, d0=1e-4), dict(lr=0.5, eps=1e-4, betas=(0.5, 0.9))]


def changes(k):
    """Before step k: a learning-rate decay from step 15, new betas, weight
    decay, eps, d_coef."""
    out = {}
    if k >= 15:
        out["lr"] = 1.0 - 0.01 * (k - 14)
    if k == 10:
        out["betas"] = (0.85, 0.995)
    if k == 20:
        out["weight_decay"] = 0.05
    if k == 25:
        out["eps"] = 1e-6
    if k == 30:
        out["d_coef"] = 0.8
    return out


def build(impl, hyper, per_key=None):
    return dap.build(IMPLS, impl, hyper, per_key)


def prodigy_cls():
    return pytest.importorskip("prodigyopt").Prodigy


def buffers_of(hyper):
    return BUFFERS + ((("exp_avg", "exp_avg"),) if hyper.get("betas", (0.9,))[0] > 0 else ())


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("options", OPTIONS, ids=options_id)
def test_prodigyopt_trajectory(impl, options):
    cls = prodigy_cls()
    per_key = {"b": {"weight_decay": 0.3, "eps": 1e-6}, "c": {"safeguard_warmup": True}}
    package_trajectory(cls, build(impl, options, per_key), options, per_key, decouple_default=True,
                       changes=changes_for(options, changes), buffers=buffers_of(options), scalars=SCALARS)


@pytest.mark.parametrize("impl", IMPLS)
def test_no_gradient_signal_changes_no_parameter(impl):
    """prodigyopt returns early while the sum of |s| is 0 (zero gradients so
    far): the parameters, d and k stay; the moments of the (zero) gradient
    are still taken (they stay 0 here)."""
    dap.no_gradient_signal_changes_no_parameter(build(impl, {}), "d_numerator", zero_buffers=("s", "exp_avg"))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("options", [dict(), dict(betas=(0.0, 0.999), weight_decay=0.1, decouple=False),
                                     dict(weight_decay=0.1)], ids=options_id)
def test_a_group_with_lr_0_adds_nothing_to_d_and_keeps_its_moments(impl, options):
    """A group with lr 0 (prodigyopt's only other allowed lr) takes no part in
    d's estimate and updates no moment, but still takes the step with the
    largest lr (with beta1 = 0, of its gradient; with decoupled weight decay,
    the decay), exactly as prodigyopt."""
    cls = prodigy_cls()
    per_key = {"d": {"lr": 0.0}}
    lr_0_group_matches_package(cls, build(impl, options, per_key), options, per_key, buffers=buffers_of(options),
                               scalars=SCALARS)


@pytest.mark.parametrize("impl", IMPLS)
def test_unequal_learning_rates_are_refused_and_change_nothing(impl):
    """prodigyopt raises RuntimeError for a group lr that is neither the
    largest nor 0; ours a ValueError naming the key, before any change."""
    opt = build(impl, {}, {"w": {"lr": 0.5}})
    dap.unequal_learning_rates_change_nothing(opt)
    assert not opt.state


def test_defaults_are_prodigyopts():
    import inspect

    theirs = inspect.signature(prodigy_cls().__init__).parameters
    for name, value in ref_prodigy.Prodigy.defaults.items():
        if name != "maximize":
            assert value == theirs[name].default, name
            assert fa.Prodigy().hyperparameters[name] == value, name
    skipped = {"self", "params", "fsdp_in_use", "slice_p"}
    assert set(theirs) - skipped == set(ref_prodigy.Prodigy.defaults) - {"maximize"}


def test_step_size_bias_correction():
    assert ref_prodigy.prodigy_step_size(2.0, 0.5, 0, (0.9, 0.999), False) == 1.0
    want = 1.0 * math.sqrt(1 - 0.999 ** 3) / (1 - 0.9 ** 3)
    assert ref_prodigy.prodigy_step_size(2.0, 0.5, 2, (0.9, 0.999), True) == want


def test_d_update_ignores_a_nan_estimate_as_prodigyopt():
    """prodigyopt's builtin max/min keep d and d_max when d_hat is NaN."""
    d, d_max, num = ref_prodigy.prodigy_update_d(d=2e-3, d_max=2e-3, d_numerator=1.0, numerator_sum=float("nan"),
                                                 denominator_sum=1.0, d0=1e-6, d_coef=1.0,
                                                 growth_rate=float("inf"), beta3=0.9)
    assert (d, d_max) == (2e-3, 2e-3) and math.isnan(num)


def test_float32_stays_float32_and_near_float64():
    from rule_parity import float32_stays_float32_and_near_float64

    float32_stays_float32_and_near_float64(ref_prodigy.Prodigy, dict(weight_decay=0.01, d0=1e-2), "exp_avg", seed=14)


# ---- the kernel against the reference, bit for bit ---------------------------------------

KERNEL_CASES = [dict(), dict(weight_decay=0.1), dict(weight_decay=0.1, decouple=False, maximize=True),
                dict(betas=(0.0, 0.99), weight_decay=0.1, decouple=False),
                dict(use_bias_correction=True, safeguard_warmup=True, growth_rate=1.5),
                dict(d_coef=2.0, beta3=0.5, eps=1e-3)]
KERNEL_CHANGES = [dict(lr=0.5), dict(eps=1e-4, weight_decay=0.05), dict(d_coef=0.7, growth_rate=2.0),
                  dict(betas=(0.8, 0.99), use_bias_correction=True)]


@DTYPES
@pytest.mark.parametrize("options", KERNEL_CASES, ids=options_id)
def test_kernel_is_reference_bit_for_bit(options, dtype, isa, threads):
    pair_is_reference(fa.Prodigy, ref_prodigy.Prodigy, dict(d0=D0, **options), dtype, steps=5,
                      changes=KERNEL_CHANGES)


@DTYPES
@pytest.mark.parametrize("options", KERNEL_CASES[:3], ids=options_id)
def test_d_grows_on_a_quadratic_bit_for_bit(options, dtype, isa, threads):
    ours = dap.quadratic_is_reference(fa.Prodigy, ref_prodigy.Prodigy, dict(d0=D0, **options), dtype)
    assert ours.adapted["d"] > 100 * D0 and learned(ours, "k") == 8


@DTYPES
@pytest.mark.parametrize("prep", PREP, ids=str)
def test_gradient_preprocessing_is_reference_bit_for_bit(prep, dtype, isa, threads):
    """Clipping, nonfinite="zero", and NaN/Inf gradients propagated (d and
    d_max keep their value, d_numerator is NaN from then on)."""
    dap.gradient_preprocessing_is_reference(fa.Prodigy, ref_prodigy.Prodigy, prep, dtype, "d_numerator")


PER_KEY = {"layer.odd": {"weight_decay": 0.0, "eps": 1e-4}, "big": {"safeguard_warmup": True, "maximize": True},
           "layer.matrix": {"lr": 0.0}}


@DTYPES
@pytest.mark.parametrize("options", [dict(weight_decay=0.1), dict(betas=(0.0, 0.9), weight_decay=0.1, decouple=False)],
                         ids=options_id)
def test_overrides_are_reference_bit_for_bit(options, dtype, isa, threads):
    """Per-key eps, weight decay, safeguard_warmup, maximize, and a key with
    lr 0 (no share in d, no moments, still a step)."""
    dap.overrides_are_reference(fa.Prodigy, ref_prodigy.Prodigy, options, dtype, KERNEL_CHANGES[:3], PER_KEY)


@DTYPES
def test_early_return_and_zero_tensors_are_reference_bit_for_bit(dtype, isa, threads):
    dap.early_return_and_zero_tensors_are_reference(fa.Prodigy, ref_prodigy.Prodigy, dtype)


@DTYPES
def test_state_dict_round_trip_mid_run(dtype):
    dap.state_dict_round_trip_mid_run(fa.Prodigy, PER_KEY, KERNEL_CHANGES, dtype, "d_numerator")


def test_learned_scalars_are_visible_and_the_same_for_every_key():
    opt = fa.Prodigy(d0=D0, use_bias_correction=True)
    got = dap.learned_scalars_after_four_steps(opt)
    assert set(got) == {"d", "d_lr", "d_max"} and got["d_max"] >= got["d"]
    assert opt.lr_estimate == got["d"] * 0.5 * math.sqrt(1 - 0.999 ** 5) / (1 - 0.9 ** 5)


def test_unequal_learning_rates_in_the_kernel_change_nothing():
    opt = fa.Prodigy(overrides={"w": {"lr": 0.5}})
    p = dap.unequal_learning_rates_change_nothing(opt)
    assert opt.adapted == {}
    opt.lr = 0.5          # now every key's lr is 0.5
    opt.update(p, {"v": np.ones(3), "w": np.ones(3)})
    assert opt.step_count == 1


# ---- bad hyperparameters -----------------------------------------------------------------

@pytest.mark.parametrize("name", ["betas", "beta3", "decouple", "use_bias_correction", "d0", "d_coef",
                                  "growth_rate"])
def test_global_hyperparameters_are_not_per_key(name):
    dap.global_hyperparameter_is_not_per_key(fa.Prodigy, name)


def test_a_bad_assignment_changes_nothing():
    assert_bad_assignments_change_nothing(
        fa.Prodigy(), (("lr", -1.0), ("eps", 0.0), ("d0", 0.0), ("beta3", 1.0), ("growth_rate", float("nan")),
                       ("betas", (0.9, 1.0)), ("decouple", "no")))
    assert fa.Prodigy(growth_rate=1.02, beta3=0.9).hyperparameters["growth_rate"] == 1.02
    assert_not_options(fa.Prodigy, ["slice_p", "fsdp_in_use"])
