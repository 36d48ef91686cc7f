"""Adafactor: fastadapt.reference.adafactor and fa.Adafactor against
torch.optim.Adafactor on random trajectories (float64 to ~1e-12 relative,
float32 loosely); the reference's own contract (the summation orders
docs/algorithms.md promises the kernel, step by step); the fused kernel
against the reference bit for bit over every ISA path and thread count;
state_dict round trips and bad hyperparameters."""

import fnmatch
import math
import pickle

import numpy as np
import pytest

import fastadapt as fa
from fastadapt import _core
from fastadapt.reference import adafactor as A
from fastadapt.reference._common import tensor_sum

from helpers import copy_tree, leaves, same_bits, trees_same_bits

REL64 = 1e-12
REL32 = 2e-5   # torch sums float32 tensors in float32, we in float64: a few ulps per step

# 1-D, 0-D, odd 2-D, a single row or column, a batch of matrices; "zero" starts
# at 0 (alpha takes eps2). With eps1 = machine epsilon, "tiny" gets gradients
# small enough that max(row_var mean, eps1) takes eps1 (while the variance
# estimate stays above eps1**2), "tiny1d" small enough that max(variance, eps1**2) does.
SHAPES = {"bias": (7,), "odd": (17,), "scalar": (), "matrix": (33, 65), "tall": (9, 1), "wide": (1, 9),
          "cube": (3, 5, 7), "zero": (5, 3), "tiny": (4, 6), "tiny1d": (5,)}
TINY = {np.float64: (1e-10, 1e-17), np.float32: (1e-5, 1e-8)}   # (tiny, tiny1d)


def make_params(rng, dtype):
    p = {k: np.asarray(rng.standard_normal(s), dtype) for k, s in SHAPES.items()}
    p["zero"][...] = 0
    return p


def make_grads(rng, dtype, scale=1.0):
    g = {k: np.asarray(rng.standard_normal(s) * scale, dtype) for k, s in SHAPES.items()}
    g["tiny"] = (g["tiny"] * TINY[dtype][0]).astype(dtype)
    g["tiny1d"] = (g["tiny1d"] * TINY[dtype][1]).astype(dtype)
    return g


# The two implementations compared with torch: the NumPy reference and the fused kernel.
IMPLS = {"reference": A.Adafactor, "fused": fa.Adafactor}


