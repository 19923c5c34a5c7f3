"""Data sets: the embedded MNIST subset, scikit-learn's digits, and image arrays from files.

`load(source)` returns a `Dataset`: a 4-tuple (X_train, y_train, X_test, y_test) with X
float32 [N, D] in [0, 1] and y int64 [N] (None for unlabelled files), plus `image_shape` and
`name` attributes. Sources:

- "mnist-10k": the real MNIST test set shipped in this package (sha256-checked on every
  read); the first 8,000 images train, the last 2,000 are held out.
- "digits": scikit-learn's 8×8 digits (needs scikit-learn), the first 80% train.
- a path to a .npy, .npz or IDX (optionally .gz) file; see `load_file`.

`open_mapped(path)` instead maps a .npy or uncompressed IDX file without reading it: a
`MappedImages` that `sslkern.train.fit` takes like a tensor, reading only the rows of each
batch (sslkern/data/mapped.py).
"""
import functools
import gzip
import hashlib
import math
import os
from importlib import resources

import numpy as np
import torch

MNIST_DIR = "mnist-10k"
MNIST_FILES = {
    "images": ("t10k-images-idx3-ubyte.gz", "167310007f03058885c7e95e6c0b19c20de5c7fd3031f4cbdadc9014a523d80b"),
    "labels": ("t10k-labels-idx1-ubyte.gz", "fc607395669ec21321ea83e4b82c0544b7e8e63ff5b34337c06bc0a17cc0da3c"),
}
MNIST_TRAIN = 8000
TRAIN_FRACTION = 0.8  # split of sources that carry no split of their own
NAMES = ("mnist-10k", "digits")

# IDX type codes (the third header byte) -> numpy dtype, big-endian as the format says.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class DataError(ValueError):
    """A data source that cannot be read as images (the message says why)."""


class Dataset(tuple):
    """(X_train, y_train, X_test, y_test) with `image_shape` (rows, cols) or None, and `name`."""

    def __new__(cls, X_train, y_train, X_test, y_test, image_shape=None, name=""):
        self = super().__new__(cls, (X_train, y_train, X_test, y_test))
        self.image_shape, self.name = image_shape, name
        return self

    X_train = property(lambda self: self[0])
    y_train = property(lambda self: self[1])
    X_test = property(lambda self: self[2])
    y_test = property(lambda self: self[3])


def load(source="mnist-10k"):
    """The data set `source` names (a built-in name or a file path) as a `Dataset`."""
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"source must be a data set name {list(NAMES)} or a path, got {type(source).__name__}")
    if source == "mnist-10k":
        return _mnist_10k()
    if source == "digits":
        return _digits()
    if not os.path.exists(source):
        raise FileNotFoundError(f"source {os.fspath(source)!r} is neither a data set name {list(NAMES)} nor an existing file")
    return load_file(source)


# ---------------------------------------------------------------------------------------------
# Built-in sets


def _read_verified(filename, sha256):
    data = resources.files(__name__).joinpath(MNIST_DIR, filename).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise DataError(f"embedded file {MNIST_DIR}/{filename} is damaged: sha256 {digest}, expected {sha256}")
    return gzip.decompress(data)


@functools.lru_cache(maxsize=1)
def _mnist_arrays():
    images = parse_idx(_read_verified(*MNIST_FILES["images"]), "mnist-10k images")
    labels = parse_idx(_read_verified(*MNIST_FILES["labels"]), "mnist-10k labels")
    return images, labels


def _mnist_10k():
    images, labels = _mnist_arrays()
    X = _as_unit_floats(images, "mnist-10k images")
    y = torch.from_numpy(labels.astype(np.int64))
    return Dataset(X[:MNIST_TRAIN], y[:MNIST_TRAIN], X[MNIST_TRAIN:], y[MNIST_TRAIN:], (28, 28), "mnist-10k")


def _digits():
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise ImportError("the 'digits' data set needs scikit-learn (pip install scikit-learn)") from exc
    digits = load_digits()
    X = torch.from_numpy((digits.images / 16.0).astype(np.float32)).reshape(len(digits.images), -1)
    y = torch.from_numpy(digits.target.astype(np.int64))
    return _split(X, y, (8, 8), "digits")


# ---------------------------------------------------------------------------------------------
# Files


def load_file(path):
    """Images from a file, as a `Dataset` split first 80% / last 20% unless the file has a split.

    - .npy: an image array [N, D], [N, rows, cols] or [N, rows, cols, 1]; no labels.
    - .npz: keys x_train/y_train/x_test/y_test (the Keras MNIST layout, split kept), or
      x (or X, images) with optional y (or labels).
    - IDX (.idx*, *-ubyte, optionally .gz): an images file; a labels file next to it with
      "images-idx3" replaced by "labels-idx1" in its name is used when present.
    uint8 images are scaled by 1/255; floating-point images must already lie in [0, 1].
    """
    path = os.fspath(path)
    name = os.path.basename(path)
    lower = name.lower()
    if lower.endswith(".npy"):
        return _split(*_images_and_labels(_np_load(path), None, path), name)
    if lower.endswith(".npz"):
        return _load_npz(path, name)
    if "idx" in lower or "ubyte" in lower:
        images = parse_idx(_read_maybe_gzip(path), path)
        labels_path = path.replace("images-idx3", "labels-idx1")
        labels = parse_idx(_read_maybe_gzip(labels_path), labels_path) if labels_path != path and os.path.exists(labels_path) else None
        return _split(*_images_and_labels(images, labels, path), name)
    raise DataError(f"path {path!r}: unknown file type; expected .npy, .npz or an IDX file (…-idx3-ubyte[.gz])")


