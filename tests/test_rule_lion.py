"""Lion: the fused fa.Lion against fastadapt's NumPy reference bit for bit
(every ISA path and thread count, float32 and float64, odd sizes, a pool-sized
tensor, clipping, nonfinite="zero", maximize, overrides), and both against
lion-pytorch's ``Lion`` and optax's ``lion`` on float64 trajectories (25
steps, hyperparameters changed mid-run); the exact sign; checkpoints; bad
hyperparameters."""

import math

import numpy as np
import pytest

import fastadapt as fa
from fastadapt.reference import lion as ref_lion

from helpers import same_bits
from optax_trajectory import build, grads_of, make_problem, optax_trajectory, rel_close, run_trajectory
from rule_parity import (DTYPES, PREP, assert_bad_assignments_change_nothing, pair_is_reference, propagates_nonfinite,
                         round_trip_equals_uninterrupted)

STEPS = 25
IMPLS = {"fa": fa.Lion, "reference": ref_lion.Lion}

# Before step k: an lr schedule, new betas, a new weight decay.
CHANGES = {k: {"lr": 0.01 * (1.0 - 0.5 * k / STEPS)} for k in range(1, STEPS)}
CHANGES[8] = dict(CHANGES[8], betas=(0.8, 0.95))
CHANGES[15] = dict(CHANGES[15], weight_decay=0.3)


def torch_trajectory(params, noise, changes, negate=False, **hyper):
    """lion-pytorch's Lion on the same trajectory (``grads_of``, negated with
    ``negate``), float64: final params and exp_avg."""
    torch = pytest.importorskip("torch")
    lion_pytorch = pytest.importorskip("lion_pytorch")

    tp = {k: torch.nn.Parameter(torch.tensor(np.array(v, dtype=np.float64))) for k, v in params.items()}
    opt = lion_pytorch.Lion(list(tp.values()), **hyper)
    for k, nz in enumerate(noise):
        for n, v in changes.get(k, {}).items():
            opt.param_groups[0][n] = v
        g = grads_of({key: t.detach().numpy() for key, t in tp.items()}, nz)
        for key, t in tp.items():
            t.grad = torch.tensor(-g[key] if negate else g[key])
        opt.step()
    return ({k: t.detach().numpy().copy() for k, t in tp.items()},
            {k: opt.state[t]["exp_avg"].numpy().copy() for k, t in tp.items()})


# ---- against lion-pytorch and optax (float64) --------------------------------------------

OPTIONS = [dict(), dict(weight_decay=0.1), dict(betas=(0.95, 0.98))]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()) or "defaults")
def test_lion_pytorch(impl, options):
    params, noise = make_problem(0, STEPS)
    hyper = dict(lr=0.01, **options)
    opt = IMPLS[impl](**hyper)
    ours = run_trajectory(opt, params, noise, CHANGES)
    theirs, exp_avg = torch_trajectory(params, noise, CHANGES, **hyper)
    for k in params:
        assert not np.allclose(ours[k], params[k]), k   # the parameters moved
        assert rel_close(ours[k], theirs[k]), k
        assert rel_close(opt.state[k]["exp_avg"], exp_avg[k]), k
    assert opt.step_count == STEPS


@pytest.mark.parametrize("impl", IMPLS)
def test_decoupled_weight_decay_of_lion_pytorch_is_weight_decay_over_the_initial_lr(impl):
    """lion-pytorch's decoupled_weight_decay=True divides wd by the lr given at
    construction (lr0): the factor is 1 - lr * (wd / lr0), ours with
    weight_decay = wd / lr0, also while a schedule moves lr."""
    params, noise = make_problem(1, STEPS)
    lr0, wd = 0.01, 0.5
    changes = {k: {"lr": lr0 * (1.0 - 0.5 * k / STEPS)} for k in range(STEPS)}
    ours = run_trajectory(IMPLS[impl](lr=lr0, weight_decay=wd / lr0), params, noise, changes)
    theirs, _ = torch_trajectory(params, noise, changes, lr=lr0, weight_decay=wd, decoupled_weight_decay=True)
    coupled = run_trajectory(IMPLS[impl](lr=lr0, weight_decay=wd), params, noise, changes)
    for k in params:
        assert rel_close(ours[k], theirs[k]), k
    assert not np.allclose(ours["v"], coupled["v"])


