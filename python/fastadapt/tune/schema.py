"""Checks of the data read back from a tuner checkpoint (``tuner.json``).

The file is JSON, so loading it runs no code; these checks make sure that
what it holds has the shape and types the tuner's fields need, so that a
damaged or edited file is one ValueError at resume, not a KeyError (or a
silently wrong run) later.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, Optional

import numpy as np

__all__ = ["Spec", "integer", "real", "text", "anything", "optional", "list_of", "dict_of", "set_of", "tuple_of",
           "instance", "one_of", "either", "record", "check", "RNG"]

# A spec checks one value and returns a description of the first mismatch, or None.
Spec = Callable[[Any, str], Optional[str]]


def _type(value: Any) -> str:
    return type(value).__name__


def integer(low: int = 0, high: Optional[int] = None) -> Spec:
    def spec(value: Any, where: str) -> Optional[str]:
        if type(value) is not int:
            return f"{where} must be an integer, got {_type(value)} {value!r:.40}"
        if value < low or (high is not None and value > high):
            bound = f">= {low}" if high is None else f"in [{low}, {high}]"
            return f"{where} must be {bound}, got {value}"
        return None
    return spec


def real(finite: bool = False, low: float = -math.inf) -> Spec:
    def spec(value: Any, where: str) -> Optional[str]:
        if type(value) not in (int, float):
            return f"{where} must be a number, got {_type(value)} {value!r:.40}"
        if finite and not math.isfinite(value):
            return f"{where} must be finite, got {value!r}"
        if value < low:
            return f"{where} must be >= {low:g}, got {value!r}"
        return None
    return spec


def text(value: Any, where: str) -> Optional[str]:
    return None if type(value) is str else f"{where} must be a string, got {_type(value)}"


def anything(value: Any, where: str) -> Optional[str]:
    return None


def optional(inner: Spec) -> Spec:
    def spec(value: Any, where: str) -> Optional[str]:
        return None if value is None else inner(value, where)
    return spec


def instance(cls: type) -> Spec:
    def spec(value: Any, where: str) -> Optional[str]:
        return None if isinstance(value, cls) else f"{where} must be a {cls.__name__}, got {_type(value)}"
    return spec


def one_of(*values: Any) -> Spec:
    def spec(value: Any, where: str) -> Optional[str]:
        if any(type(value) is type(v) and value == v for v in values):
            return None
        return f"{where} must be one of {', '.join(map(repr, values))}, got {value!r:.40}"
    return spec


def either(*specs: Spec) -> Spec:
    def spec(value: Any, where: str) -> Optional[str]:
        problems = [s(value, where) for s in specs]
        return None if any(p is None for p in problems) else problems[0]
    return spec


def list_of(item: Spec, length: Optional[int] = None) -> Spec:
    def spec(value: Any, where: str) -> Optional[str]:
        if type(value) is not list:
            return f"{where} must be a list, got {_type(value)}"
        if length is not None and len(value) != length:
            return f"{where} must have {length} entries, got {len(value)}"
        return next((p for i, v in enumerate(value) if (p := item(v, f"{where}[{i}]")) is not None), None)
    return spec


def set_of(item: Spec) -> Spec:
    def spec(value: Any, where: str) -> Optional[str]:
        if type(value) is not set:
            return f"{where} must be a set, got {_type(value)}"
        return next((p for v in value if (p := item(v, f"{where} entry")) is not None), None)
    return spec


def tuple_of(*items: Spec) -> Spec:
    def spec(value: Any, where: str) -> Optional[str]:
        if type(value) is not tuple or len(value) != len(items):
            return f"{where} must be a tuple of {len(items)}, got {_type(value)} {value!r:.40}"
        return next((p for i, (s, v) in enumerate(zip(items, value)) if (p := s(v, f"{where}[{i}]")) is not None),
                    None)
    return spec


def dict_of(key: Spec, item: Spec) -> Spec:
    def spec(value: Any, where: str) -> Optional[str]:
        if type(value) is not dict:
            return f"{where} must be a dict, got {_type(value)}"
        for k, v in value.items():
            problem = key(k, f"{where} key {k!r:.40}") or item(v, f"{where}[{k!r:.40}]")
            if problem is not None:
                return problem
        return None
    return spec


def record(required: Dict[str, Spec], extra: Optional[Spec] = None) -> Spec:
    """A dict with string keys: ``required`` ones, and any others checked by
    ``extra`` (refused when ``extra`` is None)."""
    def spec(value: Any, where: str) -> Optional[str]:
        if type(value) is not dict:
            return f"{where} must be a dict, got {_type(value)}"
        missing = [k for k in required if k not in value]
        if missing:
            return f"{where} lacks {', '.join(map(repr, missing))}"
        for k, v in value.items():
            s = required.get(k) or extra
            if s is None:
                return f"{where} has the unexpected key {k!r:.40}"
            problem = (text(k, f"{where} key") if type(k) is not str else None) or s(v, f"{where}[{k!r}]")
            if problem is not None:
                return problem
        return None
    return spec


RNG = instance(np.random.Generator)


def check(value: Any, spec: Spec, where: str) -> None:
    """ValueError describing the first mismatch of ``value`` with ``spec``."""
    problem = spec(value, where)
    if problem is not None:
        raise ValueError(problem)
