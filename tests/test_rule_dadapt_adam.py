"""DAdaptAdam: the fused fa.DAdaptAdam against fastadapt's NumPy reference
bit for bit (every ISA path and thread count, float32 and float64, odd sizes,
a pool-sized tensor, every option, clipping, non-finite policies, maximize,
overrides with layer_scale and a key with lr 0, the early return, the learned
scalars), and both against the dadaptation package's ``DAdaptAdam`` (float64
trajectories of 40 steps, several tensors in several parameter groups,
layer_scale per key, hyperparameters changed mid-run, every option, d,
numerator_weighted and k compared after every step; skipped without
dadaptation); checkpoints; bad hyperparameters."""

import math

import pytest

import fastadapt as fa
from fastadapt.reference import dadapt_adam as ref_dadapt

import d_adam_parity as dap
from d_adam_parity import D0, learned, options_id
from d_adam_trajectory import changes_for, lr_0_group_matches_package, package_trajectory
from rule_parity import DTYPES, PREP, assert_bad_assignments_change_nothing, assert_not_options, pair_is_reference

IMPLS = {"fa": fa.DAdaptAdam, "reference": ref_dadapt.DAdaptAdam}
BUFFERS = (("exp_avg", "exp_avg"), ("exp_avg_sq", "exp_avg_sq"), ("s", "s"))
SCALARS = (("d", "d"), ("numerator_weighted", "numerator_weighted"), ("k", "k"))

OPTIONS = [dict(), dict(weight_decay=0.1), dict(weight_decay=0.1, decouple=True),
           dict(use_bias_correction=True), dict(betas=(0.0, 0.99), eps=1e-4),
           dict(growth_rate=1.05, d0=1e-4), dict(lr=0.5, betas=(0.5, 0.9))]


def changes(k):
    """Before step k: a learning-rate decay from step 15, new betas, weight decay, eps."""
    out = {}
    if k >= 15:
        out["lr"] = 1.0 - 0.01 * (k - 14)
    if k == 10:
        out["betas"] = (0.85, 0.995)
    if k == 20:
        out["weight_decay"] = 0.05
    if k == 25:
        out["eps"] = 1e-6
    return out


def build(impl, hyper, per_key=None):
    return dap.build(IMPLS, impl, hyper, per_key)


def dadapt_cls():
    return pytest.importorskip("dadaptation").DAdaptAdam


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("options", OPTIONS, ids=options_id)
def test_dadaptation_trajectory(impl, options):
    cls = dadapt_cls()
    per_key = {"b": {"weight_decay": 0.3, "eps": 1e-6}, "c": {"layer_scale": 2.0}, "d": {"layer_scale": 0.5}}
    package_trajectory(cls, build(impl, options, per_key), options, per_key, decouple_default=False,
                       changes=changes_for(options, changes), buffers=BUFFERS, scalars=SCALARS)


@pytest.mark.parametrize("impl", IMPLS)
def test_no_gradient_signal_changes_no_parameter(impl):
    """The package returns early while the sum of |s| is 0: parameters, d,
    numerator_weighted and k stay."""
    dap.no_gradient_signal_changes_no_parameter(build(impl, {}), "numerator_weighted")


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("options", [dict(), dict(weight_decay=0.1, decouple=True)], ids=options_id)
def test_a_group_with_lr_0_adds_nothing_to_d_and_keeps_its_moments(impl, options):
    """A group with lr 0 takes no part in d's estimate and updates no moment,
    but still takes the step (its stale exp_avg; decoupled weight decay with
    the largest lr), as in the package."""
    cls = dadapt_cls()
    per_key = {"d": {"lr": 0.0}}
    lr_0_group_matches_package(cls, build(impl, options, per_key), options, per_key, buffers=BUFFERS,
                               scalars=SCALARS)


@pytest.mark.parametrize("impl", IMPLS)
def test_unequal_learning_rates_are_refused_and_change_nothing(impl):
    opt = build(impl, {}, {"w": {"lr": 0.5}})
    dap.unequal_learning_rates_change_nothing(opt)
    assert not opt.state


def test_defaults_are_dadaptations():
    import inspect

    theirs = inspect.signature(dadapt_cls().__init__).parameters
    for name, value in ref_dadapt.DAdaptAdam.defaults.items():
        assert fa.DAdaptAdam().hyperparameters[name] == value, name
        if name in theirs:
            assert value == theirs[name].default, name
    # log_every only prints; fsdp_in_use is for sharded training; layer_scale
    # is a param-group key there (default 1.0), a per-key hyperparameter here
    skipped = {"self", "params", "log_every", "fsdp_in_use"}
    assert set(theirs) - skipped == set(ref_dadapt.DAdaptAdam.defaults) - {"maximize", "layer_scale"}
    assert ref_dadapt.DAdaptAdam.defaults["layer_scale"] == 1.0


