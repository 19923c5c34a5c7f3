"""Numerical edge cases on every available backend, against the float64 oracle: logits far
beyond ±100, saturated activations, half-precision inputs, NaN and Inf inputs, repeated runs
with one seed, corruption levels 0 and 1."""
import pytest
import torch
from helpers import (DEVICE, ENTRYWISE, HALF_INPUT_WEIGHTS, HALF_INPUTS, HALF_PARAMS, NORMAL_DRAWS, RELATIVE,
                     RELATIVE_GRADIENTS, SATURATED_PENALTY, UNDERFLOW, assert_close, leaf_pairs)

import sslkern
from sslkern import backends
from sslkern import reference as oracle
from sslkern.kinds import ACTIVATIONS, CORRUPTIONS, ELEMENTWISE_CORRUPTIONS

ACTS = ACTIVATIONS.names()
KINDS = tuple(k for k in ELEMENTWISE_CORRUPTIONS if k != "none")
HALF = (torch.float16, torch.bfloat16)


def _supported(name, dtype):
    return not backends.reasons(name, DEVICE, dtype)


def _cases(dtypes=(torch.float32, torch.float64)):
    return [pytest.param(n, d, id=f"{n}-{str(d)[6:]}") for n in sslkern.available_backends()
            for d in dtypes if _supported(n, d)]


@pytest.fixture(params=sslkern.available_backends())
def backend(request):
    with sslkern.use_backend(request.param):
        yield request.param


def _loss_and_grads(fn, leaves, **kwargs):
    loss = fn(*leaves, **kwargs)
    return loss, torch.autograd.grad(loss, leaves)


# ----------------------------------------------------------------------------------------
# Logits beyond ±100


def _extreme_logit_problem():
    """x binary and fractional; c puts the decoder logits a = hW + c at ±(100 .. 1e4)."""
    g = torch.Generator().manual_seed(3)
    x = torch.rand(5, 7, generator=g, dtype=torch.float64)
    x[0] = 0.0
    x[1] = 1.0
    W = torch.randn(3, 7, generator=g, dtype=torch.float64) * 0.1
    b = torch.zeros(3, dtype=torch.float64)
    c = torch.tensor([100.5, -100.5, 250.0, -800.0, 3e3, -1e4, 1e4], dtype=torch.float64)
    return x, W, b, c


@pytest.mark.parametrize("name,dtype", _cases())
def test_bce_is_finite_and_exact_for_logits_beyond_100(name, dtype):
    x, W, b, c = _extreme_logit_problem()
    (xt, Wt, bt, ct), exact = leaf_pairs(x, W, b, c, dtype=dtype)
    with sslkern.use_backend(name):
        loss, grads = _loss_and_grads(sslkern.autoencoder_loss, [xt, Wt, bt, ct], contractive=0.3)
    loss64, grads64 = _loss_and_grads(oracle.autoencoder_loss, exact, contractive=0.3)
    assert torch.isfinite(loss), f"bce loss {loss} at logits up to 1e4"
    assert_close(loss, loss64, dtype, policy=RELATIVE, what="bce loss")
    for what, got, want in zip("x W b c".split(), grads, grads64):
        assert torch.isfinite(got).all(), f"d loss/d{what} not finite at logits up to 1e4"
        assert_close(got, want, dtype, policy=RELATIVE_GRADIENTS, what=f"d loss/d{what}")


@pytest.mark.parametrize("name,dtype", _cases())
@pytest.mark.parametrize("act", ACTS)
def test_saturated_activations_stay_finite(name, dtype, act):
    """Encoder pre-activations at ±1e4 and ±200: saturating f, f' and f'' must not overflow."""
    x = torch.tensor([[1.0, 1.0], [1.0, -1.0], [0.0, 1.0]], dtype=torch.float64)
    W = torch.tensor([[5e3, 5e3], [-5e3, -5e3], [100.0, -100.0]], dtype=torch.float64)
    b = torch.tensor([0.0, 0.0, 0.0], dtype=torch.float64)
    c = torch.zeros(2, dtype=torch.float64)
    (xt, Wt, bt, ct), (x64, W64, b64, c64) = leaf_pairs(x, W, b, c, dtype=dtype)
    with sslkern.use_backend(name):
        h = sslkern.encode(xt, Wt, bt, act)
        penalty = sslkern.contractive_penalty(xt, Wt, bt, act)
        grads = torch.autograd.grad(h.sum() + penalty, [xt, Wt, bt])
        loss = sslkern.autoencoder_loss(xt, Wt, bt, ct, encoder=act, decoder="sigmoid", contractive=1.0)
        loss_grads = torch.autograd.grad(loss, [xt, Wt, bt, ct])
    assert_close(h, oracle.encode(x64, W64, b64, act), dtype, policy=UNDERFLOW, what=f"encode {act}")
    assert_close(penalty, oracle.contractive_penalty(x64, W64, b64, act), dtype, policy=SATURATED_PENALTY,
                 what=f"penalty {act}")
    for value in (penalty, loss, *grads, *loss_grads):
        assert torch.isfinite(value).all(), f"{act}: non-finite result at saturation"


