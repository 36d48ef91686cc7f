"""Adamax: the fused kernel against fastadapt's NumPy reference bit for bit
(every ISA path and thread count, both dtypes, every option, clipping,
non-finite policies, overrides, a state_dict round trip), and the reference
and fa.Adamax against torch.optim.Adamax (float64 to 1e-12 relative, skipped
without torch) with hyperparameters changed mid-run."""

import itertools

import numpy as np
import pytest

import fastadapt as fa
from fastadapt.reference import adamax

from helpers import same_bits
from rule_parity import (DTYPES, PREP, assert_bad_hyperparameter_refused, assert_not_options,
                         kernel_vs_reference, overrides_vs_reference, round_trip_equals_uninterrupted)
from torch_trajectory import run, torch_defaults

OPTIONS = [dict(zip(("weight_decay", "maximize"), v)) for v in itertools.product([0.0, 0.1], [False, True])]
# eps = 0.5 wins the maximum for many elements (|g| is standard normal)
CHANGES = [dict(lr=3e-3), dict(betas=(0.8, 0.5), eps=0.5), dict(weight_decay=0.05, eps=0.0),
           dict(betas=(0.0, 0.0)), dict(betas=(0.95, 0.999), eps=1e-8)]


# ---- the kernel against the reference, bit for bit --------------------------------------

@DTYPES
@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_kernel_matches_reference_bit_for_bit(options, dtype, isa, threads):
    kernel_vs_reference(fa.Adamax, adamax.Adamax, dict(lr=1e-2, **options), dtype, changes=CHANGES, steps=6)


@DTYPES
@pytest.mark.parametrize("prep", PREP, ids=str)
def test_gradient_preprocessing_matches_reference(prep, dtype, isa, threads):
    kernel_vs_reference(fa.Adamax, adamax.Adamax, dict(lr=1e-2, weight_decay=0.1, maximize=True), dtype, **prep)


@DTYPES
def test_abs_of_signed_zeros_and_nans_is_numpys(dtype, isa):
    # |g| + eps with eps = 0: -0 and +0 give +0, a NaN of either sign keeps its payload
    g = np.array([-0.0, 0.0, -np.nan, np.nan, -np.inf, np.inf, -3.0] * 5, dtype)
    for eps in (0.0, 1e-8):
        ours, theirs = fa.Adamax(eps=eps), adamax.Adamax(eps=eps)
        p, q = {"w": np.ones_like(g)}, {"w": np.ones_like(g)}
        ours.update(p, {"w": g})
        theirs.update(q, {"w": g})
        assert same_bits(ours.state["w"]["exp_inf"], theirs.state["w"]["exp_inf"])
        assert same_bits(p["w"], q["w"])


@DTYPES
def test_overrides_match_a_reference_per_group(dtype, threads):
    override = dict(lr=0.05, betas=(0.5, 0.9), weight_decay=0.2, eps=0.3)
    overrides_vs_reference(fa.Adamax, adamax.Adamax, dict(lr=1e-2, weight_decay=0.01), override, dtype,
                           changes=CHANGES)


@DTYPES
def test_state_dict_round_trip_mid_run_equals_uninterrupted_run(dtype):
    round_trip_equals_uninterrupted(
        lambda: fa.Adamax(lr=1e-2, weight_decay=0.1, overrides={"big": {"betas": (0.8, 0.99)}}), dtype,
        changes=CHANGES)


# ---- against torch.optim.Adamax --------------------------------------------------------

def test_defaults_are_torchs():
    torch = pytest.importorskip("torch")
    assert adamax.Adamax.defaults == torch_defaults(torch.optim.Adamax)
    assert {k: v for k, v in fa.Adamax().hyperparameters.items()
            if k in adamax.Adamax.defaults} == adamax.Adamax.defaults


@pytest.mark.parametrize("impl", [adamax.Adamax, fa.Adamax], ids=["reference", "fastadapt"])
@pytest.mark.parametrize("maximize", [False, True])
@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
def test_matches_torch_with_hyperparameters_changed_mid_run(impl, maximize, weight_decay):
    torch = pytest.importorskip("torch")
    opts = dict(lr=3e-2, betas=(0.9, 0.99), eps=1e-8, weight_decay=weight_decay, maximize=maximize)

    def changes(k):
        out = {"lr": 3e-2 * (1.0 - k / 40)}
        if k == 10:
            out.update(betas=(0.8, 0.5), eps=1e-1)          # eps large enough to win the maximum
        if k == 18:
            out.update(weight_decay=weight_decay * 3, betas=(0.95, 0.999), eps=1e-8)
        return out

    run(torch.optim.Adamax, impl(**opts), torch_kwargs=opts, changes=changes,
        state_keys=("exp_avg", "exp_inf"))


@pytest.mark.parametrize("impl", [adamax.Adamax, fa.Adamax], ids=["reference", "fastadapt"])
def test_defaults_trajectory_matches_torch(impl):
    torch = pytest.importorskip("torch")
    run(torch.optim.Adamax, impl(), torch_kwargs={}, changes=lambda k: {}, steps=40,
        state_keys=("exp_avg", "exp_inf"))


def test_float32_stays_float32_and_near_torch():
    torch = pytest.importorskip("torch")
    opts = dict(lr=1e-2, weight_decay=0.01)
    run(torch.optim.Adamax, adamax.Adamax(**opts), torch_kwargs=opts, changes=lambda k: {}, dtype=np.float32,
        state_keys=("exp_avg", "exp_inf"), tol=1e-4)   # float32 op order differs: a sanity check


# ---- bad input ----------------------------------------------------------------------------

BAD = [(dict(lr=-1.0), ValueError, "lr"), (dict(lr=None), TypeError, "lr"),
       (dict(betas=(1.0, 0.9)), ValueError, "beta"), (dict(betas=(0.9, 1.5)), ValueError, "beta"),
       (dict(betas={0.9, 0.99}), TypeError, "betas"), (dict(eps=-1e-8), ValueError, "eps"),
       (dict(weight_decay=-0.1), ValueError, "weight_decay"), (dict(maximize=None), TypeError, "maximize")]


@pytest.mark.parametrize("kwargs,exc,needle", BAD, ids=[str(b[0]) for b in BAD])
def test_bad_hyperparameters_raise_clearly_and_change_nothing(kwargs, exc, needle):
    assert_bad_hyperparameter_refused(fa.Adamax, kwargs, exc, needle)


def test_torch_only_options_are_not_ours():
    assert_not_options(fa.Adamax, ("foreach", "capturable", "differentiable", "decoupled_weight_decay"))
