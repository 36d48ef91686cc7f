"""Prodigy: fastadapt's NumPy reference against prodigyopt's ``Prodigy``
(float64 trajectories of 40 steps, several tensors in several parameter
groups, hyperparameters changed mid-run, every option, the learned scalars
d, d_max, d_numerator and k compared after every step; skipped without
prodigyopt), and the package's edge cases: the early return before any
gradient signal, a parameter group with lr 0, unequal learning rates."""

import math

import numpy as np
import pytest

from fastadapt.reference import prodigy as ref_prodigy

from d_adam_trajectory import run

IMPLS = {"reference": ref_prodigy.Prodigy}
BUFFERS = (("exp_avg_sq", "exp_avg_sq"), ("s", "s"), ("p0", "p0"))
SCALARS = (("d", "d"), ("d_max", "d_max"), ("d_numerator", "d_numerator"), ("k", "k"))
# 1e-12 relative (measured worst 3e-14 over these runs): torch sums in its
# own order, fuses multiply-adds (addcmul) and computes sqrt as pow(x, 0.5);
# d is a ratio of sums over all tensors whose numerator cancels, so those
# last-bit differences grow a little over 40 steps.
TOL = 1e-12

OPTIONS = [dict(), dict(weight_decay=0.1), dict(weight_decay=0.1, decouple=False),
           dict(use_bias_correction=True, safeguard_warmup=True), dict(betas=(0.0, 0.99), beta3=0.9),
           dict(d_coef=0.5, growth_rate=1.02, d0=1e-4), dict(lr=0.5, eps=1e-4, betas=(0.5, 0.9))]


def changes_for(options):
    """The changes below; beta1 stays 0 where it starts at 0 (prodigyopt keeps
    no exp_avg then, and cannot turn it on later)."""
    b1 = 0.0 if options.get("betas", (0.9,))[0] == 0 else 0.85

    def with_b1(k):
        out = changes(k)
        if "betas" in out:
            out["betas"] = (b1, out["betas"][1])
        return out
    return with_b1


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


def options_id(o):
    return "-".join(f"{k}={v}" for k, v in o.items()) or "defaults"


def build(impl, hyper, per_key=None):
    if impl == "reference":
        from rule_parity import patch_per_key

        return patch_per_key(IMPLS[impl](**hyper), per_key or {})
    return IMPLS[impl](overrides=per_key, **hyper)


def prodigy_cls():
    return pytest.importorskip("prodigyopt").Prodigy


def buffers_of(hyper):
    return BUFFERS + ((("exp_avg", "exp_avg"),) if hyper.get("betas", (0.9,))[0] > 0 else ())


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("options", OPTIONS, ids=options_id)
def test_prodigyopt_trajectory(impl, options):
    cls = prodigy_cls()
    per_key = {"b": {"weight_decay": 0.3, "eps": 1e-6}, "c": {"safeguard_warmup": True}}
    ours = build(impl, options, per_key)
    # steps 0 and 1 have zero gradients (prodigyopt returns early), step 22 too (it does not: s is not 0)
    worst = run(cls, ours, torch_kwargs=options, per_key=per_key, changes=changes_for(options), buffers=buffers_of(options),
                scalars=SCALARS, zero_steps=(0, 1, 22), tol=TOL)
    state = ours.state["a"]
    # coupled weight decay makes the "zero" gradients of steps 0 and 1 nonzero (key "b" decays)
    early_returns = 0 if options.get("decouple", True) is False else 2
    assert float(state["k"]) == 40 - early_returns and float(state["d"]) > options.get("d0", 1e-6)
    assert worst <= TOL


@pytest.mark.parametrize("impl", IMPLS)
def test_no_gradient_signal_changes_no_parameter(impl):
    """prodigyopt returns early while the sum of |s| is 0 (zero gradients so
    far): the parameters, d and k stay; the moments of the (zero) gradient
    are still taken (they stay 0 here)."""
    opt = build(impl, {})
    p = {"w": np.arange(1.0, 5.0)}
    for _ in range(3):
        opt.update(p, {"w": np.zeros(4)})
    assert np.array_equal(p["w"], np.arange(1.0, 5.0))
    st = opt.state["w"]
    assert float(st["k"]) == 0 and float(st["d"]) == 1e-6 and float(st["d_numerator"]) == 0.0
    assert not np.any(st["s"]) and not np.any(st["exp_avg"])
    opt.update(p, {"w": np.ones(4)})
    assert float(opt.state["w"]["k"]) == 1 and not np.array_equal(p["w"], np.arange(1.0, 5.0))


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
    ours = build(impl, options, per_key)
    run(cls, ours, torch_kwargs=options, per_key=per_key, buffers=buffers_of(options), scalars=SCALARS,
        steps=30, tol=TOL)
    assert not np.any(ours.state["d"]["s"]) and not np.any(ours.state["d"]["exp_avg_sq"])


@pytest.mark.parametrize("impl", IMPLS)
def test_unequal_learning_rates_are_refused_and_change_nothing(impl):
    """prodigyopt raises RuntimeError for a group lr that is neither the
    largest nor 0; ours a ValueError naming the key, before any change."""
    opt = build(impl, {}, {"w": {"lr": 0.5}})
    p = {"v": np.ones(3), "w": np.ones(3)}
    with pytest.raises(ValueError, match="lr of 'w' is 0.5"):
        opt.update(p, {"v": np.ones(3), "w": np.ones(3)})
    assert opt.step_count == 0 and not opt.state and np.array_equal(p["w"], np.ones(3))


def test_defaults_are_prodigyopts():
    import inspect

    theirs = inspect.signature(prodigy_cls().__init__).parameters
    for name, value in ref_prodigy.Prodigy.defaults.items():
        if name != "maximize":
            assert value == theirs[name].default, name
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
