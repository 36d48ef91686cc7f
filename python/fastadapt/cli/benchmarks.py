"""The benchmark cases shared by ``pytest bench/`` and ``fastadapt bench``.

A case is one update rule x dtype x tensor layout x implementation:

- ``fastadapt``: the fused step (variants add clipping or a non-finite policy);
- ``roof``: a C++ pass over the same buffers reading and writing the same
  bytes per element with no real arithmetic, the memory roof of the rule;
- ``numpy``: ``fastadapt.reference``, the article's way;
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

from .. import _core
from .. import optim as fopt
from .. import reference as ref
from ..runtime import get_num_threads, set_num_threads

try:  # optional comparison only
    import torch
except ImportError:  # pragma: no cover - depends on the machine
    torch = None  # type: ignore[assignment]  # (an optional module: None when absent)

__all__ = ["Rule", "RULES", "LAYOUTS", "MATRIX_LAYOUTS", "layout_elements", "IMPLEMENTATIONS", "DTYPES", "VARIANTS", "HEADLINE", "FULL", "Case",
           "build_case", "measure", "measure_samples", "check_suite", "run_suite", "estimate_seconds",
           "machine_speed", "format_table", "format_markdown", "MAX_SPREAD"]


@dataclass(frozen=True)
class Rule:
    name: str
    optimizer: str                      # fastadapt / reference class name
    options: Dict[str, Any]
    torch_name: Optional[str]           # torch.optim class, "module:Class" of an author's package, or None
    reads: int                          # buffers read per element over the rule's passes (p, g, state...)
    writes: int                         # buffers written per element (p, state...)
    torch_fused: bool                   # torch has a fused CPU implementation
    torch_foreach: bool = True          # torch's class takes foreach=True
    matrices_only: bool = False         # steps matrices (Muon): the matrix layouts only
    roof: bool = True                   # False: not memory-bound (Muon's matrix products), no roof case
    torch_tol: Optional[Tuple[float, float]] = None  # the torch check's (float32, float64) tolerances when they
    #                                                    are not the dtypes' rounding
    matrix_traffic: Optional[Tuple[int, int]] = None  # (reads, writes) on matrix layouts, when they differ

    def traffic(self, layout: str) -> Tuple[int, int]:
        if self.matrix_traffic is not None and layout in MATRIX_LAYOUTS:
            return self.matrix_traffic
        return self.reads, self.writes


# reads/writes are the arrays the rule's passes must move per element, its
# memory roof: one pass for element-wise rules; LAMB's trust ratio needs the
# norms of p and of the update before the update is applied, so a second pass
# re-reads p, m and v (7 reads, 3 writes); LARS's first pass reads p and g (5
# reads, 2 writes). Adafactor's row and column statistics are small: a matrix
# moves p and g (and writes p) per element, a vector also its variance.
RULES: Dict[str, Rule] = {r.name: r for r in [
    Rule("adam", "Adam", {"lr": 1e-3}, "Adam", 4, 3, True),
    Rule("adamw", "AdamW", {"lr": 1e-3, "weight_decay": 1e-2}, "AdamW", 4, 3, True),
    Rule("adagrad", "AdaGrad", {"lr": 1e-2}, "Adagrad", 3, 2, True),
    Rule("rmsprop", "RMSProp", {"lr": 1e-2}, "RMSprop", 3, 2, False),
    Rule("rmsprop-centered-momentum", "RMSProp", {"lr": 1e-2, "momentum": 0.9, "centered": True}, "RMSprop",
         5, 4, False),
    Rule("sgd-momentum", "SGD", {"lr": 1e-2, "momentum": 0.9}, "SGD", 3, 2, True),
    # torch keeps NAdam's mu_product in the default dtype (float32): float64 steps agree to ~1e-8.
    Rule("nadam", "NAdam", {"lr": 2e-3}, "NAdam", 4, 3, False, torch_tol=(1e-5, 1e-6)),
    Rule("radam", "RAdam", {"lr": 1e-3}, "RAdam", 4, 3, False),
    Rule("adamax", "Adamax", {"lr": 2e-3}, "Adamax", 4, 3, False),
    Rule("adadelta", "Adadelta", {"lr": 1.0}, "Adadelta", 4, 3, False),
    # torch sums Adafactor's row and column statistics in float32 for float32
    # params: at 4096 x 4096 its step is 3.5e-5 from its own float64 step (ours 2.4e-7).
    Rule("adafactor", "Adafactor", {"lr": 1e-2}, "Adafactor", 3, 2, False, matrix_traffic=(2, 1),
         torch_tol=(1e-4, 1e-12)),
    Rule("lion", "Lion", {"lr": 1e-4}, "lion_pytorch:Lion", 3, 2, False, torch_foreach=False),
    Rule("lamb", "LAMB", {"lr": 1e-3}, None, 7, 3, False),
    Rule("lars", "LARS", {"lr": 1e-3}, None, 5, 2, False),
    # DoG and LDoG: the first pass reads g, p and x0 for their two sums, the
    # second rereads g and p and writes p (5 reads, 1 write).
    Rule("dog", "DoG", {"lr": 1.0}, "dog:DoG", 5, 1, False, torch_foreach=False),
    Rule("ldog", "LDoG", {"lr": 1.0}, "dog:LDoG", 5, 1, False, torch_foreach=False),
    # Prodigy's and DAdaptAdam's new d needs sums over every tensor before p
    # moves: Prodigy's pass 0 reads g, p, p0, m, v, s and writes m, v, s, its
    # pass 1 rereads p, m, v and writes p (9 reads, 4 writes); DAdaptAdam's
    # pass 0 reads g, m, v, s (p too only with L2 weight decay, off here) and
    # writes m, v, s, pass 1 reads p, m, v and writes p (7 reads, 4 writes).
    Rule("prodigy", "Prodigy", {"lr": 1.0}, "prodigyopt:Prodigy", 9, 4, False, torch_foreach=False),
    Rule("dadapt-adam", "DAdaptAdam", {"lr": 1.0}, "dadaptation:DAdaptAdam", 7, 4, False, torch_foreach=False),
    # torch's Muon runs Newton-Schulz in bfloat16 (ours in the param dtype):
    # its check allows bfloat16's rounding.
    Rule("muon", "Muon", {"lr": 1e-3}, "Muon", 3, 2, False, torch_foreach=False, matrices_only=True,
         roof=False, torch_tol=(5e-2, 5e-2)),
    # Hypergradient rules: alpha needs the whole group's g . d_prev before any
    # parameter moves, so pass 0 reads g, d_prev (and the rule's state) and
    # writes the new d, pass 1 reads p and d and writes p. HD-SGD: 4 reads,
    # 2 writes (plain SGD: 2, 1); HD-Adam: 6 reads (g, m, v, d; p, d), 4 writes.
    # torch has neither.
    Rule("hd-sgd", "HypergradientSGD", {"lr": 1e-3}, None, 4, 2, False),
    Rule("hd-adam", "HypergradientAdam", {"lr": 1e-3}, None, 6, 4, False),
    # D-Adaptation after its first step: one pass. DAdaptSGD reads g, p, s,
    # x0 and writes s, p; DAdaptAdaGrad (no weight decay, no momentum) reads
    # g, alphak, sk, x0 and writes alphak, sk, p: five arrays stream in, p's
    # too, as its write fills the cache line first (measured at 16M: a roof
    # over exactly those streams takes the time of 5 reads and 3 writes, 17-27%
    # more than 4 and 3), so 5 reads.
    Rule("dadapt-sgd", "DAdaptSGD", {"lr": 1.0}, "dadaptation:DAdaptSGD", 4, 2, False, torch_foreach=False),
    Rule("dadapt-adagrad", "DAdaptAdaGrad", {"lr": 1.0}, "dadaptation:DAdaptAdaGrad", 5, 3, False,
         torch_foreach=False),
    # Schedule-Free: one pass reading g, y, z (and v) and writing y, z (and v);
    # the schedule is float64 Python work. torch: the schedulefree package.
    Rule("schedulefree-adamw", "ScheduleFreeAdamW", {"lr": 2.5e-3}, "schedulefree:AdamWScheduleFree", 4, 3, False),
    Rule("schedulefree-sgd", "ScheduleFreeSGD", {"lr": 1e-2}, "schedulefree:SGDScheduleFree", 3, 2, False),
]}

# A layout is the shapes of one step's tensors: "256x4096" is 256 vectors of
# 4096; "matrix784x128" one 784 x 128 matrix (Muon, Adafactor's factored path).
LAYOUTS: Dict[str, Tuple[Tuple[int, ...], ...]] = {
    "64K": ((65536,),),
    "1M": ((2 ** 20,),),
    "16M": ((16 * 2 ** 20,),),
    "256x4096": ((4096,),) * 256,
    "1000x100": ((100,),) * 1000,
    "matrix784x128": ((784, 128),),
    "matrix1024x1024": ((1024, 1024),),
    "matrix4096x4096": ((4096, 4096),),
}
MATRIX_LAYOUTS = tuple(name for name, shapes in LAYOUTS.items() if all(len(s) == 2 for s in shapes))


def layout_elements(layout: str) -> int:
    return sum(int(np.prod(s)) for s in LAYOUTS[layout])

IMPLEMENTATIONS = ("fastadapt", "roof", "numpy", "torch-single", "torch-foreach", "torch-fused")

DTYPES = ("float32", "float64")  # the dtypes the fused kernels support

# fastadapt with step-level gradient processing (measured against plain fastadapt).
VARIANTS: Dict[str, Dict[str, Any]] = {
    "clip": {"max_grad_norm": 1.0},
    "zero": {"nonfinite": "zero"},
    "skip": {"nonfinite": "skip"},
    "raise": {"nonfinite": "raise"},
}


# What ``fastadapt bench`` measures by default: the cases the README's
# conclusions rest on (Adam float32: 16M memory-bound, 1M cache-resident,
# 1000x100 many small tensors; one thread and every CPU) in 9 rounds, about
# a minute on a 2-core VM. ``--full``: every rule and layout in 15 rounds.
HEADLINE: Dict[str, Any] = {"rules": ["adam"], "dtypes": ["float32"], "layouts": ["16M", "1M", "1000x100"],
                            "threads": [1, "all"], "rounds": 9}
FULL: Dict[str, Any] = {"rules": list(RULES), "dtypes": ["float32"], "layouts": list(LAYOUTS),
                        "threads": [1, "all"], "rounds": 15}


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
    params = {f"t{i}": rng.standard_normal(shape).astype(dtype) for i, shape in enumerate(LAYOUTS[layout])}
    # Standard-normal gradients: the global norm is sqrt(size) > 1, so the
    # clip variant (max_grad_norm=1) really scales.
    grads = {k: rng.standard_normal(v.shape).astype(dtype) for k, v in params.items()}
    return params, grads


def _copy(tree: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    return {k: v.copy() for k, v in tree.items()}


def build_case(rule_name: str, dtype: Any, layout: str, impl: str, seed: int = 0) -> Case:
    """Arrays and a step callable for one case; raises SkipCase when the
    implementation is not available. ``impl`` may be ``fastadapt+clip`` etc."""
    rule = RULES[rule_name]
    dtype = np.dtype(dtype)
    if rule.matrices_only and layout not in MATRIX_LAYOUTS:
        raise SkipCase(f"{rule.optimizer} steps matrices: layouts {', '.join(MATRIX_LAYOUTS)}")
    params, grads = _arrays(layout, dtype, seed)
    nelem = sum(v.size for v in params.values())
    reads, writes = rule.traffic(layout)
    nbytes = (reads + writes) * dtype.itemsize * nelem
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
        if not rule.roof:
            raise SkipCase(f"{rule.optimizer}'s step is matrix products, not memory-bound: no roof")
        names = list(params)
        state = [[np.zeros_like(params[k]) for k in names] for _ in range(reads - 2)]
        read_buffers = [[params[k] for k in names], [grads[k] for k in names]] + state
        write_buffers = [[params[k] for k in names]] + state[: writes - 1]
        roof = _core._Roof(read_buffers + write_buffers, len(read_buffers))

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
        if rule.torch_name is None:
            raise SkipCase(f"torch has no {rule.optimizer}")
        flavour = base.split("-", 1)[1]
        if flavour == "fused" and not rule.torch_fused:
            raise SkipCase(f"torch has no fused CPU {rule.torch_name}")
        if flavour == "foreach" and not rule.torch_foreach:
            raise SkipCase(f"{rule.torch_name} has no foreach implementation")
        torch_class = _torch_class(rule.torch_name)
        tparams = [torch.nn.Parameter(torch.from_numpy(v.copy())) for v in params.values()]
        for tp, g in zip(tparams, grads.values()):
            tp.grad = torch.from_numpy(g.copy())
        kw = dict(rule.options)
        if flavour == "single":
            if rule.torch_foreach:
                kw["foreach"] = False
        else:
            kw[flavour] = True
        topt = torch_class(tparams, **kw)
        if hasattr(topt, "train"):  # Schedule-Free steps in train mode only (it starts in eval mode)
            topt.train()

        def check() -> None:
            # The same rule: one step from the same start agrees with the
            # reference to the dtype's rounding.
            first = next(iter(params))
            tp = torch.nn.Parameter(torch.from_numpy(params[first].copy()))
            tp.grad = torch.from_numpy(grads[first].copy())
            one = torch_class([tp], **kw)
            if hasattr(one, "train"):
                one.train()
            one.step()
            q = {first: params[first].copy()}
            getattr(ref, rule.optimizer)(**rule.options).update(q, {first: grads[first]})
            tol = (rule.torch_tol or (1e-5, 1e-12))[0 if dtype == np.float32 else 1]
            np.testing.assert_allclose(tp.detach().numpy(), q[first], rtol=tol, atol=tol)

        return Case(rule, dtype, layout, impl, topt.step, check, nbytes, [params, grads, tparams, topt])

    raise ValueError(f"unknown implementation {impl!r}; expected one of {IMPLEMENTATIONS} or fastadapt+variant")


def _torch_class(name: str) -> Any:
    """torch.optim.<name>, or the class "module:Class" of an author's package."""
    if ":" in name:
        module, cls = name.split(":")
        try:
            return getattr(__import__(module), cls)
        except ImportError:
            raise SkipCase(f"{module} is not installed") from None
    return getattr(torch.optim, name)


