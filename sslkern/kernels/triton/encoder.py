"""Encoder product: h = f(x~ Wᵀ + b) (also the plain decoder g(h W + c) through strides).

The A operand may be corrupted inside its loads (x~ regenerated from (seed, offset), the
N-block-0 programs writing it out for the weight gradient). With CONTRACTIVE the epilogue
reads r_j = ||W_j||² (written before by reduce.row_sq_norms_kernel, in the accumulator dtype)
and writes per-row-block partial sums of s² = f'(z)² (for s2col) and of s² r (for the
penalty). r is not accumulated here: that took a cross-thread reduction in every K
iteration of the hot loop, repeated by every row-block of programs; the separate kernel
makes one pass over W.
"""
import triton
import triton.language as tl

from .common import NO_CORRUPTION, act_d1, activation, corrupt_values, load_rng, mma, tile_coords, tile_ranges


@triton.jit(do_not_specialize=["seed", "offset"])
def encoder_kernel(
    a_ptr, b_ptr, bias_ptr, out_ptr,      # A [M, K] rows contiguous; B viewed [K, N] by strides
    xt_ptr, r_ptr, s2_part_ptr, pen_part_ptr,  # r [N] (ACC) is read, with CONTRACTIVE
    M, N, K, num_pid_m, num_pid_n,
    stride_am, stride_bk, stride_bn, stride_om, stride_xm,
    level, level_lo, seed, offset, rng_ptr,
    ACT: tl.constexpr, CORRUPTION: tl.constexpr, WRITE_XT: tl.constexpr,
    CONTRACTIVE: tl.constexpr, RNG_FROM_PTR: tl.constexpr,
    ACC: tl.constexpr, DOT_DTYPE: tl.constexpr, PRECISION: tl.constexpr, EMULATE: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
):
    pid_m, pid_n = tile_coords(num_pid_m, num_pid_n, GROUP_M)
    seed, offset = load_rng(seed, offset, rng_ptr, RNG_FROM_PTR)
    rm, rn, row_ok, col_ok = tile_ranges(pid_m, pid_n, M, N, BLOCK_M, BLOCK_N)
    acc = tl.zeros((BLOCK_M, BLOCK_N), ACC)
    for k0 in range(0, K, BLOCK_K):
        rk = k0 + tl.arange(0, BLOCK_K).to(tl.int64)
        a_ok = row_ok[:, None] & (rk[None, :] < K)
        a = tl.load(a_ptr + rm[:, None] * stride_am + rk[None, :], mask=a_ok, other=0.0)
        if CORRUPTION != NO_CORRUPTION:
            flat = rm[:, None] * K + rk[None, :]
            a = corrupt_values(a.to(ACC), flat, seed, offset, level, level_lo, CORRUPTION)
            a = tl.where(a_ok, a, 0.0)
        if WRITE_XT:
            tl.store(xt_ptr + rm[:, None] * stride_xm + rk[None, :], a, mask=a_ok & (pid_n == 0))
        b_ok = (rk[:, None] < K) & col_ok[None, :]
        b = tl.load(b_ptr + rk[:, None] * stride_bk + rn[None, :] * stride_bn, mask=b_ok, other=0.0)
        acc = mma(acc, a, b, DOT_DTYPE, PRECISION, EMULATE)

    bias = tl.load(bias_ptr + rn, mask=col_ok, other=0.0).to(ACC)
    h = activation(acc + bias[None, :], ACT)
    out_ok = row_ok[:, None] & col_ok[None, :]
    tl.store(out_ptr + rm[:, None] * stride_om + rn[None, :], h, mask=out_ok)
    if CONTRACTIVE:
        s = act_d1(h, ACT)
        col_s2 = tl.sum(tl.where(out_ok, s * s, 0.0), axis=0)
        tl.store(s2_part_ptr + pid_m.to(tl.int64) * N + rn, col_s2, mask=col_ok)
        r = tl.load(r_ptr + rn, mask=col_ok, other=0.0).to(ACC)
        tl.store(pen_part_ptr + pid_m * num_pid_n + pid_n, tl.sum(col_s2 * r, axis=0))
