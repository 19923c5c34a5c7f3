"""sslkern::corrupt and its gradient. The keep-mask is regenerated from (seed, offset) in
the backward, never stored. `rng`, when given, is an int64 [2] tensor (seed bits, offset) on
the data's device that replaces the integer seed and offset (see sslkern.functional.corrupt).
The structured masks (block, patch) need the image shape of the rows of x, `image_height` x
`image_width`, and the patch mask its tile side `patch` (sslkern/backends/structured.py)."""
from typing import Optional

import torch

from ..backends import structured
from ..kinds import CORRUPTIONS
from . import _guards as guard
from ._common import backend_for, stream


def _masked(impl, x, kind, level, seed, offset, image_shape, patch, grad):
    """The backend's corruption (or its gradient), or x times a structured mask."""
    if CORRUPTIONS[kind].needs_image_shape:
        keep = structured.keep_mask(impl, kind, level, seed, offset, x.shape[0], image_shape, patch,
                                    x.device, x.dtype)
        return x * keep
    return (impl.corrupt_grad if grad else impl.corrupt)(x, kind, level, seed, offset)


@torch.library.custom_op("sslkern::corrupt", mutates_args=())
def corrupt(x: torch.Tensor, kind: str, level: float, seed: int, offset: int, backend: str,
            rng: Optional[torch.Tensor] = None, image_height: int = 0, image_width: int = 0,
            patch: int = 0) -> torch.Tensor:
    guard.corrupt("corrupt", x, kind, level, offset, backend, rng, shape=(image_height, image_width), patch=patch)
    return _masked(backend_for(backend, x.device, x.dtype), x.contiguous(), kind, level, *stream(seed, offset, rng),
                   (image_height, image_width), patch, grad=False)


@corrupt.register_fake
def _(x, kind, level, seed, offset, backend, rng=None, image_height=0, image_width=0, patch=0):
    guard.corrupt("corrupt", x, kind, level, offset, backend, rng, shape=(image_height, image_width), patch=patch)
    return torch.empty_like(x, memory_format=torch.contiguous_format)


@torch.library.custom_op("sslkern::corrupt_grad", mutates_args=())
def corrupt_grad(grad: torch.Tensor, kind: str, level: float, seed: int, offset: int, backend: str,
                 rng: Optional[torch.Tensor] = None, image_height: int = 0, image_width: int = 0,
                 patch: int = 0) -> torch.Tensor:
    guard.corrupt("corrupt_grad", grad, kind, level, offset, backend, rng, name="grad",
                  shape=(image_height, image_width), patch=patch)
    return _masked(backend_for(backend, grad.device, grad.dtype), grad.contiguous(), kind, level,
                   *stream(seed, offset, rng), (image_height, image_width), patch, grad=True)


@corrupt_grad.register_fake
def _(grad, kind, level, seed, offset, backend, rng=None, image_height=0, image_width=0, patch=0):
    guard.corrupt("corrupt_grad", grad, kind, level, offset, backend, rng, name="grad",
                  shape=(image_height, image_width), patch=patch)
    return torch.empty_like(grad, memory_format=torch.contiguous_format)


def _setup(ctx, inputs, output):
    _, ctx.kind, ctx.level, ctx.seed, ctx.offset, ctx.backend, rng, *ctx.shape = inputs
    ctx.save_for_backward(rng)  # saved, not stored: advancing it before the backward raises


def _backward(ctx, grad):
    nones = (None,) * (6 + len(ctx.shape))
    if CORRUPTIONS[ctx.kind].passes_gradient:  # x~ = x (+ noise): the derivative is the identity
        return (grad,) + nones
    rng, = ctx.saved_tensors
    dx = corrupt_grad(grad.contiguous(), ctx.kind, ctx.level, ctx.seed, ctx.offset, ctx.backend, rng, *ctx.shape)
    return (dx,) + nones


corrupt.register_autograd(_backward, setup_context=_setup)
