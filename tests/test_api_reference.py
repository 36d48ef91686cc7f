"""The API reference is complete.

- Every public name has a docstring: each name in ``fastadapt.__all__``; for a
  module there (``fa.tune``, ``fa.schedules``, ``fa.reference``, ...) each name
  in its ``__all__``; for each of those classes, its public methods and
  properties (a docstring inherited from a base class counts, as
  ``inspect.getdoc`` resolves it). A class needs its own docstring: a base
  class's, or the signature ``@dataclass`` writes when there is none, says
  nothing about it. A module constant needs an attribute docstring (the string
  after its assignment), the one the site shows.
- Every public name (of ``fastadapt.__all__`` and of the public modules) has an
  entry in the API reference: a ``::: fastadapt....`` directive of some page
  under docs/api/ names it, or names the module or class it belongs to (an
  alias such as ``fa.AdaGrad`` has the entry of the object it names; a public
  module has its entry through its names). The pages are parsed (nothing is
  listed here), and every directive must resolve.
- The site builds with ``mkdocs build --strict`` and prints no warning (skipped
  without the ``docs`` extra). The build reads the docstrings statically
  (mkdocstrings, griffe, numpy style): a malformed section, a cross-reference
  to an object without an entry, a broken link all fail here.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import os
import re
import subprocess
import sys
import types
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest

import fastadapt as fa

ROOT = Path(__file__).resolve().parents[1]
API_PAGES = sorted((ROOT / "docs" / "api").glob("*.md"))


# ---- the public names ---------------------------------------------------------------------------
def _module_names(module: types.ModuleType) -> List[str]:
    names = getattr(module, "__all__", None)
    if names is None:  # no __all__: what the module defines itself
        names = [n for n, v in vars(module).items() if not n.startswith("_")
                 and getattr(v, "__module__", module.__name__) == module.__name__
                 and not isinstance(v, types.ModuleType)]
    return list(names)


def public_names() -> Iterator[Tuple[str, Any]]:
    """(dotted path, object) of every name of fastadapt.__all__ and of its public modules."""
    for name in fa.__all__:
        obj = getattr(fa, name)
        yield f"fastadapt.{name}", obj
        if isinstance(obj, types.ModuleType):
            for sub in _module_names(obj):
                yield f"fastadapt.{name}.{sub}", getattr(obj, sub)


def _ours(cls: type) -> bool:
    return (cls.__module__ or "").split(".")[0] == "fastadapt"


def public_members(cls: type) -> Iterator[Tuple[str, type, Any]]:
    """(name, defining class, raw attribute) of a class's public methods,
    properties and descriptors, defined in fastadapt (not object's, tuple's, ...)."""
    for name in dir(cls):
        if name.startswith("_"):
            continue
        owner = next((k for k in cls.__mro__ if name in vars(k)), None)
        if owner is None or not _ours(owner):
            continue
        raw = vars(owner)[name]
        if isinstance(raw, (staticmethod, classmethod)):
            raw = raw.__func__
        if inspect.isfunction(raw) or isinstance(raw, property):
            yield name, owner, raw
        elif inspect.isdatadescriptor(raw) and _ours(type(raw)):  # fastadapt's validated hyperparameters
            yield name, owner, raw


# ---- docstrings ---------------------------------------------------------------------------------
def _module_ast(module_name: str) -> Optional[Tuple[ast.Module, str]]:
    spec = importlib.util.find_spec(module_name)
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    return ast.parse(Path(spec.origin).read_text(encoding="utf-8")), spec.origin


def attribute_docstring(module_name: str, name: str, depth: int = 0) -> Optional[str]:
    """The string right after ``name = ...`` where the module (or the module it
    imports ``name`` from, followed to its definition) assigns it."""
    parsed = _module_ast(module_name)
    if parsed is None or depth > 5:
        return None
    tree, origin = parsed
    body = tree.body
    for i, node in enumerate(body):
        targets: List[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, ast.AnnAssign):
            targets = [node.target]
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            after = body[i + 1] if i + 1 < len(body) else None
            if isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant) \
                    and isinstance(after.value.value, str):
                return after.value.value
            return None
    package = module_name if origin.endswith("__init__.py") else module_name.rpartition(".")[0]
    for node in body:
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if (alias.asname or alias.name) == name:
                    base = package
                    for _ in range(max(node.level - 1, 0)):
                        base = base.rpartition(".")[0]
                    source = f"{base}.{node.module}" if node.level else node.module
                    if node.level and not node.module:
                        source = base
                    return attribute_docstring(source, alias.name, depth + 1)
    return None


def _generated_dataclass_doc(cls: type) -> bool:
    try:
        text = cls.__name__ + str(inspect.signature(cls)).replace(" -> None", "")
    except (TypeError, ValueError):
        return False
    return cls.__dict__.get("__doc__") == text


def missing_docstrings() -> List[str]:
    missing: List[str] = []
    seen_members = set()
    for path, obj in public_names():
        if inspect.isclass(obj):
            own = obj.__dict__.get("__doc__")
            if not (own and own.strip()) or _generated_dataclass_doc(obj):
                missing.append(f"{path} (class: needs its own docstring)")
            for name, owner, raw in public_members(obj):
                if (owner, name) in seen_members:
                    continue
                seen_members.add((owner, name))
                if isinstance(raw, property) or inspect.isfunction(raw):
                    doc = inspect.getdoc(getattr(obj, name) if inspect.isfunction(raw) else raw)
                else:  # a descriptor instance: its own __doc__, not its class's
                    doc = raw.__doc__ if raw.__doc__ is not type(raw).__doc__ else None
                if not (doc and doc.strip()):
                    missing.append(f"{owner.__module__}.{owner.__qualname__}.{name} (member of {path})")
        elif isinstance(obj, types.ModuleType) or inspect.isfunction(obj) or inspect.isbuiltin(obj):
            if not (inspect.getdoc(obj) or "").strip():
                missing.append(path)
        else:  # a constant: the attribute docstring after its assignment
            module, _, name = path.rpartition(".")
            module_obj = importlib.import_module(module)
            if not (attribute_docstring(module_obj.__name__, name) or "").strip():
                missing.append(f"{path} (constant: needs a docstring after its assignment)")
    return missing


def test_public_names_are_many_and_include_members():
    # the check below has something to check: every kind of name is collected
    names = dict(public_names())
    assert len(names) > 150
    assert "fastadapt.tune.Hyperband" in names and "fastadapt.reference.CHUNK_ELEMENTS" in names
    members = {name for name, _, _ in public_members(fa.Adam)}
    assert {"update", "state_dict", "lr", "last_grad_norm"} <= members   # inherited ones, descriptors too
    assert not {name for name, _, _ in public_members(fa.compare.WorkloadUnavailable)}  # Exception's are not ours


def test_every_public_name_has_a_docstring():
    missing = missing_docstrings()
    assert not missing, f"{len(missing)} public names without a docstring:\n  " + "\n  ".join(missing)


def test_the_docstring_check_bites(monkeypatch):
    # A public function, a method, a class and a constant without docstrings are all reported.
    def undocumented(x):
        return x

    class Undocumented:
        def method(self):
            return 1

    monkeypatch.setattr(fa, "__all__", list(fa.__all__) + ["undocumented_fn", "Undocumented"])
    monkeypatch.setattr(fa, "undocumented_fn", undocumented, raising=False)
    Undocumented.__module__ = "fastadapt.fake"
    monkeypatch.setattr(fa, "Undocumented", Undocumented, raising=False)
    missing = missing_docstrings()
    assert "fastadapt.undocumented_fn" in missing
    assert "fastadapt.Undocumented (class: needs its own docstring)" in missing
    assert any(m.startswith("fastadapt.fake.") and ".method (member of fastadapt.Undocumented)" in m
               for m in missing)
    assert attribute_docstring("fastadapt.compare.workloads", "SUITE")
    assert attribute_docstring("fastadapt", "__version__")        # followed through the import
    assert attribute_docstring("fastadapt.reference.adam", "adam_rule") is None


# ---- the pages ----------------------------------------------------------------------------------
_DIRECTIVE = re.compile(r"^:::\s+(\S+)\s*$")


def directives(page: Path) -> Iterator[Tuple[int, str, Dict[str, Any]]]:
    """(line, identifier, options) of each ``::: identifier`` block; of the
    options only ``members`` matters here (a list, or false)."""
    lines = page.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        m = _DIRECTIVE.match(line)
        if not m:
            continue
        block = []
        for nxt in lines[i + 1:]:
            if nxt.strip() and not nxt.startswith("    "):
                break
            block.append(nxt)
        options: Dict[str, Any] = {}
        text = "\n".join(block)
        mm = re.search(r"^[ \t]*members:[ \t]*(.*)$", text, re.M)
        if mm:
            value = mm.group(1).strip()
            if value.lower() in ("false", "no", "[]"):
                options["members"] = []
            elif value.lower() in ("true", "yes"):
                options["members"] = None
            elif value.startswith("["):
                options["members"] = [v.strip().strip("'\"") for v in value.strip("[]").split(",") if v.strip()]
            else:  # a block list below
                after = text[mm.end():].splitlines()
                items = []
                for item in after:
                    im = re.match(r"^\s*-\s*(\S+)\s*$", item)
                    if not im:
                        if item.strip():
                            break
                        continue
                    items.append(im.group(1).strip("'\""))
                options["members"] = items
        yield i + 1, m.group(1), options


def resolve(identifier: str) -> Tuple[Any, Any, str]:
    """(parent, object, name) of a dotted identifier: the longest importable
    module prefix, then attributes (so ``fastadapt.schedules.cosine.cosine`` is
    the function in the module that its package's function shadows)."""
    parts = identifier.split(".")
    for k in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:k]))
        except ImportError:
            continue
        parent, name = None, parts[k - 1]
        for p in parts[k:]:
            parent, name = obj, p
            obj = getattr(obj, p)
        return parent, obj, name
    raise ImportError(identifier)


