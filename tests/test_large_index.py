"""Index arithmetic past 2^31 and 2^32 elements, without allocating 8 GB.

What is proven, and how:

1. The C++ kernels' row addressing (base + i * ld, in int64). Every matrix entry point of
   sslkern._native_cpu runs, through the native backend's own pointer/leading-dimension code
   (sslkern/backends/native.py), on 3-row views whose leading dimension is 2^31 + 5: row 1
   starts past element 2^31 (a signed 32-bit product would go negative and crash), row 2 past
   element 2^32 (an unsigned 32-bit product would wrap to element 10 and land in row 0's
   window). The views live in a 16/32 GB anonymous mapping made with MAP_NORESERVE: only the
   pages the kernels touch are ever backed, a few hundred kilobytes. Each window around the
   three rows is compared, element for element (sentinels included), with the reference
   epilogues run on a small copy; a wrapped write would show as a changed sentinel.
2. Philox counters wrap modulo 2^32 exactly as the oracle says, on every backend, from
   offsets near 2^32; a tensor's storage offset (views starting past element 2^32) never enters
   the counters; more than 2^32 elements (the counter space) is refused before any work, even
   for a zero-stride input whose contiguous copy would be huge.
3. Not proven on CPU machines: element-wise loops over more than 2^31 elements (corrupt,
   philox) would have to touch 8 GB; their loop index is int64 (csrc/cpu/kernels.cpp) and the
   GPU tests below run them for real on a CUDA device with enough memory (the Triton and CUDA
   kernels' flat offsets past 2^31).
"""
import mmap
import os

import pytest
import torch

from helpers import DEVICE, NORMAL_DRAWS, assert_close

import sslkern
from sslkern import reference as oracle

LD = 2**31 + 5  # rows 1 and 2 start past elements 2^31 and 2^32
ROWS, WINDOW, SPACING = 3, 256, 32  # matrix k of a call starts at column k * SPACING
MAP_NORESERVE = getattr(mmap, "MAP_NORESERVE", 0x4000)  # Linux value; Python < 3.13 lacks it
needs_linux = pytest.mark.skipif(not hasattr(mmap, "MAP_ANONYMOUS") or os.name != "posix",
                                 reason="needs anonymous MAP_NORESERVE mappings (Linux)")


def _huge(dtype, elements):
    """A tensor over an unbacked anonymous mapping (pages appear only when touched)."""
    size = elements * torch.empty((), dtype=dtype).element_size()
    try:
        buffer = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | MAP_NORESERVE,
                           prot=mmap.PROT_READ | mmap.PROT_WRITE)
    except OSError as exc:  # e.g. vm.overcommit_memory=2 or a small address-space ulimit
        pytest.skip(f"cannot map {size / 2**30:.0f} GiB of address space: {exc}")
    return buffer, torch.frombuffer(buffer, dtype=dtype)


@pytest.fixture(scope="module", params=[torch.float32, torch.float64], ids=["f32", "f64"])
def huge(request):
    buffer, tensor = _huge(request.param, 2 * LD + WINDOW)
    yield tensor
    del tensor
    try:
        buffer.close()
    except BufferError:  # torch may still hold an export; the mapping goes with the process
        pass


class Strided:
    """The same 3 x WINDOW layout twice: in the huge mapping with leading dimension LD, and
    as a small contiguous copy with leading dimension WINDOW."""

    def __init__(self, huge, seed):
        self.huge = huge
        g = torch.Generator().manual_seed(seed)
        self.small = torch.rand(ROWS, WINDOW, generator=g, dtype=torch.float64).to(huge.dtype)
        for i in range(ROWS):
            huge[i * LD:i * LD + WINDOW] = self.small[i]
        # Sentinels where an unsigned 32-bit row offset would wrap: (2 * LD) mod 2^32 = 10.
        assert (2 * LD) % 2**32 == 10

    def matrix(self, k, cols):
        """Matrix k: (huge view, small view), each ROWS x cols."""
        big = self.huge.as_strided((ROWS, cols), (LD, 1), k * SPACING)
        return big, self.small[:, k * SPACING:k * SPACING + cols]

    def assert_same(self):
        for i in range(ROWS):
            got = self.huge[i * LD:i * LD + WINDOW]
            torch.testing.assert_close(got, self.small[i], rtol=1e-5, atol=1e-6,
                                       msg=lambda m, i=i: f"row {i} window (starts at element {i * LD}): {m}")


