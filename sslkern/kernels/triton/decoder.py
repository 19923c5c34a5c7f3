"""Training decoder product: a = h W + c, then in the epilogue the loss partial sums,
dL/da (written straight into the weight-gradient operand) and partial column sums of
dL/da (for dc). Neither a nor x̂ is ever stored."""
import triton
import triton.language as tl

from .common import BCE, MSE, SIGMOID, act_d1, activation, softplus, tile_coords, tile_product, tile_ranges, wide


@triton.jit
def decoder_loss_kernel(
    h_ptr, w_ptr, c_ptr, x_ptr, da_ptr, dc_part_ptr, loss_part_ptr,
    M, N, K, num_pid_m, num_pid_n,
    stride_hm, stride_wk, stride_xm, stride_dm, inv_batch_hi, inv_batch_lo,
    LOSS: tl.constexpr, DECODER: tl.constexpr,
    ACC: tl.constexpr, DOT_DTYPE: tl.constexpr, PRECISION: tl.constexpr, EMULATE: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
):
    pid_m, pid_n = tile_coords(num_pid_m, num_pid_n, GROUP_M)
    rm, rn, row_ok, col_ok = tile_ranges(pid_m, pid_n, M, N, BLOCK_M, BLOCK_N)
    acc = tile_product(tl.zeros((BLOCK_M, BLOCK_N), ACC), h_ptr, stride_hm, 1, w_ptr, stride_wk, 1,
                       rm, rn, row_ok, col_ok, K, 1.0, DOT_DTYPE, PRECISION, EMULATE, BLOCK_K, False, False)

    inv_batch = wide(inv_batch_hi, inv_batch_lo, ACC)
    ok = row_ok[:, None] & col_ok[None, :]
    logit = acc + tl.load(c_ptr + rn, mask=col_ok, other=0.0).to(ACC)[None, :]
    x = tl.load(x_ptr + rm[:, None] * stride_xm + rn[None, :], mask=ok, other=0.0).to(ACC)
    if LOSS == BCE:  # softplus(a) - x a, from the logit (stable for any a)
        loss = softplus(logit) - x * logit
        d_a = (activation(logit, SIGMOID) - x) * inv_batch
    elif LOSS == MSE:
        y = activation(logit, DECODER)
        loss = 0.5 * (y - x) * (y - x)
        d_a = (y - x) * act_d1(y, DECODER) * inv_batch
    else:
        tl.static_assert(False, "decoder_loss_kernel: unknown loss code (sslkern/kinds.py LOSSES)")
    d_a = tl.where(ok, d_a, 0.0)
    tl.store(da_ptr + rm[:, None] * stride_dm + rn[None, :], d_a, mask=ok)
    tl.store(dc_part_ptr + pid_m.to(tl.int64) * N + rn, tl.sum(d_a, axis=0), mask=col_ok)
    tl.store(loss_part_ptr + pid_m * num_pid_n + pid_n, tl.sum(tl.sum(tl.where(ok, loss, 0.0), axis=1), axis=0))
