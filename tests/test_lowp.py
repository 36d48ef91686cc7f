"""Low precision (issue 18): bfloat16/float16 params and grads, bfloat16 and
8-bit block-quantized state, master weights and stochastic rounding.

The kernels' conversions are held to fastadapt.reference.lowp bit for bit on
every SIMD path; the reference's to ml_dtypes/NumPy (and the map to the
paper's definition); and every supported rule, run through the optimizer with
low-precision options, to the float32 NumPy reference run the kernels' way
(``reference.LowPrecision``) on every SIMD path and thread count, with
hyperparameters changed mid-run, clipping and non-finite gradients."""

from __future__ import annotations

import os

import numpy as np
import pytest

import fastadapt as fa
from fastadapt import _core
from fastadapt import reference as ref
from fastadapt.reference import lowp as L

from helpers import same_bits

ml_dtypes = pytest.importorskip("ml_dtypes")
BF16 = np.dtype(ml_dtypes.bfloat16)


EXT = _core._lowp_ext()  # the AVX-512 extensions this CPU lends the avx512 path's 8-bit loops


def isas():
    """Every SIMD path, and the avx512 one again without its extensions (as on
    a CPU with AVX-512F alone): "avx512-F"."""
    out = []
    for isa in _core.supported_isas():
        out.append(isa)
        if isa == "avx512" and EXT:
            out.append("avx512-F")
    return out


def set_path(isa):
    _core._lowp_ext(0 if isa.endswith("-F") else EXT)
    _core._set_simd(isa.removesuffix("-F"))


@pytest.fixture
def restore_isa():
    isa, threads, ext = _core.active_isa(), fa.get_num_threads(), _core._lowp_ext()
    yield
    _core._set_simd(isa)
    _core._lowp_ext(ext)
    fa.set_num_threads(threads)


def awkward(rng, n):
    """Values over 40 binades, with NaN, +-Inf, -0 and a block of zeros."""
    x = (rng.standard_normal(n) * np.exp(rng.uniform(-30, 5, n))).astype(np.float32)
    if n > 600:
        x[[5, 77]] = [np.nan, -np.nan]
        x[300:556] = 0.0       # a whole block of zeros (block 1 is 256..511: partly)
        x[512:768] = 0.0       # block 2 entirely
        x[[900, 901]] = [np.inf, -np.inf]
        x[999] = -0.0
    return x


# ---- the conversions ------------------------------------------------------------------------

@pytest.mark.parametrize("n", [0, 1, 15, 16, 17, 255, 256, 257, 1000, 4099])
def test_kernel_conversions_equal_the_reference_on_every_path(n, restore_isa):
    rng = np.random.default_rng(n)
    x = awkward(rng, n)
    for isa in isas():
        set_path(isa)
        for signed, arr in ((True, x), (False, np.abs(x))):
            codes, absmax = _core._quantize(arr, signed)
            rc, ra = L.quantize(arr, signed)
            assert np.array_equal(codes, rc), (isa, signed)
            assert same_bits(absmax, ra), (isa, signed)
            assert same_bits(_core._dequantize(codes, absmax, signed), L.dequantize(rc, ra, signed)), isa
        assert np.array_equal(_core._round_bf16(x), L.round_bf16(x)), isa
        for key, first in ((0, 0), (12345, 7), (0xFFFFFFFF, 2 ** 33 + 5)):
            assert np.array_equal(_core._round_bf16(x, key=key, first=first),
                                  L.round_bf16_stochastic(x, key, first)), (isa, key)


def test_codes_at_every_level_and_value_boundary_equal_the_reference(restore_isa):
    """The vector quantizers find the level another way (AVX-512: from the
    octave of a, cpp/core/lowp.hpp); a few ulps around every threshold, every
    power of two and every value and midpoint of the maps, under absmax 1 (a
    itself) and a scale that is not a power of two. (Every float32 in [0, 1]
    was checked once, offline.)"""
    for signed in (True, False):
        tables = _core._qmap(signed)
        mag = np.abs(tables["values"])
        edges = np.concatenate([tables["thr"], mag, (mag[1:] + mag[:-1]) / 2,
                                2.0 ** np.arange(-40, 1, dtype=np.float64)]).astype(np.float32)
        bits = edges.view(np.uint32)[:, None].astype(np.int64) + np.arange(-4, 5)
        a = np.unique(bits[(bits >= 0) & (bits <= 0x3F800000)].astype(np.uint32)).view(np.float32)
        a = np.concatenate([a, np.zeros(-a.size % 255, np.float32)]).reshape(-1, 255)
        for scale in (1.0, 3.0):
            x = np.concatenate([np.full((a.shape[0], 1), scale, np.float32), a * np.float32(scale)], axis=1).ravel()
            for arr in ((x, -x) if signed else (x,)):
                want = L.quantize(arr, signed)[0]
                for isa in isas():
                    set_path(isa)
                    assert np.array_equal(_core._quantize(arr, signed)[0], want), (isa, signed, scale)


