"""What tests/test_rule_hd_sgd.py and tests/test_rule_hd_adam.py check alike
for their fused rule against its NumPy reference, bit for bit: a case with
hyperparameters changed between steps, gradient preprocessing, an override
group that learns its own alpha; each time, that the hypergradient moved
alpha at all."""

import numpy as np

from rule_parity import overrides_vs_reference, pair_is_reference, propagates_nonfinite


def options_id(o):
    return "-".join(f"{k}={v}" for k, v in o.items()) or "plain"


def alpha_moved(ours):
    """The hypergradient did something: alpha is not lr (it restarted at the
    last lr assignment, so it moved in the steps since)."""
    a = ours.adapted["lr"]
    assert a != ours.lr and np.isfinite(a), a


def kernel_is_reference(fa_cls, ref_cls, hyper, dtype, changes):
    ours, _ = pair_is_reference(fa_cls, ref_cls, hyper, dtype, steps=5, changes=changes)
    alpha_moved(ours)


def gradient_preprocessing_is_reference(fa_cls, ref_cls, hyper, prep, dtype):
    """Clipping, nonfinite="zero", and NaN/Inf gradients propagated (the
    group's sum, hence alpha, becomes NaN from the second step: every
    parameter then does)."""
    ours, p = pair_is_reference(fa_cls, ref_cls, hyper, dtype, **prep)
    if propagates_nonfinite(prep):
        assert np.isnan(ours.adapted["lr"]) and np.isnan(p["layer"]["seven"]).all()
    else:
        alpha_moved(ours)


def overrides_are_reference(fa_cls, ref_cls, hyper, override, dtype, changes):
    """An override group learns its own alpha (a reference optimizer per group)."""
    ours = overrides_vs_reference(fa_cls, ref_cls, hyper, override, dtype, changes=changes)
    assert float(ours.state["big"]["lr"]) != float(ours.state["layer.odd"]["lr"])
