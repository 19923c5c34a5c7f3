"""sslkern: fused GPU and CPU kernels for tied-weight, denoising and contractive autoencoders.

Public ops (torch.library custom ops with autograd; they work under torch.compile):
philox_uniform, philox_normal, corrupt, encode, decode, contractive_penalty,
autoencoder_loss; without an autograd graph, autoencoder_value_and_grad and
autoencoder_sgd_step. Backends: available_backends, set_backend, use_backend; info().
Pretext tasks (labels made from the images): sslkern.pretext.
"""
__version__ = "0.2.0"  # the one place: pyproject.toml and `sslkern --version` read it

from .backends import BackendError, available_backends, set_backend, use_backend  # noqa: E402
from .functional import (  # noqa: E402
    autoencoder_loss,
    autoencoder_sgd_step,
    autoencoder_value_and_grad,
    contractive_penalty,
    corrupt,
    decode,
    encode,
    philox_normal,
    philox_uniform,
)
from .info import info  # noqa: E402

# The training layer loads on first use: `sslkern.nn`, `sslkern.train`, `sslkern.data`, ...
_SUBMODULES = ("nn", "train", "step", "kinds", "data", "probe", "viz", "reference", "bench", "pretext")


def __getattr__(name):
    if name in _SUBMODULES:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'sslkern' has no attribute {name!r}")


__all__ = [
    "BackendError", "autoencoder_loss", "autoencoder_sgd_step", "autoencoder_value_and_grad",
    "available_backends", "contractive_penalty", "corrupt",
    "decode", "encode", "info", "philox_normal", "philox_uniform", "set_backend", "use_backend",
]
