"""Advice for arrays that come from outside NumPy (torch, JAX, buffers).

fastadapt updates parameters in place through their memory and never copies
silently, so a hint must never suggest a call whose result no longer shares
memory with the caller's array while implying that updates still reach it:
for an immutable array (JAX) it says that a copy is needed and how to keep
using it; for a non-contiguous view it says that a copy would break the link
and that the original must be made contiguous. Only the error paths call
these functions; they read attributes of the object and never modify it.
A value being traced by JAX or autograd (the optimizer called inside the
function they transform) has no memory at all: its hint says where to call
the optimizer instead.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

JAX_COPY = ("JAX arrays are immutable, so they cannot be updated in place and a copy is needed: "
            "convert once, e.g. params = {k: np.array(v) for k, v in params.items()}, keep passing "
            "and using those NumPy arrays (the optimizer updates them), and convert back with "
            "jnp.asarray(p) where JAX needs them")


def _module(obj: Any) -> str:
    return (getattr(type(obj), "__module__", "") or "").split(".")[0]


# A value inside a function that JAX or autograd is transforming is a stand-in
# (a JAX Tracer, an autograd Box) with no memory to view or copy: np.asarray
# of it raises (JAX) or makes an object array (autograd). The only fix is to
# call the optimizer outside the transformed function.
TRACED = {
    "jax": ("it is a JAX tracer, the stand-in that jax.grad, jax.jit or jax.vmap passes through the function "
            "it transforms, so the optimizer was called inside that function (a jitted training step, say); "
            "transform only the loss and call opt.update after it returns: grads = jax.grad(loss)(params, "
            "batch), then opt.update(params, grads) with the params kept as NumPy arrays and each gradient "
            "converted with np.asarray(g)"),
    "autograd": ("it is an autograd box, the stand-in that autograd's grad passes through the function it "
                 "differentiates, so the optimizer was called inside that function; call opt.update outside "
                 "it, with the gradients grad(loss)(params, batch) returns (plain NumPy arrays)"),
}


def traced_by(obj: Any) -> str:
    """'jax' or 'autograd' for a value being traced by that library ('' otherwise)."""
    for cls in getattr(type(obj), "__mro__", ()):
        top = (getattr(cls, "__module__", "") or "").split(".")[0]
        if top in ("jax", "jaxlib") and cls.__name__ == "Tracer":
            return "jax"
        if top == "autograd" and cls.__name__ == "Box":
            return "autograd"
    return ""


def is_jax(obj: Any) -> bool:
    return _module(obj) in ("jax", "jaxlib")


def is_torch(obj: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.Tensor)


def _jax_base(arr: np.ndarray) -> bool:
    """A NumPy array that views a JAX array's memory (np.asarray(jax_array))."""
    seen = 0
    base: Any = arr  # (then whatever owns the memory: an array, a memoryview, a JAX buffer)
    while base is not None and seen < 16:
        if is_jax(base):
            return True
        # np.asarray(jax_array) views a memoryview whose .obj is the JAX buffer.
        base = base.obj if isinstance(base, memoryview) else getattr(base, "base", None)
        seen += 1
    return False


def _exposes_memory(obj: Any) -> str:
    """How an object shares its memory with NumPy without a copy ('' if it does not)."""
    if hasattr(obj, "__array_interface__") or hasattr(obj, "__array_struct__"):
        return "__array_interface__"
    try:
        with memoryview(obj):
            return "the buffer protocol"
    except TypeError:
        pass
    if hasattr(obj, "__dlpack__"):
        return "DLPack"
    return ""


def _torch_param(t: Any, name: str) -> str:
    """A torch tensor as a parameter (written in place)."""
    if t.device.type != "cpu":
        return (f"the tensor is on {t.device} and fastadapt updates CPU memory, so a copy is needed: keep "
                f"{name} = {name}.detach().cpu().numpy() in the structure, use that array, and copy it back "
                f"with tensor.data.copy_(torch.from_numpy({name})) when torch needs it")
    fix = []
    if t.dtype not in (_torch().float32, _torch().float64):
        fix.append(f"the tensor is {t.dtype}; convert the tensor itself first ({name}.data = {name}.data.float()), "
                   f"since a converted copy would not be updated")
    if not t.is_contiguous():
        fix.append("the tensor is a non-contiguous view (e.g. transposed) and the kernels need contiguous "
                   "memory; a contiguous copy (.contiguous(), np.ascontiguousarray) would no longer update "
                   "the original tensor, so make the original contiguous: store the contiguous tensor it views "
                   "(e.g. w rather than w.T, with the gradient laid out the same way), or make a Parameter "
                   f"contiguous in place ({name}.data = {name}.data.contiguous()) before taking the view")
    fix.append(("then " if fix else "") + f"store {name}.detach().numpy() in the structure: it shares the tensor's memory, so every "
               f"update reaches the tensor" + (" (.numpy() alone refuses a tensor that requires grad)"
                                               if t.requires_grad else ""))
    return "; ".join(fix)


