"""The triton backend's reductions (sslkern/kernels/triton/reduce.py) against float64 sums:
finalize_kernel's column sums and scalar totals at awkward row and column counts, and
row_sq_norms_kernel at awkward shapes and strides; both bit for bit across runs. Each runs
with the interpreter's small tiles and with the tiles CUDA launches (REDUCE_TILES), so the
device configuration is checked here too, on CPU tensors under TRITON_INTERPRET=1."""
import inspect

import pytest
import torch

from sslkern import backends
from sslkern.backends.base import StepConfig

pytest.importorskip("triton")

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
if backends.reasons("triton", DEVICE, torch.float32):
    pytest.skip("triton cannot run here: " + "; ".join(backends.reasons("triton", DEVICE, torch.float32)),
                allow_module_level=True)

from sslkern.backends import triton as module  # noqa: E402

EPS = {torch.float32: 2.0**-24, torch.float64: 2.0**-53}
# Most inputs are quarters k/4, |k| <= 100: every sum below (and every sum of squares, in
# sixteenths) is then exact in fp32, so the kernels must give the float64 sum exactly and any
# missing or repeated term fails; a worst-case rounding bound would hide one among thousands.


@pytest.fixture(params=["interpreter", "cuda"])
def tiles(request, monkeypatch):
    """Run with this device's reduction tiles, or force the ones CUDA launches."""
    if request.param == "cuda":
        monkeypatch.setattr(module, "_reduce_tile", lambda name, device: module.REDUCE_TILES[name])
    return request.param


def prec_of(dtype):
    return module._precision(torch.empty(1, dtype=dtype, device=DEVICE))


def random(shape, dtype, seed):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype).to(DEVICE)


def quarters(shape, dtype, seed):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randint(-100, 101, shape, generator=gen) / 4).to(dtype).to(DEVICE)


def assert_exact(actual, expected, what):
    assert actual.shape == expected.shape, what
    err = (actual.double() - expected).abs().max().item() if expected.numel() else 0.0
    assert torch.equal(actual.double(), expected), f"{what}: max error {err}"


def assert_sum_close(actual, terms, dim, dtype, what):
    """|actual - Σ terms| within the bound of a dtype sum of the terms in any order: one
    rounding per addition, each at most count · eps · Σ|terms| (terms exact in dtype)."""
    expected = terms.double().sum(dim)
    count = max(terms.shape[dim], 1)
    bound = count * EPS[dtype] * terms.double().abs().sum(dim) + 1e-300
    err = (actual.double() - expected).abs()
    assert actual.dtype == dtype and actual.shape == expected.shape, what
    assert bool((err <= bound).all()), f"{what}: max error {err.max().item():.3e} (bound {bound.max().item():.3e})"


def finalize(parts, dtype, grad=None, extra=None, loss=None):
    """_finalize over `parts` (and `extra`, a second sum) into fresh outputs."""
    buffers = [p for p in (parts, extra) if p is not None]
    outs = [torch.full((p.shape[1],), float("nan"), dtype=dtype, device=DEVICE) for p in buffers]
    sums = list(zip(buffers, outs))
    module._finalize(DEVICE, prec_of(dtype), sums=sums, grad=grad, loss=loss)
    return outs


# --- finalize_kernel -----------------------------------------------------------------------

@pytest.mark.parametrize("rows", [1, 3, 17, 130])
@pytest.mark.parametrize("cols", [1, 7, 1000, 1025, 2049])
def test_column_sums_match_float64(rows, cols, tiles):
    parts = quarters((rows, cols), torch.float32, rows * 10000 + cols)
    (out,) = finalize(parts, torch.float32)
    assert_exact(out, parts.double().sum(0), f"{rows}x{cols}")
    (again,) = finalize(parts, torch.float32)
    assert torch.equal(out, again), "not bit-identical across runs"


@pytest.mark.parametrize("rows, cols", [(3, 2049), (17, 1025), (130, 7)])
def test_column_sums_round_like_fp32(rows, cols, tiles):
    """Normal partials: within fp32 rounding of the float64 sum, and the same bits twice."""
    parts = random((rows, cols), torch.float32, rows + cols)
    (out,) = finalize(parts, torch.float32)
    assert_sum_close(out, parts, 0, torch.float32, f"{rows}x{cols}")
    assert torch.equal(out, finalize(parts, torch.float32)[0])


@pytest.mark.parametrize("rows, cols", [(1, 1), (17, 1025), (130, 7)])
def test_column_sums_float64_and_two_buffers_with_grad(rows, cols, tiles):
    """float64 partials; both buffers of one launch (different shapes), scaled by the incoming
    gradient read on the device."""
    dtype = torch.float64
    first, second = random((rows, cols), dtype, 1), random((3, 2 * cols + 1), dtype, 2)
    grad = torch.tensor(0.5, dtype=dtype, device=DEVICE)  # a power of two: exact scaling
    out1, out2 = finalize(first, dtype, grad=grad, extra=second)
    assert_sum_close(out1 * 2, first, 0, dtype, "first")
    assert_sum_close(out2 * 2, second, 0, dtype, "second")
    again = finalize(first, dtype, grad=grad, extra=second)
    assert torch.equal(out1, again[0]) and torch.equal(out2, again[1])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n_loss, n_pen", [(1, 1), (130, 17), (5000, 2049)])
