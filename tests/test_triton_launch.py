"""How the triton backend launches (sslkern/backends/triton.py), checked on the CPU with fakes
where the GPU behaviour cannot run here: the TF32 setting read through either torch API, tiles
filtered by shared memory with a fallback past OutOfResources, one fixed tile per shape unless
autotuning is asked for, every launch under its tensors' device and by keyword."""
import contextlib
import os
import types

import pytest
import torch

from sslkern import backends
from sslkern.backends.base import StepConfig

pytest.importorskip("triton")
from triton.runtime.errors import OutOfResources  # noqa: E402

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
if backends.reasons("triton", DEVICE, torch.float32):
    pytest.skip("triton cannot run here: " + "; ".join(backends.reasons("triton", DEVICE, torch.float32)),
                allow_module_level=True)

from sslkern.backends import triton as module  # noqa: E402
from sslkern.backends.triton import Tile  # noqa: E402

SM90 = 232448


# --- TF32 ---------------------------------------------------------------------------------

@contextlib.contextmanager
def matmul_precision(value):
    matmul = torch.backends.cuda.matmul
    previous = matmul.fp32_precision
    matmul.fp32_precision = value
    try:
        yield
    finally:
        matmul.fp32_precision = previous


@pytest.mark.skipif(not hasattr(torch.backends, "fp32_precision"), reason="torch without the fp32_precision API")
def test_tf32_set_through_the_new_api():
    """After matmul.fp32_precision = "tf32", torch refuses to read the legacy allow_tf32 (the
    old code did, and every triton op on CUDA raised); _precision reads it either way."""
    cuda_w = types.SimpleNamespace(dtype=torch.float32, device=torch.device("cuda"))  # _precision reads only these
    with matmul_precision("tf32"):
        with pytest.raises(RuntimeError, match="mix of the legacy and new APIs"):
            torch.backends.cuda.matmul.allow_tf32
        assert module._tf32_matmul() is True
        assert module._precision(cuda_w).precision == "tf32"
    with matmul_precision("ieee"):
        assert module._tf32_matmul() is False
        assert module._precision(cuda_w).precision == "ieee"
    assert module._precision(types.SimpleNamespace(dtype=torch.float32, device=torch.device("cpu"))).precision == "ieee"


def test_tf32_on_torch_without_the_new_api(monkeypatch):
    for allowed in (False, True):
        monkeypatch.setattr(torch.backends.cuda, "matmul", types.SimpleNamespace(allow_tf32=allowed))
        assert module._tf32_matmul() is allowed


# --- tiles: shared memory, fallback, determinism ---------------------------------------------

def test_shared_memory_estimate():
    """The estimate reproduces what the compiler allocated for input_grad_kernel with both
    products (294,912 B for bf16 128x256x64 / 3 stages, over sm_90's 232,448 B)."""
    assert module.smem_estimate(Tile(128, 256, 64, 8, 8, 3), 2, products=2) == 294912
    assert module.smem_estimate(Tile(128, 256, 64, 8, 8, 3), 2) == 147456
    assert module.smem_estimate(Tile(64, 64, 16, 8, 4, 2), 8) == 2 * (64 * 16 + 16 * 64) * 8


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32, torch.float64])
@pytest.mark.parametrize("batch", [1, 8, 16, 17, 64, 65, 256, 4096])
@pytest.mark.parametrize("products", [1, 2])
def test_candidates_fit_shared_memory(dtype, batch, products):
    size = torch.empty((), dtype=dtype).element_size()
    for M, N in ((batch, 784), (batch, 512), (512, 784)):
        options = module._candidates(dtype, M, N, products=products, smem_limit=SM90)
        assert options and all(module.smem_estimate(t, size, products) <= SM90 for t in options), (M, N)
        if M <= 16 and dtype != torch.float64:  # no 128-row tile for a 16-row output
            assert options[0].block_m == 16
    smaller = module._candidates(dtype, 256, 784, products=products, smem_limit=100_000)
    assert all(module.smem_estimate(t, size, products) <= 100_000 for t in smaller)