@pytest.mark.parametrize("name,dtype", _cases())
def test_softplus_tails_keep_their_relative_precision(name, dtype):
    """softplus(z) ~ e^z and its f' = sigmoid(z) for z far below 0, and the bce term
    softplus(a) - x a at x = 0, must come out as small numbers, not 0 or a rounded 1 - 1
    (log1p and expm1, or their Goldberg/Kahan forms in Triton)."""
    z = torch.tensor([-3.0, -20.0, -80.0, -200.0], dtype=torch.float64)
    if dtype == torch.float32:
        z = z[:3]  # e^-200 is below float32's range
    x, W, b = torch.ones(1, 1, dtype=torch.float64), z[:, None], torch.zeros(z.shape[0], dtype=torch.float64)
    (xt, Wt, bt), (x64, W64, b64) = leaf_pairs(x, W, b, dtype=dtype)
    with sslkern.use_backend(name):
        h = sslkern.encode(xt, Wt, bt, "softplus")
        slope = torch.autograd.grad(h.sum(), bt)[0]
        penalty = sslkern.contractive_penalty(xt, Wt, bt, "softplus")
        blank = torch.zeros(1, 1, dtype=dtype, device=DEVICE)  # x = 0, W = 0: the logit is c
        bce = [sslkern.autoencoder_value_and_grad(blank, blank, blank[0], c.to(dtype).reshape(1))
               for c in z.to(DEVICE)]
    assert_close(h, oracle.encode(x64, W64, b64, "softplus"), dtype, policy=RELATIVE, what="softplus")
    assert_close(slope, torch.sigmoid(z), dtype, policy=RELATIVE, what="softplus'")
    assert_close(penalty, oracle.contractive_penalty(x64, W64, b64, "softplus"), dtype, policy=RELATIVE,
                 what="softplus penalty")
    assert_close(torch.stack([loss for loss, _ in bce]), torch.nn.functional.softplus(z), dtype,
                 policy=RELATIVE, what="bce at x = 0")
    assert_close(torch.cat([grads[2] for _, grads in bce]), torch.sigmoid(z), dtype, policy=RELATIVE,
                 what="d bce/dc at x = 0")


# ----------------------------------------------------------------------------------------
# Half precision


@pytest.mark.parametrize("x_dtype", HALF, ids=["fp16", "bf16"])
def test_half_precision_inputs_with_float32_parameters(backend, x_dtype):
    x, W, b, c = _extreme_logit_problem()
    c = c / 100  # moderate logits: the point here is the input dtype
    xt = x.to(DEVICE, x_dtype).requires_grad_()
    (Wt, bt, ct), _ = leaf_pairs(W, b, c, dtype=torch.float32)
    loss = sslkern.autoencoder_loss(xt, Wt, bt, ct, corruption="mask", level=0.3, seed=4, contractive=0.1)
    dx, dW = torch.autograd.grad(loss, [xt, Wt])
    assert dx.dtype == x_dtype and dW.dtype == torch.float32
    # The oracle sees exactly the half-precision values, computed in float64.
    x64 = xt.detach().double().cpu().requires_grad_()
    W64 = W.clone().float().double().requires_grad_()
    loss64 = oracle.autoencoder_loss(x64, W64, b.float().double(), c.float().double(),
                                     corruption="mask", level=0.3, seed=4, contractive=0.1)
    dx64, dW64 = torch.autograd.grad(loss64, [x64, W64])
    assert_close(loss, loss64, torch.float32, policy=HALF_INPUTS, what="loss")
    assert_close(dW, dW64, torch.float32, policy=HALF_INPUT_WEIGHTS, what="dW")
    assert_close(dx, dx64, x_dtype, policy=HALF_INPUTS, what="dx")  # dx is rounded to the input's dtype


