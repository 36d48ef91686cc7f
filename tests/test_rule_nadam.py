"""NAdam: the fused kernel against fastadapt's NumPy reference bit for bit
(every ISA path and thread count, both dtypes, every option, clipping,
non-finite policies, overrides, a state_dict round trip), and the reference
and fa.NAdam against torch.optim.NAdam (float64 to 1e-12 relative, skipped
without torch) with hyperparameters changed mid-run."""

import itertools

import numpy as np
import pytest

import fastadapt as fa
from fastadapt.reference import nadam

from rule_parity import (DTYPES, PREP, assert_bad_hyperparameter_refused, assert_not_options,
                         kernel_vs_reference, overrides_vs_reference, round_trip_equals_uninterrupted)
from torch_trajectory import run, torch_defaults

OPTIONS = [dict(zip(("weight_decay", "decoupled_weight_decay", "maximize"), v))
           for v in itertools.product([0.0, 0.1], [False, True], [False, True])]
CHANGES = [dict(lr=3e-3), dict(betas=(0.8, 0.99), momentum_decay=0.05), dict(eps=1e-3, weight_decay=0.05),
           dict(decoupled_weight_decay=True, betas=(0.0, 0.5)), dict(momentum_decay=0.0, betas=(0.95, 0.999))]


@pytest.fixture
def torch():
    torch = pytest.importorskip("torch")
    # torch keeps state["mu_product"] in the default dtype: float32 unless
    # the default is float64, and then it alone is ~1e-8 relative off.
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield torch
    torch.set_default_dtype(before)


# ---- the kernel against the reference, bit for bit --------------------------------------

@DTYPES
@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_kernel_matches_reference_bit_for_bit(options, dtype, isa, threads):
    kernel_vs_reference(fa.NAdam, nadam.NAdam, dict(lr=1e-2, **options), dtype, changes=CHANGES, steps=6)


@DTYPES
@pytest.mark.parametrize("prep", PREP, ids=str)
def test_gradient_preprocessing_matches_reference(prep, dtype, isa, threads):
    kernel_vs_reference(fa.NAdam, nadam.NAdam, dict(lr=1e-2, weight_decay=0.1, maximize=True), dtype, **prep)


@DTYPES
def test_overrides_match_a_reference_per_group(dtype, threads):
    override = dict(lr=0.05, betas=(0.5, 0.9), weight_decay=0.2, decoupled_weight_decay=True, momentum_decay=0.1)
    opt = overrides_vs_reference(fa.NAdam, nadam.NAdam, dict(lr=1e-2, weight_decay=0.01), override, dtype,
                                 changes=CHANGES)
    # one mu_product per group: the override's betas and momentum_decay give another product
    state = opt.state
    assert state["big"]["mu_product"] != state["layer.odd"]["mu_product"]
    assert state["layer.odd"]["mu_product"] == state["layer.scalar"]["mu_product"]


@DTYPES
def test_state_dict_round_trip_mid_run_equals_uninterrupted_run(dtype):
    straight = round_trip_equals_uninterrupted(
        lambda: fa.NAdam(lr=1e-2, weight_decay=0.1, overrides={"big": {"betas": (0.8, 0.99)}}), dtype,
        changes=CHANGES)
    mu = straight.state_dict()["state"]["big"]["mu_product"]
    assert mu.dtype == np.float64 and mu.shape == () and 0.0 < float(mu) < 1.0


def test_mu_product_is_the_product_of_the_schedule():
    p, g = {"w": np.zeros(3, np.float32)}, {"w": np.ones(3, np.float32)}
    for opt in (fa.NAdam(), nadam.NAdam()):
        want = 1.0
        for t in range(1, 6):
            if t == 3:
                opt.betas, opt.momentum_decay = (0.5, 0.999), 0.1
            want *= opt.betas[0] * (1.0 - 0.5 * 0.96 ** (t * opt.momentum_decay))
            opt.update(p, g)
            assert float(opt.state["w"]["mu_product"]) == want


