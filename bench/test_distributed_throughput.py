"""Data-parallel throughput on a local Ray: samples/s of one sync epoch of the
MNIST-sized MLP (784-128-10, Adam, 64 samples per worker per step, 2
parameter shards) for 1 and 2 workers (and 4 when the machine has the
cores), next to the same epoch in one process, and the Ray overhead per
step (wall time not spent in the slowest worker's loss_and_grad or the
slowest server's update). Synthetic data of MNIST's shape: no download.

    python -m pytest bench/test_distributed_throughput.py -s                   # figures
    python -m pytest bench/test_distributed_throughput.py --benchmark-disable  # CI: each case once, checked
"""

import os

import numpy as np
import pytest

import fastadapt as fa

ray = pytest.importorskip("ray")

CPUS = os.cpu_count() or 1
WORKER_COUNTS = [1, 2] + ([4] if CPUS >= 6 else [])
PER_WORKER_BATCH = 64
SAMPLES = 64 * 4 * 8     # 8 steps per epoch at 4 workers, 32 at 1


@pytest.fixture(scope="module")
def ray_session():
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=max(2, CPUS), include_dashboard=False, log_to_driver=False)
    yield
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def mnist_like():
    rng = np.random.default_rng(0)
    X = rng.random((SAMPLES, 784), dtype=np.float32)
    y = (X[:, :10].argmax(axis=1)).astype(np.int64)   # learnable labels, so the loss must fall
    return X, y


def _report(request, name, row):
    request.config.pluginmanager.get_plugin("terminalreporter").write_line(
        f"  [distributed] {name}: {row['samples_per_second']:9.0f} samples/s"
        + (f", Ray overhead {row['ray_overhead_ms']:.2f} ms/step" if "ray_overhead_ms" in row else ""))


def test_single_process_epoch(benchmark, mnist_like, request):
    """The baseline: the same epoch with one optimizer in this process."""
    X, y = mnist_like
    model = fa.models.MLP([784, 128, 10], seed=0)
    trainer = fa.Trainer(fa.Adam(lr=1e-3), loss_and_grad=model.loss_and_grad, params=model.params, progress=False)
    data = fa.batches(X, y, PER_WORKER_BATCH)
    trainer.fit(data)                 # warm, as the distributed cases are
    benchmark.group = "distributed mlp-784-128-10 epoch"
    benchmark.extra_info["impl"] = "single process"
    benchmark.pedantic(trainer.fit, args=(data,), rounds=3, iterations=1)
    row = trainer.history.rows()[-1]
    row["samples_per_second"] = len(X) / row["seconds"]
    assert trainer.history["loss"][-1] < trainer.history["loss"][0]
    benchmark.extra_info["samples_per_second"] = row["samples_per_second"]
    _report(request, "single process", row)


@pytest.mark.parametrize("workers", WORKER_COUNTS)
def test_sync_epoch(benchmark, ray_session, mnist_like, request, workers):
    X, y = mnist_like
    model = fa.models.MLP([784, 128, 10], seed=0)
    data = fa.distributed.shard_batches(X, y, num_workers=workers, batch_size=PER_WORKER_BATCH)
    with fa.distributed.DataParallel(model.params, fa.Adam(lr=1e-3), loss_and_grad=model.loss_and_grad,
                                     num_workers=workers, num_shards=2,
                                     worker_options={"num_cpus": max(1, CPUS // max(workers, 2)) if CPUS > 2
                                                     else 2 / workers}) as ps:
        ps.fit(data, epochs=1)        # warm: workers started, first steps done
        benchmark.group = "distributed mlp-784-128-10 epoch"
        benchmark.extra_info["impl"] = f"{workers} workers"
        benchmark.pedantic(ps.fit, args=(data,), rounds=3, iterations=1)
        history = ps.history
    row = history.rows()[-1]
    assert history["loss"][-1] < history["loss"][0]
    assert row["steps"] == len(X) // (workers * PER_WORKER_BATCH)
    benchmark.extra_info.update(samples_per_second=row["samples_per_second"], ray_overhead_ms=row["ray_overhead_ms"])
    _report(request, f"{workers} workers", row)
