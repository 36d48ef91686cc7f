"""Search spaces and the Hyperband / successive-halving schedules: seeded
sampling, bounds under clipping and reflection, the bracket tables in
integer arithmetic, and bad input."""

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastadapt as fa
from fastadapt.tune.hyperband import int_log
from fastadapt.tune.pbt import quantile_size

T = fa.tune


# ---- domains -----------------------------------------------------------------
def test_sampling_is_seeded_and_in_bounds():
    space = {"lr": T.loguniform(1e-5, 1e-1), "batch_size": T.choice([16, 32, 64]),
             "momentum": T.uniform(0.0, 0.99), "layers": T.randint(1, 4), "hidden": 128}
    a = [T.sample_config(space, np.random.default_rng(7)) for _ in range(3)]
    b = [T.sample_config(space, np.random.default_rng(7)) for _ in range(3)]
    assert a == b
    rng = np.random.default_rng(0)
    configs = [T.sample_config(space, rng) for _ in range(2000)]
    lrs = np.array([c["lr"] for c in configs])
    assert lrs.min() >= 1e-5 and lrs.max() <= 1e-1
    # log-uniform: each decade about equally likely (4 decades, 500 expected per decade)
    counts = np.histogram(np.log10(lrs), bins=[-5, -4, -3, -2, -1])[0]
    assert counts.min() > 400
    assert {c["batch_size"] for c in configs} == {16, 32, 64}
    assert {c["layers"] for c in configs} == {1, 2, 3}  # randint excludes its upper bound
    assert all(0.0 <= c["momentum"] <= 0.99 and c["hidden"] == 128 for c in configs)


def test_partial_given_config_keeps_later_samples_unchanged():
    space = {"a": T.uniform(0, 1), "b": T.uniform(0, 1)}
    rng1, rng2 = np.random.default_rng(3), np.random.default_rng(3)
    first = T.sample_config(space, rng1, {"a": 0.5})
    T.sample_config(space, rng2)
    assert first["a"] == 0.5
    assert T.sample_config(space, rng1) == T.sample_config(space, rng2)
    with pytest.raises(ValueError, match=r"config\['a'\] = 2 is outside its domain uniform\(0.0, 1.0\)"):
        T.sample_config(space, rng1, {"a": 2})
    with pytest.raises(ValueError, match="keys \\['c'\\] that the space does not define"):
        T.sample_config(space, rng1, {"c": 1})


@pytest.mark.parametrize("domain, outside, clipped, reflected", [
    (T.uniform(0.0, 1.0), 1.25, 1.0, 0.75),
    (T.uniform(0.0, 1.0), -0.5, 0.0, 0.5),
    (T.uniform(0.0, 1.0), 7.0, 1.0, 0.0),             # overshoot wider than the interval: clipped after reflecting
    (T.loguniform(1e-4, 1e-2), 1e-1, 1e-2, 1e-3),     # reflection in log space
    (T.randint(0, 10), 12, 9, 6),
    (T.randint(0, 10), -3, 0, 3),
])
def test_project_clips_or_reflects_into_bounds(domain, outside, clipped, reflected):
    assert domain.project(outside, "clip") == pytest.approx(clipped)
    assert domain.project(outside, "reflect") == pytest.approx(reflected)
    assert domain.contains(domain.project(outside, "clip"))
    assert domain.contains(domain.project(outside, "reflect"))


def test_categorical_perturb_moves_to_a_neighbour():
    domain = T.choice([16, 32, 64, 128])
    rng = np.random.default_rng(0)
    assert {domain.perturb(16, 1.2, rng) for _ in range(50)} == {32}        # an end has one neighbour
    assert {domain.perturb(32, 1.2, rng) for _ in range(50)} == {16, 64}
    assert T.choice(["only"]).perturb("only", 1.2, rng) == "only"


def test_integer_perturb_always_moves_unless_at_a_bound():
    domain = T.randint(0, 100)
    rng = np.random.default_rng(0)
    assert domain.perturb(0, 1.2, rng) == 1        # 0 * 1.2 rounds to 0: stepped by one instead
    assert domain.perturb(2, 0.8, rng) == 1
    assert domain.perturb(50, 1.2, rng) == 60
    assert domain.perturb(99, 1.2, rng) == 99      # clipped at the top


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["uniform", "loguniform", "randint", "choice"]), st.floats(0.01, 100.0),
       st.sampled_from(["clip", "reflect"]), st.integers(0, 2 ** 32 - 1))
def test_perturbation_never_leaves_the_bounds(kind, factor, boundary, seed):
    domain = {"uniform": T.uniform(-1.0, 2.0), "loguniform": T.loguniform(1e-4, 1e-1),
              "randint": T.randint(2, 9), "choice": T.choice([1, 2, 3])}[kind]
    rng = np.random.default_rng(seed)
    value = domain.sample(rng)
    for _ in range(5):
        value = domain.perturb(value, factor, rng, boundary)
        assert domain.contains(value), (domain, value)


