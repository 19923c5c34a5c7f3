"""Property-based tests: random shapes, dtypes, activations, losses, corruption kinds, levels,
seeds and counter offsets, on every available backend, against the float64 oracle
(sslkern.reference) — values and gradients.

Tensors are drawn from a hypothesis-chosen torch seed rather than element by element: the
properties are about shapes, options and the random stream, and well-conditioned data keeps
the per-dtype tolerances meaningful. Examples are few and shapes tiny (the Triton backend
runs under TRITON_INTERPRET=1 on CPU machines), so the file stays well under a minute.
"""
import os

import pytest
import torch
from helpers import DEVICE, NORMAL_DRAWS, PROPERTY, assert_close, leaf_pairs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sslkern
from sslkern import backends
from sslkern import reference as oracle
from sslkern.kinds import ACTIVATIONS, ELEMENTWISE_CORRUPTIONS

SEEDS = st.integers(0, 2**64 - 1)
OFFSETS = st.one_of(st.integers(0, 2**32 - 1), st.integers(2**32 - 40, 2**32 - 1))  # wraparound
KINDS = st.sampled_from(ELEMENTWISE_CORRUPTIONS)  # block, patch: tests/test_structured_masks.py
ACTS = st.sampled_from(ACTIVATIONS.names())
# Results against the float64 oracle: helpers.PROPERTY, relative to max(|expected|, 1). Half
# precision parameters round every intermediate (h, a, dA, dZ) to 8 or 11 bits, and the
# errors compound through the chain: those bounds only catch gross errors. float64 is not
# 1e-15: derivatives are taken from h = f(z) (as the kernels do), e.g. 1 - h for h near 1.
PARAM_DTYPES = (torch.float64, torch.float32, torch.bfloat16, torch.float16)
EXAMPLES = {"triton": 4}  # interpreted Triton is slow; the others take the default below


def _cases():
    """(backend, parameter dtype) pairs that the backend says it runs on this device."""
    cases = []
    for name in sslkern.available_backends():
        for dtype in PARAM_DTYPES:
            if not backends.reasons(name, DEVICE, dtype):
                cases.append(pytest.param(name, dtype, id=f"{name}-{str(dtype)[6:]}"))
    return cases


CASES = _cases()
BACKEND_NAMES = [pytest.param(n, id=n) for n in sslkern.available_backends()]


# Derandomized: the same examples on every run, so CI cannot flake. For a deeper search,
# SSLKERN_PROPERTY_SCALE=20 pytest tests/test_properties.py (fresh random examples, 20x more).
DEEP = int(os.environ.get("SSLKERN_PROPERTY_SCALE", "0"))


def _settings(backend, default=25):
    examples = EXAMPLES.get(backend, default) * max(DEEP, 1)
    return settings(max_examples=examples, deadline=None, database=None, derandomize=not DEEP,
                    suppress_health_check=list(HealthCheck))


def run_property(backend, default, prop):
    """Runs the hypothesis property `prop` with the example budget of `backend`, inside it."""
    with sslkern.use_backend(backend):
        _settings(backend, default)(prop)()


def gaussian_policy(noise):
    """PROPERTY with rtol at least `noise`: gaussian corruption's normal draws agree across
    devices only within 1e-5 (libm differs; docs/random.md), so a slack that scales
    with the level."""
    return PROPERTY.at_least(noise, "gaussian") if noise else PROPERTY


def _data(seed, batch, visible, hidden, dtype, x_dtype, weight_scale):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, visible, generator=g, dtype=torch.float64)
    W = torch.randn(hidden, visible, generator=g, dtype=torch.float64) * weight_scale
    b = torch.randn(hidden, generator=g, dtype=torch.float64) * 0.5
    c = torch.randn(visible, generator=g, dtype=torch.float64) * 0.5
    # Round through the tested dtypes first so that the oracle sees exactly the same inputs.
    x = x.to(x_dtype)
    W, b, c = (t.to(dtype) for t in (W, b, c))
    return x, W, b, c


