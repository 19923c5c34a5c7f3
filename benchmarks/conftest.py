"""pytest-benchmark suite: `pytest benchmarks/ --benchmark-only` (not part of `pytest`,
whose testpaths is tests/). Shapes are MNIST-sized; set SSLKERN_BENCH_SHAPES to override,
e.g. SSLKERN_BENCH_SHAPES=256x784x512,1024x784x512."""
import os

import pytest
import torch

from sslkern.bench import Shape, sslkern_backends, synchronize

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
SHAPES = [Shape.parse(s) for s in os.environ.get("SSLKERN_BENCH_SHAPES", "32x784x512,256x784x512").split(",")]
IMPLEMENTATIONS = ["torch"] + [f"sslkern[{name}]" for name in sslkern_backends(DEVICE)]


def pytest_generate_tests(metafunc):
    if "shape" in metafunc.fixturenames:
        metafunc.parametrize("shape", SHAPES, ids=str)
    if "impl" in metafunc.fixturenames:
        metafunc.parametrize("impl", IMPLEMENTATIONS)


@pytest.fixture
def device():
    return DEVICE


@pytest.fixture
def run(benchmark):
    """benchmark(fn) with the device synchronised inside every timed call."""
    def timed(fn):
        def synced():
            out = fn()
            synchronize(DEVICE)
            return out
        return benchmark.pedantic(synced, warmup_rounds=5, rounds=50, iterations=1)
    return timed
