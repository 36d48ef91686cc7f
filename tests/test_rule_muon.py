"""Muon: fastadapt.reference.muon against torch.optim.Muon, and fa.Muon
(cpp/rules/muon.hpp + optim/muon.py) against the reference bit for bit.

torch casts the Newton-Schulz input to bfloat16; fastadapt runs it in the
parameter's dtype. So the parity runs torch's own Muon with that one cast
made a copy in the parameter's dtype (``Tensor.bfloat16`` patched for the
test, checked to take effect), float64 to 1e-12 relative; and the
``ns_dtype="bfloat16"`` option against torch's unpatched bfloat16 path.
The torch comparisons skip without torch (>= 2.9, which has Muon); the
kernel, checkpoint, atomicity and bad-input tests do not need it."""

from __future__ import annotations

import contextlib
import math
import random
import signal
import time

import numpy as np
import pytest

import fastadapt as fa
from fastadapt import _core
from fastadapt.reference import adam as ref_adam
from fastadapt.reference import muon as M
from fastadapt.reference import sgd as ref_sgd

from helpers import copy_tree, same_bits

try:
    import torch
    from torch.optim import _muon as torch_muon
except ImportError:
    torch = torch_muon = None
needs_torch = pytest.mark.skipif(torch is None or not hasattr(torch.optim, "Muon"),
                                 reason="needs torch >= 2.9 (torch.optim.Muon)")

# Every shape class: tall, wide, square, one row, one column, odd sizes, and
# one of more than one reduction chunk (CHUNK_ELEMENTS).
SHAPES = {"tall": (7, 5), "wide": (5, 7), "odd": (33, 65), "row": (1, 9), "col": (9, 1), "square": (16, 16),
          "big": (150, 131)}
STEPS = 24
TOL = {np.float64: 1e-12, np.float32: 2e-5}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These matrices are small: extra BLAS threads only contend for the cores."""
    before = torch.get_num_threads() if torch is not None else None
    if torch is not None:
        torch.set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = None
    with threadpool_limits(1) if threadpool_limits else contextlib.nullcontext():
        yield
    if torch is not None:
        torch.set_num_threads(before)


@pytest.fixture
def no_bf16_cast(monkeypatch):
    """torch's Muon with its bfloat16 cast turned into a copy in the same
    dtype: everything else is torch's own code."""
    monkeypatch.setattr(torch.Tensor, "bfloat16", lambda self, *a, **k: self.clone(), raising=True)
    probe = torch_muon._zeropower_via_newtonschulz(torch.ones(3, 2, dtype=torch.float64),
                                                   M.DEFAULT_NS_COEFFICIENTS, 1, 1e-7)
    assert probe.dtype == torch.float64, "the patch no longer removes torch's bfloat16 cast"


def rel_err(got, want):
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    scale = max(float(np.max(np.abs(want))), 1e-300) if want.size else 1.0
    return float(np.max(np.abs(got - want))) / scale if want.size else 0.0


def lr_at(step):
    """A warmup-then-cosine lr schedule, applied to both optimizers every step."""
    return 0.02 * min(1.0, (step + 1) / 4) * (0.55 + 0.45 * math.cos(math.pi * step / STEPS))


def set_both(ours, theirs_groups, **values):
    for k, v in values.items():
        setattr(ours, k, v)
        for group in theirs_groups:
            group[k] = v


def run_against_torch(dtype, options, changes=None, *, shapes=SHAPES, steps=STEPS, seed=0, tol=None,
                      ours_extra=None, their_grad=lambda g: g, schedule=True, make_ours=M.Muon):
    """Reference and torch side by side for ``steps`` steps on a noisy
    quadratic (g = noise + 0.5 * p), comparing params and momentum buffers
    after every step. ``changes``: {step: {name: value}} applied before that step."""
    rng = np.random.default_rng(seed)
    params = {k: rng.standard_normal(s).astype(dtype) for k, s in shapes.items()}
    tparams = {k: torch.nn.Parameter(torch.tensor(v.copy())) for k, v in params.items()}
    theirs = torch.optim.Muon(list(tparams.values()), **options)
    ours = make_ours(**options, **(ours_extra or {}))
    tol = TOL[dtype] if tol is None else tol
    worst = 0.0
    for step in range(steps):
        if schedule:
            set_both(ours, theirs.param_groups, lr=lr_at(step))
        set_both(ours, theirs.param_groups, **(changes or {}).get(step, {}))
        grads = {k: (rng.standard_normal(p.shape) + 0.5 * p).astype(dtype) for k, p in params.items()}
        for k, t in tparams.items():
            t.grad = torch.tensor(their_grad(grads[k]).copy())
        theirs.step()
        ours.update(params, grads)
        for k, t in tparams.items():
            err_p = rel_err(params[k], t.detach().numpy())
            err_m = rel_err(ours.state[k]["momentum_buffer"], theirs.state[t]["momentum_buffer"].numpy())
            worst = max(worst, err_p, err_m)
            assert err_p <= tol, f"step {step}: param {k} off by {err_p:.3g} relative"
            assert err_m <= tol, f"step {step}: momentum_buffer {k} off by {err_m:.3g} relative"
    assert ours.step_count == steps
    assert set(ours.state) == set(params) and all(set(s) == {"momentum_buffer"} for s in ours.state.values())
    return worst


