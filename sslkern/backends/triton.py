"""The `triton` backend: the whole objective as four product kernels with fused epilogues
(docs/kernels.md), plus elementwise kernels for the random stream and one reduction
launch per pass. Kernels: sslkern/kernels/triton/*.

Forward  = [corrupt pre-pass] [+ row norms] + encoder + decoder(loss, dA) + finalize (3-5 launches)
Backward = dZ (dA Wᵀ) + weight gradient over K = 2B + finalize [+ input grad]

Runs on CUDA tensors, and on CPU tensors under TRITON_INTERPRET=1 (tests). Launches never
read a value back to the host: the incoming gradient is read on the device, and the random
stream's (seed, offset) may come from a device tensor (`rng`), so a step captured in a CUDA
graph draws fresh noise on every replay. Every launch runs on its tensors' device (not
merely the current one) and passes its arguments by keyword; kind codes come from
sslkern/kinds.py.

Determinism: reductions go through fp32 (fp64 for float64) partial buffers summed in a fixed
order, and BLOCK_M (which sets that order for dc, db, the penalty statistics and the loss) is
a fixed function of the shape, the dtype and the device's shared memory: the first candidate
tile that fits (`_candidates`); a candidate the device rejects (OutOfResources) is skipped
for the next, once. The same inputs on the same device give the same bits, call after call.

Environment:
- SSLKERN_TRITON_AUTOTUNE=1 opts in to autotuning: the first call per shape times every
  candidate tile and keeps the fastest for the process. Faster, but which tile wins can vary
  between runs and machines, and with it the last bits of the sums above. Off by default.
- SSLKERN_TRITON_XT=auto|load|prepass: where the encoder's x~ is made (XT_MODE below).

Mixed precision is the objective's `precision` argument (_precision): the kernels cast each
product tile to bf16 or fp16 as they load it; with fp16 the backward's gradient operands (dA,
dZ) are multiplied by product.gradient_scale first and the products divided by it after.
"""
import contextlib
import functools
import os
import struct
from typing import NamedTuple

import torch
import triton  # an ImportError here marks the backend unavailable (backends.get)
import triton.language as tl
from triton.runtime.errors import OutOfResources

from .. import _validate as check
from ..kernels.triton import backward as bwd_kernels
from ..kernels.triton import corrupt as rng_kernels
from ..kernels.triton.decoder import decoder_loss_kernel
from ..kernels.triton.encoder import encoder_kernel
from ..kernels.triton.reduce import finalize_kernel, row_sq_norms_kernel
from ..kinds import ACTIVATIONS, CORRUPTIONS, LOSSES, PRECISIONS
from . import penalties, product, structured
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
AUTOTUNE = os.environ.get("SSLKERN_TRITON_AUTOTUNE", "0") == "1"  # opt-in: see the docstring


def _interpreting():
    return os.environ.get("TRITON_INTERPRET") == "1"


def _pair(value):
    """A float as an fp32 (hi, lo) pair: kernel float arguments are fp32 (see common.wide)."""
    hi = struct.unpack("f", struct.pack("f", value))[0]
    return hi, value - hi


def _device_guard(device):
    """Make `device` current for a launch: Triton launches on the current CUDA device, not on
    its tensors'. A no-op for CPU tensors (the interpreter) and for an index-less device."""
    if device.type != "cuda" or device.index is None:
        return contextlib.nullcontext()
    guard = getattr(torch.cuda, "_DeviceGuard", None)  # cheaper than torch.cuda.device
    return guard(device.index) if guard is not None else torch.cuda.device(device.index)


def _run(kernel, grid, device, **arguments):
    """One launch, every argument by keyword, on `device`."""
    with _device_guard(device):
        kernel[grid](**arguments)


# --- launch configurations -----------------------------------------------------------------

class Tile(NamedTuple):
    block_m: int
    block_n: int
    block_k: int
    group_m: int = 8
    num_warps: int = 4
    num_stages: int = 3


_INTERPRETER_TILE = Tile(16, 16, 16, 1, 1, 1)  # small: the interpreter runs each op through numpy
# Hopper candidates, fastest-first guesses; the first one that fits is used unless autotuning.
# The small tiles are for MNIST-scale steps, where a 128-wide tile would leave most of the 132
# SMs idle (and products this small are latency-, not throughput-bound). The 64-row tiles (and
# fp64's 32-row one) come with 4 warps and then again with 8: the same tile, half the
# accumulator registers per thread, for the launches with a smaller budget (_ACC_BUDGETS).
# 128x128 with 16 warps is not listed: a thread then gets at most 128 registers (bf16 dz_kernel
# spilled 16 B). bf16 128x256x64 / 8 warps spilled 6 KB in decoder_loss_kernel and 2.4 KB in
# dz_kernel, and 128x128x64 / 4 warps 2.5-13 KB, so both are gone (ptxas -v, compile_check.py).
_HALF_TILES = [Tile(128, 128, 64, 8, 8, 4), Tile(64, 128, 64, 8, 4, 4), Tile(64, 128, 64, 8, 8, 4),
               Tile(64, 64, 64, 8, 4, 4), Tile(64, 64, 64, 8, 8, 4), Tile(32, 64, 64, 8, 4, 3),
               Tile(16, 64, 64, 8, 4, 3)]
