"""The native CUDA backend: its build, its shipped sources, its launch plan and, on a GPU, its
results against the reference epilogues and the float64 oracle.

Without a GPU the launch plan still runs: a recording kernel table stands in for the device and
checks every launch's name, grid and packed arguments against the kernel catalogue."""
import ast
import ctypes
import ctypes.util
import glob
import os
import shutil
import struct
from pathlib import Path

import pytest
import torch

from helpers import DEVICE_MATH, NORMAL_DRAWS, assert_close

import sslkern
from sslkern import _cuda_runtime as runtime
from sslkern import _native, backends
from sslkern.backends import cuda_auto
from sslkern.backends.native_cuda import NativeCudaEpilogues
from sslkern.backends.reference import TorchEpilogues
from sslkern.kinds import ACTIVATIONS, CORRUPTIONS, LOSSES

ROOT = Path(__file__).resolve().parents[1]
HAS_GPU = torch.cuda.is_available()
gpu = pytest.mark.skipif(not HAS_GPU, reason="needs a CUDA device")
compiled_module = _native.load("cuda")
needs_module = pytest.mark.skipif(compiled_module is None, reason="sslkern._native_cuda not built")


# -- the compiled module ---------------------------------------------------------------------------

@needs_module
def test_compiled_kernels_match_the_catalogue():
    built = dict(compiled_module.kernel_table())
    assert set(built) == {name for name, _ in runtime.KERNELS}
    for name, signature in runtime.KERNELS:
        assert built[name] == len(signature), name


@needs_module
def test_build_info_and_device_count():
    assert compiled_module.build_info()["cuda_runtime"] >= 12000
    count = compiled_module.device_count()
    assert count == (torch.cuda.device_count() if HAS_GPU else 0)


@needs_module
def test_launch_rejects_bad_arguments_before_touching_a_device():
    with pytest.raises(ValueError, match="handle"):
        compiled_module.launch(10_000, (1, 1, 1), (1, 1, 1), 0, 0, b"")
    with pytest.raises(ValueError, match="takes 5 arguments"):
        handle = [name for name, _ in compiled_module.kernel_table()].index(
            "sslkern::cuda::philox_fill_kernel<1>")
        compiled_module.launch(handle, (1, 1, 1), (1, 1, 1), 0, 0, b"\0" * 8)


@needs_module
def test_info_reports_the_compiled_path():
    info = sslkern.info()
    assert info["native_cuda"] is True
    assert info["native_cuda_path"] == "compiled"


# -- the sources NVRTC compiles ------------------------------------------------------------------

def test_kernel_source_inlines_each_header_once():
    source = runtime.kernel_source()
    assert '#include "' not in source
    assert source.count("struct Philox4 {") == 1
    assert source.count("enum Activation") == 1
    for name, _ in runtime.KERNELS:
        bare = name.split("::")[-1].split("<")[0]
        assert f"void {bare}(" in source or f"{bare}(" in source, bare


def test_launch_constants_match_the_kernels():
    import re

    from sslkern.backends import native_cuda

    text = (ROOT / "csrc" / "cuda" / "kernels.cuh").read_text(encoding="utf-8")
    constants = dict(re.findall(r"constexpr int (k\w+) = (\d+);", text))
    assert {k: int(v) for k, v in constants.items()} == {
        "kTileX": native_cuda.TILE_X, "kTileY": native_cuda.TILE_Y,
        "kChunkRows": native_cuda.CHUNK_ROWS}


