import numpy as np
import pytest

import fastadapt as fa
from fastadapt import _core

SUPPORTED_ISAS = list(_core.supported_isas())


@pytest.fixture(params=SUPPORTED_ISAS)
def isa(request):
    """Run the test on every SIMD path this CPU supports."""
    before = _core.active_isa()
    _core._set_simd(request.param)
    yield request.param
    _core._set_simd(before)


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def threads(request):
    before = fa.get_num_threads()
    fa.set_num_threads(request.param)
    yield request.param
    fa.set_num_threads(before)


def copy_tree(tree):
    if isinstance(tree, dict):
        return {k: copy_tree(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(copy_tree(v) for v in tree)
    return tree.copy()


def leaves(tree):
    if isinstance(tree, dict):
        for v in tree.values():
            yield from leaves(v)
    elif isinstance(tree, (list, tuple)):
        for v in tree:
            yield from leaves(v)
    else:
        yield tree


def same_bits(a, b):
    """Byte-for-byte equality (NaN payloads and signed zeros included)."""
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def trees_same_bits(a, b):
    la, lb = list(leaves(a)), list(leaves(b))
    return len(la) == len(lb) and all(same_bits(x, y) for x, y in zip(la, lb))
