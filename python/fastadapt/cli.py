"""The ``fastadapt`` command line."""

from __future__ import annotations

import argparse
import json
import platform
import sys
from typing import List, Optional

import numpy as np


def _info(args: argparse.Namespace) -> int:
    import fastadapt as fa

    info = {
        "fastadapt": fa.__version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "simd": fa.simd_info(),
        "threads": fa.get_num_threads(),
    }
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    simd = info["simd"]
    print(f"fastadapt {info['fastadapt']} (Python {info['python']}, NumPy {info['numpy']})")
    print(f"SIMD: active {simd['active']}; compiled {', '.join(simd['compiled'])}; "
          f"this CPU supports {', '.join(simd['supported'])}")
    print(f"threads: {info['threads']}; chunk: {simd['chunk_elements']} elements")
    print("optimizers: Adam, AdamW, AdaGrad, RMSProp, SGD (fa.make_optimizer(name, ...))")
    return 0


def _csv(text: str) -> List[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _bench(args: argparse.Namespace) -> int:
    from . import benchmarks as fb
    from .runtime import get_num_threads

    rules = _csv(args.rules) if args.rules != "all" else list(fb.RULES)
    layouts = _csv(args.layouts) if args.layouts != "all" else list(fb.LAYOUTS)
    for name, given, known in (("rule", rules, fb.RULES), ("layout", layouts, fb.LAYOUTS)):
        unknown = [g for g in given if g not in known]
        if unknown:
            print(f"fastadapt bench: unknown {name} {unknown[0]!r}; expected {', '.join(known)}", file=sys.stderr)
            return 2
    dtypes = _csv(args.dtypes)
    all_threads = get_num_threads()
    threads = sorted({all_threads if t == "all" else int(t) for t in _csv(args.threads)})
    impls = ["fastadapt", "roof", "numpy", "torch-single", "torch-foreach", "torch-fused"]
    if args.variants:
        impls += [f"fastadapt+{v}" for v in fb.VARIANTS]
    if args.no_numpy:
        impls.remove("numpy")
    tty = sys.stderr.isatty()

    def progress(msg: str) -> None:
        if tty:
            sys.stderr.write("\r\033[K" + msg)
        else:
            sys.stderr.write(msg + "\n")
        sys.stderr.flush()

    rows = fb.run_suite(rules, dtypes, layouts, threads, impls, rounds=args.rounds, progress=progress)
    if tty:
        sys.stderr.write("\r\033[K")
    print(f"fastadapt bench: medians of {args.rounds} interleaved rounds; SIMD {fb._core.active_isa()}; "
          f"'x impl' = impl time / fastadapt time")
    print(fb.format_table(rows))
    if args.json:
        payload = {"simd": fb._core.active_isa(), "rounds": args.rounds, "rows": rows}
        with open(args.json, "w") as f:
            json.dump(payload, f, indent=1)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(fb.format_markdown(rows) + "\n")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="fastadapt", description="Adaptive optimizers for NumPy.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_info = sub.add_parser("info", help="version, SIMD paths and threads")
    p_info.add_argument("--json", action="store_true", help="print JSON")
    p_info.set_defaults(func=_info)
    p_bench = sub.add_parser("bench", help="throughput table: fused step vs roof, NumPy reference and torch")
    p_bench.add_argument("--rules", default="all", help="comma list or 'all' (adam, adamw, adagrad, rmsprop, "
                                                        "rmsprop-centered-momentum, sgd-momentum)")
    p_bench.add_argument("--dtypes", default="float32", help="comma list: float32,float64")
    p_bench.add_argument("--layouts", default="all", help="comma list or 'all' (64K, 1M, 16M, 256x4096, 1000x100)")
    p_bench.add_argument("--threads", default="1,all", help="comma list of thread counts; 'all' = every CPU")
    p_bench.add_argument("--rounds", type=int, default=15, help="interleaved timing rounds (median reported)")
    p_bench.add_argument("--variants", action="store_true", help="also fused clipping and each non-finite policy")
    p_bench.add_argument("--no-numpy", action="store_true", help="skip the (slow) NumPy reference")
    p_bench.add_argument("--json", metavar="PATH", help="write all medians as JSON")
    p_bench.add_argument("--markdown", metavar="PATH", help="write the table as Markdown")
    p_bench.set_defaults(func=_bench)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
