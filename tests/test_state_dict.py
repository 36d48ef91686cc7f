"""state_dict -> fresh optimizer -> load_state_dict -> continue == uninterrupted."""

import pickle

import numpy as np
import pytest

import fastadapt as fa

from helpers import copy_tree, trees_same_bits

CONFIGS = [
    ("Adam", dict(amsgrad=True, weight_decay=0.01)),
    ("AdamW", dict(weight_decay=0.1)),
    ("AdaGrad", dict(lr_decay=0.01, initial_accumulator_value=0.1)),
    ("RMSProp", dict(momentum=0.9, centered=True)),
    ("SGD", dict(momentum=0.9, nesterov=True)),
    ("SGD", dict(momentum=0.5, dampening=0.1)),
]


def grads_at(step, dtype):
    rng = np.random.default_rng(100 + step)
    return {"fc1": {"w": rng.standard_normal((20, 30)).astype(dtype), "b": rng.standard_normal(30).astype(dtype)},
            "fc2": [rng.standard_normal((30, 5)).astype(dtype), rng.standard_normal(5).astype(dtype)]}


def initial(dtype):
    return copy_tree(grads_at(-1, dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,options", CONFIGS)
@pytest.mark.parametrize("through", ["object", "pickle", "npz"])
def test_resume_equals_uninterrupted(name, options, dtype, through, tmp_path):
    cls = getattr(fa, name)
    kw = dict(max_grad_norm=3.0, overrides={"fc1.b": {"weight_decay": 0.0}} if "weight_decay" in options else None,
              **options)
    full = initial(dtype)
    opt = cls(**kw)
    for s in range(8):
        if s == 4:
            opt.lr = opt.lr * 0.5  # changed hyperparameters must be restored too
        opt.update(full, grads_at(s, dtype))

    part = initial(dtype)
    first = cls(**kw)
    for s in range(4):
        first.update(part, grads_at(s, dtype))
    first.lr = first.lr * 0.5
    sd = first.state_dict()
    if through == "pickle":
        sd = pickle.loads(pickle.dumps(sd))
    elif through == "npz":
        flat = {f"{k}/{n}": a for k, bufs in sd["state"].items() for n, a in bufs.items()}
        np.savez(tmp_path / "state.npz", **flat)
        with np.load(tmp_path / "state.npz") as z:
            state = {}
            for key in z.files:
                k, n = key.rsplit("/", 1)
                state.setdefault(k, {})[n] = z[key]
        sd = dict(sd, state=state)
    del first
    second = cls(**kw)
    second.load_state_dict(sd)  # before the first update: bound at the next one
    for s in range(4, 8):
        second.update(part, grads_at(s, dtype))
    assert trees_same_bits(full, part)
    assert second.step_count == opt.step_count == 8
    assert second.lr == opt.lr


def test_load_into_bound_optimizer_and_state_is_a_copy():
    p = initial(np.float64)
    opt = fa.Adam()
    opt.update(p, grads_at(0, np.float64))
    sd = opt.state_dict()
    before = sd["state"]["fc1.w"]["exp_avg"].copy()
    opt.update(p, grads_at(1, np.float64))
    assert np.array_equal(sd["state"]["fc1.w"]["exp_avg"], before), "state_dict must hold copies"
    other = fa.Adam()
    other.update(initial(np.float64), grads_at(0, np.float64))
    other.load_state_dict(opt.state_dict())
    assert other.step_count == 2
    for k, bufs in opt.state.items():
        for n, a in bufs.items():
            assert np.array_equal(a, other.state[k][n])
            assert a is not other.state[k][n]


def test_state_dict_is_plain_data():
    opt = fa.RMSProp(momentum=0.9)
    p = initial(np.float32)
    opt.update(p, grads_at(0, np.float32))
    sd = opt.state_dict()

    def check(x):
        if isinstance(x, dict):
            for k, v in x.items():
                assert isinstance(k, str)
                check(v)
        elif isinstance(x, (list, tuple)):
            for v in x:
                check(v)
        else:
            assert x is None or isinstance(x, (bool, int, float, str, np.ndarray)), type(x)

    check(sd)
    assert sd["algorithm"] == "rmsprop" and sd["step"] == 1
    assert set(sd["state"]["fc1.w"]) == {"square_avg", "momentum_buffer"}


def test_adamw_and_adam_state_dicts_do_not_mix():
    sd = fa.AdamW().state_dict()
    assert sd["algorithm"] == "adamw"
    with pytest.raises(ValueError, match="adamw"):
        fa.Adam().load_state_dict(sd)


def test_reset_starts_over_with_a_new_structure():
    opt = fa.Adam()
    opt.update({"a": np.ones(3)}, {"a": np.ones(3)})
    with pytest.raises(ValueError, match="reset"):
        opt.update({"b": np.ones(3)}, {"b": np.ones(3)})
    opt.reset()
    opt.update({"b": np.ones(3)}, {"b": np.ones(3)})
    assert opt.step_count == 1 and list(opt.state) == ["b"]