@pytest.mark.parametrize("build, error, match", [
    (lambda: T.uniform(1.0, 1.0), ValueError, "low must be < high"),
    (lambda: T.uniform(0.0, float("inf")), ValueError, "high=inf must be finite"),
    (lambda: T.uniform("0", 1), TypeError, "low='0' must be a real number"),
    (lambda: T.loguniform(0.0, 1.0), ValueError, "loguniform needs low > 0.*use uniform"),
    (lambda: T.randint(1.5, 3), TypeError, "low=1.5 must be an integer"),
    (lambda: T.randint(3, 3), ValueError, "high is excluded"),
    (lambda: T.choice([]), ValueError, "at least one value"),
    (lambda: T.choice("abc"), TypeError, "choice needs a list"),
    (lambda: T.uniform(0, 1).project(2, "wrap"), ValueError, "boundary must be 'clip' or 'reflect'"),
    (lambda: T.choice([1, 2]).perturb(3, 1.2, np.random.default_rng(0)), ValueError, "3 is not one of"),
])
def test_bad_domains_name_the_argument(build, error, match):
    with pytest.raises(error, match=match):
        build()


def test_bad_spaces_are_refused():
    with pytest.raises(TypeError, match="space must be a dict"):
        T.Hyperband(T.Trainable, [("lr", T.uniform(0, 1))], max_resource=9)
    with pytest.raises(ValueError, match="no domain to search"):
        T.Hyperband(T.Trainable, {"lr": 0.1}, max_resource=9)
    with pytest.raises(TypeError, match="space keys must be non-empty strings"):
        T.Hyperband(T.Trainable, {1: T.uniform(0, 1)}, max_resource=9)


# ---- schedules ---------------------------------------------------------------
def test_hyperband_schedule_matches_the_paper_table():
    # Li et al. 2018, Table 1 (R = 81, eta = 3).
    assert T.hyperband_schedule(81, 3) == [
        [(81, 1), (27, 3), (9, 9), (3, 27), (1, 81)],
        [(34, 3), (11, 9), (3, 27), (1, 81)],
        [(15, 9), (5, 27), (1, 81)],
        [(8, 27), (2, 81)],
        [(5, 81)],
    ]


def test_powers_where_a_float_logarithm_rounds_down():
    # The classic bug: int(math.log(243, 3)) == 4, which drops the s = 5 bracket.
    assert int(math.log(243, 3)) == 4
    brackets = T.hyperband_schedule(243, 3)
    assert len(brackets) == 6
    assert brackets[0] == [(243, 1), (81, 3), (27, 9), (9, 27), (3, 81), (1, 243)]
    assert brackets[-1] == [(6, 243)]
    for base, exponent in [(3, 5), (10, 3), (5, 3), (2, 29), (7, 20)]:
        assert int_log(base ** exponent, base) == exponent
        assert int_log(base ** exponent - 1, base) == exponent - 1


def _reference_schedule(R, eta):
    """Algorithm 1 with exact rationals: s_max by search, r_i = R eta^(i-s) floored."""
    s_max = max(s for s in range(64) if eta ** s <= R)
    B = (s_max + 1) * R
    out = []
    for s in range(s_max, -1, -1):
        n = math.ceil(Fraction(B, R) * Fraction(eta ** s, s + 1))
        r = Fraction(R, eta ** s)
        out.append([(math.floor(n * Fraction(1, eta ** i)), math.floor(r * eta ** i)) for i in range(s + 1)])
    return out


@pytest.mark.parametrize("R, eta", [(1, 2), (2, 2), (8, 2), (9, 3), (27, 3), (100, 3), (243, 3), (729, 3),
                                    (1000, 10), (64, 4), (125, 5), (81, 9), (50, 7)])
def test_hyperband_schedule_for_several_settings(R, eta):
    brackets = T.hyperband_schedule(R, eta)
    assert brackets == _reference_schedule(R, eta)
    for bracket in brackets:
        assert bracket[-1][1] == R                     # every bracket ends at the full resource
        assert all(n >= 1 for n, _ in bracket)
        assert [r for _, r in bracket] == sorted(set(r for _, r in bracket))


def test_successive_halving_schedule():
    assert T.successive_halving_schedule(27, 1, 27, 3) == [(27, 1), (9, 3), (3, 9), (1, 27)]
    assert T.successive_halving_schedule(30, 2, 100, 3) == [(30, 3), (10, 11), (3, 33), (1, 100)]
    with pytest.raises(ValueError, match="num_trials=5 is too few for 4 rungs.*num_trials >= 27"):
        T.successive_halving_schedule(5, 1, 27, 3)
    with pytest.raises(ValueError, match="min_resource \\(30\\) must be <= max_resource \\(27\\)"):
        T.successive_halving_schedule(27, 30, 27, 3)


@pytest.mark.parametrize("args, error, match", [
    ((81.0, 3), TypeError, "max_resource=81.0 must be an integer"),
    ((0, 3), ValueError, "max_resource=0 must be >= 1"),
    ((81, 1), ValueError, "eta=1 must be >= 2"),
    ((81, True), TypeError, "eta=True must be an integer"),
])
def test_hyperband_schedule_bad_input(args, error, match):
    with pytest.raises(error, match=match):
        T.hyperband_schedule(*args)


@pytest.mark.parametrize("population, quantile, expected", [
    (10, 0.3, 3),      # 10 * 0.3 == 3.0000000000000004 in floats: a float ceil says 4
    (10, 0.1, 1),
    (8, 0.25, 2),
    (2, 0.25, 1),      # the paper's toy: the worse of two copies the better
    (5, 0.5, 2),       # at most half: top and bottom never overlap
    (3, 0.2, 1),
])
def test_pbt_quantile_size(population, quantile, expected):
    assert quantile_size(population, quantile) == expected
