"""Elementwise kernels of the random stream: raw draws, corruption, its gradient.
Element i of a contiguous tensor uses counter (offset + i) mod 2^32."""
import triton
import triton.language as tl

from .common import corrupt_values, counters, keep_values, load_rng


@triton.jit(do_not_specialize=["seed", "offset"])
def philox_kernel(out_ptr, n, seed, offset, rng_ptr, NORMAL: tl.constexpr,
                  RNG_FROM_PTR: tl.constexpr, BLOCK: tl.constexpr):
    seed, offset = load_rng(seed, offset, rng_ptr, RNG_FROM_PTR)
    idx = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    if NORMAL:
        value = tl.randn(seed, counters(offset, idx))
    else:
        value = tl.rand(seed, counters(offset, idx))
    tl.store(out_ptr + idx, value, mask=idx < n)


@triton.jit(do_not_specialize=["seed", "offset"])
def corrupt_kernel(x_ptr, out_ptr, n, level, level_lo, seed, offset, rng_ptr, KIND: tl.constexpr,
                   GRAD: tl.constexpr, RNG_FROM_PTR: tl.constexpr, COMPUTE: tl.constexpr,
                   BLOCK: tl.constexpr):
    """out = C(x) or, with GRAD, the gradient through C (x is then the incoming gradient)."""
    seed, offset = load_rng(seed, offset, rng_ptr, RNG_FROM_PTR)
    idx = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    inside = idx < n
    x = tl.load(x_ptr + idx, mask=inside, other=0.0).to(COMPUTE)
    if GRAD:
        value = keep_values(x, idx, seed, offset, level, KIND)
    else:
        value = corrupt_values(x, idx, seed, offset, level, level_lo, KIND)
    tl.store(out_ptr + idx, value, mask=inside)
