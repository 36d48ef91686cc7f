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


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="fastadapt", description="Adaptive optimizers for NumPy.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_info = sub.add_parser("info", help="version, SIMD paths and threads")
    p_info.add_argument("--json", action="store_true", help="print JSON")
    p_info.set_defaults(func=_info)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