def _key(path: str, obj: Any) -> Tuple[Any, ...]:
    if inspect.isclass(obj) or inspect.isroutine(obj) or isinstance(obj, types.ModuleType):
        return ("object", id(obj))
    return ("path", path)   # a constant: by the path it is documented under


def documented_keys() -> Tuple[set, List[str]]:
    keys, errors = set(), []
    for page in API_PAGES:
        for line, identifier, options in directives(page):
            where = f"{page.relative_to(ROOT)}:{line}: ::: {identifier}"
            if identifier.startswith("fastadapt.torch") and importlib.util.find_spec("torch") is None:
                continue  # fastadapt.torch imports torch; the site itself reads it statically, without torch
            try:
                _, obj, _ = resolve(identifier)
            except (ImportError, AttributeError) as e:
                errors.append(f"{where} does not resolve ({e})")
                continue
            keys.add(_key(identifier, obj))
            members = options.get("members")
            if isinstance(obj, types.ModuleType):
                names = _module_names(obj) if members is None else members
            elif inspect.isclass(obj):
                names = [n for n in dir(obj) if not n.startswith("_")] if members is None else members
            else:
                names = []
            for n in names:
                if hasattr(obj, n):
                    keys.add(_key(f"{identifier}.{n}", getattr(obj, n)))
    return keys, errors


