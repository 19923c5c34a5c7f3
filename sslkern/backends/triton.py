"""The `triton` backend: the whole objective as four product kernels with fused epilogues
(design.md section 3), plus elementwise kernels for the random stream and one reduction
launch per pass. Kernels: sslkern/kernels/triton/*.

Forward  = [corrupt pre-pass] + encoder + decoder(loss, dA) + finalize      (3-4 launches)
Backward = dZ (dA Wᵀ) + weight gradient over K = 2B + finalize [+ input grad]

Runs on CUDA tensors, and on CPU tensors under TRITON_INTERPRET=1 (tests). Launches never
read a value back to the host: the incoming gradient is read on the device, and the random
stream's (seed, offset) may come from a device tensor (`rng`), so a step captured in a CUDA
graph draws fresh noise on every replay. Reductions go through fp32 (fp64 for float64)
partial buffers summed in a fixed order: results are deterministic.
"""
import os
import struct
from typing import NamedTuple

import torch
import triton  # an ImportError here marks the backend unavailable (backends.get)
import triton.language as tl

from .._enums import ACTIVATIONS, CORRUPTIONS, LOSSES, PIECEWISE_LINEAR
from ..kernels.triton import backward as bwd_kernels
from ..kernels.triton import corrupt as rng_kernels
from ..kernels.triton.decoder import decoder_loss_kernel
from ..kernels.triton.encoder import encoder_kernel
from ..kernels.triton.reduce import finalize_kernel
from .base import AEForward, Backend

DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_TL_DTYPES = {torch.float16: tl.float16, torch.bfloat16: tl.bfloat16, torch.float32: tl.float32,
              torch.float64: tl.float64}

# Where x~ comes from in training: "load" regenerates it inside the encoder's A loads (no
# extra launch; Philox repeated once per N-block), "prepass" writes it with one elementwise
# kernel first; "auto" picks by the work Philox would repeat. benchmarks/gpu_check.py times
# both (set this attribute or SSLKERN_TRITON_XT).
XT_MODE = os.environ.get("SSLKERN_TRITON_XT", "auto")
_XT_LOAD_LIMIT = 1 << 22  # Philox evaluations (B·D·N-blocks) that in-load regeneration may cost
AUTOTUNE = os.environ.get("SSLKERN_TRITON_AUTOTUNE", "1") != "0"
# Opt-in mixed precision (see _precision): off by default, as the ops promise fp32 math for
# fp32 parameters whatever x's dtype.
HALF_INPUT_OPERANDS = os.environ.get("SSLKERN_TRITON_HALF_OPERANDS", "0") == "1"


def _interpreting():
    return os.environ.get("TRITON_INTERPRET") == "1"


