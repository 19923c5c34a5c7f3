"""The triton backend's kernels against the float64 oracle (sslkern.reference): values and
gradients at awkward sizes (1, primes, not multiples of any block), plus what only this
backend has: in-load vs pre-pass corruption, (seed, offset) from a device tensor, half
precision, determinism. On machines without CUDA every kernel runs on CPU tensors under
TRITON_INTERPRET=1 (tests/conftest.py sets it), with 16-wide tiles so that the shapes
below span several blocks in every dimension."""
import pytest
import torch

import sslkern
from sslkern import backends
from sslkern import reference as oracle
from sslkern.backends.base import StepConfig
from sslkern.kinds import ACTIVATIONS

pytest.importorskip("triton")

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
if not backends.get("triton").availability() and backends.reasons("triton", DEVICE, torch.float32):
    pytest.skip("triton cannot run here: " + "; ".join(backends.reasons("triton", DEVICE, torch.float32)),
                allow_module_level=True)

# (B, D, H): one unit, and primes that cross 16-wide tile edges in every dimension.
SHAPES = [(1, 1, 1), (37, 29, 23)]
# Relative max-norm error against the float64 oracle.
TOLERANCES = {torch.float64: 1e-12, torch.float32: 2e-6, torch.bfloat16: 3e-2, torch.float16: 5e-3}
NOISE_TOLERANCE = 5e-6  # gaussian noise agrees with the oracle's to 1e-5 only (libm differs)
OBJECTIVES = [("sigmoid", "sigmoid", "bce"), ("tanh", "sigmoid", "mse"), ("softplus", "tanh", "mse"),
              ("relu", "linear", "mse"), ("linear", "softplus", "mse"), ("elu", "elu", "mse")]
LEVELS = {"none": 0.0, "mask": 0.3, "gaussian": 0.2, "salt_pepper": 0.3}


@pytest.fixture(autouse=True)
def triton_backend():
    with sslkern.use_backend("triton"):
        yield


def make_inputs(batch, visible, hidden, seed=0):
    gen = torch.Generator().manual_seed(seed + 1000 * batch + visible)
    x = torch.rand(batch, visible, generator=gen, dtype=torch.float64)
    W = torch.randn(hidden, visible, generator=gen, dtype=torch.float64) * (1.5 / max(visible, 1) ** 0.5)
    b = torch.randn(hidden, generator=gen, dtype=torch.float64) * 0.3
    c = torch.randn(visible, generator=gen, dtype=torch.float64) * 0.3
    return [t.to(DEVICE) for t in (x, W, b, c)]


def assert_close(actual, expected, tolerance, what):
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    if expected.numel() == 0:
        return
    err = (actual.double() - expected.double()).abs().max().item()
    scale = max(expected.double().abs().max().item(), 1.0)
    assert err <= tolerance * scale, f"{what}: max error {err:.3e} > {tolerance * scale:.3e}"


def compare(fn, oracle_fn, inputs, dtype, names, tolerance=None):
    """Values and the gradients of <out, g> for a fixed random g, against the oracle."""
    tolerance = tolerance or TOLERANCES[dtype]
    ours = [t.detach().to(dtype).requires_grad_(True) for t in inputs]
    ref = [t.detach().double().requires_grad_(True) for t in inputs]
    out, expected = fn(*ours), oracle_fn(*ref)
    g = torch.randn(expected.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64).to(DEVICE)
    assert out.dtype == dtype
    assert_close(out, expected, tolerance, "value")
    grads = torch.autograd.grad(out, ours, g.to(dtype), allow_unused=True)
    expected_grads = torch.autograd.grad(expected, ref, g, allow_unused=True)
    for name, leaf, actual, wanted in zip(names, ref, grads, expected_grads):
        assert_close(actual, torch.zeros_like(leaf) if wanted is None else wanted, tolerance, f"d{name}")


# --- the random stream ----------------------------------------------------------------------

@pytest.mark.parametrize("seed, offset", [(0, 0), (42, 2**32 - 77), (2**64 - 1, 12345)])
def test_philox_bit_exact_with_wraparound(seed, offset):
    n = 1000
    assert torch.equal(sslkern.philox_uniform(n, seed, offset, DEVICE).cpu(), oracle.philox_uniform(n, seed, offset))
    normal = sslkern.philox_normal(n, seed, offset, DEVICE).cpu()
    assert (normal - oracle.philox_normal(n, seed, offset)).abs().max() < 1e-5


@pytest.mark.parametrize("kind", ["none", "mask", "gaussian", "salt_pepper"])
def test_corrupt_values_and_gradient(kind):
    x = make_inputs(37, 29, 1)[0].float()
    seed, offset = 2**63 + 5, 2**32 - 300  # counters wrap around inside the tensor
    out = sslkern.corrupt(x, kind, LEVELS[kind], seed, offset)
    expected = oracle.corrupt(x, kind, LEVELS[kind], seed, offset)
    if kind == "gaussian":
        assert (out - expected).abs().max() < 1e-5
    else:
        assert torch.equal(out, expected), "masks must be bit-identical to the oracle's"
    compare(lambda v: sslkern.corrupt(v, kind, LEVELS[kind], seed, offset),
            lambda v: oracle.corrupt(v, kind, LEVELS[kind], seed, offset), [x], torch.float64, ["x"],
            tolerance=NOISE_TOLERANCE if kind == "gaussian" else None)