@pytest.mark.parametrize("dtype", HALF, ids=["fp16", "bf16"])
def test_half_precision_parameters_run_or_refuse_with_reasons(backend, dtype):
    x, W, b, c = (t.to(DEVICE, dtype) for t in _extreme_logit_problem())
    c = c / 1000
    if not _supported(backend, dtype):
        with pytest.raises(sslkern.BackendError, match=str(dtype).replace("torch.", "")):
            sslkern.autoencoder_loss(x, W, b, c)
        return
    Wt = W.clone().requires_grad_()
    loss = sslkern.autoencoder_loss(x, Wt, b, c, corruption="gaussian", level=0.1, seed=2)
    (dW,) = torch.autograd.grad(loss, [Wt])
    assert loss.dtype == dtype and dW.dtype == dtype
    loss64 = oracle.autoencoder_loss(x.double().cpu(), W.double().cpu(), b.double().cpu(),
                                     c.double().cpu(), corruption="gaussian", level=0.1, seed=2)
    assert_close(loss, loss64, dtype, policy=HALF_PARAMS, what="loss")
    assert torch.isfinite(dW).all()
    y = sslkern.corrupt(x, "salt_pepper", 0.5, seed=8)
    assert y.dtype == dtype
    assert torch.equal(y.cpu(), oracle.corrupt(x.cpu(), "salt_pepper", 0.5, 8))


# ----------------------------------------------------------------------------------------
# NaN and Inf


@pytest.mark.parametrize("act", ACTS)
def test_nan_input_propagates_to_its_row_only(backend, act):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 5, generator=g, dtype=torch.float64)
    W = torch.randn(3, 5, generator=g, dtype=torch.float64)
    b = torch.randn(3, generator=g, dtype=torch.float64)
    x[2, 1] = float("nan")
    dtype = torch.float64 if _supported(backend, torch.float64) else torch.float32
    (xt, Wt, bt), _ = leaf_pairs(x, W, b, dtype=dtype)
    h = sslkern.encode(xt, Wt, bt, act)
    assert torch.isnan(h[2]).all(), f"{act}: a NaN input must make its row NaN, got {h[2]}"
    assert_close(h, oracle.encode(x, W, b, act), dtype, policy=RELATIVE, what=f"encode {act}", equal_nan=True)
    y = sslkern.decode(h, Wt, bt.new_zeros(5), act)
    assert torch.isnan(y[2]).all() and torch.isfinite(y[[0, 1, 3]]).all()


