"""The `native` backend on CPU tensors: torch's products and the compiled C++ passes of
csrc/cpu between them. Tensors cross as data pointers, sizes and leading dimensions."""
import torch

from .. import _native
from .._enums import ACTIVATIONS, CORRUPTIONS, LOSSES
from ._raw import _ld, _ptr
from .by_device import ByDevice
from .native_cuda import NativeCudaEpilogues
from .product import PROD_DTYPES, ProductBackend

_DTYPE_CODES = {torch.float32: 0, torch.float64: 1}


def _scalar(value):
    return float(value)  # a 0-d CPU tensor or a number; no device sync on the CPU


class NativeCpuEpilogues:
    def __init__(self):
        self.lib = _native.load("cpu")

    def availability(self):
        return [] if self.lib is not None else [_native.load_error("cpu")]

    def philox(self, n, seed, offset, device, normal):
        out = torch.empty(n, dtype=torch.float32, device=device)
        self.lib.philox_fill(_ptr(out), n, seed, offset, normal)
        return out

    def corrupt(self, x, out, kind, level, seed, offset):
        self.lib.corrupt(_DTYPE_CODES[x.dtype], _ptr(x), _ptr(out), x.numel(), CORRUPTIONS[kind],
                         level, seed, offset)

    def corrupt_grad(self, grad, out, kind, level, seed, offset):
        self.lib.corrupt_grad(_DTYPE_CODES[grad.dtype], _ptr(grad), _ptr(out), grad.numel(),
                              CORRUPTIONS[kind], level, seed, offset)

    def bias_act(self, z, bias, act, r=None, s2col=None):
        total = self.lib.encoder_epilogue(_DTYPE_CODES[z.dtype], _ptr(z), _ld(z), z.shape[0],
                                          z.shape[1], _ptr(bias), ACTIVATIONS[act], _ptr(r),
                                          _ptr(s2col))
        return None if r is None else torch.tensor(total, dtype=z.dtype)

    def loss_grad(self, a, x, c, loss, decoder, scale, dc=None):
        total = self.lib.loss_epilogue(_DTYPE_CODES[a.dtype], _ptr(a), _ld(a), _ptr(x), _ld(x),
                                       a.shape[0], a.shape[1], _ptr(c), LOSSES[loss],
                                       ACTIVATIONS[decoder], scale, _ptr(dc))
        return torch.tensor(total, dtype=a.dtype)

    def act_grad(self, dh, h, act, out, *, r=None, coef=0.0, g=1.0, h_copy=None, db=None):
        self.lib.dz_epilogue(_DTYPE_CODES[h.dtype], _ptr(dh), _ld(h if dh is None else dh),
                             _ptr(h), _ld(h), h.shape[0], h.shape[1], ACTIVATIONS[act], _ptr(r),
                             coef, _scalar(g), _ptr(out), _ld(out), _ptr(h_copy),
                             _ld(h if h_copy is None else h_copy), _ptr(db))

    def row_sq_norms(self, W):
        r = W.new_empty(W.shape[0])
        self.lib.row_sq_norms(_DTYPE_CODES[W.dtype], _ptr(W), _ld(W), W.shape[0], W.shape[1], _ptr(r))
        return r

    def row_scale_add(self, dW, W, scale, alpha):
        self.lib.row_scale_add(_DTYPE_CODES[W.dtype], _ptr(dW), _ld(dW), _ptr(W), _ld(W),
                               W.shape[0], W.shape[1], _ptr(scale), _scalar(alpha))


def make_backend():
    cpu = ProductBackend(
        "native", "torch products + compiled C++ passes (OpenMP) on CPU tensors",
        NativeCpuEpilogues(), devices=("cpu",), dtypes=PROD_DTYPES)
    cuda = ProductBackend(
        "native", "cuBLAS products through torch + CUDA passes (csrc/cuda) on CUDA tensors",
        NativeCudaEpilogues(), devices=("cuda",), dtypes=PROD_DTYPES)
    return ByDevice("native", "torch products + compiled passes between them (C++ on CPU, CUDA on GPU)",
                    {"cpu": cpu, "cuda": cuda})
