"""HD-Adam (Baydin et al., ICLR 2018: Adam-HD, Algorithm 6): fastadapt's
NumPy reference against the paper's algorithm written out below as a plain
float64 loop (40 steps, several tensors, hyperparameters changed mid-run,
the adapted learning rate compared after every step); against
torch.optim.Adam with the hypergradient rule wrapped around it; and, with
hypergrad_lr=0, against torch.optim.Adam itself."""

import functools

import numpy as np
import pytest

import fastadapt as fa
from fastadapt.reference import hd_adam as ref_hd_adam

import hypergradient_parity as hgp
from hypergradient_parity import options_id
from hypergradient_trajectory import (adapted_lr, every_impl_and_case, flat, hypergrad_lr_zero_is_torch,
                                      same_trajectory_as, torch_with_hypergradient, unflat)
from hypergradient_trajectory import schedule as hypergradient_schedule
from rule_parity import DTYPES, PREP, assert_bad_assignments_change_nothing, round_trip_equals_uninterrupted

STEPS = 40
IMPLS = {"fa": fa.HypergradientAdam, "reference": ref_hd_adam.HypergradientAdam}


def adam_hd_paper(grad_fn, theta0, hyper_at, steps):
    """The paper's Adam-HD (Algorithm 6), theta one flat float64 vector, in
    the paper's names:

        h_t = g_t . grad_alpha u_{t-1};  alpha_t = alpha_{t-1} - beta h_t
        m_t = beta1 m_{t-1} + (1 - beta1) g_t
        v_t = beta2 v_{t-1} + (1 - beta2) g_t^2
        m_hat_t = m_t / (1 - beta1^t);  v_hat_t = v_t / (1 - beta2^t)
        u_t = -alpha_t m_hat_t / (sqrt(v_hat_t) + eps)
        grad_alpha u_t = -m_hat_t / (sqrt(v_hat_t) + eps)
        theta_t = theta_{t-1} + u_t

    Beyond the paper, as the authors' AdamHD and torch.optim.Adam: an L2 term
    ``g_t = grad f + wd theta_{t-1}``; assigning ``lr`` restarts alpha."""
    theta = flat(theta0)
    grad_alpha_u = np.zeros_like(theta)
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    alpha = lr = None
    out = []
    for t in range(1, steps + 1):
        hp = hyper_at(t)
        if hp["lr"] != lr:
            alpha = lr = hp["lr"]
        beta, (beta1, beta2), eps = hp["hypergrad_lr"], hp["betas"], hp["eps"]
        g = flat(grad_fn(t, unflat(theta))) + hp["weight_decay"] * theta
        h = np.dot(g, grad_alpha_u)
        alpha = alpha - beta * h
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g ** 2
        m_hat = m / (1 - beta1 ** t)
        v_hat = v / (1 - beta2 ** t)
        u = -alpha * m_hat / (np.sqrt(v_hat) + eps)
        grad_alpha_u = -m_hat / (np.sqrt(v_hat) + eps)
        theta = theta + u
        out.append((unflat(theta), alpha))
    return out


BASE = dict(lr=0.01, hypergrad_lr=2e-5, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
CASES = {
    "adam-hd": dict(),
    "betas-eps": dict(betas=(0.5, 0.9), eps=1e-2, hypergrad_lr=1e-5),
    "weight-decay": dict(weight_decay=0.1),
}

EVERY_IMPL_AND_CASE = every_impl_and_case(IMPLS, CASES)


def schedule(case):
    """The case's hyperparameters, then beta, weight decay, betas (from step
    20) and eps (from 25) changed mid-run, and lr assigned (alpha restarts)
    at 30."""
    start = {**BASE, **CASES[case]}

    def betas_and_eps(t, hp):
        if t >= 20:
            hp["betas"] = (0.8, 0.99)
        if t >= 25:
            hp["eps"] = start["eps"] * 10

    return hypergradient_schedule(start, betas_and_eps)


@EVERY_IMPL_AND_CASE
def test_paper_algorithm(impl, case):
    same_trajectory_as(adam_hd_paper, IMPLS[impl], *schedule(case), seed=3, steps=STEPS)


@EVERY_IMPL_AND_CASE
def test_torch_adam_with_the_hypergradient_around_it(impl, case):
    """The direction of step t-1 read off torch's own parameter update
    (torch's ``lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps)`` is the paper's
    direction up to rounding)."""
    torch = pytest.importorskip("torch")
    same_trajectory_as(functools.partial(torch_with_hypergradient, torch.optim.Adam, {}), IMPLS[impl], *schedule(case),
                       seed=4, steps=STEPS)


@EVERY_IMPL_AND_CASE
def test_hypergrad_lr_zero_is_torch_adam(impl, case):
    """beta = 0: alpha stays lr (assigned mid-run as torch's group lr), and
    the steps and both moments are torch.optim.Adam's (1e-12: the paper's
    sqrt(v / bc2) against torch's sqrt(v) / sqrt(bc2) differ in rounding)."""
    torch = pytest.importorskip("torch")
    hypergrad_lr_zero_is_torch(torch.optim.Adam, IMPLS[impl], {**BASE, **CASES[case]},
                               state_keys=("exp_avg", "exp_avg_sq"),
                               more_changes={16: dict(betas=(0.8, 0.99)), 20: dict(eps=1e-3)})


def test_defaults():
    """The authors' AdamHD defaults (lr 1e-3, hypergrad_lr 1e-8) and
    torch.optim.Adam's betas, eps, weight_decay."""
    assert ref_hd_adam.HypergradientAdam.defaults == dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                                                          hypergrad_lr=1e-8, maximize=False)


