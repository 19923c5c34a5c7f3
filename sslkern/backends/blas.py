"""The BLAS gemm that torch's own products use, as raw function addresses for the compiled
CPU step (csrc/cpu/step.cpp). The compiled module links no BLAS and no libtorch; it is handed
sgemm_/dgemm_ from the library torch already loaded, so its products are torch's products
(same library, same threads) without a Python round trip each.

`gemm_addresses()` is {dtype: address} or, when no library exports both symbols, a reason:
then `native` runs the same passes between torch.mm calls (slower for small batches, same
results). `SSLKERN_CPU_STEP=passes` forces that path (tests and benchmarks compare both).

`bf16_gemm_address()` is the same library's gemm for bf16 operands with fp32 accumulation
and output (MKL's gemm_bf16bf16f32, OpenBLAS's sbgemm), or None: the step's precision="bf16"
products go through it, or else multiply the rounded values with sgemm (same roundings of
the operands, slower).
"""
import ctypes
import functools
import os
from pathlib import Path

import torch

_SYMBOLS = {torch.float32: "sgemm_", torch.float64: "dgemm_"}
_BF16_SYMBOLS = ("gemm_bf16bf16f32_", "sbgemm_")  # MKL, OpenBLAS: the same Fortran signature
MODES = ("fused", "passes")


def _candidates():
    """Shared libraries of the torch installation that may carry the BLAS symbols."""
    root = Path(torch.__file__).parent
    names = ["libtorch_cpu.so", "libtorch_cpu.dylib"]
    yield from (root / "lib" / n for n in names)
    for folder in (root / "lib", root.parent / "torch.libs"):  # bundled OpenBLAS (aarch64 wheels)
        if folder.is_dir():
            yield from sorted(p for p in folder.iterdir() if "blas" in p.name.lower())


@functools.lru_cache(maxsize=None)
def gemm_addresses():
    """({dtype: address of the Fortran gemm}, library path) or (None, reason)."""
    tried = []
    for path in _candidates():
        if not path.is_file():
            continue
        try:
            lib = ctypes.CDLL(str(path))  # already loaded by torch: this only finds its handle
            found = {dtype: ctypes.cast(getattr(lib, sym), ctypes.c_void_p).value
                     for dtype, sym in _SYMBOLS.items()}
        except (OSError, AttributeError) as exc:
            tried.append(f"{path.name}: {exc}")
            continue
        return found, str(path)
    return None, "no library of torch exports sgemm_ and dgemm_ (" + ("; ".join(tried) or "none found") + ")"


@functools.lru_cache(maxsize=None)
def bf16_gemm_address():
    """The address of the bf16 gemm in the library gemm_addresses() found, or None.
    SSLKERN_CPU_BF16_GEMM=0 ignores it (tests compare the two ways)."""
    found, path = gemm_addresses()
    if found is None or os.environ.get("SSLKERN_CPU_BF16_GEMM", "1") == "0":
        return None
    lib = ctypes.CDLL(path)
    for symbol in _BF16_SYMBOLS:
        function = getattr(lib, symbol, None)
        if function is not None:
            return ctypes.cast(function, ctypes.c_void_p).value
    return None


def step_mode():
    """'fused' (one C++ call per direction) or 'passes' (torch.mm between C++ passes)."""
    mode = os.environ.get("SSLKERN_CPU_STEP", "fused")
    if mode not in MODES:
        raise ValueError(f"SSLKERN_CPU_STEP must be one of {MODES}, got {mode!r}")
    return mode