def test_rng_from_device_tensor_matches_arguments():
    """(seed, offset) read on the device give the same stream as passed as arguments."""
    impl = backends.get("triton")
    seed, offset = 2**64 - 3, 2**32 - 5
    rng = torch.tensor([seed - 2**64, offset], dtype=torch.int64, device=DEVICE)  # int64 bits of the seed
    for normal in (False, True):
        assert torch.equal(impl.philox(300, rng, 0, DEVICE, normal), impl.philox(300, seed, offset, DEVICE, normal))
    x = make_inputs(5, 7, 1)[0]
    assert torch.equal(impl.corrupt(x, "salt_pepper", 0.4, rng, 0), impl.corrupt(x, "salt_pepper", 0.4, seed, offset))
    x, W, b, c = make_inputs(9, 11, 5)
    by_args = StepConfig(corruption="mask", level=0.3, contractive=0.2, seed=seed, offset=offset)
    by_tensor = StepConfig(corruption="mask", level=0.3, contractive=0.2, seed=rng, offset=0)
    for mode in ("load", "prepass"):
        with xt_mode(mode):
            a, d = impl.ae_forward(x, W, b, c, by_args), impl.ae_forward(x, W, b, c, by_tensor)
            assert torch.equal(a.loss, d.loss) and torch.equal(a.ax, d.ax)
            grad = torch.tensor(1.5, dtype=W.dtype, device=DEVICE)
            for u, v in zip(impl.ae_backward(grad, x, W, c, a, by_args, True),
                            impl.ae_backward(grad, x, W, c, d, by_tensor, True)):
                assert torch.equal(u, v)


# --- single layers ----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("activation", ACTIVATIONS.names())
def test_encode_decode_penalty(activation, dtype):
    for shape in SHAPES:
        x, W, b, c = make_inputs(*shape)
        compare(lambda *t: sslkern.encode(*t, activation=activation),
                lambda *t: oracle.encode(*t, activation), [x, W, b], dtype, ["x", "W", "b"])
        compare(lambda *t: sslkern.decode(*t, activation=activation),
                lambda *t: oracle.decode(*t, activation), [x[:, :W.shape[0]], W, c], dtype, ["h", "W", "c"])
        if activation != "linear":  # the linear penalty does not depend on x: no oracle gradient
            compare(lambda *t: 1.7 * sslkern.contractive_penalty(*t, activation=activation),
                    lambda *t: 1.7 * oracle.contractive_penalty(*t, activation), [x, W, b], dtype,
                    ["x", "W", "b"])


# --- the objective ----------------------------------------------------------------------------

class xt_mode:
    """Force where the encoder's x~ comes from (in-load regeneration or pre-pass)."""
    def __init__(self, mode):
        self.mode = mode

    def __enter__(self):
        from sslkern.backends import triton as module
        self.module, self.previous, module.XT_MODE = module, module.XT_MODE, self.mode

    def __exit__(self, *exc):
        self.module.XT_MODE = self.previous


def objective(corruption, contractive, objective_=OBJECTIVES[0], seed=11, offset=2**32 - 500):
    encoder, decoder, loss = objective_
    return dict(encoder=encoder, decoder=decoder, loss=loss, corruption=corruption,
                level=LEVELS[corruption], contractive=contractive, seed=seed, offset=offset)


# Every objective and every corruption kind, each kind made both in the encoder's loads and
# by the pre-pass (not the full product: the interpreter is slow).
CASES = [(OBJECTIVES[i % len(OBJECTIVES)], kind, mode) for i, (kind, mode) in enumerate(
    [(k, m) for m in ("load", "prepass") for k in ("none", "mask", "gaussian", "salt_pepper")])]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("objective_, corruption, mode", CASES, ids=lambda v: "-".join(v) if isinstance(v, tuple) else v)
def test_autoencoder_loss(objective_, corruption, mode, dtype):
    config = objective(corruption, 0.4, objective_)
    tolerance = max(TOLERANCES[dtype], NOISE_TOLERANCE) if corruption == "gaussian" else None
    with xt_mode(mode):
        compare(lambda *t: sslkern.autoencoder_loss(*t, **config),
                lambda *t: oracle.autoencoder_loss(*t, **config),
                make_inputs(*SHAPES[1]), dtype, ["x", "W", "b", "c"], tolerance)


def test_autoencoder_loss_without_penalty_and_single_unit():
    for shape, contractive in ((SHAPES[0], 0.4), (SHAPES[1], 0.0)):
        config = objective("mask", contractive)
        compare(lambda *t: sslkern.autoencoder_loss(*t, **config),
                lambda *t: oracle.autoencoder_loss(*t, **config), make_inputs(*shape), torch.float32,
                ["x", "W", "b", "c"])


