"""Error hints for arrays from torch, JAX and other buffer owners (issue 16).

Each refusal must (1) name the key, (2) give advice that works when followed
(the test follows it and checks that the caller's object is then updated, or
for JAX that the NumPy copies are), (3) never suggest a copy presented as the
caller's array, and (4) change nothing: not the foreign object, not the other
parameters, not the optimizer.
"""

import array

import numpy as np
import pytest

import fastadapt as fa

JAX_COPY = ("JAX arrays are immutable, so they cannot be updated in place and a copy is needed: "
            "convert once, e.g. params = {k: np.array(v) for k, v in params.items()}, keep passing "
            "and using those NumPy arrays (the optimizer updates them), and convert back with "
            "jnp.asarray(p) where JAX needs them")
TORCH_SHARE = "store p.detach().numpy() in the structure: it shares the tensor's memory, so every update reaches the tensor"
NONCONTIG_TORCH = ("the tensor is a non-contiguous view (e.g. transposed) and the kernels need contiguous "
                   "memory; a contiguous copy (.contiguous(), np.ascontiguousarray) would no longer update "
                   "the original tensor, so make the original contiguous: store the contiguous tensor it views "
                   "(e.g. w rather than w.T, with the gradient laid out the same way), or make a Parameter "
                   "contiguous in place (p.data = p.data.contiguous()) before taking the view")
NONCONTIG_NUMPY = ("params['w']: expected a C-contiguous array, got a non-contiguous view of shape (3, 2); "
                   "fastadapt never copies silently: it is updated in place, and a contiguous copy "
                   "(np.ascontiguousarray) would no longer update the original, so make the original "
                   "contiguous: store the contiguous array this view comes from (e.g. w rather than w.T, "
                   "with the gradient laid out the same way) in the structure")


def _grads():
    return {"a": np.full(4, 0.5, np.float32), "w": np.full((3, 2), 0.25, np.float32)}


def _refused(params, grads, exc):
    """Update with a bad leaf under 'w': returns the message; checks nothing moved."""
    opt = fa.Adam(lr=0.1)
    a_before = params["a"].copy()
    with pytest.raises(exc) as info:
        opt.update(params, grads)
    assert np.array_equal(params["a"], a_before)
    assert opt.step_count == 0 and not opt.state
    return str(info.value)


def _params(w):
    return {"a": np.arange(4, dtype=np.float32), "w": w}


# --- torch -------------------------------------------------------------------

def test_torch_tensor_refused_then_its_numpy_view_is_updated():
    torch = pytest.importorskip("torch")
    t = torch.arange(6, dtype=torch.float32).reshape(3, 2)
    before = t.clone()
    msg = _refused(_params(t), _grads(), TypeError)
    assert msg == f"params['w']: expected a float32 or float64 NumPy array, got Tensor; {TORCH_SHARE}"
    assert torch.equal(t, before)
    # Following the advice: the tensor itself moves.
    fa.Adam(lr=0.1).update(_params(t.detach().numpy()), _grads())
    assert not torch.equal(t, before)


def test_torch_parameter_requiring_grad():
    torch = pytest.importorskip("torch")
    p = torch.nn.Parameter(torch.arange(6, dtype=torch.float32).reshape(3, 2))
    before = p.detach().clone()
    msg = _refused(_params(p), _grads(), TypeError)
    assert msg == (f"params['w']: expected a float32 or float64 NumPy array, got Parameter; {TORCH_SHARE} "
                   f"(.numpy() alone refuses a tensor that requires grad)")
    assert torch.equal(p.detach(), before) and p.requires_grad
    with pytest.raises(RuntimeError):  # why the hint does not say np.asarray(p)
        np.asarray(p)
    fa.Adam(lr=0.1).update(_params(p.detach().numpy()), _grads())
    assert not torch.equal(p.detach(), before)


