"""The user-facing surface: names and defaults, make_optimizer, overrides,
non-finite policies, gradient utilities, SIMD/thread controls, the CLI."""

import inspect
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import fastadapt as fa
from fastadapt import reference as ref

from helpers import copy_tree, same_bits, trees_same_bits

TORCH_DEFAULTS = {
    "Adam": dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, maximize=False),
    "AdamW": dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, maximize=False),
    "AdaGrad": dict(lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10),
    "RMSProp": dict(lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False),
    "SGD": dict(lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False),
}


@pytest.mark.parametrize("name", sorted(TORCH_DEFAULTS))
def test_defaults_follow_torch(name):
    opt = getattr(fa, name)()
    for k, v in TORCH_DEFAULTS[name].items():
        assert getattr(opt, k) == v, k
    assert opt.max_grad_norm is None and opt.nonfinite == "propagate"


def test_make_optimizer_by_name():
    for name, cls in [("adam", fa.Adam), ("AdamW", fa.AdamW), ("adagrad", fa.AdaGrad), ("RMSprop", fa.RMSProp),
                      ("sgd", fa.SGD)]:
        opt = fa.make_optimizer(name, lr=0.5)
        assert type(opt) is cls and opt.lr == 0.5
    opt = fa.Adam()
    assert fa.make_optimizer(opt) is opt
    with pytest.raises(ValueError, match=r"unknown optimizer 'no-such-rule'; expected one of (\w+, )*adagrad, adam, (\w+, )*adamw, .*sgd"):
        fa.make_optimizer("no-such-rule")
    with pytest.raises(TypeError, match="momentum"):
        fa.make_optimizer("adam", momentum=0.9)


def test_repr_lists_hyperparameters():
    r = repr(fa.SGD(lr=0.1, momentum=0.9, overrides={"*.b": {"weight_decay": 0.0}}))
    assert r.startswith("SGD(lr=0.1, momentum=0.9, dampening=0.0")
    assert "nonfinite='propagate'" in r and "overrides={'*.b': {'weight_decay': 0.0}}" in r


def test_update_returns_params_and_works_on_lists_tuples_and_bare_arrays():
    p = [np.ones(3), (np.ones(2), {"x": np.ones(1)})]
    out = fa.SGD(lr=0.5).update(p, [np.ones(3), (np.ones(2), {"x": np.ones(1)})])
    assert out is p and np.array_equal(p[1][1]["x"], [0.5])
    w = np.ones(4, np.float32)
    assert fa.SGD(lr=0.25).update(w, np.ones(4, np.float32)) is w
    assert np.array_equal(w, np.full(4, 0.75, np.float32))


def test_mixed_dtypes_in_one_structure():
    p = {"a": np.ones(5, np.float32), "b": np.ones(5, np.float64)}
    q = copy_tree(p)
    g = {"a": np.full(5, 0.5, np.float32), "b": np.full(5, 0.5)}
    fa.Adam(lr=0.1).update(p, g)
    ref.Adam(lr=0.1).update(q, g)
    assert trees_same_bits(p, q)


def test_overrides_by_glob_and_predicate_match_separate_reference_optimizers():
    rng = np.random.default_rng(0)
    p = {"fc1": {"w": rng.standard_normal((4, 3)), "b": rng.standard_normal(3)},
         "fc2": {"w": rng.standard_normal((3, 2)), "b": rng.standard_normal(2)}}
    q = copy_tree(p)
    opt = fa.AdamW(lr=1e-2, weight_decay=0.1,
                   overrides=[("*.b", {"weight_decay": 0.0}),
                              (lambda path, a: path.startswith("fc2"), {"lr": 1e-3})])
    refs = {("fc1", "w"): ref.AdamW(lr=1e-2, weight_decay=0.1), ("fc1", "b"): ref.AdamW(lr=1e-2, weight_decay=0.0),
            ("fc2", "w"): ref.AdamW(lr=1e-3, weight_decay=0.1), ("fc2", "b"): ref.AdamW(lr=1e-3, weight_decay=0.0)}
    for _ in range(3):
        g = {k: {kk: rng.standard_normal(v.shape) for kk, v in d.items()} for k, d in p.items()}
        opt.update(p, g)
        for (layer, name), r in refs.items():
            r.update({name: q[layer][name]}, {name: g[layer][name]})
        opt.lr = 5e-3  # the default moves; fc2's override stays
        for (layer, _), r in refs.items():
            if layer == "fc1":
                r.lr = 5e-3
    assert trees_same_bits(p, q)


def test_override_that_matches_nothing_warns():
    opt = fa.Adam(overrides={"*.bias": {"weight_decay": 0.0}})
    with pytest.warns(UserWarning, match=r"\*\.bias"):
        opt.update({"w": np.ones(2)}, {"w": np.ones(2)})


def test_override_values_are_validated():
    with pytest.raises(ValueError, match="overrides"):
        fa.Adam(overrides={"*.b": {"lr": -1.0}})
    with pytest.raises(TypeError, match="per-key hyperparameter"):
        fa.Adam(overrides={"*.b": {"momentum": 0.9}})


