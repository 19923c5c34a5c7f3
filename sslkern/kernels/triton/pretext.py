"""Pretext-task generators (sslkern.pretext) as Triton kernels, then their launchers.

Each kernel runs one program per (batch row, block of output pixels): it draws the row's
label (and, for relative patches, the arrangement's position) from the Philox stream with a
scalar counter, turns each output pixel's index into its source index and copies. Program
(row, 0) also writes the label. Counters: row i draws words offset + DRAWS * i + j
(docs/random.md §10), so the labels are those of every other backend, bit for bit.
"""
import torch
import triton
import triton.language as tl

from ...backends.triton import _interpreting, _run
from ...kinds import PRETEXT_TASKS
from .common import counters, load_rng

ROTATION_DRAWS = tl.constexpr(PRETEXT_TASKS["rotation"].draws_per_row)
JIGSAW_DRAWS = tl.constexpr(PRETEXT_TASKS["jigsaw"].draws_per_row)
RELATIVE_DRAWS = tl.constexpr(PRETEXT_TASKS["relative"].draws_per_row)


@triton.jit
def pick(seed, offset, index, n):
    """A uniform integer in [0, n) from Philox word c0 at counter offset + index:
    (c0 * n) >> 32, as csrc/cpu/pretext.cpp computes it."""
    word = tl.randint(seed, counters(offset, index)).to(tl.uint64)
    return ((word * n.to(tl.uint64)) >> 32).to(tl.int64)


@triton.jit
def _row_and_pixels(pixels, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    p = tl.program_id(1).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    return row, p, p < pixels


@triton.jit
def _store_label(labels_ptr, row, label):
    if tl.program_id(1) == 0:
        tl.store(labels_ptr + row, label)


@triton.jit(do_not_specialize=["seed", "offset"])
def rotation_kernel(x_ptr, out_ptr, labels_ptr, side, seed, offset, BLOCK: tl.constexpr):
    seed, offset = load_rng(seed, offset, labels_ptr, False)
    pixels = side * side
    row, p, inside = _row_and_pixels(pixels, BLOCK)
    k = pick(seed, offset, row * ROTATION_DRAWS, tl.full((), 4, tl.int32))
    r, c = p // side, p % side
    # np.rot90(img, k): out[r, c] = img[c, n-1-r] (k=1), img[n-1-r, n-1-c] (2), img[n-1-c, r] (3)
    src = tl.where(k == 0, p, tl.where(k == 1, c * side + (side - 1 - r),
                                       tl.where(k == 2, pixels - 1 - p, (side - 1 - c) * side + r)))
    base = row * pixels
    tl.store(out_ptr + base + p, tl.load(x_ptr + base + src, mask=inside), mask=inside)
    _store_label(labels_ptr, row, k)


@triton.jit(do_not_specialize=["seed", "offset", "n_perms"])  # n_perms == 1 must stay a tensor
def jigsaw_kernel(x_ptr, out_ptr, labels_ptr, perms_ptr, n_perms, height, width, grid_h, grid_w, seed,
                  offset, BLOCK: tl.constexpr):
    seed, offset = load_rng(seed, offset, labels_ptr, False)
    pixels = height * width
    row, p, inside = _row_and_pixels(pixels, BLOCK)
    label = pick(seed, offset, row * JIGSAW_DRAWS, n_perms)
    tile_h, tile_w = height // grid_h, width // grid_w
    r, c = p // width, p % width
    tiled = inside & (r < grid_h * tile_h) & (c < grid_w * tile_w)
    position = (r // tile_h) * grid_w + c // tile_w
    source = tl.load(perms_ptr + label * (grid_h * grid_w) + position, mask=tiled, other=0)
    moved = ((source // grid_w) * tile_h + r % tile_h) * width + (source % grid_w) * tile_w + c % tile_w
    # Pixels outside the tiled area stay in place; so do those of an entry out of [0, tiles),
    # which the registered op cannot check on a GPU without a host read: no read out of bounds.
    valid = tiled & (source >= 0) & (source < grid_h * grid_w)
    src = tl.where(valid, moved, p)
    base = row * pixels
    tl.store(out_ptr + base + p, tl.load(x_ptr + base + src, mask=inside), mask=inside)
    _store_label(labels_ptr, row, label)


@triton.jit(do_not_specialize=["seed", "offset"])
def relative_kernel(x_ptr, center_ptr, neighbour_ptr, labels_ptr, height, width, patch, gap, seed, offset,
                    BLOCK: tl.constexpr):
    seed, offset = load_rng(seed, offset, labels_ptr, False)
    area = patch * patch
    row, p, inside = _row_and_pixels(area, BLOCK)
    first = row * RELATIVE_DRAWS
    step = patch + gap
    room = height - (3 * patch + 2 * gap) + 1, width - (3 * patch + 2 * gap) + 1
    label = pick(seed, offset, first, tl.full((), 8, tl.int32))
    top = pick(seed, offset, first + 1, room[0])
    left = pick(seed, offset, first + 2, room[1])
    square = tl.where(label < 4, label, label + 1)  # 0..8 row by row; 4 is the centre
    q, w = p // patch, p % patch
    image = x_ptr + row * height * width
    at_center = (top + step + q) * width + left + step + w
    at_neighbour = (top + (square // 3) * step + q) * width + left + (square % 3) * step + w
    tl.store(center_ptr + row * area + p, tl.load(image + at_center, mask=inside), mask=inside)
    tl.store(neighbour_ptr + row * area + p, tl.load(image + at_neighbour, mask=inside), mask=inside)
    _store_label(labels_ptr, row, label)


# --- launchers ------------------------------------------------------------------------------

def _block(pixels):
    """Output pixels per program: a whole small image in one (the interpreter runs programs
    one by one), at most 1024 on a GPU."""
    cap = 4096 if _interpreting() else 1024
    return min(triton.next_power_of_2(max(pixels, 1)), cap)


def _grid(batch, pixels, block):
    return (batch, triton.cdiv(pixels, block))


def _labels(x):
    return torch.empty(x.shape[0], dtype=torch.int64, device=x.device)


def rotations(x, side, seed, offset):
    out, labels = torch.empty_like(x), _labels(x)
    if x.shape[0]:
        block = _block(side * side)
        _run(rotation_kernel, _grid(x.shape[0], side * side, block), x.device, x_ptr=x, out_ptr=out,
             labels_ptr=labels, side=side, seed=seed, offset=offset, BLOCK=block)
    return out, labels


def jigsaw(x, height, width, grid_h, grid_w, permutations, seed, offset):
    out, labels = torch.empty_like(x), _labels(x)
    if x.shape[0]:
        block = _block(height * width)
        _run(jigsaw_kernel, _grid(x.shape[0], height * width, block), x.device, x_ptr=x, out_ptr=out,
             labels_ptr=labels, perms_ptr=permutations, n_perms=permutations.shape[0], height=height,
             width=width, grid_h=grid_h, grid_w=grid_w, seed=seed, offset=offset, BLOCK=block)
    return out, labels


def relative_patches(x, height, width, patch, gap, seed, offset):
    center, neighbour = (x.new_empty(x.shape[0], patch * patch) for _ in range(2))
    labels = _labels(x)
    if x.shape[0]:
        block = _block(patch * patch)
        _run(relative_kernel, _grid(x.shape[0], patch * patch, block), x.device, x_ptr=x, center_ptr=center,
             neighbour_ptr=neighbour, labels_ptr=labels, height=height, width=width, patch=patch, gap=gap,
             seed=seed, offset=offset, BLOCK=block)
    return center, neighbour, labels