@pytest.mark.parametrize("impl", IMPLS)
def test_maximize_is_lion_pytorch_on_negated_gradients(impl):
    params, noise = make_problem(2, STEPS)
    ours = run_trajectory(IMPLS[impl](lr=0.01, weight_decay=0.1, maximize=True), params, noise, CHANGES)
    theirs, _ = torch_trajectory(params, noise, CHANGES, negate=True, lr=0.01, weight_decay=0.1)
    plain = run_trajectory(IMPLS[impl](lr=0.01, weight_decay=0.1), params, noise, CHANGES)
    for k in params:
        assert rel_close(ours[k], theirs[k]), k
        assert not np.allclose(ours[k], plain[k]), k


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("options", [dict(), dict(weight_decay=0.1)], ids=["no-wd", "wd"])
def test_optax_lion(impl, options):
    optax = pytest.importorskip("optax")
    params, noise = make_problem(3, STEPS)
    hyper = {**dict(lr=0.01, betas=(0.9, 0.99), weight_decay=0.0), **options}   # optax's wd default is 1e-3
    opt = IMPLS[impl](**hyper)
    ours = run_trajectory(opt, params, noise, CHANGES)
    theirs, bufs = optax_trajectory(optax.lion, hyper, params, noise, CHANGES, fields=("mu",))
    for k in params:
        assert rel_close(ours[k], theirs[k]), k
        assert rel_close(opt.state[k]["exp_avg"], bufs["mu"][k]), k


@pytest.mark.parametrize("impl", IMPLS)
def test_optax_mask_is_a_per_key_weight_decay_of_zero(impl):
    """optax.lion's ``mask`` (weight decay only where True) is
    ``overrides={key: {"weight_decay": 0.0}}`` for the masked-out keys."""
    optax = pytest.importorskip("optax")
    params, noise = make_problem(4, STEPS)
    hyper = dict(lr=0.01, betas=(0.9, 0.99), weight_decay=0.2)
    mask = {k: k not in ("b", "one") for k in params}
    opt = build(IMPLS[impl], hyper, per_key={"b": {"weight_decay": 0.0}, "one": {"weight_decay": 0.0}})
    ours = run_trajectory(opt, params, noise, CHANGES)
    theirs, _ = optax_trajectory(optax.lion, hyper, params, noise, CHANGES, static=dict(mask=mask))
    unmasked = run_trajectory(IMPLS[impl](**hyper), params, noise, CHANGES)
    for k in params:
        assert rel_close(ours[k], theirs[k]), k
    assert not np.allclose(ours["b"], unmasked["b"])


def test_defaults_are_lion_pytorchs():
    lion_pytorch = pytest.importorskip("lion_pytorch")
    import inspect

    theirs = inspect.signature(lion_pytorch.Lion).parameters
    for cls in (fa.Lion, ref_lion.Lion):
        ours = cls().hyperparameters if cls is fa.Lion else cls.defaults
        for name in ("lr", "betas", "weight_decay"):
            assert ours[name] == theirs[name].default, (cls, name)


# ---- the exact sign ----------------------------------------------------------------------