_FP32_TILES = [Tile(128, 128, 32, 8, 8, 3), Tile(64, 128, 32, 8, 4, 4), Tile(64, 128, 32, 8, 8, 4),
               Tile(64, 64, 32, 8, 4, 4), Tile(64, 64, 32, 8, 8, 4), Tile(32, 64, 32, 8, 4, 3),
               Tile(16, 64, 64, 8, 4, 3)]
_FP64_TILES = [Tile(64, 64, 16, 8, 4, 2), Tile(64, 64, 16, 8, 8, 2), Tile(32, 64, 16, 8, 4, 2),
               Tile(32, 64, 16, 8, 8, 2)]
_MAX_ACC_REGISTERS = 64  # 32-bit registers per thread the accumulators may take (light epilogues)
# Accumulator registers per thread that each launch may take, with fp32 and with fp64
# accumulators: what its epilogue leaves of a thread's 255. Measured with ptxas -v for sm_90
# (triton 3.8) on an MNIST-sized step with every activation and loss, tiles forced as
# compile_check.py --spills --all-tiles --every-kind does (benchmarks/RESULTS.md). At 64:
# decoder_loss spills up to 832 B, dz up to 136 B (fp64: 1.5 KB), input_grad with the
# reconstruction term (two accumulators, counted together) 24 B. At 32 none of them spills with
# any operand type or kind (at most 236 registers), except fp64's decoder_loss, whose exp and
# log run in software: 4.8 KB at 64, 92-136 B at 32, none at 16. The encoder and the weight
# gradient keep 64: no spill in the default step. The encoders whose activation carries a
# polynomial log1p or expm1 (softplus, elu: _HEAVY_ENCODERS) spilled 112 B-1.1 KB at 64 and
# none at 32, so they take the "encoder_heavy" budget.
_ACC_BUDGETS = {
    "encoder": (_MAX_ACC_REGISTERS, _MAX_ACC_REGISTERS),
    "encoder_heavy": (32, 32),
    "weight_grad": (_MAX_ACC_REGISTERS, _MAX_ACC_REGISTERS),
    "input_grad": (_MAX_ACC_REGISTERS, _MAX_ACC_REGISTERS),  # keep-mask and g only
    "input_grad_recon": (32, 32),  # + the decoder's activation of a second accumulator
    "dz": (32, 32),                # f'(z), and f''(z) with the contractive term
    "decoder_loss": (32, 16),      # softplus, sigmoid, the loss and two reductions
}
_HEAVY_ENCODERS = frozenset({"softplus", "elu"})
_MAX_TILES = 4096  # more output tiles than this: the small tiles only add overhead
SM90_SHARED_MEMORY = 232448  # bytes per block (opt-in) on sm_90, when the device cannot be asked
_chosen = {}  # key -> the tile every later call with that key uses


def smem_estimate(tile, operand_bytes, products=1):
    """Shared memory of a product kernel's software pipeline: num_stages buffers of the A and B
    tiles of each of its `products` tl.dot chains (input_grad_kernel with the reconstruction
    term has two, sharing B loads but given a copy each by the compiler)."""
    per_stage = tile.block_m * tile.block_k + tile.block_k * tile.block_n
    return tile.num_stages * products * per_stage * operand_bytes


def acc_registers(tile, acc_bytes, products=1):
    """32-bit registers per thread that the accumulators of `products` tl.dot chains hold."""
    return products * tile.block_m * tile.block_n * acc_bytes // (4 * 32 * tile.num_warps)


def acc_budget_of(name, operands):
    """The accumulator registers per thread that launch `name` may take (_ACC_BUDGETS)."""
    fp32_acc, fp64_acc = _ACC_BUDGETS[name]
    return fp64_acc if operands == torch.float64 else fp32_acc


@functools.lru_cache(maxsize=None)
def _smem_limit(device):
    """Shared memory one block may use on `device` (the opt-in maximum), in bytes."""
    try:
        return torch.cuda.get_device_properties(device).shared_memory_per_block_optin
    except Exception:  # noqa: BLE001 (no such property or device: assume Hopper)
        return SM90_SHARED_MEMORY


def _element_size(dtype):
    return torch.empty((), dtype=dtype).element_size()