@pytest.mark.parametrize("impl", IMPLS)
def test_first_step_uses_alpha0_and_the_hypergradient_is_the_previous_direction(impl):
    """u_0 = 0: the first step is Adam's with alpha_0 (direction m_hat /
    (sqrt(v_hat) + eps) = sign(g) up to eps); then alpha_2 = alpha_1 + beta *
    g_2 . d_1."""
    opt = IMPLS[impl](lr=0.1, hypergrad_lr=0.01, eps=0.0)
    p = {"w": np.array([1.0, 2.0])}
    opt.update(p, {"w": np.array([3.0, -4.0])})
    assert adapted_lr(opt) == 0.1 and np.allclose(p["w"], [0.9, 2.1], rtol=0, atol=1e-15)
    opt.update(p, {"w": np.array([2.0, 1.0])})
    assert adapted_lr(opt) == pytest.approx(0.1 + 0.01 * (2.0 * 1.0 + 1.0 * -1.0), rel=1e-14)


# ---- the kernel against the reference, bit for bit ---------------------------------------

KERNEL_CASES = [dict(), dict(weight_decay=0.1), dict(betas=(0.5, 0.9), eps=1e-3, maximize=True),
                dict(weight_decay=0.05, eps=0.0)]
# lr assigned (alpha restarts), beta and weight decay moved, betas and eps changed.
KERNEL_CHANGES = [dict(lr=3e-3), dict(hypergrad_lr=5e-7, weight_decay=0.2), dict(betas=(0.8, 0.99), eps=1e-6)]


@DTYPES
@pytest.mark.parametrize("options", KERNEL_CASES, ids=options_id)
def test_kernel_is_reference_bit_for_bit(options, dtype, isa, threads):
    hgp.kernel_is_reference(fa.HypergradientAdam, ref_hd_adam.HypergradientAdam,
                            dict(lr=1e-2, hypergrad_lr=1e-7, **options), dtype, KERNEL_CHANGES)


@DTYPES
@pytest.mark.parametrize("prep", PREP, ids=str)
def test_gradient_preprocessing_is_reference_bit_for_bit(prep, dtype, isa, threads):
    hgp.gradient_preprocessing_is_reference(fa.HypergradientAdam, ref_hd_adam.HypergradientAdam,
                                            dict(lr=1e-2, hypergrad_lr=1e-7, weight_decay=0.1), prep, dtype)


OVERRIDE = {"lr": 0.05, "hypergrad_lr": 3e-7, "betas": (0.5, 0.9), "maximize": True}


@DTYPES
def test_overrides_are_reference_bit_for_bit(dtype, isa, threads):
    hgp.overrides_are_reference(fa.HypergradientAdam, ref_hd_adam.HypergradientAdam,
                                dict(lr=1e-2, hypergrad_lr=1e-7, weight_decay=0.1), OVERRIDE, dtype, KERNEL_CHANGES)


@DTYPES
def test_state_dict_round_trip_mid_run(dtype):
    round_trip_equals_uninterrupted(
        lambda: fa.HypergradientAdam(lr=1e-2, hypergrad_lr=1e-7, overrides={"big": OVERRIDE}), dtype,
        steps=6, cut=3, changes=KERNEL_CHANGES, seed=3)


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(lr=-1e-3), ValueError, "Invalid lr"),
    (dict(hypergrad_lr=-1e-8), ValueError, "Invalid hypergrad_lr"),
    (dict(hypergrad_lr="x"), TypeError, "hypergrad_lr must be a real number"),
    (dict(betas=(1.0, 0.999)), ValueError, "beta parameter at index 0"),
    (dict(eps=-1e-8), ValueError, "Invalid eps"),
    (dict(weight_decay=-0.1), ValueError, "Invalid weight_decay"),
    (dict(amsgrad=True), TypeError, "amsgrad"),
    (dict(overrides={"b": {"momentum": 0.9}}), TypeError, "'momentum' is not a per-key hyperparameter"),
    (dict(overrides={"b": {"hypergrad_lr": -1.0}}), ValueError, r"Invalid overrides\[.b.\]\[.hypergrad_lr.\]"),
])
def test_bad_hyperparameters_raise_clear_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        fa.HypergradientAdam(**kwargs)


def test_a_bad_assignment_changes_nothing():
    assert_bad_assignments_change_nothing(
        fa.HypergradientAdam(lr=1e-3), (("lr", -1.0), ("hypergrad_lr", -1.0), ("betas", (0.9, 1.0)), ("eps", "x")))
