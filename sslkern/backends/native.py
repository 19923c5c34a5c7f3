"""The `native` backend on CPU tensors: the compiled C++ passes of csrc/cpu between torch's
products. Tensors cross as data pointers, sizes and leading dimensions.

The training objective runs as one C++ call per direction, or one per step, with the products
through the BLAS torch itself uses (see blas.py); the other ops, and the objective when that
BLAS cannot be found, go pass by pass between torch.mm calls."""
import re
from typing import NamedTuple

import torch

from .. import _native
from ..kinds import ACTIVATIONS, CORRUPTIONS, LOSSES, PRECISIONS, SPARSITIES
from . import blas
from ._raw import _ld, _ptr
from .base import AEForward
from .by_device import ByDevice
from .native_cuda import NativeCudaEpilogues
from .product import PROD_DTYPES, ProductBackend, gradient_scale, host_stream

_DTYPE_CODES = {torch.float32: 0, torch.float64: 1}
# The codes the kernels switch on (csrc/include/sslkern/kinds.h), by name, from the registry.
_ACT = {row.name: row.code for row in ACTIVATIONS}
_LOSS = {row.name: row.code for row in LOSSES}
_CORRUPTION = {row.name: row.code for row in CORRUPTIONS}
STEP_EXPORTS = ("ae_forward", "ae_backward", "ae_value_and_grad", "ae_sgd_step")


class StepArgs(NamedTuple):
    """The arguments every fused-step export (STEP_EXPORTS) takes first, in the order of the
    C++ signature (SSLK_STEP_PARAMS in csrc/cpu/module.cpp). Built with keywords, passed
    positionally; `step_signature_mismatch` holds the field order against the compiled
    module's py::arg names when it loads."""
    dtype: int
    gemm: int
    batch: int
    visible: int
    hidden: int
    x: int
    w: int
    ldw: int
    b: int
    c: int
    corruption: int
    level: float
    seed: int
    offset: int
    encoder: int
    decoder: int
    loss: int
    contractive: float
    ax: int
    h: int
    r: int
    s2col: int
    dc: int
    precision: int
    half_gemm: int
    grad_scale: float


def parameter_names(function):
    """The parameter names of a pybind11 function, from the signature line of its __doc__."""
    signature = (function.__doc__ or "").lstrip().split("\n", 1)[0]
    head, _, _ = signature.rpartition(")")
    return re.findall(r"(?:\(|,\s*)(\w+)\s*:", head)


def step_signature_mismatch(lib):
    """None when every fused-step export of `lib` starts with StepArgs' fields in order, else
    what differs (a module built from other sources)."""
    for name in STEP_EXPORTS:
        function = getattr(lib, name, None)
        got = tuple(parameter_names(function))[:len(StepArgs._fields)] if function else ()
        if got != StepArgs._fields:
            return (f"sslkern._native_cpu.{name} takes ({', '.join(got)}), not StepArgs "
                    f"({', '.join(StepArgs._fields)}): rebuild the package or fix StepArgs")
    return None


def _penalty_args(cfg):
    """The trailing arguments of the one-call exports (SSLK_PENALTY_PARAMS in module.cpp)."""
    return (cfg.sparsity, cfg.sparsity_target, SPARSITIES.code(cfg.sparsity_kind), cfg.higher_order,
            cfg.higher_order_sigma, cfg.higher_order_samples)


def _scalar(value):
    return float(value)  # a 0-d CPU tensor or a number; no device sync on the CPU


