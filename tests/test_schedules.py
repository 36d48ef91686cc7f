"""Schedules against their closed forms, at the boundaries (step 0, end of
warmup, end of a cycle, restarts), and bad arguments named in the error."""

import math
import pickle

import numpy as np
import pytest

from fastadapt import schedules as S


def values(schedule, steps):
    return [schedule(k) for k in steps]


def test_constant_and_linear():
    assert values(S.constant(3e-4), [0, 1, 10**9]) == [3e-4] * 3
    ramp = S.linear(0.0, 1.0, 4)
    assert values(ramp, range(7)) == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    down = S.linear(1.0, 0.2, 8)
    assert down(0) == 1.0 and down(8) == pytest.approx(0.2) and down(4) == pytest.approx(0.6)


def test_linear_warmup_is_the_seeds_rule():
    w, base = 10, 1e-3
    warm = S.linear_warmup(base, w)
    for k in range(w):
        assert warm(k) == base * (k + 1) / w
    assert warm(0) == base / w          # never 0 at step 0
    assert warm(w - 1) == base          # end of warmup
    assert values(warm, [w, w + 1, 10 * w]) == [base] * 3
    assert S.linear_warmup(base, 0)(0) == base


def test_linear_warmup_into_a_schedule_is_shifted():
    inner = S.exponential(0.1, 0.5)
    warm = S.linear_warmup(inner, 4)
    assert values(warm, range(4)) == [0.1 * (k + 1) / 4 for k in range(4)]
    assert values(warm, [4, 5, 6]) == [0.1, 0.05, 0.025]


