"""Bad input never half-applies.

Every bad call must raise TypeError (wrong type or dtype) or ValueError
(structure, shape, layout, memory sharing, out-of-range values), with a
message that names the offending key and says what to do, and must leave
everything exactly as it was: every param, every grad, every optimizer state
buffer (``opt.state`` and ``opt.state_dict()``), ``opt.step_count`` and the
hyperparameters. The bad value always sits in a *later* key (``fc2``), so an
implementation that checks while it writes would already have touched
``fc1``. After the failure the optimizer must go on exactly like a twin that
never saw the bad call.
"""

from __future__ import annotations

import copy
import functools
import numbers
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np
import pytest

import fastadapt as fa

# ---------------------------------------------------------------------------
# optimizers under test
# ---------------------------------------------------------------------------

FACTORIES: Dict[str, Callable[..., fa.Optimizer]] = {
    "adam": functools.partial(fa.Adam, lr=1e-2),
    "adamw-amsgrad": functools.partial(fa.AdamW, lr=1e-2, amsgrad=True),
    "adagrad": functools.partial(fa.AdaGrad, lr=1e-2),
    "rmsprop-momentum": functools.partial(fa.RMSProp, lr=1e-2, momentum=0.9, centered=True),
    "sgd-momentum": functools.partial(fa.SGD, lr=1e-2, momentum=0.9),
}
# Every other registered rule, with its defaults and lr=1e-2: a new rule is
# held to these tests by being registered.
for _name, _cls in sorted(fa.optim.OPTIMIZERS.items()):
    if not any(f.func is _cls for f in FACTORIES.values()):
        FACTORIES[_name] = functools.partial(_cls, lr=1e-2)
ALL_OPTIMIZERS = list(FACTORIES)


@pytest.fixture(params=ALL_OPTIMIZERS)
def opt_name(request) -> str:
    return request.param


@pytest.fixture
def factory(opt_name) -> Callable[..., fa.Optimizer]:
    return FACTORIES[opt_name]


# ---------------------------------------------------------------------------
# trees of arrays
# ---------------------------------------------------------------------------

# fc2.w is square so that a transposed view keeps the shape (only the layout is bad).
SHAPES = {"fc1": {"w": (4, 3), "b": (3,)}, "fc2": {"w": (3, 3), "b": (3,)}}


def make_tree(seed: int, dtype=np.float32) -> dict:
    rng = np.random.default_rng(seed)
    return {layer: {name: rng.standard_normal(shape).astype(dtype) for name, shape in leaves.items()}
            for layer, leaves in SHAPES.items()}


def shallow(tree: Any) -> Any:
    """New containers, the same arrays (so cases can swap one leaf)."""
    if isinstance(tree, dict):
        return {k: shallow(v) for k, v in tree.items()}
    return tree


