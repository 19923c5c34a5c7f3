"""Pieces every kernel shares. The codes come from the registry, sslkern/kinds.py.

Every switch over a kind (activation, act_d1, act_d2, the loss, corrupt_values, keep_values)
ends in `tl.static_assert(False, ...)`: a code no branch knows fails when the kernel is
compiled (or interpreted) instead of silently computing another kind."""
import triton
import triton.language as tl

from ...kinds import ACTIVATIONS, CORRUPTIONS, LOSSES


def _bits(names, table):
    """A bit set of codes, as a constexpr the kernels test with (SET >> CODE) & 1."""
    return tl.constexpr(sum(1 << table.code(name) for name in names))


LINEAR = tl.constexpr(ACTIVATIONS.code("linear"))
SIGMOID = tl.constexpr(ACTIVATIONS.code("sigmoid"))
TANH = tl.constexpr(ACTIVATIONS.code("tanh"))
RELU = tl.constexpr(ACTIVATIONS.code("relu"))
SOFTPLUS = tl.constexpr(ACTIVATIONS.code("softplus"))
ELU = tl.constexpr(ACTIVATIONS.code("elu"))
BCE = tl.constexpr(LOSSES.code("bce"))
MSE = tl.constexpr(LOSSES.code("mse"))
NO_CORRUPTION = tl.constexpr(CORRUPTIONS.code("none"))
MASK = tl.constexpr(CORRUPTIONS.code("mask"))
GAUSSIAN = tl.constexpr(CORRUPTIONS.code("gaussian"))
SALT_PEPPER = tl.constexpr(CORRUPTIONS.code("salt_pepper"))
BLOCK = tl.constexpr(CORRUPTIONS.code("block"))  # structured masks: applied in PyTorch, never launched
PATCH = tl.constexpr(CORRUPTIONS.code("patch"))
# Properties from the table: f'' == 0 (act_d2 is zero), dx~/dx == 1 (keep_values passes g).
PIECEWISE_LINEAR = _bits(ACTIVATIONS.where(piecewise_linear=True), ACTIVATIONS)
PASSES_GRADIENT = _bits(CORRUPTIONS.where(passes_gradient=True), CORRUPTIONS)


@triton.jit
def log1p(x):
    """log(1 + x) to a few ulps for x > -1, where log(1.0 + x) loses x below the epsilon
    (Goldberg's correction; tl has no log1p). csrc uses std::log1p."""
    u = 1.0 + x
    d = u - 1.0
    return tl.where(d == 0.0, x, tl.log(u) * (x / tl.where(d == 0.0, 1.0, d)))


@triton.jit
def expm1(x):
    """e^x - 1 to a few ulps (Kahan's correction; tl has no expm1). csrc uses std::expm1."""
    u = tl.exp(x)
    d = u - 1.0
    exact = (d == 0.0) | (d == -1.0)  # e^x rounds to 1 (then x is the answer) or to 0
    ratio = d * (x / tl.log(tl.where(exact, 2.0, u)))  # 2.0: any finite, nonzero log
    return tl.where(d == 0.0, x, tl.where(d == -1.0, -1.0, ratio))


@triton.jit
def softplus(z):
    """log(1 + e^z) without overflow, and without losing e^z where it is tiny."""
    return tl.maximum(z, 0.0) + log1p(tl.exp(-tl.abs(z)))


@triton.jit
def activation(z, ACT: tl.constexpr):
    if ACT == SIGMOID:
        return 1.0 / (1.0 + tl.exp(-z))
    elif ACT == TANH:
        e = tl.exp(-2.0 * tl.abs(z))  # never overflows; sign restored below
        t = (1.0 - e) / (1.0 + e)
        return tl.where(z < 0, -t, t)
    elif ACT == RELU:
        return tl.where(z <= 0, tl.zeros_like(z), z)  # not tl.maximum: NaN must pass through
    elif ACT == SOFTPLUS:
        return softplus(z)
    elif ACT == ELU:  # expm1 of min(z, 0): no overflow in the branch not taken; NaN stays NaN
        return tl.where(z > 0, z, expm1(tl.where(z > 0, 0.0, z)))
    elif ACT == LINEAR:
        return z
    else:
        tl.static_assert(False, "activation: unknown code (sslkern/kinds.py ACTIVATIONS)")