def run_both(dtype, options, *, steps=24, changes=None, lr_schedule=None, foreach=False, grad_scale=1.0, seed=0,
             impl="reference"):
    """The same trajectory through ours (``impl``) and torch.optim.Adafactor.
    ``changes[k]``: hyperparameters set on both after step k; ``lr_schedule(k)``:
    the lr of step k."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(seed)
    ours = make_params(rng, dtype)
    theirs = {k: torch.nn.Parameter(torch.tensor(v.copy())) for k, v in ours.items()}
    ref = IMPLS[impl](**options)
    opt = torch.optim.Adafactor(list(theirs.values()), foreach=foreach, **options)
    for k in range(steps):
        if lr_schedule is not None:
            ref.lr = opt.param_groups[0]["lr"] = lr_schedule(k)
        g = make_grads(rng, dtype, grad_scale)
        for name, t in theirs.items():
            t.grad = torch.tensor(g[name].copy())
        opt.step()
        ref.update(ours, g)
        for name, value in (changes or {}).get(k, {}).items():
            setattr(ref, name, value)
            opt.param_groups[0][name] = value
    return ref, ours, opt, theirs


def assert_close(ref, ours, opt, theirs, rel):
    for name, t in theirs.items():
        want = t.detach().numpy()
        got = ours[name]
        assert got.shape == want.shape and got.dtype == want.dtype
        scale = np.max(np.abs(want))
        assert np.max(np.abs(got - want)) <= rel * scale, f"param {name}: {np.max(np.abs(got - want)) / scale:.3g} rel"
        torch_state = opt.state[t]
        assert set(ref.state[name]) == set(torch_state) - {"step"}, name
        for buf, arr in ref.state[name].items():
            want = torch_state[buf].numpy()
            assert arr.shape == want.shape and arr.dtype == want.dtype, f"{name}/{buf}"
            err = np.max(np.abs(arr - want) / np.maximum(np.abs(want), np.finfo(want.dtype).tiny))
            assert err <= rel, f"state {name}/{buf}: {err:.3g} rel"


OPTIONS = [
    {},
    dict(weight_decay=0.1),
    dict(maximize=True),
    dict(maximize=True, weight_decay=0.05, lr=0.3),
    dict(eps=(1e-3, 1e-2)),        # eps1 given: both clamps active on the ordinary tensors too
    dict(eps=(0.0, 0.0)),
    dict(d=2.0),
    dict(d=1e6),                   # the update is never clipped
    dict(beta2_decay=0.0),         # variance = latest g*g
    dict(beta2_decay=-0.5, lr=0.8),
]


@pytest.mark.parametrize("impl", sorted(IMPLS))
@pytest.mark.parametrize("options", OPTIONS, ids=[str(o) for o in OPTIONS])
def test_matches_torch_float64(options, impl):
    assert_close(*run_both(np.float64, options, impl=impl), REL64)


@pytest.mark.parametrize("impl", sorted(IMPLS))
@pytest.mark.parametrize("foreach", [False, True], ids=["single", "foreach"])
def test_hyperparameters_changed_mid_run_match_torch(foreach, impl):
    """An lr schedule crossing 1/sqrt(t) (rho switches between lr and
    1/sqrt(t)), then weight decay, beta2_decay, eps, d and maximize changed."""
    changes = {3: dict(weight_decay=0.2), 7: dict(beta2_decay=-0.6), 10: dict(eps=(1e-6, 1e-4)),
               13: dict(d=1.5), 16: dict(maximize=True), 19: dict(weight_decay=0.0, eps=(None, 1e-3))}
    run = run_both(np.float64, dict(lr=0.9), steps=26, changes=changes, foreach=foreach,
                   lr_schedule=lambda k: 0.9 * 0.85 ** k, impl=impl)
    assert_close(*run, REL64)


@pytest.mark.parametrize("scale", [1e-3, 1e3])
def test_gradient_scale_does_not_matter_beyond_eps(scale):
    """Large and small gradients (the update is scale-free but for eps1)."""
    assert_close(*run_both(np.float64, {}, grad_scale=scale, steps=20), REL64)


@pytest.mark.parametrize("impl", sorted(IMPLS))
@pytest.mark.parametrize("options", [{}, dict(weight_decay=0.1, maximize=True), dict(eps=(1e-3, 1e-2), d=2.0)],
                         ids=["default", "wd-max", "eps-d"])
def test_matches_torch_float32(options, impl):
    """eps1=None is float32's machine epsilon here (the "tiny" tensors would
    differ wholesale with float64's)."""
    assert_close(*run_both(np.float32, options, steps=20, impl=impl), REL32)


def test_clipping_and_eps_paths_are_exercised():
    """The comparisons above would not notice a reference that ignored d or
    eps if no trajectory reached them: they do."""
    _, clipped, _, _ = run_both(np.float64, dict(d=1.0), steps=4)
    _, free, _, _ = run_both(np.float64, dict(d=1e6), steps=4)
    assert not np.array_equal(clipped["matrix"], free["matrix"])
    _, eps_default, _, _ = run_both(np.float64, {}, steps=4)
    _, eps_big, _, _ = run_both(np.float64, dict(eps=(1e-30, 1e-3)), steps=4)
    assert not np.array_equal(eps_default["tiny"], eps_big["tiny"])     # eps1 = machine eps clamps
    assert not np.array_equal(eps_default["tiny1d"], eps_big["tiny1d"])
    _, eps2_small, _, _ = run_both(np.float64, dict(eps=(None, 1e-9)), steps=4)
    assert not np.array_equal(eps_default["zero"], eps2_small["zero"])  # alpha = eps2 * rho


