"""The parameter-server actor: owns one shard of the parameters and a
fastadapt optimizer over it, and applies averaged gradients exactly once.

Everything global (the gradient norm, the clipping scale, whether a step
is skipped) is decided by every server alike from all shards' reduce
results, which reach it straight from Ray's object store: no server waits
for the driver, and all decide the same. Each update carries an id,
the number of updates the shard had completed before it, so a repeated
call is answered from the record instead of applied twice.
"""

from __future__ import annotations

import fnmatch
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from .. import _core
from ..optim import Optimizer
from ..reference import clip_scale  # the fused step's rule, NaN propagating

__all__ = ["OptimizerSpec", "ParameterServer", "needs_global_pass"]

Pattern = Union[str, Callable[[str, np.ndarray], bool]]
CHUNK = _core.CHUNK_ELEMENTS


def needs_global_pass(hyperparameters: Mapping[str, Any]) -> bool:
    """Whether a step needs the whole gradient's norm or finiteness before any
    shard may update: clipping, and the ``skip``/``raise`` policies."""
    return hyperparameters["max_grad_norm"] is not None or hyperparameters["nonfinite"] in ("skip", "raise")


def shard_settings(hyperparameters: Mapping[str, Any]) -> Dict[str, Any]:
    """The user's hyperparameters as a shard's optimizer runs them: clipping,
    skip and raise are decided globally by the driver, so the shard never
    clips and only zeroes non-finite values itself (a per-element rule), and
    it tracks its norm only when the driver did not already compute it."""
    settings = dict(hyperparameters)
    settings["max_grad_norm"] = None
    settings["nonfinite"] = "zero" if hyperparameters["nonfinite"] == "zero" else "propagate"
    settings["track_grad_norm"] = not needs_global_pass(hyperparameters)
    return settings


@dataclass(frozen=True)
class OptimizerSpec:
    """What it takes to build the same optimizer on another process: its
    class, hyperparameters and per-key overrides (an optimizer itself holds
    a C++ stepper and a lock, and does not travel)."""

    cls: type
    hyperparameters: Dict[str, Any]
    overrides: Tuple[Tuple[Pattern, Dict[str, Any]], ...]

    @classmethod
    def of(cls, optimizer: Optimizer) -> "OptimizerSpec":
        # _overrides holds the checked (pattern, values) pairs the
        # constructor accepts back, in the same order (later ones win).
        return cls(type(optimizer), optimizer.hyperparameters,
                   tuple((pattern, dict(values)) for pattern, values in optimizer._overrides))

    def for_shard(self, params: Mapping[str, np.ndarray]) -> "OptimizerSpec":
        """Only the overrides that match a key of this shard: an optimizer
        warns about an override that matches nothing, which is expected of a
        shard and must not read as a mistake."""
        kept = tuple((pattern, values) for pattern, values in self.overrides
                     if any(_matches(pattern, path, arr) for path, arr in params.items()))
        return OptimizerSpec(self.cls, self.hyperparameters, kept)

    def unmatched(self, params: Mapping[str, np.ndarray]) -> List[Pattern]:
        return [pattern for pattern, _ in self.overrides
                if not any(_matches(pattern, path, arr) for path, arr in params.items())]

    def build(self) -> Optimizer:
        return self.cls(**shard_settings(self.hyperparameters), overrides=list(self.overrides) or None)


def _matches(pattern: Pattern, path: str, arr: np.ndarray) -> bool:
    return fnmatch.fnmatchcase(path, pattern) if isinstance(pattern, str) else bool(pattern(path, arr))


def set_hyperparameters(optimizer: Optimizer, values: Mapping[str, Any]) -> None:
    """Assign several hyperparameters as one change. They come from an
    optimizer that accepted them together; set one by one, a pair such as
    SGD's momentum and nesterov could pass through a refused combination."""
    checked = {name: getattr(type(optimizer), name).validate(name, v) for name, v in values.items()}
    candidate = dict(optimizer.hyperparameters)
    candidate.update(checked)
    optimizer._check_consistency(candidate, where="")
    optimizer._hyper = candidate


def _global_rules(hyperparameters: Mapping[str, Any]) -> Dict[str, Any]:
    return {"max_grad_norm": hyperparameters["max_grad_norm"], "nonfinite": hyperparameters["nonfinite"]}


def decide(rules: Mapping[str, Any], all_paths: Sequence[str], reduced: Sequence[Mapping[str, Any]]
           ) -> Tuple[float, float, bool, Optional[str]]:
    """``(norm, scale, skip, raised key)`` of an update from every shard's
    reduce result. The sum of squares adds the chunk sums key by key in the
    tree's order, chunks in order, from 0.0: the very additions of one fused
    optimizer step over all params, so the norm has the same bits."""
    chunk_sums: Dict[str, List[float]] = {}
    for r in reduced:
        chunk_sums.update(r["chunk_sums"])
    sumsq = 0.0
    for path in all_paths:
        for chunk_sum in chunk_sums[path]:
            sumsq += chunk_sum
    norm = math.sqrt(sumsq)
    policy = rules["nonfinite"]
    if any(r["nonfinite"] for r in reduced) and policy in ("skip", "raise"):
        if policy == "raise":
            bad = {r["first_bad"] for r in reduced if r["first_bad"] is not None}
            return norm, 1.0, False, next(p for p in all_paths if p in bad)
        return norm, 1.0, True, None
    limit = rules["max_grad_norm"]
    return norm, 1.0 if limit is None else clip_scale(norm, limit), False, None


