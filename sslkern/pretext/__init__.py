"""Pretext tasks: self-supervised labels made from the images themselves.

Each generator takes a batch of images as rows, x [B, H*W] with `image_shape` = (H, W),
draws one label per row from the Philox stream at (seed, offset) and returns the transformed
batch with its labels (int64 [B]):

- rotations(x, image_shape): each image turned by labels[i] x 90 degrees counter-clockwise
  (numpy.rot90(img, labels[i])); square images only; labels in 0..3.
- jigsaw(x, image_shape, grid, permutations): the image cut into grid tiles of
  floor(H/gh) x floor(W/gw); output tile t holds input tile permutations[labels[i], t];
  pixels outside the tiled area stay in place; labels in 0..P-1.
- relative_patches(x, image_shape, patch, gap): a 3x3 arrangement of patch x patch squares,
  gap pixels apart, at a position drawn per row; returns the centre square, one of its 8
  neighbours and its number (0..7, row by row, the centre skipped).

Row i draws the Philox words at counters offset + k*i + j, k = 1 (rotations, jigsaw) or 3
(relative patches: label, top, left); docs/random.md §10. Successive calls must move the
offset past offset + k*B, or change the seed, as with corruption. Every backend gives the
same outputs and labels, bit for bit; on a GPU nothing is read back to the host (except
that jigsaw checks user-given permutations once per call: see `jigsaw`).
"""
import itertools
import math
from numbers import Integral

import numpy as np
import torch

from .. import _validate as check
from .. import backends
from ..kinds import PRETEXT_TASKS
from ..ops import pretext as _ops
from ..ops.autoencoder import eager_fast_path_ok

__all__ = ["rotations", "jigsaw", "jigsaw_checked", "relative_patches", "permutation_set", "default_permutations",
           "check_permutations", "TASKS"]

TASKS = PRETEXT_TASKS
_sslkern = torch.ops.sslkern
_EXHAUSTIVE_TILES = 4  # up to 4 tiles the default set is every permutation (24 for 2x2)
DEFAULT_PERMUTATIONS = 100  # larger grids: a maximal-Hamming set of this many, seed 0


def rotations(x, image_shape, seed=0, offset=0):
    """(x_rot, labels): row i rotated by labels[i] x 90 degrees counter-clockwise (np.rot90)."""
    height, width = _images(x, image_shape)
    if height != width:
        raise ValueError(f"rotations need square images, got image_shape ({height}, {width})")
    seed, offset = _stream(x, "rotation", seed, offset)
    if eager_fast_path_ok(x):
        return _implementation(x).rotations(x.contiguous(), height, seed, offset)
    return _sslkern.rotations(x.contiguous(), height, check.signed_seed(seed), offset, backends.requested())


def jigsaw(x, image_shape, grid=(2, 2), permutations=None, seed=0, offset=0):
    """(x_perm, labels): output tile t of row i holds input tile permutations[labels[i], t].

    permutations: an integer tensor [P, gh*gw] of permutations of 0..gh*gw-1 on x's device
    (checked, which reads it: on a GPU one host copy per call; pass it through
    `check_permutations` once and use `jigsaw_checked` in a loop), or None for
    `default_permutations(grid)`."""
    height, width = _images(x, image_shape)
    grid_h, grid_w = _grid(grid, height, width)
    if permutations is None:
        permutations = default_permutations(grid, device=x.device)
    else:
        permutations = check_permutations(permutations, grid_h * grid_w, x.device)
    return jigsaw_checked(x, (height, width), (grid_h, grid_w), permutations, seed, offset)


def jigsaw_checked(x, image_shape, grid, permutations, seed=0, offset=0):
    """jigsaw with permutations already checked by check_permutations (nothing is read back)."""
    height, width = _images(x, image_shape)
    grid_h, grid_w = _grid(grid, height, width)
    seed, offset = _stream(x, "jigsaw", seed, offset)
    if eager_fast_path_ok(x, permutations):
        return _implementation(x).jigsaw(x.contiguous(), height, width, grid_h, grid_w, permutations, seed, offset)
    return _sslkern.jigsaw(x.contiguous(), height, width, grid_h, grid_w, permutations, check.signed_seed(seed),
                           offset, backends.requested())


def relative_patches(x, image_shape, patch=8, gap=2, seed=0, offset=0):
    """(center, neighbour, labels): squares [B, patch*patch] of a 3x3 arrangement at a drawn
    position; neighbour is square labels[i] of the 8 around the centre, numbered row by row."""
    height, width = _images(x, image_shape)
    patch, gap = _integer("patch", patch, 1), _integer("gap", gap, 0)
    extent = 3 * patch + 2 * gap
    if extent > min(height, width):
        raise ValueError(f"patch={patch} and gap={gap} need {extent} x {extent} pixels (3 patches, 2 gaps), "
                         f"more than image_shape ({height}, {width})")
    seed, offset = _stream(x, "relative", seed, offset)
    if eager_fast_path_ok(x):
        return _implementation(x).relative_patches(x.contiguous(), height, width, patch, gap, seed, offset)
    return _sslkern.relative_patches(x.contiguous(), height, width, patch, gap, check.signed_seed(seed), offset,
                                     backends.requested())


