"""HD-SGD (Baydin et al., ICLR 2018: SGD-HD, Algorithm 4; SGDN-HD, Algorithm
5): fastadapt's NumPy reference against the paper's algorithms written out
below as plain float64 loops (40 steps, several tensors, hyperparameters
changed mid-run, the adapted learning rate compared after every step);
against torch.optim.SGD with the hypergradient rule wrapped around it; and,
with hypergrad_lr=0, against torch.optim.SGD itself."""

import functools

import numpy as np
import pytest

import fastadapt as fa
from fastadapt.reference import hd_sgd as ref_hd_sgd

import hypergradient_parity as hgp
from helpers import copy_tree, same_bits, trees_same_bits
from hypergradient_parity import options_id
from hypergradient_trajectory import (adapted_lr, every_impl_and_case, flat, hypergrad_lr_zero_is_torch,
                                      same_trajectory_as, torch_with_hypergradient, unflat)
from hypergradient_trajectory import schedule as hypergradient_schedule
from rule_parity import DTYPES, PREP, assert_bad_assignments_change_nothing, make_tree, round_trip_equals_uninterrupted

STEPS = 40
IMPLS = {"fa": fa.HypergradientSGD, "reference": ref_hd_sgd.HypergradientSGD}


def sgd_hd_paper(grad_fn, theta0, hyper_at, steps):
    """The paper's SGD-HD (Algorithm 4) and SGDN-HD (Algorithm 5), theta one
    flat float64 vector, in the paper's names:

        h_t = g_t . grad_alpha u_{t-1};  alpha_t = alpha_{t-1} - beta h_t
        SGD-HD:   u_t = -alpha_t g_t;                 grad_alpha u_t = -g_t
        SGDN-HD:  v_t = mu v_{t-1} + g_t;  u_t = -alpha_t (g_t + mu v_t);
                  grad_alpha u_t = -g_t - mu v_t
        theta_t = theta_{t-1} + u_t

    Beyond the paper, as the authors' SGDHD and torch.optim.SGD: an L2 term
    ``g_t = grad f + wd theta_{t-1}``; momentum without Nesterov
    (``v_t = mu v_{t-1} + (1 - dampening) g_t``, v_1 = g_1, ``u_t = -alpha_t
    v_t``, ``grad_alpha u_t = -v_t``); assigning ``lr`` restarts alpha."""
    theta = flat(theta0)
    grad_alpha_u = np.zeros_like(theta)
    v = None
    alpha = lr = None
    out = []
    for t in range(1, steps + 1):
        hp = hyper_at(t)
        if hp["lr"] != lr:
            alpha = lr = hp["lr"]
        beta, mu, wd = hp["hypergrad_lr"], hp["momentum"], hp["weight_decay"]
        g = flat(grad_fn(t, unflat(theta))) + wd * theta
        h = np.dot(g, grad_alpha_u)
        alpha = alpha - beta * h
        if mu == 0:
            u = -alpha * g
            grad_alpha_u = -g
        else:
            v = g.copy() if v is None else mu * v + (1.0 - hp["dampening"]) * g
            step_dir = g + mu * v if hp["nesterov"] else v
            u = -alpha * step_dir
            grad_alpha_u = -step_dir
        theta = theta + u
        out.append((unflat(theta), alpha))
    return out


BASE = dict(lr=0.05, hypergrad_lr=2e-4, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False)
CASES = {
    "sgd-hd": dict(),
    "sgdn-hd": dict(momentum=0.9, nesterov=True, lr=0.01, hypergrad_lr=2e-5),
    "momentum-dampening": dict(momentum=0.8, dampening=0.3, lr=0.02, hypergrad_lr=5e-5),
    "weight-decay": dict(weight_decay=0.1),
}

EVERY_IMPL_AND_CASE = every_impl_and_case(IMPLS, CASES)


def schedule(case):
    """The case's hyperparameters, then beta, weight decay and (from step
    20, without Nesterov) momentum changed mid-run, and lr assigned (alpha
    restarts) at 30."""
    def momentum_on(t, hp):
        if t >= 20 and not hp["nesterov"]:
            hp["momentum"] = hp["momentum"] or 0.5

    return hypergradient_schedule({**BASE, **CASES[case]}, momentum_on)


@EVERY_IMPL_AND_CASE
def test_paper_algorithm(impl, case):
    same_trajectory_as(sgd_hd_paper, IMPLS[impl], *schedule(case), seed=1, steps=STEPS)


@EVERY_IMPL_AND_CASE
def test_torch_sgd_with_the_hypergradient_around_it(impl, case):
    """The direction of step t-1 read off torch's own parameter update."""
    torch = pytest.importorskip("torch")
    same_trajectory_as(functools.partial(torch_with_hypergradient, torch.optim.SGD, {}), IMPLS[impl], *schedule(case),
                       seed=2, steps=STEPS)


@EVERY_IMPL_AND_CASE
def test_hypergrad_lr_zero_is_torch_sgd(impl, case):
    """beta = 0: alpha stays lr (assigned mid-run as torch's group lr), and
    the steps and the momentum buffer are torch.optim.SGD's."""
    torch = pytest.importorskip("torch")
    start = {**BASE, **CASES[case]}
    hypergrad_lr_zero_is_torch(torch.optim.SGD, IMPLS[impl], start,
                               state_keys=("momentum_buffer",) if start["momentum"] else ())


def test_defaults():
    """The authors' SGDHD defaults (hypergrad_lr 1e-6; momentum 0, dampening
    0, weight_decay 0, nesterov False as torch.optim.SGD) and fa.SGD's lr."""
    assert ref_hd_sgd.HypergradientSGD.defaults == dict(lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0,
                                                        nesterov=False, hypergrad_lr=1e-6, maximize=False)