def test_step_and_exponential_decay():
    sd = S.step_decay(0.1, step_size=3, gamma=0.5)
    assert values(sd, range(8)) == [0.1 * 0.5 ** (k // 3) for k in range(8)]
    assert sd(2) == 0.1 and sd(3) == 0.05 and sd(6) == 0.025
    ex = S.exponential(2.0, 0.9)
    assert values(ex, [0, 1, 2, 50]) == [2.0 * 0.9 ** k for k in [0, 1, 2, 50]]


def test_cosine_closed_form_and_boundaries():
    base, end, total = 1.0, 0.1, 100
    cos = S.cosine(base, total, end=end)
    for k in (0, 1, 25, 50, 99, 100, 150):
        assert cos(k) == pytest.approx(end + (base - end) * (1 + math.cos(math.pi * min(k, total) / total)) / 2,
                                       rel=1e-15, abs=1e-15)
    assert cos(0) == base and cos(50) == pytest.approx((base + end) / 2) and cos(total) == end and cos(10**6) == end


def test_cosine_with_warmup():
    base, total, w = 1e-3, 1000, 100
    sched = S.cosine(base, total, warmup_steps=w)
    assert sched(0) == base / w
    assert sched(w - 1) == base and sched(w) == base     # end of warmup, start of the decay
    t = total - w
    for k in (w + 1, w + 450, total - 1):
        assert sched(k) == pytest.approx(base * (1 + math.cos(math.pi * (k - w) / t)) / 2, rel=1e-14, abs=1e-18)
    assert sched(total) == 0.0


def test_cosine_restarts_fixed_period():
    base, end, t0 = 1.0, 0.0, 10
    sgdr = S.cosine_restarts(base, t0, end=end)
    for k in range(35):
        t = k % t0
        assert sgdr(k) == pytest.approx(end + (base - end) * (1 + math.cos(math.pi * t / t0)) / 2, abs=1e-15)
    assert sgdr(9) < 0.03 and sgdr(10) == base and sgdr(20) == base    # restarts jump back to base


def test_cosine_restarts_growing_periods_and_decay():
    sgdr = S.cosine_restarts(0.1, first_period=4, period_mult=2, end=0.01, cycle_decay=0.5)
    # cycles: [0, 4) period 4, [4, 12) period 8, [12, 28) period 16
    starts, periods = [0, 4, 12, 28], [4, 8, 16, 32]
    for i, (s, p) in enumerate(zip(starts, periods)):
        peak = 0.1 * 0.5 ** i
        assert sgdr(s) == pytest.approx(peak)
        for t in (1, p // 2, p - 1):
            assert sgdr(s + t) == pytest.approx(0.01 + (peak - 0.01) * (1 + math.cos(math.pi * t / p)) / 2)
    warm = S.cosine_restarts(0.1, first_period=4, warmup_steps=3)
    assert values(warm, [0, 2, 3, 7]) == pytest.approx([0.1 / 3, 0.1, 0.1, 0.1], rel=1e-15)   # restart at 3 + 4


def _torch_one_cycle(k, total, max_lr, pct, div, final_div, three_phase=False):
    """torch.optim.lr_scheduler.OneCycleLR's phases, written out for the test."""
    initial = max_lr / div
    low = initial / final_div
    phases = ([(pct * total - 1, initial, max_lr), (2 * pct * total - 2, max_lr, initial), (total - 1, initial, low)]
              if three_phase else [(pct * total - 1, initial, max_lr), (total - 1, max_lr, low)])
    start = 0.0
    for i, (end_step, a, b) in enumerate(phases):
        if k <= end_step or i == len(phases) - 1:
            pct_done = (k - start) / (end_step - start)
            return b + (a - b) / 2 * (math.cos(math.pi * pct_done) + 1)
        start = end_step


@pytest.mark.parametrize("three_phase", [False, True])
def test_one_cycle_matches_torch_phases(three_phase):
    total, peak = 100, 0.01
    sched = S.one_cycle(peak, total, pct_start=0.25, three_phase=three_phase)
    for k in range(total):
        assert sched(k) == pytest.approx(_torch_one_cycle(k, total, peak, 0.25, 25.0, 1e4, three_phase), rel=1e-12)
    assert sched(0) == pytest.approx(peak / 25)
    assert sched(24) == pytest.approx(peak)                  # end of the rise: pct_start * total - 1
    assert sched(total - 1) == pytest.approx(peak / 25 / 1e4)  # end of the cycle
    assert sched(total + 50) == sched(total - 1)              # held afterwards
    if three_phase:
        assert sched(48) == pytest.approx(peak / 25)


def test_one_cycle_momentum_mirrors_the_lr():
    total, up_end = 50, 9                       # pct_start * total - 1
    lr = S.one_cycle(1.0, total, pct_start=0.2, anneal="linear")
    mom = S.one_cycle_momentum(total, pct_start=0.2, base_momentum=0.8, max_momentum=0.9, anneal="linear")
    initial, final = 1.0 / 25, 1.0 / 25 / 1e4
    for k in range(total):
        if k <= up_end:
            frac = k / up_end
            assert lr(k) == pytest.approx(initial + (1.0 - initial) * frac)
            assert mom(k) == pytest.approx(0.9 - 0.1 * frac)
        else:
            frac = (k - up_end) / (total - 1 - up_end)
            assert lr(k) == pytest.approx(1.0 + (final - 1.0) * frac)
            assert mom(k) == pytest.approx(0.8 + 0.1 * frac)
    assert mom(0) == 0.9 and mom(up_end) == pytest.approx(0.8) and mom(total - 1) == pytest.approx(0.9)


@pytest.mark.parametrize("mode", ["triangular", "triangular2", "exp_range"])
def test_cyclic_closed_form(mode):
    base, high, up, down, gamma = 0.1, 1.0, 4, 6, 0.99
    cyc = S.cyclic(base, high, up, step_size_down=down, mode=mode, gamma=gamma)
    for k in range(40):
        p = k % (up + down)
        frac = p / up if p <= up else (up + down - p) / down
        scale = {"triangular": 1.0, "triangular2": 0.5 ** (k // (up + down)), "exp_range": gamma ** k}[mode]
        assert cyc(k) == pytest.approx(base + (high - base) * frac * scale, rel=1e-14)
    assert cyc(0) == base and cyc(10) == base              # start and end of a cycle
    if mode == "triangular":
        assert cyc(4) == high and cyc(14) == high
    if mode == "triangular2":
        assert cyc(14) == pytest.approx(base + (high - base) / 2)


def test_cyclic_symmetric_default_and_inverse():
    cyc = S.cyclic(1e-4, 1e-2, step_size=2000)
    assert cyc(0) == 1e-4 and cyc(2000) == 1e-2 and cyc(4000) == 1e-4 and cyc(1000) == pytest.approx(5.05e-3)
    inverse = S.cyclic(0.95, 0.85, step_size=10)   # momentum: falls while the lr rises
    assert inverse(0) == 0.95 and inverse(10) == pytest.approx(0.85)


def test_piecewise_constant_switches_at_the_boundary():
    pc = S.piecewise_constant([10, 20], [1.0, 0.1, 0.01])
    assert values(pc, [0, 9, 10, 19, 20, 1000]) == [1.0, 1.0, 0.1, 0.1, 0.01, 0.01]
    assert S.piecewise_constant([], [5.0])(123) == 5.0


def test_join_shifts_each_schedule_to_its_start():
    joined = S.join([S.linear(0.0, 1.0, 10), S.exponential(1.0, 0.5), S.constant(7.0)], boundaries=[10, 13])
    assert values(joined, [0, 5, 9]) == [0.0, 0.5, 0.9]
    assert values(joined, [10, 11, 12]) == [1.0, 0.5, 0.25]    # exponential sees steps 0, 1, 2
    assert values(joined, [13, 100]) == [7.0, 7.0]
    with_lambda = S.join([lambda k: 2.0 * k, S.constant(1.0)], [3])
    assert values(with_lambda, [0, 2, 3]) == [0.0, 4.0, 1.0]


def test_repr_and_pickle_round_trip():
    sched = S.join([S.linear_warmup(1e-3, 5), S.cosine(1e-3, 100)], boundaries=[5])
    assert repr(sched) == ("join(schedules=[linear_warmup(target=0.001, warmup_steps=5), "
                           "cosine(base=0.001, total_steps=100, end=0.0, warmup_steps=0)], boundaries=[5])")
    again = pickle.loads(pickle.dumps(sched))
    assert repr(again) == repr(sched) and values(again, range(0, 120, 7)) == values(sched, range(0, 120, 7))
    assert isinstance(S.one_cycle(1.0, 10), S.Schedule)


def test_pickles_name_the_path_they_always_named():
    # S.linear(0.0, 1.0, 4) pickled (protocol 2) by the flat layout, when the schedules were one module:
    # a pickle names fastadapt.schedules._rebuild, and one from then still loads.
    old = (b"\x80\x02cfastadapt.schedules\n_rebuild\nq\x00X\x06\x00\x00\x00linearq\x01}q\x02(X\x05\x00\x00\x00"
           b"startq\x03G\x00\x00\x00\x00\x00\x00\x00\x00X\x03\x00\x00\x00endq\x04G?\xf0\x00\x00\x00\x00\x00\x00"
           b"X\x0b\x00\x00\x00total_stepsq\x05K\x04u\x86q\x06Rq\x07.")
    assert values(pickle.loads(old), range(6)) == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    assert pickle.dumps(S.linear(0.0, 1.0, 4), protocol=2) == old  # and pickles written now are the same bytes
    with pytest.raises(ValueError, match="no schedule named 'Schedule'"):
        pickle.loads(old.replace(b"\x06\x00\x00\x00linear", b"\x08\x00\x00\x00Schedule"))


def test_step_argument_is_checked():
    sched = S.constant(1.0)
    with pytest.raises(ValueError, match=r"step=-1 must be >= 0"):
        sched(-1)
    with pytest.raises(TypeError, match="step must be an integer"):
        sched(1.5)
    assert sched(np.int64(3)) == 1.0


@pytest.mark.parametrize("build, error, message", [
    (lambda: S.linear_warmup(1e-3, -1), ValueError, r"warmup_steps=-1 must be >= 0"),
    (lambda: S.linear_warmup(1e-3, 2.5), TypeError, r"warmup_steps=2.5 must be an integer"),
    (lambda: S.constant(float("nan")), ValueError, r"value=nan must be finite"),
    (lambda: S.constant("0.1"), TypeError, r"value='0.1' must be a real number"),
    (lambda: S.linear(0.0, 1.0, 0), ValueError, r"total_steps=0 must be >= 1"),
    (lambda: S.step_decay(0.1, 0), ValueError, r"step_size=0 must be >= 1"),
    (lambda: S.step_decay(0.1, 10, gamma=0.0), ValueError, r"gamma=0.0 must be > 0"),
    (lambda: S.exponential(0.1, -0.5), ValueError, r"gamma=-0.5 must be > 0"),
    (lambda: S.cosine(1e-3, 100, warmup_steps=100), ValueError, r"total_steps=100 must be > warmup_steps=100"),
    (lambda: S.cosine_restarts(0.1, 0), ValueError, r"first_period=0 must be >= 1"),
    (lambda: S.cosine_restarts(0.1, 10, period_mult=1.5), TypeError, r"period_mult=1.5 must be an integer"),
    (lambda: S.cosine_restarts(0.1, 10, cycle_decay=0), ValueError, r"cycle_decay=0 must be > 0"),
    (lambda: S.one_cycle(0.1, 1), ValueError, r"total_steps=1 must be >= 2"),
    (lambda: S.one_cycle(0.1, 100, pct_start=1.0), ValueError, r"pct_start=1.0 must be in \(0, 1\)"),
    (lambda: S.one_cycle(0.1, 10, pct_start=0.05), ValueError, r"pct_start=0.05 .* rising phase empty"),
    (lambda: S.one_cycle(0.1, 100, pct_start=0.6, three_phase=True), ValueError, r"pct_start=0.6 .* phase empty"),
    (lambda: S.one_cycle(0.1, 100, anneal="cosine"), ValueError, r"anneal='cosine' must be one of 'cos', 'linear'"),
    (lambda: S.one_cycle(0.1, 100, div_factor=0), ValueError, r"div_factor=0 must be > 0"),
    (lambda: S.one_cycle_momentum(100, base_momentum=0.95, max_momentum=0.85), ValueError,
     r"base_momentum=0.95 must be <= max_momentum=0.85"),
    (lambda: S.cyclic(0.1, 1.0, 0), ValueError, r"step_size=0 must be >= 1"),
    (lambda: S.cyclic(0.1, 1.0, 5, mode="triangle"), ValueError, r"mode='triangle' must be one of"),
    (lambda: S.piecewise_constant([10, 10], [1, 2, 3]), ValueError, r"boundaries=\[10, 10\] must be strictly"),
    (lambda: S.piecewise_constant([0], [1, 2]), ValueError, r"boundaries\[0\]=0 must be >= 1"),
    (lambda: S.piecewise_constant([10], [1.0]), ValueError, r"values has 1 entries; with 1 boundaries it needs 2"),
    (lambda: S.join([S.constant(1.0)], [5]), ValueError, r"schedules has 1 entries; with 1 boundaries it needs 2"),
    (lambda: S.join([S.constant(1.0), 0.5], [5]), TypeError, r"schedules\[1\]=0.5 must be a schedule"),
])
def test_bad_arguments_are_named(build, error, message):
    with pytest.raises(error, match=message):
        build()
