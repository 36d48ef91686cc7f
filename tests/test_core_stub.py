"""The hand-kept stub python/fastadapt/_core.pyi agrees with the built
extension: the same public names, and for every function and method whose
signature pybind11 writes into its docstring, the same parameters (names,
order, which have defaults). Needs no mypy: the stub is read with ast."""

import ast
import re
from pathlib import Path

import pytest

from fastadapt import _core

STUB = Path(_core.__file__).with_name("_core.pyi")
if not STUB.exists():  # an installed copy without its stub is itself the bug
    STUB = Path(__file__).resolve().parents[1] / "python" / "fastadapt" / "_core.pyi"

# pybind11's first docstring line: name(self: T, a: int, b: float = 1.0, *args) -> R
_SIGNATURE = re.compile(r"^(\w+)\((.*)\) -> .*$")


def _stub_tree():
    return ast.parse(STUB.read_text(), filename=str(STUB))


def _stub_names():
    names = set()
    for node in _stub_tree().body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def _core_names():
    return {n for n in vars(_core) if not (n.startswith("__") and n.endswith("__"))}


def _split_params(text):
    """Top-level comma split (types such as dict[str, int] hold commas)."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    if text[start:].strip():
        parts.append(text[start:].strip())
    return parts


def _params_from_doc(obj):
    """[(name, has_default)] from pybind11's signature line, or None when it wrote none."""
    doc = (getattr(obj, "__doc__", None) or "").strip().splitlines()
    m = _SIGNATURE.match(doc[0]) if doc else None
    if m is None:
        return None
    out = []
    for p in _split_params(m.group(2)):
        name = p.split(":", 1)[0].split("=", 1)[0].strip()
        out.append((name, "=" in p))
    return out


def _params_from_stub(fn):
    a = fn.args
    positional = a.posonlyargs + a.args
    defaults = [False] * (len(positional) - len(a.defaults)) + [True] * len(a.defaults)
    out = [(arg.arg, d) for arg, d in zip(positional, defaults)]
    if a.vararg is not None:
        out.append(("*" + a.vararg.arg, False))
    out += [(arg.arg, d is not None) for arg, d in zip(a.kwonlyargs, a.kw_defaults)]
    if a.kwarg is not None:
        out.append(("**" + a.kwarg.arg, False))
    return out


def _stub_callables():
    """{"name" or "Class.method": ast.FunctionDef} of the stub, properties left out."""
    out = {}
    for node in _stub_tree().body:
        if isinstance(node, ast.FunctionDef):
            out[node.name] = node
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and not any(
                        isinstance(d, ast.Name) and d.id == "property" for d in item.decorator_list):
                    out[f"{node.name}.{item.name}"] = item
    return out


def _core_callables():
    out = {}
    for name in _core_names():
        obj = getattr(_core, name)
        if isinstance(obj, type):
            for attr, member in vars(obj).items():
                if (not attr.startswith("_") or attr in ("__init__", "__enter__", "__exit__")) and callable(member):
                    out[f"{name}.{attr}"] = member
        elif callable(obj):
            out[name] = obj
    return out


def test_stub_names_match_the_extension():
    stub, core = _stub_names(), _core_names()
    assert not core - stub, f"in fastadapt._core but not in _core.pyi: {sorted(core - stub)}"
    assert not stub - core, f"in _core.pyi but not in fastadapt._core: {sorted(stub - core)}"


def test_stub_methods_match_the_extension():
    stub, core = _stub_callables(), _core_callables()
    # pybind11 adds this hook to every class; it is no API.
    core = {k: v for k, v in core.items() if not k.endswith("._pybind11_conduit_v1_")}
    missing = sorted(k for k in core if k not in stub and _params_from_doc(core[k]) is not None)
    assert not missing, f"callables of fastadapt._core missing from _core.pyi: {missing}"
    extra = sorted(set(stub) - set(core))
    assert not extra, f"_core.pyi declares callables the extension lacks: {extra}"


def _compare(qualname, obj, fn):
    got = _params_from_doc(obj)
    want = _params_from_stub(fn)
    # pybind11 writes `*args` for py::args, and methods of a class take self.
    assert got == want, f"{qualname}: the extension takes {got}, _core.pyi says {want}"


@pytest.mark.parametrize("qualname", sorted(k for k, v in _core_callables().items()
                                            if not k.endswith("._pybind11_conduit_v1_")
                                            and _params_from_doc(v) is not None))
def test_stub_signature_matches(qualname):
    stub = _stub_callables()
    assert qualname in stub, f"{qualname} is missing from _core.pyi"
    obj = _core_callables()[qualname]
    _compare(qualname, obj, stub[qualname])


def test_stepper_step_parameters():
    """The call the optimizers make most, spelled out: every parameter, in order."""
    got = _params_from_doc(_core.Stepper.step)
    assert got is not None, "pybind11 wrote no signature for Stepper.step"
    assert [n for n, _ in got] == ["self", "keys", "params", "grads", "states", "tensor_group", "group_scalars",
                                   "group_flags", "policy", "max_norm", "track_norm", "t", "counts", "last_norm",
                                   "tensor_scalars", "state_scales", "masters", "rounding", "grad_addresses"]
    assert [n for n, d in got if d] == ["tensor_scalars", "state_scales", "masters", "rounding", "grad_addresses"]
