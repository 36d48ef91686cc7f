"""DAdaptAdam: fastadapt's NumPy reference against the dadaptation package's
``DAdaptAdam`` (float64 trajectories of 40 steps, several tensors in several
parameter groups, layer_scale per key, hyperparameters changed mid-run, every
option, the learned scalars d, numerator_weighted and k compared after every
step; skipped without dadaptation), and the package's edge cases: the early
return before any gradient signal, a group with lr 0, unequal learning rates."""

import math

import numpy as np
import pytest

from fastadapt.reference import dadapt_adam as ref_dadapt

from d_adam_trajectory import run

IMPLS = {"reference": ref_dadapt.DAdaptAdam}
BUFFERS = (("exp_avg", "exp_avg"), ("exp_avg_sq", "exp_avg_sq"), ("s", "s"))
SCALARS = (("d", "d"), ("numerator_weighted", "numerator_weighted"), ("k", "k"))
# 1e-12 relative (measured worst 3e-14 over these runs): torch sums in its
# own order, fuses multiply-adds (addcmul) and computes sqrt as pow(x, 0.5);
# d is a ratio of sums over all tensors whose numerator cancels, so those
# last-bit differences grow a little over 40 steps.
TOL = 1e-12

OPTIONS = [dict(), dict(weight_decay=0.1), dict(weight_decay=0.1, decouple=True),
           dict(use_bias_correction=True), dict(betas=(0.0, 0.99), eps=1e-4),
           dict(growth_rate=1.05, d0=1e-4), dict(lr=0.5, betas=(0.5, 0.9))]


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


def options_id(o):
    return "-".join(f"{k}={v}" for k, v in o.items()) or "defaults"


def build(impl, hyper, per_key=None):
    if impl == "reference":
        from rule_parity import patch_per_key

        return patch_per_key(IMPLS[impl](**hyper), per_key or {})
    return IMPLS[impl](overrides=per_key, **hyper)


def dadapt_cls():
    return pytest.importorskip("dadaptation").DAdaptAdam


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("options", OPTIONS, ids=options_id)
def test_dadaptation_trajectory(impl, options):
    cls = dadapt_cls()
    per_key = {"b": {"weight_decay": 0.3, "eps": 1e-6}, "c": {"layer_scale": 2.0}, "d": {"layer_scale": 0.5}}
    ours = build(impl, options, per_key)
    # steps 0 and 1 have zero gradients (the package returns early), step 22 too (it does not: s is not 0)
    worst = run(cls, ours, torch_kwargs=options, per_key=per_key, changes=changes_for(options), buffers=BUFFERS,
                scalars=SCALARS, zero_steps=(0, 1, 22), tol=TOL)
    state = ours.state["a"]
    # coupled weight decay makes the "zero" gradients of steps 0 and 1 nonzero (key "b" decays)
    early_returns = 0 if options.get("decouple", False) is False else 2
    assert float(state["k"]) == 40 - early_returns and float(state["d"]) > options.get("d0", 1e-6)
    assert worst <= TOL


@pytest.mark.parametrize("impl", IMPLS)
def test_no_gradient_signal_changes_no_parameter(impl):
    """The package returns early while the sum of |s| is 0: parameters, d,
    numerator_weighted and k stay."""
    opt = build(impl, {})
    p = {"w": np.arange(1.0, 5.0)}
    for _ in range(3):
        opt.update(p, {"w": np.zeros(4)})
    assert np.array_equal(p["w"], np.arange(1.0, 5.0))
    st = opt.state["w"]
    assert float(st["k"]) == 0 and float(st["d"]) == 1e-6 and float(st["numerator_weighted"]) == 0.0
    opt.update(p, {"w": np.ones(4)})
    assert float(opt.state["w"]["k"]) == 1 and not np.array_equal(p["w"], np.arange(1.0, 5.0))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("options", [dict(), dict(weight_decay=0.1, decouple=True)], ids=options_id)
def test_a_group_with_lr_0_adds_nothing_to_d_and_keeps_its_moments(impl, options):
    """A group with lr 0 takes no part in d's estimate and updates no moment,
    but still takes the step (its stale exp_avg; decoupled weight decay with
    the largest lr), as in the package."""
    cls = dadapt_cls()
    per_key = {"d": {"lr": 0.0}}
    ours = build(impl, options, per_key)
    run(cls, ours, torch_kwargs=options, per_key=per_key, buffers=BUFFERS, scalars=SCALARS, steps=30, tol=TOL)
    assert not np.any(ours.state["d"]["s"]) and not np.any(ours.state["d"]["exp_avg_sq"])


@pytest.mark.parametrize("impl", IMPLS)
def test_unequal_learning_rates_are_refused_and_change_nothing(impl):
    opt = build(impl, {}, {"w": {"lr": 0.5}})
    p = {"v": np.ones(3), "w": np.ones(3)}
    with pytest.raises(ValueError, match="lr of 'w' is 0.5"):
        opt.update(p, {"v": np.ones(3), "w": np.ones(3)})
    assert opt.step_count == 0 and not opt.state and np.array_equal(p["w"], np.ones(3))


def test_defaults_are_dadaptations():
    import inspect

    theirs = inspect.signature(dadapt_cls().__init__).parameters
    for name, value in ref_dadapt.DAdaptAdam.defaults.items():
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