@triton.jit
def act_d1(h, ACT: tl.constexpr):
    """f'(z) written with h = f(z), as csrc/include/sslkern/activations.h does."""
    if ACT == SIGMOID:
        return h * (1.0 - h)
    elif ACT == TANH:
        return 1.0 - h * h
    elif ACT == RELU:
        return tl.where(h > 0, 1.0, 0.0).to(h.dtype)
    elif ACT == SOFTPLUS:
        return -expm1(-h)
    elif ACT == ELU:
        return tl.where(h > 0, 1.0, h + 1.0).to(h.dtype)
    elif ACT == LINEAR:
        return tl.full(h.shape, 1.0, h.dtype)
    else:
        tl.static_assert(False, "act_d1: unknown activation code (sslkern/kinds.py ACTIVATIONS)")


@triton.jit
def act_d2(h, ACT: tl.constexpr):
    """f''(z) from h = f(z); zero for the piecewise-linear activations."""
    if ACT == SIGMOID:
        return h * (1.0 - h) * (1.0 - 2.0 * h)
    elif ACT == TANH:
        return -2.0 * h * (1.0 - h * h)
    elif ACT == SOFTPLUS:
        return -expm1(-h) * tl.exp(-h)
    elif ACT == ELU:
        return tl.where(h > 0, 0.0, h + 1.0).to(h.dtype)
    elif (PIECEWISE_LINEAR >> ACT) & 1:
        return tl.zeros(h.shape, h.dtype)
    else:
        tl.static_assert(False, "act_d2: unknown activation code (sslkern/kinds.py ACTIVATIONS)")


@triton.jit
def wide(hi, lo, ACC: tl.constexpr):
    """A host float passed as an fp32 pair (hi + lo): kernel float arguments are fp32, and
    float64 runs need the scale factors to ~1e-14."""
    one = tl.full((), 1.0, ACC)  # also promotes a plain float (the interpreter passes those)
    return hi * one + lo * one


@triton.jit
def load_rng(seed, offset, rng_ptr, RNG_FROM_PTR: tl.constexpr):
    """(seed as uint64, offset as int64): from the arguments, or from an int64 [2] device
    tensor so that a captured CUDA graph draws fresh numbers on every replay."""
    if RNG_FROM_PTR:
        seed_u = tl.load(rng_ptr).to(tl.uint64, bitcast=True)
        offset_i = tl.load(rng_ptr + 1)
    else:
        seed_u = seed.to(tl.uint64)
        offset_i = offset.to(tl.int64)
    return seed_u, offset_i


@triton.jit
def counters(offset, flat_index):
    """Philox counter of element `flat_index`: (offset + i) mod 2^32 (docs/random.md)."""
    return ((offset + flat_index) & 0xFFFFFFFF).to(tl.uint32)


@triton.jit
def uniform(seed, offset, flat_index):
    return tl.rand(seed, counters(offset, flat_index))


@triton.jit
def corrupt_values(x, flat_index, seed, offset, level, level_lo, KIND: tl.constexpr):
    """x~ for the elements at `flat_index`, x in fp32 or fp64. Masks compare u with the fp32
    level (as torch does); the gaussian scale is level_hi + level_lo, exact for float64."""
    if KIND == MASK:
        return tl.where(uniform(seed, offset, flat_index) >= level, x, 0.0)
    elif KIND == GAUSSIAN:
        return x + wide(level, level_lo, x.dtype) * tl.randn(seed, counters(offset, flat_index))
    elif KIND == SALT_PEPPER:
        u = uniform(seed, offset, flat_index)
        return tl.where(u < level * 0.5, 0.0, tl.where(u < level, 1.0, x))
    elif KIND == NO_CORRUPTION:
        return x
    elif KIND == BLOCK or KIND == PATCH:
        tl.static_assert(False, "corrupt_values: block and patch masks come from sslkern/backends/structured.py")
    else:
        tl.static_assert(False, "corrupt_values: unknown corruption code (sslkern/kinds.py CORRUPTIONS)")


@triton.jit
def keep_values(g, flat_index, seed, offset, level, KIND: tl.constexpr):
    """The gradient through the corruption: g where x flowed through unchanged, else 0.
    Kinds whose row has passes_gradient pass g whole; the others regenerate their keep-mask."""
    if (PASSES_GRADIENT >> KIND) & 1:
        return g
    elif KIND == MASK or KIND == SALT_PEPPER:  # both keep x where u >= level
        return tl.where(uniform(seed, offset, flat_index) >= level, g, 0.0)
    else:
        tl.static_assert(False, "keep_values: unknown corruption code, or one with no keep-mask rule here")


