"""Kernel sources. `sslkern.kernels.triton` holds the @triton.jit kernels of the triton
backend (one module per op family); the launchers live in sslkern/backends/triton.py."""
