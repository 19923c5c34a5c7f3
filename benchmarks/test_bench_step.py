"""The full training step (forward, backward, SGD update): PyTorch eager, torch.compile,
every sslkern backend available here, and the five matrix products alone (the floor)."""
import pytest

from conftest import IMPLEMENTATIONS
from sslkern.bench import Objective, variants

NAMES = ["products", "eager", "compile"] + [impl for impl in IMPLEMENTATIONS if impl != "torch"]


@pytest.mark.parametrize("name", NAMES)
def test_training_step(run, shape, device, name):
    names, build = variants(shape, device, Objective(), include=[name])
    if name not in names:
        pytest.skip(f"{name} not available at {shape} on {device}")
    run(build(name))