def _shipped_patterns():
    tree = ast.parse((ROOT / "setup.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "SHIPPED_SOURCES":
            return ast.literal_eval(node.value)
    raise AssertionError("setup.py has no SHIPPED_SOURCES")


def test_shipped_sources_are_complete(tmp_path):
    """What setup.py copies into a wheel is all kernel_source needs."""
    shipped = tmp_path / "sslkern" / "csrc"
    for pattern in _shipped_patterns():
        for source in ROOT.glob(pattern):
            dest = shipped / source.relative_to(ROOT / "csrc")
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest)
    assert runtime.kernel_source(shipped) == runtime.kernel_source(ROOT / "csrc")


def test_sources_are_found_from_the_package():
    root = runtime.source_root()
    assert root is not None and (root / runtime.KERNEL_FILE).is_file()


def _nvrtc_library():
    """libnvrtc from SSLKERN_TEST_NVRTC, the CUDA toolkit or the nvidia-cuda-nvrtc wheel."""
    import site

    candidates = [os.environ.get("SSLKERN_TEST_NVRTC", ""), ctypes.util.find_library("nvrtc") or ""]
    candidates += glob.glob("/usr/local/cuda/lib64/libnvrtc.so.*")
    for packages in site.getsitepackages():
        candidates += glob.glob(os.path.join(packages, "nvidia", "cu*", "lib", "libnvrtc.so.*"))
    for path in filter(None, candidates):
        try:
            # libnvrtc dlopens its builtins by name: load them first from beside it
            for builtins in glob.glob(os.path.join(os.path.dirname(path), "libnvrtc-builtins.so.*")):
                ctypes.CDLL(builtins, mode=ctypes.RTLD_GLOBAL)
            return ctypes.CDLL(path)
        except OSError:
            continue
    return None


@pytest.mark.parametrize("arch", ["compute_75", "compute_90"])
def test_nvrtc_compiles_every_kernel(arch):
    """The run-time path's compile, without cupy or a GPU (needs libnvrtc; skipped otherwise)."""
    lib = _nvrtc_library()
    if lib is None:
        pytest.skip("libnvrtc not found (set SSLKERN_TEST_NVRTC to its path)")
    program = ctypes.c_void_p()
    assert lib.nvrtcCreateProgram(ctypes.byref(program), runtime.kernel_source().encode(),
                                  b"kernels.cu", 0, None, None) == 0
    for name, _ in runtime.KERNELS:
        assert lib.nvrtcAddNameExpression(program, name.encode()) == 0
    options = [opt.encode() for opt in runtime.NvrtcKernels.OPTIONS + (f"--gpu-architecture={arch}",)]
    status = lib.nvrtcCompileProgram(program, len(options), (ctypes.c_char_p * len(options))(*options))
    size = ctypes.c_size_t()
    lib.nvrtcGetProgramLogSize(program, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value)
    lib.nvrtcGetProgramLog(program, log)
    assert status == 0, log.value.decode()
    lowered = ctypes.c_char_p()
    for name, _ in runtime.KERNELS:
        assert lib.nvrtcGetLoweredName(program, name.encode(), ctypes.byref(lowered)) == 0, name
    lib.nvrtcDestroyProgram(ctypes.byref(program))


# -- choosing a path and refusing cleanly --------------------------------------------------------

def test_path_setting_is_validated(monkeypatch):
    monkeypatch.setenv(runtime.ENV_VAR, "fast")
    with pytest.raises(ValueError, match=runtime.ENV_VAR):
        runtime.requested_path()
    with pytest.raises(ValueError, match="path"):
        runtime.open_kernels("fast")


@pytest.mark.skipif(runtime.importlib.util.find_spec("cupy") is not None, reason="cupy is installed")
def test_nvrtc_without_cupy_says_so():
    kernels, reasons = runtime.open_kernels("nvrtc")
    assert kernels is None and "cupy" in reasons[0]


@pytest.mark.skipif(HAS_GPU, reason="checks the refusal on a machine without CUDA")
def test_native_on_cuda_is_refused_with_reasons():
    with pytest.raises(backends.BackendError, match="native.*CUDA"):
        backends.resolve("native", torch.device("cuda"), torch.float32)
    assert "native" in backends.available_backends()  # the CPU part still runs
    assert not backends.reasons("native", torch.device("cpu"), torch.float32)


# -- the launch plan, recorded --------------------------------------------------------------------

_PACK = {"P": "Q", "q": "q", "Q": "Q", "I": "I", "i": "i", "f": "f", "d": "d"}


class RecordingKernels:
    path = "recording"

    def __init__(self):
        self.launches = []
        self.args = []

    def launch(self, index, grid, block, stream, device, args):
        name, signature = runtime.KERNELS[index]
        assert len(args) == len(signature), name
        for code, value in zip(signature, args):
            struct.pack("<" + _PACK[code], value)  # raises on a wrong type or range
        assert all(isinstance(d, int) and d >= 1 for d in grid + block), (name, grid, block)
        assert grid[1] <= 65535 and grid[2] <= 65535 and block[0] * block[1] * block[2] <= 1024
        self.launches.append(name.split("::")[-1])
        self.args.append(tuple(args))


@pytest.fixture
def recorded(monkeypatch):
    class Stream:
        cuda_stream = 0

    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: Stream())
    epilogues = NativeCudaEpilogues()
    epilogues.kernels = RecordingKernels()
    return epilogues


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("rows, cols", [(1, 1), (37, 131), (64, 128)])
def test_launch_plan(recorded, dtype, rows, cols):
    ep, rec = recorded, recorded.kernels
    z, x = torch.rand(rows, cols, dtype=dtype), torch.rand(rows, cols, dtype=dtype)
    b, r, s2col = torch.rand(cols, dtype=dtype), torch.rand(cols, dtype=dtype), torch.empty(cols, dtype=dtype)
    ep.philox(rows * cols, 7, 3, z.device, True)
    ep.corrupt(x, z, "mask", 0.25, 7, 0)
    ep.corrupt_grad(x, z, "salt_pepper", 0.25, 7, 0)
    total = ep.bias_act(z, b, "sigmoid", r, s2col)
    assert total.shape == () and total.dtype == dtype
    ep.bias_act(z, b, "relu")
    ep.loss_grad(z, x, b, "bce", "sigmoid", 1.0 / rows, torch.empty(cols, dtype=dtype))
    wide = torch.empty(2 * rows, cols, dtype=dtype)
    ep.act_grad(z, x, "tanh", z, r=r, coef=0.5, g=torch.tensor(2.0, dtype=dtype), h_copy=wide[:rows],
                db=torch.empty(cols, dtype=dtype))
    ep.act_grad(None, x, "tanh", z, r=r, coef=0.5)
    ep.row_sq_norms(x)
    ep.row_scale_add(z, x, r, torch.tensor(0.5, dtype=dtype))
    vec = {torch.float32: 4, torch.float64: 2}[dtype]
    kinds = {name.split("<")[0] for name in rec.launches}
    assert kinds == {"philox_fill_kernel", "corrupt_kernel", "bias_act_kernel", "reduce_partials_kernel",
                     "loss_grad_kernel", "act_grad_kernel", "row_sq_norms_kernel", "row_scale_add_kernel"}
    # row passes take the 16-byte packs exactly when every row starts aligned
    row_passes = [name for name in rec.launches if name.startswith(("bias_act", "loss_grad", "act_grad"))]
    assert {name.endswith(f", {vec}>") for name in row_passes} == {cols % vec == 0}
    assert rec.launches.count(rec.launches[-1]) == 1  # one row scaling


