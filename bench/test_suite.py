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

import fastadapt as fa

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


# The first rules on every vector layout; every later rule on one large and
# one many-small-tensor layout (its 16M figures come from `fastadapt bench
# --rules NAME --layouts 16M`, which interleaves it with its roof and torch);
# the matrix rules on the matrix layouts.
FIRST_RULES = ["adam", "adamw", "adagrad", "rmsprop", "rmsprop-centered-momentum", "sgd-momentum"]
VECTOR_LAYOUTS = [name for name in fb.LAYOUTS if name not in fb.MATRIX_LAYOUTS]
CASES = ([(r, l) for r in FIRST_RULES for l in VECTOR_LAYOUTS]
         + [(r, l) for r in fb.RULES if r not in FIRST_RULES and not fb.RULES[r].matrices_only
            for l in ("1M", "1000x100")]
         + [(r, l) for r in ("adafactor", "muon") for l in ("matrix784x128", "matrix1024x1024")])


@pytest.mark.parametrize("impl", BASE_IMPLS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("rule,layout", CASES)
def test_step(benchmark, rule, dtype, layout, impl, threads):
    _run(benchmark, rule, dtype, layout, threads, impl)


def test_every_rule_is_benchmarked():
    registered = set(fa.optim.OPTIMIZERS) - {"adamw"}  # AdamW is Adam's kernel with decoupled decay
    benchmarked = {getattr(fa.optim, fb.RULES[r].optimizer).algorithm for r, _ in CASES}
    assert registered <= benchmarked, f"not benchmarked: {sorted(registered - benchmarked)}"


@pytest.mark.parametrize("impl", ["fastadapt"] + VARIANT_IMPLS)
@pytest.mark.parametrize("layout", ["16M", "1000x100"])
def test_adam_gradient_processing(benchmark, layout, impl, threads):
    """Clipping fused into Adam and each non-finite policy, against plain Adam."""
    _run(benchmark, "adam", "float32", layout, threads, impl)
