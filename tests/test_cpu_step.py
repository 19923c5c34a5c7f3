"""The native CPU objective's three routes to the same numbers (sslkern/backends/native.py):

  fused, precomputed   one C++ call computes the loss and the gradients for an incoming 1
                       (eager calls where x needs no gradient; the backward only scales)
  fused, two calls     ae_forward then ae_backward in C++ (the registered op: compile, opcheck)
  passes               torch.mm between C++ passes (SSLKERN_CPU_STEP=passes, or no BLAS found)

Each is checked against the float64 oracle, values and gradients, at awkward sizes; then the
autograd contract of precomputed gradients (scaled, retained, accumulated, no_grad), and the
instruction-set copies of the row kernels against each other.
"""
import pytest
import torch
from helpers import (DTYPES, LEVELS, ONE_ROUNDING, REORDERED, SAME_MATH, SHAPES, TWO_ROUTES, assert_close,
                     leaves, make_inputs, objective_cases, objective_config, objective_policy)

import sslkern
from sslkern import _native
from sslkern import reference as oracle
from sslkern.backends import blas

pytestmark = pytest.mark.skipif(_native.load("cpu") is None, reason="the native CPU module is not built")


@pytest.fixture(params=["fused", "passes"])
def step_mode(request, monkeypatch):
    if request.param == "fused" and blas.gemm_addresses()[0] is None:
        pytest.skip(blas.gemm_addresses()[1])
    monkeypatch.setenv("SSLKERN_CPU_STEP", request.param)
    with sslkern.use_backend("native"):
        yield request.param


