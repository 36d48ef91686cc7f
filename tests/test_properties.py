"""Hypothesis: random shapes, dtypes and hyperparameters stay bit-exact with
the reference."""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastadapt as fa
from fastadapt import reference as ref

from helpers import copy_tree, same_bits

shapes = st.lists(st.integers(0, 40), min_size=0, max_size=3).map(tuple)
unit = st.floats(0.0, 0.999)
small = st.floats(0.0, 0.5)
lrs = st.floats(1e-5, 0.5)

OPTIONS = {
    "Adam": st.fixed_dictionaries({"lr": lrs, "betas": st.tuples(unit, unit), "eps": st.floats(1e-10, 1e-3),
                                   "weight_decay": small, "amsgrad": st.booleans(), "maximize": st.booleans()}),
    "AdamW": st.fixed_dictionaries({"lr": lrs, "betas": st.tuples(unit, unit), "weight_decay": small}),
    "AdaGrad": st.fixed_dictionaries({"lr": lrs, "lr_decay": small, "weight_decay": small,
                                      "initial_accumulator_value": small, "eps": st.floats(1e-12, 1e-3)}),
    "RMSProp": st.fixed_dictionaries({"lr": lrs, "alpha": st.floats(0.0, 1.0), "eps": st.floats(1e-10, 1e-3),
                                      "weight_decay": small, "momentum": st.sampled_from([0.0, 0.5, 0.9]),
                                      "centered": st.booleans()}),
    "SGD": st.fixed_dictionaries({"lr": lrs, "momentum": st.sampled_from([0.0, 0.9]),
                                  "dampening": st.sampled_from([0.0, 0.5]), "weight_decay": small}),
}


@st.composite
def problems(draw):
    name = draw(st.sampled_from(sorted(OPTIONS)))
    options = draw(OPTIONS[name])
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    shape_list = draw(st.lists(shapes, min_size=1, max_size=4))
    clip = draw(st.one_of(st.none(), st.floats(0.1, 10.0)))
    seed = draw(st.integers(0, 2**31))
    return name, options, dtype, shape_list, clip, seed


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_random_problems_match_reference(problem):
    name, options, dtype, shape_list, clip, seed = problem
    if name == "RMSProp" and options["centered"]:
        options = dict(options, eps=max(options["eps"], 1e-8))
    rng = np.random.default_rng(seed)
    params = {f"t{i}": rng.standard_normal(s).astype(dtype) for i, s in enumerate(shape_list)}
    mirror = copy_tree(params)
    ours = getattr(fa, name)(max_grad_norm=clip, **options)
    theirs = getattr(ref, name)(max_grad_norm=clip, **options)
    for _ in range(3):
        grads = {k: rng.standard_normal(v.shape).astype(dtype) for k, v in params.items()}
        ours.update(params, grads)
        theirs.update(mirror, grads)
    for k in params:
        assert same_bits(params[k], mirror[k]), k
