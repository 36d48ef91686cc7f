"""Lion: fastadapt's NumPy reference against lion-pytorch's ``Lion`` and
optax's ``lion`` on float64 trajectories (several tensors, 25 steps,
hyperparameters changed mid-run), and its exact sign."""

import math

import numpy as np
import pytest

from fastadapt.reference import lion as ref_lion

from optax_trajectory import make_problem, optax_trajectory, reference_trajectory, rel_close

STEPS = 25

# Before step k: an lr schedule, new betas, a new weight decay.
CHANGES = {k: {"lr": 0.01 * (1.0 - 0.5 * k / STEPS)} for k in range(1, STEPS)}
CHANGES[8] = dict(CHANGES[8], betas=(0.8, 0.95))
CHANGES[15] = dict(CHANGES[15], weight_decay=0.3)


def torch_trajectory(params, noise, changes, negate=False, **hyper):
    """lion-pytorch's Lion on the same trajectory (``grads_of``, negated with
    ``negate``), float64."""
    torch = pytest.importorskip("torch")
    lion_pytorch = pytest.importorskip("lion_pytorch")
    from optax_trajectory import grads_of

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


OPTIONS = [dict(), dict(weight_decay=0.1), dict(weight_decay=0.1, decoupled_weight_decay=True),
           dict(betas=(0.95, 0.98))]


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()) or "defaults")
def test_reference_is_lion_pytorch(options):
    params, noise = make_problem(0, STEPS)
    hyper = dict(lr=0.01, **options)
    ref = ref_lion.Lion(**hyper)
    ours = reference_trajectory(ref, params, noise, CHANGES)
    theirs, exp_avg = torch_trajectory(params, noise, CHANGES, **hyper)
    for k in params:
        assert not np.allclose(ours[k], params[k]), k   # the parameters moved
        assert rel_close(ours[k], theirs[k]), k
        assert rel_close(ref.state[k]["exp_avg"], exp_avg[k]), k
    assert ref.step_count == STEPS


def test_decoupled_weight_decay_divides_by_the_initial_lr():
    """lion-pytorch's decoupled form: the decay factor is 1 - lr * wd / lr0
    with lr0 the lr given at construction, so a changed lr rescales it."""
    params, noise = make_problem(1, 1)
    changes = {0: {"lr": 0.004}}
    ref = ref_lion.Lion(lr=0.01, weight_decay=0.5, decoupled_weight_decay=True)
    ours = reference_trajectory(ref, params, noise, changes)
    theirs, _ = torch_trajectory(params, noise, changes, lr=0.01, weight_decay=0.5, decoupled_weight_decay=True)
    coupled = reference_trajectory(ref_lion.Lion(lr=0.01, weight_decay=0.5), params, noise, changes)
    for k in params:
        assert rel_close(ours[k], theirs[k])
    assert not np.allclose(ours["v"], coupled["v"])


def test_maximize_is_lion_pytorch_on_negated_gradients():
    params, noise = make_problem(2, STEPS)
    ours = reference_trajectory(ref_lion.Lion(lr=0.01, weight_decay=0.1, maximize=True), params, noise, CHANGES)
    theirs, _ = torch_trajectory(params, noise, CHANGES, negate=True, lr=0.01, weight_decay=0.1)
    plain = reference_trajectory(ref_lion.Lion(lr=0.01, weight_decay=0.1), params, noise, CHANGES)
    for k in params:
        assert rel_close(ours[k], theirs[k]), k
        assert not np.allclose(ours[k], plain[k]), k


@pytest.mark.parametrize("options", [dict(), dict(weight_decay=0.1)], ids=["no-wd", "wd"])
def test_reference_is_optax_lion(options):
    optax = pytest.importorskip("optax")
    params, noise = make_problem(3, STEPS)
    hyper = {**dict(lr=0.01, betas=(0.9, 0.99), weight_decay=0.0), **options}   # optax's wd default is 1e-3
    ref = ref_lion.Lion(**hyper)
    ours = reference_trajectory(ref, params, noise, CHANGES)
    theirs, bufs = optax_trajectory(optax.lion, hyper, params, noise, CHANGES, fields=("mu",))
    for k in params:
        assert rel_close(ours[k], theirs[k]), k
        assert rel_close(ref.state[k]["exp_avg"], bufs["mu"][k]), k


