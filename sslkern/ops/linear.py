"""sslkern::linear_act — the encoder f(x Wᵀ + b) (transpose=True) and the decoder
g(h W + c) (transpose=False) of a tied-weight autoencoder, with their backward."""
import torch

from . import _guards as guard
from ._common import backend_for, cast_like


@torch.library.custom_op("sslkern::linear_act", mutates_args=())
def linear_act(x: torch.Tensor, W: torch.Tensor, bias: torch.Tensor, activation: str,
               transpose: bool, backend: str) -> torch.Tensor:
    guard.linear_act(x, W, bias, activation, transpose, backend)
    return backend_for(backend, W.device, W.dtype).linear_act(x.contiguous(), W.contiguous(), bias.contiguous(),
                                                              activation, transpose)


@linear_act.register_fake
def _(x, W, bias, activation, transpose, backend):
    guard.linear_act(x, W, bias, activation, transpose, backend)
    return W.new_empty(x.shape[0], W.shape[0] if transpose else W.shape[1])


@torch.library.custom_op("sslkern::linear_act_backward", mutates_args=())
def linear_act_backward(grad_y: torch.Tensor, y: torch.Tensor, x: torch.Tensor, W: torch.Tensor,
                        activation: str, transpose: bool, need_dx: bool, backend: str
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dx or an empty tensor, dW, dbias): the dx product only when x needs a gradient."""
    guard.linear_act_backward(grad_y, y, x, W, activation, transpose, backend)
    impl = backend_for(backend, W.device, W.dtype)
    return impl.linear_act_backward(*(t.contiguous() for t in (grad_y, y, x, W)), activation, transpose, need_dx)


@linear_act_backward.register_fake
def _(grad_y, y, x, W, activation, transpose, need_dx, backend):
    guard.linear_act_backward(grad_y, y, x, W, activation, transpose, backend)
    return W.new_empty(x.shape if need_dx else 0), torch.empty_like(W), W.new_empty(y.shape[1])


def _setup(ctx, inputs, output):
    x, W, _, ctx.activation, ctx.transpose, ctx.backend = inputs
    ctx.save_for_backward(x, W, output)


def _backward(ctx, grad_y):
    x, W, y = ctx.saved_tensors
    need_dx = ctx.needs_input_grad[0]
    dx, dW, dbias = linear_act_backward(grad_y.to(W.dtype).contiguous(), y, x, W, ctx.activation,
                                        ctx.transpose, need_dx, ctx.backend)
    return cast_like(dx, x) if need_dx else None, dW, dbias, None, None, None


linear_act.register_autograd(_backward, setup_context=_setup)