# Hyperparameters changed mid-run, on top of the per-step lr schedule.
CHANGES = {6: dict(momentum=0.9), 9: dict(weight_decay=0.02), 12: dict(nesterov=False),
           15: dict(adjust_lr_fn="match_rms_adamw"), 18: dict(ns_steps=3),
           20: dict(ns_coefficients=(3.0, -3.2, 1.2)), 22: dict(momentum=0.5, nesterov=True)}


@needs_torch
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
@pytest.mark.parametrize("adjust_lr_fn", [None, "original", "match_rms_adamw"])
@pytest.mark.parametrize("nesterov", [True, False])
def test_matches_torch_float64(no_bf16_cast, nesterov, adjust_lr_fn, weight_decay):
    run_against_torch(np.float64, dict(nesterov=nesterov, adjust_lr_fn=adjust_lr_fn, weight_decay=weight_decay))


@needs_torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_matches_torch_with_hyperparameters_changed_mid_run(no_bf16_cast, dtype):
    run_against_torch(dtype, dict(weight_decay=0.1), CHANGES)


@needs_torch
@pytest.mark.parametrize("options", [dict(momentum=0.0), dict(momentum=0.5), dict(momentum=0.3, nesterov=False),
                                     dict(ns_steps=1), dict(ns_steps=8), dict(ns_coefficients=(1.5, -0.5, 0.0)),
                                     dict(eps=1e3), dict(lr=0.1, weight_decay=0.5)],
                         ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_matches_torch_every_option(no_bf16_cast, options):
    # eps=1e3 is above every direction's norm here: torch's clamp(min=eps) branch.
    run_against_torch(np.float64, options, schedule="lr" not in options)


@needs_torch
def test_matches_torch_float32(no_bf16_cast):
    run_against_torch(np.float32, dict(weight_decay=0.1, adjust_lr_fn="match_rms_adamw"))


@needs_torch
def test_maximize_is_torch_on_the_negated_gradient(no_bf16_cast):
    # torch's Muon has no maximize; fastadapt's option negates the gradient.
    run_against_torch(np.float64, dict(weight_decay=0.1), ours_extra=dict(maximize=True), their_grad=lambda g: -g)


@needs_torch
def test_newton_schulz_is_torchs_without_the_cast(no_bf16_cast):
    rng = np.random.default_rng(1)
    for shape in list(SHAPES.values()) + [(300, 20), (2, 200)]:
        for ns_steps in (1, 5):
            d = rng.standard_normal(shape)
            want = torch_muon._zeropower_via_newtonschulz(torch.tensor(d), M.DEFAULT_NS_COEFFICIENTS, ns_steps, 1e-7)
            got = M.newton_schulz(d, M.tensor_sum(d ** 2), ns_coefficients=M.DEFAULT_NS_COEFFICIENTS,
                                  ns_steps=ns_steps, eps=1e-7)
            assert got.shape == shape and got.dtype == np.float64
            assert rel_err(got, want.numpy()) <= 1e-13, (shape, ns_steps)


@needs_torch
def test_bfloat16_option_is_torchs_bfloat16_arithmetic():
    """torch unpatched. Small matrices: the same bfloat16 values; larger ones
    differ only where float32 sums in another order round to the other
    bfloat16 neighbour, far closer to torch than the float32 path is."""
    pytest.importorskip("ml_dtypes")
    rng = np.random.default_rng(2)
    for shape in [(7, 5), (5, 7), (33, 65), (130, 40), (128, 128), (300, 64)]:
        d = rng.standard_normal(shape).astype(np.float32)
        want = torch_muon._zeropower_via_newtonschulz(torch.tensor(d), M.DEFAULT_NS_COEFFICIENTS, 5, 1e-7)
        assert want.dtype == torch.bfloat16
        want = want.float().numpy()
        kw = dict(ns_coefficients=M.DEFAULT_NS_COEFFICIENTS, ns_steps=5, eps=1e-7)
        bf = M.newton_schulz(d, M.tensor_sum(d.astype(np.float64) ** 2), ns_dtype="bfloat16", **kw)
        f32 = M.newton_schulz(d, M.tensor_sum(d.astype(np.float64) ** 2), **kw)
        assert bf.dtype == np.float32
        if d.size <= 33 * 65:
            assert np.array_equal(bf, want), shape
        # (at 128x128 the bfloat16 path is 3.8x closer to torch than float32 under the packages a fresh
        # venv installed on 2026-12-02, 4x+ before: the sum order of the BLAS underneath moves it a little)
        assert np.mean(np.abs(bf - want)) <= np.mean(np.abs(f32 - want)) / 3, shape
        assert rel_err(bf, want) <= 2 ** -5, shape


@needs_torch
def test_bfloat16_option_follows_torch_muon_over_a_run():
    """torch unpatched, 24 steps: the bfloat16 option stays several times
    closer to torch's trajectory than the float32 path does."""
    pytest.importorskip("ml_dtypes")
    shapes = {"tall": (40, 12), "wide": (12, 40), "odd": (33, 65)}
    worst = {ns_dtype: run_against_torch(np.float32, dict(weight_decay=0.1), shapes=shapes, tol=0.05,
                                         ours_extra=dict(ns_dtype=ns_dtype))
             for ns_dtype in (None, "bfloat16")}
    assert worst["bfloat16"] <= worst[None] / 3, worst


# ---- the companion: non-matrix keys in the same update ----------------------------------

MODEL = {"fc1.w": (20, 12), "fc1.b": (20,), "conv": (4, 3, 5), "gain": (), "embed": (30, 8), "fc2.w": (3, 20),
         "fc2.b": (3,)}
MATRICES = ["fc1.w", "embed", "fc2.w"]


def model_params(rng, dtype=np.float64):
    return {k: np.asarray(rng.standard_normal(s), dtype=dtype) for k, s in MODEL.items()}


def run_with_companion_against_torch(make_ours, make_their_companion, *, steps=STEPS, seed=3, tol=1e-12):
    """The split of torch's documentation (Muon for the matrices, another
    optimizer for the rest) against ours as one optimizer; lr changed mid-run
    on both sides. Compares params and every state buffer."""
    rng = np.random.default_rng(seed)
    params = model_params(rng)
    tparams = {k: torch.nn.Parameter(torch.tensor(v.copy())) for k, v in params.items()}
    t_muon = torch.optim.Muon([tparams[k] for k in MATRICES], lr=0.02, weight_decay=0.1)
    t_other = make_their_companion([t for k, t in tparams.items() if k not in MATRICES])
    ours = make_ours()
    for step in range(steps):
        if step == 10:
            ours.lr, t_muon.param_groups[0]["lr"] = 0.01, 0.01
            ours.companion.lr = t_other.param_groups[0]["lr"] = t_other.param_groups[0]["lr"] / 3
        grads = {k: np.asarray(rng.standard_normal(p.shape) + 0.5 * p) for k, p in params.items()}
        for k, t in tparams.items():
            t.grad = torch.tensor(grads[k].copy())
        t_muon.step()
        t_other.step()
        ours.update(params, grads)
    for k, t in tparams.items():
        assert rel_err(params[k], t.detach().numpy()) <= tol, k
        theirs = (t_muon if k in MATRICES else t_other).state[t]
        mine = (ours.state if k in MATRICES else ours.companion.state)[k]
        assert set(mine) == set(theirs) - {"step"}, k
        for name, arr in mine.items():
            assert rel_err(arr, theirs[name].numpy()) <= tol, (k, name)
    assert ours.step_count == ours.companion.step_count == steps
    return ours


# The reference's Muon with its companions, and fa.Muon with fa's.
IMPLS = {"reference": (M.Muon, ref_adam), "fastadapt": (fa.Muon, fa)}


@needs_torch
@pytest.mark.parametrize("impl", IMPLS)
def test_companion_adamw_is_torch_muon_plus_torch_adamw(no_bf16_cast, impl):
    muon, rules = IMPLS[impl]
    run_with_companion_against_torch(
        lambda: muon(lr=0.02, weight_decay=0.1, companion=rules.AdamW(lr=3e-3, weight_decay=0.01)),
        lambda ps: torch.optim.AdamW(ps, lr=3e-3, weight_decay=0.01))


@needs_torch
def test_default_companion_is_adamw_with_torchs_defaults(no_bf16_cast):
    ours = run_with_companion_against_torch(lambda: M.Muon(lr=0.02, weight_decay=0.1),
                                            lambda ps: torch.optim.AdamW(ps), steps=8)
    assert type(ours.companion) is ref_adam.AdamW


@needs_torch
def test_companion_sgd(no_bf16_cast):
    run_with_companion_against_torch(
        lambda: M.Muon(lr=0.02, weight_decay=0.1, companion=ref_sgd.SGD(lr=0.05, momentum=0.9, nesterov=True)),
        lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=True), steps=12)