def test_torch_transposed_view_is_refused_without_a_link_breaking_copy():
    torch = pytest.importorskip("torch")
    base = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    view = base.T
    before = base.clone()
    msg = _refused(_params(view), _grads(), TypeError)
    assert msg == (f"params['w']: expected a float32 or float64 NumPy array, got Tensor; {NONCONTIG_TORCH}; "
                   f"then {TORCH_SHARE}")
    assert "store np.ascontiguousarray" not in msg
    # Its NumPy view is refused the same way, with the NumPy wording.
    assert _refused(_params(view.detach().numpy()), _grads(), ValueError) == NONCONTIG_NUMPY
    assert torch.equal(base, before)
    # Following the advice: store the contiguous tensor it views, gradient laid out like it.
    grads = _grads()
    grads["w"] = np.ascontiguousarray(grads["w"].T)
    fa.Adam(lr=0.1).update(_params(base.detach().numpy()), grads)
    assert not torch.equal(base, before)


def test_torch_parameter_transposed_and_float16():
    torch = pytest.importorskip("torch")
    p = torch.nn.Parameter(torch.zeros(2, 3, dtype=torch.float16))
    msg = _refused(_params(p), _grads(), TypeError)
    assert msg.startswith("params['w']: expected a float32 or float64 NumPy array, got Parameter; the tensor is "
                          "torch.float16; convert the tensor itself first (p.data = p.data.float()), since a "
                          "converted copy would not be updated; ")
    assert torch.equal(p.detach(), torch.zeros(2, 3, dtype=torch.float16))


def test_torch_gradient_hint_is_a_view():
    torch = pytest.importorskip("torch")
    params = _params(np.zeros((3, 2), np.float32))
    grads = _grads()
    grads["w"] = torch.full((3, 2), 0.25)
    opt = fa.Adam(lr=0.1)
    with pytest.raises(TypeError) as info:
        opt.update(params, grads)
    assert str(info.value) == ("grads['w']: expected a NumPy array like params['w'] (float32, shape (3, 2)), got "
                               "Tensor; pass g.detach().numpy() (a view of the tensor's memory, no copy)")
    assert not params["w"].any() and opt.step_count == 0
    grads["w"] = grads["w"].detach().numpy()
    opt.update(params, grads)
    assert params["w"].all()


def test_torch_gradient_clipped_in_place_hint():
    torch = pytest.importorskip("torch")
    g = torch.full((3,), 10.0)
    with pytest.raises(TypeError) as info:
        fa.clip_by_global_norm({"g": g}, 1.0)
    assert "store g.detach().numpy() in the structure: it shares the tensor's memory" in str(info.value)
    assert torch.equal(g, torch.full((3,), 10.0))
    fa.clip_by_global_norm({"g": g.detach().numpy()}, 1.0)
    assert float(g.norm()) == pytest.approx(1.0, rel=1e-6)


# --- JAX ---------------------------------------------------------------------

def test_jax_array_needs_a_copy_and_says_how_to_keep_it():
    jnp = pytest.importorskip("jax.numpy")
    x = jnp.arange(6, dtype=jnp.float32).reshape(3, 2)
    msg = _refused(_params(x), _grads(), TypeError)
    assert msg == f"params['w']: expected a float32 or float64 NumPy array, got {type(x).__name__}; {JAX_COPY}"
    # Following the advice: NumPy copies, updated and converted back.
    params = {k: np.array(v) for k, v in _params(x).items()}
    fa.Adam(lr=0.1).update(params, _grads())
    assert not np.array_equal(params["w"], np.asarray(x))
    assert np.array_equal(np.asarray(jnp.asarray(params["w"])), params["w"])


def test_numpy_view_of_jax_array_is_read_only():
    jnp = pytest.importorskip("jax.numpy")
    x = jnp.arange(6, dtype=jnp.float32).reshape(3, 2)
    view = np.asarray(x)  # the old hint's suggestion: read-only
    if view.flags.writeable:
        pytest.skip("this JAX version hands out writable NumPy views")
    msg = _refused(_params(view), _grads(), ValueError)
    assert msg == ("params['w']: array is read-only, but it is updated in place; it is a read-only view of a "
                   "JAX array (np.asarray of a jax.Array); " + JAX_COPY)
    assert np.array_equal(np.asarray(x), np.arange(6, dtype=np.float32).reshape(3, 2))


