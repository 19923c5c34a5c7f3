"""The two ways the native CUDA kernels (csrc/cuda/kernels.cuh) reach a GPU, behind one interface.

- "compiled": sslkern._native_cuda, built by nvcc at install time (CMakeLists.txt).
- "nvrtc": the same source, shipped inside the package and compiled at run time by NVRTC through
  cupy.RawModule, for installs made without nvcc on a machine that has cupy.

Both are kernel tables with `launch(index, grid, block, stream, device, args)`: `index` is a
position in KERNELS, `args` the kernel's parameters in the order of its signature. The launch plan
(grids, workspaces, alignment) lives once, in sslkern/backends/native_cuda.py.

SSLKERN_NATIVE_CUDA=auto|compiled|nvrtc picks the path (auto: compiled when it loads, else nvrtc).
"""
import importlib.util
import os
import re
import struct
from pathlib import Path

from . import _native

PATHS = ("compiled", "nvrtc")
ENV_VAR = "SSLKERN_NATIVE_CUDA"

# Parameter codes: P pointer, q int64, Q uint64, I uint32, i int32, f float, d double, T the
# kernel's element type. Every parameter travels in an 8-byte slot (module.cu checks the count).
_TYPED = (("float", 1), ("float", 4), ("double", 1), ("double", 2))
_SIGNATURES = {
    "corrupt_kernel": "PPqifQIi",
    "bias_act_kernel": "PqqqPiPPP",
    "loss_grad_kernel": "PqPqqqPiiTPP",
    "act_grad_kernel": "PqPqqqiPTPTPqPqP",
    "row_sq_norms_kernel": "PqqqP",
    "row_scale_add_kernel": "PqPqqqPPT",
}


def _catalogue():
    """[(C++ name expression, signature)] in the order of module.cu's table."""
    entries = [(f"sslkern::cuda::philox_fill_kernel<{vec}>", "PqQIi") for vec in (1, 4)]
    for kernel, signature in _SIGNATURES.items():
        for ctype, vec in _TYPED:
            entries.append((f"sslkern::cuda::{kernel}<{ctype}, {vec}>",
                            signature.replace("T", "f" if ctype == "float" else "d")))
    entries += [(f"sslkern::cuda::reduce_partials_kernel<{ctype}>", "PqqPPqPd") for ctype in ("float", "double")]
    return entries


KERNELS = _catalogue()
KERNEL_INDEX = {name: i for i, (name, _) in enumerate(KERNELS)}


def kernel_name(kernel, dtype_name=None, vec=None):
    """The name expression of one instantiation, e.g. kernel_name("bias_act_kernel", "float", 4)."""
    if dtype_name is None:
        return f"sslkern::cuda::{kernel}<{vec}>"
    if vec is None:
        return f"sslkern::cuda::{kernel}<{dtype_name}>"
    return f"sslkern::cuda::{kernel}<{dtype_name}, {vec}>"


# ------------------------------------------------------------------------------------------------
# Sources: shipped as sslkern/csrc in a wheel (setup.py copies them), found in csrc/ of a checkout
# (editable installs).

KERNEL_FILE = "cuda/kernels.cuh"
_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"\s*$')
_PRAGMA_ONCE = re.compile(r"^\s*#\s*pragma\s+once\s*$")


def source_roots():
    """Where the CUDA sources are looked for, in order."""
    here = Path(__file__).resolve().parent
    return [here / "csrc", here.parent / "csrc"]


def source_root():
    """The first of source_roots() that holds the kernels and their headers, or None."""
    for root in source_roots():
        if (root / KERNEL_FILE).is_file() and (root / "include" / "sslkern" / "philox.h").is_file():
            return root
    return None


def kernel_source(root=None):
    """kernels.cuh with its quoted includes inlined (each once), ready for NVRTC.

    Inlining, rather than passing -I, keeps cupy's on-disk kernel cache honest: it is keyed by
    the source text, so an edited header must change that text."""
    root = Path(root) if root is not None else source_root()
    if root is None:
        raise FileNotFoundError("the CUDA sources are not shipped here; looked in "
                                + ", ".join(str(p) for p in source_roots()))
    search = [root / "include", root / "cuda"]
    seen = set()

    def expand(path):
        path = path.resolve()
        if path in seen:
            return []
        seen.add(path)
        lines = [f'#line 1 "{path.name}"']
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if _PRAGMA_ONCE.match(line):
                lines.append("")
                continue
            match = _INCLUDE.match(line)
            if not match:
                lines.append(line)
                continue
            target = next((d / match.group(1) for d in [path.parent] + search
                           if (d / match.group(1)).is_file()), None)
            if target is None:
                raise FileNotFoundError(f"{path.name}:{number}: cannot find include {match.group(1)!r}")
            lines += expand(target)
            lines.append(f'#line {number + 1} "{path.name}"')
        return lines

    return "\n".join(expand(root / KERNEL_FILE)) + "\n"


# ------------------------------------------------------------------------------------------------
# The two kernel tables.