def test_nvrtc_path_drives_cupy(monkeypatch):
    """The cupy glue, against a stand-in cupy: one compile of the inlined source with every name
    expression, launches inside the device and stream contexts, arguments as typed numpy scalars."""
    import sys
    import types

    import numpy as np

    events = []

    class Context:
        def __init__(self, *args):
            self.args = args

        def __enter__(self):
            events.append((type(self).__name__, self.args))

        def __exit__(self, *exc):
            return False

    class Device(Context):
        pass

    class ExternalStream(Context):
        pass

    class RawModule:
        def __init__(self, code, options, name_expressions):
            assert "bias_act_kernel" in code and '#include "' not in code
            events.append(("compile", options, tuple(name_expressions)))

        def get_function(self, name):
            return lambda grid, block, values: events.append(("launch", name, grid, block, values))

    fake = types.SimpleNamespace(RawModule=RawModule,
                                 cuda=types.SimpleNamespace(Device=Device, ExternalStream=ExternalStream))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: types.SimpleNamespace(cuda_stream=77))
    ep = NativeCudaEpilogues()
    ep.kernels = runtime.NvrtcKernels()
    z = torch.rand(5, 8)
    ep.bias_act(z, None, "tanh", torch.ones(8), torch.empty(8))
    compiles = [e for e in events if e[0] == "compile"]
    assert len(compiles) == 1 and set(compiles[0][2]) == {name for name, _ in runtime.KERNELS}
    launches = [e for e in events if e[0] == "launch"]
    assert [e[1] for e in launches] == ["sslkern::cuda::bias_act_kernel<float, 4>",
                                        "sslkern::cuda::reduce_partials_kernel<float>"]
    assert ("ExternalStream", (77, None)) in events
    values = launches[0][4]
    assert [type(v) for v in values] == [np.uint64, np.int64, np.int64, np.int64, np.uint64, np.int32,
                                         np.uint64, np.uint64, np.uint64]
    assert values[0] == z.data_ptr() and values[1] == 8 and values[4] == 0


def test_launch_plan_skips_empty_work(recorded):
    z = torch.empty(0, 5)
    s2col = torch.full((5,), 3.0)
    assert float(recorded.bias_act(z, None, "sigmoid", torch.ones(5), s2col)) == 0.0
    assert torch.equal(s2col, torch.zeros(5))
    recorded.corrupt(z, z, "mask", 0.5, 0, 0)
    assert recorded.kernels.launches == []