@pytest.mark.parametrize("impl", IMPLS)
def test_first_step_is_plain_sgd_and_alpha_moves_with_agreeing_gradients(impl):
    """u_0 = 0: the first step uses alpha_0; two equal gradients raise alpha
    by beta * |g|^2 (the hypergradient is -g . g), opposite ones lower it."""
    for sign in (1.0, -1.0):
        opt = IMPLS[impl](lr=0.1, hypergrad_lr=0.01)
        p = {"w": np.array([1.0, 2.0])}
        opt.update(p, {"w": np.array([3.0, 4.0])})
        assert adapted_lr(opt) == 0.1 and np.array_equal(p["w"], [1.0 - 0.3, 2.0 - 0.4])
        opt.update(p, {"w": sign * np.array([3.0, 4.0])})
        assert adapted_lr(opt) == pytest.approx(0.1 + sign * 0.01 * 25.0, rel=1e-15)


# ---- the kernel against the reference, bit for bit ---------------------------------------

KERNEL_CASES = [dict(), dict(weight_decay=0.1), dict(momentum=0.9, nesterov=True, maximize=True),
                dict(momentum=0.8, dampening=0.25, weight_decay=0.05)]
# lr assigned (alpha restarts), beta and weight decay moved, momentum switched on.
KERNEL_CHANGES = [dict(lr=3e-3), dict(hypergrad_lr=5e-6, weight_decay=0.2), dict(momentum=0.5)]


@DTYPES
@pytest.mark.parametrize("options", KERNEL_CASES, ids=options_id)
def test_kernel_is_reference_bit_for_bit(options, dtype, isa, threads):
    changes = [c for c in KERNEL_CHANGES if not (options.get("nesterov") and "momentum" in c)]
    hgp.kernel_is_reference(fa.HypergradientSGD, ref_hd_sgd.HypergradientSGD,
                            dict(lr=1e-2, hypergrad_lr=1e-6, **options), dtype, changes)


@DTYPES
@pytest.mark.parametrize("prep", PREP, ids=str)
def test_gradient_preprocessing_is_reference_bit_for_bit(prep, dtype, isa, threads):
    hgp.gradient_preprocessing_is_reference(fa.HypergradientSGD, ref_hd_sgd.HypergradientSGD,
                                            dict(lr=1e-2, hypergrad_lr=1e-6, momentum=0.9), prep, dtype)


OVERRIDE = {"lr": 0.05, "hypergrad_lr": 3e-6, "momentum": 0.9, "nesterov": True, "maximize": True}


@DTYPES
def test_overrides_are_reference_bit_for_bit(dtype, isa, threads):
    hgp.overrides_are_reference(fa.HypergradientSGD, ref_hd_sgd.HypergradientSGD,
                                dict(lr=1e-2, hypergrad_lr=1e-6, weight_decay=0.1), OVERRIDE, dtype, KERNEL_CHANGES)


@DTYPES
def test_state_dict_round_trip_mid_run(dtype):
    round_trip_equals_uninterrupted(
        lambda: fa.HypergradientSGD(lr=1e-2, hypergrad_lr=1e-6, momentum=0.9, overrides={"big": OVERRIDE}), dtype,
        steps=6, cut=3, changes=KERNEL_CHANGES, seed=3)


@DTYPES
@pytest.mark.parametrize("options", KERNEL_CASES, ids=options_id)
def test_hypergrad_lr_zero_is_fa_sgd_bit_for_bit(options, dtype):
    """beta = 0: the same operations as fa.SGD, lr assigned mid-run included."""
    rng = np.random.default_rng(8)
    ours, theirs = fa.HypergradientSGD(lr=1e-2, hypergrad_lr=0.0, **options), fa.SGD(lr=1e-2, **options)
    p = make_tree(rng, dtype)
    q = copy_tree(p)
    for step, change in enumerate([{}, dict(lr=3e-3), dict(weight_decay=0.2), {}]):
        for name, value in change.items():
            setattr(ours, name, value)
            setattr(theirs, name, value)
        g = make_tree(rng, dtype)
        ours.update(p, g)
        theirs.update(q, g)
        assert trees_same_bits(p, q), f"step {step + 1}"
    assert ours.adapted["lr"] == 3e-3
    if options.get("momentum"):
        for k, bufs in theirs.state.items():
            assert same_bits(ours.state[k]["momentum_buffer"], bufs["momentum_buffer"]), k


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(lr=-1e-3), ValueError, "Invalid lr"),
    (dict(hypergrad_lr=-1e-6), ValueError, "Invalid hypergrad_lr"),
    (dict(hypergrad_lr=None), TypeError, "hypergrad_lr must be a real number"),
    (dict(momentum=-0.9), ValueError, "Invalid momentum"),
    (dict(dampening=1.5), ValueError, "dampening"),
    (dict(nesterov=True), ValueError, "Nesterov momentum requires momentum > 0"),
    (dict(overrides={"b": {"betas": (0.9, 0.99)}}), TypeError, "'betas' is not a per-key hyperparameter"),
    (dict(overrides={"b": {"hypergrad_lr": -1.0}}), ValueError, r"Invalid overrides\[.b.\]\[.hypergrad_lr.\]"),
])
def test_bad_hyperparameters_raise_clear_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        fa.HypergradientSGD(**kwargs)


def test_a_bad_assignment_changes_nothing():
    assert_bad_assignments_change_nothing(
        fa.HypergradientSGD(lr=1e-3), (("lr", -1.0), ("hypergrad_lr", -1.0), ("nesterov", True), ("momentum", "x")))
