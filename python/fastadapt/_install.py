"""How to install an optional dependency, said so that it works: fastadapt is
not on a package index (it is installed from a checkout, or from a wheel built
with ``python -m build``), so ``pip install "fastadapt[plot]"`` would fail. A
hint names the packages themselves, then the extra from a checkout. The extras
are pyproject.toml's; tests/test_small_things.py keeps the two in step."""

from __future__ import annotations

from typing import Dict, Tuple

EXTRAS: Dict[str, Tuple[str, ...]] = {
    "plot": ("matplotlib>=3.6",),
    "examples": ("mlxtend>=0.23", "tqdm>=4.60", "scikit-learn>=1.0"),
    "ray": ("ray>=2.9",),
}


def install_hint(extra: str, *packages: str) -> str:
    """``pip install <packages>`` (default: the extra's) and the extra from a
    checkout, e.g. 'pip install "matplotlib>=3.6" (from a fastadapt checkout:
    pip install ".[plot]")'."""
    wanted = packages or EXTRAS[extra]
    names = " ".join(f'"{p}"' if any(c in p for c in "<>=") else p for p in wanted)
    return f'pip install {names} (from a fastadapt checkout: pip install ".[{extra}]")'
