"""``fastadapt info``: the version, the SIMD paths, the threads and the
registered optimizers."""

from __future__ import annotations

import argparse
import json
import platform
from typing import Any, Dict

import numpy as np

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the command on the ``fastadapt`` command's subparsers."""
    parser = subparsers.add_parser("info", help="version, SIMD paths, threads and optimizers")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from .._version import __version__
    from ..runtime import get_num_threads, simd_info
    from ._common import default_lr, optimizer_names

    info: Dict[str, Any] = {
        "fastadapt": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "simd": simd_info(),
        "threads": get_num_threads(),
        "optimizers": {name: {"default_lr": default_lr(name)} for name in optimizer_names()},
    }
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    simd = info["simd"]
    print(f"fastadapt {info['fastadapt']} (Python {info['python']}, NumPy {info['numpy']})")
    print(f"SIMD: active {simd['active']}; compiled {', '.join(simd['compiled'])}; "
          f"this CPU supports {', '.join(simd['supported'])}")
    print(f"threads: {info['threads']}; chunk: {simd['chunk_elements']} elements")
    print(f"optimizers (fa.make_optimizer(name, ...), fastadapt mnist --optimizer name): "
          f"{', '.join(info['optimizers'])}")
    return 0