def test_optax_mask_is_a_per_key_weight_decay_of_zero():
    """optax.lion's ``mask`` (weight decay only where True) is fastadapt's
    ``overrides={key: {"weight_decay": 0.0}}`` for the masked-out keys."""
    optax = pytest.importorskip("optax")
    params, noise = make_problem(4, STEPS)
    hyper = dict(lr=0.01, betas=(0.9, 0.99), weight_decay=0.2)
    mask = {k: k not in ("b", "one") for k in params}
    ref = ref_lion.Lion(**hyper)
    ours = reference_trajectory(ref, params, noise, CHANGES, per_key={"b": {"weight_decay": 0.0},
                                                                      "one": {"weight_decay": 0.0}})
    theirs, _ = optax_trajectory(optax.lion, hyper, params, noise, CHANGES, static=dict(mask=mask))
    unmasked = reference_trajectory(ref_lion.Lion(**hyper), params, noise, CHANGES)
    for k in params:
        assert rel_close(ours[k], theirs[k]), k
    assert not np.allclose(ours["b"], unmasked["b"])


def bits(x):
    return np.asarray(x, dtype=np.float64).view(np.uint64)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exact_sign(dtype):
    info = np.finfo(dtype)
    payload_nan = np.array([np.nan], dtype=dtype)
    payload_nan.view(np.uint32 if dtype == np.float32 else np.uint64)[0] |= 0x5   # a NaN with a payload
    c = np.array([2.5, -3.0, 0.0, -0.0, np.inf, -np.inf, info.smallest_subnormal, -info.smallest_subnormal,
                  info.max, payload_nan[0], -np.nan], dtype=dtype)
    s = ref_lion.exact_sign(c)
    assert s.dtype == c.dtype
    want = np.array([1, -1, 0, 0, 1, -1, 1, -1, 1], dtype=dtype)
    assert s[:9].tobytes() == want.tobytes()                  # +0 for both zeros
    assert s[9:].tobytes() == c[9:].tobytes()                 # NaN is c's own NaN, payload and sign kept
    assert math.copysign(1.0, float(s[3])) == 1.0


def test_zero_momentum_and_gradient_leave_the_parameter_bit_for_bit():
    """c = 0 gives sign 0 (+0), so p - lr * 0 is p exactly, -0.0 included."""
    p = {"w": np.array([-0.0, 0.0, 1.5, -2.0])}
    ref_lion.Lion(lr=0.1).update(p, {"w": np.array([0.0, -0.0, 0.0, 0.0])})
    assert p["w"].tobytes() == np.array([-0.0, 0.0, 1.5, -2.0]).tobytes()


def test_nan_propagates_as_in_optax_not_as_torch_sign():
    """A NaN gradient makes sign(c) NaN, and p NaN there (optax does the
    same). lion-pytorch's CPU sign maps NaN to 0 and leaves p unchanged there,
    silently, while its exp_avg turns NaN: a documented deviation."""
    optax = pytest.importorskip("optax")
    params = {"w": np.array([1.0, 2.0, 3.0])}
    noise = [{"w": np.array([0.1, np.nan, -0.2]) - 0.5 * params["w"]}]
    ours = reference_trajectory(ref_lion.Lion(lr=0.1), params, noise)
    theirs, _ = optax_trajectory(optax.lion, dict(lr=0.1, weight_decay=0.0), params, noise)
    assert np.isnan(ours["w"][1]) and np.isnan(theirs["w"][1])
    np.testing.assert_array_equal(ours["w"][[0, 2]], theirs["w"][[0, 2]])
    np.testing.assert_array_equal(ours["w"][[0, 2]], [0.9, 3.1])
    # lion-pytorch: sign(NaN) is 0 on CPU, so p stays 2.0 there while its exp_avg is NaN.
    torch_p, torch_m = torch_trajectory(params, noise, {}, lr=0.1)
    assert torch_p["w"][1] == 2.0 and np.isnan(torch_m["w"][1])
    np.testing.assert_array_equal(torch_p["w"][[0, 2]], [0.9, 3.1])


def test_float32_rounds_each_scalar_once():
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
