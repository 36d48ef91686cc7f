"""Muon's step time on one float32 matrix (784x128 and 1024x1024, the
issue's sizes), fastadapt next to torch.optim.Muon, at 1 and all threads.

    python bench/muon_step_time.py [--repeats N]

Rows: torch.optim.Muon as shipped (Newton-Schulz in bfloat16);
torch.optim.Muon with its bfloat16 cast removed (Newton-Schulz in float32,
the arithmetic fastadapt's default uses); the plain-NumPy reference
(fastadapt.reference.muon), in float32 and with ns_dtype="bfloat16";
fa.Muon (its fused element-wise calls around NumPy's products). Each figure is the median of
``--repeats`` timed steps after two warm-up steps, on the same gradient.
Figures only: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time

import numpy as np

SHAPES = [(784, 128), (1024, 1024)]


@contextlib.contextmanager
def threads(n):
    """n threads for torch, NumPy's BLAS (threadpoolctl, if installed) and fastadapt."""
    import fastadapt as fa

    saved = [fa.get_num_threads()]
    fa.set_num_threads(n)
    torch = _torch()
    if torch is not None:
        saved.append(torch.get_num_threads())
        torch.set_num_threads(n)
    try:
        from threadpoolctl import threadpool_limits
        limits = threadpool_limits(n)
    except ImportError:
        limits = contextlib.nullcontext()
    with limits:
        yield
    fa.set_num_threads(saved[0])
    if torch is not None:
        torch.set_num_threads(saved[1])


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch if hasattr(torch.optim, "Muon") else None


def median_seconds(step, repeats):
    for _ in range(2):
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def cases(shape, rng):
    """name -> a function making one step (each on its own copy of the same data)."""
    import fastadapt as fa
    from fastadapt.reference import muon as ref_muon

    p0 = rng.standard_normal(shape).astype(np.float32)
    g = rng.standard_normal(shape).astype(np.float32)
    out = {}
    torch = _torch()
    if torch is not None:
        for name, cast_removed in (("torch.optim.Muon (bf16 NS)", False), ("torch.optim.Muon (f32 NS)", True)):
            param = torch.nn.Parameter(torch.tensor(p0))
            param.grad = torch.tensor(g)
            opt = torch.optim.Muon([param], lr=0.02)

            def step(opt=opt, cast_removed=cast_removed):
                if not cast_removed:
                    opt.step()
                    return
                keep = torch.Tensor.bfloat16
                torch.Tensor.bfloat16 = lambda self, *a, **k: self.clone()
                try:
                    opt.step()
                finally:
                    torch.Tensor.bfloat16 = keep

            out[name] = step
    for name, ns_dtype in (("reference (NumPy, f32 NS)", None), ("reference (NumPy, bf16 NS)", "bfloat16")):
        params, ref = {"w": p0.copy()}, ref_muon.Muon(lr=0.02, ns_dtype=ns_dtype)
        out[name] = lambda ref=ref, params=params: ref.update(params, {"w": g})
    if hasattr(fa, "Muon"):
        params, opt = {"w": p0.copy()}, fa.Muon(lr=0.02)
        out["fa.Muon (f32 NS)"] = lambda opt=opt, params=params: opt.update(params, {"w": g})
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args(argv)
    import fastadapt as fa

    all_threads = fa.get_num_threads()
    counts = sorted({1, all_threads})
    print(f"Muon step time, float32, median of {args.repeats} (ms); {os.cpu_count()} CPUs")
    rng = np.random.default_rng(0)
    for shape in SHAPES:
        made = cases(shape, rng)
        rows = {name: [] for name in made}
        for n in counts:
            with threads(n):
                for name, step in made.items():
                    rows[name].append(median_seconds(step, args.repeats) * 1e3)
        width = max(map(len, rows))
        print(f"\n  {f'{shape[0]}x{shape[1]}':<{width}}" + "".join(f"  {f'{n} thr':>7}" for n in counts))
        for name, ms in rows.items():
            print(f"  {name:<{width}}" + "".join(f"  {m:7.2f}" for m in ms))


if __name__ == "__main__":
    main()