@pytest.mark.parametrize("objective, corruption, contractive", objective_cases())
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("out_grad", [1.0, -0.37])
def test_parameter_gradients_match_oracle(step_mode, objective, corruption, contractive, dtype,
                                          shape, out_grad):
    """x needs no gradient: the precomputed route when fused; out_grad 1 returns the
    precomputed tensors as they are, anything else scales them."""
    config = objective_config(objective, corruption, contractive)
    x, *params = make_inputs(*shape, dtype)
    params = leaves(params)
    loss = sslkern.autoencoder_loss(x, *params, **config)
    grads = torch.autograd.grad(loss, params, torch.tensor(out_grad, dtype=dtype))
    ref_params = leaves(params, torch.float64)
    ref = oracle.autoencoder_loss(x.double(), *ref_params, **config)
    ref_grads = torch.autograd.grad(ref, ref_params, torch.tensor(out_grad, dtype=torch.float64))
    policy = objective_policy(corruption)
    assert_close(loss, ref, dtype, policy=policy, what="loss")
    for name, got, want in zip("Wbc", grads, ref_grads):
        assert_close(got, want, dtype, policy=policy, what=f"d/d{name}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_registered_op_two_call_route_matches_eager(step_mode, dtype):
    """The registered op (what torch.compile and opcheck see) runs ae_forward and ae_backward
    as two calls; the eager fast path precomputes. Same numbers."""
    x, *params = make_inputs(37, 129, 65, dtype)
    config = objective_config(("sigmoid", "sigmoid", "bce"), "mask", 0.3)
    eager_params = leaves(params)
    eager = torch.autograd.grad(sslkern.autoencoder_loss(x, *eager_params, **config), eager_params)
    op_params = leaves(params)
    args = (x, *op_params, "sigmoid", "sigmoid", "bce", "mask", LEVELS["mask"], 0.3, 2**40 + 3, 29,
            "native", None)
    op_loss = torch.ops.sslkern.autoencoder_loss(*args)[0]
    op = torch.autograd.grad(op_loss, op_params)
    for got, want in zip(op, eager):
        assert_close(got, want, dtype, policy=TWO_ROUTES, what="two-call gradient")


def test_precomputed_gradients_keep_autograd_semantics(step_mode):
    x, *params = make_inputs(9, 11, 6, torch.float64)
    config = objective_config(("tanh", "sigmoid", "mse"), "salt_pepper", 0.4)
    W, b, c = leaves(params)
    once = torch.autograd.grad(sslkern.autoencoder_loss(x, W, b, c, **config), [W, b, c])

    loss = sslkern.autoencoder_loss(x, W, b, c, **config)
    loss.backward(retain_graph=True)  # .grad may take the precomputed tensor...
    loss.backward()                   # ...and a retained second backward must still add once more
    for p, g in zip((W, b, c), once):
        assert_close(p.grad, 2 * g, torch.float64, policy=SAME_MATH, what="retained second backward")

    (3.0 * sslkern.autoencoder_loss(x, W, b, c, **config)).backward()  # accumulates 3 g
    for p, g in zip((W, b, c), once):
        assert_close(p.grad, 5 * g, torch.float64, policy=SAME_MATH, what="accumulated 3 g")

    only_b = torch.autograd.grad(sslkern.autoencoder_loss(x, W.detach(), b, c.detach(), **config), [b])
    assert_close(only_b[0], once[1], torch.float64, policy=SAME_MATH, what="d/db alone")

    with torch.no_grad():
        value = sslkern.autoencoder_loss(x, W, b, c, **config)
    assert value.grad_fn is None
    torch.testing.assert_close(value, loss.detach(), rtol=0, atol=0)


def test_input_gradient_with_precomputed_parameters_is_unchanged(step_mode):
    """x requiring grad takes the two-direction route (dx redraws the mask): same W gradient."""
    x, *params = make_inputs(6, 10, 4, torch.float64)
    config = objective_config(("sigmoid", "sigmoid", "bce"), "mask", 0.2)
    W = leaves(params[:1])[0]
    without_x = torch.autograd.grad(sslkern.autoencoder_loss(x, W, *params[1:], **config), [W])[0]
    x_leaf = x.clone().requires_grad_()
    dx, dW = torch.autograd.grad(sslkern.autoencoder_loss(x_leaf, W, *params[1:], **config), [x_leaf, W])
    assert_close(dW, without_x, torch.float64, policy=SAME_MATH, what="d/dW beside dx")
    assert dx.abs().sum() > 0


def test_empty_batch_takes_the_pass_route(step_mode):
    x = torch.zeros(0, 5)
    W, b, c = leaves([torch.randn(3, 5), torch.zeros(3), torch.zeros(5)])
    loss = sslkern.autoencoder_loss(x, W, b, c, corruption="mask", level=0.5, contractive=0.1)
    grads = torch.autograd.grad(loss, [W, b, c])
    assert loss.item() == 0.0 and all(not g.any() for g in grads)


def test_bad_step_mode_is_named(monkeypatch):
    monkeypatch.setenv("SSLKERN_CPU_STEP", "fastest")
    x, *params = make_inputs(2, 3, 2, torch.float32)
    with sslkern.use_backend("native"), pytest.raises(ValueError, match="SSLKERN_CPU_STEP"):
        sslkern.autoencoder_loss(x, *params)


def test_info_names_the_step_route():
    route = sslkern.info()["native_cpu_step"]
    addresses, where = blas.gemm_addresses()
    assert (route.startswith("fused") and where in route) if addresses else route.startswith("passes")
    if addresses:  # and how precision="bf16" multiplies
        assert ("BLAS bf16 gemm" in route) == (blas.bf16_gemm_address() is not None)


# --- instruction-set copies of the row kernels ---------------------------------------------


def _isas():
    module = _native.load("cpu")
    order = ["baseline", "avx2", "avx512"]
    return order[: order.index(module.isa()) + 1]


@pytest.fixture
def isa_restored():
    module = _native.load("cpu")
    best = module.isa()
    yield module
    module.set_isa(best)


@pytest.mark.parametrize("kind", ["mask", "salt_pepper", "gaussian"])
def test_isa_copies_draw_identical_noise(isa_restored, kind):
    """The vector Philox (AVX2, AVX-512) is bit-identical to the scalar one, tails included."""
    x = torch.rand(5, 1000 + 13, dtype=torch.float64)
    outputs = {}
    for isa in _isas():
        isa_restored.set_isa(isa)
        with sslkern.use_backend("native"):
            outputs[isa] = sslkern.corrupt(x, kind, 0.4, seed=2**64 - 3, offset=2**32 - 700)
    for isa, out in outputs.items():
        assert torch.equal(out, outputs["baseline"]), f"{isa} differs from the baseline copy"


@pytest.mark.parametrize("dtype", DTYPES)
def test_isa_copies_agree_on_the_objective(isa_restored, dtype):
    x, *params = make_inputs(37, 129, 65, dtype)
    config = objective_config(("sigmoid", "sigmoid", "bce"), "mask", 0.5)
    results = {}
    for isa in _isas():
        isa_restored.set_isa(isa)
        p = leaves(params)
        with sslkern.use_backend("native"):
            loss = sslkern.autoencoder_loss(x, *p, **config)
        results[isa] = (loss.detach(), *torch.autograd.grad(loss, p))
    for isa, values in results.items():
        for got, want in zip(values, results["baseline"]):
            assert_close(got, want, dtype, policy=REORDERED, what=f"{isa} against baseline")


# --- elu in the native kernels, against its float64 formula ----------------------------------
# (The oracle tests of test_ops cover elu too; these pin the C++ math itself: the vectorised
# float expm1, the derivatives from h, NaN, and every instruction-set copy.)


def _elu64(z):
    return torch.where(z > 0, z, torch.expm1(z))


def _elu_inputs(dtype, batch=23, visible=37, hidden=19):
    """Pre-activations from about -8 to 4, many near 0 where e^z - 1 cancels."""
    gen = torch.Generator().manual_seed(7)
    x = torch.rand(batch, visible, generator=gen, dtype=torch.float64)
    W = torch.randn(hidden, visible, generator=gen, dtype=torch.float64) * (2.0 / visible ** 0.5)
    b = torch.linspace(-3.0, 1.0, hidden, dtype=torch.float64)
    b[::5] = 1e-3 * torch.randn(len(b[::5]), generator=gen, dtype=torch.float64) - (x @ W.T)[0, ::5]
    return [t.to(dtype) for t in (x, W, b)]


@pytest.mark.parametrize("dtype", DTYPES)
def test_elu_forward_and_gradients_match_the_formula(isa_restored, dtype):
    x, W, b = _elu_inputs(dtype)
    for isa in _isas():
        isa_restored.set_isa(isa)
        W_, b_ = leaves([W, b])
        W64, b64 = leaves([W, b], torch.float64)
        with sslkern.use_backend("native"):
            h = sslkern.encode(x, W_, b_, activation="elu")
            penalty = sslkern.contractive_penalty(x, W_, b_, activation="elu")
        z64 = x.double() @ W64.T + b64
        h64 = _elu64(z64)
        assert_close(h, h64, dtype, what=f"{isa} elu forward")
        weights = torch.linspace(-1.0, 1.0, h.numel(), dtype=torch.float64).reshape(h.shape)
        got = torch.autograd.grad((h * weights.to(dtype)).sum(), [W_, b_])  # f'(z) = h + 1 for z <= 0
        want = torch.autograd.grad((h64 * weights).sum(), [W64, b64], retain_graph=True)
        for name, g, w in zip("Wb", got, want):
            assert_close(g, w, dtype, what=f"{isa} elu d/d{name}")
        s64 = torch.where(z64 > 0, torch.ones_like(z64), torch.exp(z64))
        penalty64 = (s64.pow(2) * W64.pow(2).sum(1)).sum() / x.shape[0]
        assert_close(penalty, penalty64, dtype, what=f"{isa} elu penalty")
        got = torch.autograd.grad(penalty, [W_, b_])  # f''(z) = h + 1 for z <= 0
        want = torch.autograd.grad(penalty64, [W64, b64])
        for name, g, w in zip("Wb", got, want):
            assert_close(g, w, dtype, what=f"{isa} elu penalty d/d{name}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_elu_objective_matches_the_formula(step_mode, dtype):
    """elu encoder and elu mse decoder with the penalty, through each route of the step."""
    x, W, b = _elu_inputs(dtype)
    c = torch.linspace(-0.5, 0.5, x.shape[1], dtype=dtype)
    params = leaves([W, b, c])
    loss = sslkern.autoencoder_loss(x, *params, encoder="elu", decoder="elu", loss="mse",
                                    contractive=0.3)
    grads = torch.autograd.grad(loss, params)
    W64, b64, c64 = leaves([W, b, c], torch.float64)
    x64 = x.double()
    z64 = x64 @ W64.T + b64
    h64 = _elu64(z64)
    s64 = torch.where(z64 > 0, torch.ones_like(z64), torch.exp(z64))
    want = (0.5 * (_elu64(h64 @ W64 + c64) - x64).pow(2).sum()
            + 0.3 * (s64.pow(2) * W64.pow(2).sum(1)).sum()) / x.shape[0]
    want_grads = torch.autograd.grad(want, [W64, b64, c64])
    assert_close(loss, want, dtype, what="loss")
    for name, g, w in zip("Wbc", grads, want_grads):
        assert_close(g, w, dtype, what=f"d/d{name}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_elu_propagates_nan_and_saturates(isa_restored, dtype):
    """One pre-activation per row (D = H = 1), so a NaN stays in its row."""
    z = torch.tensor([float("nan"), float("-inf"), -1e30, -100.0, -87.5, -0.5, -1e-30, -0.0, 0.0,
                      1e-30, 3.0, float("inf")] * 3, dtype=dtype).reshape(-1, 1)
    for isa in _isas():
        isa_restored.set_isa(isa)
        with sslkern.use_backend("native"):
            h = sslkern.encode(z, torch.ones(1, 1, dtype=dtype), torch.zeros(1, dtype=dtype),
                               activation="elu")
        want = _elu64(z.double()).to(dtype)
        assert torch.equal(torch.isnan(h), torch.isnan(want)), isa
        finite = ~torch.isnan(want)
        assert_close(h[finite], want[finite], dtype, policy=ONE_ROUNDING, what=f"{isa} elu")
