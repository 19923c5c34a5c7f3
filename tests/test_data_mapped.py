"""sslkern.data.open_mapped: .npy and IDX files read through a memory map a batch at a time,
sharded by rank, prefetched; fit trains from a file larger than its batch budget to the
weights of the same data held in memory."""
import gzip
import threading

import numpy as np
import pytest
import torch

from sslkern import data, nn, train
from sslkern.data import mapped
from sslkern.train.batches import Batches
from sslkern.train.settings import data_identity


def write_idx(path, images):
    header = bytes([0, 0, 0x08, images.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in images.shape)
    path.write_bytes(header + images.tobytes())


def images(n, side=28, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, side, side), dtype=np.uint8)


@pytest.fixture(params=["npy", "idx"])
def image_file(request, tmp_path):
    """(path, the file's images as load() gives them: float32 [N, D])."""
    array = images(50, side=6)
    if request.param == "npy":
        path = tmp_path / "x.npy"
        np.save(path, array)
    else:
        path = tmp_path / "train-images-idx3-ubyte"
        write_idx(path, array)
    return path, torch.cat([data.load(path).X_train, data.load(path).X_test])


def test_rows_are_what_load_gives(image_file):
    path, X = image_file
    images = data.open_mapped(path)
    assert len(images) == 50 and images.shape == (50, 36) and images.image_shape == (6, 6)
    indices = [7, 3, 49, 3, 0]
    assert torch.equal(images.rows(indices), X[indices])
    assert images.rows([]).shape == (0, 36)
    assert data_identity(images) == data_identity(X)  # a resume may switch between the two
    with pytest.raises(IndexError, match=r"\[0, 50\)"):
        images.rows([50])


def test_files_that_cannot_be_mapped_are_clear_errors(tmp_path):
    write_idx(tmp_path / "a-idx3-ubyte", images(4))
    (tmp_path / "a-idx3-ubyte.gz").write_bytes(gzip.compress((tmp_path / "a-idx3-ubyte").read_bytes()))
    with pytest.raises(data.DataError, match="gunzip"):
        data.open_mapped(tmp_path / "a-idx3-ubyte.gz")
    (tmp_path / "short-idx3-ubyte").write_bytes((tmp_path / "a-idx3-ubyte").read_bytes()[:-1])
    with pytest.raises(data.DataError, match="header says"):
        data.open_mapped(tmp_path / "short-idx3-ubyte")
    np.save(tmp_path / "f.npy", np.asfortranarray(np.zeros((4, 3, 3), dtype=np.uint8)))
    with pytest.raises(data.DataError, match="Fortran"):
        data.open_mapped(tmp_path / "f.npy")
    np.savez(tmp_path / "z.npz", x=np.zeros((2, 4)))
    with pytest.raises(data.DataError, match="only .npy and uncompressed IDX"):
        data.open_mapped(tmp_path / "z.npz")
    with pytest.raises(FileNotFoundError, match="path"):
        data.open_mapped(tmp_path / "missing.npy")
    with pytest.raises(TypeError, match="path"):
        data.open_mapped(3)


def test_values_outside_the_unit_interval_fail_when_read(tmp_path):
    np.save(tmp_path / "x.npy", np.array([[0.5, 0.25], [2.0, 0.0]], dtype=np.float32))
    images = data.open_mapped(tmp_path / "x.npy")
    assert images.rows([0]).tolist() == [[0.5, 0.25]]
    with pytest.raises(data.DataError, match=r"\[0, 1\]"):
        images.rows([1])


def test_fit_refuses_a_file_of_another_width(tmp_path):
    np.save(tmp_path / "x.npy", images(8))
    with pytest.raises(ValueError, match="X .*784.* n_visible is 100"):
        train.fit(nn.TiedAutoencoder(100, 4), data.open_mapped(tmp_path / "x.npy"), epochs=1, batch_size=4,
                  lr=0.1, progress=False)


def test_each_rank_reads_its_block_of_the_global_batch(tmp_path):
    np.save(tmp_path / "x.npy", images(101, side=4))
    source = data.open_mapped(tmp_path / "x.npy")
    device = torch.device("cpu")
    whole = list(Batches(source, 16, 8, 5, 0, 1, device).for_stage(0, None).epoch(0))
    ranks = [list(Batches(source, 16, 4, 5, rank, 2, device).for_stage(0, None).epoch(0)) for rank in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == len(whole) == 13  # 100 rows used of 101, 8 a step
    for step, (first, second) in enumerate(zip(*ranks)):
        assert first.shape == second.shape
        assert torch.equal(torch.cat([first, second]), whole[step][: 2 * first.shape[0]])


def test_fit_trains_from_a_file_larger_than_the_batch_budget(tmp_path, monkeypatch):
    n, batch = 4000, 32
    path = tmp_path / "big-images-idx3-ubyte"
    write_idx(path, images(n))
    source = data.open_mapped(path)
    budget = (mapped.PREFETCH_DEPTH + 2) * batch * 784 * 4  # float32 batches queued, being read, training
    assert n * 784 * 4 > 30 * budget

    reads = []
    real_rows = mapped.MappedImages.rows
    monkeypatch.setattr(mapped.MappedImages, "rows", lambda self, idx: reads.append(len(idx)) or real_rows(self, idx))
    from_file = nn.DenoisingAutoencoder(784, 16, seed=2)
    history = train.fit(from_file, source, epochs=1, batch_size=batch, lr=0.05, progress=False)
    training_reads = reads[1:]  # the first read is the fingerprint's
    assert max(training_reads) == batch and sum(training_reads) == n  # one batch at a time, every row once

    in_memory = nn.DenoisingAutoencoder(784, 16, seed=2)
    expected = train.fit(in_memory, torch.from_numpy(images(n).reshape(n, -1) / np.float32(255)), epochs=1,
                         batch_size=batch, lr=0.05, progress=False)
    assert torch.equal(from_file.weight, in_memory.weight) and from_file.step == in_memory.step
    assert history["loss"] == expected["loss"]


def test_prefetch_keeps_the_order_raises_read_errors_and_stops_when_closed():
    def reads(fail_at=None):
        for i in range(6):
            if i == fail_at:
                raise OSError("disk gone")
            yield torch.full((2, 3), float(i))

    cpu = torch.device("cpu")
    assert [int(b[0, 0]) for b in mapped.prefetch(reads(), cpu)] == list(range(6))
    stream = mapped.prefetch(reads(fail_at=3), cpu)
    assert [int(next(stream)[0, 0]) for _ in range(3)] == [0, 1, 2]
    with pytest.raises(OSError, match="disk gone"):
        next(stream)
    stream = mapped.prefetch(reads(), cpu)
    next(stream)
    stream.close()
    assert not any(t.name == "sslkern-prefetch" for t in threading.enumerate())