@pytest.mark.skipif(not os.environ.get("FASTADAPT_EXHAUSTIVE"), reason="~1 min: set FASTADAPT_EXHAUSTIVE=1")
def test_every_float32_in_0_1_gets_the_scalar_paths_code_on_every_path(restore_isa):
    """The whole domain of the vector level searches: every a in [0, 1] (absmax
    1, so a is x itself), and -a, coded as the scalar path (the reference's
    own statement, test above) codes it."""
    top, per = 0x3F800000 + 1, 255 << 16
    for start in range(0, top, per):
        a = np.arange(start, min(start + per, top), dtype=np.uint32).view(np.float32)
        a = np.concatenate([a, np.zeros(-a.size % 255, np.float32)]).reshape(-1, 255)
        x = np.concatenate([np.ones((a.shape[0], 1), np.float32), a], axis=1).ravel()
        for signed, arr in ((True, x), (True, -x), (False, x)):
            set_path("baseline")
            want = _core._quantize(arr, signed)[0]
            for isa in isas():
                set_path(isa)
                assert np.array_equal(_core._quantize(arr, signed)[0], want), (isa, signed, start)


def test_blocks_of_zeros_and_subnormal_scales_equal_the_reference(restore_isa):
    """A zero block (inverse scale 0: the code of 0 throughout) and a block
    whose absmax is subnormal (its inverse is Inf: a = 0 * Inf is NaN)."""
    x = np.zeros(4 * 256, np.float32)
    x[256::3], x[257::7], x[258::11] = 1e-45, -1e-45, -0.0
    x[512:768] = x[256:512] * np.float32(3)
    x[768::5] = -0.0
    for signed, arr in ((True, x), (False, x), (False, np.abs(x))):
        want_c, want_a = L.quantize(arr, signed)
        for isa in isas():
            set_path(isa)
            codes, absmax = _core._quantize(arr, signed)
            assert np.array_equal(codes, want_c) and same_bits(absmax, want_a), (isa, signed)


def test_round_to_nearest_is_ml_dtypes_and_numpy():
    rng = np.random.default_rng(1)
    x = awkward(rng, 20000)
    # halfway cases: ties to even, both directions
    ties = (np.arange(1, 2000, dtype=np.uint32) << 16 | 0x8000).view(np.float32)
    x = np.concatenate([x, ties, -ties, np.array([3.4e38, 1e-40, -1e-45], np.float32)])
    finite = np.isfinite(x) | np.isinf(x)
    assert np.array_equal(L.round_bf16(x)[finite], x[finite].astype(BF16).view(np.uint16))
    assert np.isnan(L.round_bf16(x).view(BF16)[np.isnan(x)].astype(np.float32)).all()
    # float16 storage is NumPy's own conversion; the kernels' (vcvtps2ph / _Float16) agree
    p = {"w": x[np.isfinite(x)][:4096].astype(np.float16)}
    before = L.widen(p["w"])
    fa.SGD(lr=0.0).update(p, {"w": np.zeros(4096, np.float16)})
    assert np.array_equal(p["w"].view(np.uint16), before.astype(np.float16).view(np.uint16))


def test_the_maps_are_the_papers_dynamic_tree_maps():
    """bitsandbytes' create_dynamic_map (7 exponent levels, 8 bits), written
    from its definition in float64, equals ours to float32 rounding."""
    for signed in (True, False):
        values = L.dynamic_map(signed)
        tables = _core._qmap(signed)
        assert same_bits(values, tables["values"])
        for name, arr in L.map_tables(signed).items():
            assert same_bits(arr, tables[name]) if arr.dtype == np.float32 else np.array_equal(arr, tables[name]), name
        paper = [0.0, 1.0]
        for i in range(7):
            n = 2 ** i if signed else 2 ** (i + 1)
            edges = np.linspace(0.1, 1, n + 1)
            means = (edges[:-1] + edges[1:]) / 2 * 10.0 ** (i - 6)
            paper += list(means) + (list(-means) if signed else [])
        paper = np.sort(paper)
        assert values.size == 256 and paper.size == 256
        np.testing.assert_allclose(values, paper, rtol=2e-7, atol=0)
        assert np.all(np.diff(values) > 0) and values[-1] == 1.0
    values = L.dynamic_map(True)
    assert values[127] == 0 and np.array_equal(values[:127], -values[128:255][::-1])