def special_values(dtype):
    """Every kind of c: +-1.5, +-0, +-inf, +-smallest subnormal, +-max, a
    NaN with a payload, -NaN."""
    info = np.finfo(dtype)
    nan = np.array([np.nan], dtype=dtype)
    bits = nan.view(np.uint32 if dtype == np.float32 else np.uint64)
    # The payload in the view's own dtype: NumPy 1.x promotes a uint64 element
    # with a Python int to float64, which has no bitwise or.
    bits[0] |= bits.dtype.type(0x5)
    return np.array([1.5, -1.5, 0.0, -0.0, np.inf, -np.inf, info.smallest_subnormal, -info.smallest_subnormal,
                     info.max, -info.max, nan[0], -np.nan], dtype=dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_reference_sign_is_exact(dtype):
    c = special_values(dtype)
    s = ref_lion.exact_sign(c)
    assert s.dtype == c.dtype
    want = np.array([1, -1, 0, 0, 1, -1, 1, -1, 1, -1], dtype=dtype)
    assert s[:10].tobytes() == want.tobytes()                 # +0 for both zeros
    assert s[10:].tobytes() == c[10:].tobytes()               # NaN is c's own NaN, payload and sign kept
    assert math.copysign(1.0, float(s[3])) == 1.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernel_sign_is_exact(dtype, isa, threads):
    """With betas[0] = 0 and a momentum of -0.0, c = 0 * -0 + 1 * g is g
    exactly (-0 included), so one step moves p by exactly -lr * sign(g). All
    kinds of g, in vector blocks and in the tail; p holds +-0 too."""
    rng = np.random.default_rng(0)
    g = rng.permutation(np.tile(special_values(dtype), 9))[:101]
    p0 = rng.permutation(np.tile(np.array([0.0, -0.0, 1.0, -2.0], dtype=dtype), 26))[:101]
    m0 = np.full_like(g, -0.0)
    p, q = {"w": p0.copy()}, {"w": p0.copy()}
    ours, theirs = fa.Lion(lr=0.25, betas=(0.0, 0.5)), ref_lion.Lion(lr=0.25, betas=(0.0, 0.5))
    sd = ours.state_dict()
    sd.update(state={"w": {"exp_avg": m0.copy()}})
    ours.load_state_dict(sd)
    theirs.state = {"w": {"exp_avg": m0.copy()}}
    ours.update(p, {"w": g})
    theirs.update(q, {"w": g})
    assert same_bits(p["w"], q["w"])
    finite = ~np.isnan(g)
    want = p0[finite] - dtype(0.25) * np.sign(g[finite])     # np.sign(-0.0) is +0
    assert same_bits(p["w"][finite], want)
    zero = g == 0
    assert same_bits(p["w"][zero], p0[zero]) and np.signbit(p0[zero]).any()   # -0.0 params stay -0.0
    assert np.isnan(p["w"][~finite]).all()


def test_nan_propagates_as_in_optax_not_as_torch_sign():
    """A NaN gradient makes sign(c) NaN, and p NaN there (optax does the
    same). lion-pytorch's CPU sign maps NaN to 0 and leaves p unchanged there,
    while its exp_avg turns NaN: a documented deviation."""
    optax = pytest.importorskip("optax")
    params = {"w": np.array([1.0, 2.0, 3.0])}
    noise = [{"w": np.array([0.1, np.nan, -0.2]) - 0.5 * params["w"]}]
    theirs, _ = optax_trajectory(optax.lion, dict(lr=0.1, weight_decay=0.0), params, noise)
    assert np.isnan(theirs["w"][1])
    for cls in IMPLS.values():
        ours = run_trajectory(cls(lr=0.1), params, noise)
        assert np.isnan(ours["w"][1])
        np.testing.assert_array_equal(ours["w"][[0, 2]], theirs["w"][[0, 2]])
        np.testing.assert_array_equal(ours["w"][[0, 2]], [0.9, 3.1])
    torch_p, torch_m = torch_trajectory(params, noise, {}, lr=0.1)
    assert torch_p["w"][1] == 2.0 and np.isnan(torch_m["w"][1])


def test_reference_float32_rounds_each_scalar_once():
    """In float32 every operation is in float32 and the scalars are T(x) of
    float64 values: the reference equals a step written out by hand."""
    rng = np.random.default_rng(5)
    p = rng.standard_normal(33).astype(np.float32)
    m = rng.standard_normal(33).astype(np.float32)
    g = rng.standard_normal(33).astype(np.float32)
    lr, b1, b2, wd = 3e-3, 0.9, 0.99, 0.1
    want_p = p * np.float32(1.0 - lr * wd)
    c = np.float32(b1) * m + np.float32(1.0 - b1) * g
    want_p = want_p - np.float32(lr) * np.sign(c)
    want_m = np.float32(b2) * m + np.float32(1.0 - b2) * g
    ref_lion.lion_rule(p, g, m, lr=lr, betas=(b1, b2), weight_decay=wd)
    assert p.dtype == np.float32 and m.dtype == np.float32
    assert p.tobytes() == want_p.tobytes() and m.tobytes() == want_m.tobytes()


# ---- the kernel against the reference, bit for bit ---------------------------------------

KERNEL_CASES = [dict(), dict(weight_decay=0.1), dict(maximize=True), dict(weight_decay=0.1, maximize=True)]
KERNEL_CHANGES = [dict(lr=3e-3), dict(betas=(0.8, 0.95)), dict(weight_decay=0.2)]


@DTYPES
@pytest.mark.parametrize("options", KERNEL_CASES, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()) or "plain")
def test_kernel_is_reference_bit_for_bit(options, dtype, isa, threads):
    pair_is_reference(fa.Lion, ref_lion.Lion, dict(lr=1e-2, **options), dtype, steps=4, changes=KERNEL_CHANGES)


