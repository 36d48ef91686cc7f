"""Muon: fastadapt.reference.muon against torch.optim.Muon.

torch casts the Newton-Schulz input to bfloat16; fastadapt runs it in the
parameter's dtype. So the parity runs torch's own Muon with that one cast
made a copy in the parameter's dtype (``Tensor.bfloat16`` patched for the
test, checked to take effect), float64 to 1e-12 relative; and the
``ns_dtype="bfloat16"`` option against torch's unpatched bfloat16 path.
Skipped without torch."""

from __future__ import annotations

import contextlib
import math

import numpy as np
import pytest

from fastadapt.reference import adam as ref_adam
from fastadapt.reference import muon as M
from fastadapt.reference import sgd as ref_sgd

torch = pytest.importorskip("torch")
if not hasattr(torch.optim, "Muon"):
    pytest.skip("torch.optim.Muon needs torch >= 2.9", allow_module_level=True)
from torch.optim import _muon as torch_muon  # noqa: E402  (after the skip)

# Every shape class: tall, wide, square, one row, one column, odd sizes, and
# one of more than one reduction chunk (CHUNK_ELEMENTS).
SHAPES = {"tall": (7, 5), "wide": (5, 7), "odd": (33, 65), "row": (1, 9), "col": (9, 1), "square": (16, 16),
          "big": (150, 131)}
STEPS = 24
TOL = {np.float64: 1e-12, np.float32: 2e-5}
TORCH_DTYPE = {np.float64: torch.float64, np.float32: torch.float32}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These matrices are small: extra BLAS threads only contend for the cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = None
    with threadpool_limits(1) if threadpool_limits else contextlib.nullcontext():
        yield
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
                      ours_extra=None, their_grad=lambda g: g, schedule=True):
    """Reference and torch side by side for ``steps`` steps on a noisy
    quadratic (g = noise + 0.5 * p), comparing params and momentum buffers
    after every step. ``changes``: {step: {name: value}} applied before that step."""
    rng = np.random.default_rng(seed)
    params = {k: rng.standard_normal(s).astype(dtype) for k, s in shapes.items()}
    tparams = {k: torch.nn.Parameter(torch.tensor(v.copy())) for k, v in params.items()}
    theirs = torch.optim.Muon(list(tparams.values()), **options)
    ours = M.Muon(**options, **(ours_extra or {}))
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


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
@pytest.mark.parametrize("adjust_lr_fn", [None, "original", "match_rms_adamw"])
@pytest.mark.parametrize("nesterov", [True, False])
def test_matches_torch_float64(no_bf16_cast, nesterov, adjust_lr_fn, weight_decay):
    run_against_torch(np.float64, dict(nesterov=nesterov, adjust_lr_fn=adjust_lr_fn, weight_decay=weight_decay))


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_matches_torch_with_hyperparameters_changed_mid_run(no_bf16_cast, dtype):
    run_against_torch(dtype, dict(weight_decay=0.1), CHANGES)


