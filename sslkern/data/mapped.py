"""Image files read through a memory map, a batch at a time: data sets larger than memory.

`open_mapped(path)` maps a .npy file or an uncompressed IDX file (the format of MNIST's
`*-idx3-ubyte`) and returns a `MappedImages`. Its length and row width are known at once;
nothing else is read until `rows(indices)` asks for some rows, and then only those pages.
Rows come back as float32 in [0, 1], the numbers `load()` gives for the same file: uint8
images are scaled by 1/255, floating-point images must already lie in [0, 1] (checked on
every read, since checking up front would read the whole file).

`sslkern.train.fit` takes a `MappedImages` like a tensor: each rank reads only the rows of
its own shard, and `prefetch` reads the next batches on a background thread (pinned, and
copied without blocking, when the device is CUDA) while the current one trains.
"""
import os
import queue
import threading

import numpy as np
import torch

from . import DataError, _as_unit_floats, _square_shape, idx_header

PREFETCH_DEPTH = 2  # batches read ahead of the one training
_IDX_MAX_HEADER = 4 + 4 * 255  # magic + up to 255 dimensions


class MappedImages:
    """Images [N, D] in a memory-mapped file; `rows(indices)` reads some of them."""

    dtype = torch.float32  # of the rows it returns

    def __init__(self, array, path, image_shape):
        self.array, self.path, self.image_shape = array, path, image_shape
        self.shape = torch.Size(array.shape)

    def __len__(self):
        return self.shape[0]

    def __repr__(self):
        return f"MappedImages({self.path!r}, shape={tuple(self.shape)}, stored as {self.array.dtype})"

    def rows(self, indices):
        """float32 tensor [len(indices), D] of those rows, in the order given."""
        indices = np.asarray(indices, dtype=np.int64)
        if indices.size and (indices.min() < 0 or indices.max() >= len(self)):
            raise IndexError(f"row indices must lie in [0, {len(self)}), got {indices.min()}..{indices.max()}")
        order = np.argsort(indices, kind="stable")  # read the file forwards, then restore the order
        block = np.empty((indices.size, self.shape[1]), dtype=self.array.dtype)
        block[order] = self.array[indices[order]]
        return _as_unit_floats(block, self.path)


def open_mapped(path):
    """A `MappedImages` over the .npy or uncompressed IDX file at `path`, read lazily."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a file path, got {type(path).__name__}")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"path {path!r} is not an existing file")
    lower = os.path.basename(path).lower()
    if lower.endswith(".npy"):
        array = _map_npy(path)
    elif "idx" in lower or "ubyte" in lower:
        array = _map_idx(path)
    else:
        raise DataError(f"path {path!r}: only .npy and uncompressed IDX files can be memory-mapped")
    if array.ndim == 4 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or array.shape[0] == 0 or array.dtype.kind not in "fiub":
        raise DataError(f"path {path!r}: expected numeric images [N, D], [N, rows, cols] or [N, rows, cols, 1], "
                        f"got {array.dtype} {array.shape}")
    image_shape = tuple(array.shape[1:]) if array.ndim == 3 else _square_shape(array.shape[1])
    return MappedImages(array.reshape(array.shape[0], -1), path, image_shape)


def _map_npy(path):
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:  # numpy raises ValueError/OSError/EOFError for non-arrays
        raise DataError(f"path {path!r} is not a readable numpy file: {exc}") from exc
    if not array.flags.c_contiguous:  # rows would be strided reads, and reshaping would copy it all
        raise DataError(f"path {path!r} is stored in Fortran order; save it in C order (np.ascontiguousarray)")
    return array


def _map_idx(path):
    with open(path, "rb") as f:
        head = f.read(_IDX_MAX_HEADER)
    if head[:2] == b"\x1f\x8b":
        raise DataError(f"path {path!r} is gzip-compressed, which cannot be memory-mapped: gunzip it first")
    dtype, shape, header = idx_header(head, path)
    expected = header + int(np.prod(shape, dtype=object)) * dtype.itemsize
    if os.path.getsize(path) != expected:
        raise DataError(f"{path}: IDX header says shape {shape} ({expected} bytes) "
                        f"but the file has {os.path.getsize(path)} bytes")
    return np.memmap(path, dtype=dtype, mode="r", offset=header, shape=shape)


_END = object()


def prefetch(read_batches, device, depth=PREFETCH_DEPTH):
    """The CPU tensors of the iterable `read_batches`, on `device`, in order. A background
    thread reads up to `depth` batches ahead (pinning them for a CUDA device, whose copy then
    does not block), so the step does not wait on the file. Errors of the reads are raised
    here; closing the generator early stops the thread."""
    pin = device.type == "cuda"
    ready, stop = queue.Queue(maxsize=depth), threading.Event()

    def hand_over(item):
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def read():
        try:
            for batch in read_batches:
                if not hand_over((batch.pin_memory() if pin else batch, None)):
                    return
            hand_over((_END, None))
        except BaseException as exc:  # raised again in the consumer
            hand_over((None, exc))

    thread = threading.Thread(target=read, name="sslkern-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            batch, error = ready.get()
            if error is not None:
                raise error
            if batch is _END:
                return
            yield batch.to(device, non_blocking=pin)
    finally:
        stop.set()
        thread.join()
