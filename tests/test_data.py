"""sslkern.data: the embedded MNIST subset (checksummed), digits, and files (.npy, .npz, IDX)."""
import gzip

import numpy as np
import pytest
import torch

from sslkern import data


def test_mnist_10k_split_shapes_and_values():
    X_train, y_train, X_test, y_test = ds = data.load("mnist-10k")
    assert X_train.shape == (8000, 784) and X_test.shape == (2000, 784)
    assert X_train.dtype == torch.float32 and y_train.dtype == torch.int64
    assert 0.0 == X_train.min() and X_train.max() == 1.0
    assert y_train[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    counts = torch.bincount(torch.cat([y_train, y_test]), minlength=10).tolist()
    assert counts == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    pixel_mean = torch.cat([X_train, X_test]).mean().item() * 255
    assert abs(pixel_mean - 33.79) < 0.01  # the README's figure, over all 10,000 images
    assert ds.image_shape == (28, 28) and ds.name == "mnist-10k"
    assert ds.X_test is X_test


def test_mnist_checksums_are_verified(monkeypatch):
    name, _ = data.MNIST_FILES["labels"]
    monkeypatch.setitem(data.MNIST_FILES, "labels", (name, "0" * 64))
    data._mnist_arrays.cache_clear()
    try:
        with pytest.raises(data.DataError, match="sha256"):
            data.load("mnist-10k")
    finally:
        data._mnist_arrays.cache_clear()


def test_embedded_readme_keeps_the_attribution():
    from importlib import resources
    readme = resources.files("sslkern.data").joinpath("mnist-10k", "README.md").read_text(encoding="utf-8")
    assert "CC BY-SA 3.0" in readme and "LeCun" in readme
    for filename, sha256 in data.MNIST_FILES.values():
        assert filename in readme and sha256 in readme


def test_digits():
    pytest.importorskip("sklearn")
    X_train, y_train, X_test, y_test = ds = data.load("digits")
    assert X_train.shape[1] == 64 and len(X_train) + len(X_test) == 1797
    assert ds.image_shape == (8, 8) and 0 <= X_train.min() and X_train.max() <= 1


def test_npy_images_are_scaled_and_split(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, size=(10, 5, 7), dtype=np.uint8)
    np.save(tmp_path / "x.npy", images)
    X_train, y_train, X_test, y_test = ds = data.load(tmp_path / "x.npy")
    assert X_train.shape == (8, 35) and X_test.shape == (2, 35) and y_train is None
    assert ds.image_shape == (5, 7)
    torch.testing.assert_close(X_test[1], torch.from_numpy(images[9].reshape(-1) / 255.0).float())


def test_npz_keeps_its_split(tmp_path):
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "d.npz", x_train=rng.random((6, 16), dtype=np.float32), y_train=np.arange(6),
             x_test=rng.random((3, 16), dtype=np.float32), y_test=np.arange(3))
    X_train, y_train, X_test, y_test = ds = data.load(str(tmp_path / "d.npz"))
    assert X_train.shape == (6, 16) and X_test.shape == (3, 16)
    assert y_test.tolist() == [0, 1, 2] and ds.image_shape == (4, 4)


def write_idx(path, array, gz=False):
    codes = {np.uint8: 0x08, np.int32: 0x0C}
    header = bytes([0, 0, codes[array.dtype.type], array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape)
    raw = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_images_with_their_labels(tmp_path, gz):
    images = np.arange(5 * 4 * 3, dtype=np.uint8).reshape(5, 4, 3)
    suffix = ".gz" if gz else ""
    write_idx(tmp_path / f"train-images-idx3-ubyte{suffix}", images, gz)
    write_idx(tmp_path / f"train-labels-idx1-ubyte{suffix}", np.array([3, 1, 4, 1, 5], dtype=np.uint8), gz)
    X_train, y_train, X_test, y_test = ds = data.load(tmp_path / f"train-images-idx3-ubyte{suffix}")
    assert X_train.shape == (4, 12) and ds.image_shape == (4, 3)
    assert y_train.tolist() == [3, 1, 4, 1] and y_test.tolist() == [5]
    assert X_train[0, 11].item() == pytest.approx(11 / 255)


def test_parse_idx_matches_the_embedded_header():
    images, labels = data._mnist_arrays()
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8 and labels.shape == (10000,)


@pytest.mark.parametrize("name, content, message", [
    ("text.npy", b"hello, not an array", "not a readable numpy file"),
    ("bad-images-idx3-ubyte", b"\x00\x00\x08\x03\x00\x00\x00\x02", "IDX header"),
    ("bad2-images-idx3-ubyte", b"\x12\x34\x56\x78", "not an IDX file"),
    ("photo.jpg", b"\xff\xd8\xff", "unknown file type"),
])
def test_files_that_are_not_image_arrays(tmp_path, name, content, message):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(data.DataError, match=message):
        data.load(tmp_path / name)


@pytest.mark.parametrize("array, message", [
    (np.array([["a", "b"]]), "numeric"),
    (np.full((4, 9), 2.0, dtype=np.float32), r"\[0, 1\]"),
    (np.full((4, 9), np.nan, dtype=np.float32), r"\[0, 1\]"),
    (np.zeros((3,), dtype=np.uint8), "shape"),
    (np.zeros((0, 4), dtype=np.uint8), "shape"),
])
def test_wrong_arrays_are_clear_errors(tmp_path, array, message):
    np.save(tmp_path / "x.npy", array)
    with pytest.raises(data.DataError, match=message):
        data.load(tmp_path / "x.npy")


def test_unknown_names_and_types():
    with pytest.raises(FileNotFoundError, match="mnist-10k"):
        data.load("mnist-60k")
    with pytest.raises(TypeError, match="source"):
        data.load(42)


def test_mismatched_labels(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((4, 4), np.uint8), y=np.arange(3))
    with pytest.raises(data.DataError, match="labels"):
        data.load(tmp_path / "d.npz")