def test_launch_plan_passes_the_registry_codes(recorded):
    """Codes come from sslkern/kinds.py: every kind's code reaches its kernel argument."""
    z, x = torch.rand(3, 8), torch.rand(3, 8)
    for row in ACTIVATIONS:
        recorded.bias_act(z, None, row.name)
        assert recorded.kernels.args[-1][5] == row.code
        recorded.act_grad(None, x, row.name, z)
        assert recorded.kernels.args[-1][6] == row.code
        recorded.loss_grad(z, x, None, "mse", row.name, 1.0)
        assert recorded.kernels.args[-2][7:9] == (LOSSES.code("mse"), row.code)
    for row in CORRUPTIONS:
        if row.needs_image_shape:
            continue  # structured masks never reach the kernels (sslkern/backends/structured.py)
        recorded.corrupt(x, z, row.name, 0.25, 1, 0)
        assert recorded.kernels.args[-1][3] == row.code


def test_launch_plan_refuses_unknown_kinds_before_launching(recorded):
    """An unknown name never becomes a code: on the device the switches trap, which would end
    the CUDA context; here the registry raises ValueError first."""
    z = torch.rand(4, 8)
    calls = [lambda: recorded.bias_act(z, None, "swish"),
             lambda: recorded.act_grad(None, z, "swish", z),
             lambda: recorded.loss_grad(z, z, None, "hinge", "sigmoid", 1.0),
             lambda: recorded.loss_grad(z, z, None, "mse", "swish", 1.0),
             lambda: recorded.corrupt(z, z, "dropout", 0.1, 0, 0),
             lambda: recorded.corrupt_grad(z, z, "dropout", 0.1, 0, 0)]
    for call in calls:
        with pytest.raises(ValueError, match="unknown"):
            call()
    assert recorded.kernels.launches == []


def test_counters_are_checked(recorded):
    with pytest.raises(ValueError, match="offset"):
        recorded.philox(4, 0, 2**32, torch.device("cpu"), False)


# -- the per-shape rule for auto ------------------------------------------------------------------

def test_cuda_auto_rule_is_data():
    assert cuda_auto.cuda_order(256, 784, 512) == cuda_auto.DEFAULT_ORDER  # nothing measured yet
    rules = (cuda_auto.Rule(1024, 1 << 20, "native", "example"),)
    assert cuda_auto.cuda_order(256, 784, 512, rules)[0] == "native"
    assert cuda_auto.cuda_order(4096, 784, 512, rules) == cuda_auto.DEFAULT_ORDER


# -- on a GPU: every path against the reference epilogues and the oracle ---------------------------

def _paths():
    found = []
    for path in runtime.PATHS:
        kernels, _ = runtime.open_kernels(path)
        if kernels is not None:
            found.append(path)
    return found


@gpu
@pytest.mark.parametrize("path", _paths())
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("act", ACTIVATIONS.names())
def test_epilogues_match_reference(path, dtype, act):
    ep, ref = NativeCudaEpilogues(path), TorchEpilogues()
    gen = torch.Generator(device="cuda").manual_seed(0)
    for rows, cols in [(1, 1), (37, 131), (256, 512), (33, 4097)]:
        def rand(*shape):
            return torch.randn(*shape, dtype=dtype, device="cuda", generator=gen)

        z, b, r = rand(rows, cols), rand(cols), rand(cols).abs()
        outs = []
        for e in (ep, ref):
            zz, s2 = z.clone(), torch.empty(cols, dtype=dtype, device="cuda")
            outs.append((e.bias_act(zz, b, act, r, s2), zz, s2))
        for what, got, want in zip(["penalty", "h", "s2"], outs[0], outs[1]):
            assert_close(got, want, dtype, policy=DEVICE_MATH, what=f"bias_act {act} {what}")
        h, dh, x = outs[1][1], rand(rows, cols), torch.rand(rows, cols, dtype=dtype, device="cuda")
        g = torch.tensor(1.7, dtype=dtype, device="cuda")
        outs = []
        for e in (ep, ref):
            out, copy, db = torch.empty_like(h), torch.empty_like(h), torch.empty(cols, dtype=dtype, device="cuda")
            e.act_grad(dh, h, act, out, r=r, coef=0.3, g=g, h_copy=copy, db=db)
            outs.append((out, copy, db))
        for what, got, want in zip(["dz", "h_copy", "db"], outs[0], outs[1]):
            assert_close(got, want, dtype, policy=DEVICE_MATH, what=f"act_grad {act} {what}")
        for loss in ("bce", "mse"):
            outs = []
            for e in (ep, ref):
                a, dc = dh.clone(), torch.empty(cols, dtype=dtype, device="cuda")
                outs.append((e.loss_grad(a, x, b, loss, act, 1 / rows, dc), a, dc))
            for what, got, want in zip(["total", "dA", "dc"], outs[0], outs[1]):
                assert_close(got, want, dtype, policy=DEVICE_MATH, what=f"loss_grad {loss} {act} {what}")
        assert_close(ep.row_sq_norms(dh), ref.row_sq_norms(dh), dtype, policy=DEVICE_MATH, what="row_sq_norms")
        outs, row_scale = [], rand(rows).abs()
        for e in (ep, ref):
            dw = x.clone()
            e.row_scale_add(dw, dh, row_scale, g * 0.5)
            outs.append(dw)
        assert_close(outs[0], outs[1], dtype, policy=DEVICE_MATH, what="row_scale_add")