def run_preprocessing_against_torch(ours, *, steps=12, seed=5):
    """Clipping with the norm over the whole tree and nonfinite='zero' on
    companion and matrix keys, against torch fed the cleaned, globally
    clipped gradients (max_grad_norm 3.0)."""
    rng = np.random.default_rng(seed)
    params = model_params(rng)
    tparams = {k: torch.nn.Parameter(torch.tensor(v.copy())) for k, v in params.items()}
    t_muon = torch.optim.Muon([tparams[k] for k in MATRICES], lr=0.02)
    t_adam = torch.optim.Adam([t for k, t in tparams.items() if k not in MATRICES], lr=1e-2)
    for step in range(steps):
        grads = {k: np.asarray(2.0 * rng.standard_normal(p.shape)) for k, p in params.items()}
        if step % 3 == 1:
            grads["fc1.b"][0] = np.nan
            grads["fc1.w"][2, 3] = np.inf
        clean = {k: np.where(np.isfinite(g), g, 0.0) for k, g in grads.items()}
        norm = math.sqrt(sum(float(np.sum(g * g)) for g in clean.values()))
        scale = min(1.0, 3.0 / norm)
        for k, t in tparams.items():
            t.grad = torch.tensor(clean[k] * scale)
        t_muon.step()
        t_adam.step()
        ours.update(params, grads)
    for k, t in tparams.items():
        assert rel_err(params[k], t.detach().numpy()) <= 1e-12, k