def test_loss_total(dtype, n_loss, n_pen, tiles):
    """The last program's total: loss_scale · Σ loss parts + pen_scale · Σ penalty parts, also
    in the launch that sums columns."""
    loss_parts, pen_parts = quarters((n_loss,), dtype, 3), quarters((n_pen,), dtype, 4)
    parts = quarters((5, 33), dtype, 5)
    runs = []
    for _ in range(2):
        out = torch.full((), float("nan"), dtype=dtype, device=DEVICE)
        (col,) = finalize(parts, dtype, loss=(loss_parts, 0.25, pen_parts, 0.5, out))
        runs.append((out, col))
    assert_exact(runs[0][1], parts.double().sum(0), "columns")
    assert_exact(runs[0][0], loss_parts.double().sum() * 0.25 + pen_parts.double().sum() * 0.5, "loss")
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])


# --- row_sq_norms_kernel -------------------------------------------------------------------

SHAPES = [(1, 1), (3, 7), (17, 1000), (130, 33), (5, 1025)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_row_sq_norms_match_float64(shape, dtype, tiles):
    W = quarters(shape, dtype, shape[0] * 7 + shape[1])
    r, r_acc = module._row_sq_norms(W, prec_of(dtype))
    assert r is r_acc, "one tensor when W's dtype is the accumulator's"
    assert_exact(r, (W.double() ** 2).sum(1), f"{shape}")
    W = random(shape, dtype, shape[0] * 7 + shape[1])
    r, _ = module._row_sq_norms(W, prec_of(dtype))
    assert_sum_close(r, W.double() ** 2, 1, dtype, f"{shape}")  # squares in dtype: one more rounding
    assert torch.equal(r, module._row_sq_norms(W, prec_of(dtype))[0]), "not bit-identical across runs"


@pytest.mark.parametrize("view", ["transposed", "strided_rows", "strided_cols"])
def test_row_sq_norms_of_a_view(view, tiles):
    base = quarters((40, 66), torch.float32, 9)
    W = {"transposed": base.t(), "strided_rows": base[::3], "strided_cols": base[:, 1::2]}[view]
    assert not W.is_contiguous()
    r, _ = module._row_sq_norms(W, prec_of(torch.float32))
    assert_exact(r, (W.double() ** 2).sum(1), view)
    assert torch.equal(r, module._row_sq_norms(W.contiguous(), prec_of(torch.float32))[0])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_row_sq_norms_half_weights(dtype):
    """Half weights: r_acc in fp32 (unrounded, for the encoder), r rounded to W's dtype (to
    within one ulp: the interpreter's fp32 -> bf16 store truncates, a GPU rounds to nearest)."""
    W = random((19, 45), dtype, 11)
    r, r_acc = module._row_sq_norms(W, prec_of(dtype))
    assert r.dtype == dtype and r_acc.dtype == torch.float32
    assert_sum_close(r_acc, W.double() ** 2, 1, torch.float32, "r_acc")
    ulp = torch.finfo(dtype).eps
    assert bool(((r.double() - r_acc.double()).abs() <= ulp * r_acc.double().abs()).all())


def test_empty_weights():
    for shape in ((0, 5), (4, 0)):
        r, _ = module._row_sq_norms(torch.empty(shape, device=DEVICE), prec_of(torch.float32))
        assert r.shape == (shape[0],) and bool((r == 0).all())


# --- where r comes from in the backend -------------------------------------------------------

def test_backend_r_is_the_row_norms():
    """The contractive op and the objective (contractive, or the higher-order term alone)
    return r = ||W_j||² in W's dtype, from row_sq_norms_kernel."""
    impl = backends.get("triton")
    x, W, b, c = (random(s, torch.float32, i) for i, s in enumerate(((6, 21), (9, 21), (9,), (21,))))
    expected = (W.double() ** 2).sum(1)
    _, _, r, _ = impl.contractive(x, W, b, "sigmoid")
    assert_sum_close(r, W.double() ** 2, 1, torch.float32, "contractive op")
    for cfg in (StepConfig(corruption="mask", level=0.2, contractive=0.3, seed=1, offset=2),
                StepConfig(corruption="mask", level=0.2, higher_order=0.2, seed=1, offset=2)):
        saved = impl.ae_forward(x, W, b, c, cfg)
        assert saved.r.dtype == W.dtype and torch.allclose(saved.r.double(), expected, rtol=1e-6)
    assert impl.ae_forward(x, W, b, c, StepConfig(contractive=0.0)).r.numel() == 0


def test_encoder_hot_loop_has_no_reduction():
    """r is no longer accumulated inside the encoder's K loop (a cross-thread reduction per
    iteration); the epilogue only loads it."""
    from sslkern.kernels.triton import encoder
    source = inspect.getsource(encoder.encoder_kernel.fn)
    loop = source.split("for k0 in range")[1].split("\n    bias = ")[0]
    assert "tl.sum" not in loop and "r_ptr + rn" in source