def _time_calls(step: Callable[[], Any], number: int) -> float:
    t0 = time.perf_counter()
    for _ in range(number):
        step()
    return (time.perf_counter() - t0) / number


def measure_samples(cases: Sequence[Case], rounds: int = 15, min_round_s: float = 0.02,
                    settle_s: float = 0.02, warm_calls: int = 3) -> List[List[float]]:
    """Seconds per step of each case in each round, measured in interleaved
    rounds (case A, B, C, A, B, C, ...) so slow drifts of a shared machine hit
    all cases alike. Small steps are repeated within a round.

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
    return samples


def measure(cases: Sequence[Case], rounds: int = 15, min_round_s: float = 0.02,
            settle_s: float = 0.02, warm_calls: int = 3) -> List[float]:
    """Median seconds per step of each case (``measure_samples``)."""
    return [statistics.median(s) for s in measure_samples(cases, rounds, min_round_s, settle_s, warm_calls)]


# A cell (an implementation's time / fastadapt's, in one row) is re-measured
# when its rounds disagree: the per-round ratios (the two were timed in the
# same round, moments apart) have an interquartile spread, q75 / q25, above
# this. One round's hiccup does not move a median of 9; but when a quarter
# of the rounds or more sit 1.5x away from the rest, the machine was busy
# with something else (on a 2-core VM, a second process halves a 2-thread
# case and can stall an OpenMP barrier for a scheduler tick), and the median
# is not a number to print. A 1122x "x torch foreach" cell came from such a run.
MAX_SPREAD = 1.5
# Re-measurements of a cell before it is printed anyway, marked with "?".
RECHECKS = 2


def _quartile_spread(ratios: Sequence[float]) -> float:
    if len(ratios) < 4:
        return 1.0  # too few rounds to tell a spread from one odd round
    q = statistics.quantiles(ratios, n=4)
    return q[2] / q[0] if q[0] > 0 else math.inf


def _ratios(fast: Sequence[float], other: Sequence[float]) -> List[float]:
    return [o / f for f, o in zip(fast, other) if f > 0]


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
    """``run_suite``'s arguments, checked before anything is measured (a
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
              check: bool = True, recheck: bool = True,
              on_row: Optional[Callable[[Dict[str, Any]], None]] = None) -> List[Dict[str, Any]]:
    """Measure every (rule, dtype, layout, threads) with all ``impls``
    interleaved; one row per combination with each implementation's median.

    ``recheck``: a cell whose rounds disagree (``MAX_SPREAD``) is
    measured again, fastadapt and that implementation alone, interleaved,
    up to ``RECHECKS`` times; the first agreeing measurement's ratio is
    kept (``row["ratios"]``); a cell that never agrees keeps its last ratio
    and is listed in ``row["unstable"]`` (the table marks it with "?").
    ``on_row``: called with each row as soon as it is measured."""
    check_suite(rules, dtypes, layouts, threads, impls, rounds)
    rows = []
    combos = [(r, d, l, t) for r in rules for d in dtypes for l in layouts for t in threads]
    before = get_num_threads()
    try:
        for n, (r, d, l, t) in enumerate(combos, 1):
            where = f"[{n}/{len(combos)}] {r} {d} {l} {t} thread(s)"
            if progress:
                progress(where)
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
            samples = measure_samples(cases, rounds=rounds)
            row: Dict[str, Any] = {"rule": r, "dtype": d, "layout": l, "threads": t,
                                   "bytes": cases[0].nbytes if cases else 0,
                                   "seconds": {c.impl: statistics.median(x) for c, x in zip(cases, samples)},
                                   "skipped": skipped, "ratios": {}, "rechecked": {}, "unstable": []}
            by_impl = {c.impl: (c, x) for c, x in zip(cases, samples)}
            if recheck and "fastadapt" in by_impl:
                fast_case, fast = by_impl["fastadapt"]
                for impl, (case, other) in by_impl.items():
                    if impl == "fastadapt" or _quartile_spread(_ratios(fast, other)) <= MAX_SPREAD:
                        continue
                    for attempt in range(1, RECHECKS + 1):
                        if progress:
                            progress(f"{where}: re-measuring {impl}, its rounds disagreed ({attempt}/{RECHECKS})")
                        again_fast, again = measure_samples([fast_case, case], rounds=rounds)
                        row["rechecked"][impl] = attempt
                        row["ratios"][impl] = statistics.median(again) / statistics.median(again_fast)
                        if _quartile_spread(_ratios(again_fast, again)) <= MAX_SPREAD:
                            break
                    else:
                        row["unstable"].append(impl)
            rows.append(row)
            del cases, by_impl
            if on_row:
                on_row(row)
    finally:
        _set_threads(before)
    return rows