# ---- the reference's contract for the kernel ----------------------------------------------

def _seq(values):
    acc = 0.0
    for v in values:
        acc += v
    return acc


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_one_step_is_the_documented_formula(dtype):
    """One step written out with Python floats and T scalars, loop by loop as
    docs/algorithms.md states it; the reference must agree bit for bit."""
    T = np.dtype(dtype).type
    rng = np.random.default_rng(3)
    B, R, C = 2, 5, 37
    p0 = rng.standard_normal((B, R, C)).astype(dtype)
    g = rng.standard_normal((B, R, C)).astype(dtype)
    lr, beta2_decay, eps2, d, wd, t = 0.3, -0.8, 1e-3, 1.0, 0.1, 3
    eps1 = float(np.finfo(dtype).eps)
    rv0 = np.abs(rng.standard_normal((B, R, 1))).astype(dtype)
    cv0 = np.abs(rng.standard_normal((B, 1, C))).astype(dtype)

    p, rv, cv = p0.copy(), rv0.copy(), cv0.copy()
    A.adafactor_rule(p, g, rv, cv, None, t=t, lr=lr, beta2_decay=beta2_decay, eps=(None, eps2), d=d,
                     weight_decay=wd)

    w = t ** beta2_decay
    rho = min(lr, 1 / t ** 0.5)
    assert w < 0.5
    want_rv, want_cv = rv0.copy(), cv0.copy()
    u = np.empty_like(g)
    for b in range(B):
        for i in range(R):
            row = T(_seq(float(x) * float(x) for x in g[b, i, :]) / C)
            want_rv[b, i, 0] = rv0[b, i, 0] + T(w) * (row - rv0[b, i, 0])
        for j in range(C):
            col = T(_seq(float(x) * float(x) for x in g[b, :, j]) / R)
            want_cv[b, 0, j] = cv0[b, 0, j] + T(w) * (col - cv0[b, 0, j])
        r_mean = max(T(_seq(float(x) for x in want_rv[b, :, 0]) / R), T(eps1))
        for i in range(R):
            for j in range(C):
                v = max((want_rv[b, i, 0] * want_cv[b, 0, j]) / r_mean, T(eps1 * eps1))
                u[b, i, j] = g[b, i, j] / np.sqrt(v)
    alpha = max(eps2, math.sqrt(tensor_sum(p0.astype(np.float64) ** 2)) / math.sqrt(p0.size)) * rho
    denom = max(1.0, math.sqrt(tensor_sum(u.astype(np.float64) ** 2)) / (math.sqrt(p0.size) * d))
    want_p = p0 * T(1 - lr * wd)
    want_p = want_p - T(alpha / denom) * u
    assert rv.tobytes() == want_rv.tobytes() and cv.tobytes() == want_cv.tobytes()
    assert p.tobytes() == want_p.tobytes()


def test_first_step_statistics_are_the_means_and_large_weights_use_torchs_second_form():
    """At t = 1 the lerp weight is 1: row_var/col_var become the row/column
    means of g*g exactly, whatever they held (torch's x - (x - v) * (1 - w))."""
    rng = np.random.default_rng(4)
    g = rng.standard_normal((6, 200))
    p = rng.standard_normal((6, 200))
    rv, cv = np.full((6, 1), 7.0), np.full((1, 200), 7.0)
    A.adafactor_rule(p, g, rv, cv, None, t=1, lr=1e-2, beta2_decay=-0.8, eps=(None, 1e-3), d=1.0, weight_decay=0)
    assert [rv[i, 0] for i in range(6)] == [_seq(x * x for x in g[i]) / 200 for i in range(6)]
    assert [cv[0, j] for j in range(200)] == [_seq(x * x for x in g[:, j]) / 6 for j in range(200)]


