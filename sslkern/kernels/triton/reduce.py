"""Deterministic reductions of the fp32 partial buffers the product kernels write (one row
per row-block of programs), in a fixed order: the same inputs give the same bits."""
import triton
import triton.language as tl

from .common import wide


@triton.jit
def column_sums(parts_ptr, rows, n, out_ptr, scale, block, BLOCK: tl.constexpr):
    cols = block.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    ok = cols < n
    total = tl.zeros((BLOCK,), parts_ptr.dtype.element_ty)
    ptrs = parts_ptr + cols
    for _ in range(0, rows):  # fixed order: deterministic
        total += tl.load(ptrs, mask=ok, other=0.0)
        ptrs += n
    tl.store(out_ptr + cols, total * scale, mask=ok)


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
    HAS_GRAD: tl.constexpr, HAS_LOSS: tl.constexpr, HAS_PEN: tl.constexpr, BLOCK: tl.constexpr,
):
    """One launch for every reduction of a pass: out1 = g · Σ_rows parts1, out2 likewise,
    and (the last program) loss = loss_scale · Σ loss parts + pen_scale · Σ penalty parts."""
    pid = tl.program_id(0)
    blocks1 = tl.cdiv(n1, BLOCK)
    blocks2 = tl.cdiv(n2, BLOCK)
    scale = 1.0
    if HAS_GRAD:
        scale = tl.load(grad_ptr).to(parts1_ptr.dtype.element_ty)
    if pid < blocks1:
        column_sums(parts1_ptr, rows1, n1, out1_ptr, scale, pid, BLOCK)
    elif pid < blocks1 + blocks2:
        column_sums(parts2_ptr, rows2, n2, out2_ptr, scale, pid - blocks1, BLOCK)
    elif HAS_LOSS:
        acc_ty = loss_part_ptr.dtype.element_ty
        total = block_sum(loss_part_ptr, n_loss, BLOCK) * wide(loss_scale_hi, loss_scale_lo, acc_ty)
        if HAS_PEN:
            total += block_sum(pen_part_ptr, n_pen, BLOCK) * wide(pen_scale_hi, pen_scale_lo, acc_ty)
        tl.store(loss_ptr, total)
