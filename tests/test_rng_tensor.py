"""`seed` as an int64 device tensor (seed bits, offset): every backend draws exactly what the
integer (seed, offset) draws, in values and gradients, eager, through the registered ops and
under torch.compile; a bad tensor is refused naming `seed`."""
import pytest
import torch
import torch._dynamo.testing

from helpers import DEVICE, REORDERED, assert_close

import sslkern
from sslkern.kinds import CORRUPTIONS
from sslkern import _validate


# (seed, offset): small; a seed >= 2**63 (a negative int64) with an offset whose counters wrap
# past 2**32 inside the tensor.
STREAMS = [(5, 0), (2**64 - 3, 2**32 - 4)]
KINDS = tuple(k for k in CORRUPTIONS.names() if k != "none")
LEVELS = {"mask": 0.4, "gaussian": 0.3, "salt_pepper": 0.3, "block": 0.3, "patch": 0.4}
IMAGES = {"block": dict(image_shape=(1, 7)), "patch": dict(image_shape=(1, 7), patch=2)}  # x is [B, 7]


def rng_tensor(seed, offset, device=DEVICE):
    return torch.tensor([_validate.signed_seed(seed), offset], dtype=torch.int64, device=device)


def params(batch=4, visible=7, hidden=5, dtype=torch.float64):
    gen = torch.Generator().manual_seed(batch * 100 + visible)
    x = torch.rand(batch, visible, generator=gen, dtype=dtype)
    W = torch.randn(hidden, visible, generator=gen, dtype=dtype) * 0.5
    b, c = torch.randn(hidden, generator=gen, dtype=dtype) * 0.2, torch.randn(visible, generator=gen, dtype=dtype) * 0.2
    return [t.to(DEVICE).requires_grad_(True) for t in (x, W, b, c)]


def value_and_grads(fn, inputs):
    out = fn(*inputs)
    g = torch.linspace(-1.0, 2.0, out.numel(), dtype=out.dtype, device=out.device).reshape(out.shape)
    return [out.detach()] + list(torch.autograd.grad(out, inputs, g))


def assert_same(got, want):
    for i, (g, w) in enumerate(zip(got, want)):
        assert torch.equal(g, w), f"output {i}: max difference {(g - w).abs().max().item():.3e}"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("seed, offset", STREAMS)
def test_corrupt_tensor_seed_matches_int_seed(backend, kind, seed, offset):
    x = params()[0]
    images = IMAGES.get(kind, {})
    want = value_and_grads(lambda v: sslkern.corrupt(v, kind, LEVELS[kind], seed, offset, **images), [x])
    rng = rng_tensor(seed, offset)
    got = value_and_grads(lambda v: sslkern.corrupt(v, kind, LEVELS[kind], seed=rng, **images), [x])
    assert_same(got, want)
    assert rng.tolist() == [_validate.signed_seed(seed), offset]  # read, never advanced


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("seed, offset", STREAMS)
def test_autoencoder_loss_tensor_seed_matches_int_seed(backend, kind, seed, offset):
    config = dict(encoder="tanh", decoder="sigmoid", loss="bce", corruption=kind, level=LEVELS[kind],
                  contractive=0.2, **IMAGES.get(kind, {}))
    inputs = params()
    want = value_and_grads(lambda *t: sslkern.autoencoder_loss(*t, **config, seed=seed, offset=offset), inputs)
    got = value_and_grads(lambda *t: sslkern.autoencoder_loss(*t, **config, seed=rng_tensor(seed, offset)),
                          inputs)
    assert_same(got, want)


def test_registered_ops_take_rng(backend):
    """The custom ops' own autograd (what torch.compile sees), not the eager fast path."""
    seed, offset = STREAMS[1]
    ops, inputs = torch.ops.sslkern, params()
    step = ("sigmoid", "sigmoid", "bce", "salt_pepper", 0.3, 0.1)

    def loss(rng, *t):
        int_stream = (_validate.signed_seed(seed), offset) if rng is None else (0, 0)
        return ops.autoencoder_loss(*t, *step, *int_stream, backend, rng)[0]

    def noisy(rng, v):
        int_stream = (_validate.signed_seed(seed), offset) if rng is None else (0, 0)
        return ops.corrupt(v, "mask", 0.4, *int_stream, backend, rng)

    for fn, args in ((loss, inputs), (noisy, inputs[:1])):
        want = value_and_grads(lambda *t: fn(None, *t), args)
        assert_same(value_and_grads(lambda *t: fn(rng_tensor(seed, offset), *t), args), want)


