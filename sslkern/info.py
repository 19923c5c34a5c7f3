"""What this installation can do: versions, compiled modules, devices, backends."""
import torch

from . import _cuda_runtime, _native, backends
from .backends import blas


def _triton_version():
    try:
        import triton
    except ImportError:
        return None
    return triton.__version__


def _cpu_step_route():
    addresses, where = blas.gemm_addresses()
    try:
        mode = blas.step_mode()
    except ValueError as exc:
        return f"passes ({exc})"
    if addresses is None:
        return f"passes ({where})"
    if mode == "passes":
        return "passes (SSLKERN_CPU_STEP=passes)"
    bf16 = ("BLAS bf16 gemm" if blas.bf16_gemm_address() is not None
            else "bf16 rounded, multiplied by sgemm_")
    return f"fused: one C++ call per step, gemm from {where} ({bf16})"


def info():
    """A dict with torch, triton, native_cpu, native_cuda, cuda_devices, backends and the
    reasons behind every unavailable piece."""
    from . import __version__

    cuda_module = _native.load("cuda")
    result = {
        "sslkern": __version__,
        "torch": torch.__version__,
        "triton": _triton_version(),
        "native_cpu": _native.load("cpu") is not None,
        "native_cuda": cuda_module is not None,
        # which native CUDA kernels CUDA tensors use: "compiled" (nvcc), "nvrtc" (cupy), None
        "native_cuda_path": _cuda_runtime.live_path(),
        # how `native` runs the objective on CPU tensors, and with which instruction set
        "native_cpu_step": _cpu_step_route(),
        "native_cpu_isa": _native.load("cpu").isa() if _native.load("cpu") is not None else None,
        "cuda_devices": torch.cuda.device_count() if torch.cuda.is_available() else 0,
        "backends": backends.available_backends(),
        "requested_backend": backends.requested(),
        "build": _native.build_record(),
    }
    problems = {}
    for name in ("cpu", "cuda"):
        if _native.load_error(name):
            problems[f"native_{name}"] = _native.load_error(name)
    for name in backends.NAMES:
        why = backends.get(name).availability()
        if why:
            problems[f"backend {name}"] = "; ".join(why)
        for kind, part in getattr(backends.get(name), "parts", {}).items():  # per-device parts
            if part.availability() and not why:
                problems[f"backend {name} on {kind}"] = "; ".join(part.availability())
    result["unavailable"] = problems
    return result