@needs_torch
@pytest.mark.parametrize("impl", IMPLS)
def test_preprocessing_covers_every_key_companion_keys_included(no_bf16_cast, impl):
    muon, rules = IMPLS[impl]
    run_preprocessing_against_torch(muon(lr=0.02, companion=rules.Adam(lr=1e-2), max_grad_norm=3.0,
                                         nonfinite="zero"))
    params = model_params(np.random.default_rng(0))
    skipper = M.Muon(nonfinite="skip")
    before = {k: v.copy() for k, v in params.items()}
    bad = {k: np.ones_like(p) for k, p in params.items()}
    bad["gain"][...] = np.nan  # in a companion key only: the matrices skip too
    skipper.update(params, bad)
    assert skipper.skipped_steps == 1 and skipper.step_count == 0 and skipper.companion.step_count == 0
    assert all(np.array_equal(params[k], before[k]) for k in params)


def test_reference_rule_refuses_a_non_matrix():
    with pytest.raises(ValueError, match="2-D matrices only"):
        M.muon_rule(np.ones(3), np.ones(3), np.zeros(3), t=1, lr=0.1, weight_decay=0.0, momentum=0.9,
                    nesterov=True, ns_coefficients=M.DEFAULT_NS_COEFFICIENTS, eps=1e-7, ns_steps=5,
                    adjust_lr_fn=None)


def test_bad_companion_and_options_raise():
    with pytest.raises(ValueError, match="set them on Muon"):
        M.Muon(companion=ref_adam.AdamW(max_grad_norm=1.0))
    with pytest.raises(ValueError, match="set them on Muon"):
        M.Muon(companion=ref_adam.Adam(maximize=True))
    with pytest.raises(TypeError, match="companion must be"):
        M.Muon(companion=M.Muon())
    with pytest.raises(TypeError, match="unknown hyperparameters"):
        M.Muon(beta=0.9)
    with pytest.raises(ValueError, match="adjust_lr_fn"):
        M.adjusted_lr(0.1, "rms", (3, 4))
    d = np.ones((3, 4))
    with pytest.raises(ValueError, match="ns_dtype"):
        M.newton_schulz(d, 12.0, ns_coefficients=M.DEFAULT_NS_COEFFICIENTS, ns_steps=5, eps=1e-7, ns_dtype="fp8")


@needs_torch
def test_adjusted_lr_is_torchs():
    for shape in [(7, 5), (5, 7), (1, 9), (9, 1), (784, 128), (1024, 1024)]:
        for fn in M.ADJUST_LR_FNS:
            assert M.adjusted_lr(0.02, fn, shape) == torch_muon._adjust_lr(0.02, fn, torch.Size(shape))


def test_empty_matrices_are_left_alone():
    # (torch's _adjust_lr divides by zero on a (5, 0) matrix; there is nothing to update.)
    params = {"a": np.ones((0, 5)), "b": np.ones((5, 0)), "w": np.ones((2, 3))}
    opt = M.Muon(lr=0.1)
    opt.update(params, {k: np.ones_like(v) for k, v in params.items()})
    assert params["a"].shape == (0, 5) and params["b"].shape == (5, 0)
    assert not np.array_equal(params["w"], np.ones((2, 3)))


def test_the_step_splits_into_a_pure_direction_pass_and_a_commit():
    """Part 1 writes nothing and part 3 recomputes part 1's buffer bit for
    bit: what a fused kernel relies on to stay atomic."""
    rng = np.random.default_rng(6)
    for dtype in (np.float32, np.float64):
        p = rng.standard_normal((9, 4)).astype(dtype)
        g = rng.standard_normal((9, 4)).astype(dtype)
        buf = rng.standard_normal((9, 4)).astype(dtype)
        p0, g0, buf0 = p.copy(), g.copy(), buf.copy()
        d, sumsq = M.muon_direction(g, buf, momentum=0.95, nesterov=False)
        assert np.array_equal(p, p0) and np.array_equal(g, g0) and np.array_equal(buf, buf0)
        assert d.dtype == dtype and sumsq == M.tensor_sum(d.astype(np.float64) ** 2)
        o = M.newton_schulz(d, sumsq, ns_coefficients=M.DEFAULT_NS_COEFFICIENTS, ns_steps=5, eps=1e-7)
        assert np.array_equal(buf, buf0) and o.dtype == dtype
        M.muon_commit(p, g, buf, o, lr=0.1, weight_decay=0.1, momentum=0.95, adjusted_lr=0.15)
        assert buf.tobytes() == d.tobytes()  # without Nesterov the direction is the new buffer
        T = dtype
        assert p.tobytes() == (p0 * T(1.0 - 0.1 * 0.1) - T(0.15) * o).tobytes()


# =========================================================================================
# fa.Muon: the fused kernel (cpp/rules/muon.hpp + optim/muon.py) against the reference,
# bit for bit, on every SIMD path and thread count; against torch; checkpoints; bad input.
# =========================================================================================

# Matrices of every kind, an empty one, and companion keys of every kind.
KSHAPES = {"tall": (33, 17), "wide": (17, 33), "row": (1, 9), "col": (9, 1), "empty": (0, 5),
           "bias": (7,), "scalar": (), "cube": (3, 5, 7)}
