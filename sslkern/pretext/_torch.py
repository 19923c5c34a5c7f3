"""The pretext generators in plain PyTorch (the `reference` backend's; any device, any dtype).

Labels come from the reference backend's Philox (sslkern/backends/reference.py); each
generator then builds the source index of every output pixel and gathers. Independent of the
float64 test oracle, which the tests write with numpy."""
import torch

from ..backends.reference import philox_words
from ..kinds import PRETEXT_TASKS

_MASK32 = 0xFFFFFFFF


def draws(batch, task, n_choices, seed, offset, device):
    """[batch] int64 per entry of n_choices: row i's j-th pick, (c0 * n_j) >> 32 of the word at
    counter offset + draws_per_row * i + j (docs/random.md §10)."""
    per_row = PRETEXT_TASKS[task].draws_per_row
    words = philox_words(batch * per_row, seed, offset, device)[0].bitwise_and_(_MASK32).view(batch, per_row)
    return [(words[:, j] * n) >> 32 for j, n in enumerate(n_choices)]


def _gather(x, maps, labels):
    return torch.gather(x, 1, maps[labels]) if x.shape[0] else torch.empty_like(x)


def rotation_maps(side, device):
    """[4, side*side]: the source pixel of each output pixel for k = 0..3 (np.rot90's turns)."""
    image = torch.arange(side * side, device=device).view(side, side)
    return torch.stack([torch.rot90(image, k).reshape(-1) for k in range(4)])


def jigsaw_maps(height, width, grid_h, grid_w, permutations):
    """[P, height*width]: the source pixel of each output pixel under each permutation."""
    device = permutations.device
    tile_h, tile_w = height // grid_h, width // grid_w
    r = torch.arange(height, device=device).view(-1, 1).expand(height, width).reshape(-1)
    c = torch.arange(width, device=device).view(1, -1).expand(height, width).reshape(-1)
    tiled = (r < grid_h * tile_h) & (c < grid_w * tile_w)
    position = torch.where(tiled, (r // tile_h) * grid_w + c // tile_w, 0)
    source = permutations.long()[:, position]
    moved = ((source // grid_w) * tile_h + r % tile_h) * width + (source % grid_w) * tile_w + c % tile_w
    return torch.where(tiled, moved, r * width + c)


def rotations(x, side, seed, offset):
    (labels,) = draws(x.shape[0], "rotation", (4,), seed, offset, x.device)
    return _gather(x, rotation_maps(side, x.device), labels), labels


def jigsaw(x, height, width, grid_h, grid_w, permutations, seed, offset):
    (labels,) = draws(x.shape[0], "jigsaw", (permutations.shape[0],), seed, offset, x.device)
    return _gather(x, jigsaw_maps(height, width, grid_h, grid_w, permutations), labels), labels


def relative_patches(x, height, width, patch, gap, seed, offset):
    step, extent = patch + gap, 3 * patch + 2 * gap
    labels, top, left = draws(x.shape[0], "relative", (8, height - extent + 1, width - extent + 1), seed, offset,
                              x.device)
    square = torch.where(labels < 4, labels, labels + 1)  # 0..8 row by row; 4 is the centre
    q = torch.arange(patch, device=x.device)
    inside = (q.view(-1, 1) * width + q.view(1, -1)).reshape(1, -1)  # a square's pixels from its corner
    center = ((top + step) * width + left + step).view(-1, 1) + inside
    neighbour = ((top + (square // 3) * step) * width + left + (square % 3) * step).view(-1, 1) + inside
    if x.shape[0] == 0:
        empty = x.new_empty(0, patch * patch)
        return empty, empty.clone(), labels
    return torch.gather(x, 1, center), torch.gather(x, 1, neighbour), labels
