"""The shared random stream (docs/random.md): test vectors, bit-exactness against
Triton's tl.rand/tl.randn, corruption statistics and masks that agree across backends."""
import os

import pytest
import torch

from helpers import DEVICE, NORMAL_DRAWS, assert_close

import sslkern
from sslkern import reference as oracle
from sslkern.kinds import CORRUPTIONS, ELEMENTWISE_CORRUPTIONS

MASKING_KINDS = sorted(CORRUPTIONS.where(passes_gradient=False, needs_image_shape=False))  # a keep-mask gates the gradient

# On a CUDA machine the backends draw on CUDA (triton needs it); comparisons happen on the CPU.
SEED0_WORDS = [0x6627E8D5, 0xF8E4CCA4, 0x04FAA329, 0xC990EF29]
SEED0_UNIFORMS = [0.798092902, 0.0555175915, 0.0388988405, 0.425264418]
SEED42_UNIFORM = 0.774080157
# (n, seed, offset): 64-bit seeds (above 2**32, above 2**63, the largest) and counters that
# wrap around 2**32 inside the draw.
STREAMS = [(5, 0, 0), (200, 42, 1000), (300, 2**40 + 123, 2**32 - 100), (64, 2**63 + 5, 2**31 - 7),
           (33, 2**64 - 1, 2**32 - 1)]


# --- test vectors ------------------------------------------------------------------------

def test_oracle_words_match_design_vectors():
    c0, *_ = oracle.philox4x32_10(4, seed=0, offset=0)
    assert c0.tolist() == SEED0_WORDS
    assert oracle.philox4x32_10(1, seed=42)[0].tolist() == [0x9CEAF053]


def uniform(n, seed, offset=0):
    return sslkern.philox_uniform(n, seed, offset, device=DEVICE).cpu()


def test_uniform_test_vectors(backend):
    got = uniform(4, seed=0, offset=0)
    assert got.tolist() == torch.tensor(SEED0_UNIFORMS, dtype=torch.float32).tolist()
    assert uniform(1, seed=42).item() == torch.tensor(SEED42_UNIFORM, dtype=torch.float32).item()
    # offsets pick elements of one stream
    assert torch.equal(uniform(2, seed=0, offset=2), got[2:])


def test_uniform_range(backend):
    u = uniform(20_000, seed=3)
    assert 0.0 <= u.min() and u.max() < 1.0


def test_counters_wrap_around_2_to_32(backend):
    tail = uniform(10, seed=7, offset=2**32 - 4)
    assert torch.equal(tail[4:], uniform(6, seed=7, offset=0))


# --- bit-exact against Triton ------------------------------------------------------------

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - triton is a test dependency on Linux
    triton = None

needs_triton = pytest.mark.skipif(triton is None, reason="triton is not importable")

if triton is not None:
    @triton.jit
    def _triton_draws(counters_ptr, uniform_ptr, normal_ptr, word_ptr, seed, n, BLOCK: tl.constexpr):
        index = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        inside = index < n
        counter = tl.load(counters_ptr + index, mask=inside)  # int32: the 32-bit Philox counter
        tl.store(uniform_ptr + index, tl.rand(seed, counter), mask=inside)
        tl.store(normal_ptr + index, tl.randn(seed, counter), mask=inside)
        tl.store(word_ptr + index, tl.randint(seed, counter), mask=inside)


def triton_draws(n, seed, offset):
    """(tl.rand, tl.randn, tl.randint) at counters offset + i mod 2**32, on this device
    (CPU tensors run under TRITON_INTERPRET=1, set by conftest)."""
    device = DEVICE
    assert device.type == "cuda" or os.environ.get("TRITON_INTERPRET") == "1"
    counters = (torch.arange(n, dtype=torch.int64) + offset) % 2**32
    counters = torch.where(counters >= 2**31, counters - 2**32, counters).to(torch.int32).to(device)
    uniform = torch.empty(n, dtype=torch.float32, device=device)
    normal, word = torch.empty_like(uniform), torch.empty(n, dtype=torch.int32, device=device)
    block = 64
    _triton_draws[(triton.cdiv(n, block),)](counters, uniform, normal, word, seed, n, BLOCK=block)
    return uniform.cpu(), normal.cpu(), word.cpu()


@needs_triton
def test_triton_reproduces_design_vectors():
    uniform, _, word = triton_draws(4, 0, 0)
    assert (word.to(torch.int64) % 2**32).tolist() == SEED0_WORDS
    assert uniform.tolist() == torch.tensor(SEED0_UNIFORMS, dtype=torch.float32).tolist()


@needs_triton
@pytest.mark.parametrize("n, seed, offset", STREAMS)
def test_uniform_bit_exact_vs_triton(backend, n, seed, offset):
    expected, _, _ = triton_draws(n, seed, offset)
    assert torch.equal(uniform(n, seed, offset), expected)