def test_quantization_error_is_bounded_by_the_map_spacing():
    rng = np.random.default_rng(2)
    x = rng.standard_normal(1 << 16).astype(np.float32)
    codes, absmax = L.quantize(x, True)
    y = L.dequantize(codes, absmax, True)
    rel = np.abs(y - x) / np.repeat(absmax, L.QBLOCK)
    # within [0.1, 1] of absmax the signed map's spacing is 0.9/64: error at most half of it
    big = np.abs(x) >= 0.1 * np.repeat(absmax, L.QBLOCK)
    assert rel[big].max() <= 0.9 / 128 + 1e-6
    # each block's largest positive element is exact (the map has 1.0)
    blocks = x.reshape(-1, L.QBLOCK)
    top = blocks.argmax(axis=1)
    pos_max = blocks.max(axis=1) == np.abs(blocks).max(axis=1)
    rows = np.arange(blocks.shape[0])[pos_max]
    assert np.array_equal(y.reshape(-1, L.QBLOCK)[rows, top[pos_max]], blocks[rows, top[pos_max]])


def test_a_positive_second_moment_is_never_stored_as_zero(restore_isa):
    """The unsigned map rounds a tiny positive value up to its smallest non-zero
    value (Adam would step m / eps on a zero): found on a rarely active MNIST
    pixel, v / absmax ~ 1e-9 under a non-zero m."""
    x = np.zeros(300, np.float32)
    x[0], x[1:50] = 1.0, np.float32(1e-9) * np.arange(1, 50, dtype=np.float32)
    x[50] = np.float32(1e-45)  # (the smallest subnormal: positive too)
    for isa in isas():
        set_path(isa)
        codes, absmax = _core._quantize(x, False)
        assert np.all(codes[1:51] == 1) and np.all(codes[51:] == 0) and codes[0] == 255, isa
        assert np.array_equal(codes, L.quantize(x, False)[0])
    # the signed map (first moments) stays nearest: tiny values are 0
    assert np.all(L.quantize(np.concatenate([[1.0], -x[1:50]]).astype(np.float32), True)[0][1:] == 127)
    # through Adam: a rarely active input's weight does not jump
    rng = np.random.default_rng(9)
    p = {"w": rng.standard_normal(4096).astype(np.float32)}
    start = p["w"].copy()
    opt = fa.Adam(lr=1e-2, state_bits=8)
    for t in range(6):
        g = rng.standard_normal(4096).astype(np.float32)
        g[::256] = 1e-5 if t == 0 else 0.0   # one tiny gradient, then silence, in every block
        opt.update(p, {"w": g})
    assert np.max(np.abs(p["w"] - start)) < 10 * 1e-2 * 6


def test_stochastic_rounding_is_unbiased_and_seeded():
    x = np.full(1 << 16, 1.0 + 2 ** -10, dtype=np.float32)  # 1/8 of the way from 1 to the next bfloat16
    up = L.round_bf16_stochastic(x, key=L.rounding_key(7, 1, 0)).view(BF16).astype(np.float32)
    assert set(np.unique(up)) == {1.0, 1.0078125}
    assert abs(up.mean() - x[0]) < 3e-5  # unbiased: mean within ~4 sigma of the exact value
    again = L.round_bf16_stochastic(x, key=L.rounding_key(7, 1, 0))
    other = L.round_bf16_stochastic(x, key=L.rounding_key(8, 1, 0))
    assert np.array_equal(again.view(BF16).astype(np.float32), up) and not np.array_equal(again, other)


# ---- rules through the optimizer ------------------------------------------------------------

# fa name -> (reference class, hyperparameters); every rule of one element-wise pass
RULES = {
    "adam": (ref.Adam, dict(lr=1e-2, weight_decay=0.01)),
    "adamw": (ref.AdamW, dict(lr=1e-2, amsgrad=True)),
    "sgd": (ref.SGD, dict(lr=1e-2, momentum=0.9, nesterov=True)),
    "rmsprop": (ref.RMSProp, dict(lr=1e-3, centered=True, momentum=0.5)),
    "adagrad": (ref.AdaGrad, dict(lr=1e-2, initial_accumulator_value=0.1)),
    "lion": (ref.Lion, dict(lr=1e-3, weight_decay=0.1)),
    "nadam": (ref.NAdam, dict(lr=1e-2)),
    "radam": (ref.RAdam, dict(lr=1e-2)),
    "adamax": (ref.Adamax, dict(lr=1e-2)),
    "adadelta": (ref.Adadelta, dict(lr=1.0)),
}
SIZES = {"one": (1,), "odd": (257,), "matrix": (33, 65), "big": (_core.MIN_PARALLEL_ELEMENTS + 1234,)}


