"""The benchmark cases shared by ``pytest bench/`` and ``fastadapt bench``.

A case is one update rule x dtype x tensor layout x implementation:

- ``fastadapt``: the fused step (variants add clipping or a non-finite policy);
- ``roof``: a C++ pass over the same buffers reading and writing the same
  bytes per element with no real arithmetic, the memory roof of the rule;
- ``numpy``: :mod:`fastadapt.reference`, the article's way;
- ``torch-single`` / ``torch-foreach`` / ``torch-fused``: torch.optim, when
  torch is installed.

Effective bandwidth is the bytes the rule must move (reads + writes of every
buffer, once) divided by the time of a step.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import _core
from . import optimizers as fopt
from . import reference as ref
from .runtime import get_num_threads, set_num_threads

try:  # optional comparison only
    import torch
except ImportError:  # pragma: no cover - depends on the machine
    torch = None

__all__ = ["Rule", "RULES", "LAYOUTS", "IMPLEMENTATIONS", "DTYPES", "VARIANTS", "Case", "build_case", "measure",
           "check_suite", "run_suite", "format_table", "format_markdown"]


@dataclass(frozen=True)
class Rule:
    name: str
    optimizer: str                      # fastadapt / reference class name
    options: Dict[str, Any]
    torch_name: str
    reads: int                          # buffers read per element (p, g, state...)
    writes: int                         # buffers written per element (p, state...)
    torch_fused: bool                   # torch has a fused CPU implementation


RULES: Dict[str, Rule] = {r.name: r for r in [
    Rule("adam", "Adam", {"lr": 1e-3}, "Adam", 4, 3, True),
    Rule("adamw", "AdamW", {"lr": 1e-3, "weight_decay": 1e-2}, "AdamW", 4, 3, True),
    Rule("adagrad", "AdaGrad", {"lr": 1e-2}, "Adagrad", 3, 2, True),
    Rule("rmsprop", "RMSProp", {"lr": 1e-2}, "RMSprop", 3, 2, False),
    Rule("rmsprop-centered-momentum", "RMSProp", {"lr": 1e-2, "momentum": 0.9, "centered": True}, "RMSprop",
         5, 4, False),
    Rule("sgd-momentum", "SGD", {"lr": 1e-2, "momentum": 0.9}, "SGD", 3, 2, True),
]}

LAYOUTS: Dict[str, Tuple[int, ...]] = {
    "64K": (65536,),
    "1M": (2 ** 20,),
    "16M": (16 * 2 ** 20,),
    "256x4096": (4096,) * 256,
    "1000x100": (100,) * 1000,
}

IMPLEMENTATIONS = ("fastadapt", "roof", "numpy", "torch-single", "torch-foreach", "torch-fused")

DTYPES = ("float32", "float64")  # the dtypes the fused kernels support

# fastadapt with step-level gradient processing (measured against plain fastadapt).
VARIANTS: Dict[str, Dict[str, Any]] = {
    "clip": {"max_grad_norm": 1.0},
    "zero": {"nonfinite": "zero"},
    "skip": {"nonfinite": "skip"},
    "raise": {"nonfinite": "raise"},
}


class SkipCase(Exception):
    """This implementation does not exist here (torch absent, no fused kernel)."""


@dataclass
class Case:
    rule: Rule
    dtype: np.dtype
    layout: str
    impl: str
    step: Callable[[], Any]
    check: Callable[[], None]
    nbytes: int
    keep: List[Any] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.rule.name} {np.dtype(self.dtype).name} {self.layout}"


def _arrays(layout: str, dtype: Any, seed: int) -> Tuple[Dict[str, np.ndarray], Dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    sizes = LAYOUTS[layout]
    params = {f"t{i}": rng.standard_normal(n).astype(dtype) for i, n in enumerate(sizes)}
    # Standard-normal gradients: the global norm is sqrt(size) > 1, so the
    # clip variant (max_grad_norm=1) really scales.
    grads = {k: rng.standard_normal(v.size).astype(dtype) for k, v in params.items()}
    return params, grads


def _copy(tree: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    return {k: v.copy() for k, v in tree.items()}


def build_case(rule_name: str, dtype: Any, layout: str, impl: str, seed: int = 0) -> Case:
    """Arrays and a step callable for one case; raises SkipCase when the
    implementation is not available. ``impl`` may be ``fastadapt+clip`` etc."""
    rule = RULES[rule_name]
    dtype = np.dtype(dtype)
    params, grads = _arrays(layout, dtype, seed)
    nelem = sum(v.size for v in params.values())
    nbytes = (rule.reads + rule.writes) * dtype.itemsize * nelem
    base, _, variant = impl.partition("+")

    if base == "fastadapt":
        extra = VARIANTS[variant] if variant else {}
        opt = getattr(fopt, rule.optimizer)(**rule.options, **extra)

        def check() -> None:
            # Two steps on copies equal the reference bit for bit.
            p, q = _copy(params), _copy(params)
            mine = getattr(fopt, rule.optimizer)(**rule.options, **extra)
            theirs = getattr(ref, rule.optimizer)(**rule.options, **extra)
            for _ in range(2):
                mine.update(p, grads)
                theirs.update(q, grads)
            bad = [k for k in p if p[k].tobytes() != q[k].tobytes()]
            assert not bad, f"fastadapt differs from the reference at {bad[:3]}"

        return Case(rule, dtype, layout, impl, lambda: opt.update(params, grads), check, nbytes, [params, grads])

    if base == "roof":
        names = list(params)
        state = [[np.zeros_like(params[k]) for k in names] for _ in range(rule.reads - 2)]
        reads = [[params[k] for k in names], [grads[k] for k in names]] + state
        writes = [[params[k] for k in names]] + state[: rule.writes - 1]
        roof = _core._Roof(reads + writes, len(reads))

        def check() -> None:
            assert all(np.isfinite(params[k]).all() for k in names[:3])

        return Case(rule, dtype, layout, impl, roof.run, check, nbytes, [params, grads, state, roof])

    if base == "numpy":
        opt_ref = getattr(ref, rule.optimizer)(**rule.options)

        def check() -> None:
            p = _copy(params)
            getattr(ref, rule.optimizer)(**rule.options).update(p, grads)
            assert all(np.isfinite(v).all() for v in p.values())

        return Case(rule, dtype, layout, impl, lambda: opt_ref.update(params, grads), check, nbytes, [params, grads])

    if base.startswith("torch"):
        if torch is None:
            raise SkipCase("torch is not installed")
        flavour = base.split("-", 1)[1]
        if flavour == "fused" and not rule.torch_fused:
            raise SkipCase(f"torch has no fused CPU {rule.torch_name}")
        tparams = [torch.nn.Parameter(torch.from_numpy(v.copy())) for v in params.values()]
        for tp, g in zip(tparams, grads.values()):
            tp.grad = torch.from_numpy(g.copy())
        kw = dict(rule.options)
        if flavour == "single":
            kw["foreach"] = False
        else:
            kw[flavour] = True
        topt = getattr(torch.optim, rule.torch_name)(tparams, **kw)

        def check() -> None:
            # The same rule: one step from the same start agrees with the
            # reference to the dtype's rounding.
            first = next(iter(params))
            tp = torch.nn.Parameter(torch.from_numpy(params[first].copy()))
            tp.grad = torch.from_numpy(grads[first].copy())
            getattr(torch.optim, rule.torch_name)([tp], **kw).step()
            q = {first: params[first].copy()}
            getattr(ref, rule.optimizer)(**rule.options).update(q, {first: grads[first]})
            tol = 1e-5 if dtype == np.float32 else 1e-12
            np.testing.assert_allclose(tp.detach().numpy(), q[first], rtol=tol, atol=tol)

        return Case(rule, dtype, layout, impl, topt.step, check, nbytes, [params, grads, tparams, topt])

    raise ValueError(f"unknown implementation {impl!r}; expected one of {IMPLEMENTATIONS} or fastadapt+variant")


def _time_calls(step: Callable[[], Any], number: int) -> float:
    t0 = time.perf_counter()
    for _ in range(number):
        step()
    return (time.perf_counter() - t0) / number


def measure(cases: Sequence[Case], rounds: int = 15, min_round_s: float = 0.02,
            settle_s: float = 0.02, warm_calls: int = 3) -> List[float]:
    """Median seconds per step of each case, measured in interleaved rounds
    (case A, B, C, A, B, C, ...) so slow drifts of a shared machine hit all
    cases alike. Small steps are repeated within a round.

    Before each timed block the process idles ``settle_s`` and then makes
    ``warm_calls`` untimed steps: thread pools (torch's OpenMP, fastadapt's)
    spin for a while after their last task and are asleep after a pause, so
    a block must neither inherit the previous case's spinning threads nor
    charge its own threads' wake-up to the steps it times. What is left is
    the steady state of back-to-back steps, as in a training loop."""
    numbers = []
    for c in cases:
        c.step()  # warm-up: state allocation, page faults, thread start
        once = _time_calls(c.step, 1)
        numbers.append(max(1, int(min_round_s / max(once, 1e-7))))
    samples: List[List[float]] = [[] for _ in cases]
    for _ in range(rounds):
        for i, c in enumerate(cases):
            time.sleep(settle_s)
            for _ in range(warm_calls):
                c.step()
            samples[i].append(_time_calls(c.step, numbers[i]))
    return [statistics.median(s) for s in samples]


def _set_threads(n: int) -> None:
    set_num_threads(n)
    if torch is not None:
        torch.set_num_threads(n)


def _known(kind: str, given: Sequence[str], known: Sequence[str]) -> None:
    if isinstance(given, str) or not isinstance(given, Sequence) or not given:
        raise TypeError(f"{kind}s must be a non-empty list of names ({', '.join(known)}), got {given!r}")
    for g in given:
        if g not in known:
            raise ValueError(f"unknown {kind} {g!r}; expected one of {', '.join(known)}")


def check_suite(rules: Sequence[str], dtypes: Sequence[str], layouts: Sequence[str], threads: Sequence[int],
                impls: Sequence[str], rounds: int) -> None:
    """:func:`run_suite`'s arguments, checked before anything is measured (a
    suite runs for minutes; a bad name must not surface at its end)."""
    _known("rule", rules, list(RULES))
    _known("dtype", dtypes, DTYPES)
    _known("layout", layouts, list(LAYOUTS))
    _known("implementation", impls, list(IMPLEMENTATIONS) + [f"fastadapt+{v}" for v in VARIANTS])
    if isinstance(threads, str) or not isinstance(threads, Sequence) or not threads:
        raise TypeError(f"threads must be a non-empty list of thread counts, got {threads!r}")
    for t in threads:
        if isinstance(t, bool) or not isinstance(t, int) or t < 1:
            raise ValueError(f"thread counts must be ints >= 1, got {t!r}")
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds must be an int >= 1 (the median needs a sample), got {rounds!r}")


def run_suite(rules: Sequence[str], dtypes: Sequence[str], layouts: Sequence[str], threads: Sequence[int],
              impls: Sequence[str], rounds: int = 15, progress: Optional[Callable[[str], None]] = None,
              check: bool = True) -> List[Dict[str, Any]]:
    """Measure every (rule, dtype, layout, threads) with all ``impls``
    interleaved; one row per combination with each implementation's median."""
    check_suite(rules, dtypes, layouts, threads, impls, rounds)
    rows = []
    combos = [(r, d, l, t) for r in rules for d in dtypes for l in layouts for t in threads]
    before = get_num_threads()
    try:
        for n, (r, d, l, t) in enumerate(combos, 1):
            if progress:
                progress(f"[{n}/{len(combos)}] {r} {d} {l} {t} thread(s)")
            _set_threads(t)
            cases, skipped = [], {}
            for impl in impls:
                try:
                    cases.append(build_case(r, d, l, impl))
                except SkipCase as e:
                    skipped[impl] = str(e)
            if check:
                for c in cases:
                    c.check()
            medians = measure(cases, rounds=rounds)
            row = {"rule": r, "dtype": d, "layout": l, "threads": t, "bytes": cases[0].nbytes if cases else 0,
                   "seconds": {c.impl: m for c, m in zip(cases, medians)}, "skipped": skipped}
            rows.append(row)
            del cases
    finally:
        _set_threads(before)
    return rows


