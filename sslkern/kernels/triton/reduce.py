"""Deterministic reductions: the fp32 partial buffers the product kernels write (one row per
row-block of programs), and the squared row norms of W for the contractive penalty.

Each program owns a fixed slice of the output and accumulates 2-D tiles in a fixed order,
then reduces the tile once, by Triton's fixed tree for that layout: the same inputs and the
same launch configuration give the same bits. No atomics.
"""
import triton
import triton.language as tl

from .common import wide


@triton.jit
def column_sums(parts_ptr, rows, n, out_ptr, scale, block, BLOCK_ROWS: tl.constexpr, BLOCK: tl.constexpr):
    """out[cols] = scale · Σ_rows parts[:, cols] for one block of BLOCK columns. BLOCK_ROWS
    partial rows are loaded per iteration (independent loads in flight, not one row at a time)
    into a [BLOCK_ROWS, BLOCK] accumulator, reduced over the rows once at the end."""
    cols = block.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    ok = cols < n
    total = tl.zeros((BLOCK_ROWS, BLOCK), parts_ptr.dtype.element_ty)
    for start in range(0, rows, BLOCK_ROWS):  # fixed order: deterministic
        rr = start + tl.arange(0, BLOCK_ROWS).to(tl.int64)
        mask = (rr[:, None] < rows) & ok[None, :]
        total += tl.load(parts_ptr + rr[:, None] * n + cols[None, :], mask=mask, other=0.0)
    tl.store(out_ptr + cols, tl.sum(total, axis=0) * scale, mask=ok)


@triton.jit
def block_sum(ptr, n, BLOCK: tl.constexpr):
    total = tl.zeros((BLOCK,), ptr.dtype.element_ty)
    for start in range(0, n, BLOCK):
        idx = start + tl.arange(0, BLOCK)
        total += tl.load(ptr + idx, mask=idx < n, other=0.0)
    return tl.sum(total, axis=0)


@triton.jit
def finalize_kernel(
    parts1_ptr, rows1, n1, out1_ptr, parts2_ptr, rows2, n2, out2_ptr,
    loss_part_ptr, n_loss, pen_part_ptr, n_pen, loss_ptr, loss_scale_hi, loss_scale_lo,
    pen_scale_hi, pen_scale_lo, grad_ptr,
    HAS_GRAD: tl.constexpr, HAS_LOSS: tl.constexpr, HAS_PEN: tl.constexpr,
    BLOCK_ROWS: tl.constexpr, BLOCK: tl.constexpr,
):
    """One launch for every reduction of a pass: out1 = g · Σ_rows parts1, out2 likewise (one
    program per BLOCK columns), and (the last program) loss = loss_scale · Σ loss parts +
    pen_scale · Σ penalty parts, read BLOCK_ROWS · BLOCK at a time."""
    pid = tl.program_id(0)
    blocks1 = tl.cdiv(n1, BLOCK)
    blocks2 = tl.cdiv(n2, BLOCK)
    scale = 1.0
    if HAS_GRAD:
        scale = tl.load(grad_ptr).to(parts1_ptr.dtype.element_ty)
    if pid < blocks1:
        column_sums(parts1_ptr, rows1, n1, out1_ptr, scale, pid, BLOCK_ROWS, BLOCK)
    elif pid < blocks1 + blocks2:
        column_sums(parts2_ptr, rows2, n2, out2_ptr, scale, pid - blocks1, BLOCK_ROWS, BLOCK)
    elif HAS_LOSS:
        acc_ty = loss_part_ptr.dtype.element_ty
        total = block_sum(loss_part_ptr, n_loss, BLOCK_ROWS * BLOCK) * wide(loss_scale_hi, loss_scale_lo, acc_ty)
        if HAS_PEN:
            total += block_sum(pen_part_ptr, n_pen, BLOCK_ROWS * BLOCK) * wide(pen_scale_hi, pen_scale_lo, acc_ty)
        tl.store(loss_ptr, total)


@triton.jit
def row_sq_norms_kernel(
    w_ptr, r_ptr, r_out_ptr, H, D, stride_wh, stride_wd,
    ROUNDED: tl.constexpr, ACC: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_D: tl.constexpr,
):
    """r_j = ||W[j, :]||² for BLOCK_H rows of W [H, D] (any strides), accumulated in ACC over
    [BLOCK_H, BLOCK_D] tiles and reduced along D once at the end. r (ACC) feeds the encoder's
    penalty partials; with ROUNDED, r_out gets the same values in its own (the parameters')
    dtype, the r saved for the backward."""
    rows = tl.program_id(0).to(tl.int64) * BLOCK_H + tl.arange(0, BLOCK_H)
    row_ok = rows < H
    acc = tl.zeros((BLOCK_H, BLOCK_D), ACC)
    for d0 in range(0, D, BLOCK_D):  # fixed order: deterministic
        rd = d0 + tl.arange(0, BLOCK_D).to(tl.int64)
        ok = row_ok[:, None] & (rd[None, :] < D)
        w = tl.load(w_ptr + rows[:, None] * stride_wh + rd[None, :] * stride_wd, mask=ok, other=0.0).to(ACC)
        acc += w * w
    r = tl.sum(acc, axis=1)
    tl.store(r_ptr + rows, r, mask=row_ok)
    if ROUNDED:
        tl.store(r_out_ptr + rows, r.to(r_out_ptr.dtype.element_ty), mask=row_ok)