def _grads(out, inputs):
    # Unused inputs get zeros: the oracle's penalty does not depend on x for a linear f.
    return torch.autograd.grad(out, inputs, allow_unused=True, materialize_grads=True)


SHAPES = st.tuples(st.integers(0, 9), st.integers(1, 11), st.integers(1, 7))  # B, D, H
TINY_SHAPES = st.tuples(st.integers(1, 3), st.integers(1, 5), st.integers(1, 3))


def _shapes(backend):
    return TINY_SHAPES if backend == "triton" else SHAPES


@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_philox_streams_match_oracle(backend):
    @given(n=st.integers(0, 67), seed=SEEDS, offset=OFFSETS)
    def prop(n, seed, offset):
        u = sslkern.philox_uniform(n, seed, offset, device=DEVICE).cpu()
        assert torch.equal(u, oracle.philox_uniform(n, seed, offset)), "uniform must be bit-exact"
        assert ((u >= 0) & (u < 1)).all()
        z = sslkern.philox_normal(n, seed, offset, device=DEVICE).cpu()
        assert_close(z, oracle.philox_normal(n, seed, offset), torch.float32, policy=NORMAL_DRAWS, what="normal")

    run_property(backend, 12, prop)


@pytest.mark.parametrize("backend,dtype", CASES)
def test_corrupt_values_and_gradient(backend, dtype):
    @given(shape=st.lists(st.integers(0, 7), min_size=1, max_size=3), kind=KINDS,
           level=st.floats(0, 1), seed=SEEDS, offset=OFFSETS, data_seed=st.integers(0, 2**31))
    def prop(shape, kind, level, seed, offset, data_seed):
        x = torch.randn(shape, generator=torch.Generator().manual_seed(data_seed)).to(dtype)
        (xt,), (x64,) = leaf_pairs(x)
        out = sslkern.corrupt(xt, kind, level, seed=seed, offset=offset)
        expected = oracle.corrupt(x64, kind, level, seed, offset)
        assert out.dtype == dtype
        if kind in ("mask", "salt_pepper", "none"):  # selections of x, 0 and 1: exact
            assert torch.equal(out.detach().cpu().double(), oracle.corrupt(x.double(), kind, level, seed, offset)
                               .to(dtype).double())
        else:
            assert_close(out, expected, dtype, policy=gaussian_policy(2e-5 * level), what="corrupt")
        weights = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(data_seed + 1))
        (grad,) = _grads((out * weights.to(DEVICE, dtype)).sum(), [xt])
        (grad64,) = _grads((expected * weights).sum(), [x64])
        assert_close(grad, grad64, dtype, policy=PROPERTY, what="d corrupt / dx")

    run_property(backend, 20, prop)