def _ratio(row: Dict[str, Any], impl: str) -> Optional[float]:
    s = row["seconds"]
    if impl in s and "fastadapt" in s:
        return s[impl] / s["fastadapt"]
    return None


def _fmt(x: Optional[float], pattern: str) -> str:
    return "-" if x is None or not math.isfinite(x) else pattern.format(x)


COLUMNS = ("case", "thr", "fastadapt ms", "GB/s", "% roof", "x numpy", "x torch fused", "x torch foreach",
           "x torch single", "variants (x plain)")


def _cells(row: Dict[str, Any]) -> List[str]:
    s = row["seconds"]
    fa_s = s.get("fastadapt")
    gbs = row["bytes"] / fa_s / 1e9 if fa_s else None
    roof = s["roof"] / fa_s * 100 if fa_s and "roof" in s else None
    variants = ", ".join(f"{k.split('+')[1]} {v / fa_s:.2f}" for k, v in s.items() if "+" in k and fa_s)
    return [f"{row['rule']} {row['dtype']} {row['layout']}", str(row["threads"]),
            _fmt(fa_s * 1e3 if fa_s else None, "{:.3f}"), _fmt(gbs, "{:.1f}"), _fmt(roof, "{:.0f}%"),
            _fmt(_ratio(row, "numpy"), "{:.1f}"), _fmt(_ratio(row, "torch-fused"), "{:.2f}"),
            _fmt(_ratio(row, "torch-foreach"), "{:.2f}"), _fmt(_ratio(row, "torch-single"), "{:.2f}"),
            variants or "-"]


def format_table(rows: List[Dict[str, Any]]) -> str:
    """A compact fixed-width table: ``x impl`` is that implementation's time
    divided by fastadapt's (above 1: fastadapt is faster)."""
    body = [list(COLUMNS)] + [_cells(r) for r in rows]
    widths = [max(len(line[i]) for line in body) for i in range(len(COLUMNS))]
    out = []
    for j, line in enumerate(body):
        out.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths))))
        if j == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def format_markdown(rows: List[Dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---" for _ in COLUMNS) + "|"]
    lines += ["| " + " | ".join(_cells(r)) + " |" for r in rows]
    return "\n".join(lines)
