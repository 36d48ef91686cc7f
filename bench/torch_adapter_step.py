"""The optimizer step of fastadapt.torch.FusedOptimizer(rule="adam") next to
torch.optim.Adam(fused=True) and torch.optim.Adam(foreach=True), on float32
CPU parameters: 1000 tensors of 100 elements, and one of 16M.

    python bench/torch_adapter_step.py [--threads N] [--repeats R] [--rounds K]
    python -m pytest bench/torch_adapter_step.py [--benchmark-disable]

Only ``opt.step()`` is timed, in two ways of handing it gradients:

- ``kept``: the same gradient tensors every step (what
  ``zero_grad(set_to_none=False)`` gives, or gradients set once);
  FusedOptimizer reuses their NumPy views;
- ``new``: new gradient tensors before every step (what ``zero_grad()``'s
  default, ``set_to_none=True``, followed by ``backward()`` gives; the
  tensors come from a pool, assigned outside the timed region);
  FusedOptimizer checks them and its kernel reads them at their addresses.

For FusedOptimizer the time includes checking the gradients and bumping
autograd's version counters, every step. The last row is fa.Adam's update
on NumPy arrays of the same sizes: the kernel without the adapter. Within a
round each figure is the median of ``--repeats`` steps after two warm-up
steps, the optimizers taking turns step by step (so a load that comes and
goes on a shared machine falls on all of them; each repeat of the turns
starts one optimizer later, so each follows every other equally often); the table gives the median
over ``--rounds`` rounds and, in brackets, the smallest and largest round.
Figures only: nothing here asserts a time.

Under pytest each case first checks that FusedOptimizer's step equals
torch.optim.Adam's (to float32 rounding), then pytest-benchmark times it.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time

LAYOUTS = {"1000x100": (1000, 100), "1x16M": (1, 16 * 2 ** 20), "1x1M": (1, 2 ** 20)}
POOL = 3   # sets of gradient tensors the "new" mode cycles through


class Case:
    """One optimizer on its own copy of the parameters, and its gradients."""

    def __init__(self, make, base, grads, new_grads):
        import torch

        self.params = [torch.nn.Parameter(b.clone()) for b in base]
        self.pool = [[g.clone() for g in grads] for _ in range(POOL if new_grads else 1)]
        self.k = 0
        self.new_grads = new_grads
        self.give_grads()
        self.opt = make(self.params)

    def give_grads(self):
        """Before a step (untimed): the kept gradients, or the next set of the pool."""
        if self.new_grads or self.k == 0:
            for p, g in zip(self.params, self.pool[self.k % len(self.pool)]):
                p.grad = g
        self.k += 1


def makers():
    import torch

    from fastadapt.torch import FusedOptimizer

    return {
        "FusedOptimizer(adam)": lambda ps: FusedOptimizer(ps, rule="adam", lr=1e-3),
        "torch Adam(fused=True)": lambda ps: torch.optim.Adam(ps, lr=1e-3, fused=True),
        "torch Adam(foreach=True)": lambda ps: torch.optim.Adam(ps, lr=1e-3, foreach=True),
    }


def interleaved_medians(cases, raw, repeats):
    """Median seconds of each case's step (and of ``raw()``), timed in turns."""
    steps = [c.opt.step for c in cases] + [raw]
    prepare = [c.give_grads for c in cases] + [lambda: None]
    for step, prep in zip(steps, prepare):
        for _ in range(2):
            prep()
            step()
    times = [[] for _ in steps]
    order = list(zip(steps, prepare, times))
    for r in range(repeats):
        # Each repeat starts one case later: every case follows every other
        # equally often (what ran just before moves a step's time: caches).
        k = r % len(order)
        for step, prep, out in order[k:] + order[:k]:
            prep()
            start = time.perf_counter()
            step()
            out.append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def tensors(layout, seed=0):
    import torch

    n, size = LAYOUTS[layout]
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(size, generator=g) for _ in range(n)], [torch.randn(size, generator=g) for _ in range(n)]


def main(argv=None):
    import torch

    import fastadapt as fa

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=20, help="timed steps per optimizer and round")
    ap.add_argument("--rounds", type=int, default=5, help="rounds (each rebuilds the optimizers)")
    ap.add_argument("--layouts", default="1000x100,1x16M")
    ap.add_argument("--grads", default="kept,new", help="comma list: kept, new")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    fa.set_num_threads(args.threads)
    make = makers()
    labels = list(make) + ["fa.Adam, NumPy (no torch)"]
    print(f"threads={args.threads}, float32; ms per step: median of {args.rounds} rounds [smallest, largest], "
          f"each the median of {args.repeats} interleaved steps; x ours = time / FusedOptimizer's time")
    print(f"{'layout':<9} {'grads':<5} {'optimizer':<26} {'ms/step':>9} {'[min, max]':>19} {'x ours':>7} "
          f"{'[min, max]':>14}")
    for name in args.layouts.split(","):
        base, grads = tensors(name)
        for mode in args.grads.split(","):
            per_round = []
            for _ in range(args.rounds):
                cases = [Case(m, base, grads, new_grads=(mode == "new")) for m in make.values()]
                # the kernel alone, on NumPy copies: what the adapter adds is the rest
                arrays = [b.numpy().copy() for b in base]
                raw = functools.partial(fa.Adam(lr=1e-3).update, arrays, [g.numpy() for g in grads])
                per_round.append(interleaved_medians(cases, raw, args.repeats))
                del cases, arrays, raw
            for j, label in enumerate(labels):
                ms = [r[j] * 1e3 for r in per_round]
                ratio = [r[j] / r[0] for r in per_round]
                print(f"{name:<9} {mode:<5} {label:<26} {statistics.median(ms):>9.3f} "
                      f"[{min(ms):>8.3f}, {max(ms):>8.3f}] {statistics.median(ratio):>7.2f} "
                      f"[{min(ratio):>5.2f}, {max(ratio):>5.2f}]")


# ---- pytest: each case checked, then timed by pytest-benchmark ------------------------
try:
    import pytest
except ImportError:  # pragma: no cover - the script runs without pytest
    pytest = None

if pytest is not None:
    @pytest.mark.parametrize("impl", ["fastadapt", "fastadapt-new-grads", "torch-fused", "torch-foreach"])
    @pytest.mark.parametrize("layout", ["1000x100", "1x1M"])
    def test_torch_adapter_step(benchmark, layout, impl, threads):
        torch = pytest.importorskip("torch")
        base, grads = tensors(layout)
        make = dict(zip(["fastadapt", "torch-fused", "torch-foreach"], makers().values()))
        case = Case(make[impl.replace("-new-grads", "")], base, grads, new_grads=impl.endswith("new-grads"))
        # checked first: one step equals torch.optim.Adam's (float32, single-tensor: to rounding)
        ref = [torch.nn.Parameter(b.clone()) for b in base]
        for p, g in zip(ref, grads):
            p.grad = g.clone()
        torch.optim.Adam(ref, lr=1e-3, foreach=False).step()
        case.give_grads()
        case.opt.step()
        for p, q, b in zip(case.params, ref, base):
            assert torch.allclose(p.detach(), q.detach(), rtol=1e-6, atol=1e-7)
            assert not torch.equal(p.detach(), b)
        benchmark.group = f"torch adapter adam float32 {layout} {threads}thr"
        benchmark.extra_info.update(impl=impl)
        # (the gradients are handed over in the untimed setup)
        benchmark.pedantic(case.opt.step, setup=case.give_grads, rounds=50, warmup_rounds=2)


if __name__ == "__main__":
    main()