# Tensors of more than MIN_PARALLEL_ELEMENTS: the thread pool runs them.
BIG_ROWS = _core.MIN_PARALLEL_ELEMENTS // 300 + 5
KBIG = {"big": (BIG_ROWS, 300), "big_bias": (_core.MIN_PARALLEL_ELEMENTS + 77,), "small": (6, 4)}

KCHANGES = {1: dict(lr=0.01, momentum=0.9), 2: dict(nesterov=False, weight_decay=0.3),
            3: dict(adjust_lr_fn="match_rms_adamw", ns_steps=3, ns_coefficients=(3.0, -3.2, 1.2))}


def params_and_grads(seed, shapes=KSHAPES):
    """Standard normal params and one gradient of each of ``shapes``."""
    rng = np.random.default_rng(seed)
    params = {k: rng.standard_normal(s) for k, s in shapes.items()}
    grads = {k: rng.standard_normal(s) for k, s in shapes.items()}
    return params, grads


def kernel_pair(options, companion=("AdamW", dict(lr=3e-3))):
    name, kw = companion
    ours = fa.Muon(companion=getattr(fa, name)(**kw), **options)
    theirs = M.Muon(companion=getattr({"AdamW": ref_adam, "Adam": ref_adam, "SGD": ref_sgd}[name], name)(**kw),
                    **{k: v for k, v in options.items() if k != "track_grad_norm"})
    return ours, theirs