def _candidates(dtype, M, N, *, products=1, acc_budget=_MAX_ACC_REGISTERS,
                smem_limit=SM90_SHARED_MEMORY, staged=None):
    """The tiles worth trying for an [M, N] output with `dtype` operands, in order: those no
    larger than the matrix (smallest first when none is), that fit in shared memory and whose
    accumulators fit in `acc_budget` registers per thread. `staged`: the dtype the tiles are
    loaded (and pipelined through shared memory) in, when wider than the operands (fp32
    parameters with bf16 operands are cast after the load): its table and element size
    then apply, since loads, not the dot, fill the shared memory and the registers."""
    loaded = staged if staged is not None and _element_size(staged) > _element_size(dtype) else dtype
    tiles = {torch.float64: _FP64_TILES, torch.float32: _FP32_TILES}.get(loaded, _HALF_TILES)
    fit = [t for t in tiles
           if t.block_m <= max(16, triton.next_power_of_2(max(M, 1)))
           and t.block_n <= max(64, triton.next_power_of_2(max(N, 1)))
           and triton.cdiv(M, t.block_m) * triton.cdiv(N, t.block_n) <= _MAX_TILES]
    fit = fit or sorted(tiles, key=lambda t: t.block_m * t.block_n)
    size = _element_size(loaded)
    acc = 8 if dtype == torch.float64 else 4

    def cost(t):
        return acc_registers(t, acc, products), smem_estimate(t, size, products)
    small = [t for t in fit if smem_estimate(t, size, products) <= smem_limit
             and acc_registers(t, acc, products) <= acc_budget]
    return small or [min(fit, key=cost)]


def _tiles(device, prec, M, N, products, acc_budget):
    """The candidate tiles of one product on `device`, in order."""
    if device.type != "cuda":
        return [_INTERPRETER_TILE]
    return _candidates(prec.operands, M, N, products=products, acc_budget=acc_budget,
                       smem_limit=_smem_limit(device), staged=prec.staged)


def _launch_first(key, options, launch, *, tune=False):
    """launch(tile) with the tile chosen for `key`: the first time, the first of `options` (the
    fastest with `tune`) that the device accepts, kept for every later call."""
    tile = _chosen.get(key)
    if tile is not None:
        return launch(tile)
    if tune and len(options) > 1:
        options = _by_speed(options, launch)
    failure = None
    for tile in options:
        try:
            result = launch(tile)
        except OutOfResources as exc:  # more shared memory or registers than the estimate said
            failure = exc
            continue
        _chosen[key] = tile
        return result
    raise failure


def _by_speed(options, launch):
    from triton.testing import do_bench

    def time(tile):
        try:
            return do_bench(lambda: launch(tile), warmup=5, rep=20)
        except OutOfResources:
            return float("inf")
    times = {tile: time(tile) for tile in options}
    return sorted(options, key=times.__getitem__)


def _launch_key(name, arguments, products):
    """What decides the tile: the kernel, its int and bool arguments (shapes, strides, codes and
    flags; not the random stream's seed and offset) and its tensors' dtypes and device."""
    key = [name, products]
    for arg, value in arguments.items():  # the launchers' fixed order: no need to sort
        if isinstance(value, torch.Tensor):
            key.append((arg, value.dtype, value.device))
        elif isinstance(value, (bool, int)) and arg not in ("seed", "offset"):
            key.append((arg, value))
    return tuple(key)


def _product(kernel, name, device, prec, M, N, arguments, *, parts=None, products=1):
    """Launch a tiled product kernel over an [M, N] output: `arguments` are its keyword
    arguments but the tile's; `parts(num_m, num_n)` allocates the partial-sum buffers that a
    tile choice needs (a dict of keyword arguments), which are returned. `name` is the launch's
    row of _ACC_BUDGETS."""
    def launch(tile):
        num_m, num_n = _grid(M, N, tile)
        buffers = parts(num_m, num_n) if parts is not None else {}
        kernel[(num_m * num_n,)](**arguments, **buffers, num_pid_m=num_m, num_pid_n=num_n,
                                 **_mma_meta(prec, tile))
        return buffers

    options = _tiles(device, prec, M, N, products, acc_budget_of(name, prec.operands))
    with _device_guard(device):
        if len(options) == 1:
            return launch(options[0])
        key = _launch_key(name, arguments, products) + (prec.operands, prec.precision)
        tune = AUTOTUNE and not torch.cuda.is_current_stream_capturing()
        return _launch_first(key, options, launch, tune=tune)


def _grid(M, N, tile):
    num_m, num_n = max(1, triton.cdiv(M, tile.block_m)), max(1, triton.cdiv(N, tile.block_n))
    return num_m, num_n


class _Precision(NamedTuple):
    acc: object       # accumulator / epilogue dtype (tl)
    dot: object       # operand dtype of tl.dot (tl)
    precision: str    # tl.dot input_precision
    emulate: bool     # half-precision dot emulated in fp32 (interpreter)
    parts: torch.dtype  # dtype of the partial-sum buffers
    operands: torch.dtype  # torch twin of `dot` (picks the tile candidates)
    staged: torch.dtype  # what the kernels load (the parameters' dtype): sizes shared memory


_HALF = (torch.float16, torch.bfloat16)


