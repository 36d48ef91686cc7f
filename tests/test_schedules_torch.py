"""The schedules added for issue 12 (polynomial, inverse_time, warmups from a
start value) and join's step counting, checked numerically against torch's
schedulers (skipped without torch) and against the published formulas of
Hugging Face, optax and Keras (optax only if installed)."""

import math
import pickle
import warnings

import numpy as np
import pytest

import fastadapt as fa
from fastadapt import schedules as S

TOL = 1e-12   # relative: torch steps most of its lrs recursively (lr_k = lr_{k-1} * f), a few ulps off


def torch_lrs(base, make, steps):
    """The lr torch's scheduler gives at steps 0..steps (one param group)."""
    torch = pytest.importorskip("torch")
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sched = make(torch.optim.lr_scheduler, opt)
        out = [opt.param_groups[0]["lr"]]
        for _ in range(steps):
            opt.step()
            sched.step()
            out.append(opt.param_groups[0]["lr"])
    return np.array(out)


def ours(schedule, steps):
    return np.array([schedule(k) for k in range(steps + 1)])


def close(a, b, scale):
    return np.max(np.abs(a - b)) <= TOL * scale


# ---- polynomial -------------------------------------------------------------------------

@pytest.mark.parametrize("power", [1.0, 0.9, 2.0, 0.5])
def test_polynomial_is_torchs_polynomial_lr(power):
    base, total = 0.05, 30
    got = ours(S.polynomial(base, total, power=power), total + 10)     # torch holds 0 after total_iters too
    want = torch_lrs(base, lambda L, o: L.PolynomialLR(o, total_iters=total, power=power), total + 10)
    assert close(got, want, base)
    assert got[0] == base and got[total] == 0.0 and got[-1] == 0.0


def optax_polynomial(init_value, end_value, power, transition_steps, count):
    """optax.polynomial_schedule's definition (transition_begin=0), written out."""
    count = min(max(count, 0), transition_steps)
    return (init_value - end_value) * (1 - count / transition_steps) ** power + end_value


def test_polynomial_with_an_end_is_optaxs_polynomial_schedule():
    sched = S.polynomial(1.0, 20, power=3.0, end=0.1)
    for k in range(30):
        assert sched(k) == pytest.approx(optax_polynomial(1.0, 0.1, 3.0, 20, k), rel=1e-15, abs=1e-16)
    assert sched(20) == 0.1 and sched(100) == 0.1


def test_polynomial_against_optax_if_installed():
    optax = pytest.importorskip("optax")
    sched = S.polynomial(1.0, 20, power=3.0, end=0.1)
    ref = optax.polynomial_schedule(init_value=1.0, end_value=0.1, power=3.0, transition_steps=20)
    assert np.allclose([sched(k) for k in range(30)], [float(ref(k)) for k in range(30)], rtol=1e-6)


# ---- inverse_time -----------------------------------------------------------------------

def keras_inverse_time(initial, decay_steps, decay_rate, staircase, step):
    """keras.optimizers.schedules.InverseTimeDecay's definition, written out."""
    p = step / decay_steps
    if staircase:
        p = math.floor(p)
    return initial / (1 + decay_rate * p)


@pytest.mark.parametrize("staircase", [False, True])
def test_inverse_time_is_keras_inverse_time_decay(staircase):
    sched = S.inverse_time(0.1, decay_rate=0.5, decay_steps=7, staircase=staircase)
    for k in range(60):
        assert sched(k) == keras_inverse_time(0.1, 7, 0.5, staircase, k)
    assert S.inverse_time(0.1, 0.5, 100)(200) == pytest.approx(0.05)


def test_inverse_time_is_torch_adagrads_lr_decay():
    # torch's Adagrad steps with lr / (1 + (t - 1) * lr_decay): the same run as
    # lr_decay=0 with the lr scheduled by inverse_time(lr, lr_decay), applied before update t = k + 1.
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    target = rng.standard_normal(6)
    p0 = rng.standard_normal(6)
    lr, decay = 0.3, 0.2
    tp = torch.nn.Parameter(torch.tensor(p0.copy()))
    topt = torch.optim.Adagrad([tp], lr=lr, lr_decay=decay)
    params = {"w": p0.copy()}
    opt = fa.Adagrad(lr=lr, lr_decay=0.0)
    sched = fa.Scheduler(opt, lr=S.inverse_time(lr, decay_rate=decay))
    for _ in range(25):
        tp.grad = tp.detach() - torch.tensor(target)
        topt.step()
        opt.update(params, {"w": params["w"] - target})
        sched.step()
    diff = np.max(np.abs(params["w"] - tp.detach().numpy()))
    assert diff < 1e-12, diff


# ---- warmups from a start value (optax / Hugging Face) ------------------------------------

@pytest.mark.parametrize("start_factor", [0.1, 0.5])
def test_warmup_start_is_torchs_linear_lr(start_factor):
    base, w = 0.2, 8
    got = ours(S.linear_warmup(base, w, warmup_start=start_factor * base), w + 5)
    want = torch_lrs(base, lambda L, o: L.LinearLR(o, start_factor=start_factor, total_iters=w), w + 5)
    assert close(got, want, base)
    assert got[0] == start_factor * base and got[w] == base