def test_no_spilling_tile_first():
    """bf16 128x256x64 / 8 warps spilled registers in decoder_loss_kernel and dz_kernel, and
    128x128x64 / 4 warps everywhere; input_grad_kernel's two accumulators need a smaller tile."""
    assert Tile(128, 256, 64, 8, 8, 3) not in module._HALF_TILES
    assert Tile(128, 128, 64, 8, 4, 4) not in module._HALF_TILES
    assert module._HALF_TILES[0] == Tile(128, 128, 64, 8, 8, 4)
    for dtype in (torch.bfloat16, torch.float32, torch.float64):
        acc = 8 if dtype == torch.float64 else 4
        for products in (1, 2):
            options = module._candidates(dtype, 256, 784, products=products, smem_limit=SM90)
            assert all(module.acc_registers(t, acc, products) <= 64 for t in options), (dtype, products)
    recon = module.acc_budget_of("input_grad_recon", torch.bfloat16)
    assert module._candidates(torch.bfloat16, 256, 784, products=2, acc_budget=recon,
                              smem_limit=SM90)[0] == Tile(64, 64, 64, 8, 8, 4)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32, torch.float64])
def test_each_launch_keeps_to_its_register_budget(dtype):
    """Heavy epilogues get a smaller accumulator budget (_ACC_BUDGETS; compile_check.py measured
    spills at 64 registers in decoder_loss, dz and the input gradient with its reconstruction
    term, and fp64's decoder_loss at 32): their first tile at an MNIST-sized step fits it."""
    acc = 8 if dtype == torch.float64 else 4
    for name in module._ACC_BUDGETS:
        products = 2 if name == "input_grad_recon" else 1
        budget = module.acc_budget_of(name, dtype)
        first = module._candidates(dtype, 256, 784, products=products, acc_budget=budget, smem_limit=SM90)[0]
        assert module.acc_registers(first, acc, products) <= budget, (name, first)


def test_register_budgets_pick_the_tiles_compile_check_measured():
    """The decoder's and dZ's first tiles take 32 accumulator registers (16 for fp64's decoder)
    where the old single budget of 64 let them spill; the encoder keeps the 128x128 tile."""
    def first(name, dtype, products=1):
        return module._candidates(dtype, 256, 784, products=products, acc_budget=module.acc_budget_of(name, dtype),
                                  smem_limit=SM90)[0]
    assert first("decoder_loss", torch.float32) == Tile(64, 128, 32, 8, 8, 4)
    assert first("dz", torch.bfloat16) == Tile(64, 128, 64, 8, 8, 4)
    assert first("input_grad_recon", torch.float32, products=2) == Tile(64, 64, 32, 8, 8, 4)
    assert first("decoder_loss", torch.float64) == Tile(32, 64, 16, 8, 8, 2)
    assert first("dz", torch.float64) == Tile(64, 64, 16, 8, 8, 2)
    assert first("encoder", torch.bfloat16) == Tile(128, 128, 64, 8, 8, 4)
    assert first("encoder", torch.float32) == Tile(128, 128, 32, 8, 8, 3)
    assert first("encoder_heavy", torch.float32) == Tile(64, 128, 32, 8, 8, 4)  # softplus, elu
    assert first("weight_grad", torch.float64) == Tile(64, 64, 16, 8, 4, 2)
    assert first("input_grad", torch.float32) == Tile(128, 128, 32, 8, 8, 3)  # no reconstruction term


@pytest.mark.parametrize("act", ["sigmoid", "tanh", "relu", "linear", "softplus", "elu"])
def test_encoders_with_a_polynomial_log_or_exp_take_the_smaller_budget(act, monkeypatch):
    """softplus and elu spilled at the encoder's 64 registers (compile_check --every-kind)."""
    names = []
    monkeypatch.setattr(module, "_product", lambda kernel, name, *args, **kwargs: names.append(name) or {
        "s2_part_ptr": None, "pen_part_ptr": None})
    x, W = torch.rand(4, 6), torch.rand(3, 6)
    module._encode(x, W, torch.zeros(3), torch.empty(4, 3), act, True, module._precision(W))
    assert names == ["encoder_heavy" if act in ("softplus", "elu") else "encoder"]


class FakeLaunch:
    """launch(tile) that records its tiles and raises OutOfResources for `too_big` ones."""
    def __init__(self, too_big=()):
        self.tiles, self.too_big = [], set(too_big)

    def __call__(self, tile):
        self.tiles.append(tile)
        if tile in self.too_big:
            raise OutOfResources(300000, SM90, "shared memory")
        return tile


