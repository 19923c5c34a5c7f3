"""The `native` backend on CUDA tensors: cuBLAS products through torch, and the CUDA passes of
csrc/cuda/kernels.cuh between them (the GPU twin of native.py's NativeCpuEpilogues).

This file is the launch plan: grid, block, vector width, workspaces and arguments of every kernel,
shared by the compiled module and the NVRTC path (sslkern/_cuda_runtime.py). Everything runs on
torch's current stream and nothing reads a value back to the host: loss and penalty totals are
written to device tensors, and a gradient scalar that is a CUDA tensor reaches the kernels as a
device pointer.
"""
import torch

from .. import _cuda_runtime as runtime
from ..kinds import ACTIVATIONS, CORRUPTIONS, LOSSES
from ._raw import _ld, _ptr

# Codes come from the registry: Table.code raises ValueError on an unknown name, so no code a
# kernel does not know reaches the device (where the switches trap, which ends the context).

# Must match the constants at the top of kernels.cuh.
TILE_X, TILE_Y, CHUNK_ROWS = 32, 8, 32
ELEMENTWISE_THREADS, ELEMENTWISE_MAX_BLOCKS = 256, 4096  # grid-stride loops cover the rest
MAX_GRID_Y = 65535
_CTYPES = {torch.float32: ("float", 4), torch.float64: ("double", 2)}  # (C++ type, 16-byte pack)


