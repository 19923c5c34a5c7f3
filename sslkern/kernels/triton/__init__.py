"""@triton.jit kernels of the triton backend, one module per op family (docs/kernels.md):

- common:   activations and their derivatives from h, the counter-based random stream,
            grouped tile ordering and the product step shared by every kernel.
- corrupt:  raw Philox draws, corruption and its gradient (elementwise).
- encoder:  f(x~ Wᵀ + b) with corruption in the loads, ||W_j||² and penalty partial sums.
- decoder:  a = h W + c with the loss partial sums and dL/da in the epilogue.
- backward: dZ (dA Wᵀ with the activation and contractive gradients), the weight gradient
            over K = 2B, the input gradient, and the elementwise dZ of the single-layer ops.
- reduce:   deterministic sums of the fp32 partial buffers (no atomics anywhere).
- pretext:  the pretext generators of sslkern.pretext (rotations, jigsaw, relative patches)
            and their launchers.

Every index is 64-bit (tensors past 2^31 elements); Philox counters are (offset + i) mod 2^32.
"""