def make(rng, dtype, grad_dtype=None):
    params = {k: rng.standard_normal(s).astype(np.float32).astype(dtype) for k, s in SIZES.items()}
    grads = {k: rng.standard_normal(s).astype(np.float32).astype(grad_dtype or dtype) for k, s in SIZES.items()}
    return params, grads


def run_pair(name, *, param_dtype=np.float32, grad_dtype=None, state=None, master=False, sr=False,
             steps=4, prep=None, nonfinite_step=None, isa=None, threads=1):
    """fa's optimizer and the reference run the kernels' way, same inputs."""
    ref_cls, hyper = RULES[name]
    prep = prep or {}
    if isa:
        set_path(isa)
    fa.set_num_threads(threads)
    opt = fa.make_optimizer(name, **hyper, **prep, state_dtype=state, master_weights=master,
                            stochastic_rounding=sr, seed=11)
    inner = ref_cls(**hyper, **prep)
    initial = {"sum": hyper["initial_accumulator_value"]} if name == "adagrad" else None
    nonneg = _core.RULES[fa.make_optimizer(name)._kernel]["nonnegative_slots"]
    twin = L.LowPrecision(inner, state={None: "float32"}.get(state, state), nonnegative=nonneg,
                          master_weights=master, stochastic_rounding=sr, seed=11, initial=initial)
    rng = np.random.default_rng(hash(name) % 1000)
    params, _ = make(rng, param_dtype)
    mine = {k: v.copy() for k, v in params.items()}
    for t in range(steps):
        _, grads = make(rng, param_dtype, grad_dtype)
        if t == nonfinite_step:
            grads["odd"][[3, 100]] = [np.nan, np.inf]
        if t == 2:  # hyperparameters changed mid-run
            opt.lr = hyper["lr"] * 0.5
            inner.lr = hyper["lr"] * 0.5
        opt.update(mine, {k: v.copy() for k, v in grads.items()})
        twin.update(params, {k: v.copy() for k, v in grads.items()})
    return opt, mine, twin, params


def assert_pair_equal(opt, mine, twin, params):
    for k in params:
        assert mine[k].dtype == params[k].dtype
        assert same_bits(mine[k], params[k]), f"param {k} differs"
    stored = twin.stored
    state = opt.state
    for path, entry in stored.items():
        for name, v in entry.items():
            if isinstance(v, tuple):
                assert np.array_equal(state[path][name], v[0].reshape(state[path][name].shape)), (path, name)
                assert same_bits(state[path][name + "_absmax"], v[1]), (path, name)
            elif isinstance(v, np.ndarray) and v.dtype == np.uint16:
                assert np.array_equal(state[path][name].view(np.uint16), v), (path, name)
            elif isinstance(v, np.ndarray) and v.ndim:
                assert same_bits(state[path][name], v), (path, name)
    if twin.master_weights:
        for path, m in twin.master.items():
            assert same_bits(state[path]["master_param"], m), path


@pytest.mark.parametrize("state", ["int8", "bfloat16"])
@pytest.mark.parametrize("name", sorted(RULES))
def test_low_precision_state_equals_the_reference(name, state, restore_isa):
    assert_pair_equal(*run_pair(name, state=state))


@pytest.mark.parametrize("case", [
    dict(param_dtype="bf16"), dict(param_dtype="bf16", master=True), dict(param_dtype="bf16", sr=True),
    dict(param_dtype="bf16", master=True, sr=True, state="int8"), dict(param_dtype=np.float16),
    dict(param_dtype=np.float16, master=True, state="bfloat16"), dict(param_dtype="bf16", grad_dtype=np.float32),
    dict(param_dtype=np.float32, grad_dtype="bf16", state="int8"), dict(param_dtype=np.float32, grad_dtype=np.float16),
], ids=lambda c: "-".join(f"{k}={getattr(v, '__name__', v)}" for k, v in c.items()))
@pytest.mark.parametrize("name", ["adam", "sgd", "lion"])
def test_low_precision_params_and_grads_equal_the_reference(name, case, restore_isa):
    case = {k: (BF16 if v == "bf16" else v) for k, v in case.items()}
    assert_pair_equal(*run_pair(name, **case))


