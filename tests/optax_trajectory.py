"""Trajectories shared by the rule tests that compare fastadapt with optax
(Lion, LAMB, LARS): the same parameters, gradients that depend on the
parameters (``g = 0.5 * p + noise``, so an early difference grows instead of
washing out), hyperparameters changed between steps; optax runs in float64
(``jax_enable_x64``) through ``optax.inject_hyperparams``."""

import contextlib

import numpy as np
import pytest

from fastadapt.reference._common import ReferenceOptimizer

from rule_parity import patch_per_key

# 1-D, 2-D and 3-D tensors of odd sizes, one element, and a 0-d scalar.
SHAPES = {"w": (7, 13), "b": (13,), "v": (129,), "one": (1,), "t": (3, 4, 5), "s": ()}

# Our hyperparameter names -> optax's.
OPTAX_NAMES = {"lr": "learning_rate"}


def make_problem(seed, steps, shapes=SHAPES):
    rng = np.random.default_rng(seed)
    params = {k: rng.standard_normal(s) for k, s in shapes.items()}
    noise = [{k: rng.standard_normal(s) for k, s in shapes.items()} for _ in range(steps)]
    return params, noise


def grads_of(params, noise):
    return {k: np.asarray(0.5 * np.asarray(p) + noise[k]) for k, p in params.items()}   # 0-d stays an array


def rel_close(a, b, rel=1e-12):
    """max |a - b| <= rel * max |b| (both finite)."""
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape
    assert np.all(np.isfinite(a)) and np.all(np.isfinite(b))
    scale = float(np.max(np.abs(b))) if b.size else 0.0
    return float(np.max(np.abs(a - b))) <= rel * scale if b.size else True


def build(cls, hyper, per_key=None):
    """fa.<Rule> (``per_key`` as its overrides) or its fastadapt.reference
    twin (``per_key`` applied around each tensor's rule call)."""
    if not per_key:
        return cls(**hyper)
    if issubclass(cls, ReferenceOptimizer):
        return patch_per_key(cls(**hyper), per_key)
    return cls(**hyper, overrides=per_key)


def run_trajectory(opt, params, noise, changes=None, negate=False):
    """Runs a fastadapt optimizer (fa.<Rule> or its reference twin) on a copy
    of ``params`` (float64); ``changes[k]``: attributes set before step k;
    ``negate``: the gradients negated."""
    params = {k: np.array(v, dtype=np.float64) for k, v in params.items()}
    for k, nz in enumerate(noise):
        for n, v in (changes or {}).get(k, {}).items():
            setattr(opt, n, v)
        g = grads_of(params, nz)
        opt.update(params, {key: -x for key, x in g.items()} if negate else g)
    return params


def _translate(hyper):
    out = {}
    for n, v in hyper.items():
        if n == "betas":
            out["b1"], out["b2"] = v
        else:
            out[OPTAX_NAMES.get(n, n)] = v
    return out


def find_state(state, field):
    """The first ``field`` of a (nested) optax state, e.g. ``mu`` or ``trace``."""
    if hasattr(state, field):
        return getattr(state, field)
    if isinstance(state, tuple):
        for s in state:
            found = find_state(s, field)
            if found is not None:
                return found
    return None


@contextlib.contextmanager
def jax_float64():
    jax = pytest.importorskip("jax")
    before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        yield jax
    finally:
        jax.config.update("jax_enable_x64", before)


def optax_trajectory(make, hyper, params, noise, changes=None, static=None, fields=()):
    """Runs ``optax.inject_hyperparams(make)(**hyper, **static)`` in float64;
    ``hyper`` and ``changes`` use our names (lr, betas), ``static`` optax's
    (masks, nesterov). Returns the final params and the state ``fields``."""
    optax = pytest.importorskip("optax")
    with jax_float64() as jax:
        import jax.numpy as jnp

        opt = optax.inject_hyperparams(make)(**_translate(hyper), **(static or {}))
        p = {k: jnp.asarray(v, dtype=jnp.float64) for k, v in params.items()}
        state = opt.init(p)
        for k, nz in enumerate(noise):
            for n, v in _translate((changes or {}).get(k, {})).items():
                state.hyperparams[n] = jnp.asarray(v, dtype=jnp.float64)
            g = {key: jnp.asarray(x) for key, x in grads_of(p, nz).items()}
            updates, state = opt.update(g, state, p)
            p = optax.apply_updates(p, updates)
        assert all(x.dtype == jnp.float64 for x in jax.tree.leaves(p))
        out = {k: np.asarray(v) for k, v in p.items()}
        bufs = {f: {k: np.asarray(v) for k, v in find_state(state.inner_state, f).items()} for f in fields}
    return out, bufs


def zero_and_dead_tensors_follow_optax(opt, optax_rule, hyper, seed):
    """Six steps of ``opt`` (made with ``hyper``) and of ``optax_rule`` on a
    tensor that starts at 0 (||p|| = 0), one whose gradient is always 0
    (``grads_of`` gives 0.5 p + noise: the noise cancels it, so ||u|| = 0 and
    it never moves) and a live one: the same trajectory, the dead tensor
    bit for bit where it started."""
    rng = np.random.default_rng(seed)
    params = {"zero": np.zeros(9), "dead": rng.standard_normal(5), "live": rng.standard_normal(7)}
    noise = [{"zero": rng.standard_normal(9), "dead": -0.5 * params["dead"], "live": rng.standard_normal(7)}
             for _ in range(6)]
    ours = run_trajectory(opt, params, noise)
    theirs, _ = optax_trajectory(optax_rule, hyper, params, noise)
    assert ours["dead"].tobytes() == params["dead"].tobytes()
    for k in params:
        assert rel_close(ours[k], theirs[k]), k
