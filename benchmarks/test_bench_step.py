"""The full training step (forward, backward, SGD update): PyTorch eager, torch.compile,
every sslkern backend available here (through autograd, autoencoder_value_and_grad and
autoencoder_sgd_step), and the five matrix products alone (the floor)."""
import pytest
import torch

from sslkern.bench import SSLKERN_ROUTES, Objective, sslkern_backends, variants

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
NAMES = ["products", "eager", "compile"] + [f"{route}[{name}]" for route in SSLKERN_ROUTES
                                            for name in sslkern_backends(DEVICE)]


@pytest.mark.parametrize("name", NAMES)
def test_training_step(run, shape, device, name):
    names, build = variants(shape, device, Objective(), include=[name])
    if name not in names:
        pytest.skip(f"{name} not available at {shape} on {device}")
    run(build(name))