@pytest.mark.parametrize("options", [dict(momentum=0.0), dict(momentum=0.5), dict(momentum=0.3, nesterov=False),
                                     dict(ns_steps=1), dict(ns_steps=8), dict(ns_coefficients=(1.5, -0.5, 0.0)),
                                     dict(eps=1e3), dict(lr=0.1, weight_decay=0.5)],
                         ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_matches_torch_every_option(no_bf16_cast, options):
    # eps=1e3 is above every direction's norm here: torch's clamp(min=eps) branch.
    run_against_torch(np.float64, options, schedule="lr" not in options)


def test_matches_torch_float32(no_bf16_cast):
    run_against_torch(np.float32, dict(weight_decay=0.1, adjust_lr_fn="match_rms_adamw"))


def test_maximize_is_torch_on_the_negated_gradient(no_bf16_cast):
    # torch's Muon has no maximize; fastadapt's option negates the gradient.
    run_against_torch(np.float64, dict(weight_decay=0.1), ours_extra=dict(maximize=True), their_grad=lambda g: -g)


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
        assert np.mean(np.abs(bf - want)) <= np.mean(np.abs(f32 - want)) / 4, shape
        assert rel_err(bf, want) <= 2 ** -5, shape


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


def model_params(rng, dtype=np.float64):
    return {k: np.asarray(rng.standard_normal(s), dtype=dtype) for k, s in MODEL.items()}


def test_companion_adamw_is_torch_muon_plus_torch_adamw(no_bf16_cast):
    """The split torch's documentation shows (Muon for hidden matrices,
    AdamW for the rest, embeddings included), as one optimizer."""
    rng = np.random.default_rng(3)
    params = model_params(rng)
    tparams = {k: torch.nn.Parameter(torch.tensor(v.copy())) for k, v in params.items()}
    matrices = ["fc1.w", "fc2.w"]
    t_muon = torch.optim.Muon([tparams[k] for k in matrices], lr=0.02, weight_decay=0.1)
    t_adamw = torch.optim.AdamW([t for k, t in tparams.items() if k not in matrices], lr=3e-3, weight_decay=0.01)
    ours = M.Muon(lr=0.02, weight_decay=0.1, companion=ref_adam.AdamW(lr=3e-3, weight_decay=0.01),
                  companion_keys="embed*")
    assert [k for k, p in params.items() if not ours.to_companion(k, p)] == matrices
    for step in range(STEPS):
        if step == 10:
            ours.lr, t_muon.param_groups[0]["lr"] = 0.01, 0.01
            ours.companion.lr, t_adamw.param_groups[0]["lr"] = 1e-3, 1e-3
        grads = {k: rng.standard_normal(p.shape) + 0.5 * p for k, p in params.items()}
        for k, t in tparams.items():
            t.grad = torch.tensor(grads[k].copy())
        t_muon.step()
        t_adamw.step()
        ours.update(params, grads)
    for k, t in tparams.items():
        assert rel_err(params[k], t.detach().numpy()) <= 1e-12, k
        theirs = (t_muon if k in matrices else t_adamw).state[t]
        mine = (ours.state if k in matrices else ours.companion.state)[k]
        assert set(mine) == set(theirs) - {"step"}, k
        for name, arr in mine.items():
            assert rel_err(arr, theirs[name].numpy()) <= 1e-12, (k, name)
    assert ours.step_count == ours.companion.step_count == STEPS


def test_companion_sgd_and_a_callable_pattern(no_bf16_cast):
    rng = np.random.default_rng(4)
    params = model_params(rng)
    tparams = {k: torch.nn.Parameter(torch.tensor(v.copy())) for k, v in params.items()}
    to_sgd = lambda path, p: path.startswith("fc2")  # noqa: E731  (fc2.w is a matrix: sent by the pattern)
    ours = M.Muon(lr=0.02, companion=ref_sgd.SGD(lr=0.05, momentum=0.9, nesterov=True), companion_keys=[to_sgd])
    matrices = [k for k, p in params.items() if not ours.to_companion(k, p)]
    assert matrices == ["fc1.w", "embed"]
    t_muon = torch.optim.Muon([tparams[k] for k in matrices], lr=0.02)
    t_sgd = torch.optim.SGD([t for k, t in tparams.items() if k not in matrices], lr=0.05, momentum=0.9,
                            nesterov=True)
    for _ in range(12):
        grads = {k: rng.standard_normal(p.shape) + 0.5 * p for k, p in params.items()}
        for k, t in tparams.items():
            t.grad = torch.tensor(grads[k].copy())
        t_muon.step()
        t_sgd.step()
        ours.update(params, grads)
    for k, t in tparams.items():
        assert rel_err(params[k], t.detach().numpy()) <= 1e-12, k


def test_preprocessing_covers_every_key_companion_keys_included(no_bf16_cast):
    """Clipping uses the norm over the whole tree; nonfinite='zero' zeroes
    companion gradients too; 'skip' skips the whole step."""
    rng = np.random.default_rng(5)
    params = model_params(rng)
    tparams = {k: torch.nn.Parameter(torch.tensor(v.copy())) for k, v in params.items()}
    matrices = ["fc1.w", "embed", "fc2.w"]
    t_muon = torch.optim.Muon([tparams[k] for k in matrices], lr=0.02)
    t_adam = torch.optim.Adam([t for k, t in tparams.items() if k not in matrices], lr=1e-2)
    ours = M.Muon(lr=0.02, companion=ref_adam.Adam(lr=1e-2), max_grad_norm=3.0, nonfinite="zero")
    for step in range(12):
        grads = {k: 2.0 * rng.standard_normal(p.shape) for k, p in params.items()}
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

    skipper = M.Muon(companion=ref_adam.AdamW(), nonfinite="skip")
    before = {k: v.copy() for k, v in params.items()}
    bad = {k: np.ones_like(p) for k, p in params.items()}
    bad["gain"][...] = np.nan  # in a companion key only
    skipper.update(params, bad)
    assert skipper.skipped_steps == 1 and skipper.step_count == 0 and skipper.companion.step_count == 0
    assert all(np.array_equal(params[k], before[k]) for k in params)


def test_no_companion_names_the_key_and_the_fix_and_changes_nothing():
    params = {"w": np.ones((3, 4)), "b": np.ones(3)}
    opt = M.Muon()
    with pytest.raises(ValueError, match=r"params\['b'\] has shape \(3,\).*companion=AdamW"):
        opt.update(params, {"w": np.ones((3, 4)), "b": np.ones(3)})
    assert opt.step_count == 0 and opt.state == {}
    assert np.array_equal(params["w"], np.ones((3, 4)))
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
    with pytest.raises(TypeError, match="companion_keys"):
        M.Muon(companion=ref_adam.AdamW(), companion_keys=3)
    with pytest.raises(TypeError, match="unknown hyperparameters"):
        M.Muon(beta=0.9)
    with pytest.raises(ValueError, match="adjust_lr_fn"):
        M.adjusted_lr(0.1, "rms", (3, 4))
    d = np.ones((3, 4))
    with pytest.raises(ValueError, match="ns_dtype"):
        M.newton_schulz(d, 12.0, ns_coefficients=M.DEFAULT_NS_COEFFICIENTS, ns_steps=5, eps=1e-7, ns_dtype="fp8")


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
