"""First benchmark: one Adam step on one float32 tensor of 16 M elements —
fastadapt's fused kernel against the NumPy reference (the article's way) and,
when installed, torch.optim.Adam (foreach and fused), at 1 and all threads.

Run ``pytest bench/`` for figures; CI runs ``--benchmark-disable`` so every
case still runs once and checks its result."""

import numpy as np
import pytest

import fastadapt as fa
from fastadapt import reference as ref

try:
    import torch
except ImportError:
    torch = None

N = 16 * 2**20
BYTES_PER_ELEMENT = 7 * 4  # Adam reads p, g, m, v and writes p, m, v (float32)


@pytest.fixture(scope="module")
def tensors():
    rng = np.random.default_rng(0)
    return rng.standard_normal(N, dtype=np.float32), rng.standard_normal(N, dtype=np.float32)


def _info(benchmark, impl, threads):
    benchmark.extra_info.update(impl=f"{impl} ({threads} thr)" if threads else impl, bytes=N * BYTES_PER_ELEMENT)
    if impl == "fastadapt":
        benchmark.extra_info["impl"] = "fastadapt"


def test_fastadapt_adam(benchmark, tensors, threads):
    p0, g = tensors
    # Correctness first: two steps equal the reference bit for bit.
    p, q = {"w": p0.copy()}, {"w": p0.copy()}
    opt, check = fa.Adam(lr=1e-3), ref.Adam(lr=1e-3)
    for _ in range(2):
        opt.update(p, {"w": g})
        check.update(q, {"w": g})
    assert np.array_equal(p["w"], q["w"])
    benchmark.group = f"adam-f32-16M-{threads}thr"
    _info(benchmark, "fastadapt", 0)
    benchmark(opt.update, p, {"w": g})


def test_numpy_reference_adam(benchmark, tensors, threads):
    # NumPy's elementwise ufuncs do not use threads: the same code in every group.
    p0, g = tensors
    p = {"w": p0.copy()}
    opt = ref.Adam(lr=1e-3)
    opt.update(p, {"w": g})
    assert np.isfinite(p["w"]).all()
    benchmark.group = f"adam-f32-16M-{threads}thr"
    _info(benchmark, "numpy reference", 0)
    benchmark(opt.update, p, {"w": g})


@pytest.mark.parametrize("variant", ["foreach", "fused"])
def test_torch_adam(benchmark, tensors, threads, variant):
    if torch is None:
        pytest.skip("torch is not installed")
    p0, g = tensors
    param = torch.nn.Parameter(torch.from_numpy(p0.copy()))
    param.grad = torch.from_numpy(g.copy())
    opt = torch.optim.Adam([param], lr=1e-3, **{variant: True})
    opt.step()
    # Same rule: after one step torch agrees with the reference to float32 rounding.
    q = {"w": p0.copy()}
    ref.Adam(lr=1e-3).update(q, {"w": g})
    np.testing.assert_allclose(param.detach().numpy(), q["w"], rtol=1e-5, atol=1e-7)
    benchmark.group = f"adam-f32-16M-{threads}thr"
    _info(benchmark, f"torch {variant}", 0)
    benchmark(opt.step)
