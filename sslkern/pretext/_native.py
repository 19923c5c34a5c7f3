"""The pretext generators through the C++ CPU module (csrc/cpu/pretext.cpp): one call each,
tensors as raw pointers. Elements are copied as words of their size, so any dtype works."""
import torch

from .. import _native
from ..backends._raw import _ptr


def _lib():
    lib = _native.load("cpu")
    if lib is None:
        raise RuntimeError(f"the native CPU module is not loaded: {_native.load_error('cpu')}")
    return lib


def _labels(x):
    return torch.empty(x.shape[0], dtype=torch.int64, device=x.device)


def rotations(x, side, seed, offset):
    out, labels = torch.empty_like(x), _labels(x)
    _lib().rotations(x.element_size(), _ptr(x), _ptr(out), _ptr(labels), x.shape[0], side, seed, offset)
    return out, labels


def jigsaw(x, height, width, grid_h, grid_w, permutations, seed, offset):
    out, labels = torch.empty_like(x), _labels(x)
    _lib().jigsaw(x.element_size(), _ptr(x), _ptr(out), _ptr(labels), x.shape[0], height, width, grid_h, grid_w,
                  _ptr(permutations), permutations.shape[0], seed, offset)
    return out, labels


def relative_patches(x, height, width, patch, gap, seed, offset):
    center, neighbour = (x.new_empty(x.shape[0], patch * patch) for _ in range(2))
    labels = _labels(x)
    _lib().relative_patches(x.element_size(), _ptr(x), _ptr(center), _ptr(neighbour), _ptr(labels), x.shape[0],
                            height, width, patch, gap, seed, offset)
    return center, neighbour, labels
