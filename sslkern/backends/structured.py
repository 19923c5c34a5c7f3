"""The structured masks (corruption kinds "block" and "patch") and the hole weight, in PyTorch
on any device, for every backend (docs/random.md §11).

A structured mask needs each row's image shape, which the elementwise corruption kernels do
not know: so the mask is drawn here, from a few Philox uniforms per image (the backend's own
`philox`, bit-identical everywhere), as a [B, D] keep tensor (1 keeps the pixel, 0 drops it),
and applied by multiplication. Like every mask it is regenerated where the backward needs it,
never saved.

- block: image i draws u at counters offset + 2i (top) and offset + 2i + 1 (left); the hole
  is the square of side round(sqrt(level H W)) at top = floor(u (H - side + 1)) (in float64,
  so exact), left likewise.
- patch: tile t of image i (tiles of patch x patch pixels, row by row; edge tiles may be
  smaller) is dropped where u(offset + i T + t) < level (level rounded to float32, as mask).

The hole weight multiplies the reconstruction loss of the dropped pixels (Pathak et al.'s
context encoder weights the hole): `hole_loss_terms` gives the correction of the loss and of
dL/da that the backends add to their fused loss epilogue.
"""
import math

import torch

from ..kinds import CORRUPTIONS, LOSSES

COUNTERS = 2**32


def block_side(level, image_shape):
    """The hole's side for `level` on images of `image_shape`."""
    height, width = image_shape
    return int(round(math.sqrt(level * height * width)))


def draws_per_image(kind, image_shape, patch):
    """The Philox counters one image (row) uses."""
    name = CORRUPTIONS[kind].name
    if name == "block":
        return 2
    if name == "patch":
        height, width = image_shape
        return math.ceil(height / patch) * math.ceil(width / patch)
    raise ValueError(f"{kind!r} is not a structured mask (block, patch)")


def keep_mask(backend, kind, level, seed, offset, batch, image_shape, patch, device, dtype):
    """[B, H*W] of dtype: 1 where the pixel is kept, 0 where the mask drops it."""
    height, width = image_shape
    count = draws_per_image(kind, image_shape, patch)
    u = backend.philox(batch * count, seed, offset, device, False).view(batch, count)
    rows = torch.arange(height, device=device).view(1, height, 1)
    cols = torch.arange(width, device=device).view(1, 1, width)
    if CORRUPTIONS[kind].name == "block":
        side = block_side(level, image_shape)
        top = (u[:, :1].double() * (height - side + 1)).floor_().long().clamp_(max=height - side)
        left = (u[:, 1:].double() * (width - side + 1)).floor_().long().clamp_(max=width - side)
        inside = ((rows >= top.view(-1, 1, 1)) & (rows < top.view(-1, 1, 1) + side)
                  & (cols >= left.view(-1, 1, 1)) & (cols < left.view(-1, 1, 1) + side))
        return (~inside).to(dtype).view(batch, height * width)
    if CORRUPTIONS[kind].name == "patch":
        tiles_across = math.ceil(width / patch)
        tile = (rows // patch) * tiles_across + cols // patch                # [1, H, W]
        kept_tiles = u >= torch.tensor(level, dtype=torch.float32)           # [B, T]
        return kept_tiles[:, tile.view(-1)].to(dtype)
    raise ValueError(f"{kind!r} is not a structured mask (block, patch)")


def loss_terms(a, x, loss, decoder):
    """(per-element loss, d loss / d a, d loss / d x) at the logits a = h W + c."""
    name = LOSSES[loss].name
    if name == "bce":
        return torch.nn.functional.softplus(a) - x * a, torch.sigmoid(a) - x, -a
    if name == "mse":
        from .reference import act_d1, activate_

        y = activate_(decoder, a.clone())
        return 0.5 * (y - x).square(), (y - x) * act_d1(decoder, y), x - y
    raise ValueError(f"no loss {loss!r} in structured.loss_terms")


def hole_loss_terms(a, x, keep, hole_weight, loss, decoder, inv_batch):
    """(extra loss, extra dL/da): what weighting the dropped pixels' loss by hole_weight adds
    to the mean-over-batch objective; a [B, D] are the decoder's logits, keep the mask."""
    element, slope, _ = loss_terms(a, x, loss, decoder)
    extra = (hole_weight - 1.0) * (1.0 - keep)
    return (element * extra).sum() * inv_batch, slope * extra * inv_batch


def hole_target_grad(a, x, keep, hole_weight, loss, decoder, inv_batch):
    """The extra dL/dx through the reconstruction target (x itself) from the hole weight."""
    _, _, d_x = loss_terms(a, x, loss, decoder)
    return d_x * ((hole_weight - 1.0) * (1.0 - keep)) * inv_batch


def keep_of(backend, like, cfg):
    """The keep mask [B, D] of cfg's corruption: drawn here for a structured mask, else the
    backend's own regenerated mask (its corrupt_grad of ones)."""
    if cfg.structured:
        return keep_mask(backend, cfg.corruption, cfg.level, cfg.seed, cfg.offset, like.shape[0], cfg.image_shape,
                         cfg.patch, like.device, like.dtype)
    return backend.corrupt_grad(torch.ones_like(like), cfg.corruption, cfg.level, cfg.seed, cfg.offset)


def add_hole_terms(backend, h, W, c, x, d_a, dc, loss, cfg, keep=None):
    """The forward's hole weighting, after the fused loss epilogue: d_a and dc (already
    scale * dL/da and its column sums) gain the dropped pixels' extra weight in place; returns
    the loss with it. Recomputes the logits h W + c (one more product); `keep`, the mask when
    the caller already drew it, else drawn here."""
    keep = keep_of(backend, x, cfg) if keep is None else keep
    extra_loss, extra_slope = hole_loss_terms(torch.addmm(c, h, W), x, keep, cfg.hole_weight, cfg.loss,
                                              cfg.decoder, 1.0 / max(x.shape[0], 1))
    d_a += extra_slope
    dc += extra_slope.sum(0)
    return loss + extra_loss


def recon_input_grad(h, W, c, x, keep, cfg, weighted):
    """dL/dx through the reconstruction target (the clean x), for an incoming gradient of 1:
    all of it, or (weighted=False) only what the hole weight adds."""
    logits = torch.addmm(c, h, W)
    inv_batch = 1.0 / max(x.shape[0], 1)
    if not weighted:
        return hole_target_grad(logits, x, keep, cfg.hole_weight, cfg.loss, cfg.decoder, inv_batch)
    _, _, d_x = loss_terms(logits, x, cfg.loss, cfg.decoder)
    return d_x * (1.0 + (cfg.hole_weight - 1.0) * (1.0 - keep)) * inv_batch
