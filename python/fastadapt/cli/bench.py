"""``fastadapt bench``: the throughput table (the fused step against the memory
roof, the NumPy reference and torch). The cases and their timing are
``fastadapt.cli.benchmarks``, shared with ``pytest bench/``; imported
only when the command runs (it imports torch when torch is there)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Callable, List, Optional

from .._files import check_writable_dir, write_text
from ._common import UserError, positive_int, user_input

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the command on the ``fastadapt`` command's subparsers."""
    parser = subparsers.add_parser("bench", help="throughput table: fused step vs roof, NumPy reference and torch")
    parser.add_argument("--full", action="store_true",
                        help="every rule and layout in 15 rounds (it prints its estimated time first; over an "
                             "hour on 2 cores) instead of the headline cases (adam float32 16M, 1M, 1000x100 at 1 "
                             "and all threads, 9 rounds: about a minute)")
    parser.add_argument("--rules", default=None, type=_names("rule", "RULES", allow_all=True),
                        help="comma list or 'all': every optimizer by its name (adam, nadam, lion, lamb, muon, "
                             "...; an unknown name lists them) and the variants rmsprop-centered-momentum, "
                             "sgd-momentum; default adam, with --full all")
    parser.add_argument("--dtypes", default=None, type=_names("dtype", "DTYPES", allow_all=False),
                        help="comma list: float32,float64 (default float32)")
    parser.add_argument("--layouts", default=None, type=_names("layout", "LAYOUTS", allow_all=True),
                        help="comma list or 'all': 64K, 1M, 16M, 256x4096 (256 tensors of 4096), 1000x100, "
                             "matrix784x128, matrix1024x1024, matrix4096x4096 (one matrix: Muon, Adafactor's "
                             "factored path); default 16M,1M,1000x100, with --full all")
    parser.add_argument("--threads", default=None, type=_thread_counts,
                        help="comma list of thread counts; 'all' = every CPU (default 1,all)")
    parser.add_argument("--rounds", type=positive_int, default=None,
                        help="interleaved timing rounds, median reported (default 9, with --full 15)")
    parser.add_argument("--variants", action="store_true", help="also fused clipping and each non-finite policy")
    parser.add_argument("--precision", action="store_true",
                        help="low precision instead: float32 against bfloat16 state, 8-bit state and bfloat16 "
                             "params+grads with 8-bit state, each against its own memory roof, in one run "
                             "(default adam 16M at 1 and all threads; --rules adam,adamw,sgd-momentum,rmsprop,"
                             "adagrad,lion, --layouts 64K,1M,16M)")
    parser.add_argument("--no-numpy", action="store_true", help="skip the (slow) NumPy reference")
    parser.add_argument("--json", metavar="PATH", help="write all medians as JSON")
    parser.add_argument("--markdown", metavar="PATH", help="write the table as Markdown")
    parser.set_defaults(func=run)
    return parser


def _csv(text: str) -> List[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _names(kind: str, table: str, allow_all: bool) -> Callable[[str], List[str]]:
    """A comma list of names from ``benchmarks.<table>`` (or 'all'),
    imported only when bench runs (it imports torch when torch is there)."""

    def parse(text: str) -> List[str]:
        from . import benchmarks as fb

        known = list(getattr(fb, table))
        if allow_all and text.strip() == "all":
            return list(known)
        given = _csv(text)
        if not given:
            raise argparse.ArgumentTypeError(f"expected a comma list of {kind}s ({', '.join(known)})")
        for g in given:
            if g not in known:
                raise argparse.ArgumentTypeError(f"unknown {kind} {g!r}; expected {', '.join(known)}")
        return given

    return parse


def _thread_counts(text: str) -> List[Any]:
    """``1,4,all``: thread counts >= 1; 'all' (every CPU) is resolved when the bench runs."""
    counts: List[Any] = []
    for t in _csv(text) or [text]:
        if t == "all":
            counts.append(t)
            continue
        try:
            n = int(t)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected thread counts >= 1 or 'all', got {t!r}") from None
        if n < 1:
            raise argparse.ArgumentTypeError(f"thread counts must be >= 1 (or 'all'), got {n}")
        counts.append(n)
    return counts


def _output_file(path: Optional[str], option: str) -> None:
    """A file the command will write: checked before the (long) work starts."""
    if path is None:
        return
    # "dir/" names a directory even before it exists; "" names nothing (and would be skipped silently).
    if not path or path.endswith(("/", os.sep)) or os.path.isdir(path):
        raise UserError(f"{option} {path!r} is a directory; pass a file path" if path
                        else f"{option} needs a file path")
    with user_input():
        check_writable_dir(os.path.dirname(path) or ".", f"the directory of {option}")


def _plan(args: argparse.Namespace) -> dict:
    """What ``fastadapt bench`` will measure: the headline cases, or with --full the whole grid; any of
    --rules/--dtypes/--layouts/--threads/--rounds replaces that part of the chosen set."""
    from ..runtime import get_num_threads
    from . import benchmarks as fb

    base = fb.FULL if args.full else fb.HEADLINE
    plan = {key: getattr(args, key) if getattr(args, key) is not None else base[key]
            for key in ("rules", "dtypes", "layouts", "threads", "rounds")}
    all_threads = get_num_threads()
    plan["threads"] = sorted({all_threads if t == "all" else t for t in plan["threads"]})
    impls = ["fastadapt", "roof", "numpy", "torch-single", "torch-foreach", "torch-fused"]
    if args.variants:
        impls += [f"fastadapt+{v}" for v in fb.VARIANTS]
    if args.no_numpy:
        impls.remove("numpy")
    plan["impls"] = impls
    return plan


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(5, round(seconds / 5) * 5):.0f} s"
    return f"{seconds / 60:.0f} min" if seconds >= 600 else f"{seconds / 60:.1f} min"