def _epilogues():
    from sslkern.backends.native import NativeCpuEpilogues
    from sslkern.backends.reference import TorchEpilogues

    native = NativeCpuEpilogues()
    if native.availability():
        pytest.skip(f"native CPU module unavailable: {native.availability()}")
    return native, TorchEpilogues()


def _vec(n, dtype, seed):
    return torch.rand(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype)


COLS = 7


@needs_linux
def test_encoder_epilogue_rows_past_2_to_the_32(huge):
    native, torch_ep = _epilogues()
    layout = Strided(huge, 1)
    z_big, z_small = layout.matrix(0, COLS)
    b, r = _vec(COLS, huge.dtype, 2), _vec(COLS, huge.dtype, 3)
    s2_big, s2_small = torch.empty_like(b), torch.empty_like(b)
    penalty_big = native.bias_act(z_big, b, "softplus", r, s2_big)
    penalty_small = torch_ep.bias_act(z_small, b, "softplus", r, s2_small)
    layout.assert_same()
    torch.testing.assert_close(penalty_big, penalty_small, rtol=1e-5, atol=0)
    torch.testing.assert_close(s2_big, s2_small, rtol=1e-5, atol=0)


@needs_linux
def test_loss_epilogue_rows_past_2_to_the_32(huge):
    native, torch_ep = _epilogues()
    layout = Strided(huge, 4)
    (a_big, a_small), (x_big, x_small) = layout.matrix(0, COLS), layout.matrix(1, COLS)
    c = _vec(COLS, huge.dtype, 5)
    dc_big, dc_small = torch.empty_like(c), torch.empty_like(c)
    total_big = native.loss_grad(a_big, x_big, c, "bce", "sigmoid", 1 / 3, dc_big)
    total_small = torch_ep.loss_grad(a_small, x_small, c, "bce", "sigmoid", 1 / 3, dc_small)
    layout.assert_same()
    torch.testing.assert_close(total_big, total_small, rtol=1e-5, atol=0)
    torch.testing.assert_close(dc_big, dc_small, rtol=1e-5, atol=1e-7)


@needs_linux
def test_dz_epilogue_rows_past_2_to_the_32(huge):
    native, torch_ep = _epilogues()
    layout = Strided(huge, 6)
    views = [layout.matrix(k, COLS) for k in range(4)]  # dh, h, dz, h_copy
    (dh_big, dh_small), (h_big, h_small), (dz_big, dz_small), (hc_big, hc_small) = views
    r = _vec(COLS, huge.dtype, 7)
    db_big, db_small = torch.empty_like(r), torch.empty_like(r)
    native.act_grad(dh_big, h_big, "sigmoid", dz_big, r=r, coef=0.5, g=1.5, h_copy=hc_big, db=db_big)
    torch_ep.act_grad(dh_small, h_small, "sigmoid", dz_small, r=r, coef=0.5, g=1.5, h_copy=hc_small, db=db_small)
    layout.assert_same()
    torch.testing.assert_close(db_big, db_small, rtol=1e-5, atol=1e-7)


@needs_linux
def test_row_kernels_rows_past_2_to_the_32(huge):
    native, torch_ep = _epilogues()
    layout = Strided(huge, 8)
    (w_big, w_small), (dw_big, dw_small) = layout.matrix(0, COLS), layout.matrix(1, COLS)
    torch.testing.assert_close(native.row_sq_norms(w_big), torch_ep.row_sq_norms(w_small), rtol=1e-5, atol=0)
    scale = _vec(ROWS, huge.dtype, 9)
    native.row_scale_add(dw_big, w_big, scale, 0.25)
    torch_ep.row_scale_add(dw_small, w_small, scale, 0.25)
    layout.assert_same()


# ----------------------------------------------------------------------------------------
# Philox counters near 2^32 and storage offsets past 2^32


@pytest.fixture(params=sslkern.available_backends())
def backend(request):
    with sslkern.use_backend(request.param):
        yield request.param


@pytest.mark.parametrize("offset", [2**31 - 3, 2**32 - 17, 2**32 - 1])
def test_counters_wrap_modulo_2_to_the_32(backend, offset):
    n = 41
    device = DEVICE
    u = sslkern.philox_uniform(n, 123, offset, device=device).cpu()
    assert torch.equal(u, oracle.philox_uniform(n, 123, offset))
    # Counter 2^32 is counter 0: the wrapped tail equals a fresh stream's head.
    wrapped = 2**32 - offset
    if wrapped < n:
        assert torch.equal(u[wrapped:], oracle.philox_uniform(n - wrapped, 123, 0))
    x = torch.rand(n, dtype=torch.float32, device=device)
    for kind in ("mask", "salt_pepper"):
        assert torch.equal(sslkern.corrupt(x, kind, 0.5, seed=9, offset=offset).cpu(),
                           oracle.corrupt(x.cpu(), kind, 0.5, 9, offset))


