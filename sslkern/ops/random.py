"""sslkern::philox — raw draws of the shared random stream (docs/random.md)."""
import torch

from . import _guards as guard
from ._common import backend_for, unsigned


@torch.library.custom_op("sslkern::philox", mutates_args=())
def philox(n: int, seed: int, offset: int, normal: bool, device: torch.device, backend: str) -> torch.Tensor:
    device = torch.device(device)
    guard.philox(n, offset, device, backend)
    return backend_for(backend, device, torch.float32).philox(n, unsigned(seed), offset, device, normal)


@philox.register_fake
def _(n, seed, offset, normal, device, backend):
    guard.philox(n, offset, torch.device(device), backend)
    return torch.empty(n, dtype=torch.float32, device=device)