# The estimate's model of the reference VM (2-core AMD EPYC, the README's
# table): seconds of one Adam float32 step, one thread, per layout and
# implementation, and of building and checking one case. A case costs
# rounds x (settle + warm-up calls + max(min round, one step)) plus its
# setup; other rules and dtypes scale with the bytes a step moves.
_REF_STEP_S = {
    "16M": {"fastadapt": 7.7e-3, "roof": 6.9e-3, "numpy": 80e-3, "torch-single": 74e-3, "torch-foreach": 51e-3,
            "torch-fused": 7.9e-3},
    "1M": {"fastadapt": 2.5e-4, "roof": 1.8e-4, "numpy": 1.8e-3, "torch-single": 1.1e-3, "torch-foreach": 1.0e-3,
           "torch-fused": 3.7e-4},
    "256x4096": {"fastadapt": 2.8e-4, "roof": 1.9e-4, "numpy": 3.9e-3, "torch-single": 5.3e-3,
                 "torch-foreach": 4.0e-3, "torch-fused": 1.2e-3},
    "1000x100": {"fastadapt": 1.5e-4, "roof": 3.8e-5, "numpy": 8.3e-3, "torch-single": 15.4e-3,
                 "torch-foreach": 9.1e-3, "torch-fused": 2.9e-3},
    "64K": {"fastadapt": 2.3e-5, "roof": 8e-6, "numpy": 1.0e-4, "torch-single": 8.4e-5, "torch-foreach": 9.8e-5,
            "torch-fused": 4.1e-5},
}