class NativeCpuEpilogues:
    def __init__(self):
        self.lib = _native.load("cpu")
        self._error = None if self.lib is not None else _native.load_error("cpu")
        if self.lib is not None:
            self._error = step_signature_mismatch(self.lib)
            if self._error is not None:
                self.lib = None

    def availability(self):
        return [] if self.lib is not None else [self._error]

    def philox(self, n, seed, offset, device, normal):
        out = torch.empty(n, dtype=torch.float32, device=device)
        self.lib.philox_fill(_ptr(out), n, seed, offset, normal)
        return out

    def corrupt(self, x, out, kind, level, seed, offset):
        self.lib.corrupt(_DTYPE_CODES[x.dtype], _ptr(x), _ptr(out), x.numel(), _CORRUPTION[kind],
                         level, seed, offset)

    def corrupt_grad(self, grad, out, kind, level, seed, offset):
        self.lib.corrupt_grad(_DTYPE_CODES[grad.dtype], _ptr(grad), _ptr(out), grad.numel(),
                              _CORRUPTION[kind], level, seed, offset)

    def bias_act(self, z, bias, act, r=None, s2col=None):
        total = self.lib.encoder_epilogue(_DTYPE_CODES[z.dtype], _ptr(z), _ld(z), z.shape[0],
                                          z.shape[1], _ptr(bias), _ACT[act], _ptr(r),
                                          _ptr(s2col))
        return None if r is None else torch.tensor(total, dtype=z.dtype)

    def loss_grad(self, a, x, c, loss, decoder, scale, dc=None):
        total = self.lib.loss_epilogue(_DTYPE_CODES[a.dtype], _ptr(a), _ld(a), _ptr(x), _ld(x),
                                       a.shape[0], a.shape[1], _ptr(c), _LOSS[loss],
                                       _ACT[decoder], scale, _ptr(dc))
        return torch.tensor(total, dtype=a.dtype)

    def act_grad(self, dh, h, act, out, *, r=None, coef=0.0, g=1.0, h_copy=None, db=None):
        self.lib.dz_epilogue(_DTYPE_CODES[h.dtype], _ptr(dh), _ld(h if dh is None else dh),
                             _ptr(h), _ld(h), h.shape[0], h.shape[1], _ACT[act], _ptr(r),
                             coef, _scalar(g), _ptr(out), _ld(out), _ptr(h_copy),
                             _ld(h if h_copy is None else h_copy), _ptr(db))

    def row_sq_norms(self, W):
        r = W.new_empty(W.shape[0])
        self.lib.row_sq_norms(_DTYPE_CODES[W.dtype], _ptr(W), _ld(W), W.shape[0], W.shape[1], _ptr(r))
        return r

    def row_scale_add(self, dW, W, scale, alpha):
        self.lib.row_scale_add(_DTYPE_CODES[W.dtype], _ptr(dW), _ld(dW), _ptr(W), _ld(W),
                               W.shape[0], W.shape[1], _ptr(scale), _scalar(alpha))