def _cdiv(a, b):
    return -(-a // b)


def _pair(value):
    """A float as an fp32 (hi, lo) pair: kernel float arguments are fp32 (see common.wide)."""
    hi = struct.unpack("f", struct.pack("f", value))[0]
    return hi, value - hi


# --- launch configurations -----------------------------------------------------------------

class Tile(NamedTuple):
    block_m: int
    block_n: int
    block_k: int
    group_m: int = 8
    num_warps: int = 4
    num_stages: int = 3


_INTERPRETER_TILE = Tile(16, 16, 16, 1, 1, 1)  # small: the interpreter runs each op through numpy
# Hopper candidates, fastest-first guesses; the first one that fits is used when not
# autotuning. The small tiles are for MNIST-scale steps, where a 128-wide tile would leave
# most of the 132 SMs idle (and products this small are latency-, not throughput-bound).
_HALF_TILES = [Tile(128, 256, 64, 8, 8, 3), Tile(128, 128, 64, 8, 8, 4), Tile(128, 128, 64, 8, 4, 4),
               Tile(64, 128, 64, 8, 4, 4), Tile(64, 64, 64, 8, 4, 4), Tile(32, 64, 64, 8, 4, 3)]
_FP32_TILES = [Tile(128, 128, 32, 8, 8, 3), Tile(64, 128, 32, 8, 4, 4), Tile(64, 64, 32, 8, 4, 4),
               Tile(32, 64, 32, 8, 4, 3), Tile(16, 64, 64, 8, 4, 3)]
_FP64_TILES = [Tile(64, 64, 16, 8, 4, 2)]
_MAX_TILES = 4096  # more output tiles than this: the small tiles only add overhead
_tuned = {}


def _candidates(dtype, M, N):
    tiles = {torch.float64: _FP64_TILES, torch.float32: _FP32_TILES}.get(dtype, _HALF_TILES)
    fit = [t for t in tiles
           if t.block_m <= max(16, triton.next_power_of_2(max(M, 1)))
           and t.block_n <= max(64, triton.next_power_of_2(max(N, 1)))
           and _cdiv(M, t.block_m) * _cdiv(N, t.block_n) <= _MAX_TILES]
    return fit or tiles[:1]


def _tile(key, device, prec, M, N, launch):
    """The tile for a product kernel. On CUDA the first call per key times each candidate
    (the kernels are idempotent: no atomics, no accumulation into outputs); inside a CUDA
    graph capture, or with SSLKERN_TRITON_AUTOTUNE=0, the first candidate is used."""
    if device.type != "cuda":
        return _INTERPRETER_TILE
    key = key + (prec.operands, prec.precision)
    if key in _tuned:
        return _tuned[key]
    options = _candidates(prec.operands, M, N)
    if len(options) == 1 or not AUTOTUNE or torch.cuda.is_current_stream_capturing():
        return options[0]
    from triton.testing import do_bench
    times = [do_bench(lambda t=t: launch(t), warmup=5, rep=20) for t in options]
    _tuned[key] = options[min(range(len(options)), key=times.__getitem__)]
    return _tuned[key]


def _grid(M, N, tile):
    num_m, num_n = max(1, _cdiv(M, tile.block_m)), max(1, _cdiv(N, tile.block_n))
    return num_m, num_n


class _Precision(NamedTuple):
    acc: object       # accumulator / epilogue dtype (tl)
    dot: object       # operand dtype of tl.dot (tl)
    precision: str    # tl.dot input_precision
    emulate: bool     # half-precision dot emulated in fp32 (interpreter)
    parts: torch.dtype  # dtype of the partial-sum buffers
    operands: torch.dtype  # torch twin of `dot` (picks the tile candidates)


_HALF = (torch.float16, torch.bfloat16)


def _precision(W, x=None):
    """Products take the parameters' dtype (the ops' contract: x is computed in it). With
    HALF_INPUT_OPERANDS, a bf16/fp16 x with fp32 parameters gives half-precision operands
    instead (fp32 accumulation, fp32 weights and gradients). fp32 products use tf32 only
    where torch allows it."""
    wide = W.dtype == torch.float64
    mixed = HALF_INPUT_OPERANDS and x is not None and x.dtype in _HALF and W.dtype == torch.float32
    operands = x.dtype if mixed else W.dtype
    tf32 = (operands == torch.float32 and W.device.type == "cuda"
            and torch.backends.cuda.matmul.allow_tf32)
    return _Precision(tl.float64 if wide else tl.float32, _TL_DTYPES[operands],
                      "tf32" if tf32 else "ieee", _interpreting() and operands in _HALF,
                      torch.float64 if wide else torch.float32, operands)


def _mma_meta(prec, tile):
    return dict(ACC=prec.acc, DOT_DTYPE=prec.dot, PRECISION=prec.precision, EMULATE=prec.emulate,
                BLOCK_M=tile.block_m, BLOCK_N=tile.block_n, BLOCK_K=tile.block_k,
                GROUP_M=tile.group_m, num_warps=tile.num_warps, num_stages=tile.num_stages)


def _rng(seed, offset, device):
    """Kernel arguments for the stream: (seed, offset, pointer, from_pointer). `seed` may be an
    int64 tensor [2] = (seed bits, offset) on `device`, read there when the kernel runs (then
    `offset` is ignored): a CUDA graph replays with whatever the tensor holds by then."""
    if isinstance(seed, torch.Tensor):
        if seed.dtype != torch.int64 or seed.numel() != 2 or not seed.is_contiguous():
            raise ValueError(f"rng must be a contiguous int64 tensor of 2 elements (seed, offset), got "
                             f"{seed.dtype} of shape {tuple(seed.shape)}")
        device = torch.device(device)
        if seed.device.type != device.type or (device.index is not None and seed.device.index != device.index):
            raise ValueError(f"rng must be on {device} with the data, got {seed.device}")
        return 0, 0, seed, True
    return int(seed), int(offset), None, False


def _elementwise_block(device):
    return 1024 if device.type == "cuda" else 256


# --- launchers ------------------------------------------------------------------------------

def _encode(x, W, bias, out, act, transpose, prec, *, corruption="none", level=0.0, rng=(0, 0, None, False),
            xt=None, r=None, contractive=False):
    """out = f(x Wᵀ + bias) (transpose) or f(x W + bias); returns the partial buffers
    (s², s² r) when contractive."""
    M, K = x.shape
    N = W.shape[0] if transpose else W.shape[1]
    stride_bk, stride_bn = (1, W.stride(0)) if transpose else (W.stride(0), 1)
    seed, offset, rng_ptr, from_ptr = rng

    def launch(tile):
        num_m, num_n = _grid(M, N, tile)
        s2_parts = torch.empty((num_m, N) if contractive else (0,), dtype=prec.parts, device=x.device)
        pen_parts = torch.empty(num_m * num_n if contractive else 0, dtype=prec.parts, device=x.device)
        encoder_kernel[(num_m * num_n,)](
            x, W, bias, out, xt if xt is not None else out, r if r is not None else out,
            s2_parts, pen_parts, M, N, K, num_m, num_n,
            x.stride(0), stride_bk, stride_bn, out.stride(0), xt.stride(0) if xt is not None else 0,
            *_pair(level), seed, offset, rng_ptr if from_ptr else out,
            ACT=ACTIVATIONS[act], CORRUPTION=CORRUPTIONS[corruption], WRITE_XT=xt is not None,
            CONTRACTIVE=contractive, RNG_FROM_PTR=from_ptr, **_mma_meta(prec, tile))
        return s2_parts, pen_parts

    key = ("encoder", M, N, K, transpose, W.dtype, x.dtype, act, corruption, xt is not None, contractive)
    return launch(_tile(key, x.device, prec, M, N, launch))


def _decode_loss(h, W, c, x, d_a, cfg, prec):
    """dA (into d_a) and the partial sums of the loss and of dA's columns."""
    M, K = h.shape
    N = W.shape[1]
    inv_batch = _pair(1.0 / max(M, 1))

    def launch(tile):
        num_m, num_n = _grid(M, N, tile)
        dc_parts = torch.empty(num_m, N, dtype=prec.parts, device=h.device)
        loss_parts = torch.empty(num_m * num_n, dtype=prec.parts, device=h.device)
        decoder_loss_kernel[(num_m * num_n,)](
            h, W, c, x, d_a, dc_parts, loss_parts, M, N, K, num_m, num_n,
            h.stride(0), W.stride(0), x.stride(0), d_a.stride(0), *inv_batch,
            LOSS=LOSSES[cfg.loss], DECODER=ACTIVATIONS[cfg.decoder], **_mma_meta(prec, tile))
        return dc_parts, loss_parts

    key = ("decoder", M, N, K, W.dtype, x.dtype, cfg.loss, cfg.decoder)
    return launch(_tile(key, h.device, prec, M, N, launch))


def _dz(d_a, W, h, r, dz, act, coef, contractive, prec):
    """dZ = (dA Wᵀ) ⊙ s + coef · s f'' r into dz; returns the db partial sums."""
    M, K = d_a.shape
    N = W.shape[0]

    def launch(tile):
        num_m, num_n = _grid(M, N, tile)
        db_parts = torch.empty(num_m, N, dtype=prec.parts, device=h.device)
        bwd_kernels.dz_kernel[(num_m * num_n,)](
            d_a, W, h, r if contractive else h, dz, db_parts, M, N, K, num_m, num_n,
            d_a.stride(0), W.stride(0), h.stride(0), dz.stride(0), *_pair(coef),
            ACT=ACTIVATIONS[act], CONTRACTIVE=contractive, **_mma_meta(prec, tile))
        return db_parts

    key = ("dz", M, N, K, W.dtype, act, contractive)
    return launch(_tile(key, h.device, prec, M, N, launch))


def _act_grad(dh, h, r, act, coef, prec):
    """Elementwise dZ (unscaled) and its db partial sums, for the single-layer ops."""
    M, N = h.shape
    tile = _INTERPRETER_TILE if h.device.type != "cuda" else Tile(32, 128, 1)
    num_m, num_n = _grid(M, N, tile)
    dz = torch.empty_like(h)
    db_parts = torch.empty(num_m, N, dtype=prec.parts, device=h.device)
    contractive = r is not None
    bwd_kernels.act_grad_kernel[(num_m, num_n)](
        dh if dh is not None else h, h, r if contractive else h, dz, db_parts, M, N, *_pair(coef),
        HAS_DH=dh is not None, ACT=ACTIVATIONS[act], CONTRACTIVE=contractive, ACC=prec.acc,
        BLOCK_M=tile.block_m, BLOCK_N=tile.block_n, num_warps=4)
    return dz, db_parts


def _weight_grad(a1, a2, b, out, prec, *, W=None, s2col=None, coef=0.0, grad=None):
    """out = g · ([a1 ; a2]ᵀ b + coef · diag(s2col) W); a1 may be None (K1 = 0)."""
    K1 = 0 if a1 is None else a1.shape[0]
    K2, M = a2.shape
    N = b.shape[1]
    row_scale = s2col is not None

    def launch(tile):
        num_m, num_n = _grid(M, N, tile)
        bwd_kernels.weight_grad_kernel[(num_m * num_n,)](
            a1 if a1 is not None else a2, a2, b, W if row_scale else out, s2col if row_scale else out,
            grad if grad is not None else out, out, M, N, K1, K2, num_m, num_n,
            a1.stride(0) if a1 is not None else 0, a2.stride(0), b.stride(0),
            W.stride(0) if row_scale else 0, out.stride(0), *_pair(coef),
            HAS_GRAD=grad is not None, ROW_SCALE=row_scale, **_mma_meta(prec, tile))

    key = ("weight_grad", M, N, K1, K2, out.dtype, a2.dtype, b.dtype, row_scale, grad is not None)
    launch(_tile(key, out.device, prec, M, N, launch))
    return out


def _input_grad(dz, B, stride_bk, stride_bn, N, out, prec, *, grad=None, corruption="none", level=0.0,
                rng=(0, 0, None, False), recon=None):
    """out = g · keep(dz B) [- g/B · target]; recon = (h, c, x, cfg) adds the reconstruction
    target of the objective, recomputing a = h W + c from the same W tiles."""
    M, K = dz.shape
    seed, offset, rng_ptr, from_ptr = rng
    h, c, x, cfg = recon if recon is not None else (dz, out, out, None)

    def launch(tile):
        num_m, num_n = _grid(M, N, tile)
        bwd_kernels.input_grad_kernel[(num_m * num_n,)](
            dz, B, h, c, x, grad if grad is not None else out, out, M, N, K, num_m, num_n,
            dz.stride(0), stride_bk, stride_bn, h.stride(0), x.stride(0), out.stride(0),
            *_pair(1.0 / max(M, 1)), level, seed, offset, rng_ptr if from_ptr else out,
            HAS_GRAD=grad is not None, CORRUPTION=CORRUPTIONS[corruption], RECON=recon is not None,
            LOSS=LOSSES[cfg.loss] if cfg else 0, DECODER=ACTIVATIONS[cfg.decoder] if cfg else 0,
            RNG_FROM_PTR=from_ptr, **_mma_meta(prec, tile))

    key = ("input_grad", M, N, K, out.dtype, corruption, recon is not None, cfg and (cfg.loss, cfg.decoder))
    launch(_tile(key, out.device, prec, M, N, launch))
    return out


def _finalize(device, prec, *, sums=(), loss=None, grad=None):
    """One launch: each (parts [rows, n], out [n]) in `sums` becomes out = g · Σ_rows parts;
    loss = (loss_parts, loss_scale, pen_parts, pen_scale, out) sets out to the scaled total."""
    block = 1024 if device.type == "cuda" else 128
    (p1, o1), (p2, o2) = (list(sums) + [(None, None)] * 2)[:2]
    dummy = torch.empty(1, dtype=prec.parts, device=device)

    def shape(parts):
        return (0, 0) if parts is None else (parts.shape[0], parts.shape[1])

    (rows1, n1), (rows2, n2) = shape(p1), shape(p2)
    loss_parts, loss_scale, pen_parts, pen_scale, loss_out = loss or (None, 0.0, None, 0.0, None)
    programs = _cdiv(n1, block) + _cdiv(n2, block) + (loss is not None)
    if programs == 0:
        return
    finalize_kernel[(programs,)](
        p1 if p1 is not None else dummy, rows1, n1, o1 if o1 is not None else dummy,
        p2 if p2 is not None else dummy, rows2, n2, o2 if o2 is not None else dummy,
        loss_parts if loss_parts is not None else dummy, 0 if loss_parts is None else loss_parts.numel(),
        pen_parts if pen_parts is not None else dummy, 0 if pen_parts is None else pen_parts.numel(),
        loss_out if loss_out is not None else dummy, *_pair(loss_scale), *_pair(pen_scale),
        grad if grad is not None else dummy,
        HAS_GRAD=grad is not None, HAS_LOSS=loss is not None, HAS_PEN=pen_parts is not None,
        BLOCK=block, num_warps=4)


def _xt_in_encoder(cfg, batch, visible, hidden, device):
    if cfg.corruption == "none" or XT_MODE == "load":
        return True
    if XT_MODE == "prepass":
        return False
    if XT_MODE != "auto":
        raise ValueError(f"SSLKERN_TRITON_XT must be 'auto', 'load' or 'prepass', got {XT_MODE!r}")
    blocks_n = _cdiv(hidden, 128) if device.type == "cuda" else _cdiv(hidden, _INTERPRETER_TILE.block_n)
    return batch * visible * blocks_n <= _XT_LOAD_LIMIT


# --- the backend ----------------------------------------------------------------------------

class TritonBackend(Backend):
    name = "triton"
    description = "fused Triton kernels (CUDA; CPU tensors under TRITON_INTERPRET=1)"

    def availability(self):
        return []  # importing this module required triton

    def unsupported(self, device, dtype):
        reasons = []
        if device.type == "cpu":
            if not _interpreting():
                reasons.append("runs on CPU tensors only under TRITON_INTERPRET=1 (the test interpreter)")
        elif device.type != "cuda":
            reasons.append(f"runs on cuda tensors (or cpu under TRITON_INTERPRET=1), not {device.type}")
        if dtype not in DTYPES:
            reasons.append(f"supports float16, bfloat16, float32, float64, not {str(dtype).replace('torch.', '')}")
        return reasons

    # random stream -------------------------------------------------------------------------
    def philox(self, n, seed, offset, device, normal):
        out = torch.empty(n, dtype=torch.float32, device=device)
        if n:
            seed, offset, rng_ptr, from_ptr = _rng(seed, offset, device)
            block = _elementwise_block(device)
            rng_kernels.philox_kernel[(_cdiv(n, block),)](
                out, n, seed, offset, rng_ptr if from_ptr else out, NORMAL=normal,
                RNG_FROM_PTR=from_ptr, BLOCK=block)
        return out

    def _corrupt_into(self, x, out, kind, level, seed, offset, grad):
        n = x.numel()
        if n == 0:
            return out
        seed, offset, rng_ptr, from_ptr = _rng(seed, offset, x.device)
        block = _elementwise_block(x.device)
        compute = tl.float64 if torch.float64 in (x.dtype, out.dtype) else tl.float32
        rng_kernels.corrupt_kernel[(_cdiv(n, block),)](
            x, out, n, *_pair(level), seed, offset, rng_ptr if from_ptr else out, KIND=CORRUPTIONS[kind],
            GRAD=grad, RNG_FROM_PTR=from_ptr, COMPUTE=compute, BLOCK=block)
        return out

    def corrupt(self, x, kind, level, seed, offset):
        return self._corrupt_into(x, torch.empty_like(x), kind, level, seed, offset, grad=False)

    def corrupt_grad(self, grad, kind, level, seed, offset):
        return self._corrupt_into(grad, torch.empty_like(grad), kind, level, seed, offset, grad=True)

    # single layers -------------------------------------------------------------------------
    def linear_act(self, x, W, bias, act, transpose):
        out = W.new_empty(x.shape[0], W.shape[0] if transpose else W.shape[1])
        _encode(x, W, bias, out, act, transpose, _precision(W, x))
        return out

    def linear_act_backward(self, grad_y, y, x, W, act, transpose, need_dx=True):
        prec = _precision(W, x)
        dz, db_parts = _act_grad(grad_y, y, None, act, 0.0, prec)
        dbias = W.new_empty(y.shape[1])
        _finalize(W.device, prec, sums=[(db_parts, dbias)])
        dx = W.new_empty(x.shape if need_dx else 0)
        dW = torch.empty_like(W)
        if transpose:  # y = f(x Wᵀ + b): dx = dz W, dW = dzᵀ x
            if need_dx:
                _input_grad(dz, W, W.stride(0), 1, W.shape[1], dx, prec)
            _weight_grad(None, dz, x, dW, prec)
        else:  # y = f(x W + c): dx = dz Wᵀ, dW = xᵀ dz
            if need_dx:
                _input_grad(dz, W, 1, W.stride(0), W.shape[0], dx, prec)
            _weight_grad(None, x, dz, dW, prec)
        return dx, dW, dbias

    def contractive(self, x, W, b, act):
        prec = _precision(W, x)
        hidden = W.shape[0]
        h = W.new_empty(x.shape[0], hidden)
        r, s2col, penalty = W.new_empty(hidden), W.new_empty(hidden), W.new_empty(())
        s2_parts, pen_parts = _encode(x, W, b, h, act, True, prec, r=r, contractive=True)
        _finalize(W.device, prec, sums=[(s2_parts, s2col)],
                  loss=(None, 0.0, pen_parts, 1.0 / max(x.shape[0], 1), penalty))
        return penalty, h, r, s2col

    def contractive_backward(self, grad, x, W, h, r, s2col, act, need_dx=True):
        prec = _precision(W, x)
        coef = 2.0 / max(h.shape[0], 1)
        dz, db_parts = _act_grad(None, h, r, act, coef, prec)
        db = W.new_empty(W.shape[0])
        _finalize(W.device, prec, sums=[(db_parts, db)], grad=grad)
        dx = W.new_empty(0)
        if need_dx:
            dx = _input_grad(dz, W, W.stride(0), 1, W.shape[1], W.new_empty(x.shape), prec, grad=grad)
        dW = _weight_grad(None, dz, x, torch.empty_like(W), prec, W=W, s2col=s2col, coef=coef, grad=grad)
        return dx, dW, db

    # the objective -------------------------------------------------------------------------
    def ae_forward(self, x, W, b, c, cfg):
        prec = _precision(W, x)
        batch, visible = x.shape
        hidden = W.shape[0]
        contractive = cfg.contractive != 0.0
        ax = W.new_empty(2 * batch, visible)
        d_a, x_tilde = ax[:batch], ax[batch:]
        r = W.new_empty(hidden if contractive else 0)
        s2col = W.new_empty(hidden if contractive else 0)
        h = W.new_empty(batch, hidden)
        rng = _rng(cfg.seed, cfg.offset, x.device)
        if _xt_in_encoder(cfg, batch, visible, hidden, x.device):
            s2_parts, pen_parts = _encode(x, W, b, h, cfg.encoder, True, prec, corruption=cfg.corruption,
                                          level=cfg.level, rng=rng, xt=x_tilde, r=r, contractive=contractive)
        else:
            self._corrupt_into(x, x_tilde, cfg.corruption, cfg.level, cfg.seed, cfg.offset, grad=False)
            s2_parts, pen_parts = _encode(x_tilde, W, b, h, cfg.encoder, True, prec, r=r,
                                          contractive=contractive)
        dc_parts, loss_parts = _decode_loss(h, W, c, x, d_a, cfg, prec)
        dc = W.new_empty(visible)
        loss = W.new_empty(())
        inv_batch = 1.0 / max(batch, 1)
        sums = [(s2_parts, s2col), (dc_parts, dc)] if contractive else [(dc_parts, dc)]
        _finalize(W.device, prec, sums=sums,
                  loss=(loss_parts, inv_batch, pen_parts if contractive else None,
                        cfg.contractive * inv_batch, loss))
        return AEForward(loss, h, ax, r, s2col, dc)

    def ae_backward(self, grad, x, W, c, saved, cfg, need_dx):
        prec = _precision(W, x)
        h, ax = saved.h, saved.ax
        batch, hidden = h.shape
        contractive = cfg.contractive != 0.0
        coef = 2.0 * cfg.contractive / max(batch, 1)
        d_a = ax[:batch]
        dz = torch.empty_like(h)
        db_parts = _dz(d_a, W, h, saved.r, dz, cfg.encoder, coef,
                       contractive and cfg.encoder not in PIECEWISE_LINEAR, prec)
        dW = _weight_grad(h, dz, ax, torch.empty_like(W), prec, W=W if contractive else None,
                          s2col=saved.s2col if contractive else None, coef=coef, grad=grad)
        db, dc = W.new_empty(hidden), W.new_empty(W.shape[1])
        _finalize(W.device, prec, sums=[(db_parts, db), (saved.dc.view(1, -1), dc)], grad=grad)
        dx = W.new_empty(0)
        if need_dx:
            rng = _rng(cfg.seed, cfg.offset, x.device)
            dx = _input_grad(dz, W, W.stride(0), 1, W.shape[1], W.new_empty(x.shape), prec, grad=grad,
                             corruption=cfg.corruption, level=cfg.level, rng=rng, recon=(h, c, x, cfg))
        return dx, dW, db, dc


def make_backend():
    return TritonBackend()


__all__ = ["TritonBackend", "make_backend"]