@pytest.mark.parametrize("backend,dtype", CASES)
def test_encode_decode_penalty_values_and_gradients(backend, dtype):
    @given(shape=_shapes(backend), act=ACTS, data_seed=st.integers(0, 2**31),
           weight_scale=st.sampled_from([0.1, 1.0, 3.0]))
    def prop(shape, act, data_seed, weight_scale):
        batch, visible, hidden = shape
        x, W, b, c = _data(data_seed, batch, visible, hidden, dtype, dtype, weight_scale)
        (xt, Wt, bt, ct), (x64, W64, b64, c64) = leaf_pairs(x, W, b, c)

        h = sslkern.encode(xt, Wt, bt, act)
        h64 = oracle.encode(x64, W64, b64, act)
        assert_close(h, h64, dtype, policy=PROPERTY, what=f"encode {act}")
        y = sslkern.decode(h, Wt, ct, act)
        y64 = oracle.decode(h64, W64, c64, act)
        assert_close(y, y64, dtype, policy=PROPERTY, what=f"decode {act}")
        weights = torch.randn(batch, visible, dtype=torch.float64,  # seeded: a failure must replay
                              generator=torch.Generator().manual_seed(data_seed + 1))
        grads = _grads((y * weights.to(DEVICE, dtype)).sum(), [xt, Wt, bt, ct])
        grads64 = _grads((y64 * weights).sum(), [x64, W64, b64, c64])
        for name, got, want in zip("x W b c".split(), grads, grads64):
            assert_close(got, want, dtype, policy=PROPERTY, what=f"d(encode->decode {act})/d{name}")

        p = sslkern.contractive_penalty(xt, Wt, bt, act)
        p64 = oracle.contractive_penalty(x64, W64, b64, act)
        assert_close(p, p64, dtype, policy=PROPERTY, what=f"contractive_penalty {act}")
        grads = _grads(p, [xt, Wt, bt])
        grads64 = _grads(p64, [x64, W64, b64])
        for name, got, want in zip("x W b".split(), grads, grads64):
            assert_close(got, want, dtype, policy=PROPERTY, what=f"d penalty({act})/d{name}")

    run_property(backend, 15, prop)


@st.composite
def objectives(draw):
    decoder = draw(ACTS)
    loss = draw(st.sampled_from(["bce", "mse"])) if decoder == "sigmoid" else "mse"
    kind = draw(KINDS)
    level = 0.0 if kind == "none" else draw(st.one_of(st.just(0.0), st.just(1.0), st.floats(0, 1)))
    return dict(encoder=draw(ACTS), decoder=decoder, loss=loss, corruption=kind, level=level,
                contractive=draw(st.sampled_from([0.0, 0.1, 1.5])), seed=draw(SEEDS), offset=draw(OFFSETS))


@pytest.mark.parametrize("backend,dtype", CASES)
def test_autoencoder_loss_value_and_gradients(backend, dtype):
    x_dtypes = [dtype] + [t for t in (torch.float64, torch.float32, torch.bfloat16, torch.float16) if t != dtype]

    @given(shape=_shapes(backend), config=objectives(), data_seed=st.integers(0, 2**31),
           x_dtype=st.sampled_from(x_dtypes), weight_scale=st.sampled_from([0.1, 1.0]))
    def prop(shape, config, data_seed, x_dtype, weight_scale):
        batch, visible, hidden = shape
        x, W, b, c = _data(data_seed, batch, visible, hidden, dtype, x_dtype, weight_scale)
        (xt, Wt, bt, ct), (x64, W64, b64, c64) = leaf_pairs(x, W, b, c)
        loss = sslkern.autoencoder_loss(xt, Wt, bt, ct, **config)
        # The oracle corrupts x in the computing dtype, as the kernels do.
        loss64 = oracle.autoencoder_loss(x64, W64, b64, c64, **config)
        assert loss.dtype == dtype and loss.shape == ()
        # The loss is a sum over D: its tolerance scales with the number of terms.
        policy = gaussian_policy(1e-4 * config["level"] if config["corruption"] == "gaussian" else 0.0)
        assert_close(loss / visible, loss64 / visible, dtype, policy=policy, what=f"loss {config}")
        grads = _grads(loss, [xt, Wt, bt, ct])
        grads64 = _grads(loss64, [x64, W64, b64, c64])
        assert grads[0].dtype == x_dtype
        for name, got, want in zip("x W b c".split(), grads, grads64):
            # dx comes back in x's dtype: the coarser of the two sets the tolerance.
            coarser = x_dtype if PROPERTY.tolerance(x_dtype) > PROPERTY.tolerance(dtype) else dtype
            tol_dtype = coarser if name == "x" else dtype
            assert_close(got, want, tol_dtype, policy=policy, what=f"dloss/d{name} {config}",
                         check_dtype=name != "x")  # dx's dtype is x_dtype, asserted above

    run_property(backend, 25, prop)
