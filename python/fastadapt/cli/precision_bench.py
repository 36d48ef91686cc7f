"""``fastadapt bench --precision``: low-precision params and state against
float32, in one run. For each storage (float32; bfloat16 state; 8-bit
state; bfloat16 params and grads with 8-bit state) the fused step and its
own memory roof are timed in interleaved rounds, so the speedups over
float32 come from the same rounds on the same machine.

A storage's roof is the time to move the bytes its step must move (every
buffer read and written once per element at its storage width: params and
grads 4 or 2 bytes, each moment 4, 2 or 1 byte, plus the 8-bit block scales)
at the bandwidth of the rule's float32 roof, ``fastadapt bench``'s C++ pass
over the float32 buffers, timed in the same rounds. Layouts: one tensor
(64K, 1M, 16M).

A storage's compute floor is the other limit: the same step on tensors that
stay in cache (16K and 48K elements), at one thread, timed in interleaved
rounds; the slope between the two sizes (which cancels the per-call cost) is
the step's arithmetic per element. A step of n elements on T threads cannot
take less than that times n / T. Where the floor is above the roof, the
storage is compute-bound on this machine, and no memory saving shows as time
(8-bit state on few cores: its quantization costs more per element than the
bytes it saves).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, cast

import numpy as np

from .. import _core
from .. import optim as fopt
from ..optim import _lowp
from ..runtime import get_num_threads, set_num_threads
from .benchmarks import LAYOUTS, fixed_width, layout_elements, markdown, measure_samples

__all__ = ["PRECISIONS", "Precision", "PRECISION_RULES", "run_precision_suite", "format_precision_table",
           "format_precision_markdown", "check_precision_suite", "PRECISION_LAYOUTS"]


@dataclass(frozen=True)
class Precision:
    name: str
    param_dtype: str        # params and grads
    state_dtype: Optional[str]

    def widths(self) -> Dict[str, int]:
        p = 2 if self.param_dtype in ("bfloat16", "float16") else 4
        s = {None: 4, "float32": 4, "bfloat16": 2, "int8": 1}[self.state_dtype]
        return {"param": p, "state": s}


PRECISIONS: Dict[str, Precision] = {p.name: p for p in [
    Precision("float32", "float32", None),
    Precision("bf16-state", "float32", "bfloat16"),
    Precision("int8-state", "float32", "int8"),
    Precision("bf16-params-int8-state", "bfloat16", "int8"),
]}
# The rules of one element-wise pass (low-precision state), by their fa class and options.
PRECISION_RULES: Dict[str, Dict[str, Any]] = {
    "adam": {"cls": "Adam", "options": {"lr": 1e-3}},
    "adamw": {"cls": "AdamW", "options": {"lr": 1e-3, "weight_decay": 1e-2}},
    "sgd-momentum": {"cls": "SGD", "options": {"lr": 1e-2, "momentum": 0.9}},
    "rmsprop": {"cls": "RMSProp", "options": {"lr": 1e-2}},
    "adagrad": {"cls": "AdaGrad", "options": {"lr": 1e-2}},
    "lion": {"cls": "Lion", "options": {"lr": 1e-4}},
}


PRECISION_LAYOUTS = ("64K", "1M", "16M")


def _moments(rule: str) -> int:
    opt = getattr(fopt, PRECISION_RULES[rule]["cls"])(**PRECISION_RULES[rule]["options"])
    return sum(1 for s in range(len(opt._state_slots)) if opt._stepper.slot_mask(opt._flags_for(opt._hyper), 1) >> s & 1)


def traffic(rule: str, precision: Precision) -> Dict[str, float]:
    """Bytes read and written per element, and state bytes per parameter."""
    w = precision.widths()
    k = _moments(rule)
    scales = 8.0 / _core.QBLOCK if precision.state_dtype == "int8" else 0.0  # absmax read + write
    return {"read": 2 * w["param"] + k * w["state"], "write": w["param"] + k * w["state"],
            "scales": k * scales, "state_per_param": k * (w["state"] + (4.0 / _core.QBLOCK if scales else 0.0))}


@dataclass
class _Case:
    impl: str
    step: Callable[[], Any]
    keep: List[Any]


def _cases(rule: str, layout: str, precision: Precision, seed: int = 0) -> List[_Case]:
    return _cases_of(rule, LAYOUTS[layout], precision, seed)


def _cases_of(rule: str, shapes: Sequence[Any], precision: Precision, seed: int = 0) -> List[_Case]:
    rng = np.random.default_rng(seed)
    dtype = np.dtype(np.float32) if precision.param_dtype == "float32" else _lowp.bfloat16()
    params = {f"t{i}": np.asarray(rng.standard_normal(s), np.float32).astype(dtype) for i, s in enumerate(shapes)}
    grads = {k: np.asarray(rng.standard_normal(v.shape), np.float32).astype(dtype) for k, v in params.items()}
    spec = PRECISION_RULES[rule]
    opt = getattr(fopt, spec["cls"])(**spec["options"], state_dtype=precision.state_dtype)
    return [_Case(f"fastadapt {precision.name}", lambda: opt.update(params, grads), [opt, params, grads])]


def _float32_roof(rule: str, layout: str) -> _Case:
    """The float32 memory roof of the rule (``fastadapt bench``'s: a C++ pass
    reading p, g and each moment and writing p and each moment, interleaved)."""
    k = _moments(rule)
    n = layout_elements(layout)
    reads = [[np.ones(n, np.float32)] for _ in range(2 + k)]   # p, g, moments
    writes = [reads[0]] + reads[2:]                             # p and moments, in place (as the step)
    roof = _core._Roof(reads + writes, len(reads))
    return _Case("roof float32", roof.run, [roof, reads, writes])


# Two cache-resident sizes (float32 Adam at 48K: 768 KB of p, g, m and v).
CACHE_SIZES = (16384, 49152)


def compute_per_element(rule: str, rounds: int) -> Dict[str, Optional[float]]:
    """Seconds of arithmetic per element of each storage's step at one thread:
    the median over interleaved rounds of (t(48K) - t(16K)) / 32K, both sizes
    in cache, so neither memory nor the per-call cost is in it. None where
    that is not positive (a round too noisy to tell; printed as '?')."""
    before = get_num_threads()
    try:
        set_num_threads(1)
        cases = [c for p in PRECISIONS.values() for n in CACHE_SIZES for c in _cases_of(rule, [(n,)], p)]
        samples = measure_samples(cast(Any, cases), rounds=rounds)
    finally:
        set_num_threads(before)
    out: Dict[str, Optional[float]] = {}
    for i, p in enumerate(PRECISIONS.values()):
        small, large = samples[2 * i], samples[2 * i + 1]
        slope = statistics.median((b - a) / (CACHE_SIZES[1] - CACHE_SIZES[0]) for a, b in zip(small, large))
        out[p.name] = slope if slope > 0 else None
    return out


def check_precision_suite(rules: Sequence[str], layouts: Sequence[str], threads: Sequence[int], rounds: int) -> None:
    for r in rules:
        if r not in PRECISION_RULES:
            raise ValueError(f"unknown rule {r!r} for --precision; expected one of {', '.join(PRECISION_RULES)}")
    for lay in layouts:
        if lay not in PRECISION_LAYOUTS:
            raise ValueError(f"layout {lay!r} for --precision: expected one of {', '.join(PRECISION_LAYOUTS)} "
                             f"(one tensor)")
    if not threads or any(isinstance(t, bool) or not isinstance(t, int) or t < 1 for t in threads):
        raise ValueError(f"thread counts must be ints >= 1, got {threads!r}")
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds must be an int >= 1, got {rounds!r}")


def run_precision_suite(rules: Sequence[str], layouts: Sequence[str], threads: Sequence[int], rounds: int = 9,
                        progress: Optional[Callable[[str], None]] = None) -> List[Dict[str, Any]]:
    """One row per (rule, layout, threads, precision): the fused step's median,
    its own roof's (its bytes at the float32 roof's bandwidth), its compute
    floor (``compute_per_element`` x n / threads) and the speedup over the
    float32 step in the same rounds."""
    check_precision_suite(rules, layouts, threads, rounds)
    rows: List[Dict[str, Any]] = []
    before = get_num_threads()
    try:
        for r in rules:
            if progress:
                progress(f"{r}: the compute per element of each storage (in cache, 1 thread)")
            per_element = compute_per_element(r, rounds)
            for lay in layouts:
                for th in threads:
                    if progress:
                        progress(f"{r} {lay} {th} thread(s): {len(PRECISIONS)} storages and their roofs")
                    set_num_threads(th)
                    cases = [c for p in PRECISIONS.values() for c in _cases(r, lay, p)] + [_float32_roof(r, lay)]
                    samples = measure_samples(cast(Any, cases), rounds=rounds)  # (only .step is used)
                    med = {c.impl: statistics.median(s) for c, s in zip(cases, samples)}
                    per_round = {c.impl: s for c, s in zip(cases, samples)}
                    n = layout_elements(lay)
                    base = per_round["fastadapt float32"]
                    bytes32 = sum(traffic(r, PRECISIONS["float32"])[k] for k in ("read", "write")) * n
                    for p in PRECISIONS.values():
                        t = traffic(r, p)
                        nbytes = (t["read"] + t["write"] + t["scales"]) * n
                        mine = per_round[f"fastadapt {p.name}"]
                        arithmetic = per_element[p.name]
                        rows.append({
                            "rule": r, "layout": lay, "threads": th, "precision": p.name,
                            "seconds": med[f"fastadapt {p.name}"],
                            # this storage's bytes at the float32 roof's bandwidth
                            "roof_seconds": med["roof float32"] * nbytes / bytes32,
                            # its arithmetic at one thread, shared perfectly among th
                            "compute_seconds": None if arithmetic is None else arithmetic * n / th,
                            "bytes": nbytes,
                            "state_bytes_per_param": t["state_per_param"],
                            # the per-round ratio's median: both timed in the same round
                            "x_float32": statistics.median(b / m for b, m in zip(base, mine)),
                        })
    finally:
        set_num_threads(before)
    return rows


COLUMNS = ("case", "thr", "storage", "ms", "GB/s", "% own roof", "compute floor ms", "x float32", "state B/param")


def _cells(row: Dict[str, Any]) -> List[str]:
    s = row["seconds"]
    return [f"{row['rule']} {row['layout']}", str(row["threads"]), row["precision"], f"{s * 1e3:.2f}",
            f"{row['bytes'] / s / 1e9:.1f}", f"{100 * row['roof_seconds'] / s:.0f}%",
            "?" if row["compute_seconds"] is None else f"{row['compute_seconds'] * 1e3:.2f}", f"{row['x_float32']:.2f}",
            f"{row['state_bytes_per_param']:.2f}"]


def format_precision_table(rows: List[Dict[str, Any]]) -> str:
    return fixed_width(COLUMNS, [_cells(r) for r in rows], left=3)


def format_precision_markdown(rows: List[Dict[str, Any]]) -> str:
    return markdown(COLUMNS, [_cells(r) for r in rows])