@DTYPES
@pytest.mark.parametrize("prep", PREP, ids=str)
def test_gradient_preprocessing_is_reference_bit_for_bit(prep, dtype, isa, threads):
    """Clipping, nonfinite="zero", and NaN/Inf gradients propagated (through
    the exact sign; a NaN compared as NaN, see same_bits_nan_as_nan)."""
    _, p = pair_is_reference(fa.Lion, ref_lion.Lion, dict(lr=1e-2, weight_decay=0.1), dtype, **prep)
    if propagates_nonfinite(prep):
        assert np.isnan(p["big"]).any()


PER_KEY = {"layer.odd": {"weight_decay": 0.0, "lr": 0.1}, "big": {"betas": (0.5, 0.9)},
           "layer.matrix": {"maximize": True}}


@DTYPES
def test_overrides_are_reference_bit_for_bit(dtype, isa, threads):
    pair_is_reference(fa.Lion, ref_lion.Lion, dict(lr=1e-2, weight_decay=0.1), dtype, changes=KERNEL_CHANGES,
                      per_key=PER_KEY)


@DTYPES
def test_state_dict_round_trip_mid_run(dtype):
    round_trip_equals_uninterrupted(lambda: fa.Lion(lr=1e-2, weight_decay=0.1, overrides=PER_KEY), dtype,
                                    steps=6, cut=3, seed=3)


# ---- bad hyperparameters -----------------------------------------------------------------

@pytest.mark.parametrize("kwargs,error,match", [
    (dict(lr=-1e-4), ValueError, "Invalid lr"),
    (dict(lr="1e-4"), TypeError, "lr must be a real number"),
    (dict(betas=(0.9, 1.0)), ValueError, "beta parameter at index 1"),
    (dict(betas=0.9), TypeError, "betas must be a pair"),
    (dict(weight_decay=-0.1), ValueError, "Invalid weight_decay"),
    (dict(weight_decay=float("nan")), ValueError, "Invalid weight_decay"),
    (dict(maximize="yes"), TypeError, "maximize must be True or False"),
    (dict(overrides={"b": {"eps": 1e-8}}), TypeError, "'eps' is not a per-key hyperparameter of Lion"),
    (dict(overrides={"b": {"lr": -1.0}}), ValueError, r"Invalid overrides\[.b.\]\[.lr.\]"),
])
def test_bad_hyperparameters_raise_clear_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        fa.Lion(**kwargs)


def test_a_bad_assignment_changes_nothing():
    assert_bad_assignments_change_nothing(
        fa.Lion(lr=1e-3), (("lr", -1.0), ("betas", (1.5, 0.9)), ("weight_decay", "x")),
        match=lambda name: name if name != "betas" else "beta")
    with pytest.raises(TypeError):
        fa.Lion(decoupled_weight_decay=True)   # lion-pytorch's; here weight_decay = wd / lr0