def _ref_step_s(layout: str, impl: str) -> float:
    """The reference VM's step time; a matrix layout scales the 1M figure by
    its size (a guess for Muon, whose products are not memory-bound)."""
    if layout in _REF_STEP_S:
        return _REF_STEP_S[layout][impl]
    return _REF_STEP_S["1M"][impl] * layout_elements(layout) / 2 ** 20


_REF_SETUP_S_PER_ELEMENT = 1.6e-7   # build + check of one case (random arrays, copies, reference steps)
_REF_PROBE_S = 4.3e-3               # machine_speed's probe on the reference VM


def machine_speed() -> float:
    """This machine's time for a memory-bound pass (an in-place multiply of
    16M float32, the best of 7) over the reference VM's: 2.0 = half as fast.
    The best of 7 measures the hardware, not how busy it is now."""
    a = np.ones(16 * 2 ** 20, np.float32)
    best = math.inf
    for _ in range(7):
        t0 = time.perf_counter()
        np.multiply(a, 1.0000001, out=a)
        best = min(best, time.perf_counter() - t0)
    return best / _REF_PROBE_S


def estimate_seconds(rules: Sequence[str], dtypes: Sequence[str], layouts: Sequence[str], threads: Sequence[int],
                     impls: Sequence[str], rounds: int, speed: float = 1.0, min_round_s: float = 0.02,
                     settle_s: float = 0.02, warm_calls: int = 3) -> float:
    """Seconds ``run_suite`` should take on an idle machine ``speed``
    times slower than the reference VM: the model above, not a measurement
    (re-measured cells, a busy machine and torch's absence move it)."""
    check_suite(rules, dtypes, layouts, threads, impls, rounds)
    adam_f32 = RULES["adam"].reads + RULES["adam"].writes
    total = 0.0
    for r in rules:
        for d in dtypes:
            scale = (RULES[r].reads + RULES[r].writes) / adam_f32 * np.dtype(d).itemsize / 4
            for l in layouts:
                nelem = layout_elements(l)
                for impl in impls:
                    base = impl.partition("+")[0]
                    if base.startswith("torch") and torch is None:
                        continue
                    step = _ref_step_s(l, base) * scale * speed
                    per_round = settle_s + warm_calls * step + max(min_round_s, step)
                    setup = _REF_SETUP_S_PER_ELEMENT * nelem * scale * speed
                    total += len(threads) * (rounds * per_round + setup)
    return total