def test_the_pages_are_found():
    assert len(API_PAGES) >= 10, API_PAGES
    assert sum(1 for page in API_PAGES for _ in directives(page)) > 150


def test_every_directive_resolves():
    _, errors = documented_keys()
    assert not errors, "\n".join(errors)


def absent_from_pages(keys: set) -> List[str]:
    """Public names without an entry. A public module (fa.tune, fa.models, ...)
    has its entry through its names: it is present when all of them are."""
    names = list(public_names())
    absent = [path for path, obj in names if not isinstance(obj, types.ModuleType) and _key(path, obj) not in keys]
    for path, obj in names:
        if isinstance(obj, types.ModuleType) and _key(path, obj) not in keys \
                and any(p.startswith(path + ".") for p in absent):
            absent.append(f"{path} (its names above)")
    return absent


def test_every_public_name_has_an_entry_in_the_api_reference():
    keys, _ = documented_keys()
    absent = absent_from_pages(keys)
    assert not absent, (f"{len(absent)} public names have no ::: directive in docs/api/*.md (directly or as a "
                        f"member of a documented module or class):\n  " + "\n  ".join(absent))


def test_directives_are_parsed(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("# T\n\n::: fastadapt.tune\n    options:\n      members:\n        - uniform\n"
                    "        - choice\n\n::: fastadapt.Adam\n    options:\n      members: false\n\n"
                    "::: fastadapt.schedules.cosine.cosine\n", encoding="utf-8")
    found = list(directives(page))
    assert [(i, o.get("members", "all")) for _, i, o in found] == [
        ("fastadapt.tune", ["uniform", "choice"]), ("fastadapt.Adam", []),
        ("fastadapt.schedules.cosine.cosine", "all")]
    assert resolve("fastadapt.schedules.cosine.cosine")[1] is fa.schedules.cosine


def test_the_entry_check_bites():
    keys, _ = documented_keys()
    keys.discard(_key("fastadapt.tune.PBT", fa.tune.PBT))
    keys.discard(_key("fastadapt.reference.CHUNK_ELEMENTS", fa.reference.CHUNK_ELEMENTS))
    absent = absent_from_pages(keys)
    assert "fastadapt.tune.PBT" in absent and "fastadapt.reference.CHUNK_ELEMENTS" in absent
    assert "fastadapt.tune (its names above)" in absent


# ---- the site -----------------------------------------------------------------------------------
def test_site_builds_strict_without_warnings(tmp_path):
    for module in ("mkdocs", "mkdocstrings", "mkdocstrings_handlers.python", "material"):
        if importlib.util.find_spec(module.split(".")[0]) is None or (
                "." in module and importlib.util.find_spec(module) is None):
            pytest.skip(f"building the site needs the docs extra ({module} is missing): "
                        f"pip install -e \".[docs]\"")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
                           str(ROOT / "mkdocs.yml"), "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "WARNING" not in output, output
    page = (tmp_path / "site" / "api" / "optimizers" / "index.html").read_text(encoding="utf-8")
    assert 'id="fastadapt.Adam"' in page and "doc-signature" in page