class NativeCpuBackend(ProductBackend):
    """ProductBackend whose objective runs in csrc/cpu/step.cpp: one C++ call per direction
    (ae_forward, ae_backward: the registered op), or one for both (ae_value_and_grad: the
    eager path when x needs no gradient), or one for both and the SGD update (ae_sgd_step).
    Shapes BLAS cannot take go pass by pass."""

    def fused_step(self, x, W, cfg, one_call=False):
        """Whether the compiled step runs this call. The extra penalties exist in the one-call
        routes (value_and_grad, sgd_step) only; the split ae_forward/ae_backward then go pass
        by pass (the penalties' terms in PyTorch, sslkern/backends/penalties.py). Structured
        masks and the hole weight always go pass by pass (sslkern/backends/structured.py), and
        so does a rounded precision with a higher-order term (whose products stay fp32)."""
        addresses, _ = blas.gemm_addresses()
        return ((one_call or not cfg.extra_penalties) and not cfg.structured and cfg.hole_weight == 1.0
                and (cfg.precision == "default" or cfg.higher_order == 0.0)
                and addresses is not None and blas.step_mode() == "fused" and x.shape[0] > 0
                and min(W.shape) > 0 and 2 * x.shape[0] < 2**31 and max(W.shape) < 2**31
                and W.stride(1) == 1)

    def _step_args(self, x, W, b, c, cfg, ax, h, r, s2col, dc):
        seed, offset = host_stream(cfg.seed, cfg.offset)
        batch, visible = x.shape
        bf16_gemm = blas.bf16_gemm_address() if cfg.precision == "bf16" else None
        return StepArgs(
            dtype=_DTYPE_CODES[W.dtype], gemm=blas.gemm_addresses()[0][W.dtype], batch=batch,
            visible=visible, hidden=W.shape[0], x=_ptr(x), w=_ptr(W), ldw=_ld(W), b=_ptr(b), c=_ptr(c),
            corruption=_CORRUPTION[cfg.corruption], level=cfg.level, seed=seed, offset=offset,
            encoder=_ACT[cfg.encoder], decoder=_ACT[cfg.decoder], loss=_LOSS[cfg.loss],
            contractive=cfg.contractive, ax=_ptr(ax), h=_ptr(h), r=_ptr(r), s2col=_ptr(s2col), dc=_ptr(dc),
            precision=PRECISIONS.code(cfg.precision), half_gemm=bf16_gemm or 0,
            grad_scale=gradient_scale(cfg, batch))

    def ae_forward(self, x, W, b, c, cfg):
        if not self.fused_step(x, W, cfg):
            return super().ae_forward(x, W, b, c, cfg)
        x = x.to(W.dtype).contiguous()
        batch, visible = x.shape
        penalty_rows = W.shape[0] if cfg.contractive != 0.0 else 0
        ax, h = W.new_empty(2 * batch, visible), W.new_empty(batch, W.shape[0])
        r, s2col, dc = W.new_empty(penalty_rows), W.new_empty(penalty_rows), W.new_empty(visible)
        total = self.ep.lib.ae_forward(*self._step_args(x, W, b, c, cfg, ax, h, r, s2col, dc))
        return AEForward(torch.tensor(total, dtype=W.dtype), h, ax, r, s2col, dc, W.new_empty(0),
                         W.new_empty(0, W.shape[0]))

    def ae_value_and_grad(self, x, W, b, c, cfg):
        if not self.fused_step(x, W, cfg, one_call=True):
            return None
        x = x.to(W.dtype).contiguous()
        dW, db, dc = W.new_empty(W.shape), W.new_empty(W.shape[0]), W.new_empty(x.shape[1])
        args = self._step_args(x, W, b, c, cfg, None, None, None, None, dc)
        total = self.ep.lib.ae_value_and_grad(*args, _ptr(dW), _ptr(db), *_penalty_args(cfg))
        return torch.tensor(total, dtype=W.dtype), dW, db, dc

    def ae_sgd_step(self, x, W, b, c, cfg, lr):
        if not self.fused_step(x, W, cfg, one_call=True):
            return None
        x = x.to(W.dtype).contiguous()
        args = self._step_args(x, W, b, c, cfg, None, None, None, None, None)
        return torch.tensor(self.ep.lib.ae_sgd_step(*args, lr, *_penalty_args(cfg)), dtype=W.dtype)

    def ae_backward(self, grad, x, W, c, saved, cfg, need_dx):
        if need_dx or not self.fused_step(x, W, cfg):  # dx redraws the noise: the pass-by-pass path
            return super().ae_backward(grad, x, W, c, saved, cfg, need_dx)
        x = x.to(W.dtype).contiguous()
        batch, hidden = saved.h.shape
        hz, dW, db = W.new_empty(2 * batch, hidden), W.new_empty(W.shape), W.new_empty(hidden)
        args = self._step_args(x, W, None, c, cfg, saved.ax, saved.h, saved.r, saved.s2col, saved.dc)
        self.ep.lib.ae_backward(*args, float(grad), _ptr(hz), _ptr(dW), _ptr(db))
        return W.new_empty(0), dW, db, saved.dc * grad


def make_backend():
    cpu = NativeCpuBackend(
        "native", "torch's BLAS + compiled C++ passes (OpenMP) on CPU tensors",
        NativeCpuEpilogues(), devices=("cpu",), dtypes=PROD_DTYPES)
    cuda = ProductBackend(
        "native", "cuBLAS products through torch + CUDA passes (csrc/cuda) on CUDA tensors",
        NativeCudaEpilogues(), devices=("cuda",), dtypes=PROD_DTYPES)
    return ByDevice("native", "torch products + compiled passes between them (C++ on CPU, CUDA on GPU)",
                    {"cpu": cpu, "cuda": cuda})
