"""The benchmark suite: every rule x dtype x layout x thread count, with the
fused step, the roof kernel, the NumPy reference and torch.optim side by side
(one pytest-benchmark group per combination). Every case checks its result
before it is timed. Cases and bytes moved come from fastadapt.cli.benchmarks,
shared with ``fastadapt bench``.

    python -m pytest bench/                          # figures
    python -m pytest bench/ --benchmark-disable      # CI: each case once, checked
"""

import numpy as np
import pytest

from fastadapt.cli import benchmarks as fb


BASE_IMPLS = ["fastadapt", "roof", "numpy", "torch-single", "torch-foreach", "torch-fused"]
VARIANT_IMPLS = [f"fastadapt+{v}" for v in fb.VARIANTS]


def _run(benchmark, rule, dtype, layout, threads, impl):
    try:
        case = fb.build_case(rule, dtype, layout, impl)
    except fb.SkipCase as e:
        pytest.skip(str(e))
    case.check()
    benchmark.group = f"{rule} {np.dtype(dtype).name} {layout} {threads}thr"
    benchmark.extra_info.update(impl=impl, bytes=case.nbytes)
    benchmark(case.step)


@pytest.mark.parametrize("impl", BASE_IMPLS)
@pytest.mark.parametrize("layout", list(fb.LAYOUTS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("rule", list(fb.RULES))
def test_step(benchmark, rule, dtype, layout, impl, threads):
    _run(benchmark, rule, dtype, layout, threads, impl)


@pytest.mark.parametrize("impl", ["fastadapt"] + VARIANT_IMPLS)
@pytest.mark.parametrize("layout", ["16M", "1000x100"])
def test_adam_gradient_processing(benchmark, layout, impl, threads):
    """Clipping fused into Adam and each non-finite policy, against plain Adam."""
    _run(benchmark, "adam", "float32", layout, threads, impl)