def _bad_rngs():
    yield torch.tensor([1, 2], dtype=torch.int32, device=DEVICE), TypeError
    yield torch.tensor([1.0, 2.0], device=DEVICE), TypeError
    yield torch.tensor([1, 2, 3], device=DEVICE), ValueError
    yield torch.tensor([[1, 2]], device=DEVICE), ValueError
    yield torch.empty(2, dtype=torch.int64, device="meta"), ValueError  # not on x's device


@pytest.mark.parametrize("bad, error", list(_bad_rngs()))
def test_bad_rng_tensor_names_seed(bad, error):
    x, W, b, c = params()
    with pytest.raises(error, match="seed"):
        sslkern.corrupt(x, "mask", 0.3, seed=bad)
    with pytest.raises(error, match="seed"):
        sslkern.autoencoder_loss(x, W, b, c, corruption="mask", level=0.3, seed=bad)


def test_offset_beside_a_tensor_seed_is_refused():
    x, W, b, c = params()
    rng = rng_tensor(1, 2)
    with pytest.raises(ValueError, match="offset"):
        sslkern.corrupt(x, "mask", 0.3, seed=rng, offset=3)
    with pytest.raises(ValueError, match="offset"):
        sslkern.autoencoder_loss(x, W, b, c, corruption="mask", level=0.3, seed=rng, offset=3)


def test_advancing_rng_before_backward_raises():
    """The backward regenerates the forward's mask from rng for dx: changing it in between would
    silently give another mask's gradient, so autograd's version check refuses."""
    x, W, b, c = params()
    rng = rng_tensor(7, 0)
    for out in (sslkern.corrupt(x, "mask", 0.3, seed=rng).sum(),
                sslkern.autoencoder_loss(x, W, b, c, corruption="mask", level=0.3, seed=rng)):
        rng[1] += x.numel()
        with pytest.raises(RuntimeError, match="inplace"):
            out.backward()
    # Without dx the backward draws nothing: advancing rng after the forward is fine.
    loss = sslkern.autoencoder_loss(x.detach(), W, b, c, corruption="mask", level=0.3, seed=rng)
    rng[1] += x.numel()
    loss.backward()
    assert W.grad is not None


@pytest.mark.skipif("native" not in sslkern.available_backends(), reason="needs the native backend")
def test_compiled_step_reads_rng_at_run_time():
    """One fullgraph compile (aot_eager: dynamo + AOT autograd over the fake impls, no codegen);
    advancing the tensor in place gives the next offset's noise without recompiling."""
    torch._dynamo.reset()
    counter = torch._dynamo.testing.CompileCounterWithBackend("aot_eager")
    config = dict(encoder="sigmoid", decoder="sigmoid", loss="bce", corruption="mask", level=0.3,
                  contractive=0.1)

    def step(x, W, b, c, rng):
        return sslkern.autoencoder_loss(sslkern.corrupt(x, "salt_pepper", 0.2, seed=rng), W, b, c,
                                        **config, seed=rng)

    def eager(offset):
        def fn(x, W, b, c):
            x_tilde = sslkern.corrupt(x, "salt_pepper", 0.2, seed=2**63 + 11, offset=offset)
            return sslkern.autoencoder_loss(x_tilde, W, b, c, **config, seed=2**63 + 11, offset=offset)
        return fn

    compiled = torch.compile(step, fullgraph=True, backend=counter)
    inputs = [t.detach().cpu().requires_grad_(True) for t in params()]
    rng = rng_tensor(2**63 + 11, 0, device="cpu")
    with sslkern.use_backend("native"):
        for offset in (0, 2**32 - 10):
            rng[1] = offset  # in place, as a captured graph would
            got = value_and_grads(lambda *t: compiled(*t, rng), inputs)
            want = value_and_grads(eager(offset), inputs)
            for i, (g, w) in enumerate(zip(got, want)):
                assert_close(g, w, torch.float64, policy=REORDERED, what=f"output {i}")
    assert counter.frame_count == 1