def deep(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {k: deep(v) for k, v in tree.items()}
    return np.array(tree, copy=True) if isinstance(tree, np.ndarray) else copy.deepcopy(tree)


def iter_leaves(tree: Any, path: str = ""):
    """(dotted path, leaf) pairs; a list of plain numbers is one leaf."""
    if isinstance(tree, dict):
        items = tree.items()
    elif isinstance(tree, (list, tuple)) and not all(isinstance(e, numbers.Number) for e in tree):
        items = enumerate(tree)
    else:
        yield path, tree
        return
    for k, v in items:
        yield from iter_leaves(v, f"{path}.{k}" if path else str(k))


# ---------------------------------------------------------------------------
# snapshots: everything a bad call must not change
# ---------------------------------------------------------------------------

def fingerprint(x: Any, with_id: bool = True) -> tuple:
    """Exact bytes (``tobytes()``: byte-for-byte, NaN-safe) plus dtype, shape and
    writeability of an array; a deep copy of anything else."""
    ident = (id(x),) if with_id else ()
    if isinstance(x, np.ndarray):
        return ident + ("ndarray", x.dtype.str, x.shape, x.flags.writeable, x.tobytes())
    return ident + (type(x).__name__, copy.deepcopy(x))


def snapshot(opt: Optional[fa.Optimizer], **trees: Any) -> Dict[str, Any]:
    snap: Dict[str, Any] = {}
    for role, tree in trees.items():
        for path, leaf in iter_leaves(tree):
            snap[f"{role}[{path!r}]"] = fingerprint(leaf)
    if opt is not None:
        snap["opt.step_count"] = opt.step_count
        snap["opt.hyperparameters"] = opt.hyperparameters
        for path, bufs in opt.state.items():
            for name, arr in bufs.items():
                snap[f"opt.state[{path!r}][{name!r}]"] = fingerprint(arr, with_id=False)
        sd = opt.state_dict()
        for k, v in sd.items():
            if k != "state":
                snap[f"opt.state_dict()[{k!r}]"] = v
        for path, bufs in sd["state"].items():
            for name, arr in bufs.items():
                snap[f"opt.state_dict()['state'][{path!r}][{name!r}]"] = fingerprint(arr, with_id=False)
    return snap


def assert_unchanged(before: Dict[str, Any], after: Dict[str, Any], ignore: Tuple[str, ...] = ()) -> None:
    assert sorted(after) == sorted(before), "the set of arrays / state buffers changed"
    changed = [k for k in before if k not in ignore and before[k] != after[k]]
    assert not changed, f"a failed call modified: {changed}"


def arrays_bytes(tree: Any) -> Dict[str, tuple]:
    return {p: fingerprint(a, with_id=False) for p, a in iter_leaves(tree)}


def state_bytes(opt: fa.Optimizer) -> Dict[str, tuple]:
    return {f"{p}/{n}": fingerprint(a, with_id=False) for p, bufs in opt.state.items() for n, a in bufs.items()}


def assert_message(exc: BaseException, *words: str) -> None:
    msg = str(exc)
    for w in words:
        assert w in msg, f"expected {w!r} in the message: {msg!r}"


def test_snapshot_detects_changes(factory):
    """The harness itself: one element of fc2's param or of one state buffer,
    or the step count, changing is seen."""
    w = warm_up(factory)
    before = snapshot(w.opt, params=w.params)
    # The direction is given in the array's dtype: under NumPy 1.x's scalar
    # promotion a bare np.inf made nextafter work in float64, and that next
    # value rounded back to the same float32: nothing changed, nothing was seen.
    b = w.params["fc2"]["b"]
    b[-1] = np.nextafter(b[-1], b.dtype.type(np.inf))
    with pytest.raises(AssertionError, match="fc2.b"):
        assert_unchanged(before, snapshot(w.opt, params=w.params))
    before = snapshot(w.opt, params=w.params)
    buf = w.opt.state["fc2.b"]
    arr = buf[next(iter(buf))]
    arr[-1] = np.nextafter(arr[-1], arr.dtype.type(np.inf))
    with pytest.raises(AssertionError, match="fc2.b"):
        assert_unchanged(before, snapshot(w.opt, params=w.params))
    before = snapshot(w.opt, params=w.params)
    w.opt.update(w.params, w.grads)
    with pytest.raises(AssertionError, match="step_count"):
        assert_unchanged(before, snapshot(w.opt, params=w.params))
    with pytest.raises(AssertionError):
        w.assert_continues_like_twin()  # the twin missed a step


# ---------------------------------------------------------------------------
# a warmed-up optimizer and its twin
# ---------------------------------------------------------------------------

@dataclass
class Warm:
    opt: fa.Optimizer
    params: dict
    grads: dict  # good grads for the next call; cases corrupt (shallow copies of) them
    twin: fa.Optimizer
    twin_params: dict

    def assert_continues_like_twin(self) -> None:
        """One more good step on both: bit-identical params and state."""
        g = make_tree(300)
        self.opt.update(self.params, g)
        self.twin.update(self.twin_params, deep(g))
        assert self.opt.step_count == self.twin.step_count
        assert arrays_bytes(self.params) == arrays_bytes(self.twin_params)
        assert state_bytes(self.opt) == state_bytes(self.twin)


def warm_up(factory: Callable[..., fa.Optimizer], steps: int = 2, **kwargs: Any) -> Warm:
    opt, twin = factory(**kwargs), factory(**kwargs)
    params = make_tree(0)
    twin_params = deep(params)
    for s in range(steps):
        g = make_tree(100 + s)
        opt.update(params, g)
        twin.update(twin_params, deep(g))
    assert opt.step_count == steps
    return Warm(opt, params, make_tree(200), twin, twin_params)


# ---------------------------------------------------------------------------
# bad update() inputs: each case corrupts shallow copies of (params, grads)
# ---------------------------------------------------------------------------

@dataclass
class UpdateCase:
    corrupt: Callable[[dict, dict], None]
    exc: type
    words: Tuple[str, ...]  # the offending key (and role) and the fix
    warm_only: bool = False  # only an error once a structure/state exists


UPDATE_CASES = []


def update_case(exc: type, *words: str, warm_only: bool = False, marks=(), id: Optional[str] = None):
    def register(fn):
        UPDATE_CASES.append(pytest.param(UpdateCase(fn, exc, words, warm_only), id=id or fn.__name__,
                                         marks=marks))
        return fn
    return register


def packed(values: np.ndarray, offset_elems: int, total_elems: int) -> Tuple[np.ndarray, np.ndarray]:
    """A C-contiguous view at `offset_elems` into a fresh buffer, holding `values`."""
    base = np.zeros(total_elems, values.dtype)
    view = base[offset_elems:offset_elems + values.size].reshape(values.shape)
    view[...] = values
    return base, view


def unaligned_copy(a: np.ndarray) -> np.ndarray:
    raw = np.zeros(a.nbytes + 1, np.uint8)
    out = raw[1:].view(a.dtype).reshape(a.shape)
    assert not out.flags.aligned and out.flags.writeable and out.flags.c_contiguous
    out[...] = a
    return out


# -- structure of grads
@update_case(ValueError, "fc2.b", "structure")
def grads_missing_key(p, g):
    del g["fc2"]["b"]


@update_case(ValueError, "fc2.c", "structure")
def grads_extra_key(p, g):
    g["fc2"]["c"] = np.zeros(3, np.float32)


@update_case(ValueError, "fc2.b", "structure")
def grads_renamed_key(p, g):
    g["fc2"]["c"] = g["fc2"].pop("b")


@update_case(ValueError, "grads['fc2']", "structure")
def grads_subtree_is_none(p, g):
    g["fc2"] = None


# -- shape and dtype of grads
@update_case(ValueError, "grads['fc2.w']", "params['fc2.w']", "must have the parameter's shape")
def grad_wrong_shape(p, g):
    g["fc2"]["w"] = np.zeros((3, 4), np.float32)


# (float16 and bfloat16 params and grads are low precision, computed in float32: tests/test_lowp.py)
BAD_DTYPES = [("int32", np.int32), ("int64", np.int64), ("bool", np.bool_), ("complex64", np.complex64),
              ("uint16", np.uint16), ("big-endian-float32", ">f4"), ("object", object)]

for _name, _dt in [("float64", np.float64)] + BAD_DTYPES:
    def _grad_dtype(p, g, dt=_dt):
        g["fc2"]["w"] = g["fc2"]["w"].astype(dt)
    update_case(TypeError, "grads['fc2.w']", "astype(np.float32)", id=f"grad_dtype_{_name}")(_grad_dtype)

    if _name != "float64":  # float64 params are fine on a fresh optimizer (see param_dtype_changed)
        def _param_dtype(p, g, dt=_dt):
            p["fc2"]["w"] = p["fc2"]["w"].astype(dt)
            g["fc2"]["w"] = g["fc2"]["w"].astype(dt)
        update_case(TypeError, "params['fc2.w']", "astype(np.float32)", id=f"param_dtype_{_name}")(_param_dtype)


# -- layout
@update_case(ValueError, "params['fc2.w']", "C-contiguous", "np.ascontiguousarray")
def param_transposed_view(p, g):
    p["fc2"]["w"] = np.ascontiguousarray(p["fc2"]["w"].T).T  # same shape, Fortran order


@update_case(ValueError, "params['fc2.w']", "C-contiguous", "np.ascontiguousarray")
def param_strided_view(p, g):
    base = np.zeros((6, 3), np.float32)
    base[::2] = p["fc2"]["w"]
    p["fc2"]["w"] = base[::2]


@update_case(ValueError, "grads['fc2.w']", "C-contiguous", "np.ascontiguousarray")
def grad_transposed_view(p, g):
    g["fc2"]["w"] = g["fc2"]["w"].T


@update_case(ValueError, "grads['fc2.w']", "C-contiguous", "np.ascontiguousarray")
def grad_strided_view(p, g):
    g["fc2"]["w"] = np.repeat(g["fc2"]["w"], 2, axis=0)[::2]



@update_case(ValueError, "params['fc2.b']", "aligned", "copy()")
def param_unaligned(p, g):
    p["fc2"]["b"] = unaligned_copy(p["fc2"]["b"])


@update_case(ValueError, "grads['fc2.b']", "aligned", "copy()")
def grad_unaligned(p, g):
    g["fc2"]["b"] = unaligned_copy(g["fc2"]["b"])


@update_case(ValueError, "params['fc2.w']", "read-only", "copy()")
def param_read_only(p, g):
    p["fc2"]["w"] = p["fc2"]["w"].copy()
    p["fc2"]["w"].setflags(write=False)


# -- memory shared between grads and params
@update_case(ValueError, "grads['fc2.w']", "params['fc2.w']", "copy()")
def grad_is_its_param(p, g):
    g["fc2"]["w"] = p["fc2"]["w"]


@update_case(ValueError, "grads['fc2.w']", "params['fc2.w']", "copy()")
def grad_is_view_of_its_param(p, g):
    g["fc2"]["w"] = p["fc2"]["w"].view()


@update_case(ValueError, "grads['fc2.w']", "params['fc2.w']", "copy()")
def grad_partly_overlaps_its_param(p, g):
    # param = buf[0:9], grad = buf[3:12]: both C-contiguous, 6 elements shared
    base, p["fc2"]["w"] = packed(p["fc2"]["w"], 0, 12)
    g["fc2"]["w"] = base[3:12].reshape(3, 3)


@update_case(ValueError, "grads['fc2.b']", "params['fc1.b']", "copy()")
def grad_is_other_keys_param(p, g):
    g["fc2"]["b"] = p["fc1"]["b"]


@update_case(ValueError, "grads['fc2.b']", "params['fc1.w']", "copy()")
def grad_is_view_into_other_keys_param(p, g):
    g["fc2"]["b"] = p["fc1"]["w"][1]


@update_case(ValueError, "params['fc2.b']", "params['fc1.b']", "own array")
def two_keys_same_param_array(p, g):
    p["fc2"]["b"] = p["fc1"]["b"]


# -- Python lists instead of arrays
@update_case(TypeError, "params['fc2.b']", "got list", "np.asarray")
def param_is_list(p, g):
    p["fc2"]["b"] = p["fc2"]["b"].tolist()


@update_case(TypeError, "params['fc2.w']", "got list", "np.asarray", warm_only=True)
def param_is_nested_list(p, g):  # on a fresh optimizer: see test_nested_list_param_on_first_update
    p["fc2"]["w"] = p["fc2"]["w"].tolist()


@update_case(TypeError, "grads['fc2.b']", "got list", "np.asarray")
def grad_is_list(p, g):
    g["fc2"]["b"] = g["fc2"]["b"].tolist()


@update_case(TypeError, "grads['fc2.w']", "got list", "np.asarray")
def grad_is_nested_list(p, g):
    g["fc2"]["w"] = g["fc2"]["w"].tolist()


# -- params that differ from what the optimizer was built on
@update_case(ValueError, "fc3", "opt.reset()", warm_only=True)
def params_new_key(p, g):
    p["fc3"] = {"b": np.zeros(2, np.float32)}
    g["fc3"] = {"b": np.ones(2, np.float32)}


@update_case(ValueError, "fc2.b", "opt.reset()", warm_only=True)
def params_removed_key(p, g):
    del p["fc2"]["b"]
    del g["fc2"]["b"]


@update_case(ValueError, "params['fc2']", "opt.reset()", warm_only=True)
def params_subtree_dict_became_list(p, g):
    p["fc2"] = [p["fc2"]["w"], p["fc2"]["b"]]
    g["fc2"] = [g["fc2"]["w"], g["fc2"]["b"]]


@update_case(ValueError, "['fc2.w']", "opt.reset()", warm_only=True)
def param_shape_changed(p, g):
    p["fc2"]["w"] = np.zeros((3, 4), np.float32)
    g["fc2"]["w"] = np.ones((3, 4), np.float32)


@update_case(TypeError, "['fc2.w']", "opt.reset()", warm_only=True)
def param_dtype_changed(p, g):
    p["fc2"]["w"] = p["fc2"]["w"].astype(np.float64)
    g["fc2"]["w"] = g["fc2"]["w"].astype(np.float64)


def _bad_call(opt: fa.Optimizer, params: dict, grads: dict, case: UpdateCase) -> None:
    bad_p, bad_g = shallow(params), shallow(grads)
    case.corrupt(bad_p, bad_g)
    before = snapshot(opt, params=params, grads=grads, bad_params=bad_p, bad_grads=bad_g)
    with pytest.raises((TypeError, ValueError)) as info:
        opt.update(bad_p, bad_g)
    assert info.type is case.exc, f"expected {case.exc.__name__}, got {info.type.__name__}: {info.value}"
    assert_message(info.value, *case.words)
    assert_unchanged(before, snapshot(opt, params=params, grads=grads, bad_params=bad_p, bad_grads=bad_g))


@pytest.mark.parametrize("case", UPDATE_CASES)
def test_bad_update_changes_nothing(factory, case: UpdateCase):
    w = warm_up(factory)
    _bad_call(w.opt, w.params, w.grads, case)
    w.assert_continues_like_twin()


@pytest.mark.parametrize("case", [c for c in UPDATE_CASES if not c.values[0].warm_only])
def test_bad_first_update_leaves_optimizer_fresh(factory, case: UpdateCase):
    opt = factory()
    params, grads = make_tree(0), make_tree(100)
    _bad_call(opt, params, grads, case)
    assert opt.state == {} and opt.step_count == 0
    # ... and the first good update is exactly a new optimizer's first update.
    twin, twin_params = factory(), deep(params)
    opt.update(params, grads)
    twin.update(twin_params, deep(grads))
    assert arrays_bytes(params) == arrays_bytes(twin_params)
    assert state_bytes(opt) == state_bytes(twin)


def test_nested_list_param_on_first_update(factory):
    opt = factory()
    params, grads = make_tree(0), make_tree(100)
    params["fc2"]["w"] = params["fc2"]["w"].tolist()
    before = snapshot(opt, params=params, grads=grads)
    with pytest.raises(TypeError) as info:
        opt.update(params, grads)
    assert_message(info.value, "params['fc2.w']", "np.asarray")
    assert_unchanged(before, snapshot(opt, params=params, grads=grads))


@pytest.mark.parametrize("what", ["amsgrad", "momentum"])
def test_failed_update_after_hyperparameter_change_creates_no_state(what):
    """Turning on a feature that needs a new buffer, then a bad call: the new
    buffer must not appear (half-initialised), and later steps match a twin."""
    factory = functools.partial(fa.Adam, lr=1e-2) if what == "amsgrad" else functools.partial(fa.SGD, lr=1e-2)
    w = warm_up(factory)
    for o in (w.opt, w.twin):
        setattr(o, what, True if what == "amsgrad" else 0.9)
    bad_g = shallow(w.grads)
    bad_g["fc2"]["w"] = bad_g["fc2"]["w"].astype(np.float64)
    before = snapshot(w.opt, params=w.params, grads=bad_g)
    with pytest.raises(TypeError) as info:
        w.opt.update(w.params, bad_g)
    assert_message(info.value, "grads['fc2.w']", "astype")
    assert_unchanged(before, snapshot(w.opt, params=w.params, grads=bad_g))
    w.assert_continues_like_twin()


# ---------------------------------------------------------------------------
# non-finite gradients
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("bad_value", [np.nan, np.inf, -np.inf])
def test_nonfinite_raise_changes_nothing(factory, bad_value):
    w = warm_up(factory, nonfinite="raise")
    w.grads["fc2"]["w"][1, 2] = bad_value
    before = snapshot(w.opt, params=w.params, grads=w.grads)
    with pytest.raises(FloatingPointError) as info:
        w.opt.update(w.params, w.grads)
    assert_message(info.value, "grads['fc2.w']", "nonfinite='zero' or 'skip'")
    # the non-finite counter may count what was seen; nothing else may change
    assert_unchanged(before, snapshot(w.opt, params=w.params, grads=w.grads),
                     ignore=("opt.state_dict()['total_nonfinite_count']",))
    assert w.opt.skipped_steps == 0
    w.assert_continues_like_twin()


def test_nonfinite_skip_changes_nothing(factory):
    w = warm_up(factory, nonfinite="skip")
    w.grads["fc2"]["w"][1, 2] = np.nan
    before = snapshot(w.opt, params=w.params, grads=w.grads)
    w.opt.update(w.params, w.grads)
    assert w.opt.skipped_steps == 1
    assert w.opt.step_count == 2
    assert_unchanged(before, snapshot(w.opt, params=w.params, grads=w.grads),
                     ignore=("opt.state_dict()['skipped_steps']", "opt.state_dict()['total_nonfinite_count']"))
    w.assert_continues_like_twin()


# ---------------------------------------------------------------------------
# hyperparameters: at construction and on assignment
# ---------------------------------------------------------------------------

COMMON_BAD_HYPER = [
    ("lr", float("nan"), ValueError, "finite"),
    ("lr", float("inf"), ValueError, "finite"),
    ("lr", -1.0, ValueError, ">= 0"),
    ("lr", "x", TypeError, "real number"),
    ("lr", None, TypeError, "real number"),
    ("weight_decay", -0.1, ValueError, ">= 0"),
    ("nonfinite", "bogus", ValueError, "expected one of"),
    ("max_grad_norm", 0.0, ValueError, "> 0, or None"),
    ("max_grad_norm", -1.0, ValueError, "> 0, or None"),
    ("max_grad_norm", float("nan"), ValueError, "finite"),
]
SPECIFIC_BAD_HYPER = {
    "adam": [("betas", (1.0, 0.9), ValueError, "[0, 1)"), ("betas", (0.9, 1.0), ValueError, "[0, 1)"),
             ("betas", (-0.1, 0.999), ValueError, "[0, 1)"), ("betas", 0.9, TypeError, "pair"),
             ("eps", -1e-8, ValueError, ">= 0"), ("amsgrad", 1, TypeError, "True or False")],
    "adagrad": [("eps", -1.0, ValueError, ">= 0"), ("lr_decay", -1.0, ValueError, ">= 0"),
                ("initial_accumulator_value", -1.0, ValueError, ">= 0")],
    "rmsprop-momentum": [("eps", -1.0, ValueError, ">= 0"), ("alpha", 1.5, ValueError, "[0, 1]"),
                         ("momentum", -0.9, ValueError, ">= 0")],
    "sgd-momentum": [("momentum", -0.9, ValueError, ">= 0"), ("dampening", 2.0, ValueError, "[0, 1]")],
    "nadam": [("betas", (1.0, 0.9), ValueError, "[0, 1)"), ("betas", 0.9, TypeError, "pair"),
              ("eps", -1e-8, ValueError, ">= 0"), ("momentum_decay", -1.0, ValueError, ">= 0"),
              ("decoupled_weight_decay", 1, TypeError, "True or False")],
    "radam": [("betas", (0.9, 1.0), ValueError, "[0, 1)"), ("betas", 0.9, TypeError, "pair"),
              ("eps", -1e-8, ValueError, ">= 0"), ("decoupled_weight_decay", 1, TypeError, "True or False")],
    "adamax": [("betas", (-0.1, 0.999), ValueError, "[0, 1)"), ("betas", 0.9, TypeError, "pair"),
               ("eps", -1e-8, ValueError, ">= 0")],
    "adadelta": [("rho", 1.5, ValueError, "[0, 1]"), ("rho", -0.1, ValueError, "[0, 1]"),
                 ("eps", -1e-6, ValueError, ">= 0")],
    "adafactor": [("beta2_decay", 0.5, ValueError, "<= 0"), ("eps", 1e-3, TypeError, "pair"),
                  ("eps", (-1.0, 1e-3), ValueError, ">= 0"), ("eps", (None, -1.0), ValueError, ">= 0"),
                  ("d", 0.5, ValueError, ">= 1")],
    "lion": [("betas", (1.0, 0.99), ValueError, "[0, 1)"), ("betas", 0.9, TypeError, "pair"),
             ("maximize", "yes", TypeError, "True or False")],
    "lamb": [("betas", (0.9, 1.0), ValueError, "[0, 1)"), ("eps", -1e-6, ValueError, ">= 0"),
             ("eps_root", -1.0, ValueError, ">= 0")],
    "lars": [("trust_coefficient", -1e-3, ValueError, ">= 0"), ("eps", -1.0, ValueError, ">= 0"),
             ("momentum", -0.9, ValueError, ">= 0"), ("weight_decay_mask", 1, TypeError, "True or False"),
             ("trust_ratio_mask", None, TypeError, "True or False"), ("nesterov", "no", TypeError, "True or False")],
}
SPECIFIC_BAD_HYPER["adamw-amsgrad"] = SPECIFIC_BAD_HYPER["adam"]
SPECIFIC_BAD_HYPER["dog"] = SPECIFIC_BAD_HYPER["ldog"] = [
    ("reps_rel", 0.0, ValueError, "unless init_eta"), ("reps_rel", -1e-6, ValueError, ">= 0"),
    ("eps", -1e-8, ValueError, ">= 0"), ("init_eta", 0.0, ValueError, "> 0"), ("init_eta", "x", TypeError, "real number")]
SPECIFIC_BAD_HYPER["prodigy"] = [("betas", (1.0, 0.9), ValueError, "[0, 1)"), ("betas", 0.9, TypeError, "pair"),
                                 ("beta3", 1.0, ValueError, "[0, 1)"), ("beta3", "x", TypeError, "real number"),
                                 ("eps", 0.0, ValueError, "> 0"), ("d0", 0.0, ValueError, "> 0"),
                                 ("d_coef", -1.0, ValueError, "> 0"), ("growth_rate", 0.0, ValueError, "> 0"),
                                 ("growth_rate", float("nan"), ValueError, "inf for no limit"),
                                 ("decouple", 1, TypeError, "True or False"),
                                 ("use_bias_correction", None, TypeError, "True or False"),
                                 ("safeguard_warmup", "yes", TypeError, "True or False")]
SPECIFIC_BAD_HYPER["dadapt-adam"] = [("betas", (0.9, 1.0), ValueError, "[0, 1)"), ("betas", 0.9, TypeError, "pair"),
                                     ("eps", -1e-8, ValueError, "> 0"), ("d0", -1.0, ValueError, "> 0"),
                                     ("growth_rate", -2.0, ValueError, "> 0"),
                                     ("layer_scale", -1.0, ValueError, ">= 0"),
                                     ("decouple", 1, TypeError, "True or False")]
SPECIFIC_BAD_HYPER["muon"] = [("momentum", -0.9, ValueError, ">= 0"), ("eps", -1.0, ValueError, ">= 0"),
                              ("ns_steps", 100, ValueError, "[0, 100)"), ("ns_steps", 2.5, TypeError, "integer"),
                              ("ns_coefficients", (1.0, 2.0), TypeError, "three numbers"),
                              ("adjust_lr_fn", "rms", ValueError, "match_rms_adamw"),
                              ("ns_dtype", "float16", ValueError, "bfloat16"), ("nesterov", 1, TypeError, "True or False")]
SPECIFIC_BAD_HYPER["hd-sgd"] = [("hypergrad_lr", -1e-6, ValueError, ">= 0"), ("momentum", -0.9, ValueError, ">= 0"),
                                ("dampening", 2.0, ValueError, "[0, 1]"), ("nesterov", 1, TypeError, "True or False")]
SPECIFIC_BAD_HYPER["hd-adam"] = [("hypergrad_lr", -1e-8, ValueError, ">= 0"), ("betas", (1.0, 0.9), ValueError, "[0, 1)"),
                                 ("betas", 0.9, TypeError, "pair"), ("eps", -1e-8, ValueError, ">= 0")]
SPECIFIC_BAD_HYPER["dadapt-sgd"] = [("momentum", 1.0, ValueError, "[0, 1)"),
                                    ("momentum", -0.1, ValueError, "[0, 1)"), ("d0", 0.0, ValueError, "> 0"),
                                    ("growth_rate", 0.0, ValueError, "> 0"),
                                    ("growth_rate", float("nan"), ValueError, "float('inf') for no limit"),
                                    ("maximize", 1, TypeError, "True or False")]
SPECIFIC_BAD_HYPER["dadapt-adagrad"] = SPECIFIC_BAD_HYPER["dadapt-sgd"] + [("eps", 0.0, ValueError, "> 0"),
                                                                           ("eps", -1e-6, ValueError, "> 0")]
SPECIFIC_BAD_HYPER["schedulefree-adamw"] = [
    ("betas", (0.0, 0.999), ValueError, "(0, 1)"), ("betas", (0.9, 1.0), ValueError, "[0, 1)"),
    ("betas", 0.9, TypeError, "pair"), ("eps", -1e-8, ValueError, ">= 0"), ("warmup_steps", -1, ValueError, ">= 0"),
    ("warmup_steps", 2.5, TypeError, "integer"), ("r", float("nan"), ValueError, "finite"),
    ("weight_lr_power", -1.0, ValueError, ">= 0"), ("maximize", "yes", TypeError, "True or False")]
SPECIFIC_BAD_HYPER["schedulefree-sgd"] = [
    ("momentum", 0.0, ValueError, "(0, 1)"), ("momentum", 1.0, ValueError, "(0, 1)"),
    ("warmup_steps", True, TypeError, "integer"), ("r", "1", TypeError, "real number"),
    ("weight_lr_power", float("inf"), ValueError, "finite")]

HYPER_CASES = [pytest.param(name, attr, value, exc, fix, id=f"{name}-{attr}={value!r}")
               for name in ALL_OPTIMIZERS
               for attr, value, exc, fix in COMMON_BAD_HYPER + SPECIFIC_BAD_HYPER[name]]


def _named(attr: str) -> str:
    return "beta" if attr == "betas" else attr  # betas messages say "beta parameter at index i"


@pytest.mark.parametrize("name, attr, value, exc, fix", HYPER_CASES)
def test_constructor_rejects_bad_hyperparameter(name, attr, value, exc, fix):
    with pytest.raises((TypeError, ValueError)) as info:
        FACTORIES[name](**{attr: value})
    assert info.type is exc, f"expected {exc.__name__}, got {info.type.__name__}: {info.value}"
    assert_message(info.value, _named(attr), fix)


@pytest.mark.parametrize("name, attr, value, exc, fix", HYPER_CASES)
def test_bad_hyperparameter_assignment_keeps_old_value(name, attr, value, exc, fix):
    w = warm_up(FACTORIES[name])
    old = getattr(w.opt, attr)
    before = snapshot(w.opt, params=w.params)
    with pytest.raises((TypeError, ValueError)) as info:
        setattr(w.opt, attr, value)
    assert info.type is exc, f"expected {exc.__name__}, got {info.type.__name__}: {info.value}"
    assert_message(info.value, _named(attr), fix)
    assert getattr(w.opt, attr) == old
    assert_unchanged(before, snapshot(w.opt, params=w.params))
    w.assert_continues_like_twin()


@pytest.mark.parametrize("kwargs", [dict(nesterov=True, momentum=0.0), dict(nesterov=True, dampening=0.5)],
                         ids=["no-momentum", "dampening"])
def test_sgd_nesterov_needs_momentum_at_construction(kwargs):
    with pytest.raises(ValueError) as info:
        FACTORIES["sgd-momentum"](**kwargs)
    assert_message(info.value, "Nesterov", "nesterov=False")


@pytest.mark.parametrize("start, attr, value", [
    (dict(momentum=0.0), "nesterov", True),
    (dict(momentum=0.9, nesterov=True), "momentum", 0.0),
    (dict(momentum=0.9, nesterov=True), "dampening", 0.5),
], ids=["nesterov-without-momentum", "drop-momentum-under-nesterov", "dampening-under-nesterov"])
def test_sgd_nesterov_consistency_on_assignment(start, attr, value):
    w = warm_up(functools.partial(fa.SGD, lr=1e-2, **start))
    old = w.opt.hyperparameters
    with pytest.raises(ValueError) as info:
        setattr(w.opt, attr, value)
    assert_message(info.value, "Nesterov", "nesterov=False")
    assert w.opt.hyperparameters == old
    w.assert_continues_like_twin()


# ---------------------------------------------------------------------------
# load_state_dict
# ---------------------------------------------------------------------------

def _first_buffer(sd: dict, key: str = "fc2.w") -> str:
    return next(iter(sd["state"][key]))


def _other_algorithm(sd: dict) -> str:
    return "adagrad" if sd["algorithm"] != "adagrad" else "adam"


def _set_buffer(sd: dict, value: Any, name: Optional[str] = None) -> dict:
    """sd with state['fc2.w'][name] (default: its first buffer) replaced by value."""
    sd["state"]["fc2.w"][name or _first_buffer(sd)] = value
    return sd


def _drop_hyper_lr(sd: dict) -> dict:
    del sd["hyperparameters"]["lr"]
    return sd


def _add_state_key(sd: dict) -> dict:
    sd["state"]["fc3.w"] = dict(sd["state"]["fc2.w"])
    return sd


def load_case(id: str, corrupt: Callable[[dict], Any], exc: type, *words: str, marks=()):
    """corrupt(a good state_dict, a copy) -> the bad state_dict to load."""
    return pytest.param(corrupt, exc, words, id=id, marks=marks)


LOAD_CASES = [
    load_case("not-a-dict", lambda sd: list(sd.items()), TypeError, "state_dict must be a dict"),
    load_case("missing-top-level-key", lambda sd: {k: v for k, v in sd.items() if k != "step"}, ValueError,
              "missing ['step']", "state_dict() returned"),
    load_case("extra-top-level-key", lambda sd: {**sd, "extra": 1}, ValueError,
              "unexpected ['extra']", "state_dict() returned"),
    load_case("wrong-algorithm", lambda sd: {**sd, "algorithm": _other_algorithm(sd)}, ValueError,
              "state_dict is for"),
    load_case("negative-step", lambda sd: {**sd, "step": -1}, ValueError, "state_dict['step']", ">= 0"),
    load_case("hyperparameters-missing-key", _drop_hyper_lr, ValueError,
              "state_dict['hyperparameters']", "'lr'"),
    load_case("hyperparameters-bad-lr", lambda sd: {**sd, "hyperparameters": {**sd["hyperparameters"], "lr": -1.0}},
              ValueError, "lr", ">= 0"),
    load_case("state-not-a-dict", lambda sd: {**sd, "state": list(sd["state"].items())}, TypeError,
              "state_dict['state']", "dict"),
    load_case("state-key-not-in-params", _add_state_key, ValueError, "'fc3.w'", "parameters do not have"),
    load_case("unknown-buffer", lambda sd: _set_buffer(sd, np.zeros((3, 3), np.float32), "bogus"), ValueError,
              "['fc2.w']", "'bogus'", "expected one of"),
    load_case("buffer-wrong-shape", lambda sd: _set_buffer(sd, np.zeros((3, 4), np.float32)), ValueError,
              "['fc2.w']", "shape (3, 3)"),
    load_case("buffer-int32", lambda sd: _set_buffer(sd, np.zeros((3, 3), np.int32)), TypeError,
              "['fc2.w']", "float32"),
    load_case("buffer-is-list", lambda sd: _set_buffer(sd, np.zeros((3, 3), np.float32).tolist()), TypeError,
              "['fc2.w']", "NumPy array"),
    load_case("buffer-float64-for-float32-param", lambda sd: _set_buffer(sd, np.zeros((3, 3), np.float64)),
              TypeError, "['fc2.w']", "float32"),
]


def _assert_load_fails_cleanly(w: Warm, bad_sd: Any, exc: type, words: Tuple[str, ...]) -> None:
    before = snapshot(w.opt, params=w.params)
    with pytest.raises((TypeError, ValueError)) as info:
        w.opt.load_state_dict(bad_sd)
    assert info.type is exc, f"expected {exc.__name__}, got {info.type.__name__}: {info.value}"
    assert_message(info.value, *words)
    assert_unchanged(before, snapshot(w.opt, params=w.params))
    w.assert_continues_like_twin()


@pytest.mark.parametrize("corrupt, exc, words", LOAD_CASES)
def test_bad_load_state_dict_changes_nothing(factory, corrupt, exc, words):
    w = warm_up(factory)
    _assert_load_fails_cleanly(w, corrupt(w.opt.state_dict()), exc, words)



@pytest.mark.parametrize("name, buffer", [
    ("adam", "exp_avg"),
    ("adagrad", "sum"),
    ("rmsprop-momentum", "square_avg"),
    pytest.param("adamw-amsgrad", "max_exp_avg_sq"),
    pytest.param("rmsprop-momentum", "momentum_buffer"),
    pytest.param("sgd-momentum", "momentum_buffer"),
    ("adafactor", "col_var"),
])
def test_load_state_dict_buffer_missing_for_one_key(name, buffer):
    w = warm_up(FACTORIES[name])
    sd = w.opt.state_dict()
    del sd["state"]["fc2.w"][buffer]
    _assert_load_fails_cleanly(w, sd, ValueError, ("'fc2.w'", repr(buffer)))


# ---------------------------------------------------------------------------
# memory-sharing checks must hold across calls and for every layout
# ---------------------------------------------------------------------------

def packed_params() -> dict:
    """All params as views into one buffer at fixed offsets (a flat-buffer
    model). Address order: fc2.b < fc1.w < fc1.b < fc2.w."""
    src = make_tree(0)
    base = np.zeros(64, np.float32)
    params = {"fc1": {"w": base[4:16].reshape(4, 3), "b": base[16:19]},
              "fc2": {"w": base[32:41].reshape(3, 3), "b": base[0:3]}}
    for path, leaf in iter_leaves(params):
        layer, name = path.split(".")
        leaf[...] = src[layer][name]
    return params


@pytest.mark.parametrize("after_failed_alias", [False, True], ids=["fresh", "after-failed-alias-call"])
def test_grad_aliasing_another_param_is_caught_with_packed_params(factory, after_failed_alias):
    """A failed call (two params sharing memory) must not leave a stale
    overlap cache that lets a later aliasing grad through."""
    opt = factory()
    params = packed_params()
    opt.update(params, make_tree(100))
    if after_failed_alias:
        aliased = shallow(params)
        aliased["fc2"]["b"] = params["fc1"]["b"]
        with pytest.raises(ValueError):
            opt.update(aliased, make_tree(101))
    grads = make_tree(102)
    grads["fc2"]["b"] = params["fc1"]["b"]
    before = snapshot(opt, params=params, grads=grads)
    with pytest.raises(ValueError) as info:
        opt.update(params, grads)
    assert_message(info.value, "grads['fc2.b']", "params['fc1.b']", "copy()")
    assert_unchanged(before, snapshot(opt, params=params, grads=grads))


def test_overlap_check_after_reset_and_failed_bigger_structure(factory):
    opt = factory()
    params = make_tree(0)
    opt.update(params, make_tree(100))
    opt.reset()
    bigger, bigger_grads = shallow(params), make_tree(101)
    bigger["fc3"] = {"b": params["fc1"]["b"]}          # shares memory: rejected
    bigger_grads["fc3"] = {"b": np.ones(3, np.float32)}
    with pytest.raises(ValueError):
        opt.update(bigger, bigger_grads)
    grads = make_tree(102)
    grads["fc2"]["b"] = params["fc1"]["b"]
    before = snapshot(opt, params=params, grads=grads)
    with pytest.raises(ValueError) as info:
        opt.update(params, grads)
    assert_message(info.value, "grads['fc2.b']", "params['fc1.b']")
    assert_unchanged(before, snapshot(opt, params=params, grads=grads))


def test_zero_size_param_does_not_hide_overlap(factory):
    base = np.zeros(32, np.float32)
    params = {"fc1": {"w": base[0:12].reshape(4, 3), "b": base[5:5]},   # empty, inside fc1.w
              "fc2": {"w": base[8:17].reshape(3, 3), "b": base[20:23]}}  # fc2.w overlaps fc1.w
    base[:] = np.arange(32, dtype=np.float32)
    grads = {"fc1": {"w": np.ones((4, 3), np.float32), "b": np.ones(0, np.float32)},
             "fc2": {"w": np.ones((3, 3), np.float32), "b": np.ones(3, np.float32)}}
    opt = factory()
    before = snapshot(opt, params=params, grads=grads)
    with pytest.raises(ValueError) as info:
        opt.update(params, grads)
    assert_message(info.value, "params['fc2.w']", "params['fc1.w']")
    assert_unchanged(before, snapshot(opt, params=params, grads=grads))


# ---------------------------------------------------------------------------
# fa.global_norm / fa.clip_by_global_norm / fa.sanitize
# ---------------------------------------------------------------------------

GRAD_FNS = {
    "global_norm": fa.global_norm,
    "clip_by_global_norm": lambda g: fa.clip_by_global_norm(g, 1e-3),  # would scale everything
    "sanitize": fa.sanitize,
}
WRITERS = ["clip_by_global_norm", "sanitize"]


def grads_for_utils() -> dict:
    g = make_tree(200)
    g["fc1"]["w"][0, 0] = np.nan  # something sanitize would change in an earlier key
    return g


def _read_only(g):
    g["fc2"]["w"] = g["fc2"]["w"].copy()
    g["fc2"]["w"].setflags(write=False)


UTIL_CASES = [  # (id, corrupt, functions, exception, words)
    *[(f"dtype_{n}", (lambda g, dt=dt: g["fc2"].__setitem__("w", g["fc2"]["w"].astype(dt))), list(GRAD_FNS),
       TypeError, ("grads['fc2.w']", "astype(np.float32)")) for n, dt in BAD_DTYPES],
    ("transposed", lambda g: g["fc2"].__setitem__("w", g["fc2"]["w"].T), list(GRAD_FNS), ValueError,
     ("grads['fc2.w']", "C-contiguous", "np.ascontiguousarray")),
    ("list", lambda g: g["fc2"].__setitem__("b", g["fc2"]["b"].tolist()), list(GRAD_FNS), TypeError,
     ("grads['fc2.b']", "got list", "np.asarray")),
    ("nested_list", lambda g: g["fc2"].__setitem__("w", g["fc2"]["w"].tolist()), list(GRAD_FNS), TypeError,
     ("grads['fc2.w", "got list", "np.asarray")),
    ("read_only", _read_only, WRITERS, ValueError, ("grads['fc2.w']", "read-only", "copy()")),
]
UTIL_PARAMS = [pytest.param(fn, corrupt, exc, words, id=f"{fn}-{cid}")
               for cid, corrupt, fns, exc, words in UTIL_CASES for fn in fns]
UTIL_PARAMS += [pytest.param(fn, lambda g: g["fc2"].__setitem__("b", unaligned_copy(g["fc2"]["b"])), ValueError,
                             ("grads['fc2.b']", "aligned", "copy()"), id=f"{fn}-unaligned")
                for fn in GRAD_FNS]


@pytest.mark.parametrize("fn, corrupt, exc, words", UTIL_PARAMS)
def test_grad_utils_reject_bad_arrays(fn, corrupt, exc, words):
    grads = grads_for_utils()
    corrupt(grads)
    before = snapshot(None, grads=grads)
    with pytest.raises((TypeError, ValueError)) as info:
        GRAD_FNS[fn](grads)
    assert info.type is exc, f"expected {exc.__name__}, got {info.type.__name__}: {info.value}"
    assert_message(info.value, *words)
    assert_unchanged(before, snapshot(None, grads=grads))


def test_global_norm_accepts_read_only():
    grads = grads_for_utils()
    grads["fc1"]["w"][0, 0] = 1.0
    expected = fa.global_norm(grads)
    _read_only(grads)
    assert fa.global_norm(grads) == expected


@pytest.mark.parametrize("max_norm", [0.0, -1.0, float("nan"), float("inf")])
def test_clip_rejects_bad_max_norm(max_norm):
    grads = make_tree(200)
    before = snapshot(None, grads=grads)
    with pytest.raises(ValueError) as info:
        fa.clip_by_global_norm(grads, max_norm)
    assert_message(info.value, "max_norm", "> 0")
    assert_unchanged(before, snapshot(None, grads=grads))


@pytest.mark.parametrize("max_norm", ["x", None])
def test_clip_rejects_non_number_max_norm(max_norm):
    grads = make_tree(200)
    before = snapshot(None, grads=grads)
    with pytest.raises(TypeError) as info:
        fa.clip_by_global_norm(grads, max_norm)
    assert_message(info.value, "max_norm", "real number")
    assert_unchanged(before, snapshot(None, grads=grads))


def test_clip_rejects_same_array_under_two_keys():
    grads = make_tree(200)
    grads["fc2"]["b"] = grads["fc1"]["b"]
    before = snapshot(None, grads=grads)
    with pytest.raises(ValueError) as info:
        fa.clip_by_global_norm(grads, 1e-3)
    assert_message(info.value, "grads['fc2.b']", "grads['fc1.b']")
    assert_unchanged(before, snapshot(None, grads=grads))