def test_d_update_ignores_a_nan_estimate_as_dadaptation():
    d, num = ref_dadapt.dadapt_adam_update_d(d=1e-3, numerator_weighted=0.0, numerator_sum=float("nan"),
                                             denominator_sum=1.0, growth_rate=float("inf"), beta2=0.999)
    assert d == 1e-3 and math.isnan(num)
    assert ref_dadapt.dadapt_adam_update_d(d=1e-3, numerator_weighted=1.0, numerator_sum=1.0, denominator_sum=0.0,
                                           growth_rate=2.0, beta2=0.999) is None


def test_float32_stays_float32_and_near_float64():
    from rule_parity import float32_stays_float32_and_near_float64

    float32_stays_float32_and_near_float64(ref_dadapt.DAdaptAdam, dict(weight_decay=0.01, d0=1e-2), "exp_avg", seed=14)


# ---- the kernel against the reference, bit for bit ---------------------------------------

KERNEL_CASES = [dict(), dict(weight_decay=0.1), dict(weight_decay=0.1, decouple=True, maximize=True),
                dict(use_bias_correction=True, growth_rate=1.5, betas=(0.0, 0.9)),
                dict(layer_scale=2.0, eps=1e-3)]
KERNEL_CHANGES = [dict(lr=0.5), dict(eps=1e-4, weight_decay=0.05), dict(growth_rate=2.0, layer_scale=0.5),
                  dict(betas=(0.8, 0.99), use_bias_correction=True)]


@DTYPES
@pytest.mark.parametrize("options", KERNEL_CASES, ids=options_id)
def test_kernel_is_reference_bit_for_bit(options, dtype, isa, threads):
    pair_is_reference(fa.DAdaptAdam, ref_dadapt.DAdaptAdam, dict(d0=D0, **options), dtype, steps=5,
                      changes=KERNEL_CHANGES)


@DTYPES
@pytest.mark.parametrize("options", KERNEL_CASES[:3], ids=options_id)
def test_d_grows_on_a_quadratic_bit_for_bit(options, dtype, isa, threads):
    ours = dap.quadratic_is_reference(fa.DAdaptAdam, ref_dadapt.DAdaptAdam, dict(d0=D0, **options), dtype)
    assert ours.adapted["d"] > 10 * D0 and learned(ours, "k") == 8


@DTYPES
@pytest.mark.parametrize("prep", PREP, ids=str)
def test_gradient_preprocessing_is_reference_bit_for_bit(prep, dtype, isa, threads):
    dap.gradient_preprocessing_is_reference(fa.DAdaptAdam, ref_dadapt.DAdaptAdam, prep, dtype, "numerator_weighted")


PER_KEY = {"layer.odd": {"weight_decay": 0.0, "eps": 1e-4}, "big": {"layer_scale": 3.0, "maximize": True},
           "layer.matrix": {"lr": 0.0}}


@DTYPES
@pytest.mark.parametrize("options", [dict(weight_decay=0.1), dict(weight_decay=0.1, decouple=True)], ids=options_id)
def test_overrides_are_reference_bit_for_bit(options, dtype, isa, threads):
    """Per-key eps, weight decay, layer_scale, maximize, and a key with lr 0."""
    dap.overrides_are_reference(fa.DAdaptAdam, ref_dadapt.DAdaptAdam, options, dtype, KERNEL_CHANGES[:3], PER_KEY)


@DTYPES
def test_early_return_and_zero_tensors_are_reference_bit_for_bit(dtype, isa, threads):
    dap.early_return_and_zero_tensors_are_reference(fa.DAdaptAdam, ref_dadapt.DAdaptAdam, dtype)


@DTYPES
def test_state_dict_round_trip_mid_run(dtype):
    dap.state_dict_round_trip_mid_run(fa.DAdaptAdam, PER_KEY, KERNEL_CHANGES, dtype, "numerator_weighted")


def test_learned_scalars_are_visible_and_the_same_for_every_key():
    opt = fa.DAdaptAdam(d0=D0)
    got = dap.learned_scalars_after_four_steps(opt)
    assert set(got) == {"d", "d_lr"} and got["d"] * 0.5 == opt.lr_estimate


def test_unequal_learning_rates_in_the_kernel_change_nothing():
    opt = fa.DAdaptAdam(overrides={"w": {"lr": 0.5}})
    dap.unequal_learning_rates_change_nothing(opt)
    assert opt.adapted == {}


# ---- bad hyperparameters -----------------------------------------------------------------

@pytest.mark.parametrize("name", ["betas", "decouple", "use_bias_correction", "d0", "growth_rate"])
def test_global_hyperparameters_are_not_per_key(name):
    dap.global_hyperparameter_is_not_per_key(fa.DAdaptAdam, name)


def test_a_bad_assignment_changes_nothing():
    assert_bad_assignments_change_nothing(
        fa.DAdaptAdam(), (("lr", -1.0), ("eps", 0.0), ("d0", 0.0), ("layer_scale", -1.0), ("growth_rate", 0.0),
                          ("betas", (0.9, 1.0)), ("decouple", "no")))
    assert_not_options(fa.DAdaptAdam, ["log_every", "fsdp_in_use"])