def test_vector_and_scalar_keep_a_full_variance():
    rng = np.random.default_rng(5)
    opt = A.Adafactor()
    params = {"v": rng.standard_normal(4), "s": np.array(0.5), "m": rng.standard_normal((2, 3, 4))}
    opt.update(params, {k: rng.standard_normal(v.shape) for k, v in params.items()})
    assert {k: {n: a.shape for n, a in st.items()} for k, st in opt.state.items()} == {
        "v": {"variance": (4,)}, "s": {"variance": ()}, "m": {"row_var": (2, 3, 1), "col_var": (2, 1, 4)}}


def test_empty_tensors_are_left_alone():
    """torch raises ZeroDivisionError on an empty parameter (0 / sqrt(0) for
    RMS); the reference leaves it and its zero state untouched."""
    opt = A.Adafactor(weight_decay=0.1)
    params = {"e": np.zeros((0, 3)), "f": np.zeros(0), "x": np.ones(3)}
    opt.update(params, {"e": np.zeros((0, 3)), "f": np.zeros(0), "x": np.ones(3)})
    assert opt.state["e"]["row_var"].shape == (0, 1) and opt.state["e"]["col_var"].shape == (1, 3)
    assert not opt.state["e"]["col_var"].any() and opt.state["f"]["variance"].shape == (0,)
    assert np.all(params["x"] < 1)


# ---- the fused kernel against the reference, bit for bit ------------------------------------

BIG = _core.MIN_PARALLEL_ELEMENTS
# Odd and empty shapes, single rows and columns, batches of matrices, and
# tensors of several chunks (the step then runs on the thread pool): a big
# matrix whose chunks start mid-row, a batch whose chunks cross matrices, a
# big vector.
K_SHAPES = {"empty": (0,), "empty_matrix": (0, 3), "empty_cols": (3, 0), "scalar": (), "one": (1,),
            "seven": (7,), "odd": (4099,), "matrix": (33, 65), "tall": (40, 1), "wide": (1, 40),
            "cube": (3, 5, 7), "many": (6, 2, 3, 4), "columns": (3, 21, 1)}