def default_permutations(grid=(2, 2), device=None):
    """Every permutation (in lexicographic order) for up to 4 tiles: all 24 for a 2x2 grid; for
    larger grids permutation_set(tiles, DEFAULT_PERMUTATIONS, seed=0)."""
    tiles = _grid(grid, math.inf, math.inf)
    tiles = tiles[0] * tiles[1]
    device = torch.device("cpu" if device is None else device)
    # Kept per device (a dict, not lru_cache: torch.compile traces through it quietly), so a
    # GPU call does not copy the set over every time.
    if (tiles, device) not in _DEFAULT_SETS:
        if tiles <= _EXHAUSTIVE_TILES:
            cpu = torch.tensor(list(itertools.permutations(range(tiles))), dtype=torch.int64)
        else:
            cpu = permutation_set(tiles, DEFAULT_PERMUTATIONS, seed=0)
        _DEFAULT_SETS[(tiles, device)] = cpu.to(device)
    return _DEFAULT_SETS[(tiles, device)].clone()  # a copy: the caller may write to it


_DEFAULT_SETS = {}  # (tiles, device) -> the default set there


def permutation_set(tiles, count, seed=0, pool=400_000):
    """[count, tiles] int64: permutations far apart in Hamming distance, chosen greedily as
    Noroozi & Favaro do for the jigsaw task. Start from one drawn permutation; then, again and
    again, add the candidate whose smallest distance to the chosen ones is largest. The
    candidates are all tiles! permutations when there are at most `pool` of them, else `pool`
    drawn ones; numpy's generator seeded with `seed` draws them and breaks ties. Tiles up to
    127 (int8 candidates)."""
    tiles = _integer("tiles", tiles, 1)
    if tiles > 127:
        raise ValueError(f"tiles must be at most 127, got {tiles}")
    count = _integer("count", count, 1)
    seed = check.seed(seed)
    rng = np.random.default_rng(seed)
    if math.factorial(tiles) <= pool:
        candidates = np.array(list(itertools.permutations(range(tiles))), dtype=np.int8)
        candidates = candidates[rng.permutation(len(candidates))]  # the seed decides ties
    else:
        candidates = rng.permuted(np.tile(np.arange(tiles, dtype=np.int8), (pool, 1)), axis=1)
        candidates = np.unique(candidates, axis=0)
        candidates = candidates[rng.permutation(len(candidates))]
    if count > len(candidates):
        raise ValueError(f"count={count} exceeds the {len(candidates)} distinct permutations of {tiles} tiles "
                         "available")
    chosen = [0]
    nearest = (candidates != candidates[0]).sum(axis=1)  # distance of each candidate to the set
    for _ in range(count - 1):
        best = int(np.argmax(nearest))
        chosen.append(best)
        nearest = np.minimum(nearest, (candidates != candidates[best]).sum(axis=1))
    return torch.from_numpy(candidates[chosen].astype(np.int64))


def check_permutations(permutations, tiles, device):
    """The permutations as a contiguous int64 tensor on `device`, or a clear error: an integer
    tensor [P >= 1, tiles] whose rows are permutations of 0..tiles-1."""
    if not isinstance(permutations, torch.Tensor):
        raise TypeError(f"permutations must be an integer torch.Tensor [P, {tiles}], got "
                        f"{type(permutations).__name__}")
    if permutations.dtype.is_floating_point or permutations.dtype.is_complex or permutations.dtype == torch.bool:
        raise TypeError(f"permutations must have an integer dtype, got {permutations.dtype}")
    if permutations.dim() != 2 or permutations.shape[1] != tiles or permutations.shape[0] < 1:
        raise ValueError(f"permutations must have shape [P >= 1, {tiles}] for a grid of {tiles} tiles, "
                         f"got {tuple(permutations.shape)}")
    if permutations.device != device:
        raise ValueError(f"permutations must be on {device} with x, got {permutations.device}")
    permutations = permutations.to(torch.int64).contiguous()
    _ops.check_permutation_rows(permutations)
    return permutations


# --- argument checks -----------------------------------------------------------------------

def _images(x, image_shape):
    """(height, width), checked against x [B, height*width]. Plain ints take a fast path: the
    generators run in microseconds, so the checks must too."""
    if not (type(x) is torch.Tensor and x.dim() == 2 and x.dtype.is_floating_point):
        check.tensor("x", x, 2)
    if not (type(image_shape) is tuple and len(image_shape) == 2 and type(image_shape[0]) is int
            and type(image_shape[1]) is int and image_shape[0] >= 1 and image_shape[1] >= 1):
        if (not isinstance(image_shape, (tuple, list)) or len(image_shape) != 2
                or not all(isinstance(s, Integral) and not isinstance(s, bool) and s >= 1 for s in image_shape)):
            raise ValueError(f"image_shape must be two positive integers (height, width), got {image_shape!r}")
    height, width = int(image_shape[0]), int(image_shape[1])
    if x.shape[1] != height * width:
        raise ValueError(f"image_shape ({height}, {width}) has {height * width} pixels but x has {x.shape[1]} "
                         "columns")
    return height, width


def _grid(grid, height, width):
    if (not isinstance(grid, (tuple, list)) or len(grid) != 2
            or not all(isinstance(g, Integral) and not isinstance(g, bool) and g >= 1 for g in grid)):
        raise ValueError(f"grid must be two positive integers (rows, columns of tiles), got {grid!r}")
    if grid[0] > height or grid[1] > width:
        raise ValueError(f"grid ({grid[0]}, {grid[1]}) does not fit image_shape ({height}, {width}): "
                         "a tile needs at least one pixel each way")
    return int(grid[0]), int(grid[1])


def _integer(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _stream(x, task, seed, offset):
    """(seed, offset), checked, and the batch's draws within the 32-bit counter."""
    if not (type(seed) is int and 0 <= seed < check.MAX_SEED):
        seed = check.seed(seed)
    if not (type(offset) is int and 0 <= offset < check.MAX_COUNTERS):
        offset = check.offset(offset)
    check.counters("x's rows times the draws per row", x.shape[0] * TASKS[task].draws_per_row)
    return seed, offset


def _implementation(x):
    return _ops.cached_implementation(backends.requested(), x.device, x.dtype)