def _torch() -> Any:
    return sys.modules["torch"]


def not_array(obj: Any, role: str, written: bool, dtype: str = "float32") -> str:
    """Advice after '<role>[key]: expected a NumPy array, got <type>'."""
    name = "p" if role == "params" else "g"
    traced = traced_by(obj)
    if traced:
        return TRACED[traced]
    if is_jax(obj):
        if not written:
            return f"pass np.asarray({name}) (a read-only view of the JAX array is fine: gradients are only read)"
        return JAX_COPY
    if is_torch(obj):
        if written:
            return _torch_param(obj, name)
        if obj.device.type != "cpu":
            return f"pass {name}.detach().cpu().numpy()"
        return f"pass {name}.detach().numpy() (a view of the tensor's memory, no copy)"
    if isinstance(obj, np.generic):
        # A NumPy scalar (np.float64(0.5), what x.mean() returns) has an
        # __array_interface__, but it is immutable and np.asarray makes a new array.
        if written:
            kind = obj.dtype.name if obj.dtype in (np.float32, np.float64) else dtype
            return (f"a NumPy scalar ({type(obj).__name__}) is immutable, so it cannot be updated in place: "
                    f"store a 0-d array (np.array(x, dtype=np.{kind})) in the structure and keep using that array")
        return f"pass np.asarray({name}, dtype=np.{dtype}) (a NumPy scalar becomes a 0-d array)"
    how = _exposes_memory(obj)
    if how:
        conv = f"np.from_dlpack({name})" if how == "DLPack" else f"np.asarray({name})"
        if written and how == "DLPack" and not FROM_DLPACK_WRITABLE:
            return (f"it exposes its memory through DLPack, but NumPy {np.__version__}'s np.from_dlpack gives a "
                    f"read-only view (NumPy >= 2 gives a writable one): upgrade NumPy, or store a NumPy copy "
                    f"(np.from_dlpack({name}).copy()) in the structure, keep using it, and copy it back into "
                    f"the original yourself")
        if written:
            return (f"it exposes its memory through {how}, so store {conv} in the structure: a NumPy view of "
                    f"the same memory that is updated in place (it must be writable, float32/float64 and "
                    f"C-contiguous)")
        return f"pass {conv} (a NumPy view of the same memory)"
    if role == "params":
        return (f"parameters are updated in place, so store a NumPy array (np.asarray(x, dtype=np.{dtype})) "
                f"in the structure and keep using that array")
    if written:
        return f"it is modified in place, so pass a NumPy array (np.asarray(x, dtype=np.{dtype})) and use that array"
    return f"pass np.asarray({'x' if role != 'grads' else 'g'}, dtype=np.{dtype})"


# NumPy 1.x marks every array np.from_dlpack makes read-only; NumPy 2 makes a
# writable view when the producer allows it.
FROM_DLPACK_WRITABLE = int(np.__version__.split(".")[0]) >= 2


def read_only(arr: np.ndarray) -> str:
    """Advice after '<role>[key]: array is read-only, but it is updated in place'."""
    if _jax_base(arr):
        return "it is a read-only view of a JAX array (np.asarray of a jax.Array); " + JAX_COPY
    return ("if you own its memory, a.setflags(write=True); otherwise a copy is needed (a.copy()): store "
            "the copy in the structure and keep using it, since updates do not reach the read-only original")


def non_contiguous(written: bool, name: str) -> str:
    """Advice after '<role>[key]: expected a C-contiguous array, got a non-contiguous view'."""
    if not written:
        return f"pass np.ascontiguousarray({name})"
    return ("it is updated in place, and a contiguous copy (np.ascontiguousarray) would no longer update the "
            "original, so make the original contiguous: store the contiguous array this view comes from "
            "(e.g. w rather than w.T, with the gradient laid out the same way) in the structure")
