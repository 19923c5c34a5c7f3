"""Data-parallel set-up: under torchrun (torch.distributed initialised, or the WORLD_SIZE/RANK
environment set) fit initialises gloo on the CPU, nccl on CUDA; every rank takes its own
shard of the data and folds its rank into the noise seed (sslkern.nn)."""
import os

import torch
import torch.distributed as dist

from .. import nn as ssl_nn


def init_distributed():
    """(rank, world_size); initialises torch.distributed from torchrun's environment."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def set_ranks(model, rank, world_size):
    """Tell every autoencoder layer and pretext model its rank (the noise and label streams
    depend on it)."""
    for module in model.modules():
        if isinstance(module, (ssl_nn.TiedAutoencoder, ssl_nn.PretextClassifier)):
            module.rank, module.world_size = rank, world_size


def barrier(world_size):
    if world_size > 1:
        dist.barrier()


def sum_over_ranks(tensor, world_size):
    if world_size > 1:
        dist.all_reduce(tensor)
    return tensor


def data_parallel(module, device):
    """module wrapped in DistributedDataParallel (gradients averaged over the ranks)."""
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)