def hf_linear_warmup(w):
    return lambda k: k / max(1, w) if k < w else 1.0


def hf_cosine_with_warmup(w, total, cycles=0.5):
    """transformers.get_cosine_schedule_with_warmup's lambda, written out."""
    def f(k):
        if k < w:
            return k / max(1, w)
        progress = (k - w) / max(1, total - w)
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * cycles * 2.0 * progress)))
    return f


def test_warmup_from_zero_is_hugging_faces():
    base, w, total = 3e-4, 10, 100
    warm = S.linear_warmup(base, w, warmup_start=0.0)
    got = ours(warm, 30)
    want = torch_lrs(base, lambda L, o: L.LambdaLR(o, hf_linear_warmup(w)), 30)
    assert close(got, want, base) and got[0] == 0.0 and got[w] == base
    cos = S.cosine(base, total, warmup_steps=w, warmup_start=0.0)
    got = ours(cos, total)
    want = torch_lrs(base, lambda L, o: L.LambdaLR(o, hf_cosine_with_warmup(w, total)), total)
    assert close(got, want, base) and got[0] == 0.0 and got[w] == base and got[total] == 0.0


def test_cosine_restarts_warmup_start():
    sched = S.cosine_restarts(0.1, first_period=4, warmup_steps=2, warmup_start=0.0)
    assert [sched(k) for k in range(3)] == [0.0, 0.05, 0.1] and sched(6) == 0.1


def test_the_seeds_warmup_is_still_the_default():
    assert S.linear_warmup(1.0, 4)(0) == 0.25 and S.cosine(1.0, 10, warmup_steps=4)(3) == 1.0


# ---- join counts steps as torch's SequentialLR -----------------------------------------------

@pytest.mark.parametrize("case", ["warmup-cosine", "three-parts"])
def test_join_is_torchs_sequential_lr(case):
    base = 0.4
    if case == "warmup-cosine":
        sched = S.join([S.linear_warmup(base, 5, warmup_start=0.2 * base), S.cosine(base, 15)], [5])

        def make(L, o):
            return L.SequentialLR(o, [L.LinearLR(o, start_factor=0.2, total_iters=5),
                                      L.CosineAnnealingLR(o, T_max=15)], milestones=[5])
        steps = 20
    else:
        sched = S.join([S.constant(0.5 * base), S.exponential(base, 0.7), S.step_decay(base, 2, 0.5)], [3, 7])

        def make(L, o):
            return L.SequentialLR(o, [L.ConstantLR(o, factor=0.5, total_iters=3), L.ExponentialLR(o, gamma=0.7),
                                      L.StepLR(o, step_size=2, gamma=0.5)], milestones=[3, 7])
        steps = 15
    got, want = ours(sched, steps), torch_lrs(base, make, steps)
    assert close(got, want, base), np.max(np.abs(got - want))


# ---- arguments, repr, pickle ------------------------------------------------------------

@pytest.mark.parametrize("build, error, message", [
    (lambda: S.polynomial(0.1, 0), ValueError, r"total_steps=0 must be >= 1"),
    (lambda: S.polynomial(0.1, 10, power=0.0), ValueError, r"power=0.0 must be > 0"),
    (lambda: S.polynomial(0.1, 10, end="0"), TypeError, r"end='0' must be a real number"),
    (lambda: S.inverse_time(0.1, -1.0), ValueError, r"decay_rate=-1.0 must be >= 0"),
    (lambda: S.inverse_time(0.1, 0.5, decay_steps=0), ValueError, r"decay_steps=0 must be > 0"),
    (lambda: S.inverse_time(0.1, 0.5, staircase=1), TypeError, r"staircase"),
    (lambda: S.linear_warmup(0.1, 5, warmup_start=float("nan")), ValueError, r"warmup_start=nan must be finite"),
    (lambda: S.cosine(0.1, 10, warmup_steps=2, warmup_start="0"), TypeError, r"warmup_start='0' must be a real"),
    (lambda: S.cosine_restarts(0.1, 10, warmup_start=[0]), TypeError, r"warmup_start=\[0\] must be a real"),
])
def test_bad_arguments_are_named(build, error, message):
    with pytest.raises(error, match=message):
        build()


def test_repr_and_pickle_of_the_new_schedules():
    for sched in [S.polynomial(0.1, 10, power=2.0, end=0.01), S.inverse_time(0.1, 0.5, 10, staircase=True),
                  S.linear_warmup(0.1, 5, warmup_start=0.0), S.cosine(0.1, 50, warmup_steps=5, warmup_start=0.01)]:
        again = pickle.loads(pickle.dumps(sched))
        assert repr(again) == repr(sched) and [again(k) for k in range(60)] == [sched(k) for k in range(60)]
    assert repr(S.linear_warmup(0.1, 5, warmup_start=0.0)) == "linear_warmup(target=0.1, warmup_steps=5, " \
                                                              "warmup_start=0.0)"
    assert repr(S.linear_warmup(0.1, 5)) == "linear_warmup(target=0.1, warmup_steps=5)"    # unchanged