def test_flags_can_change_between_steps_like_torch():
    """amsgrad / momentum / centered switched on later create their buffers then."""
    rng = np.random.default_rng(5)
    for name, change in [("Adam", dict(amsgrad=True)), ("RMSProp", dict(momentum=0.9, centered=True)),
                         ("SGD", dict(momentum=0.9))]:
        p = {"w": rng.standard_normal(50)}
        q = copy_tree(p)
        ours, theirs = getattr(fa, name)(lr=0.01), getattr(ref, name)(lr=0.01)
        for s in range(4):
            g = {"w": rng.standard_normal(50)}
            ours.update(p, g)
            theirs.update(q, g)
            if s == 1:
                for k, v in change.items():
                    setattr(ours, k, v)
                    setattr(theirs, k, v)
        assert same_bits(p["w"], q["w"]), name


def test_nonfinite_policies():
    def setup():
        return {"a": np.ones(4, np.float32), "b": np.ones(3, np.float32)}

    bad = {"a": np.array([1, np.nan, 1, np.inf], np.float32), "b": np.array([-np.inf, 1, 1], np.float32)}

    p = setup()
    opt = fa.SGD(lr=0.5, nonfinite="zero")
    opt.update(p, bad)
    assert opt.last_nonfinite_count == 3 and opt.total_nonfinite_count == 3
    assert np.array_equal(p["a"], np.array([0.5, 1, 0.5, 1], np.float32))
    assert np.array_equal(bad["a"][[0, 2]], [1, 1]) and np.isnan(bad["a"][1]), "caller's grads untouched"

    p = setup()
    opt = fa.Adam(nonfinite="skip")
    opt.update(p, bad)
    assert opt.skipped_steps == 1 and opt.step_count == 0 and opt.last_nonfinite_count == 3
    assert trees_same_bits(p, setup())
    opt.update(p, {"a": np.ones(4, np.float32), "b": np.ones(3, np.float32)})
    assert opt.step_count == 1

    p = setup()
    opt = fa.RMSProp(nonfinite="raise")
    with pytest.raises(FloatingPointError, match="grads\\['a'\\]"):
        opt.update(p, bad)
    assert trees_same_bits(p, setup()) and opt.step_count == 0

    p = setup()
    opt = fa.SGD(lr=0.5, track_grad_norm=True)  # propagate
    opt.update(p, bad)
    assert np.isnan(p["a"][1]) and np.isinf(p["a"][3]) and np.isnan(opt.last_grad_norm)


def test_grad_norm_is_opt_in_and_fused():
    rng = np.random.default_rng(9)
    g = {"a": rng.standard_normal(1000), "b": rng.standard_normal((3, 4))}
    plain = fa.Adam()
    plain.update({k: np.zeros_like(v) for k, v in g.items()}, g)
    assert plain.last_grad_norm is None
    for opt in (fa.Adam(track_grad_norm=True), fa.Adam(max_grad_norm=1e9), fa.Adam(nonfinite="skip"),
                fa.Adam(nonfinite="raise")):
        opt.update({k: np.zeros_like(v) for k, v in g.items()}, g)
        assert opt.last_grad_norm == ref.global_norm(list(g.values()))
    zero = fa.Adam(track_grad_norm=True, nonfinite="zero")
    h = {"a": g["a"].copy(), "b": g["b"].copy()}
    h["a"][5] = np.nan
    zero.update({k: np.zeros_like(v) for k, v in h.items()}, h)
    clean = {"a": np.where(np.isfinite(h["a"]), h["a"], 0.0), "b": h["b"]}
    assert zero.last_grad_norm == ref.global_norm(list(clean.values()))


def test_sgd_first_momentum_step_is_not_garbage_after_a_skipped_step():
    p = {"w": np.ones(3)}
    opt = fa.SGD(lr=0.1, momentum=0.9, nonfinite="skip")
    opt.update(p, {"w": np.array([np.nan, 1.0, 1.0])})
    opt.update(p, {"w": np.ones(3)})
    np.testing.assert_array_equal(p["w"], np.full(3, 0.9))
    np.testing.assert_array_equal(opt.state["w"]["momentum_buffer"], np.ones(3))


def test_gradient_utilities():
    rng = np.random.default_rng(3)
    g = {"a": rng.standard_normal(1000).astype(np.float32), "b": [rng.standard_normal((7, 9))]}
    expected = ref.global_norm([g["a"], g["b"][0]])
    assert fa.global_norm(g) == expected
    h = copy_tree(g)
    assert fa.clip_by_global_norm(h, expected * 2) == expected
    assert trees_same_bits(h, g), "no change under the limit"
    norm = fa.clip_by_global_norm(h, 1.0)
    assert norm == expected
    scale = ref.clip_scale(expected, 1.0)
    assert same_bits(h["a"], g["a"] * np.float32(scale)) and same_bits(h["b"][0], g["b"][0] * scale)
    np.testing.assert_allclose(fa.global_norm(h), 1.0, rtol=1e-6)
    x = np.array([1.0, np.nan, np.inf, -np.inf, 2.0])
    assert fa.sanitize({"x": x}) == 3
    assert np.array_equal(x, [1.0, 0.0, 0.0, 0.0, 2.0])
    assert fa.global_norm(np.zeros(0)) == 0.0


