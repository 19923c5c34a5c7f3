"""sslkern::corrupt and its gradient. The keep-mask is regenerated from (seed, offset) in
the backward, never stored."""
import torch

from ._common import backend_for, unsigned


@torch.library.custom_op("sslkern::corrupt", mutates_args=())
def corrupt(x: torch.Tensor, kind: str, level: float, seed: int, offset: int, backend: str) -> torch.Tensor:
    return backend_for(backend, x.device, x.dtype).corrupt(x, kind, level, unsigned(seed), offset)


@corrupt.register_fake
def _(x, kind, level, seed, offset, backend):
    return torch.empty_like(x)


@torch.library.custom_op("sslkern::corrupt_grad", mutates_args=())
def corrupt_grad(grad: torch.Tensor, kind: str, level: float, seed: int, offset: int, backend: str) -> torch.Tensor:
    return backend_for(backend, grad.device, grad.dtype).corrupt_grad(grad, kind, level, unsigned(seed), offset)


@corrupt_grad.register_fake
def _(grad, kind, level, seed, offset, backend):
    return torch.empty_like(grad)


def _setup(ctx, inputs, output):
    _, ctx.kind, ctx.level, ctx.seed, ctx.offset, ctx.backend = inputs


def _backward(ctx, grad):
    if ctx.kind in ("none", "gaussian"):  # x~ = x (+ noise): the derivative is the identity
        return grad, None, None, None, None, None
    dx = corrupt_grad(grad.contiguous(), ctx.kind, ctx.level, ctx.seed, ctx.offset, ctx.backend)
    return dx, None, None, None, None, None


corrupt.register_autograd(_backward, setup_context=_setup)