def _tf32_matmul():
    """Whether torch lets fp32 matmuls use TF32. Read through fp32_precision where torch has it
    (2.9+): after `torch.backends.cuda.matmul.fp32_precision = "tf32"`, reading the legacy
    `allow_tf32` raises ("mix of the legacy and new APIs"). fp32_precision also reflects the
    legacy setters and the inherited `torch.backends.fp32_precision`."""
    matmul = torch.backends.cuda.matmul
    try:
        precision = matmul.fp32_precision
    except AttributeError:  # torch < 2.9: only the legacy flag exists
        return bool(matmul.allow_tf32)
    return precision == "tf32"


def _precision(W, precision="default"):
    """Products take the parameters' dtype (the ops' contract: x is computed in it), unless the
    step's `precision` (kinds.PRECISIONS) rounds their operands: then the kernels cast each
    tile to it as they load it (fp32 accumulation; fp32 weights, loss and gradients). fp32
    products use tf32 only where torch allows it."""
    wide = W.dtype == torch.float64
    rounded_to = PRECISIONS[precision].operands
    operands = W.dtype if rounded_to is None else getattr(torch, rounded_to)
    tf32 = operands == torch.float32 and W.device.type == "cuda" and _tf32_matmul()
    return _Precision(tl.float64 if wide else tl.float32, _TL_DTYPES[operands],
                      "tf32" if tf32 else "ieee", _interpreting() and operands in _HALF,
                      torch.float64 if wide else torch.float32, operands, W.dtype)


def _mma_meta(prec, tile):
    return dict(ACC=prec.acc, DOT_DTYPE=prec.dot, PRECISION=prec.precision, EMULATE=prec.emulate,
                BLOCK_M=tile.block_m, BLOCK_N=tile.block_n, BLOCK_K=tile.block_k,
                GROUP_M=tile.group_m, num_warps=tile.num_warps, num_stages=tile.num_stages)


class _Rng(NamedTuple):
    seed: int
    offset: int
    tensor: "torch.Tensor | None"

    def arguments(self, placeholder):
        """The kernels' (seed, offset, rng_ptr, RNG_FROM_PTR); `placeholder` stands in for the
        pointer when there is no tensor (never read then)."""
        from_ptr = self.tensor is not None
        return dict(seed=self.seed, offset=self.offset, rng_ptr=self.tensor if from_ptr else placeholder,
                    RNG_FROM_PTR=from_ptr)


_NO_RNG = _Rng(0, 0, None)


def _rng(seed, offset, device):
    """The random stream's arguments. `seed` may be an int64 tensor [2] = (seed bits, offset)
    on `device`, read there when the kernel runs (then `offset` is ignored): a CUDA graph
    replays with whatever the tensor holds by then."""
    if isinstance(seed, torch.Tensor):
        check.rng_tensor(seed, torch.device(device))
        return _Rng(0, 0, seed)
    return _Rng(int(seed), int(offset), None)


def _elementwise_block(device):
    return 1024 if device.type == "cuda" else 256


def _or(tensor, placeholder):
    """An optional pointer argument: a kernel never reads it when its flag is off."""
    return placeholder if tensor is None else tensor


def _stride(tensor):
    return 0 if tensor is None else tensor.stride(0)


# --- launchers ------------------------------------------------------------------------------

def _encode(x, W, bias, out, act, transpose, prec, *, corruption="none", level=0.0, rng=_NO_RNG,
            xt=None, r=None):
    """out = f(x Wᵀ + bias) (transpose) or f(x W + bias). With r, the hidden units' squared
    norms in the accumulator dtype (_row_sq_norms; rows of W, so transpose only), the
    contractive epilogue runs: returns the partial buffers (s², s² r)."""
    contractive = r is not None
    assert transpose or not contractive, "r holds the norms of W's rows: the encoder's N axis"
    M, K = x.shape
    N = W.shape[0] if transpose else W.shape[1]
    stride_bk, stride_bn = (1, W.stride(0)) if transpose else (W.stride(0), 1)
    level_hi, level_lo = _pair(level)

    def parts(num_m, num_n):
        return dict(s2_part_ptr=x.new_empty((num_m, N) if contractive else (0,), dtype=prec.parts),
                    pen_part_ptr=x.new_empty(num_m * num_n if contractive else 0, dtype=prec.parts))

    name = "encoder_heavy" if act in _HEAVY_ENCODERS else "encoder"
    buffers = _product(encoder_kernel, name, x.device, prec, M, N, dict(
        a_ptr=x, b_ptr=W, bias_ptr=bias, out_ptr=out, xt_ptr=_or(xt, out), r_ptr=_or(r, out),
        M=M, N=N, K=K, stride_am=x.stride(0), stride_bk=stride_bk, stride_bn=stride_bn,
        stride_om=out.stride(0), stride_xm=_stride(xt), level=level_hi, level_lo=level_lo,
        **rng.arguments(out), ACT=ACTIVATIONS.code(act), CORRUPTION=CORRUPTIONS.code(corruption),
        WRITE_XT=xt is not None, CONTRACTIVE=contractive), parts=parts)
    return buffers["s2_part_ptr"], buffers["pen_part_ptr"]


