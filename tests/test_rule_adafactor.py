"""Adafactor: fastadapt.reference.adafactor against torch.optim.Adafactor on
random trajectories (float64 to ~1e-12 relative, float32 loosely), and the
reference's own contract: the summation orders docs/rules/adafactor.md
promises the kernel, step by step."""

import math

import numpy as np
import pytest

from fastadapt.reference import adafactor as A
from fastadapt.reference._common import tensor_sum

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
    p = {k: rng.standard_normal(s).astype(dtype) for k, s in SHAPES.items()}
    p["zero"][...] = 0
    return p


def make_grads(rng, dtype, scale=1.0):
    g = {k: (rng.standard_normal(s) * scale).astype(dtype) for k, s in SHAPES.items()}
    g["tiny"] = (g["tiny"] * TINY[dtype][0]).astype(dtype)
    g["tiny1d"] = (g["tiny1d"] * TINY[dtype][1]).astype(dtype)
    return g


def run_both(dtype, options, *, steps=24, changes=None, lr_schedule=None, foreach=False, grad_scale=1.0, seed=0):
    """The same trajectory through the reference and torch.optim.Adafactor.
    ``changes[k]``: hyperparameters set on both after step k; ``lr_schedule(k)``:
    the lr of step k."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(seed)
    ours = make_params(rng, dtype)
    theirs = {k: torch.nn.Parameter(torch.tensor(v.copy())) for k, v in ours.items()}
    ref = A.Adafactor(**options)
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


@pytest.mark.parametrize("options", OPTIONS, ids=[str(o) for o in OPTIONS])
def test_reference_matches_torch_float64(options):
    assert_close(*run_both(np.float64, options), REL64)


@pytest.mark.parametrize("foreach", [False, True], ids=["single", "foreach"])
def test_hyperparameters_changed_mid_run_match_torch(foreach):
    """An lr schedule crossing 1/sqrt(t) (rho switches between lr and
    1/sqrt(t)), then weight decay, beta2_decay, eps, d and maximize changed."""
    changes = {3: dict(weight_decay=0.2), 7: dict(beta2_decay=-0.6), 10: dict(eps=(1e-6, 1e-4)),
               13: dict(d=1.5), 16: dict(maximize=True), 19: dict(weight_decay=0.0, eps=(None, 1e-3))}
    run = run_both(np.float64, dict(lr=0.9), steps=26, changes=changes, foreach=foreach,
                   lr_schedule=lambda k: 0.9 * 0.85 ** k)
    assert_close(*run, REL64)


@pytest.mark.parametrize("scale", [1e-3, 1e3])
def test_gradient_scale_does_not_matter_beyond_eps(scale):
    """Large and small gradients (the update is scale-free but for eps1)."""
    assert_close(*run_both(np.float64, {}, grad_scale=scale, steps=20), REL64)


@pytest.mark.parametrize("options", [{}, dict(weight_decay=0.1, maximize=True), dict(eps=(1e-3, 1e-2), d=2.0)],
                         ids=["default", "wd-max", "eps-d"])
def test_reference_matches_torch_float32(options):
    """eps1=None is float32's machine epsilon here (the "tiny" tensors would
    differ wholesale with float64's)."""
    assert_close(*run_both(np.float32, options, steps=20), REL32)


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
    docs/rules/adafactor.md states it; the reference must agree bit for bit."""
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