class ParameterServer:
    """One shard: ``{key path: array}`` it owns (copies, writeable) and an
    optimizer built from ``spec``. Wrapped as a Ray actor by DataParallel.

    The update protocol, per update id ``k`` (== ``self.version`` before it):

    - ``reduce_and_apply(k, n, *parts)`` when no global decision is needed;
      or ``reduce(k, n, *parts)`` (returns the per-chunk sums of squares and
      the non-finite count) on every shard, then ``apply(k, *reduced)`` with
      the results of all shards' ``reduce``, in shard order.
    - ``parts`` are the ``n`` contributing workers' infos (``{"samples": ...}``)
      then their ``{path: gradient}`` dicts, both in worker order; the
      arrays arrive as read-only views of Ray's object store.
    - A call with an id below ``version`` was already applied: it returns the
      recorded result and changes nothing.
    """

    def __init__(self, index: int, params: Mapping[str, np.ndarray], spec: OptimizerSpec,
                 all_paths: Sequence[str]):
        self.index = index
        self.params: Dict[str, np.ndarray] = {p: np.array(a, copy=True, order="C") for p, a in params.items()}
        self.paths: Tuple[str, ...] = tuple(self.params)
        self.all_paths = tuple(all_paths)   # every shard's keys, in the tree's order: the order of the norm sum
        self.spec = spec
        self.optimizer = spec.build()
        self.rules = _global_rules(spec.hyperparameters)
        self.version = 0
        self._pending: Optional[Tuple[int, Dict[str, np.ndarray], int, float]] = None
        self._buffers: Dict[str, np.ndarray] = {}
        self._last_info: Dict[str, Any] = {}

    # ---- configuration and state --------------------------------------------
    def configure(self, hyperparameters: Mapping[str, Any]) -> None:
        """Take the user's current hyperparameters (a schedule or a callback changed them)."""
        set_hyperparameters(self.optimizer, shard_settings(hyperparameters))
        self.rules = _global_rules(hyperparameters)

    def load(self, params: Mapping[str, np.ndarray], optimizer_state: Mapping[str, Any], version: int) -> None:
        """Restore params (copied into the shard's own arrays), optimizer state
        and the update count. The state goes into a new optimizer first, so a
        state it refuses leaves this shard exactly as it was."""
        missing = [p for p in self.paths if p not in params]
        if missing:
            raise ValueError(f"parameter server {self.index}: load lacks params {missing[:3]}")
        for path in self.paths:
            arr = params[path]
            if arr.shape != self.params[path].shape or arr.dtype != self.params[path].dtype:
                raise ValueError(f"parameter server {self.index}: params[{path!r}] is {arr.dtype.name} {arr.shape}, "
                                 f"the shard's is {self.params[path].dtype.name} {self.params[path].shape}")
        optimizer = self.spec.build()
        optimizer.load_state_dict(optimizer_state, params=self.params)
        for path in self.paths:
            np.copyto(self.params[path], params[path])
        self.optimizer = optimizer
        self.version = version
        self._pending = None

    def state(self, optimizer: bool = True) -> Dict[str, Any]:
        """The update count with this shard's params and (``optimizer``) its
        optimizer state_dict, taken between two updates: the driver compares
        the counts of all shards, so a snapshot never mixes steps."""
        out: Dict[str, Any] = {"version": self.version, "params": self.params}
        if optimizer:
            out["optimizer"] = self.optimizer.state_dict()
        return out

    def get_params(self) -> Dict[str, np.ndarray]:
        return self.params

    def get_version(self) -> int:
        return self.version

    # ---- the update protocol -------------------------------------------------
    def reduce(self, update_id: int, n: int, *parts: Any) -> Dict[str, Any]:
        """Combine the workers' gradients and report what deciding the step
        needs: per-chunk sums of squares (the fused step's chunks, so they
        add up exactly as in one optimizer over all params), the non-finite
        count and the first bad key."""
        if update_id < self.version:
            return {"replayed": True}
        self._expect(update_id)
        started = time.perf_counter()
        combined = self._combine(n, parts)
        # Under 'zero' the norm is that of the zeroed gradient, as in one optimizer.
        ignore_nonfinite = self.optimizer.nonfinite == "zero"
        chunk_sums: Dict[str, List[float]] = {}
        nonfinite, first_bad = 0, None
        for path in self.paths:
            flat = combined[path].reshape(-1)
            sums = []
            for begin in range(0, flat.size, CHUNK):
                s, bad = _core.global_sumsq((path,), [flat[begin:begin + CHUNK]], ignore_nonfinite)
                sums.append(s)
                nonfinite += bad
                if bad and first_bad is None:
                    first_bad = path
            chunk_sums[path] = sums
        self._pending = (update_id, combined, nonfinite, time.perf_counter() - started)
        return {"chunk_sums": chunk_sums, "nonfinite": nonfinite, "first_bad": first_bad}

    def apply(self, update_id: int, *reduced: Mapping[str, Any]) -> Tuple[Dict[str, Any], Dict[str, np.ndarray]]:
        """Decide update ``update_id`` from every shard's ``reduce``
        result and apply this shard's part: the reduced gradient times the
        clipping scale (rounded to each array's dtype, as the fused step
        rounds it), or a skipped step, or nothing under ``raise`` (the info
        then names the first bad key and the update count stays)."""
        if update_id < self.version:
            return dict(self._last_info, replayed=True), self.params
        if self._pending is None or self._pending[0] != update_id:
            raise RuntimeError(f"parameter server {self.index}: apply({update_id}) without reduce({update_id}); "
                               f"the driver lost track of the protocol")
        started = time.perf_counter()
        _, combined, nonfinite, reduce_seconds = self._pending
        self._pending = None
        norm, scale, skip, raised = decide(self.rules, self.all_paths, reduced)
        opt = self.optimizer
        if raised is not None:
            return {"raised": raised, "nonfinite": sum(r["nonfinite"] for r in reduced), "norm": norm,
                    "seconds": reduce_seconds + time.perf_counter() - started}, self.params
        if skip:
            opt.skipped_steps += 1
            opt.total_nonfinite_count += nonfinite
            info = {"skipped": True, "nonfinite": nonfinite, "norm": norm}
        else:
            if scale != 1.0:
                combined = {p: np.multiply(g, g.dtype.type(scale), out=self._buffer(p)) for p, g in combined.items()}
            opt.update(self.params, combined)
            info = {"skipped": False, "nonfinite": opt.last_nonfinite_count, "norm": norm}
        return self._finish(update_id, info, started - reduce_seconds)

    def reduce_and_apply(self, update_id: int, n: int, *parts: Any
                         ) -> Tuple[Dict[str, Any], Dict[str, np.ndarray]]:
        """One call when the step needs no global decision (no clipping, no
        skip/raise): combine, step, and report the shard's squared norm."""
        if update_id < self.version:
            return dict(self._last_info, replayed=True), self.params
        self._expect(update_id)
        started = time.perf_counter()
        opt = self.optimizer
        opt.update(self.params, self._combine(n, parts))
        norm = opt.last_grad_norm
        info = {"skipped": False, "nonfinite": opt.last_nonfinite_count,
                "norm_sq": None if norm is None else norm * norm}
        return self._finish(update_id, info, started)

    # ---- helpers ----------------------------------------------------------------
    def _expect(self, update_id: int) -> None:
        if update_id != self.version:
            raise RuntimeError(f"parameter server {self.index} has applied {self.version} updates and got "
                               f"update {update_id}; updates must arrive in order")

    def _finish(self, update_id: int, info: Dict[str, Any], started: float
                ) -> Tuple[Dict[str, Any], Dict[str, np.ndarray]]:
        self.version = update_id + 1
        info.update(version=self.version, step=self.optimizer.step_count, seconds=time.perf_counter() - started)
        self._last_info = info
        # Ray serializes the returned arrays now, before the next update
        # writes them: the caller gets this version's parameters.
        return info, self.params

    def _buffer(self, path: str) -> np.ndarray:
        buf = self._buffers.get(path)
        if buf is None:
            buf = self._buffers[path] = np.empty_like(self.params[path])
        return buf

    def _combine(self, n: int, parts: Sequence[Any]) -> Dict[str, np.ndarray]:
        """The mean gradient over the workers' samples. Equal batches:
        ``(g_0 + g_1 + ... + g_{n-1}) / n``, added left to right in worker
        order, in the gradient's dtype. Unequal batch sizes ``n_w``:
        ``sum_w S(n_w/N) * g_w`` in worker order, each weight rounded to the
        dtype once. A single gradient is used as it came (no copy)."""
        if n < 1 or len(parts) != 2 * n:
            raise ValueError(f"parameter server {self.index}: expected {n} infos then {n} gradients, got "
                             f"{len(parts)} parts")
        sizes = [info["samples"] for info in parts[:n]]
        grads: Sequence[Mapping[str, np.ndarray]] = parts[n:]
        weights = None if len(set(sizes)) == 1 else [size / sum(sizes) for size in sizes]
        if n == 1:
            return dict(grads[0])
        out = {}
        for path in self.paths:
            buf = self._buffer(path)
            if weights is None:
                np.add(grads[0][path], grads[1][path], out=buf)
                for g in grads[2:]:
                    np.add(buf, g[path], out=buf)
                np.divide(buf, len(grads), out=buf)
            else:
                dtype = buf.dtype.type
                np.multiply(grads[0][path], dtype(weights[0]), out=buf)
                for g, w in zip(grads[1:], weights[1:]):
                    buf += g[path] * dtype(w)
            out[path] = buf
        return out
