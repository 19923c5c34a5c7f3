"""Backward products. dZ is stored without the incoming scalar gradient g; every consumer
(weight gradient, bias gradient, input gradient) applies g in its epilogue, read from a
device pointer (never synchronised to the host)."""
import triton
import triton.language as tl

from .common import (BCE, MSE, act_d1, act_d2, activation, keep_values, load_rng, mma, scaled, tile_coords,
                     tile_product, tile_ranges, wide)


@triton.jit
def dz_epilogue(dh, h, r_ptr, rn, col_ok, coef, ACT: tl.constexpr, CONTRACTIVE: tl.constexpr):
    """dZ = dH ⊙ s + coef · s ⊙ f''(z) ⊙ r (docs/design.md)."""
    s = act_d1(h, ACT)
    dz = dh * s
    if CONTRACTIVE:
        r = tl.load(r_ptr + rn, mask=col_ok, other=0.0).to(h.dtype)
        dz += coef * s * act_d2(h, ACT) * r[None, :]
    return dz


@triton.jit
def dz_kernel(
    da_ptr, w_ptr, h_ptr, r_ptr, dz_ptr, db_part_ptr,
    M, N, K, num_pid_m, num_pid_n,
    stride_dam, stride_wn, stride_hm, stride_zm, coef_hi, coef_lo, grad_scale,
    ACT: tl.constexpr, CONTRACTIVE: tl.constexpr, SCALE_GRADIENTS: tl.constexpr,
    ACC: tl.constexpr, DOT_DTYPE: tl.constexpr, PRECISION: tl.constexpr, EMULATE: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
):
    """dH = dA Wᵀ (W [N, K]) -> dZ [M, N] and partial column sums of dZ (for db).
    SCALE_GRADIENTS: dA enters the product times grad_scale, which dH is divided by again."""
    pid_m, pid_n = tile_coords(num_pid_m, num_pid_n, GROUP_M)
    rm, rn, row_ok, col_ok = tile_ranges(pid_m, pid_n, M, N, BLOCK_M, BLOCK_N)
    acc = tile_product(tl.zeros((BLOCK_M, BLOCK_N), ACC), da_ptr, stride_dam, 1, w_ptr, 1, stride_wn,
                       rm, rn, row_ok, col_ok, K, grad_scale, DOT_DTYPE, PRECISION, EMULATE, BLOCK_K,
                       SCALE_GRADIENTS, False)
    acc = scaled(acc, 1.0 / grad_scale, SCALE_GRADIENTS)

    ok = row_ok[:, None] & col_ok[None, :]
    h = tl.load(h_ptr + rm[:, None] * stride_hm + rn[None, :], mask=ok, other=0.0).to(ACC)
    coef = wide(coef_hi, coef_lo, ACC)
    dz = tl.where(ok, dz_epilogue(acc, h, r_ptr, rn, col_ok, coef, ACT, CONTRACTIVE), 0.0)
    tl.store(dz_ptr + rm[:, None] * stride_zm + rn[None, :], dz, mask=ok)
    tl.store(db_part_ptr + pid_m.to(tl.int64) * N + rn, tl.sum(dz, axis=0), mask=col_ok)


