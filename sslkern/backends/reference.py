"""The `reference` backend: design.md's fused passes written in PyTorch.

Runs on every device and dtype torch supports (float64 included); slow but simple. The
activation derivatives are taken from h = f(z), as the compiled kernels take them.
"""
import torch
import torch.nn.functional as F

from .. import reference as oracle
from .._enums import PIECEWISE_LINEAR
from .product import ProductBackend


def act_d1(act, h):
    """f'(z) from h = f(z) (csrc/include/sslkern/activations.h: act_d1)."""
    if act == "sigmoid":
        return h * (1 - h)
    if act == "tanh":
        return 1 - h * h
    if act == "relu":
        return (h > 0).to(h.dtype)
    if act == "softplus":
        return -torch.expm1(-h)
    return torch.ones_like(h)


def act_d2(act, h):
    """f''(z) from h = f(z) (activations.h: act_d2)."""
    if act == "sigmoid":
        return h * (1 - h) * (1 - 2 * h)
    if act == "tanh":
        return -2 * h * (1 - h * h)
    if act == "softplus":
        return -torch.expm1(-h) * torch.exp(-h)
    return torch.zeros_like(h)


def keep_mask(shape, kind, level, seed, offset, device):
    """Where x flows through the corruption unchanged: the derivative of x~ in x."""
    n = 1
    for size in shape:
        n *= size
    if kind in ("none", "gaussian"):
        return torch.ones(shape, dtype=torch.bool, device=device)
    return (oracle.philox_uniform(n, seed, offset, device) >= level).reshape(shape)


class TorchEpilogues:
    def availability(self):
        return []

    def philox(self, n, seed, offset, device, normal):
        draw = oracle.philox_normal if normal else oracle.philox_uniform
        return draw(n, seed, offset, device)

    def corrupt(self, x, out, kind, level, seed, offset):
        out.copy_(oracle.corrupt(x, kind, level, seed, offset))

    def corrupt_grad(self, grad, out, kind, level, seed, offset):
        keep = keep_mask(grad.shape, kind, level, seed, offset, grad.device)
        out.copy_(torch.where(keep, grad, torch.zeros_like(grad)))

    def bias_act(self, z, bias, act, r=None, s2col=None):
        if bias is not None:
            z.add_(bias)
        z.copy_(oracle.activation(act, z))
        if r is None:
            return None
        s2 = act_d1(act, z).square()
        if s2col is not None:
            s2col.copy_(s2.sum(0))
        return (s2 * r).sum()

    def loss_grad(self, a, x, c, loss, decoder, scale, dc=None):
        a.add_(c)
        if loss == "bce":
            total = (F.softplus(a) - x * a).sum()
            grad = torch.sigmoid(a) - x
        else:
            y = oracle.activation(decoder, a)
            total = 0.5 * (y - x).square().sum()
            grad = (y - x) * act_d1(decoder, y)
        a.copy_(grad * scale)
        if dc is not None:
            dc.copy_(a.sum(0))
        return total

    def act_grad(self, dh, h, act, out, *, r=None, coef=0.0, g=1.0, h_copy=None, db=None):
        s = act_d1(act, h)
        value = dh * s if dh is not None else torch.zeros_like(h)
        if r is not None and coef and act not in PIECEWISE_LINEAR:
            value = value + coef * s * act_d2(act, h) * r
        if h_copy is not None:
            h_copy.copy_(g * h)
        out.copy_(g * value)
        if db is not None:
            db.copy_(out.sum(0))

    def row_sq_norms(self, W):
        return W.square().sum(1)

    def row_scale_add(self, dW, W, scale, alpha):
        dW.add_(alpha * scale[:, None] * W)


def make_backend():
    return ProductBackend(
        "reference", "pure PyTorch on any device and dtype; the float64 test oracle's twin",
        TorchEpilogues(), devices=("cpu", "cuda", "mps", "xpu", "meta"),
        dtypes=(torch.float16, torch.bfloat16, torch.float32, torch.float64))
