"""sslkern::rotations, sslkern::jigsaw, sslkern::relative_patches: the pretext generators
(sslkern.pretext) as torch.library ops, with fake implementations for torch.compile.

The generators are copies, not differentiable (x is data). Which code runs is data too:
`IMPLEMENTATIONS` says, per backend, on which device types it has pretext kernels, and
`implementation_for` picks among them the way sslkern.backends.resolve picks a backend (the
named one or a refusal with its reasons; for "auto" the device's preference order).
"""
import importlib

import torch

from .. import backends
from ..kinds import PRETEXT_TASKS
from . import _guards as guard
from ._common import unsigned

# backend -> (device types with pretext kernels, None for any; the module implementing them)
IMPLEMENTATIONS = {
    "reference": (None, "sslkern.pretext._torch"),
    "native": (("cpu",), "sslkern.pretext._native"),
    "triton": (("cuda", "cpu"), "sslkern.kernels.triton.pretext"),  # cpu: under TRITON_INTERPRET=1
}


def _has_kernels(name, device):
    devices, _ = IMPLEMENTATIONS[name]
    return devices is None or device.type in devices


def implementation_for(name, device, dtype):
    """The module whose rotations/jigsaw/relative_patches run on `device` for backend `name`."""
    if name == backends.AUTO:
        for candidate in backends.AUTO_ORDER.get(device.type, ("reference",)):
            if _has_kernels(candidate, device) and not backends.reasons(candidate, device, dtype):
                return importlib.import_module(IMPLEMENTATIONS[candidate][1])
        raise backends.BackendError(f"no backend has pretext kernels for {device} with {dtype}")
    backend = backends.resolve(name, device, dtype)  # raises with the backend's reasons
    if not _has_kernels(backend.name, device):
        raise backends.BackendError(f"backend {name!r} has no pretext kernels for {device.type} tensors; "
                                    f"use 'triton' or 'reference' there")
    return importlib.import_module(IMPLEMENTATIONS[backend.name][1])


_chosen = {}


def cached_implementation(name, device, dtype):
    """implementation_for, remembered per (name, device, dtype): what runs there does not change
    during a process (a refusal is not remembered: it raises every time)."""
    key = (name, device, dtype)
    if key not in _chosen:
        _chosen[key] = implementation_for(name, device, dtype)
    return _chosen[key]


# --- guards: what each op indexes, checked in the real and the fake implementation ---------

def _common(op, x, seed_draws, offset, backend):
    guard.backend(op, backend)
    guard.tensor(op, "x", x, 2)
    guard.offset(op, offset)
    guard.counters(op, "x's rows times the draws per row", x.shape[0] * seed_draws)


def _image(op, x, height, width):
    guard._value(op, height >= 1 and width >= 1, lambda: f"image_shape must be positive, got ({height}, {width})")
    guard.size(op, "x", x, 1, height * width, f"image_shape ({height}, {width})")


def _rotation_guard(x, side, offset, backend):
    op = "rotations"
    _common(op, x, PRETEXT_TASKS["rotation"].draws_per_row, offset, backend)
    _image(op, x, side, side)


def _jigsaw_guard(x, height, width, grid_h, grid_w, permutations, offset, backend):
    op = "jigsaw"
    _common(op, x, PRETEXT_TASKS["jigsaw"].draws_per_row, offset, backend)
    _image(op, x, height, width)
    guard._value(op, 1 <= grid_h <= height and 1 <= grid_w <= width,
                 lambda: f"grid ({grid_h}, {grid_w}) must have 1..{height} x 1..{width} tiles")
    guard._type(op, permutations.dtype == torch.int64, lambda: f"permutations must be int64, got {permutations.dtype}")
    shape_ok = permutations.dim() == 2 and permutations.shape[1] == grid_h * grid_w and permutations.shape[0] >= 1
    guard._value(op, shape_ok,
                 lambda: f"permutations must have shape [P >= 1, {grid_h * grid_w}], got {tuple(permutations.shape)}")
    guard._value(op, permutations.shape[0] < 2**31, lambda: "permutations must have fewer than 2**31 rows")
    guard.same_device(op, x=x, permutations=permutations)