@pytest.mark.parametrize("name", sorted(fa.optim.OPTIMIZERS))
def test_every_rule_takes_bfloat16_params(name, restore_isa):
    """Every rule runs on bfloat16 params in float32 (one rounding per step),
    as on the widened float32 params: the same float32 result, rounded."""
    rng = np.random.default_rng(3)
    p32 = {"w": rng.standard_normal((17, 31)).astype(np.float32), "b": rng.standard_normal(31).astype(np.float32)}
    p16 = {k: v.astype(BF16) for k, v in p32.items()}
    if name == "muon":  # (Newton-Schulz runs in NumPy on the param's dtype: refused, clearly, untouched)
        before = {k: v.copy() for k, v in p16.items()}
        with pytest.raises(TypeError, match="Muon runs on float32/float64 params"):
            fa.make_optimizer(name).update(p16, {k: v.copy() for k, v in p16.items()})
        assert all(np.array_equal(before[k].view(np.uint16), p16[k].view(np.uint16)) for k in p16)
        return
    wide = {k: L.widen(v) for k, v in p16.items()}
    a, b = fa.make_optimizer(name), fa.make_optimizer(name)
    for _ in range(3):
        g = {k: rng.standard_normal(v.shape).astype(np.float32) for k, v in p32.items()}
        a.update(p16, {k: v.astype(BF16) for k, v in g.items()})
        b.update(wide, {k: L.widen(v.astype(BF16)) for k, v in g.items()})
        # b keeps float32 params: round them as a bfloat16 param is rounded, then go on from there
        for k in wide:
            wide[k][...] = L.widen(wide[k].astype(BF16))
    for k in p16:
        assert np.array_equal(p16[k].view(np.uint16), L.round_bf16(wide[k]).reshape(wide[k].shape)), (name, k)


@pytest.mark.parametrize("prep", [dict(max_grad_norm=1.0), dict(nonfinite="zero"), dict(nonfinite="skip"),
                                  dict(nonfinite="propagate")], ids=lambda p: "-".join(map(str, p.values())))
def test_clipping_and_nonfinite_policies_with_8bit_state(prep, restore_isa):
    assert_pair_equal(*run_pair("adam", state="int8", param_dtype=BF16, master=True, prep=prep, nonfinite_step=1,
                                steps=3))


@pytest.mark.parametrize("prep", [dict(max_grad_norm=1.0), dict(nonfinite="zero"),
                                  dict(nonfinite="skip"), dict(nonfinite="propagate"), dict(maximize=True)],
                         ids=lambda p: "-".join(map(str, p.values())))
@pytest.mark.parametrize("name", ["adam", "adamw", "sgd", "rmsprop", "adagrad", "lion"])
def test_bfloat16_state_read_in_the_rule_body_equals_the_reference(name, prep, restore_isa):
    """float32 params and grads with bfloat16 state: these rules read and
    write the state's bits in their body (no staging). Every path and thread
    count gives the reference's bits, with clipping, each non-finite policy,
    maximize, and every optional buffer (adamw: amsgrad's stored maximum;
    sgd: nesterov momentum; rmsprop: centered with momentum)."""
    for isa in isas():
        for threads in (1, 2, 3):
            assert_pair_equal(*run_pair(name, state="bfloat16", prep=prep, nonfinite_step=1, steps=3, isa=isa,
                                        threads=threads))


def test_raise_policy_leaves_8bit_state_untouched():
    rng = np.random.default_rng(4)
    params, grads = make(rng, BF16)
    opt = fa.Adam(lr=1e-2, state_bits=8, master_weights=True, nonfinite="raise")
    opt.update(params, grads)
    before = {k: {n: a.copy() for n, a in e.items()} for k, e in opt.state.items()}
    p_before = {k: v.copy() for k, v in params.items()}
    grads["odd"][0] = np.nan
    with pytest.raises(FloatingPointError):
        opt.update(params, grads)
    for k, e in opt.state.items():
        for n, a in e.items():
            assert same_bits(a, before[k][n]), (k, n)
    for k in params:
        assert same_bits(params[k], p_before[k])


@pytest.mark.parametrize("state", ["int8", "bfloat16"])
def test_every_isa_and_thread_count_gives_the_same_bits(state, restore_isa):
    results = []
    for isa in isas():
        for threads in (1, 2, 3):
            opt, mine, twin, params = run_pair("adam", state=state, param_dtype=BF16, sr=True, isa=isa,
                                               threads=threads, steps=3)
            assert_pair_equal(opt, mine, twin, params)
            results.append((mine, opt.state))
    first_params, first_state = results[0]
    for mine, state_ in results[1:]:
        for k in mine:
            assert same_bits(mine[k], first_params[k])
        for path, e in state_.items():
            for n, a in e.items():
                assert same_bits(a, first_state[path][n])


