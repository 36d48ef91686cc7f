"""Nested parameter structures: dicts, lists and tuples of arrays.

A ``TreeDef`` records the structure of ``params`` on the first update and
flattens later ``params``/``grads`` in the same order, with dotted key paths
(``"fc1.w"``, ``"layers.0.b"``) for messages and per-key overrides.
"""

from __future__ import annotations

import numbers
from typing import Any, List, Optional, Tuple

_DICT, _SEQ, _LEAF = 0, 1, 2


def _is_numeric_list(x: Any) -> bool:
    """A (nested) list of plain numbers: array data, not a structure."""
    if isinstance(x, numbers.Number):
        return True
    return isinstance(x, (list, tuple)) and bool(x) and all(_is_numeric_list(e) for e in x)


def _is_container(x: Any) -> bool:
    if isinstance(x, dict):
        return True
    # A (nested) list of numbers is a leaf, so the error says "got list".
    if isinstance(x, (list, tuple)):
        return not x or not _is_numeric_list(x)
    return False


def _join(prefix: str, key: Any) -> str:
    return f"{prefix}.{key}" if prefix else str(key)


def _show(path: str) -> str:
    return f"['{path}']" if path else ""


class TreeDef:
    """Structure of a nested dict/list/tuple whose leaves are arrays."""

    __slots__ = ("kind", "keys", "children", "path", "paths", "flat")

    def __init__(self, kind: int, keys: Tuple[Any, ...], children: Tuple["TreeDef", ...], path: str):
        self.kind = kind
        self.keys = keys
        self.children = children
        self.path = path
        self.paths: Optional[List[str]] = None
        # Every child a leaf (the common {"w": .., "b": ..} and list-of-arrays
        # cases): flattened by one C-level extend instead of a Python call per
        # leaf, which is most of the per-step cost with many small tensors.
        self.flat = kind != _LEAF and all(c.kind == _LEAF for c in children)

    @classmethod
    def of(cls, tree: Any) -> "TreeDef":
        root = cls._build(tree, "")
        paths: List[str] = []
        root._collect(paths)
        if len(set(paths)) != len(paths):
            root._refuse_collision(paths)
        root.paths = paths
        return root

    def _refuse_collision(self, paths: List[str]) -> None:
        """Two leaves whose dotted paths are equal ({"a.b": x, "a": {"b": y}},
        or keys 1 and "1") would share one state entry, override match and
        checkpoint slot: refuse them, naming both by their real keys."""
        keys: List[Tuple[Any, ...]] = []
        self._collect_keys((), keys)
        first: dict = {}
        for path, key in zip(paths, keys):
            if path in first:
                a, b = (''.join(f"[{k!r}]" for k in ks) for ks in (first[path], key))
                raise ValueError(f"the keys {a} and {b} both have the key path {path!r}, so their optimizer "
                                 f"state and checkpoint entries would collide; rename one of them (key paths "
                                 f"join keys with '.' and compare them as strings)")
            first[path] = key

    def _collect_keys(self, prefix: Tuple[Any, ...], out: List[Tuple[Any, ...]]) -> None:
        if self.kind == _LEAF:
            out.append(prefix)
        for k, c in zip(self.keys, self.children):
            c._collect_keys(prefix + (k,), out)

    @classmethod
    def _build(cls, node: Any, path: str) -> "TreeDef":
        if isinstance(node, dict) and _is_container(node):
            keys = tuple(node)
            return cls(_DICT, keys, tuple(cls._build(node[k], _join(path, k)) for k in keys), path)
        if _is_container(node):
            keys = tuple(range(len(node)))
            return cls(_SEQ, keys, tuple(cls._build(v, _join(path, i)) for i, v in enumerate(node)), path)
        return cls(_LEAF, (), (), path)

    def _collect(self, out: List[str]) -> None:
        if self.kind == _LEAF:
            out.append(self.path)
        for c in self.children:
            c._collect(out)

    def flatten(self, tree: Any, role: str, fix: str) -> list:
        """Leaves of ``tree`` in this structure's order; ValueError naming the
        first key where ``tree`` differs (``fix`` says what to do)."""
        out: list = []
        self._flatten(tree, out, role, fix)
        return out

    def _flatten(self, node: Any, out: list, role: str, fix: str) -> None:
        kind = self.kind
        if kind == _LEAF:
            out.append(node)
            return
        if kind == _DICT:
            if not isinstance(node, dict):
                raise ValueError(f"{role}{_show(self.path)}: expected a dict, got "
                                 f"{type(node).__name__}; {fix}")
            if len(node) != len(self.keys):
                self._key_mismatch(node, role, fix)
            if type(node) is not dict:
                # A dict subclass is read by its own keys: node[k] would call
                # defaultdict's __missing__, inventing a zero for a missing
                # key (and adding it to the caller's dict).
                for k in self.keys:
                    if not dict.__contains__(node, k):
                        self._key_mismatch(node, role, fix)
                node = {k: dict.__getitem__(node, k) for k in self.keys}
            try:
                if self.flat:
                    out.extend(map(node.__getitem__, self.keys))
                    return
                for k, child in zip(self.keys, self.children):
                    child._flatten(node[k], out, role, fix)
            except KeyError:
                self._key_mismatch(node, role, fix)
            return
        if not isinstance(node, (list, tuple)) or len(node) != len(self.keys):
            got = f"length {len(node)}" if isinstance(node, (list, tuple)) else type(node).__name__
            raise ValueError(f"{role}{_show(self.path)}: expected a list of length {len(self.keys)}, "
                             f"got {got}; {fix}")
        if self.flat:
            out.extend(node)
            return
        for v, child in zip(node, self.children):
            child._flatten(v, out, role, fix)

    def _key_mismatch(self, node: dict, role: str, fix: str) -> None:
        missing = [k for k in self.keys if k not in node]
        if missing:
            raise ValueError(f"{role} is missing key '{_join(self.path, missing[0])}'; {fix}")
        extra = [k for k in node if k not in set(self.keys)]
        raise ValueError(f"{role} has an unexpected key '{_join(self.path, extra[0])}'; {fix}")


def flatten_any(tree: Any) -> Tuple[List[str], list]:
    """Key paths and leaves of any nested structure (no cached structure)."""
    td = TreeDef.of(tree)
    return list(td.paths or []), td.flatten(tree, "tree", "")