@triton.jit
def act_grad_kernel(
    dh_ptr, h_ptr, r_ptr, dz_ptr, db_part_ptr, M, N, coef_hi, coef_lo,
    HAS_DH: tl.constexpr, ACT: tl.constexpr, CONTRACTIVE: tl.constexpr, ACC: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """The elementwise dZ of the single-layer ops (dH given, or none for the penalty alone)."""
    pid_m, pid_n = tl.program_id(0), tl.program_id(1)
    rm, rn, row_ok, col_ok = tile_ranges(pid_m, pid_n, M, N, BLOCK_M, BLOCK_N)
    ok = row_ok[:, None] & col_ok[None, :]
    offs = rm[:, None] * N + rn[None, :]
    h = tl.load(h_ptr + offs, mask=ok, other=0.0).to(ACC)
    if HAS_DH:
        dh = tl.load(dh_ptr + offs, mask=ok, other=0.0).to(ACC)
    else:
        dh = tl.zeros((BLOCK_M, BLOCK_N), ACC)
    coef = wide(coef_hi, coef_lo, ACC)
    dz = tl.where(ok, dz_epilogue(dh, h, r_ptr, rn, col_ok, coef, ACT, CONTRACTIVE), 0.0)
    tl.store(dz_ptr + offs, dz, mask=ok)
    tl.store(db_part_ptr + pid_m.to(tl.int64) * N + rn, tl.sum(dz, axis=0), mask=col_ok)


@triton.jit
def weight_grad_kernel(
    a1_ptr, a2_ptr, b1_ptr, b2_ptr, w_ptr, s2_ptr, grad_ptr, out_ptr,
    M, N, K1, K2, num_pid_m, num_pid_n,
    stride_a1k, stride_a2k, stride_bk, stride_wm, stride_om, coef_hi, coef_lo, grad_scale,
    HAS_GRAD: tl.constexpr, ROW_SCALE: tl.constexpr, SCALE_GRADIENTS: tl.constexpr,
    ACC: tl.constexpr, DOT_DTYPE: tl.constexpr, PRECISION: tl.constexpr, EMULATE: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
):
    """dW = g · ([A1 ; A2]ᵀ B + coef · diag(s2) W): one product over K = K1 + K2 whose A rows
    come from two tensors (h and dZ in training) and whose B rows are [B1 ; B2] with one row
    stride (in training the halves of one [2B, N] tensor [dA ; x~]). The launcher passes B2's
    address: K1 · stride_bk computed here would overflow int32 once B·D >= 2^31.
    SCALE_GRADIENTS: the gradient operand of each half (B1 = dA, A2 = dZ) enters times
    grad_scale, and the sum is divided by it again.
    No split-K: every output tile is summed by one program, deterministically."""
    pid_m, pid_n = tile_coords(num_pid_m, num_pid_n, GROUP_M)
    rm, rn, row_ok, col_ok = tile_ranges(pid_m, pid_n, M, N, BLOCK_M, BLOCK_N)
    acc = tile_product(tl.zeros((BLOCK_M, BLOCK_N), ACC), a1_ptr, 1, stride_a1k, b1_ptr, stride_bk, 1,
                       rm, rn, row_ok, col_ok, K1, grad_scale, DOT_DTYPE, PRECISION, EMULATE, BLOCK_K,
                       False, SCALE_GRADIENTS)
    acc = tile_product(acc, a2_ptr, 1, stride_a2k, b2_ptr, stride_bk, 1,
                       rm, rn, row_ok, col_ok, K2, grad_scale, DOT_DTYPE, PRECISION, EMULATE, BLOCK_K,
                       SCALE_GRADIENTS, False)
    acc = scaled(acc, 1.0 / grad_scale, SCALE_GRADIENTS)

    ok = row_ok[:, None] & col_ok[None, :]
    if ROW_SCALE:
        w = tl.load(w_ptr + rm[:, None] * stride_wm + rn[None, :], mask=ok, other=0.0).to(ACC)
        s2 = tl.load(s2_ptr + rm, mask=row_ok, other=0.0).to(ACC)
        acc += wide(coef_hi, coef_lo, ACC) * s2[:, None] * w
    if HAS_GRAD:
        acc = acc * tl.load(grad_ptr).to(ACC)
    tl.store(out_ptr + rm[:, None] * stride_om + rn[None, :], acc, mask=ok)


@triton.jit(do_not_specialize=["seed", "offset"])
def input_grad_kernel(
    dz_ptr, b_ptr, h_ptr, c_ptr, x_ptr, grad_ptr, out_ptr,
    M, N, K, num_pid_m, num_pid_n,
    stride_zm, stride_bk, stride_bn, stride_hm, stride_xm, stride_om,
    inv_batch_hi, inv_batch_lo, level, seed, offset, rng_ptr, grad_scale,
    HAS_GRAD: tl.constexpr, CORRUPTION: tl.constexpr, RECON: tl.constexpr, LOSS: tl.constexpr,
    DECODER: tl.constexpr, RNG_FROM_PTR: tl.constexpr, SCALE_GRADIENTS: tl.constexpr,
    ACC: tl.constexpr, DOT_DTYPE: tl.constexpr, PRECISION: tl.constexpr, EMULATE: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
):
    """dx = g · keep(dZ B) [- g/B · target(h W + c, x) with RECON]. With RECON (the objective's
    input gradient) the same W tiles feed a second product that recomputes the logit a.
    SCALE_GRADIENTS: dZ enters times grad_scale, and dZ B is divided by it again."""
    pid_m, pid_n = tile_coords(num_pid_m, num_pid_n, GROUP_M)
    seed, offset = load_rng(seed, offset, rng_ptr, RNG_FROM_PTR)
    rm, rn, row_ok, col_ok = tile_ranges(pid_m, pid_n, M, N, BLOCK_M, BLOCK_N)
    acc = tl.zeros((BLOCK_M, BLOCK_N), ACC)
    logit = tl.zeros((BLOCK_M, BLOCK_N), ACC)
    for k0 in range(0, K, BLOCK_K):
        rk = k0 + tl.arange(0, BLOCK_K).to(tl.int64)
        a_ok = row_ok[:, None] & (rk[None, :] < K)
        b = tl.load(b_ptr + rk[:, None] * stride_bk + rn[None, :] * stride_bn,
                    mask=(rk[:, None] < K) & col_ok[None, :], other=0.0)
        a = tl.load(dz_ptr + rm[:, None] * stride_zm + rk[None, :], mask=a_ok, other=0.0)
        acc = mma(acc, scaled(a, grad_scale, SCALE_GRADIENTS), b, DOT_DTYPE, PRECISION, EMULATE)
        if RECON:
            h = tl.load(h_ptr + rm[:, None] * stride_hm + rk[None, :], mask=a_ok, other=0.0)
            logit = mma(logit, h, b, DOT_DTYPE, PRECISION, EMULATE)

    ok = row_ok[:, None] & col_ok[None, :]
    acc = scaled(acc, 1.0 / grad_scale, SCALE_GRADIENTS)
    dx = keep_values(acc, rm[:, None] * N + rn[None, :], seed, offset, level, CORRUPTION)
    if RECON:
        logit += tl.load(c_ptr + rn, mask=col_ok, other=0.0).to(ACC)[None, :]
        if LOSS == BCE:
            target = logit
        elif LOSS == MSE:
            x = tl.load(x_ptr + rm[:, None] * stride_xm + rn[None, :], mask=ok, other=0.0).to(ACC)
            target = activation(logit, DECODER) - x
        else:
            tl.static_assert(False, "input_grad_kernel: unknown loss code (sslkern/kinds.py LOSSES)")
        dx -= target * wide(inv_batch_hi, inv_batch_lo, ACC)
    if HAS_GRAD:
        dx = dx * tl.load(grad_ptr).to(ACC)
    tl.store(out_ptr + rm[:, None] * stride_om + rn[None, :], dx, mask=ok)