def test_threads_setting():
    before = fa.get_num_threads()
    try:
        fa.set_num_threads(1)
        assert fa.get_num_threads() == 1 and fa.simd_info()["num_threads"] == 1
        with pytest.raises(ValueError):
            fa.set_num_threads(0)
        with pytest.raises(TypeError):
            fa.set_num_threads(1.5)
    finally:
        fa.set_num_threads(before)


def test_simd_info_and_forcing():
    from fastadapt import _core
    info = fa.simd_info()
    assert info["compiled"] == ["avx512", "avx2", "baseline"]
    assert info["active"] == info["supported"][0] or os.environ.get("FASTADAPT_SIMD")
    with pytest.raises(ValueError, match="unknown SIMD path"):
        _core._set_simd("sse9")


def _run(code, **env):
    full_env = dict(os.environ, **env)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full_env, timeout=120)
    assert out.returncode == 0, out.stderr
    return out


@pytest.mark.parametrize("path", ["avx2", "baseline"])
def test_environment_forces_a_lower_simd_path(path):
    from fastadapt import _core
    if path not in _core.supported_isas():
        pytest.skip(f"CPU lacks {path}")
    out = _run("import fastadapt as fa; print(fa.simd_info()['active'])", FASTADAPT_SIMD=path)
    assert out.stdout.strip() == path


def test_environment_sets_threads_and_reports_bad_values():
    out = _run("import fastadapt as fa; print(fa.get_num_threads())", FASTADAPT_NUM_THREADS="1")
    assert out.stdout.strip() == "1"
    out = _run("import fastadapt as fa; print(fa.simd_info()['active'])", FASTADAPT_SIMD="sse9")
    assert "FASTADAPT_SIMD='sse9' ignored" in out.stderr


def test_cli_info():
    out = _run("from fastadapt.cli import main; main(['info', '--json'])")
    info = json.loads(out.stdout)
    assert info["simd"]["active"] in info["simd"]["supported"] and info["threads"] >= 1


def test_public_api_is_documented():
    for name in fa.__all__:
        obj = getattr(fa, name)
        if callable(obj):
            assert inspect.getdoc(obj), name


def test_internal_arrays_must_be_contiguous():
    from fastadapt import _core
    st = _core.Stepper("sgd")
    p, g = np.ones(4), np.ones(4)
    counts, last_norm = np.zeros(5, np.int64), np.zeros(1)
    scal = np.zeros((1, 2 * _core.MAX_SCALARS))[:, ::2]  # strided view
    args = dict(keys=("w",), params=[p], grads=[g], states=[None], tensor_group=np.zeros(1, np.int32),
                group_flags=np.zeros(1, np.uint32), policy=0, max_norm=-1.0, track_norm=False, t=1,
                counts=counts, last_norm=last_norm)
    with pytest.raises(TypeError, match="incompatible function arguments"):
        st.step(group_scalars=scal, **args)
    assert np.array_equal(p, np.ones(4)) and not counts.any()
    st.step(group_scalars=np.ascontiguousarray(scal), **args)  # the same call, contiguous, runs
    assert counts[0] == 1


@pytest.mark.parametrize("policy", ["skip", "raise"])
def test_skip_and_raise_count_only_when_the_norm_is_not_finite(policy):
    # Huge finite float64 grads overflow the sum of squares to inf: that alone
    # must neither skip nor raise (the recount finds no NaN/Inf).
    huge = {"w": np.full(5, 1e200), "v": np.ones(3)}
    p, q = {"w": np.ones(5), "v": np.ones(3)}, {"w": np.ones(5), "v": np.ones(3)}
    ours, theirs = fa.SGD(lr=1e-300, nonfinite=policy), ref.SGD(lr=1e-300, nonfinite=policy)
    ours.update(p, huge)
    theirs.update(q, huge)
    assert ours.step_count == 1 and ours.skipped_steps == 0 and ours.last_nonfinite_count == 0
    assert ours.last_grad_norm == np.inf and trees_same_bits(p, q)
    # One NaN deep in a tensor spanning many chunks (the pool path): counted exactly.
    n = 3 * fa._core.MIN_PARALLEL_ELEMENTS
    g = {"w": np.ones(n, np.float32)}
    g["w"][n - 7] = np.nan
    g["w"][11] = -np.inf
    p = {"w": np.zeros(n, np.float32)}
    opt = fa.Adam(nonfinite=policy)
    if policy == "skip":
        opt.update(p, g)
        assert opt.skipped_steps == 1 and opt.last_nonfinite_count == 2
    else:
        with pytest.raises(FloatingPointError, match="2 non-finite"):
            opt.update(p, g)
    assert opt.step_count == 0 and not p["w"].any()