def _decode_loss(h, W, c, x, d_a, cfg, prec):
    """dA (into d_a) and the partial sums of the loss and of dA's columns."""
    M, K = h.shape
    N = W.shape[1]
    inv_batch_hi, inv_batch_lo = _pair(1.0 / max(M, 1))

    def parts(num_m, num_n):
        return dict(dc_part_ptr=h.new_empty((num_m, N), dtype=prec.parts),
                    loss_part_ptr=h.new_empty(num_m * num_n, dtype=prec.parts))

    buffers = _product(decoder_loss_kernel, "decoder_loss", h.device, prec, M, N, dict(
        h_ptr=h, w_ptr=W, c_ptr=c, x_ptr=x, da_ptr=d_a, M=M, N=N, K=K,
        stride_hm=h.stride(0), stride_wk=W.stride(0), stride_xm=x.stride(0), stride_dm=d_a.stride(0),
        inv_batch_hi=inv_batch_hi, inv_batch_lo=inv_batch_lo,
        LOSS=LOSSES.code(cfg.loss), DECODER=ACTIVATIONS.code(cfg.decoder)), parts=parts)
    return buffers["dc_part_ptr"], buffers["loss_part_ptr"]


def _dz(d_a, W, h, r, dz, act, coef, contractive, prec, grad_scale=1.0):
    """dZ = (dA Wᵀ) ⊙ s + coef · s f'' r into dz; returns the db partial sums. grad_scale:
    dA's scale before its rounding (fp16, product.gradient_scale)."""
    M, K = d_a.shape
    N = W.shape[0]
    coef_hi, coef_lo = _pair(coef)
    buffers = _product(bwd_kernels.dz_kernel, "dz", h.device, prec, M, N, dict(
        da_ptr=d_a, w_ptr=W, h_ptr=h, r_ptr=r if contractive else h, dz_ptr=dz, M=M, N=N, K=K,
        stride_dam=d_a.stride(0), stride_wn=W.stride(0), stride_hm=h.stride(0), stride_zm=dz.stride(0),
        coef_hi=coef_hi, coef_lo=coef_lo, **_scale_arguments(grad_scale), ACT=ACTIVATIONS.code(act),
        CONTRACTIVE=contractive),
        parts=lambda num_m, num_n: dict(db_part_ptr=h.new_empty((num_m, N), dtype=prec.parts)))
    return buffers["db_part_ptr"]


def _act_grad(dh, h, r, act, coef, prec):
    """Elementwise dZ (unscaled) and its db partial sums, for the single-layer ops."""
    M, N = h.shape
    tile = _INTERPRETER_TILE if h.device.type != "cuda" else Tile(32, 128, 1)
    num_m, num_n = _grid(M, N, tile)
    dz = torch.empty_like(h)
    db_parts = h.new_empty((num_m, N), dtype=prec.parts)
    coef_hi, coef_lo = _pair(coef)
    _run(bwd_kernels.act_grad_kernel, (num_m, num_n), h.device,
         dh_ptr=_or(dh, h), h_ptr=h, r_ptr=_or(r, h), dz_ptr=dz, db_part_ptr=db_parts, M=M, N=N,
         coef_hi=coef_hi, coef_lo=coef_lo, HAS_DH=dh is not None, ACT=ACTIVATIONS.code(act),
         CONTRACTIVE=r is not None, ACC=prec.acc, BLOCK_M=tile.block_m, BLOCK_N=tile.block_n, num_warps=4)
    return dz, db_parts


def _weight_grad(a1, a2, b, out, prec, *, W=None, s2col=None, coef=0.0, grad=None, grad_scale=1.0):
    """out = g · ([a1 ; a2]ᵀ b + coef · diag(s2col) W); a1 may be None (K1 = 0). b has
    K1 + K2 rows: a1 meets the first K1, a2 the rest. grad_scale: the scale of the gradient
    operands (b's first K1 rows and a2) before their rounding."""
    K1 = 0 if a1 is None else a1.shape[0]
    K2, M = a2.shape
    N = b.shape[1]
    row_scale = s2col is not None
    coef_hi, coef_lo = _pair(coef)
    _product(bwd_kernels.weight_grad_kernel, "weight_grad", out.device, prec, M, N, dict(
        a1_ptr=_or(a1, a2), a2_ptr=a2, b1_ptr=b, b2_ptr=b[K1:], w_ptr=W if row_scale else out,
        s2_ptr=_or(s2col, out), grad_ptr=_or(grad, out), out_ptr=out, M=M, N=N, K1=K1, K2=K2,
        stride_a1k=_stride(a1), stride_a2k=a2.stride(0), stride_bk=b.stride(0),
        stride_wm=W.stride(0) if row_scale else 0, stride_om=out.stride(0), coef_hi=coef_hi, coef_lo=coef_lo,
        **_scale_arguments(grad_scale), HAS_GRAD=grad is not None, ROW_SCALE=row_scale))
    return out


