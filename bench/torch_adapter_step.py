"""The optimizer step of fastadapt.torch.FusedOptimizer(rule="adam") next to
torch.optim.Adam(fused=True) and torch.optim.Adam(foreach=True), on float32
CPU parameters: 1000 tensors of 100 elements, and one of 16M.

    python bench/torch_adapter_step.py [--threads N] [--repeats R]

Only ``opt.step()`` is timed (the gradients are set once): for
FusedOptimizer that includes taking NumPy views of the gradients, checking
them and bumping autograd's version counters, every step. The last row is
fa.Adam's update on NumPy arrays of the same sizes: the kernel without the
adapter. Each figure is
the median of ``--repeats`` steps after two warm-up steps; the three
optimizers take turns step by step, so a load that comes and goes on a
shared machine falls on all of them. Figures only: nothing here asserts a
time.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time

LAYOUTS = {"1000x100": (1000, 100), "1x16M": (1, 16 * 2 ** 20)}


def interleaved_medians(steps, repeats):
    """Median seconds of each step function, timed in turns."""
    for step in steps:
        step()
        step()
    times = [[] for _ in steps]
    for _ in range(repeats):
        for step, out in zip(steps, times):
            start = time.perf_counter()
            step()
            out.append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def main(argv=None):
    import torch

    import fastadapt as fa
    from fastadapt.torch import FusedOptimizer

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--layouts", default=",".join(LAYOUTS))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    fa.set_num_threads(args.threads)
    makers = {
        "FusedOptimizer(adam)": lambda ps: FusedOptimizer(ps, rule="adam", lr=1e-3),
        "torch Adam(fused=True)": lambda ps: torch.optim.Adam(ps, lr=1e-3, fused=True),
        "torch Adam(foreach=True)": lambda ps: torch.optim.Adam(ps, lr=1e-3, foreach=True),
    }
    print(f"threads={args.threads}, float32, median of {args.repeats} steps (ms)")
    print(f"{'layout':<10} {'optimizer':<26} {'ms/step':>9} {'torch/ours':>10}")
    for name in args.layouts.split(","):
        n, size = LAYOUTS[name]
        g = torch.Generator().manual_seed(0)
        base = [torch.randn(size, generator=g) for _ in range(n)]
        grads = [torch.randn(size, generator=g) for _ in range(n)]
        opts = []
        for make in makers.values():
            params = [torch.nn.Parameter(b.clone()) for b in base]
            for p, gr in zip(params, grads):
                p.grad = gr.clone()
            opts.append(make(params))
        # the kernel alone, on NumPy copies: what the adapter adds is the rest
        raw = fa.Adam(lr=1e-3)
        arrays = [b.numpy().copy() for b in base]
        garrays = [gr.numpy() for gr in grads]
        medians = interleaved_medians([o.step for o in opts] + [functools.partial(raw.update, arrays, garrays)],
                                      args.repeats)
        for label, t in zip(list(makers) + ["fa.Adam, NumPy (no torch)"], medians):
            print(f"{name:<10} {label:<26} {t * 1e3:>9.3f} {t / medians[0]:>10.2f}")
        del opts, arrays


if __name__ == "__main__":
    main()