def test_in_load_and_prepass_corruption_agree():
    x, W, b, c = make_inputs(*SHAPES[1])
    impl = backends.get("triton")
    cfg = StepConfig(corruption="salt_pepper", level=0.3, contractive=0.3, seed=5, offset=2**32 - 100)
    with xt_mode("load"):
        loaded = impl.ae_forward(x.float(), W.float(), b.float(), c.float(), cfg)
    with xt_mode("prepass"):
        prepassed = impl.ae_forward(x.float(), W.float(), b.float(), c.float(), cfg)
    assert torch.equal(loaded.ax[37:], prepassed.ax[37:]), "x~ must not depend on where it is made"
    for name, u, v in zip(loaded._fields, loaded, prepassed):
        assert torch.equal(u, v), name


def test_deterministic():
    x, W, b, c = (t.float() for t in make_inputs(*SHAPES[1]))
    leaves = [t.requires_grad_(True) for t in (x, W, b, c)]
    config = objective("mask", 0.5)
    runs = []
    for _ in range(2):
        loss = sslkern.autoencoder_loss(*leaves, **config)
        runs.append([loss.detach()] + list(torch.autograd.grad(loss, leaves)))
    for u, v in zip(*runs):
        assert torch.equal(u, v)


def test_empty_batch():
    x, W, b, c = make_inputs(0, 29, 23)
    leaves = [t.float().requires_grad_(True) for t in (x, W, b, c)]
    loss = sslkern.autoencoder_loss(*leaves, **objective("mask", 0.5))
    assert loss.item() == 0.0
    for t, g in zip(leaves, torch.autograd.grad(loss, leaves)):
        assert g.shape == t.shape and (g == 0).all()
    assert sslkern.contractive_penalty(*leaves[:3]).item() == 0.0
    assert sslkern.encode(*leaves[:3]).shape == (0, 23)


def test_x_in_another_dtype():
    x, W, b, c = make_inputs(5, 7, 3)
    xs = x.float().requires_grad_(True)
    params = [t.requires_grad_(True) for t in (W, b, c)]
    loss = sslkern.autoencoder_loss(xs, *params, corruption="mask", level=0.2, contractive=0.1)
    (dx,) = torch.autograd.grad(loss, xs)
    assert loss.dtype == torch.float64 and dx.dtype == torch.float32
    x64 = xs.detach().double().requires_grad_(True)
    expected = oracle.autoencoder_loss(x64, W, b, c, corruption="mask", level=0.2, contractive=0.1)
    assert_close(loss.detach(), expected.detach(), 1e-12, "loss")
    assert_close(dx, torch.autograd.grad(expected, x64)[0], 1e-6, "dx")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_parameters(dtype):
    """bf16/fp16 operands, fp32 accumulation and partial sums: loose, but catches gross errors."""
    config = objective("mask", 0.3)
    compare(lambda *t: sslkern.autoencoder_loss(*t, **config),
            lambda *t: oracle.autoencoder_loss(*t, **config), make_inputs(*SHAPES[1]), dtype,
            ["x", "W", "b", "c"])


@pytest.mark.parametrize("precision", ["default", "bf16"])
def test_half_input_with_fp32_parameters(precision):
    """bf16 x with fp32 parameters: fp32 math by default (the ops' contract); precision="bf16"
    gives bf16 product operands and fp32 accumulation. Loss and parameter gradients are fp32
    either way, dx bf16."""
    x, W, b, c = make_inputs(*SHAPES[1])
    xs = x.to(torch.bfloat16).requires_grad_(True)
    params = [t.float().requires_grad_(True) for t in (W, b, c)]
    loss = sslkern.autoencoder_loss(xs, *params, **objective("mask", 0.3), precision=precision)
    grads = torch.autograd.grad(loss, [xs, *params])
    assert loss.dtype == torch.float32 and grads[0].dtype == torch.bfloat16
    assert all(g.dtype == torch.float32 for g in grads[1:])
    ref = [xs.detach().double().requires_grad_(True)] + [t.detach().double().requires_grad_(True) for t in (W, b, c)]
    expected = oracle.autoencoder_loss(*ref, **objective("mask", 0.3))
    tolerance = TOLERANCES[torch.bfloat16 if precision == "bf16" else torch.float32]
    assert_close(loss.detach(), expected.detach(), tolerance, "loss")
    for name, g, e in zip("Wbc", grads[1:], torch.autograd.grad(expected, ref)[1:]):
        assert_close(g, e, tolerance, f"d{name}")


def test_gradcheck_float64():
    x, W, b, c = make_inputs(2, 3, 2)
    config = objective("salt_pepper", 0.3, OBJECTIVES[1])
    leaves = [t.requires_grad_(True) for t in (x, W, b, c)]
    assert torch.autograd.gradcheck(lambda *t: sslkern.autoencoder_loss(*t, **config), leaves,
                                    eps=1e-6, atol=1e-7, rtol=1e-5)


def test_refuses_cpu_without_interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    reasons = backends.get("triton").unsupported(torch.device("cpu"), torch.float32)
    assert reasons and "TRITON_INTERPRET" in reasons[0]
    assert backends.get("triton").unsupported(torch.device("cuda"), torch.int32)