def test_out_of_resources_falls_back_to_the_next_tile(monkeypatch):
    monkeypatch.setattr(module, "_chosen", {})
    a, b, c = Tile(128, 128, 64), Tile(64, 128, 64), Tile(64, 64, 64)
    launch = FakeLaunch(too_big={a})
    assert module._launch_first("key", [a, b, c], launch) == b
    assert launch.tiles == [a, b]
    assert module._launch_first("key", [a, b, c], launch) == b  # kept: a is not tried again
    assert launch.tiles == [a, b, b]
    with pytest.raises(OutOfResources):
        module._launch_first("other", [a], FakeLaunch(too_big={a}))


class FakeKernel:
    """kernel[grid](**arguments) that records its keyword arguments (positional ones refused)."""
    def __init__(self):
        self.calls = []

    def __getitem__(self, grid):
        def launch(*args, **arguments):
            assert not args, "triton launches pass every argument by keyword"
            self.calls.append(dict(arguments, grid=grid))
        return launch


@pytest.fixture
def fake_cuda(monkeypatch):
    """_product on a pretend CUDA device: sm_90's shared memory, no capture, no device switch."""
    monkeypatch.setattr(module, "_chosen", {})
    monkeypatch.setattr(module, "_smem_limit", lambda device: SM90)
    monkeypatch.setattr(module, "_device_guard", lambda device: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: False)
    return torch.device("cuda", 0)


def product(device, M, N, K, dtype=torch.bfloat16, products=1, seed=0, name="encoder"):
    kernel = FakeKernel()
    prec = module._Precision(None, None, "ieee", False, torch.float32, dtype, dtype)
    module._product(kernel, name, device, prec, M, N, dict(M=M, N=N, K=K, seed=seed, FLAG=True),
                    products=products)
    call = kernel.calls[-1]  # the launch that counts (timing launches come first)
    return Tile(call["BLOCK_M"], call["BLOCK_N"], call["BLOCK_K"], call["GROUP_M"], call["num_warps"],
                call["num_stages"])


def test_fp32_parameters_with_bf16_operands_take_the_fp32_tiles():
    """precision="bf16" with fp32 parameters loads fp32 tiles and casts them after the load, so
    shared memory and registers are those of fp32 loads: the fp32 table applies. The bf16
    table's first tile (128x128x64, 4 stages) would need 262,144 B of fp32 stages, over sm_90's
    232,448 B, where a bf16 estimate says 131,072 B."""
    staged = module._candidates(torch.bfloat16, 256, 784, smem_limit=SM90, staged=torch.float32)
    assert staged == module._candidates(torch.float32, 256, 784, smem_limit=SM90)
    assert all(module.smem_estimate(t, 4) <= SM90 for t in staged)
    assert module.smem_estimate(module._HALF_TILES[0], 4) > SM90
    assert module._candidates(torch.bfloat16, 256, 784, smem_limit=SM90, staged=torch.bfloat16) == \
        module._candidates(torch.bfloat16, 256, 784, smem_limit=SM90)
    prec = module._precision(torch.empty(3, 4), "bf16")
    assert prec.operands == torch.bfloat16 and prec.staged == torch.float32


def test_one_tile_per_shape_without_autotuning(fake_cuda, monkeypatch):
    """BLOCK_M sets the summation order of dc, db, the penalty statistics and the loss: two
    calls at one shape must use one tile, and nothing is timed unless autotuning is asked for."""
    monkeypatch.setattr(module, "AUTOTUNE", False)
    import triton.testing
    monkeypatch.setattr(triton.testing, "do_bench", lambda *a, **k: pytest.fail("timed without opt-in"))
    first = product(fake_cuda, 256, 784, 512, seed=1)
    assert product(fake_cuda, 256, 784, 512, seed=2) == first  # the random stream is not in the key
    assert first == module._candidates(torch.bfloat16, 256, 784, smem_limit=SM90)[0]
    tile = product(fake_cuda, 256, 784, 512, products=2)
    assert module.smem_estimate(tile, 2, products=2) <= SM90


def test_launches_use_their_register_budget(fake_cuda):
    """_product looks up the launch's budget: at one shape the decoder gets a tile with half the
    encoder's accumulator registers per thread, fp64's decoder a quarter."""
    assert product(fake_cuda, 256, 784, 512, name="encoder") == Tile(128, 128, 64, 8, 8, 4)
    assert product(fake_cuda, 256, 784, 512, name="decoder_loss") == Tile(64, 128, 64, 8, 8, 4)
    wide = product(fake_cuda, 256, 784, 512, dtype=torch.float64, name="decoder_loss")
    assert module.acc_registers(wide, 8) == 16