@needs_triton
@pytest.mark.parametrize("n, seed, offset", STREAMS)
def test_normal_vs_triton(backend, n, seed, offset):
    _, expected, _ = triton_draws(n, seed, offset)
    got = sslkern.philox_normal(n, seed, offset, device=DEVICE).cpu()
    assert_close(got, expected, torch.float32, policy=NORMAL_DRAWS, what="normal")


@needs_triton
@pytest.mark.parametrize("n, seed, offset", STREAMS)
def test_oracle_words_vs_triton(n, seed, offset):
    _, _, expected = triton_draws(n, seed, offset)
    assert torch.equal(oracle.philox4x32_10(n, seed, offset)[0], expected.to(torch.int64) % 2**32)


# --- corruption statistics over 10**6 elements ------------------------------------------

N = 1000 * 1000


@pytest.fixture
def stats_backend(backend):
    """10**6 draws take minutes in the Triton interpreter; its masks are checked bit for bit
    against the other backends below instead."""
    if backend == "triton" and os.environ.get("TRITON_INTERPRET") == "1":
        pytest.skip("too slow for the Triton interpreter")
    return backend


def test_mask_fraction(stats_backend):
    level = 0.25
    out = sslkern.corrupt(torch.ones(1000, 1000, device=DEVICE), "mask", level, seed=1)
    dropped = (out == 0).double().mean().item()
    assert abs(dropped - level) <= 0.01 * level
    assert torch.all((out == 0) | (out == 1))


def test_salt_pepper_fractions(stats_backend):
    level = 0.3
    out = sslkern.corrupt(torch.full((1000, 1000), 0.5, device=DEVICE), "salt_pepper", level, seed=2, offset=5)
    for value in (0.0, 1.0):
        fraction = (out == value).double().mean().item()
        assert abs(fraction - level / 2) <= 0.01 * level / 2, (value, fraction)
    kept = (out == 0.5).double().mean().item()
    assert abs(kept - (1 - level)) <= 0.01 * (1 - level)


def test_gaussian_moments(stats_backend):
    level = 0.5
    noise = sslkern.corrupt(torch.zeros(N, dtype=torch.float64, device=DEVICE), "gaussian", level, seed=3)
    assert abs(noise.mean().item()) < 3e-3  # 6 standard errors (level / sqrt(N) = 5e-4)
    assert abs(noise.var().item() - level**2) <= 0.01 * level**2


@pytest.mark.parametrize("kind", MASKING_KINDS)
@pytest.mark.parametrize("level", [0.0, 1.0])
def test_extreme_levels(backend, kind, level):
    x = torch.rand(37, 41, device=DEVICE) * 0.5 + 0.25  # no 0 or 1 entries
    out = sslkern.corrupt(x, kind, level, seed=4)
    if level == 0.0:
        assert torch.equal(out, x)
    else:
        assert not torch.any(out == x)


# --- masks identical on every backend --------------------------------------------------

def _corruptions(kind, dtype):
    x = torch.rand(37, 129, generator=torch.Generator().manual_seed(0), dtype=torch.float64).to(dtype)
    on_device = x.to(DEVICE)
    results = {}
    for name in sslkern.available_backends():
        with sslkern.use_backend(name):
            results[name] = sslkern.corrupt(on_device, kind, 0.4, seed=2**35 + 9, offset=2**32 - 1000).cpu()
    return x, results


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", MASKING_KINDS)
def test_masks_bit_identical_across_backends(kind, dtype):
    x, results = _corruptions(kind, dtype)
    expected = oracle.corrupt(x, kind, 0.4, seed=2**35 + 9, offset=2**32 - 1000)
    for name, out in results.items():
        assert torch.equal(out == 0, expected == 0), name
        assert torch.equal(out, expected), name


def test_gaussian_noise_agrees_across_backends():
    x, results = _corruptions("gaussian", torch.float32)
    for name, out in results.items():
        assert_close(out, results["reference"], torch.float32, policy=NORMAL_DRAWS.scaled(0.4, "level"), what=name)


@pytest.mark.parametrize("kind", ELEMENTWISE_CORRUPTIONS)  # block, patch: tests/test_structured_masks.py
def test_corrupt_gradient_is_keep_mask(backend, kind):
    level, seed, offset = 0.4, 8, 2**32 - 50
    x = torch.rand(13, 17, dtype=torch.float64, device=DEVICE, requires_grad=True)
    out = sslkern.corrupt(x, kind, level, seed, offset)
    g = torch.randn_like(x)
    (dx,) = torch.autograd.grad(out, x, g)
    if kind in ("none", "gaussian"):
        keep = torch.ones_like(x, dtype=torch.bool)
    else:
        keep = (oracle.philox_uniform(x.numel(), seed, offset) >= level).reshape(x.shape).to(DEVICE)
        assert torch.equal(out.detach()[keep], x.detach()[keep])
    assert torch.equal(dx, torch.where(keep, g, torch.zeros_like(g)))