def test_state_dict_stores_8bit_state_as_it_is_and_resumes_bit_exactly():
    rng = np.random.default_rng(5)
    params, _ = make(rng, BF16)
    grads = [make(rng, BF16)[1] for _ in range(6)]
    straight = fa.Adam(lr=1e-2, state_bits=8, master_weights=True, stochastic_rounding=True, seed=3)
    p1 = {k: v.copy() for k, v in params.items()}
    for g in grads:
        straight.update(p1, g)
    first = fa.Adam(lr=1e-2, state_bits=8, master_weights=True, stochastic_rounding=True, seed=3)
    p2 = {k: v.copy() for k, v in params.items()}
    for g in grads[:3]:
        first.update(p2, g)
    sd = first.state_dict()
    assert sd["state"]["big"]["exp_avg"].dtype == np.uint8 and sd["state"]["big"]["exp_avg_absmax"].dtype == np.float32
    second = fa.Adam(lr=1e-2, state_bits=8, master_weights=True, stochastic_rounding=True, seed=3)
    second.load_state_dict(sd, p2)
    for g in grads[3:]:
        second.update(p2, g)
    for k in p1:
        assert same_bits(p1[k], p2[k])
    for path, e in straight.state.items():
        for n, a in e.items():
            assert same_bits(a, second.state[path][n]), (path, n)
    nbytes = sum(a.nbytes for e in sd["state"].values() for n, a in e.items() if n != "master_param")
    nparams = sum(v.size for v in params.values())
    assert nbytes < 2.1 * nparams  # two 1-byte moments and a float32 scale per 256 elements each


def test_state_bytes_per_parameter():
    rng = np.random.default_rng(6)
    p = {"w": rng.standard_normal(1 << 16).astype(np.float32)}
    for kw, per in ((dict(), 8.0), (dict(state_dtype="bfloat16"), 4.0), (dict(state_bits=8), 2 + 8 / 256)):
        opt = fa.Adam(**kw)
        opt.update(p, {"w": np.ones(1 << 16, np.float32)})
        assert sum(a.nbytes for a in opt.state["w"].values()) / p["w"].size == pytest.approx(per)


def test_overrides_keep_small_tensors_in_float32():
    rng = np.random.default_rng(7)
    p = {"w": rng.standard_normal((64, 128)).astype(np.float32), "b": np.zeros(128, np.float32)}
    opt = fa.AdamW(state_bits=8, overrides=[(lambda k, a: a.size < 4096, {"state_bits": 32})])
    opt.update(p, {k: np.ones_like(v) for k, v in p.items()})
    assert opt.state["w"]["exp_avg"].dtype == np.uint8 and opt.state["b"]["exp_avg"].dtype == np.float32
    opt = fa.Adam(overrides={"w": {"state_dtype": "bfloat16"}})
    opt.update(p, {k: np.ones_like(v) for k, v in p.items()})
    assert opt.state["w"]["exp_avg"].dtype == BF16 and opt.state["b"]["exp_avg"].dtype == np.float32


# ---- refusals --------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, exc, words", [
    (dict(state_bits=4), ValueError, "state_bits"),
    (dict(state_dtype="int4"), ValueError, "state_dtype"),
    (dict(state_dtype=8), TypeError, "state_dtype"),
    (dict(state_dtype="int8", state_bits=16), ValueError, "disagree"),
    (dict(seed=-1), ValueError, "seed"),
    (dict(master_weights="yes"), TypeError, "master_weights"),
])
def test_bad_options_are_refused(kwargs, exc, words):
    with pytest.raises(exc, match=words):
        fa.Adam(**kwargs)


def test_rules_without_an_elementwise_pass_refuse_low_precision_state():
    with pytest.raises(ValueError, match="one element-wise pass"):
        fa.Adafactor(state_bits=8)
    with pytest.raises(ValueError, match="one element-wise pass"):
        fa.Prodigy(overrides={"w": {"state_dtype": "bfloat16"}})
    opt = fa.Prodigy()
    with pytest.raises(ValueError, match="one element-wise pass"):
        opt.state_dtype = "int8"


def test_float64_params_refuse_low_precision_state_and_nothing_changes():
    p = {"w": np.ones(10)}
    opt = fa.Adam(state_bits=8)
    with pytest.raises(ValueError, match="float64 params keep float64 state"):
        opt.update(p, {"w": np.ones(10)})
    assert np.array_equal(p["w"], np.ones(10)) and opt.step_count == 0


def test_master_weights_and_rounding_are_checked():
    p = {"w": np.ones(10, np.float32)}
    opt = fa.Adam(master_weights=True, stochastic_rounding=True)
    opt.update(p, {"w": np.ones(10, np.float32)})  # float32 params: nothing to keep or round
    assert "master_param" not in opt.state["w"]
    # float16 params round to nearest even with or without stochastic_rounding (documented)
    rng = np.random.default_rng(4)
    start = rng.standard_normal(300).astype(np.float16)
    runs = []
    for sr, seed in [(False, 0), (True, 1), (True, 2)]:
        p16 = {"w": start.copy()}
        opt = fa.Adam(lr=1e-2, stochastic_rounding=sr, seed=seed)
        for k in range(3):
            opt.update(p16, {"w": np.random.default_rng(k).standard_normal(300).astype(np.float16)})
        runs.append(p16["w"])
    assert not np.array_equal(runs[0], start)
    assert same_bits(runs[1], runs[0]) and same_bits(runs[2], runs[0])
    bad = {"w": np.ones(10, BF16)}
    with pytest.raises(TypeError, match=r"grads\['w'\].*bfloat16"):
        fa.Adam().update(bad, {"w": np.ones(10)})