@gpu
@pytest.mark.parametrize("path", _paths())
def test_random_stream_is_bit_exact(path):
    ep = NativeCudaEpilogues(path)
    u = ep.philox(4, 0, 0, torch.device("cuda"), False).cpu()
    assert u.tolist() == pytest.approx([0.798092902, 0.0555175915, 0.0388988405, 0.425264418], abs=1e-9)
    ref = TorchEpilogues()
    for n, offset in [(1, 0), (1031, 5), (4096, 2**32 - 100)]:
        got = ep.philox(n, 42, offset, torch.device("cuda"), False)
        assert torch.equal(got, ref.philox(n, 42, offset, torch.device("cuda"), False))
        got = ep.philox(n, 42, offset, torch.device("cuda"), True)
        assert_close(got, ref.philox(n, 42, offset, torch.device("cuda"), True), torch.float32, policy=NORMAL_DRAWS,
                     what="normal")
    x = torch.rand(37, 131, device="cuda")
    for kind in ("mask", "gaussian", "salt_pepper"):
        outs = []
        for e in (ep, ref):
            out = torch.empty_like(x)
            e.corrupt(x[1:], out[1:], kind, 0.3, 9, 11)  # unaligned views take the scalar path
            grad = torch.empty_like(x)
            e.corrupt_grad(x, grad, kind, 0.3, 9, 11)
            outs.append((out[1:], grad))
        assert_close(outs[0][0], outs[1][0], torch.float32, policy=NORMAL_DRAWS, what=kind)
        assert torch.equal(outs[0][1], outs[1][1])


@gpu
@pytest.mark.parametrize("path", _paths())
def test_results_are_deterministic_and_never_sync(path):
    ep = NativeCudaEpilogues(path)
    h = torch.rand(1000, 777, device="cuda")
    r = torch.rand(777, device="cuda")
    ep.bias_act(h.clone(), None, "sigmoid", r, torch.empty(777, device="cuda"))  # compile/load first
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        runs = []
        for _ in range(2):
            z, s2 = h.clone(), torch.empty(777, device="cuda")
            total = ep.bias_act(z, None, "sigmoid", r, s2)
            db = torch.empty(777, device="cuda")
            ep.act_grad(z, h, "sigmoid", z, r=r, coef=0.1, g=total, db=db)
            runs.append((total, s2, db))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    for a, b in zip(*runs):
        assert torch.equal(a, b)


@gpu
@pytest.mark.parametrize("corruption", ["none", "mask", "gaussian"])
def test_autoencoder_step_matches_the_oracle(corruption):
    from sslkern import reference as oracle

    torch.manual_seed(0)
    x = torch.rand(37, 61, dtype=torch.float64, device="cuda")
    W = (0.1 * torch.randn(29, 61, dtype=torch.float64, device="cuda")).requires_grad_()
    b = torch.zeros(29, dtype=torch.float64, device="cuda", requires_grad=True)
    c = torch.zeros(61, dtype=torch.float64, device="cuda", requires_grad=True)
    kwargs = dict(encoder="sigmoid", decoder="sigmoid", loss="bce", corruption=corruption, level=0.25,
                  contractive=0.1, seed=5, offset=0)
    with sslkern.use_backend("native"):
        loss = sslkern.autoencoder_loss(x, W, b, c, **kwargs)
        grads = torch.autograd.grad(loss, (W, b, c))
    want = oracle.autoencoder_loss(x, W, b, c, **kwargs)
    want_grads = torch.autograd.grad(want, (W, b, c))
    torch.testing.assert_close(loss, want, rtol=1e-9, atol=1e-10)
    for got, ref in zip(grads, want_grads):
        torch.testing.assert_close(got, ref, rtol=1e-8, atol=1e-10)
