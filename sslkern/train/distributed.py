"""Data-parallel set-up: under torchrun (torch.distributed initialised, or the WORLD_SIZE/RANK
environment set) fit initialises gloo on the CPU, nccl on CUDA; every rank takes its own
shard of the data and folds its rank into the noise seed (sslkern.nn).

Elastic restarts. torchrun's static rendezvous keeps one key-value store (the agent's) for
the whole job, restarts included, and hands every round the same MASTER_ADDR/PORT. The
process group of a restarted round would then find the keys of the killed round in it (the
gloo addresses of dead workers) and fail to connect. fit therefore opens the group on a
prefix of that store per restart round (TORCHELASTIC_RESTART_COUNT).

Decisions one rank makes (which checkpoint to resume from, whether a checkpoint write
succeeded) are taken on rank 0 and shared with `on_rank_zero`, so every rank continues from
the same checkpoint or raises the same error, instead of some ranks waiting forever."""
import datetime
import os

import torch
import torch.distributed as dist

from .. import nn as ssl_nn

STORE_TIMEOUT = datetime.timedelta(minutes=10)


def init_distributed():
    """(rank, world_size); initialises torch.distributed from torchrun's environment."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        store = restart_round_store(world_size)
        if store is None:
            dist.init_process_group(backend)
        else:
            dist.init_process_group(backend, store=store, rank=int(os.environ["RANK"]), world_size=world_size)
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def restart_round_store(world_size):
    """The torchrun agent's store under a prefix of this restart round, or None outside
    torchrun (then init_process_group reads the environment as usual)."""
    restart = os.environ.get("TORCHELASTIC_RESTART_COUNT")
    if restart is None or os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return None
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world_size,
                          is_master=False, timeout=STORE_TIMEOUT)
    return dist.PrefixStore(f"sslkern/restart-{restart}", store)


def set_ranks(model, rank, world_size):
    """Tell every autoencoder layer and pretext model its rank (the noise and label streams
    depend on it)."""
    for module in model.modules():
        if isinstance(module, (ssl_nn.TiedAutoencoder, ssl_nn.PretextClassifier)):
            module.rank, module.world_size = rank, world_size


def on_rank_zero(decide, rank, world_size):
    """decide() run on rank 0 only; every rank returns its result or raises its exception."""
    outcome = [None]
    if rank == 0:
        try:
            outcome[0] = (True, decide())
        except Exception as exc:  # shared below, so that no rank waits for one that gave up
            outcome[0] = (False, exc)
    if world_size > 1:
        dist.broadcast_object_list(outcome, src=0)
    succeeded, value = outcome[0]
    if not succeeded:
        raise value
    return value


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