def _relative_guard(x, height, width, patch, gap, offset, backend):
    op = "relative_patches"
    _common(op, x, PRETEXT_TASKS["relative"].draws_per_row, offset, backend)
    _image(op, x, height, width)
    guard._value(op, patch >= 1 and gap >= 0, lambda: f"patch must be >= 1 and gap >= 0, got {patch}, {gap}")
    guard._value(op, 3 * patch + 2 * gap <= min(height, width),
                 lambda: f"3 patches of {patch} with gaps of {gap} ({3 * patch + 2 * gap} pixels) do not fit "
                         f"image_shape ({height}, {width})")


def _labels_like(x):
    return x.new_empty(x.shape[0], dtype=torch.int64)


# --- the ops ---------------------------------------------------------------------------------

@torch.library.custom_op("sslkern::rotations", mutates_args=())
def rotations(x: torch.Tensor, side: int, seed: int, offset: int, backend: str) -> tuple[torch.Tensor, torch.Tensor]:
    _rotation_guard(x, side, offset, backend)
    impl = cached_implementation(backend, x.device, x.dtype)
    return impl.rotations(x.contiguous(), side, unsigned(seed), offset)


@rotations.register_fake
def _(x, side, seed, offset, backend):
    _rotation_guard(x, side, offset, backend)
    return torch.empty_like(x, memory_format=torch.contiguous_format), _labels_like(x)


@torch.library.custom_op("sslkern::jigsaw", mutates_args=())
def jigsaw(x: torch.Tensor, height: int, width: int, grid_h: int, grid_w: int, permutations: torch.Tensor,
           seed: int, offset: int, backend: str) -> tuple[torch.Tensor, torch.Tensor]:
    _jigsaw_guard(x, height, width, grid_h, grid_w, permutations, offset, backend)
    if permutations.device.type == "cpu":  # the values are indices: check them where that is free
        check_permutation_rows(permutations, prefix="sslkern::jigsaw: ")
    impl = cached_implementation(backend, x.device, x.dtype)
    return impl.jigsaw(x.contiguous(), height, width, grid_h, grid_w, permutations.contiguous(), unsigned(seed),
                       offset)


@jigsaw.register_fake
def _(x, height, width, grid_h, grid_w, permutations, seed, offset, backend):
    _jigsaw_guard(x, height, width, grid_h, grid_w, permutations, offset, backend)
    return torch.empty_like(x, memory_format=torch.contiguous_format), _labels_like(x)


@torch.library.custom_op("sslkern::relative_patches", mutates_args=())
def relative_patches(x: torch.Tensor, height: int, width: int, patch: int, gap: int, seed: int, offset: int,
                     backend: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    _relative_guard(x, height, width, patch, gap, offset, backend)
    impl = cached_implementation(backend, x.device, x.dtype)
    return impl.relative_patches(x.contiguous(), height, width, patch, gap, unsigned(seed), offset)


@relative_patches.register_fake
def _(x, height, width, patch, gap, seed, offset, backend):
    _relative_guard(x, height, width, patch, gap, offset, backend)
    square = x.new_empty(x.shape[0], patch * patch)
    return square, torch.empty_like(square), _labels_like(x)


def check_permutation_rows(permutations, prefix=""):
    """ValueError unless every row of the int tensor [P, T] is a permutation of 0..T-1
    (reads the values: on a GPU tensor that is one copy to the host)."""
    tiles = permutations.shape[1]
    expected = torch.arange(tiles, device=permutations.device)
    bad = (permutations.sort(dim=1).values != expected).any(dim=1)
    if bool(bad.any()):
        row = int(bad.nonzero()[0, 0])
        raise ValueError(f"{prefix}permutations[{row}] = {permutations[row].tolist()} is not a permutation "
                         f"of 0..{tiles - 1}")