K_BIG = {"big_matrix": (257, BIG // 257 + 3), "big_batch": (3, 97, 457), "big_vector": (BIG + 1234,)}


def k_params(rng, dtype):
    return {"layer": {k: np.asarray(rng.standard_normal(s), dtype) for k, s in K_SHAPES.items()},
            "big": {k: np.asarray(rng.standard_normal(s), dtype) for k, s in K_BIG.items()}}


BAD = {("layer", "odd"): [3, 100, 4098], ("layer", "matrix"): [0, 1000, 2144], ("big", "big_batch"): [5, 70000, 132000],
       ("big", "big_vector"): [0, 20000, BIG + 1000]}


def k_grads(rng, dtype, nonfinite=False):
    g = k_params(rng, dtype)
    if nonfinite:
        for (a, b), where in BAD.items():
            g[a][b].reshape(-1)[where] = [np.nan, np.inf, -np.inf]
    return g


K_CASES = [{}, dict(weight_decay=0.1), dict(maximize=True), dict(eps=(1e-3, 1e-2), beta2_decay=-0.5),
           dict(d=1e6, lr=0.5), dict(eps=(0.0, 0.0), maximize=True, weight_decay=0.05)]
# Hyperparameters changed after step k (a schedule would do this).
K_CHANGES = {0: dict(lr=0.3), 1: dict(beta2_decay=-0.6, weight_decay=0.02), 2: dict(eps=(1e-6, 1e-2)),
             3: dict(d=1.5)}


def k_run(options, dtype, *, steps=5, max_grad_norm=None, nonfinite="propagate", overrides=None, seed=0,
          changes=K_CHANGES):
    rng = np.random.default_rng(seed)
    ours = fa.Adafactor(max_grad_norm=max_grad_norm, nonfinite=nonfinite, overrides=overrides, **options)
    theirs = RefWithOverrides(overrides or {}, max_grad_norm=max_grad_norm, nonfinite=nonfinite, **options)
    p = k_params(rng, dtype)
    q = copy_tree(p)
    counts = []
    for step in range(steps):
        g = k_grads(rng, dtype, nonfinite=(nonfinite == "zero" and step % 2 == 0))
        g_before = copy_tree(g)
        ours.update(p, g)
        theirs.update(q, g)
        counts.append(ours.last_nonfinite_count)
        assert trees_same_bits(g, g_before), "grads were modified"
        for k, v in changes.get(step, {}).items():
            setattr(ours, k, v)
            setattr(theirs, k, v)
    return ours, theirs, p, q, counts


class RefWithOverrides(A.Adafactor):
    """The reference with per-key hyperparameters (glob on the dotted path,
    later entries win), as fa's overrides."""

    def __init__(self, overrides, **kw):
        super().__init__(**kw)
        self._overrides = overrides

    def _apply(self, path, p, g):
        values = {}
        for pattern, vals in self._overrides.items():
            if fnmatch.fnmatchcase(path, pattern):
                values.update(vals)
        saved = {k: getattr(self, k) for k in values}
        for k, v in values.items():
            setattr(self, k, v)
        try:
            super()._apply(path, p, g)
        finally:
            for k, v in saved.items():
                setattr(self, k, v)


def assert_same(ours, theirs, p, q):
    for (path, a), b in zip(zip(ours._paths, leaves(p)), leaves(q)):
        assert same_bits(a, b), f"param {path} differs: max abs diff {np.max(np.abs(a - b)) if a.size else 0}"
    assert set(ours.state) == set(theirs.state)
    for path, bufs in ours.state.items():
        assert set(bufs) == set(theirs.state[path]), path
        for name, arr in bufs.items():
            assert same_bits(arr, theirs.state[path][name]), f"state {path}/{name} differs"
    assert ours.step_count == theirs.step_count


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("options", K_CASES, ids=[str(o) for o in K_CASES])
def test_kernel_matches_reference_bit_for_bit(options, dtype, isa, threads):
    ours, theirs, p, q, _ = k_run(options, dtype)
    assert_same(ours, theirs, p, q)


PREP = [dict(max_grad_norm=1.0), dict(max_grad_norm=1e6), dict(nonfinite="zero"),
        dict(nonfinite="zero", max_grad_norm=2.0)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("prep", PREP, ids=[str(p) for p in PREP])
def test_gradient_preprocessing_matches_reference(prep, dtype, isa, threads):
    ours, theirs, p, q, counts = k_run(dict(maximize=True, weight_decay=0.1), dtype, **prep)
    assert_same(ours, theirs, p, q)
    if "max_grad_norm" in prep:
        assert ours.last_grad_norm == theirs.last_grad_norm
    if prep.get("nonfinite") == "zero":
        # counted once each by the first pass (a whole-tensor pass here)
        assert counts == [3 * len(BAD) if k % 2 == 0 else 0 for k in range(len(counts))]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_overrides_match_reference(dtype, threads):
    overrides = {"layer.*": {"weight_decay": 0.0, "eps": (1e-3, 1e-2)}, "*.cube": {"lr": 0.2, "d": 2.0},
                 "big.big_batch": {"beta2_decay": -0.3}}
    ours, theirs, p, q, _ = k_run(dict(weight_decay=0.1), dtype, overrides=overrides)
    assert_same(ours, theirs, p, q)


def test_mixed_dtypes_take_each_tensors_own_machine_epsilon():
    """eps1=None: float32 tensors clamp at float32's epsilon, float64 ones at
    float64's, in one group (torch would use the first tensor's for all)."""
    rng = np.random.default_rng(6)
    p = {"a": rng.standard_normal((4, 5)).astype(np.float32), "b": rng.standard_normal(6),
         "c": rng.standard_normal(6).astype(np.float32)}
    q = copy_tree(p)
    ours, theirs = fa.Adafactor(), A.Adafactor()
    for _ in range(3):
        g = {"a": (rng.standard_normal((4, 5)) * 1e-5).astype(np.float32), "b": rng.standard_normal(6) * 1e-17,
             "c": (rng.standard_normal(6) * 1e-8).astype(np.float32)}
        ours.update(p, g)
        theirs.update(q, g)
    assert trees_same_bits(p, q)


# ---- state_dict, bad hyperparameters ----------------------------------------------------

def sd_grads(step, dtype):
    rng = np.random.default_rng(200 + step)
    return {"w": rng.standard_normal((20, 30)).astype(dtype), "b": rng.standard_normal(30).astype(dtype),
            "conv": rng.standard_normal((4, 3, 5, 5)).astype(dtype), "s": np.asarray(rng.standard_normal(), dtype)}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("through", ["object", "pickle"])
def test_state_dict_resume_equals_uninterrupted(dtype, through):
    kw = dict(weight_decay=0.1, max_grad_norm=3.0, overrides={"b": {"weight_decay": 0.0, "eps": (1e-3, 1e-3)}})
    full = copy_tree(sd_grads(-1, dtype))
    opt = fa.Adafactor(**kw)
    for s in range(8):
        if s == 4:
            opt.lr, opt.beta2_decay = 0.05, -0.5
        opt.update(full, sd_grads(s, dtype))

    part = copy_tree(sd_grads(-1, dtype))
    first = fa.Adafactor(**kw)
    for s in range(4):
        first.update(part, sd_grads(s, dtype))
    first.lr, first.beta2_decay = 0.05, -0.5
    sd = first.state_dict()
    if through == "pickle":
        sd = pickle.loads(pickle.dumps(sd))
    assert sd["algorithm"] == "adafactor"
    assert {k: set(v) for k, v in sd["state"].items()} == {
        "w": {"row_var", "col_var"}, "b": {"variance"}, "conv": {"row_var", "col_var"}, "s": {"variance"}}
    assert sd["state"]["conv"]["row_var"].shape == (4, 3, 5, 1) and sd["state"]["conv"]["col_var"].shape == (4, 3, 1, 5)
    del first
    second = fa.Adafactor(**kw)
    second.load_state_dict(sd)
    for s in range(4, 8):
        second.update(part, sd_grads(s, dtype))
    assert trees_same_bits(full, part)
    assert second.step_count == opt.step_count == 8 and second.lr == opt.lr and second.eps == (None, 1e-3)


def test_state_dict_with_a_wrong_statistics_shape_is_refused():
    p = {"w": np.ones((3, 4))}
    opt = fa.Adafactor()
    opt.update(p, {"w": np.ones((3, 4))})
    sd = opt.state_dict()
    sd["state"]["w"]["row_var"] = np.ones((4, 1))
    other = fa.Adafactor()
    other.update({"w": np.ones((3, 4))}, {"w": np.ones((3, 4))})
    before = {n: a.copy() for n, a in other.state["w"].items()}
    with pytest.raises(ValueError, match=r"row_var.*\(3, 1\)"):
        other.load_state_dict(sd)
    assert all(same_bits(a, before[n]) for n, a in other.state["w"].items())


def test_defaults_and_names_follow_torch():
    torch = pytest.importorskip("torch")
    import inspect
    theirs = inspect.signature(torch.optim.Adafactor).parameters
    opt = fa.Adafactor()
    for name in ("lr", "beta2_decay", "eps", "d", "weight_decay", "maximize"):
        assert getattr(opt, name) == theirs[name].default, name
    assert fa.make_optimizer("adafactor", lr=0.5).lr == 0.5


BAD_HYPER = [
    (dict(lr=-1.0), ValueError, "lr"), (dict(beta2_decay=0.1), ValueError, "beta2_decay"),
    (dict(eps=(-1e-3, 1e-3)), ValueError, r"eps\[0\]"), (dict(eps=(None, -1.0)), ValueError, r"eps\[1\]"),
    (dict(eps=1e-3), TypeError, "eps"), (dict(eps=(None,)), TypeError, "eps"), (dict(eps={None, 1e-3}), TypeError, "eps"),
    (dict(eps=("a", 1e-3)), TypeError, r"eps\[0\]"), (dict(eps=(None, float("nan"))), ValueError, r"eps\[1\]"),
    (dict(d=0.5), ValueError, "d"), (dict(d=float("inf")), ValueError, "d"),
    (dict(weight_decay=-0.1), ValueError, "weight_decay"), (dict(maximize="yes"), TypeError, "maximize"),
    (dict(lr="0.1"), TypeError, "lr"),
]


@pytest.mark.parametrize("kw,exc,name", BAD_HYPER, ids=[str(k) for k, _, _ in BAD_HYPER])
def test_bad_hyperparameters_raise_and_change_nothing(kw, exc, name):
    with pytest.raises(exc, match=name):
        fa.Adafactor(**kw)
    opt = fa.Adafactor()
    (key, value), = kw.items()
    before = getattr(opt, key)
    with pytest.raises(exc, match=name):
        setattr(opt, key, value)
    assert getattr(opt, key) == before
    with pytest.raises(exc, match=rf"overrides\['\*'\]\['{key}'\]"):
        fa.Adafactor(overrides={"*": {key: value}})


def test_grad_norm_tracking_and_skip_with_a_whole_tensor_first_pass(threads):
    """The first pass walks whole tensors, so the norm comes from the
    pre-pass: the same value as the reference's global norm, and skip/raise
    still see every non-finite value."""
    from fastadapt.reference import global_norm
    rng = np.random.default_rng(8)
    p = k_params(rng, np.float64)
    g = k_grads(rng, np.float64)
    opt = fa.Adafactor(track_grad_norm=True)
    opt.update(p, g)
    assert opt.last_grad_norm == global_norm(list(leaves(g)))
    before = copy_tree(p)
    bad = k_grads(rng, np.float64, nonfinite=True)
    skipping = fa.Adafactor(nonfinite="skip")
    skipping.update(p, bad)
    assert skipping.skipped_steps == 1 and skipping.step_count == 0 and trees_same_bits(p, before)
    with pytest.raises(FloatingPointError, match="layer.odd|layer'\\]\\['odd"):
        fa.Adafactor(nonfinite="raise").update(p, bad)
    assert trees_same_bits(p, before)


@pytest.mark.parametrize("new_shape, dtype, exc, words", [
    ((3, 2, 4), np.float64, ValueError, ("row_var['w']", "expected shape (3, 2, 1)", "opt.reset()")),
    ((2, 3, 4), np.float32, TypeError, ("row_var['w']", "float32", "opt.reset()")),
])
def test_statistics_that_no_longer_fit_the_param_are_refused(new_shape, dtype, exc, words):
    """A param replaced by one of another shape (same size: (2, 3, 4) ->
    (3, 2, 4)) or dtype: the update refuses it before writing anything."""
    opt = fa.Adafactor()
    opt.update({"w": np.ones((2, 3, 4))}, {"w": np.ones((2, 3, 4))})
    before = {n: a.copy() for n, a in opt.state["w"].items()}
    p = {"w": np.ones(new_shape, dtype)}
    with pytest.raises(exc) as info:
        opt.update(p, {"w": np.ones(new_shape, dtype)})
    assert all(w in str(info.value) for w in words), str(info.value)
    assert np.all(p["w"] == 1) and opt.step_count == 1
    assert all(same_bits(a, before[n]) for n, a in opt.state["w"].items())