def nonfinite_grads(g, step):
    """NaN/Inf in a matrix and in a companion key, every other step."""
    if step % 2 == 0:
        for k, v in g.items():
            if v.size > 3:
                v.reshape(-1)[[0, v.size // 2, v.size - 1]] = [np.nan, np.inf, -np.inf]
    return g


def run_kernel_pair(options, dtype, *, shapes=KSHAPES, steps=4, changes=KCHANGES, seed=0, nonfinite=False,
                    companion=("AdamW", dict(lr=3e-3))):
    rng = np.random.default_rng(seed)
    ours, theirs = kernel_pair(options, companion)
    p = {k: np.asarray(rng.standard_normal(s), dtype=dtype) for k, s in shapes.items()}
    q = copy_tree(p)
    for step in range(steps):
        for k, v in changes.get(step, {}).items():
            setattr(ours, k, v)
            setattr(theirs, k, v)
        g = {k: np.asarray(rng.standard_normal(s), dtype=dtype) for k, s in shapes.items()}
        if nonfinite:
            g = nonfinite_grads(g, step)
        g_before = copy_tree(g)
        ours.update(p, g)
        theirs.update(q, g)
        assert all(same_bits(g[k], g_before[k]) for k in g), "grads were modified"
    return ours, theirs, p, q


def assert_same_bits(ours, theirs, p, q):
    for k in p:
        diff = np.max(np.abs(p[k] - q[k])) if p[k].size else 0
        assert same_bits(p[k], q[k]), f"param {k} differs: max abs diff {diff}"
    # fa.Muon's state holds every key's (the companion's too); the reference keeps them apart.
    for who, mine, ref in (("muon", ours.state, {**theirs.state, **theirs.companion.state}),
                           ("companion", ours.companion.state, theirs.companion.state)):
        assert set(mine) == set(ref), who
        for k, bufs in mine.items():
            assert set(bufs) == set(ref[k]), (who, k)
            for name, arr in bufs.items():
                assert same_bits(arr, ref[k][name]), f"{who} state {k}/{name} differs"
    assert ours.step_count == theirs.step_count and ours.companion.step_count == theirs.companion.step_count
    assert ours.skipped_steps == theirs.skipped_steps


KCASES = [dict(), dict(nesterov=False, weight_decay=0.0, adjust_lr_fn="match_rms_adamw"), dict(momentum=0.0),
          dict(maximize=True), dict(ns_steps=0, eps=1e3), dict(ns_coefficients=(1.5, -0.5, 0.0), momentum=0.5)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("options", KCASES, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()) or "defaults")
def test_kernel_matches_reference_bit_for_bit(options, dtype, isa, threads):
    assert_same_bits(*run_kernel_pair(options, dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_kernel_bit_for_bit_on_the_thread_pool(dtype, isa, threads):
    assert_same_bits(*run_kernel_pair(dict(weight_decay=0.05), dtype, shapes=KBIG, steps=3, changes={}))


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_kernel_bit_for_bit_with_bfloat16_newton_schulz(dtype, isa, threads):
    pytest.importorskip("ml_dtypes")
    assert_same_bits(*run_kernel_pair(dict(ns_dtype="bfloat16"), dtype))


@pytest.mark.parametrize("companion", [("Adam", dict(lr=1e-2, amsgrad=True)), ("SGD", dict(lr=0.05, momentum=0.9))],
                         ids=["adam-amsgrad", "sgd-momentum"])
def test_kernel_bit_for_bit_with_other_companions(companion, isa):
    assert_same_bits(*run_kernel_pair({}, np.float64, companion=companion))


PREP = [dict(max_grad_norm=1.0), dict(max_grad_norm=1e6), dict(nonfinite="zero"),
        dict(nonfinite="zero", max_grad_norm=2.0), dict(track_grad_norm=True)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("prep", PREP, ids=lambda p: "-".join(f"{k}={v}" for k, v in p.items()))
def test_gradient_preprocessing_matches_reference(prep, dtype, isa, threads):
    zero = prep.get("nonfinite") == "zero"
    ours, theirs, p, q = run_kernel_pair(dict(prep, maximize=True), dtype, nonfinite=zero)
    assert_same_bits(ours, theirs, p, q)
    if "max_grad_norm" in prep:
        assert ours.last_grad_norm == theirs.last_grad_norm
    if zero:
        assert ours.total_nonfinite_count == 2 * 3 * sum(1 for s in KSHAPES.values() if math.prod(s) > 3)


def test_kernel_overrides_match_reference_per_group(isa, threads):
    """Per-key hyperparameters: the keys of each group against a reference
    run with that group's values (no clipping, so the groups are independent)."""
    rng = np.random.default_rng(8)
    shapes = {"a.w": (12, 7), "a.b": (12,), "b.w": (7, 12), "b.v": (5, 5)}
    override = {"lr": 0.05, "ns_steps": 3, "nesterov": False, "adjust_lr_fn": "match_rms_adamw",
                "ns_coefficients": (3.0, -3.2, 1.2)}
    ours = fa.Muon(lr=0.02, overrides={"b.*": override})
    plain, special = M.Muon(lr=0.02), M.Muon(**override)
    p = {k: rng.standard_normal(s) for k, s in shapes.items()}
    q = copy_tree(p)
    for _ in range(4):
        g = {k: rng.standard_normal(s) for k, s in shapes.items()}
        ours.update(p, g)
        plain.update({k: q[k] for k in ("a.w", "a.b")}, {k: g[k] for k in ("a.w", "a.b")})
        special.update({k: q[k] for k in ("b.w", "b.v")}, {k: g[k] for k in ("b.w", "b.v")})
    for k in shapes:
        assert same_bits(p[k], q[k]), k
    for k in ("a.w", "b.w", "b.v"):
        ref = (plain if k.startswith("a") else special).state[k]["momentum_buffer"]
        assert same_bits(ours.state[k]["momentum_buffer"], ref), k


# ---- fa.Muon against torch ---------------------------------------------------------------
# (fa.Muon with fa's companions against torch: the companion and preprocessing tests
# above, parametrized by impl.)

@needs_torch
@pytest.mark.parametrize("options", [dict(weight_decay=0.1), dict(nesterov=False, adjust_lr_fn="match_rms_adamw")],
                         ids=["nesterov", "plain-match_rms_adamw"])
def test_fa_muon_matches_torch_float64(no_bf16_cast, options):
    worst = run_against_torch(np.float64, options, CHANGES, make_ours=lambda **o: fa.Muon(**o))
    assert worst <= 1e-12


@needs_torch
def test_fa_muon_matches_torch_float32(no_bf16_cast):
    run_against_torch(np.float32, dict(weight_decay=0.1), CHANGES, make_ours=lambda **o: fa.Muon(**o))


@needs_torch
def test_fa_muon_bfloat16_follows_torch():
    pytest.importorskip("ml_dtypes")
    run_against_torch(np.float32, dict(weight_decay=0.1), shapes={"tall": (40, 12), "odd": (33, 65)}, tol=1e-3,
                      ours_extra=dict(ns_dtype="bfloat16"), make_ours=lambda **o: fa.Muon(**o))


# ---- checkpoints, skip/raise, atomicity ---------------------------------------------------

def test_state_dict_round_trip_mid_run_equals_uninterrupted_run():
    rng = np.random.default_rng(9)
    start = {k: rng.standard_normal(s) for k, s in KSHAPES.items()}
    grads = [{k: rng.standard_normal(s) for k, s in KSHAPES.items()} for _ in range(6)]
    make = lambda: fa.Muon(lr=0.02, companion=fa.AdamW(lr=3e-3), overrides={"wide": {"ns_steps": 3}})  # noqa: E731
    straight, p = make(), copy_tree(start)
    for g in grads:
        straight.update(p, g)
    first, q = make(), copy_tree(start)
    for g in grads[:3]:
        first.update(q, g)
    sd = first.state_dict()
    assert sd["companion"]["algorithm"] == "adamw" and sd["companion"]["keys"] == ["bias", "scalar", "cube"]
    assert list(sd["state"]) == ["tall", "wide", "row", "col", "empty", "bias", "scalar", "cube"]
    assert set(sd["state"]["bias"]) == {"exp_avg", "exp_avg_sq"} and set(sd["state"]["tall"]) == {"momentum_buffer"}
    resumed = fa.make_optimizer("muon", overrides={"wide": {"ns_steps": 3}})  # default companion, lr restored
    resumed.load_state_dict(sd, params=q)
    assert resumed.companion.lr == 3e-3
    for g in grads[3:]:
        resumed.update(q, g)
    assert all(same_bits(p[k], q[k]) for k in p)
    assert resumed.step_count == straight.step_count == 6 == resumed.companion.step_count


def test_load_state_dict_is_all_or_nothing():
    rng = np.random.default_rng(10)
    params = {k: rng.standard_normal(s) for k, s in KSHAPES.items()}
    source = fa.Muon(lr=0.05, companion=fa.SGD(lr=0.1, momentum=0.9))
    source.update(params, {k: rng.standard_normal(s) for k, s in KSHAPES.items()})
    target = fa.Muon(lr=0.02)  # an AdamW companion: the saved companion is SGD
    target.update(copy_tree(params), {k: rng.standard_normal(s) for k, s in KSHAPES.items()})
    before = target.state_dict()
    with pytest.raises(ValueError, match="'sgd'"):
        target.load_state_dict(source.state_dict())
    after = target.state_dict()
    assert after["hyperparameters"] == before["hyperparameters"] and after["step"] == before["step"]
    assert all(same_bits(after["state"][k][n], before["state"][k][n])
               for k in before["state"] for n in before["state"][k])
    with pytest.raises(ValueError, match=r"state_dict\['companion'\]"):
        target.load_state_dict({k: v for k, v in before.items() if k != "companion"})


def test_nonfinite_raise_and_skip_leave_both_optimizers_as_they_were():
    params, grads = params_and_grads(11)
    for policy in ("raise", "skip"):
        opt = fa.Muon(nonfinite=policy)
        opt.update(params, grads)
        p0, sd0 = copy_tree(params), opt.state_dict()
        bad = copy_tree(grads)
        bad["bias"][3] = np.nan  # a companion key only
        if policy == "raise":
            with pytest.raises(FloatingPointError, match=r"grads\['bias'\]"):
                opt.update(params, bad)
        else:
            opt.update(params, bad)
            assert opt.skipped_steps == 1
        assert all(same_bits(params[k], p0[k]) for k in params)
        sd = opt.state_dict()
        assert sd["step"] == 1 and sd["companion"]["step"] == 1
        assert all(same_bits(sd["state"][k][n], sd0["state"][k][n]) for k in sd0["state"] for n in sd0["state"][k])


class _Interrupt(BaseException):
    pass


def test_an_interrupt_before_the_commit_leaves_the_step_undone(monkeypatch):
    from fastadapt.optim import muon as fm

    params, grads = params_and_grads(12)
    opt = fa.Muon()
    opt.update(params, grads)
    p0, sd0 = copy_tree(params), opt.state_dict()

    def interrupted(*a, **k):
        raise _Interrupt()

    monkeypatch.setattr(fm, "_newton_schulz", interrupted)
    with pytest.raises(_Interrupt):
        opt.update(params, grads)
    monkeypatch.undo()
    assert all(same_bits(params[k], p0[k]) for k in params)
    sd = opt.state_dict()
    assert sd["step"] == sd0["step"] == 1 and sd["companion"]["step"] == 1
    assert all(same_bits(sd["state"][k][n], sd0["state"][k][n]) for k in sd0["state"] for n in sd0["state"][k])
    opt.update(params, grads)  # and it carries on
    assert opt.step_count == 2


def test_an_interrupt_after_the_commit_still_steps_the_companion():
    params, grads = params_and_grads(13)
    opt, replay = fa.Muon(), fa.Muon()
    p_replay = copy_tree(params)
    commit = opt._stepper.commit

    class InterruptAfterCommit:
        def step(self, *args):
            commit.step(*args)
            raise _Interrupt()

    opt._stepper.commit = InterruptAfterCommit()
    with pytest.raises(_Interrupt):
        opt.update(params, grads)
    opt._stepper.commit = commit
    replay.update(p_replay, grads)
    assert all(same_bits(params[k], p_replay[k]) for k in params)
    assert opt.step_count == opt.companion.step_count == 1
    assert same_bits(opt.state["tall"]["momentum_buffer"], replay.state["tall"]["momentum_buffer"])
    assert same_bits(opt.companion.state["bias"]["exp_avg"], replay.companion.state["bias"]["exp_avg"])


def test_an_interrupt_inside_the_companions_step_is_completed_by_the_next_reader():
    params, grads = params_and_grads(15)
    opt, replay = fa.Muon(), fa.Muon()
    p_replay = copy_tree(params)
    replay.update(p_replay, grads)
    real = opt.companion.update
    calls = []

    def interrupted_once(*args):
        calls.append(1)
        if len(calls) == 1:
            raise _Interrupt()
        return real(*args)

    opt.companion.update = interrupted_once
    with pytest.raises(_Interrupt):
        opt.update(params, grads)
    assert opt.step_count == 1 and opt.companion.step_count == 0  # the companion's step is due
    sd = opt.state_dict()  # settles: the companion steps now, once
    assert sd["companion"]["step"] == 1 and len(calls) == 2
    opt.state_dict()
    assert len(calls) == 2
    assert all(same_bits(params[k], p_replay[k]) for k in params)


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs POSIX interval timers")
def test_real_interrupts_at_random_moments_leave_a_whole_number_of_steps():
    """SIGALRM at random moments of small updates (in NumPy, between the
    fused calls, in the companion's step): after each, what the optimizer
    shows (its state_dict, which settles) and the params are exactly those
    of some whole number of uninterrupted steps, companion included."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals go to the main thread")
    rng = np.random.default_rng(16)
    shapes = {"w": (24, 12), "v": (12, 30), "b": (24,), "s": ()}
    start = {k: rng.standard_normal(s) for k, s in shapes.items()}
    steps = 40
    grads = [{k: rng.standard_normal(s) for k, s in shapes.items()} for _ in range(steps)]
    clean, p = fa.Muon(lr=0.02), copy_tree(start)
    expected = [(copy_tree(p), clean.state_dict())]
    for g in grads:
        clean.update(p, g)
        expected.append((copy_tree(p), clean.state_dict()))
    opt, p = fa.Muon(lr=0.02), copy_tree(start)
    started = time.perf_counter()
    opt.update(copy_tree(start), grads[0])
    opt.reset()
    step_seconds = time.perf_counter() - started

    def alarm(signum, frame):
        raise _Interrupt()

    timer_rng = random.Random(16)
    previous = signal.signal(signal.SIGALRM, alarm)
    interrupted = tries = 0
    try:
        while opt.step_count < steps and tries < 20 * steps:
            tries += 1
            try:
                signal.setitimer(signal.ITIMER_REAL, timer_rng.uniform(1e-6, 1.2 * step_seconds))
                opt.update(p, grads[opt.step_count])
                signal.setitimer(signal.ITIMER_REAL, 0)
            except _Interrupt:
                interrupted += 1
            signal.setitimer(signal.ITIMER_REAL, 0)
            try:
                for _ in range(1000):  # let an alarm already due land here, not in the checks
                    pass
            except _Interrupt:
                interrupted += 1
            sd = opt.state_dict()
            want_p, want_sd = expected[opt.step_count]
            assert sd["step"] == sd["companion"]["step"] == opt.step_count
            assert all(same_bits(p[k], want_p[k]) for k in p), f"params after {opt.step_count} steps"
            assert all(same_bits(sd["state"][k][n], want_sd["state"][k][n])
                       for k in want_sd["state"] for n in want_sd["state"][k])
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert opt.step_count == steps, f"{tries} tries, {interrupted} interrupted"
    assert interrupted > 0


# ---- bad input -------------------------------------------------------------------------------

BAD = [("lr", -1.0, ValueError), ("momentum", -0.5, ValueError), ("weight_decay", -0.1, ValueError),
       ("eps", -1e-7, ValueError), ("ns_steps", 100, ValueError), ("ns_steps", -1, ValueError),
       ("ns_steps", 2.0, TypeError), ("ns_steps", True, TypeError), ("ns_coefficients", (1.0, 2.0), TypeError),
       ("ns_coefficients", (1.0, 2.0, math.inf), ValueError), ("ns_coefficients", "abc", TypeError),
       ("adjust_lr_fn", "rms", ValueError), ("adjust_lr_fn", 1, ValueError), ("ns_dtype", "float16", ValueError),
       ("nesterov", 1, TypeError), ("maximize", "yes", TypeError)]


@pytest.mark.parametrize("name,value,exc", BAD, ids=[f"{n}={v!r}" for n, v, _ in BAD])
def test_bad_hyperparameters_raise_naming_the_argument(name, value, exc):
    with pytest.raises(exc, match=name):
        fa.Muon(**{name: value})
    opt = fa.Muon()
    before = getattr(opt, name)
    with pytest.raises(exc, match=name):
        setattr(opt, name, value)
    assert getattr(opt, name) == before


def test_bad_companions_raise():
    with pytest.raises(TypeError, match="companion must be a fastadapt optimizer"):
        fa.Muon(companion=fa.Muon())
    with pytest.raises(TypeError, match="companion must be a fastadapt optimizer"):
        fa.Muon(companion=ref_adam.AdamW())
    for kw in (dict(max_grad_norm=1.0), dict(nonfinite="skip"), dict(maximize=True)):
        with pytest.raises(ValueError, match="set them on Muon"):
            fa.Muon(companion=fa.Adam(**kw))
    with pytest.raises(AttributeError):
        fa.Muon().companion = fa.AdamW()
    # Changed after construction: refused at the next update, before anything changes.
    opt = fa.Muon()
    params, grads = {"w": np.ones((3, 4)), "b": np.ones(3)}, {"w": np.ones((3, 4)), "b": np.ones(3)}
    opt.companion.max_grad_norm = 1.0
    with pytest.raises(ValueError, match="set them on Muon"):
        opt.update(params, grads)
    assert opt.step_count == 0 and np.array_equal(params["w"], np.ones((3, 4)))


@pytest.mark.parametrize("bad", ["int param", "readonly param", "grad shape", "readonly companion param",
                                 "grad aliases a param"])
def test_bad_arrays_change_nothing(bad):
    params, grads = params_and_grads(14)
    opt = fa.Muon()
    opt.update(params, grads)
    if bad == "int param":
        params["tall"] = np.ones(KSHAPES["tall"], dtype=np.int64)
    elif bad == "readonly param":
        params["wide"].flags.writeable = False
    elif bad == "grad shape":
        grads["wide"] = np.ones((33, 17))
    elif bad == "readonly companion param":
        params["cube"].flags.writeable = False
    else:
        grads["col"] = params["tall"][:, 0:1]  # not C-contiguous, and a view of a param
    p0, sd0 = copy_tree(params), opt.state_dict()
    with pytest.raises((TypeError, ValueError)):
        opt.update(params, grads)
    assert all(same_bits(params[k], p0[k]) for k in params)
    sd = opt.state_dict()
    assert sd["step"] == 1 and sd["companion"]["step"] == 1
    assert all(same_bits(sd["state"][k][n], sd0["state"][k][n]) for k in sd0["state"] for n in sd0["state"][k])