def _np_load(path):
    try:
        return np.load(path, allow_pickle=False)
    except Exception as exc:  # numpy raises ValueError/OSError/EOFError for non-arrays
        raise DataError(f"path {path!r} is not a readable numpy file: {exc}") from exc


def _load_npz(path, name):
    with _np_load(path) as archive:
        keys = set(archive.files)
        if {"x_train", "x_test"} <= keys:
            Xtr, ytr, shape = _images_and_labels(archive["x_train"], archive.get("y_train"), f"{path}:x_train")
            Xte, yte, _ = _images_and_labels(archive["x_test"], archive.get("y_test"), f"{path}:x_test")
            if Xtr.shape[1] != Xte.shape[1]:
                raise DataError(f"path {path!r}: x_train has {Xtr.shape[1]} features but x_test has {Xte.shape[1]}")
            return Dataset(Xtr, ytr, Xte, yte, shape, name)
        x_key = next((k for k in ("x", "X", "images") if k in keys), None)
        if x_key is None:
            raise DataError(f"path {path!r}: an .npz needs x_train/x_test or x (or X, images); it holds {sorted(keys)}")
        y_key = next((k for k in ("y", "labels") if k in keys), None)
        images, labels = archive[x_key], archive[y_key] if y_key else None
        return _split(*_images_and_labels(images, labels, path), name)


def _read_maybe_gzip(path):
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise DataError(f"path {path!r}: damaged gzip data: {exc}") from exc
    return data


def parse_idx(data, what="IDX data"):
    """A numpy array from the bytes of an IDX file (magic 0x0000TTNN: type TT, NN dimensions)."""
    dtype, shape, header = idx_header(data, what)
    # Python integers: numpy's int64 product wraps around for large dimensions (a header of
    # 2**16 x 2**16 x 2**16 x 2**16 would claim 0 bytes and pass the length check).
    expected = header + math.prod(shape) * dtype.itemsize
    if len(data) != expected:
        raise DataError(f"{what}: IDX header says shape {shape} ({expected} bytes) but the file has {len(data)} bytes")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def idx_header(data, what="IDX data"):
    """(dtype, shape, header length in bytes) of the IDX file whose first bytes are `data`
    (at least 4 + 4·dimensions of them); DataError if they are no IDX header."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES or data[3] == 0:
        raise DataError(f"{what} is not an IDX file (bad magic number {bytes(data[:4]).hex() or 'empty'})")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{what}: IDX header truncated")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.dtype(_IDX_DTYPES[data[2]]), shape, header


def _images_and_labels(images, labels, what):
    """(X [N, D] float32 in [0, 1], y int64 [N] or None, image_shape or None)."""
    images = np.asarray(images)
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if images.ndim not in (2, 3) or images.shape[0] == 0:
        raise DataError(f"{what}: expected images [N, D], [N, rows, cols] or [N, rows, cols, 1], got shape {images.shape}")
    shape = tuple(images.shape[1:]) if images.ndim == 3 else _square_shape(images.shape[1])
    X = _as_unit_floats(images.reshape(images.shape[0], -1), what)
    if labels is None:
        return X, None, shape
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] != X.shape[0] or labels.dtype.kind not in "iu":
        raise DataError(f"{what}: labels must be integers of shape [{X.shape[0]}], got {labels.dtype} {labels.shape}")
    return X, torch.from_numpy(labels.astype(np.int64)), shape


def _as_unit_floats(images, what):
    width = math.prod(images.shape[1:])  # not -1: an empty selection of rows has a width too
    if images.dtype == np.uint8:
        return torch.from_numpy(images.astype(np.float32) / 255.0).reshape(images.shape[0], width)
    if images.dtype.kind not in "fiub":
        raise DataError(f"{what}: expected a numeric image array, got dtype {images.dtype}")
    X = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).reshape(images.shape[0], width)
    if X.numel() and (not torch.isfinite(X).all() or X.min() < 0 or X.max() > 1):
        raise DataError(f"{what}: images must be uint8 (0..255) or numbers in [0, 1]; "
                        f"got values in [{X.min().item():g}, {X.max().item():g}]")
    return X


def _square_shape(d):
    side = int(round(d ** 0.5))
    return (side, side) if side * side == d else None


def _split(X, y, image_shape, name):
    n_train = max(1, int(len(X) * TRAIN_FRACTION)) if len(X) > 1 else len(X)
    y_train, y_test = (None, None) if y is None else (y[:n_train], y[n_train:])
    return Dataset(X[:n_train], y_train, X[n_train:], y_test, image_shape, name)


from .mapped import MappedImages, open_mapped  # noqa: E402  (it uses the helpers above)