def _ratio(row: Dict[str, Any], impl: str) -> Optional[float]:
    rechecked = row.get("ratios", {})
    if impl in rechecked:
        return rechecked[impl]
    s = row["seconds"]
    if impl in s and "fastadapt" in s:
        return s[impl] / s["fastadapt"]
    return None


def _mark(row: Dict[str, Any], impl: str, text: str) -> str:
    return text + "?" if impl in row.get("unstable", ()) and text != "-" else text


def _fmt(x: Optional[float], pattern: str) -> str:
    return "-" if x is None or not math.isfinite(x) else pattern.format(x)


COLUMNS = ("case", "thr", "fastadapt ms", "GB/s", "% roof", "x numpy", "x torch fused", "x torch foreach",
           "x torch single", "variants (x plain)")


def _cells(row: Dict[str, Any]) -> List[str]:
    s = row["seconds"]
    fa_s = s.get("fastadapt")
    gbs = row["bytes"] / fa_s / 1e9 if fa_s else None
    of_roof = _ratio(row, "roof")
    roof = 100 * of_roof if of_roof else None   # the roof's time over fastadapt's: 100% = at the roof
    variants = ", ".join(_mark(row, k, f"{k.split('+')[1]} {_ratio(row, k):.2f}") for k in s if "+" in k and fa_s)

    def x(impl: str, pattern: str) -> str:
        return _mark(row, impl, _fmt(_ratio(row, impl), pattern))

    return [f"{row['rule']} {row['dtype']} {row['layout']}", str(row["threads"]),
            _fmt(fa_s * 1e3 if fa_s else None, "{:.3f}"), _fmt(gbs, "{:.1f}"),
            _mark(row, "roof", _fmt(roof, "{:.0f}%")),
            x("numpy", "{:.1f}"), x("torch-fused", "{:.2f}"), x("torch-foreach", "{:.2f}"), x("torch-single", "{:.2f}"),
            variants or "-"]


def fixed_width(columns: Sequence[str], cells: List[List[str]], left: int = 1) -> str:
    """A fixed-width table: the first ``left`` columns left-aligned, the rest right-aligned."""
    body = [list(columns)] + cells
    widths = [max(len(line[i]) for line in body) for i in range(len(columns))]
    out = []
    for j, line in enumerate(body):
        out.append("  ".join(c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths))))
        if j == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def markdown(columns: Sequence[str], cells: List[List[str]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(c) + " |" for c in cells]
    return "\n".join(lines)


def format_table(rows: List[Dict[str, Any]]) -> str:
    """A compact fixed-width table: ``x impl`` is that implementation's time
    divided by fastadapt's (above 1: fastadapt is faster)."""
    return fixed_width(COLUMNS, [_cells(r) for r in rows])


def format_markdown(rows: List[Dict[str, Any]]) -> str:
    return markdown(COLUMNS, [_cells(r) for r in rows])