def _input_grad(dz, B, stride_bk, stride_bn, N, out, prec, *, grad=None, corruption="none", level=0.0,
                rng=_NO_RNG, recon=None, grad_scale=1.0):
    """out = g · keep(dz B) [- g/B · target]; recon = (h, c, x, cfg) adds the reconstruction
    target of the objective, recomputing a = h W + c from the same W tiles. grad_scale: dz's
    scale before its rounding."""
    M, K = dz.shape
    h, c, x, cfg = recon if recon is not None else (dz, out, out, None)
    inv_batch_hi, inv_batch_lo = _pair(1.0 / max(M, 1))
    name = "input_grad" if recon is None else "input_grad_recon"
    _product(bwd_kernels.input_grad_kernel, name, out.device, prec, M, N, dict(
        dz_ptr=dz, b_ptr=B, h_ptr=h, c_ptr=c, x_ptr=x, grad_ptr=_or(grad, out), out_ptr=out, M=M, N=N, K=K,
        stride_zm=dz.stride(0), stride_bk=stride_bk, stride_bn=stride_bn, stride_hm=h.stride(0),
        stride_xm=x.stride(0), stride_om=out.stride(0), inv_batch_hi=inv_batch_hi, inv_batch_lo=inv_batch_lo,
        level=level, **rng.arguments(out), **_scale_arguments(grad_scale), HAS_GRAD=grad is not None,
        CORRUPTION=CORRUPTIONS.code(corruption),
        RECON=recon is not None, LOSS=LOSSES.code(cfg.loss) if cfg else 0,
        DECODER=ACTIVATIONS.code(cfg.decoder) if cfg else 0), products=2 if recon is not None else 1)
    return out


def _scale_arguments(grad_scale):
    """The backward kernels' gradient scale: off (no multiply compiled in) at 1."""
    return dict(grad_scale=float(grad_scale), SCALE_GRADIENTS=grad_scale != 1.0)


class ReduceTile(NamedTuple):
    rows: int   # partial rows (finalize) or W rows (row norms) per tile
    block: int  # columns per tile
    num_warps: int


# [rows, block] tiles of the reductions, 2,048 elements (16 fp32 accumulators per thread at 4
# warps). On CUDA, 128 columns per finalize program: at B = 8192, D = H = 4096 with 128-row
# tiles, 32 programs per sum that each load 16 of the 64 partial rows at once (before: 4
# programs of 1,024 columns, each walking the 64 rows one at a time). The row norms take 4
# rows of 512 per tile: 128 programs at H = 512. Not timed on a GPU yet. The interpreter's
# tiles are small, for the tests' speed.
REDUCE_TILES = {"finalize": ReduceTile(16, 128, 4), "row_norms": ReduceTile(4, 512, 4)}
_INTERPRETER_REDUCE_TILES = {"finalize": ReduceTile(8, 64, 1), "row_norms": ReduceTile(4, 16, 1)}


def _reduce_tile(name, device):
    """The tile of reduction `name` on `device` (benchmarks/compile_check.py forces CUDA's)."""
    return (REDUCE_TILES if device.type == "cuda" else _INTERPRETER_REDUCE_TILES)[name]


def _finalize(device, prec, *, sums=(), loss=None, grad=None):
    """One launch: each (parts [rows, n], out [n]) in `sums` becomes out = g · Σ_rows parts;
    loss = (loss_parts, loss_scale, pen_parts, pen_scale, out) sets out to the scaled total."""
    tile = _reduce_tile("finalize", device)
    block = tile.block
    (p1, o1), (p2, o2) = (list(sums) + [(None, None)] * 2)[:2]
    dummy = torch.empty(1, dtype=prec.parts, device=device)
    (rows1, n1), (rows2, n2) = (tuple(p.shape) if p is not None else (0, 0) for p in (p1, p2))
    loss_parts, loss_scale, pen_parts, pen_scale, loss_out = loss or (None, 0.0, None, 0.0, None)
    programs = triton.cdiv(n1, block) + triton.cdiv(n2, block) + (loss is not None)
    if programs == 0:
        return
    loss_scale_hi, loss_scale_lo = _pair(loss_scale)
    pen_scale_hi, pen_scale_lo = _pair(pen_scale)
    _run(finalize_kernel, (programs,), device,
         parts1_ptr=_or(p1, dummy), rows1=rows1, n1=n1, out1_ptr=_or(o1, dummy),
         parts2_ptr=_or(p2, dummy), rows2=rows2, n2=n2, out2_ptr=_or(o2, dummy),
         loss_part_ptr=_or(loss_parts, dummy), n_loss=0 if loss_parts is None else loss_parts.numel(),
         pen_part_ptr=_or(pen_parts, dummy), n_pen=0 if pen_parts is None else pen_parts.numel(),
         loss_ptr=_or(loss_out, dummy), loss_scale_hi=loss_scale_hi, loss_scale_lo=loss_scale_lo,
         pen_scale_hi=pen_scale_hi, pen_scale_lo=pen_scale_lo, grad_ptr=_or(grad, dummy),
         HAS_GRAD=grad is not None, HAS_LOSS=loss is not None, HAS_PEN=pen_parts is not None,
         BLOCK_ROWS=tile.rows, BLOCK=block, num_warps=tile.num_warps)