def test_loading_a_bad_8bit_state_dict_is_refused_and_changes_nothing():
    rng = np.random.default_rng(8)
    p = {"w": rng.standard_normal(1000).astype(np.float32)}
    opt = fa.Adam(state_bits=8)
    opt.update(p, {"w": np.ones(1000, np.float32)})
    sd = opt.state_dict()
    before = {n: a.copy() for n, a in opt.state["w"].items()}
    cases = []
    missing = {**sd, "state": {"w": {n: a for n, a in sd["state"]["w"].items() if n != "exp_avg_absmax"}}}
    cases.append((missing, ValueError, "block scales"))
    short = {**sd, "state": {"w": {**sd["state"]["w"], "exp_avg_absmax": np.zeros(3, np.float32)}}}
    cases.append((short, ValueError, r"expected shape \(4,\)"))
    wrong = {**sd, "state": {"w": {**sd["state"]["w"], "exp_avg": sd["state"]["w"]["exp_avg"].astype(np.int16)}}}
    cases.append((wrong, TypeError, "uint8"))
    for bad, exc, words in cases:
        with pytest.raises(exc, match=words):
            opt.load_state_dict(bad)
        for n, a in opt.state["w"].items():
            assert same_bits(a, before[n])


def test_gradient_helpers_read_bfloat16_and_float16_in_float32_and_round_back():
    g32 = {"a": np.array([3.0, 4.0, np.inf], np.float32), "b": np.array([0.1, np.nan], np.float32),
           "c": np.array([12.0], np.float32)}
    low = {"a": g32["a"].astype(BF16), "b": g32["b"].astype(np.float16), "c": g32["c"].copy()}
    wide = {k: v.astype(np.float32) for k, v in low.items()}   # what the low arrays hold, exactly
    assert fa.global_norm({"a": low["a"][:2], "c": low["c"]}) == 13.0
    assert fa.sanitize(low) == fa.sanitize(wide) == 2
    assert np.array_equal(low["b"], wide["b"].astype(np.float16)) and low["a"][2] == 0
    norm = fa.clip_by_global_norm(low, 1.3)
    assert norm == fa.clip_by_global_norm(wide, 1.3)
    # scaled in float32, then rounded to nearest even into the arrays
    assert same_bits(low["a"], wide["a"].astype(BF16)) and same_bits(low["b"], wide["b"].astype(np.float16))
    assert same_bits(low["c"], wide["c"])
    before = low["a"].copy()
    assert fa.clip_by_global_norm(low, 100.0) < 100.0 and same_bits(low["a"], before)  # within bounds: untouched
    strided = np.zeros((4, 4), BF16)[:, ::2]
    with pytest.raises(ValueError, match=r"grads\['x'\]: the array is not C-contiguous"):
        fa.global_norm({"x": strided})


@pytest.mark.parametrize("option", ["master_weights", "stochastic_rounding"])
def test_muon_refuses_master_weights_and_stochastic_rounding_clearly(option):
    msg = rf"{option}=True: Muon runs on float32/float64 params only"
    with pytest.raises(ValueError, match=msg):
        fa.Muon(**{option: True})
    with pytest.raises(ValueError, match=rf"overrides\['w'\]: {msg}"):
        fa.Muon(overrides={"w": {option: True}})
    if option == "master_weights":
        return  # (switched on later it does nothing on float32 params, as for every rule; bf16 params are refused)
    # switched on later: the step refuses before anything changes, and goes on once it is off
    opt, p = fa.Muon(), {"w": np.ones((4, 3), np.float32)}
    setattr(opt, option, True)
    with pytest.raises(ValueError, match=msg):
        opt.update(p, {"w": np.ones((4, 3), np.float32)})
    assert opt.step_count == 0 and np.all(p["w"] == 1) and not opt.state
    setattr(opt, option, False)
    opt.update(p, {"w": np.ones((4, 3), np.float32)})
    assert opt.step_count == 1 and not np.all(p["w"] == 1)


