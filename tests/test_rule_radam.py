"""RAdam: the fused kernel against fastadapt's NumPy reference bit for bit
(every ISA path and thread count, both dtypes, both branches of the
rectification, every option, clipping, non-finite policies, overrides, a
state_dict round trip), and the reference and fa.RAdam against
torch.optim.RAdam (float64 to 1e-12 relative, skipped without torch) with
hyperparameters changed mid-run."""

import itertools

import numpy as np
import pytest

import fastadapt as fa
from fastadapt.reference import radam

from rule_parity import (DTYPES, PREP, assert_bad_hyperparameter_refused, assert_not_options,
                         kernel_vs_reference, overrides_vs_reference, round_trip_equals_uninterrupted)
from torch_trajectory import run, torch_defaults

OPTIONS = [dict(zip(("weight_decay", "decoupled_weight_decay", "maximize"), v))
           for v in itertools.product([0.0, 0.1], [False, True], [False, True])]
# Steps 1-5 un-rectified (b2 = 0.999), 6-7 rectified, 8-9 un-rectified again
# (b2 = 0.6: rho_inf = 4), 10 rectified (b2 = 0.99 at t = 10: rho_t > 5).
CHANGES = [dict(lr=3e-3), {}, dict(eps=1e-3, weight_decay=0.05), {}, {}, {},
           dict(betas=(0.85, 0.6)), dict(decoupled_weight_decay=True), dict(betas=(0.9, 0.99))]


def branches(changes, steps, b2=0.999):
    out = []
    for t in range(1, steps + 1):
        out.append(radam.radam_rectification(b2, t) is not None)
        b2 = changes[t - 1].get("betas", (None, b2))[1] if t - 1 < len(changes) else b2
    return out


def test_the_bit_exact_runs_take_both_branches():
    assert branches(CHANGES, 10) == [False] * 5 + [True] * 2 + [False] * 2 + [True]


# ---- the kernel against the reference, bit for bit --------------------------------------

@DTYPES
@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_kernel_matches_reference_bit_for_bit(options, dtype, isa, threads):
    kernel_vs_reference(fa.RAdam, radam.RAdam, dict(lr=1e-2, **options), dtype, changes=CHANGES, steps=10)


@DTYPES
@pytest.mark.parametrize("prep", PREP, ids=str)
def test_gradient_preprocessing_matches_reference(prep, dtype, isa, threads):
    kernel_vs_reference(fa.RAdam, radam.RAdam, dict(lr=1e-2, weight_decay=0.1, maximize=True), dtype,
                        steps=7, **prep)


@DTYPES
def test_overrides_match_a_reference_per_group(dtype, threads):
    # the override's beta2 = 0.6 is never rectified while the default group is from step 6
    override = dict(lr=0.05, betas=(0.5, 0.6), weight_decay=0.2, decoupled_weight_decay=True)
    overrides_vs_reference(fa.RAdam, radam.RAdam, dict(lr=1e-2, weight_decay=0.01), override, dtype,
                           changes=CHANGES[:6], steps=8)


@DTYPES
def test_state_dict_round_trip_mid_run_equals_uninterrupted_run(dtype):
    round_trip_equals_uninterrupted(
        lambda: fa.RAdam(lr=1e-2, weight_decay=0.1, overrides={"big": {"betas": (0.8, 0.99)}}), dtype,
        changes=CHANGES, steps=10, cut=5)


# ---- against torch.optim.RAdam ---------------------------------------------------------

def test_defaults_are_torchs():
    torch = pytest.importorskip("torch")
    assert radam.RAdam.defaults == torch_defaults(torch.optim.RAdam)
    assert {k: v for k, v in fa.RAdam().hyperparameters.items()
            if k in radam.RAdam.defaults} == radam.RAdam.defaults


def test_rectification_starts_at_step_6_for_the_default_beta2():
    assert [radam.radam_rectification(0.999, t) is not None for t in range(1, 8)] == [False] * 5 + [True] * 2
    assert radam.radam_rectification(2 / 3, 10 ** 6) is None       # rho_inf = 5: never rectified
    r = [radam.radam_rectification(0.999, t) for t in (6, 100, 10 ** 6)]
    assert 0 < r[0] < r[1] < r[2] <= 1.0


@pytest.mark.parametrize("impl", [radam.RAdam, fa.RAdam], ids=["reference", "fastadapt"])
@pytest.mark.parametrize("decoupled", [False, True])
@pytest.mark.parametrize("maximize", [False, True])
@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
def test_matches_torch_with_hyperparameters_changed_mid_run(impl, decoupled, maximize, weight_decay):
    torch = pytest.importorskip("torch")
    opts = dict(lr=3e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=weight_decay,
                decoupled_weight_decay=decoupled, maximize=maximize)
    taken = []

    def changes(k):
        out = {"lr": 3e-2 * (1.0 - k / 40)}
        if k == 12:
            out.update(betas=(0.8, 0.6), eps=1e-3)          # rho_inf = 4: back to the un-adapted step
        if k == 18:
            out.update(weight_decay=weight_decay * 3, betas=(0.95, 0.99))
        if k == 25:
            out.update(decoupled_weight_decay=not decoupled)
        return out

    def on_step(t, opt):
        taken.append(radam.radam_rectification(opt.betas[1], t) is not None)

    run(torch.optim.RAdam, impl(**opts), torch_kwargs=opts, changes=changes, on_step=on_step,
        state_keys=("exp_avg", "exp_avg_sq"))
    # both branches were taken, and the switch back and forth
    assert taken[:5] == [False] * 5 and all(taken[5:12]) and not any(taken[12:18]) and all(taken[18:])


@pytest.mark.parametrize("impl", [radam.RAdam, fa.RAdam], ids=["reference", "fastadapt"])
def test_defaults_trajectory_matches_torch(impl):
    torch = pytest.importorskip("torch")
    run(torch.optim.RAdam, impl(), torch_kwargs={}, changes=lambda k: {}, steps=40,
        state_keys=("exp_avg", "exp_avg_sq"))


def test_float32_stays_float32_and_near_torch():
    torch = pytest.importorskip("torch")
    opts = dict(lr=1e-2, weight_decay=0.01)
    run(torch.optim.RAdam, radam.RAdam(**opts), torch_kwargs=opts, changes=lambda k: {}, dtype=np.float32,
        state_keys=("exp_avg", "exp_avg_sq"), tol=1e-4)   # float32 op order differs: a sanity check


# ---- bad input ----------------------------------------------------------------------------

BAD = [(dict(lr=-1.0), ValueError, "lr"), (dict(lr=float("inf")), ValueError, "lr"),
       (dict(betas=(1.0, 0.9)), ValueError, "beta"), (dict(betas=(0.9, 1.0)), ValueError, "beta"),
       (dict(betas=[0.9]), TypeError, "betas"), (dict(eps=-1e-8), ValueError, "eps"),
       (dict(weight_decay=-0.1), ValueError, "weight_decay"),
       (dict(decoupled_weight_decay="no"), TypeError, "decoupled_weight_decay"),
       (dict(maximize=0), TypeError, "maximize")]


@pytest.mark.parametrize("kwargs,exc,needle", BAD, ids=[str(b[0]) for b in BAD])
def test_bad_hyperparameters_raise_clearly_and_change_nothing(kwargs, exc, needle):
    assert_bad_hyperparameter_refused(fa.RAdam, kwargs, exc, needle)


def test_torch_only_options_are_not_ours():
    assert_not_options(fa.RAdam, ("foreach", "capturable", "differentiable", "momentum_decay"))
