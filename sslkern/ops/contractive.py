"""sslkern::contractive_penalty — mean over the batch of ||dh/dx||_F^2 for h = f(x Wᵀ + b),
in the analytic O(BH + HD) form sum_j f'(z_j)^2 ||W_j||^2; the B x H x D Jacobian is never built."""
import torch

from . import _guards as guard
from ._common import backend_for, cast_like


@torch.library.custom_op("sslkern::contractive_penalty", mutates_args=())
def contractive_penalty(x: torch.Tensor, W: torch.Tensor, b: torch.Tensor, activation: str,
                        backend: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(penalty, h, r = ||W_j||^2, s2col = sum_i f'(z_ij)^2); the last three feed the backward."""
    guard.contractive(x, W, b, activation, backend)
    impl = backend_for(backend, W.device, W.dtype)
    return tuple(impl.contractive(x.contiguous(), W.contiguous(), b.contiguous(), activation))


@contractive_penalty.register_fake
def _(x, W, b, activation, backend):
    guard.contractive(x, W, b, activation, backend)
    hidden = W.shape[0]
    return W.new_empty(()), W.new_empty(x.shape[0], hidden), W.new_empty(hidden), W.new_empty(hidden)


@torch.library.custom_op("sslkern::contractive_penalty_backward", mutates_args=())
def contractive_penalty_backward(grad: torch.Tensor, x: torch.Tensor, W: torch.Tensor, h: torch.Tensor,
                                 r: torch.Tensor, s2col: torch.Tensor, activation: str, need_dx: bool,
                                 backend: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dx or an empty tensor, dW, db): the dx product only when x needs a gradient."""
    guard.contractive_backward(grad, x, W, h, r, s2col, activation, backend)
    impl = backend_for(backend, W.device, W.dtype)
    return impl.contractive_backward(grad, *(t.contiguous() for t in (x, W, h, r, s2col)), activation, need_dx)


@contractive_penalty_backward.register_fake
def _(grad, x, W, h, r, s2col, activation, need_dx, backend):
    guard.contractive_backward(grad, x, W, h, r, s2col, activation, backend)
    return W.new_empty(x.shape if need_dx else 0), torch.empty_like(W), W.new_empty(W.shape[0])


def _setup(ctx, inputs, output):
    x, W, _, ctx.activation, ctx.backend = inputs
    _, h, r, s2col = output
    ctx.save_for_backward(x, W, h, r, s2col)


def _backward(ctx, grad, *_unused):
    x, W, h, r, s2col = ctx.saved_tensors
    need_dx = ctx.needs_input_grad[0]
    dx, dW, db = contractive_penalty_backward(grad.to(W.dtype), x, W, h, r, s2col, ctx.activation,
                                              need_dx, ctx.backend)
    return cast_like(dx, x) if need_dx else None, dW, db, None, None


contractive_penalty.register_autograd(_backward, setup_context=_setup)