def test_jax_gradient_read_only_view_is_enough():
    jnp = pytest.importorskip("jax.numpy")
    params = _params(np.zeros((3, 2), np.float32))
    grads = _grads()
    grads["w"] = jnp.full((3, 2), 0.25, dtype=jnp.float32)
    with pytest.raises(TypeError) as info:
        fa.Adam(lr=0.1).update(params, grads)
    assert str(info.value).endswith("; pass np.asarray(g) (a read-only view of the JAX array is fine: "
                                    "gradients are only read)")
    assert not params["w"].any()
    grads["w"] = np.asarray(grads["w"])
    fa.Adam(lr=0.1).update(params, grads)
    assert params["w"].all()


# --- values traced by JAX or autograd (the optimizer called inside the transformed function) ---

TRACED_JAX = ("it is a JAX tracer, the stand-in that jax.grad, jax.jit or jax.vmap passes through the function "
              "it transforms, so the optimizer was called inside that function (a jitted training step, say); "
              "transform only the loss and call opt.update after it returns: grads = jax.grad(loss)(params, "
              "batch), then opt.update(params, grads) with the params kept as NumPy arrays and each gradient "
              "converted with np.asarray(g)")
TRACED_AUTOGRAD = ("it is an autograd box, the stand-in that autograd's grad passes through the function it "
                   "differentiates, so the optimizer was called inside that function; call opt.update outside "
                   "it, with the gradients grad(loss)(params, batch) returns (plain NumPy arrays)")


@pytest.mark.parametrize("transform", ["grad", "jit"])
def test_jax_tracer_says_to_update_outside_the_transformed_function(transform):
    jax = pytest.importorskip("jax")
    jnp = pytest.importorskip("jax.numpy")
    params = _params(np.arange(6, dtype=np.float32).reshape(3, 2))
    seen = []

    def loss(w):
        as_param = _refused(_params(w), _grads(), TypeError)
        as_grad = _refused(_params(np.zeros((3, 2), np.float32)), {**_grads(), "w": w * 0.5}, TypeError)
        with pytest.raises(Exception):  # why the hint does not suggest np.asarray / np.array of it
            np.asarray(w)
        seen.append((type(w).__name__, as_param, as_grad))
        return jnp.sum(w * w)

    (jax.grad(loss) if transform == "grad" else jax.jit(loss))(jnp.asarray(params["w"]))
    [(name, as_param, as_grad)] = seen
    assert as_param == f"params['w']: expected a float32 or float64 NumPy array, got {name}; {TRACED_JAX}"
    assert as_grad == (f"grads['w']: expected a NumPy array like params['w'] (float32, shape (3, 2)), got {name}; "
                       f"{TRACED_JAX}")
    # Following the advice: jax.grad outside, its gradients as NumPy arrays, the params updated.
    before = params["w"].copy()
    grads = jax.grad(lambda p: sum(jnp.sum(v * v) for v in p.values()))(params)
    fa.Adam(lr=0.1).update(params, {k: np.asarray(g) for k, g in grads.items()})
    assert not np.array_equal(params["w"], before)


def test_autograd_box_says_to_update_outside_grad():
    autograd = pytest.importorskip("autograd")
    anp = pytest.importorskip("autograd.numpy")
    params = _params(np.arange(6, dtype=np.float32).reshape(3, 2))
    seen = []

    def loss(p):
        with pytest.raises(TypeError) as info:  # the whole tree is one box (a DictBox)
            fa.Adam(lr=0.1).update(p, _grads())
        seen.append(str(info.value))
        seen.append(_refused(_params(p["w"]), _grads(), TypeError))
        seen.append(_refused(_params(np.zeros((3, 2), np.float32)), {**_grads(), "w": p["w"] * 0.5}, TypeError))
        with pytest.raises(ValueError):  # why the hint does not suggest np.asarray of it
            np.asarray(p["w"], dtype=np.float32)
        return anp.sum(p["w"] * p["w"]) + anp.sum(p["a"])

    autograd.grad(loss)(params)
    assert seen == [f"params: expected a float32 or float64 NumPy array, got DictBox; {TRACED_AUTOGRAD}",
                    f"params['w']: expected a float32 or float64 NumPy array, got ArrayBox; {TRACED_AUTOGRAD}",
                    f"grads['w']: expected a NumPy array like params['w'] (float32, shape (3, 2)), got ArrayBox; "
                    f"{TRACED_AUTOGRAD}"]
    # Following the advice: the gradients grad returns are plain arrays of the params' dtype.
    before = params["w"].copy()
    grads = autograd.grad(lambda p: anp.sum(p["w"] * p["w"]) + anp.sum(p["a"]))(params)
    assert all(type(g) is np.ndarray and g.dtype == np.float32 for g in grads.values())
    fa.Adam(lr=0.1).update(params, grads)
    assert not np.array_equal(params["w"], before)


