"""Shared pieces of the benchmarks: thread control and a summary of ratios
(time of each case / time of the fastadapt case in its group) and effective
bandwidth, printed after pytest-benchmark's own table."""

import pytest

import fastadapt as fa

try:
    import torch
except ImportError:  # torch is optional: its cases skip
    torch = None

ALL_THREADS = fa.get_num_threads()
THREAD_COUNTS = sorted({1, ALL_THREADS})


@pytest.fixture(params=THREAD_COUNTS, ids=lambda n: f"{n}thr")
def threads(request):
    """Same thread count for fastadapt and torch. With --benchmark-disable
    (CI: each case once, checked) only the largest count runs: the thread
    count changes the timing, not the result, and tests/ checks every thread
    count gives the same bits."""
    if request.config.getoption("benchmark_disable") and request.param != THREAD_COUNTS[-1]:
        pytest.skip("timing only: with --benchmark-disable each case is checked at one thread count")
    before = fa.get_num_threads()
    fa.set_num_threads(request.param)
    torch_before = torch.get_num_threads() if torch else None
    if torch:
        torch.set_num_threads(request.param)
    yield request.param
    fa.set_num_threads(before)
    if torch:
        torch.set_num_threads(torch_before)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    session = getattr(config, "_benchmarksession", None)
    if session is None or session.disabled or not session.benchmarks:
        return
    rows = {}
    for bench in session.benchmarks:
        if not getattr(bench, "stats", None):
            continue
        rows.setdefault(bench.group, []).append(bench)
    tr = terminalreporter
    tr.section("fastadapt: medians, effective bandwidth, fraction of the roof, time / fastadapt time")
    for group, benches in sorted(rows.items()):
        base = next((b for b in benches if b.extra_info.get("impl") == "fastadapt"), None)
        roof = next((b for b in benches if b.extra_info.get("impl") == "roof"), None)
        tr.write_line(f"[{group}]")
        for b in sorted(benches, key=lambda b: b.stats.median):
            med = b.stats.median
            nbytes = b.extra_info.get("bytes", 0)
            ratio = f"{med / base.stats.median:7.2f}x fastadapt" if base else ""
            of_roof = f"{roof.stats.median / med * 100:5.0f}% of roof" if roof else ""
            # GB/s only where the bytes a step moves are known (the optimizer cases): the distributed
            # epochs report samples/s, and "0.00 GB/s" beside them meant nothing.
            bandwidth = f"{nbytes / med / 1e9:7.2f} GB/s  " if nbytes else ""
            tr.write_line(f"  {b.extra_info.get('impl', b.name):<22} {med * 1e3:10.3f} ms  "
                          f"{bandwidth}{of_roof}  {ratio}".rstrip())