_SLOT = {"P": "Q", "q": "q", "Q": "Q", "I": "I4x", "i": "i4x", "f": "f4x", "d": "d"}


class CompiledKernels:
    """Launches through sslkern._native_cuda (cudaLaunchKernel; errors raise RuntimeError)."""
    path = "compiled"

    def __init__(self, lib):
        self.lib = lib
        if not hasattr(lib, "kernel_table"):
            raise ImportError("sslkern._native_cuda predates the kernels: rebuild the package")
        built = {name: (handle, arity) for handle, (name, arity) in enumerate(lib.kernel_table())}
        stale = [name for name, sig in KERNELS if built.get(name, (0, -1))[1] != len(sig)]
        if stale:
            raise ImportError(f"sslkern._native_cuda does not match these sources ({stale[0]} and "
                              f"{len(stale) - 1} more): rebuild the package")
        self._handles = [built[name][0] for name, _ in KERNELS]
        self._packers = [struct.Struct("<" + "".join(_SLOT[c] for c in sig)) for _, sig in KERNELS]

    def launch(self, index, grid, block, stream, device, args):
        self.lib.launch(self._handles[index], grid, block, stream, device, self._packers[index].pack(*args))


class NvrtcKernels:
    """Compiles kernels.cuh with NVRTC through cupy on first use (cached on disk by cupy)."""
    path = "nvrtc"
    # cupy appends -ftz=true: denormal floats flush to zero here, unlike the nvcc build. The random
    # stream is unaffected (its smallest nonzero uniform, 4.7e-10, is a normal float).
    OPTIONS = ("--std=c++17",)

    def __init__(self):
        import cupy
        import numpy as np

        self.cupy = cupy
        self.source = kernel_source()
        self._module = None
        self._functions = {}
        self._streams = {}
        types = {"P": np.uint64, "q": np.int64, "Q": np.uint64, "I": np.uint32, "i": np.int32,
                 "f": np.float32, "d": np.float64}
        self._casts = [[types[c] for c in sig] for _, sig in KERNELS]

    def module(self):
        if self._module is None:
            self._module = self.cupy.RawModule(code=self.source, options=self.OPTIONS,
                                               name_expressions=[name for name, _ in KERNELS])
        return self._module

    def _function(self, index, device):
        key = (index, device)
        if key not in self._functions:
            with self.cupy.cuda.Device(device):
                self._functions[key] = self.module().get_function(KERNELS[index][0])
        return self._functions[key]

    def _stream(self, stream, device):
        if (stream, device) not in self._streams:
            self._streams[(stream, device)] = self.cupy.cuda.ExternalStream(stream, device)
        return self._streams[(stream, device)]

    def launch(self, index, grid, block, stream, device, args):
        function = self._function(index, device)
        values = tuple(cast(v) for cast, v in zip(self._casts[index], args))
        with self.cupy.cuda.Device(device), self._stream(stream, device):
            function(grid, block, values)


def requested_path():
    value = os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"
    if value not in ("auto",) + PATHS:
        raise ValueError(f"{ENV_VAR} must be auto, compiled or nvrtc, not {value!r}")
    return value


def _compiled():
    lib = _native.load("cuda")
    if lib is None:
        return None, f"compiled: {_native.load_error('cuda')}"
    try:
        return CompiledKernels(lib), None
    except ImportError as exc:
        return None, f"compiled: {exc}"


def _nvrtc():
    if importlib.util.find_spec("cupy") is None:
        return None, "nvrtc: cupy is not installed (pip install cupy-cuda13x, or build with nvcc)"
    if source_root() is None:
        return None, "nvrtc: the CUDA sources are not shipped with this install"
    try:
        return NvrtcKernels(), None
    except Exception as exc:  # cupy fails to import without a driver, among others
        return None, f"nvrtc: cupy cannot be used: {type(exc).__name__}: {exc}"


def open_kernels(path=None):
    """(kernel table or None, reasons) for `path` ("auto", "compiled", "nvrtc"; None: the env)."""
    path = requested_path() if path is None else path
    if path not in ("auto",) + PATHS:
        raise ValueError(f"path must be auto, compiled or nvrtc, not {path!r}")
    order = PATHS if path == "auto" else (path,)
    reasons = []
    for candidate in order:
        kernels, why = _compiled() if candidate == "compiled" else _nvrtc()
        if kernels is not None:
            return kernels, []
        reasons.append(why)
    return None, reasons


def live_path():
    """"compiled", "nvrtc" or None: the path CUDA tensors would take, decided without compiling
    or importing cupy; None also for a bad SSLKERN_NATIVE_CUDA (the native backend says why)."""
    try:
        path = requested_path()
    except ValueError:
        return None
    if path in ("auto", "compiled") and _native.load("cuda") is not None:
        return "compiled"
    if path in ("auto", "nvrtc") and importlib.util.find_spec("cupy") and source_root() is not None:
        return "nvrtc"
    return None