# --- plain NumPy and buffer owners ---------------------------------------------

def test_numpy_non_contiguous_param_does_not_suggest_a_copy():
    base = np.arange(6, dtype=np.float32).reshape(2, 3)
    msg = _refused(_params(base.T), _grads(), ValueError)
    assert msg == NONCONTIG_NUMPY
    assert np.array_equal(base, np.arange(6, dtype=np.float32).reshape(2, 3))


def test_read_only_numpy_param_hint():
    w = np.zeros((3, 2), np.float32)
    w.setflags(write=False)
    msg = _refused(_params(w), _grads(), ValueError)
    assert msg == ("params['w']: array is read-only, but it is updated in place; if you own its memory, "
                   "a.setflags(write=True); otherwise a copy is needed (a.copy()): store the copy in the "
                   "structure and keep using it, since updates do not reach the read-only original")


@pytest.mark.parametrize("make", [lambda a: memoryview(a), lambda a: array.array("f", a.ravel().tolist())],
                         ids=["memoryview", "array.array"])
def test_buffer_protocol_owner_is_viewed_not_copied(make):
    owner = make(np.arange(6, dtype=np.float32))
    params = {"a": np.arange(4, dtype=np.float32), "w": owner}
    grads = {"a": np.full(4, 0.5, np.float32), "w": np.full(6, 0.25, np.float32)}
    before = bytes(owner)
    msg = _refused(params, grads, TypeError)
    assert msg == (f"params['w']: expected a float32 or float64 NumPy array, got {type(owner).__name__}; it "
                   f"exposes its memory through the buffer protocol, so store np.asarray(p) in the structure: "
                   f"a NumPy view of the same memory that is updated in place (it must be writable, "
                   f"float32/float64 and C-contiguous)")
    assert bytes(owner) == before
    params["w"] = np.asarray(owner)
    fa.Adam(lr=0.1).update(params, grads)
    assert bytes(owner) != before


def test_list_param_keeps_the_generic_hint():
    msg = _refused(_params([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]]), _grads(), TypeError)
    assert msg == ("params['w']: expected a float32 or float64 NumPy array, got list; parameters are updated in "
                   "place, so store a NumPy array (np.asarray(x, dtype=np.float32)) in the structure and keep "
                   "using that array")


def test_numpy_scalar_param_is_immutable_and_a_0d_array_is_updated():
    # np.float64 has an __array_interface__, but np.asarray of it is a new array, not a view
    params = {"a": np.arange(4, dtype=np.float32), "b": np.float64(0.5)}
    grads = {"a": np.full(4, 0.5, np.float32), "b": np.array(1.0)}
    msg = _refused(params, grads, TypeError)
    assert msg == ("params['b']: expected a float32 or float64 NumPy array, got float64; a NumPy scalar (float64) "
                   "is immutable, so it cannot be updated in place: store a 0-d array (np.array(x, "
                   "dtype=np.float64)) in the structure and keep using that array")
    params["b"] = np.array(params["b"], dtype=np.float64)
    fa.Adam(lr=0.1).update(params, grads)
    assert params["b"].shape == () and abs(params["b"] - 0.4) < 1e-6   # Adam's first step: lr * sign(g)