@pytest.mark.parametrize("where", ["x", "W", "c"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")], ids=["nan", "inf"])
def test_non_finite_inputs_reach_the_loss(backend, where, bad):
    x, W, b, c = _extreme_logit_problem()
    c = c / 1000
    {"x": x, "W": W, "c": c}[where].view(-1)[3] = bad
    dtype = torch.float64 if _supported(backend, torch.float64) else torch.float32
    (xt, Wt, bt, ct), exact = leaf_pairs(x, W, b, c, dtype=dtype)
    kwargs = dict(corruption="gaussian", level=0.2, contractive=0.5, seed=1)
    loss, grads = _loss_and_grads(sslkern.autoencoder_loss, [xt, Wt, bt, ct], **kwargs)
    loss64 = oracle.autoencoder_loss(*exact, **kwargs)
    assert not torch.isfinite(loss64), "the oracle must see the bad value (test setup)"
    assert not torch.isfinite(loss), f"a {bad} in {where} vanished: loss {loss.item()}"
    assert any(not torch.isfinite(g).all() for g in grads), f"a {bad} in {where} vanished from the gradients"


@pytest.mark.parametrize("kind", KINDS)
def test_corrupt_carries_nan_and_inf_like_the_oracle(backend, kind):
    dtype = torch.float64 if _supported(backend, torch.float64) else torch.float32
    x = torch.tensor([float("nan"), float("inf"), -float("inf"), 1.0] * 8, dtype=dtype)
    out = sslkern.corrupt(x.to(DEVICE), kind, 0.5, seed=11)
    assert_close(out, oracle.corrupt(x, kind, 0.5, 11), dtype, policy=NORMAL_DRAWS, what=kind, equal_nan=True)


# ----------------------------------------------------------------------------------------
# Reproducibility and the corruption levels 0 and 1


def test_same_seed_gives_identical_results(backend):
    x, W, b, c = _extreme_logit_problem()
    c = c / 1000
    dtype = torch.float32

    def run(seed):
        leaves, _ = leaf_pairs(x, W, b, c, dtype=dtype)
        loss, grads = _loss_and_grads(sslkern.autoencoder_loss, leaves, corruption="salt_pepper",
                                      level=0.5, contractive=0.2, seed=seed, offset=3)
        return [loss, *grads]

    first, again, other = run(77), run(77), run(78)
    for a, b_ in zip(first, again):
        assert torch.equal(a, b_), "same seed, different result"
    assert not torch.equal(first[0], other[0]), "the seed does not reach the noise"


@pytest.mark.parametrize("kind", KINDS)
def test_level_zero_is_the_identity(backend, kind):
    x = torch.randn(3, 11, dtype=torch.float32, device=DEVICE).requires_grad_()
    out = sslkern.corrupt(x, kind, 0.0, seed=5)
    assert torch.equal(out, x)
    (dx,) = torch.autograd.grad(out.sum(), [x])
    assert torch.equal(dx, torch.ones_like(x))


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS.where(passes_gradient=False, needs_image_shape=False)))
def test_level_one_replaces_every_element(backend, kind):
    x = (torch.rand(4, 13, dtype=torch.float32, device=DEVICE) * 0.5 + 0.25).requires_grad_()
    out = sslkern.corrupt(x, kind, 1.0, seed=5, offset=2**32 - 7)
    if kind == "mask":
        assert torch.equal(out, torch.zeros_like(x))
    else:
        assert ((out == 0) | (out == 1)).all()
        assert torch.equal(out.cpu(), oracle.corrupt(x.detach().cpu(), kind, 1.0, 5, 2**32 - 7))
    (dx,) = torch.autograd.grad(out.sum(), [x])
    assert torch.equal(dx, torch.zeros_like(x)), "nothing of x survives level 1"
    # The whole objective then sees an all-zero (or all-0/1) input and no gradient reaches x.
    W = torch.randn(3, 13, device=DEVICE, requires_grad=True)
    b, c = torch.zeros(3, device=DEVICE), torch.zeros(13, device=DEVICE)
    loss = sslkern.autoencoder_loss(x, W, b, c, corruption=kind, level=1.0, seed=5, contractive=0.1)
    dx, _ = torch.autograd.grad(loss, [x, W])
    x64, W64 = (t.detach().double().cpu().requires_grad_() for t in (x, W))
    loss64 = oracle.autoencoder_loss(x64, W64, b.double().cpu(), c.double().cpu(), corruption=kind,
                                     level=1.0, seed=5, contractive=0.1)
    assert_close(loss, loss64, torch.float32, policy=RELATIVE, what="loss")
    # x still enters as the bce target (-x a): dx is the target's gradient alone.
    assert_close(dx, torch.autograd.grad(loss64, [x64])[0], torch.float32, policy=ENTRYWISE, what="dx")


def test_training_twice_with_one_seed_is_identical(backend):
    if backend == "triton" and DEVICE.type == "cpu":
        pytest.skip("slow under the Triton interpreter; op-level repeatability is tested above")
    train = pytest.importorskip("sslkern.train")
    from sslkern import nn

    X = (torch.rand(32, 12, generator=torch.Generator().manual_seed(1)) > 0.5).float().to(DEVICE)

    def fit(seed):
        model = nn.DenoisingAutoencoder(12, 5, level=0.3, contractive=0.1, seed=seed).to(DEVICE)
        train.fit(model, X, epochs=2, batch_size=16, lr=0.05, optimizer="adam", seed=seed, progress=False)
        return model.state_dict()

    first, again, other = fit(3), fit(3), fit(4)
    for key, value in first.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, again[key]), f"{key}: same seed, different weights"
    assert not torch.equal(first["weight"], other["weight"])
