"""sslkern::corrupt and its gradient. The keep-mask is regenerated from (seed, offset) in
the backward, never stored. `rng`, when given, is an int64 [2] tensor (seed bits, offset) on
the data's device that replaces the integer seed and offset (see sslkern.functional.corrupt)."""
from typing import Optional

import torch

from . import _guards as guard
from ._common import backend_for, stream


@torch.library.custom_op("sslkern::corrupt", mutates_args=())
def corrupt(x: torch.Tensor, kind: str, level: float, seed: int, offset: int, backend: str,
            rng: Optional[torch.Tensor] = None) -> torch.Tensor:
    guard.corrupt("corrupt", x, kind, level, offset, backend, rng)
    return backend_for(backend, x.device, x.dtype).corrupt(x.contiguous(), kind, level, *stream(seed, offset, rng))


@corrupt.register_fake
def _(x, kind, level, seed, offset, backend, rng=None):
    guard.corrupt("corrupt", x, kind, level, offset, backend, rng)
    return torch.empty_like(x, memory_format=torch.contiguous_format)


@torch.library.custom_op("sslkern::corrupt_grad", mutates_args=())
def corrupt_grad(grad: torch.Tensor, kind: str, level: float, seed: int, offset: int, backend: str,
                 rng: Optional[torch.Tensor] = None) -> torch.Tensor:
    guard.corrupt("corrupt_grad", grad, kind, level, offset, backend, rng, name="grad")
    return backend_for(backend, grad.device, grad.dtype).corrupt_grad(grad.contiguous(), kind, level,
                                                                       *stream(seed, offset, rng))


@corrupt_grad.register_fake
def _(grad, kind, level, seed, offset, backend, rng=None):
    guard.corrupt("corrupt_grad", grad, kind, level, offset, backend, rng, name="grad")
    return torch.empty_like(grad, memory_format=torch.contiguous_format)


def _setup(ctx, inputs, output):
    _, ctx.kind, ctx.level, ctx.seed, ctx.offset, ctx.backend, rng = inputs
    ctx.save_for_backward(rng)  # saved, not stored: advancing it before the backward raises


def _backward(ctx, grad):
    nones = (None,) * 6
    if ctx.kind in ("none", "gaussian"):  # x~ = x (+ noise): the derivative is the identity
        return (grad,) + nones
    rng, = ctx.saved_tensors
    dx = corrupt_grad(grad.contiguous(), ctx.kind, ctx.level, ctx.seed, ctx.offset, ctx.backend, rng)
    return (dx,) + nones


corrupt.register_autograd(_backward, setup_context=_setup)