@needs_linux
def test_storage_offset_past_2_to_the_32_is_not_a_counter():
    buffer, huge = _huge(torch.float32, 2**32 + 512)
    start = 2**32 + 64
    huge[start:start + 40] = torch.linspace(0.5, 1.5, 40)
    view = huge[start:start + 40].view(5, 8)
    assert view.storage_offset() == start
    for name in sslkern.available_backends():
        if name == "triton" and not torch.cuda.is_available():
            continue  # the Triton interpreter copies whole storages to the host
        with sslkern.use_backend(name):
            for kind in ("mask", "gaussian"):
                out = sslkern.corrupt(view, kind, 0.3, seed=5, offset=2**32 - 20)
                assert_close(out, oracle.corrupt(view.clone(), kind, 0.3, 5, 2**32 - 20), torch.float32,
                             policy=NORMAL_DRAWS, what=f"{name} {kind}")
    del view, huge


def test_more_elements_than_counters_is_refused_before_any_work():
    with pytest.raises(ValueError, match="2\\*\\*32"):
        sslkern.philox_uniform(2**32 + 1, 0)
    # A zero-stride view of 2^33 elements: refused before a contiguous copy is attempted.
    x = torch.zeros(1, 1).expand(2**22, 2**11)
    with pytest.raises(ValueError, match="2\\*\\*32"):
        sslkern.corrupt(x, "mask", 0.5)
    W, b, c = torch.zeros(2, 2**11), torch.zeros(2), torch.zeros(2**11)
    with pytest.raises(ValueError, match="2\\*\\*32"):
        sslkern.autoencoder_loss(x, W, b, c, corruption="mask", level=0.5)


# ----------------------------------------------------------------------------------------
# The real thing on a GPU: flat offsets past 2^31 in the CUDA and Triton kernels.

BIG = 2**31 + 1024 + 7


def _gpu_backends(min_free_gib):
    if not torch.cuda.is_available():
        return []
    free, _ = torch.cuda.mem_get_info()
    if free < min_free_gib * 2**30:
        return []
    return [n for n in sslkern.available_backends() if n != "reference"]


@pytest.mark.gpu
@pytest.mark.skipif(not _gpu_backends(24), reason="needs a CUDA device with 24 GiB free")
@pytest.mark.parametrize("name", _gpu_backends(24))
def test_gpu_corrupt_past_2_to_the_31_elements(name):
    x = torch.ones(BIG, dtype=torch.float32, device="cuda")
    offset = 2**32 - 2**30  # the counters wrap inside the tensor as well
    with sslkern.use_backend(name):
        out = sslkern.corrupt(x, "mask", 0.5, seed=3, offset=offset)
    for start in (0, 2**31 - 5, BIG - 64):
        got = out[start:start + 64].cpu()
        want = oracle.corrupt(torch.ones(64), "mask", 0.5, 3, (offset + start) % 2**32)
        assert torch.equal(got, want), f"{name}: wrong elements at {start}"


@pytest.mark.gpu
@pytest.mark.skipif(not _gpu_backends(24), reason="needs a CUDA device with 24 GiB free")
@pytest.mark.parametrize("name", _gpu_backends(24))
def test_gpu_encode_output_past_2_to_the_31_elements(name):
    hidden, visible = 1024, 4
    batch = BIG // hidden + 1  # batch * hidden > 2^31
    g = torch.Generator().manual_seed(0)
    W = torch.randn(hidden, visible, generator=g)
    b = torch.randn(hidden, generator=g)
    x = torch.rand(batch, visible, device="cuda")
    with sslkern.use_backend(name):
        h = sslkern.encode(x, W.cuda(), b.cuda(), "sigmoid")
    for rows in (slice(0, 3), slice(2**31 // hidden - 1, 2**31 // hidden + 2), slice(batch - 3, batch)):
        want = oracle.encode(x[rows].double().cpu(), W.double(), b.double(), "sigmoid")
        torch.testing.assert_close(h[rows].double().cpu(), want, rtol=1e-4, atol=1e-5)