def test_autotuning_is_opt_in(fake_cuda, monkeypatch):
    """Off unless SSLKERN_TRITON_AUTOTUNE=1; then the first call times every candidate, keeps
    the fastest, and later calls at that shape use it without timing again."""
    assert module.AUTOTUNE == (os.environ.get("SSLKERN_TRITON_AUTOTUNE") == "1")
    monkeypatch.setattr(module, "AUTOTUNE", True)
    options = module._candidates(torch.bfloat16, 256, 784, smem_limit=SM90)
    assert len(options) > 1
    import triton.testing
    timed = []

    def do_bench(fn, **kwargs):  # the candidates are timed in order; the last one is fastest
        fn()
        timed.append(fn)
        return 1.0 if len(timed) == len(options) else 2.0

    monkeypatch.setattr(triton.testing, "do_bench", do_bench)
    assert product(fake_cuda, 256, 784, 512) == options[-1]
    assert len(timed) == len(options)
    assert product(fake_cuda, 256, 784, 512) == options[-1]
    assert len(timed) == len(options)


# --- device guard and keyword launches -------------------------------------------------------

def test_device_guard_uses_the_tensors_index(monkeypatch):
    entered = []

    class Guard:
        def __init__(self, index):
            self.index = index

        def __enter__(self):
            entered.append(self.index)

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(torch.cuda, "_DeviceGuard", Guard, raising=False)
    with module._device_guard(torch.device("cuda", 3)):
        pass
    assert entered == [3]
    assert isinstance(module._device_guard(torch.device("cpu")), contextlib.nullcontext)


def test_every_launch_is_guarded_and_by_keyword(monkeypatch):
    """Every kernel launch of every op runs inside _device_guard(the tensors' device), with no
    positional argument."""
    from sslkern.kernels.triton.encoder import encoder_kernel

    active, launches = [], []

    @contextlib.contextmanager
    def guard(device):
        active.append(device)
        try:
            yield
        finally:
            active.pop()

    run = type(encoder_kernel).run

    def checked_run(self, *args, **kwargs):
        assert not args, f"{self.__name__}: positional arguments"
        assert active and active[-1] == DEVICE_USED, f"{self.__name__} launched outside the device guard"
        launches.append(self.__name__)
        return run(self, *args, **kwargs)

    monkeypatch.setattr(module, "_device_guard", guard)
    monkeypatch.setattr(type(encoder_kernel), "run", checked_run)
    impl = backends.get("triton")
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(5, 7, generator=gen).to(DEVICE_USED)
    W, b, c = (torch.randn(*s, generator=gen).to(DEVICE_USED) for s in ((3, 7), (3,), (7,)))
    grad = torch.tensor(1.0, device=DEVICE_USED)
    impl.philox(10, 1, 2, DEVICE_USED, True)
    impl.corrupt_grad(impl.corrupt(x, "mask", 0.3, 1, 2), "mask", 0.3, 1, 2)
    y = impl.linear_act(x, W, b, "tanh", True)
    impl.linear_act_backward(y, y, x, W, "tanh", True)
    _, h, r, s2col = impl.contractive(x, W, b, "sigmoid")
    impl.contractive_backward(grad, x, W, h, r, s2col, "sigmoid")
    for mode in ("load", "prepass"):
        monkeypatch.setattr(module, "XT_MODE", mode)
        cfg = StepConfig(corruption="mask", level=0.3, contractive=0.2, seed=1, offset=2)
        impl.ae_backward(grad, x, W, c, impl.ae_forward(x, W, b, c, cfg), cfg, True)
    assert {"philox_kernel", "corrupt_kernel", "encoder_kernel", "decoder_loss_kernel", "dz_kernel",
            "act_grad_kernel", "weight_grad_kernel", "input_grad_kernel", "finalize_kernel"} <= set(launches)


DEVICE_USED = DEVICE if DEVICE.type == "cpu" else torch.device("cuda", torch.cuda.current_device())


def test_weight_gradient_second_operand_is_passed_by_address():
    """K1 · stride_bk in the kernel was int32 and overflowed once B·D >= 2^31; the launcher
    now passes the address of B's second half (b[K1:]) instead."""
    import inspect

    from sslkern.kernels.triton import backward
    source = inspect.getsource(backward.weight_grad_kernel.fn)
    assert "K1 * stride_bk" not in source and "b2_ptr" in source