def test_master_weights_switched_off_mid_run_hand_the_weight_back_to_the_param():
    p, g = {"w": np.ones(8, BF16)}, {"w": np.ones(8, BF16)}
    opt = fa.SGD(lr=0.1, master_weights=True)
    opt.update(p, g)
    assert opt.state["w"]["master_param"].dtype == np.float32
    opt.master_weights = False
    p["w"][:] = 7            # the param is the weight again: this write counts
    opt.update(p, g)
    assert np.all(p["w"] == np.float32(7 - 0.1).astype(BF16)) and "master_param" not in opt.state.get("w", {})
    # a step that fails changes nothing, the drop included
    opt2 = fa.SGD(lr=0.1, master_weights=True, nonfinite="raise")
    opt2.update(p, g)
    opt2.master_weights = False
    with pytest.raises(FloatingPointError):
        opt2.update(p, {"w": np.full(8, np.nan, BF16)})
    assert "master_param" in opt2.state["w"]
    opt2.master_weights = True   # on again: the copy it kept is still the weight
    before = opt2.state["w"]["master_param"].copy()
    opt2.update(p, g)
    assert np.array_equal(opt2.state["w"]["master_param"], before - np.float32(0.1))


def test_low_precision_errors_name_the_key_the_option_and_a_fix_that_works():
    with pytest.raises(TypeError, match=r"cast it with \.astype\(ml_dtypes\.bfloat16\)"):
        fa.Adam().update({"w": np.ones(3, BF16)}, {"w": np.ones(3)})
    mixed = {"a": np.ones(3, np.float32), "b": np.ones(3)}
    opt = fa.Adam(state_bits=8)
    with pytest.raises(ValueError, match=r"params\['b'\] is float64: .*overrides=\{'b': \{'state_dtype': None\}\}"):
        opt.update({k: v.copy() for k, v in mixed.items()}, mixed)
    assert opt.step_count == 0 and not opt.state
    fixed = fa.Adam(state_bits=8, overrides={"b": {"state_dtype": None}})
    fixed.update({k: v.copy() for k, v in mixed.items()}, mixed)
    assert fixed.state["a"]["exp_avg"].dtype == np.uint8 and fixed.state["b"]["exp_avg"].dtype == np.float64
    with pytest.raises(ValueError, match=r"state_dtype='int8' \(state_bits=8\): LAMB .*leave state_dtype and state_bits"):
        fa.LAMB(state_bits=8)
    for bad in ("8", 8.0):
        with pytest.raises(TypeError, match="state_bits must be None or an int"):
            fa.Adam(state_bits=bad)
    # a dtype, as optax's mu_dtype: float32 and bfloat16
    assert fa.Adam(state_dtype=BF16).state_dtype == "bfloat16" and fa.Adam(state_dtype=np.float32).state_dtype == "float32"
    with pytest.raises(TypeError, match="np.float32 / ml_dtypes.bfloat16"):
        fa.Adam(state_dtype=np.float16)


def test_a_state_dict_without_the_master_copy_it_needs_is_refused():
    rng = np.random.default_rng(0)
    p = {"w": rng.standard_normal(600).astype(BF16), "b": np.zeros(3, np.float32)}
    g = {"w": (rng.standard_normal(600) * 1e-3).astype(BF16), "b": np.ones(3, np.float32)}
    opt = fa.Adam(lr=1e-4, state_bits=8, master_weights=True)
    opt.update(p, g)
    sd = opt.state_dict()
    del sd["state"]["w"]["master_param"]
    msg = r"state_dict\['state'\]\['w'\] lacks 'master_param'"
    with pytest.raises(ValueError, match=msg):           # checked now, against the params
        fa.Adam(lr=1e-4, state_bits=8, master_weights=True).load_state_dict(sd, params=p)
    late = fa.Adam(lr=1e-4, state_bits=8, master_weights=True)
    late.load_state_dict(sd)                            # checked at the first update, which changes nothing
    before = p["w"].copy()
    with pytest.raises(ValueError, match=msg):
        late.update(p, g)
    assert same_bits(p["w"], before) and late.step_count == 1   # (the loaded count)
    # saved without master weights: nothing to miss (the copy is taken when a step turns them on)
    plain = fa.Adam(lr=1e-4, state_bits=8)
    plain.update({k: v.copy() for k, v in p.items()}, g)
    fa.Adam(lr=1e-4, state_bits=8, master_weights=True).load_state_dict(plain.state_dict(), params=p)
    # an override that turns them off for 'w' saves none for it, and that loads
    off = fa.Adam(lr=1e-4, state_bits=8, master_weights=True, overrides={"w": {"master_weights": False}})
    off.update({k: v.copy() for k, v in p.items()}, g)
    assert "master_param" not in off.state["w"]
    fa.Adam(lr=1e-4, state_bits=8, master_weights=True, overrides={"w": {"master_weights": False}}
            ).load_state_dict(off.state_dict(), params=p)