def _row_sq_norms(W, prec):
    """(r, r_acc): r_j = ||W[j, :]||² of W [H, D] (any strides) in W's dtype (saved for the
    backward: dz_kernel, the higher-order penalty) and in the accumulator dtype (the encoder's
    penalty partials, unrounded); the same tensor when the two dtypes agree. One launch."""
    H, D = W.shape
    r_acc = W.new_empty(H, dtype=prec.parts)
    r = r_acc if W.dtype == prec.parts else W.new_empty(H)
    if H == 0:
        return r, r_acc
    tile = _reduce_tile("row_norms", W.device)
    _run(row_sq_norms_kernel, (triton.cdiv(H, tile.rows),), W.device,
         w_ptr=W, r_ptr=r_acc, r_out_ptr=r, H=H, D=D, stride_wh=W.stride(0), stride_wd=W.stride(1),
         ROUNDED=r is not r_acc, ACC=prec.acc, BLOCK_H=tile.rows, BLOCK_D=tile.block,
         num_warps=tile.num_warps)
    return r, r_acc


def _xt_in_encoder(cfg, batch, visible, hidden, device):
    if cfg.corruption == "none" or XT_MODE == "load":
        return True
    if XT_MODE == "prepass":
        return False
    if XT_MODE != "auto":
        raise ValueError(f"SSLKERN_TRITON_XT must be 'auto', 'load' or 'prepass', got {XT_MODE!r}")
    block_n = 128 if device.type == "cuda" else _INTERPRETER_TILE.block_n
    return batch * visible * triton.cdiv(hidden, block_n) <= _XT_LOAD_LIMIT


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
            block = _elementwise_block(out.device)
            _run(rng_kernels.philox_kernel, (triton.cdiv(n, block),), out.device, out_ptr=out, n=n,
                 **_rng(seed, offset, device).arguments(out), NORMAL=normal, BLOCK=block)
        return out

    def _corrupt_into(self, x, out, kind, level, seed, offset, grad):
        n = x.numel()
        if n == 0:
            return out
        block = _elementwise_block(x.device)
        level_hi, level_lo = _pair(level)
        _run(rng_kernels.corrupt_kernel, (triton.cdiv(n, block),), x.device, x_ptr=x, out_ptr=out, n=n,
             level=level_hi, level_lo=level_lo, **_rng(seed, offset, x.device).arguments(out),
             KIND=CORRUPTIONS.code(kind), GRAD=grad,
             COMPUTE=tl.float64 if torch.float64 in (x.dtype, out.dtype) else tl.float32, BLOCK=block)
        return out

    def corrupt(self, x, kind, level, seed, offset):
        return self._corrupt_into(x, torch.empty_like(x), kind, level, seed, offset, grad=False)

    def corrupt_grad(self, grad, kind, level, seed, offset):
        return self._corrupt_into(grad, torch.empty_like(grad), kind, level, seed, offset, grad=True)

    # single layers -------------------------------------------------------------------------
    def linear_act(self, x, W, bias, act, transpose):
        out = W.new_empty(x.shape[0], W.shape[0] if transpose else W.shape[1])
        _encode(x, W, bias, out, act, transpose, _precision(W))
        return out

    def linear_act_backward(self, grad_y, y, x, W, act, transpose, need_dx=True):
        prec = _precision(W)
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
        prec = _precision(W)
        hidden = W.shape[0]
        h = W.new_empty(x.shape[0], hidden)
        s2col, penalty = W.new_empty(hidden), W.new_empty(())
        r, r_acc = _row_sq_norms(W, prec)
        s2_parts, pen_parts = _encode(x, W, b, h, act, True, prec, r=r_acc)
        _finalize(W.device, prec, sums=[(s2_parts, s2col)],
                  loss=(None, 0.0, pen_parts, 1.0 / max(x.shape[0], 1), penalty))
        return penalty, h, r, s2col

    def contractive_backward(self, grad, x, W, h, r, s2col, act, need_dx=True):
        prec = _precision(W)
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
        prec = _precision(W, cfg.precision)
        batch, visible = x.shape
        hidden = W.shape[0]
        contractive = cfg.contractive != 0.0
        ax = W.new_empty(2 * batch, visible)
        d_a, x_tilde = ax[:batch], ax[batch:]
        r, r_acc = W.new_empty(0), None
        if contractive or cfg.higher_order != 0.0:  # the contractive and the higher-order terms
            r, r_acc = _row_sq_norms(W, prec)
        r_encoder = r_acc if contractive else None  # the encoder's penalty epilogue
        s2col = W.new_empty(hidden if contractive else 0)
        h = W.new_empty(batch, hidden)
        rng = _rng(cfg.seed, cfg.offset, x.device)
        keep = None  # a structured mask, drawn once for x~ and the hole weight
        if cfg.structured:  # drawn per image in PyTorch (backends/structured.py), then a plain encoder
            keep = structured.keep_of(self, x, cfg)
            torch.mul(x, keep, out=x_tilde)
            s2_parts, pen_parts = _encode(x_tilde, W, b, h, cfg.encoder, True, prec, r=r_encoder)
        elif _xt_in_encoder(cfg, batch, visible, hidden, x.device):
            s2_parts, pen_parts = _encode(x, W, b, h, cfg.encoder, True, prec, corruption=cfg.corruption,
                                          level=cfg.level, rng=rng, xt=x_tilde, r=r_encoder)
        else:
            self._corrupt_into(x, x_tilde, cfg.corruption, cfg.level, cfg.seed, cfg.offset, grad=False)
            s2_parts, pen_parts = _encode(x_tilde, W, b, h, cfg.encoder, True, prec, r=r_encoder)
        extra, hcol, h_noisy = None, W.new_empty(0), W.new_empty(0, hidden)
        if cfg.extra_penalties:  # the PyTorch terms around the fused kernels (not fused here)
            extra, hcol, h_noisy = penalties.forward(self, x_tilde, h, W, b, r, cfg)
        dc_parts, loss_parts = _decode_loss(h, W, c, x, d_a, cfg, prec)
        dc = W.new_empty(visible)
        loss = W.new_empty(())
        inv_batch = 1.0 / max(batch, 1)
        sums = [(s2_parts, s2col), (dc_parts, dc)] if contractive else [(dc_parts, dc)]
        _finalize(W.device, prec, sums=sums,
                  loss=(loss_parts, inv_batch, pen_parts if contractive else None,
                        cfg.contractive * inv_batch, loss))
        if extra is not None:
            loss += extra
        if cfg.hole_weight != 1.0:
            loss = structured.add_hole_terms(self, h, W, c, x, d_a, dc, loss, cfg, keep)
        return AEForward(loss, h, ax, r, s2col, dc, hcol, h_noisy)

    def ae_backward(self, grad, x, W, c, saved, cfg, need_dx):
        prec = _precision(W, cfg.precision)
        h, ax = saved.h, saved.ax
        batch, hidden = h.shape
        contractive = cfg.contractive != 0.0
        coef = 2.0 * cfg.contractive / max(batch, 1)
        scale = product.gradient_scale(cfg, batch)  # fp16: dA and dZ lifted out of the subnormals
        d_a = ax[:batch]
        dz = torch.empty_like(h)
        db_parts = _dz(d_a, W, h, saved.r, dz, cfg.encoder, coef,
                       contractive and not ACTIVATIONS[cfg.encoder].piecewise_linear, prec, scale)
        extra = (penalties.backward(self, ax[batch:], h, W, saved.r, saved.hcol, saved.h_noisy, cfg)
                 if cfg.extra_penalties else None)
        if extra is not None:
            dz += extra.dz_add  # dz is not yet scaled by grad here: the products below scale it
        dW = _weight_grad(h, dz, ax, torch.empty_like(W), prec, W=W if contractive else None,
                          s2col=saved.s2col if contractive else None, coef=coef, grad=grad, grad_scale=scale)
        db, dc = W.new_empty(hidden), W.new_empty(W.shape[1])
        _finalize(W.device, prec, sums=[(db_parts, db), (saved.dc.view(1, -1), dc)], grad=grad)
        if extra is not None:
            db += extra.dz_add.sum(0) * grad
            if extra.dW_add is not None:
                dW += extra.dW_add * grad
        dx = W.new_empty(0)
        if need_dx and (cfg.structured or cfg.hole_weight != 1.0):
            # keep (dz W) from the kernel, the reconstruction target's part in PyTorch
            keep = structured.keep_of(self, x, cfg)
            dx = _input_grad(dz, W, W.stride(0), 1, W.shape[1], W.new_empty(x.shape), prec, grad=grad,
                             grad_scale=scale)
            dx = dx.mul_(keep).add_(structured.recon_input_grad(h, W, c, x, keep, cfg, weighted=True).mul_(grad))
        elif need_dx:
            rng = _rng(cfg.seed, cfg.offset, x.device)
            dx = _input_grad(dz, W, W.stride(0), 1, W.shape[1], W.new_empty(x.shape), prec, grad=grad,
                             corruption=cfg.corruption, level=cfg.level, rng=rng, recon=(h, c, x, cfg),
                             grad_scale=scale)
        return dx, dW, db, dc


def make_backend():
    return TritonBackend()


__all__ = ["TritonBackend", "make_backend"]
