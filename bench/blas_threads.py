"""One BLAS thread for benchmarks of many tiny matmuls (small MLPs, the toy
problems, a GP): there BLAS threads only fight each other, and the other
tests, on a 2-core runner (one thread was ~40x faster on a loaded one)."""

import contextlib


def one_blas_thread():
    """A context manager limiting BLAS to one thread (does nothing without threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(1)