def test_a_loaded_state_dict_with_two_mu_products_in_one_group_is_refused():
    p = {"a": np.zeros(3), "b": np.zeros(4)}
    opt = fa.NAdam()
    opt.update(p, {"a": np.ones(3), "b": np.ones(4)})
    sd = opt.state_dict()
    sd["state"]["b"]["mu_product"] = np.array(0.5)
    fresh = fa.NAdam()
    with pytest.raises(ValueError, match="mu_product"):
        fresh.load_state_dict(sd, params=p)
    sd["state"]["b"]["mu_product"] = 0.5
    with pytest.raises(TypeError, match="mu_product"):
        fresh.load_state_dict(sd, params=p)
    assert fresh.step_count == 0 and not fresh.state


# ---- against torch.optim.NAdam ---------------------------------------------------------

def test_defaults_are_torchs(torch):
    assert nadam.NAdam.defaults == torch_defaults(torch.optim.NAdam)
    assert {k: v for k, v in fa.NAdam().hyperparameters.items()
            if k in nadam.NAdam.defaults} == nadam.NAdam.defaults


def torch_changes(weight_decay, decoupled):
    def changes(k):
        out = {"lr": 3e-2 * (1.0 - k / 40)}                       # a decaying lr, every step
        if k == 10:
            out.update(betas=(0.8, 0.95), momentum_decay=0.02, eps=1e-3)
        if k == 18:
            out.update(weight_decay=weight_decay * 3, betas=(0.95, 0.999))
        if k == 25:
            out.update(decoupled_weight_decay=not decoupled, momentum_decay=0.0)
        return out
    return changes


@pytest.mark.parametrize("impl", [nadam.NAdam, fa.NAdam], ids=["reference", "fastadapt"])
@pytest.mark.parametrize("decoupled", [False, True])
@pytest.mark.parametrize("maximize", [False, True])
@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
def test_matches_torch_with_hyperparameters_changed_mid_run(torch, impl, decoupled, maximize, weight_decay):
    opts = dict(lr=3e-2, betas=(0.9, 0.99), eps=1e-8, weight_decay=weight_decay, momentum_decay=4e-3,
                decoupled_weight_decay=decoupled, maximize=maximize)
    run(torch.optim.NAdam, impl(**opts), torch_kwargs=opts, changes=torch_changes(weight_decay, decoupled),
        state_keys=("exp_avg", "exp_avg_sq"), scalar_state_keys=("mu_product",))


@pytest.mark.parametrize("impl", [nadam.NAdam, fa.NAdam], ids=["reference", "fastadapt"])
def test_defaults_trajectory_matches_torch(torch, impl):
    run(torch.optim.NAdam, impl(), torch_kwargs={}, changes=lambda k: {}, steps=40,
        state_keys=("exp_avg", "exp_avg_sq"), scalar_state_keys=("mu_product",))


def test_float32_stays_float32_and_near_torch(torch):
    opts = dict(lr=1e-2, weight_decay=0.01)
    run(torch.optim.NAdam, nadam.NAdam(**opts), torch_kwargs=opts, changes=lambda k: {}, dtype=np.float32,
        state_keys=("exp_avg", "exp_avg_sq"), tol=1e-4)   # float32 op order differs: a sanity check


# ---- bad input ----------------------------------------------------------------------------

BAD = [(dict(lr=-1.0), ValueError, "lr"), (dict(lr=float("nan")), ValueError, "lr"),
       (dict(lr="0.1"), TypeError, "lr"), (dict(betas=(1.0, 0.9)), ValueError, "beta"),
       (dict(betas=(0.9, -0.1)), ValueError, "beta"), (dict(betas=0.9), TypeError, "betas"),
       (dict(eps=-1e-8), ValueError, "eps"), (dict(weight_decay=-0.1), ValueError, "weight_decay"),
       (dict(momentum_decay=-1.0), ValueError, "momentum_decay"),
       (dict(decoupled_weight_decay=1), TypeError, "decoupled_weight_decay"),
       (dict(maximize="yes"), TypeError, "maximize")]


@pytest.mark.parametrize("kwargs,exc,needle", BAD, ids=[str(b[0]) for b in BAD])
def test_bad_hyperparameters_raise_clearly_and_change_nothing(kwargs, exc, needle):
    assert_bad_hyperparameter_refused(fa.NAdam, kwargs, exc, needle)


def test_torch_only_options_are_not_ours():
    assert_not_options(fa.NAdam, ("foreach", "capturable", "differentiable", "amsgrad"))