@triton.jit
def tile_coords(num_pid_m, num_pid_n, GROUP_M: tl.constexpr):
    """(pid_m, pid_n) in grouped order: GROUP_M row-blocks share their column-blocks in L2."""
    pid = tl.program_id(0)
    width = GROUP_M * num_pid_n
    group = pid // width
    first_m = group * GROUP_M
    group_size = tl.minimum(num_pid_m - first_m, GROUP_M)
    pid_m = first_m + (pid % width) % group_size
    pid_n = (pid % width) // group_size
    return pid_m, pid_n


@triton.jit
def tile_ranges(pid_m, pid_n, M, N, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """(rm, rn, row_ok, col_ok): the 64-bit row and column indices of tile (pid_m, pid_n) (no
    int32 overflow past 2**31) and which of them fall inside the [M, N] matrix."""
    rm = pid_m.to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = pid_n.to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
    return rm, rn, rm < M, rn < N


@triton.jit
def rounded_like_gpu(v, DOT_DTYPE: tl.constexpr):
    """v rounded to DOT_DTYPE as a GPU rounds it (to nearest, ties to even), in fp32. The
    interpreter's fp32 -> bf16 cast truncates instead, so bf16 is rounded on the bits."""
    if DOT_DTYPE == tl.bfloat16 and v.dtype == tl.float32:
        bits = v.to(tl.uint32, bitcast=True)
        bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
        return bits.to(tl.float32, bitcast=True)
    return v.to(DOT_DTYPE).to(tl.float32)


@triton.jit
def mma(acc, a, b, DOT_DTYPE: tl.constexpr, PRECISION: tl.constexpr, EMULATE: tl.constexpr):
    """acc += a @ b with operands rounded to DOT_DTYPE. EMULATE (the interpreter) multiplies
    the rounded operands in fp32: its half-precision tl.dot gives wrong results."""
    if EMULATE:
        a = rounded_like_gpu(a, DOT_DTYPE)
        b = rounded_like_gpu(b, DOT_DTYPE)
    else:
        a = a.to(DOT_DTYPE)
        b = b.to(DOT_DTYPE)
    return tl.dot(a, b, acc, input_precision=PRECISION, out_dtype=acc.dtype)


@triton.jit
def scaled(v, scale, SCALE: tl.constexpr):
    """v · scale where a gradient operand is scaled before its fp16 rounding (fp16 products:
    dL/da and dZ carry a 1/B that would land in fp16's subnormals). The scale is a power of
    two, so this and the epilogue's division are exact."""
    if SCALE:
        v = v * scale
    return v


@triton.jit
def tile_product(acc, a_ptr, stride_am, stride_ak, b_ptr, stride_bk, stride_bn, rm, rn, row_ok, col_ok,
                 K, grad_scale, DOT_DTYPE: tl.constexpr, PRECISION: tl.constexpr, EMULATE: tl.constexpr,
                 BLOCK_K: tl.constexpr, SCALE_A: tl.constexpr, SCALE_B: tl.constexpr):
    """acc += A[rm, :K] @ B[:K, rn] for strided A and B, edges masked, 64-bit offsets; the
    operand flagged SCALE_A / SCALE_B is multiplied by grad_scale as it is loaded. Callers pass
    a literal 1 for unit strides, so the compiler still sees contiguous loads."""
    for k0 in range(0, K, BLOCK_K):
        rk = k0 + tl.arange(0, BLOCK_K).to(tl.int64)
        a = tl.load(a_ptr + rm[:, None] * stride_am + rk[None, :] * stride_ak,
                    mask=row_ok[:, None] & (rk[None, :] < K), other=0.0)
        b = tl.load(b_ptr + rk[:, None] * stride_bk + rn[None, :] * stride_bn,
                    mask=(rk[:, None] < K) & col_ok[None, :], other=0.0)
        acc = mma(acc, scaled(a, grad_scale, SCALE_A), scaled(b, grad_scale, SCALE_B),
                  DOT_DTYPE, PRECISION, EMULATE)
    return acc