def _row_parts(row: dict) -> List[str]:
    """A measured row for the progress display: the table's cells with their column names."""
    from . import benchmarks as fb

    cells = fb._cells(row)
    parts = [f"{cells[0]}, {cells[1]} thr: fastadapt {cells[2]} ms", f"{cells[3]} GB/s", f"{cells[4]} of roof"]
    parts += [f"{name} {cell}" for name, cell in zip(fb.COLUMNS[5:9], cells[5:9]) if cell != "-"]
    if cells[9] != "-":
        parts += [f"variants {cells[9]}"]
    return parts


def _run_precision(args: argparse.Namespace) -> int:
    from ..runtime import get_num_threads
    from . import precision_bench as pb

    rules = args.rules or ["adam"]
    layouts = args.layouts or ["16M"]
    threads = sorted({get_num_threads() if t == "all" else t for t in (args.threads or [1, "all"])})
    rounds = args.rounds or 9
    with user_input():
        pb.check_precision_suite(rules, layouts, threads, rounds)
    print(f"fastadapt bench --precision: {len(rules) * len(layouts) * len(threads)} combination(s) x "
          f"{len(pb.PRECISIONS)} storages and their roofs, {rounds} interleaved rounds", file=sys.stderr)

    def progress(msg: str) -> None:
        sys.stderr.write(msg + "\n")
        sys.stderr.flush()

    rows = pb.run_precision_suite(rules, layouts, threads, rounds, progress=progress)
    print(f"fastadapt bench --precision: medians of {rounds} interleaved rounds; SIMD {pb._core.active_isa()}; "
          f"'x float32' = the float32 step's time / this step's (per round, median); '% own roof' = the time to "
          f"move this step's bytes at the bandwidth of the float32 roof (timed in the same rounds) / this step's; "
          f"'compute floor' = this step's arithmetic per element (in cache, 1 thread) x elements / threads")
    print(pb.format_precision_table(rows))
    if args.json:
        write_text(args.json, json.dumps({"simd": pb._core.active_isa(), "rounds": rounds, "rows": rows},
                                         indent=1) + "\n")
    if args.markdown:
        write_text(args.markdown, pb.format_precision_markdown(rows) + "\n")
    return 0


def run(args: argparse.Namespace) -> int:
    from ..train.progress import StepBar
    from . import benchmarks as fb

    _output_file(args.json, "--json")
    _output_file(args.markdown, "--markdown")
    if args.precision:
        if args.full or args.variants or args.dtypes or args.no_numpy:
            raise UserError("--precision measures its own grid (float32 params and state against low precision); "
                            "it takes --rules, --layouts, --threads, --rounds, --json and --markdown only")
        return _run_precision(args)
    plan = _plan(args)
    rules, dtypes, layouts, threads, impls, rounds = (plan[k] for k in ("rules", "dtypes", "layouts", "threads",
                                                                       "impls", "rounds"))
    with user_input():  # what argparse let through, checked as run_suite will (before minutes of timing)
        fb.check_suite(rules, dtypes, layouts, threads, impls, rounds)
    combos = len(rules) * len(dtypes) * len(layouts) * len(threads)
    # Up front, so that a long run is chosen knowingly. A model, not a measurement: per-case step and setup
    # times of the reference VM, scaled by a 0.1 s probe of this machine's memory speed.
    estimate = fb.estimate_seconds(rules, dtypes, layouts, threads, impls, rounds, speed=fb.machine_speed())
    what = "the whole grid (--full)" if args.full else "the headline cases (--full: every rule and layout)"
    bar = StepBar("bench", combos, unit="case")
    header = (f"fastadapt bench: {combos} combination(s) x {len(impls)} implementations, {rounds} rounds, {what}; "
              f"estimated {_duration(estimate)} on an idle machine (a model scaled by a memory-speed probe, not a "
              f"measurement; re-measured cells and a busy machine take longer)")
    if bar.active:  # on a terminal, wrapped between words at its width (a log keeps one line)
        import textwrap

        from ..train.progress import terminal_width

        header = textwrap.fill(header, terminal_width(sys.stderr), subsequent_indent="  ")
        bar.write(header)
    else:
        print(header, file=sys.stderr)
        sys.stderr.flush()

    def progress(msg: str) -> None:
        if bar.active:
            bar.set_status(msg.split("] ", 1)[-1])  # the bar counts; beside it, what is being measured
        else:
            sys.stderr.write(msg + "\n")
            sys.stderr.flush()

    def row_done(row: dict) -> None:
        bar.write_parts(_row_parts(row))
        bar.update()

    try:
        rows = fb.run_suite(rules, dtypes, layouts, threads, impls, rounds=rounds, progress=progress,
                            on_row=row_done)
    finally:
        bar.close()
    print(f"fastadapt bench: medians of {rounds} interleaved rounds; SIMD {fb._core.active_isa()}; "
          f"'x impl' = impl time / fastadapt time")
    print(fb.format_table(rows))
    if any(row["unstable"] for row in rows):
        print(f"?: the rounds of that cell disagreed (interquartile spread of its per-round ratios above "
              f"{fb.MAX_SPREAD}x) in {1 + fb.RECHECKS} measurements: the machine was busy; measure it again")
    if args.json:
        payload = {"simd": fb._core.active_isa(), "rounds": rounds, "rows": rows}
        write_text(args.json, json.dumps(payload, indent=1) + "\n")
    if args.markdown:
        write_text(args.markdown, fb.format_markdown(rows) + "\n")
    return 0