def _cdiv(a, b):
    return -(-a // b)


def _vec(dtype, pointers=(), lds=()):
    """The 16-byte pack width when every pointer and leading dimension allows it, else 1."""
    width = _CTYPES[dtype][1]
    if all(p % 16 == 0 for p in pointers) and all(ld % width == 0 for ld in lds):
        return width
    return 1


def _check_counters(n, offset):
    if n > 2**32:
        raise ValueError(f"n: {n} elements exceed the 32-bit Philox counter")
    if not 0 <= offset < 2**32:
        raise ValueError(f"offset: {offset} is not a 32-bit counter")


class NativeCudaEpilogues:
    """ProductBackend epilogues on CUDA tensors; `path` is "auto", "compiled" or "nvrtc"."""

    def __init__(self, path=None):
        try:
            self.kernels, self._reasons = runtime.open_kernels(path)
        except ValueError as exc:  # a bad SSLKERN_NATIVE_CUDA must not take the CPU part down
            self.kernels, self._reasons = None, [str(exc)]

    @property
    def path(self):
        return None if self.kernels is None else self.kernels.path

    def availability(self):
        if self.kernels is None:
            return ["no native CUDA kernels: " + "; ".join(self._reasons)]
        if not torch.cuda.is_available():
            return ["no CUDA device is visible to torch"]
        return []

    # -- launching -------------------------------------------------------------------------------

    def _launch(self, name, grid, block, device, *args):
        stream = torch.cuda.current_stream(device).cuda_stream
        self.kernels.launch(runtime.KERNEL_INDEX[name], grid, block, stream, device.index, args)

    def _elementwise_grid(self, n, vec):
        return (min(_cdiv(n, ELEMENTWISE_THREADS * vec), ELEMENTWISE_MAX_BLOCKS), 1, 1)

    def _tile_pass(self, kernel, dtype, vec, rows, cols, device, args, *, col_out=None,
                   total_out=None, takes_totals=True):
        """A row/column pass (rows, cols > 0) whose kernel ends with (col_partials[,
        total_partials]), then the fixed-order sums of those partials into col_out [cols] and
        total_out (0-d)."""
        ctype = _CTYPES[dtype][0]
        chunks, tiles = _cdiv(rows, CHUNK_ROWS), _cdiv(cols, TILE_X * vec)
        col_partials = torch.empty(chunks * cols if col_out is not None else 0, dtype=dtype, device=device)
        totals = torch.empty(chunks * tiles if total_out is not None else 0, dtype=torch.float64, device=device)
        workspace = (_ptr(col_partials) if col_out is not None else 0,)
        if takes_totals:
            workspace += (_ptr(totals) if total_out is not None else 0,)
        self._launch(runtime.kernel_name(kernel, ctype, vec), (tiles, min(chunks, MAX_GRID_Y), 1),
                     (TILE_X, TILE_Y, 1), device, *args, *workspace)
        if col_out is None and total_out is None:
            return
        col_blocks = min(_cdiv(cols, TILE_X), ELEMENTWISE_MAX_BLOCKS)
        self._launch(runtime.kernel_name("reduce_partials_kernel", ctype), (col_blocks, 1, 1),
                     (TILE_X, TILE_Y, 1), device, workspace[0], chunks, cols, _ptr(col_out),
                     _ptr(totals) if total_out is not None else 0, totals.numel(), _ptr(total_out), 1.0)

    # -- epilogues (the interface of native.py's NativeCpuEpilogues) -------------------------------

    def philox(self, n, seed, offset, device, normal):
        _check_counters(n, offset)
        out = torch.empty(n, dtype=torch.float32, device=device)
        if n:
            vec = 4 if out.data_ptr() % 16 == 0 else 1
            self._launch(runtime.kernel_name("philox_fill_kernel", vec=vec), self._elementwise_grid(n, vec),
                         (ELEMENTWISE_THREADS, 1, 1), out.device, _ptr(out), n, seed, offset, int(normal))
        return out

    def _corrupt(self, src, out, kind, level, seed, offset, grad):
        n = src.numel()
        _check_counters(n, offset)
        if n == 0:
            return
        vec = _vec(src.dtype, (src.data_ptr(), out.data_ptr()))
        self._launch(runtime.kernel_name("corrupt_kernel", _CTYPES[src.dtype][0], vec),
                     self._elementwise_grid(n, vec), (ELEMENTWISE_THREADS, 1, 1), src.device,
                     _ptr(src), _ptr(out), n, CORRUPTIONS.code(kind), float(level), seed, offset, grad)

    def corrupt(self, x, out, kind, level, seed, offset):
        self._corrupt(x, out, kind, level, seed, offset, 0)

    def corrupt_grad(self, grad, out, kind, level, seed, offset):
        self._corrupt(grad, out, kind, level, seed, offset, 1)

    def bias_act(self, z, bias, act, r=None, s2col=None):
        rows, cols = z.shape
        if r is None:
            s2col = None
        if rows == 0 or cols == 0:
            if s2col is not None:
                s2col.zero_()
            return None if r is None else z.new_zeros(())
        total = None if r is None else z.new_empty(())  # written by the reduction
        vec = _vec(z.dtype, (_ptr(z), _ptr(bias), _ptr(r)), (_ld(z),))
        self._tile_pass("bias_act_kernel", z.dtype, vec, rows, cols, z.device,
                        (_ptr(z), _ld(z), rows, cols, _ptr(bias), ACTIVATIONS.code(act), _ptr(r)),
                        col_out=s2col, total_out=total)
        return total

    def loss_grad(self, a, x, c, loss, decoder, scale, dc=None):
        rows, cols = a.shape
        if rows == 0 or cols == 0:
            if dc is not None:
                dc.zero_()
            return a.new_zeros(())
        total = a.new_empty(())  # written by the reduction
        vec = _vec(a.dtype, (_ptr(a), _ptr(x), _ptr(c)), (_ld(a), _ld(x)))
        self._tile_pass("loss_grad_kernel", a.dtype, vec, rows, cols, a.device,
                        (_ptr(a), _ld(a), _ptr(x), _ld(x), rows, cols, _ptr(c), LOSSES.code(loss),
                         ACTIVATIONS.code(decoder), float(scale)),
                        col_out=dc, total_out=total)
        return total

    def act_grad(self, dh, h, act, out, *, r=None, coef=0.0, g=1.0, h_copy=None, db=None):
        rows, cols = h.shape
        if rows == 0 or cols == 0:
            if db is not None:
                db.zero_()
            return
        g_tensor, g_value = _device_scalar(g, h)
        ld_dh = _ld(h if dh is None else dh)
        ld_copy = _ld(h if h_copy is None else h_copy)
        vec = _vec(h.dtype, (_ptr(dh), _ptr(h), _ptr(r), _ptr(out), _ptr(h_copy)),
                   (ld_dh, _ld(h), _ld(out), ld_copy))
        self._tile_pass("act_grad_kernel", h.dtype, vec, rows, cols, h.device,
                        (_ptr(dh), ld_dh, _ptr(h), _ld(h), rows, cols, ACTIVATIONS.code(act), _ptr(r),
                         float(coef), _ptr(g_tensor), g_value, _ptr(out), _ld(out), _ptr(h_copy), ld_copy),
                        col_out=db, takes_totals=False)

    def row_sq_norms(self, W):
        rows, cols = W.shape
        r = W.new_zeros(rows)
        if rows and cols:
            vec = _vec(W.dtype, (_ptr(W),), (_ld(W),))
            warps_per_block = ELEMENTWISE_THREADS // 32
            grid = (min(_cdiv(rows, warps_per_block), ELEMENTWISE_MAX_BLOCKS), 1, 1)
            self._launch(runtime.kernel_name("row_sq_norms_kernel", _CTYPES[W.dtype][0], vec), grid,
                         (ELEMENTWISE_THREADS, 1, 1), W.device, _ptr(W), _ld(W), rows, cols, _ptr(r))
        return r

    def row_scale_add(self, dW, W, scale, alpha):
        rows, cols = W.shape
        if rows == 0 or cols == 0:
            return
        alpha_tensor, alpha_value = _device_scalar(alpha, W)
        vec = _vec(W.dtype, (_ptr(dW), _ptr(W)), (_ld(dW), _ld(W)))
        self._launch(runtime.kernel_name("row_scale_add_kernel", _CTYPES[W.dtype][0], vec),
                     (min(rows, ELEMENTWISE_MAX_BLOCKS), 1, 1), (ELEMENTWISE_THREADS, 1, 1), W.device,
                     _ptr(dW), _ld(dW), _ptr(W), _ld(W), rows, cols, _ptr(scale), _ptr(alpha_tensor), alpha_value)


def _device_scalar(value, like):
    """(tensor or None, number): a scalar tensor on `like`'s device stays there and reaches the
    kernel as a pointer (no host sync); a number or a CPU scalar is passed by value. The caller
    keeps the tensor alive across the launch; freeing it afterwards is safe because the caching
    allocator only hands its memory to work queued later on the same stream."""
    if isinstance(value, torch.Tensor) and value.device == like.device:
        if value.numel() != 1:
            raise ValueError(f"expected a scalar gradient, got shape {tuple(value.shape)}")
        return value.reshape(()).to(like.dtype), 0.0
    return None, float(value)