def test_numpy_scalar_gradient_becomes_a_0d_array():
    params = {"a": np.arange(4, dtype=np.float32), "b": np.array(0.5, np.float32)}
    grads = {"a": np.full(4, 0.5, np.float32), "b": np.float32(1.0)}
    with pytest.raises(TypeError) as info:
        fa.Adam(lr=0.1).update(params, grads)
    assert str(info.value).endswith("got float32; pass np.asarray(g, dtype=np.float32) (a NumPy scalar becomes a "
                                    "0-d array)")
    grads["b"] = np.asarray(grads["b"], dtype=np.float32)
    fa.Adam(lr=0.1).update(params, grads)
    assert abs(params["b"] - 0.4) < 1e-6


class _DLPackOnly:
    """An owner that shares its memory only through DLPack (like a CPU tensor of another library)."""

    def __init__(self, a):
        self._a = a

    def __dlpack__(self, **kwargs):
        return self._a.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self._a.__dlpack_device__()


class _InterfaceOnly:
    """An owner that shares its memory only through __array_interface__."""

    def __init__(self, a):
        self._a = a
        self.__array_interface__ = a.__array_interface__


@pytest.mark.parametrize("cls, how, conv", [(_DLPackOnly, "DLPack", "np.from_dlpack(p)"),
                                            (_InterfaceOnly, "__array_interface__", "np.asarray(p)")],
                         ids=["dlpack", "array_interface"])
def test_foreign_memory_owner_is_viewed_not_copied(cls, how, conv):
    memory = np.arange(6, dtype=np.float32).reshape(3, 2)
    owner = cls(memory)
    msg = _refused(_params(owner), _grads(), TypeError)
    view = np.from_dlpack(owner) if cls is _DLPackOnly else np.asarray(owner)
    if cls is _DLPackOnly and not view.flags.writeable:
        # NumPy 1.x: np.from_dlpack views are read-only, so the hint says so and offers the copy
        from fastadapt._interop import FROM_DLPACK_WRITABLE
        assert not FROM_DLPACK_WRITABLE
        assert msg == (f"params['w']: expected a float32 or float64 NumPy array, got {cls.__name__}; it exposes "
                       f"its memory through DLPack, but NumPy {np.__version__}'s np.from_dlpack gives a read-only "
                       f"view (NumPy >= 2 gives a writable one): upgrade NumPy, or store a NumPy copy "
                       f"(np.from_dlpack(p).copy()) in the structure, keep using it, and copy it back into the "
                       f"original yourself")
        assert np.array_equal(memory, np.arange(6, dtype=np.float32).reshape(3, 2))
        _refused(_params(view), _grads(), ValueError)
        return
    assert msg == (f"params['w']: expected a float32 or float64 NumPy array, got {cls.__name__}; it exposes its "
                   f"memory through {how}, so store {conv} in the structure: a NumPy view of the same memory "
                   f"that is updated in place (it must be writable, float32/float64 and C-contiguous)")
    assert np.array_equal(memory, np.arange(6, dtype=np.float32).reshape(3, 2))
    fa.Adam(lr=0.1).update(_params(view), _grads())
    assert not np.array_equal(memory, np.arange(6, dtype=np.float32).reshape(3, 2))


def test_lr_find_and_schedule_free_eval_hint_for_jax_views():
    jnp = pytest.importorskip("jax.numpy")
    x = jnp.arange(6, dtype=jnp.float32).reshape(3, 2)
    view = np.asarray(x)
    if view.flags.writeable:
        pytest.skip("this JAX version hands out writable NumPy views")
    opt = fa.ScheduleFreeAdamW(lr=0.1)
    params = {"w": np.zeros((3, 2), np.float32)}
    opt.update(params, {"w": np.ones((3, 2), np.float32)})
    with pytest.raises(ValueError) as info:
        opt.eval({"w": view})
    assert str(info.value).endswith("it is a read-only view of a JAX array (np.asarray of a jax.Array); " + JAX_COPY)
    with pytest.raises(TypeError) as info:
        opt.eval({"w": x})
    assert str(info.value).endswith(f"got {type(x).__name__}; {JAX_COPY}")
