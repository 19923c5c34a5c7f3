"""Batches of a tensor or a memory-mapped file (shuffled per epoch from the seed, sharded by
rank) or of a DataLoader.

The data order of epoch e of stage s is torch.randperm drawn from step_seed(seed, s·2³² + e),
cut to a multiple of the world size W (the tail that does not divide evenly is dropped). Step
j's global batch is the j-th run of W·batch_size indices of it; rank r takes the r-th of its W
equal blocks. So W processes train on the batches one process with batch W·batch_size sees,
each rank's noise covers its block's rows of that global batch (sslkern.nn), and a resumed
run sees the same batches. A memory-mapped file (sslkern.data.MappedImages) is read a batch
at a time, only this rank's rows, with the next batches prefetched (sslkern.data.mapped)."""
import itertools
import math

import torch

from .. import nn as ssl_nn
from ..data.mapped import MappedImages, prefetch


def check_data(X, n_visible, world_size):
    """TypeError/ValueError unless X is a float tensor or MappedImages [N, n_visible] (N >=
    world_size) or a DataLoader."""
    if isinstance(X, (torch.Tensor, MappedImages)):
        if isinstance(X, torch.Tensor):
            check_batch(X, n_visible, "X")
        elif X.shape[1] != n_visible:
            raise ValueError(f"X ({X.path}) has rows of {X.shape[1]} values, the model's n_visible is {n_visible}")
        if X.shape[0] < world_size:
            raise ValueError(f"X has {X.shape[0]} rows, fewer than the {world_size} processes")
    elif not isinstance(X, torch.utils.data.DataLoader):
        raise TypeError(f"X must be a float tensor [N, {n_visible}], an sslkern.data.MappedImages or a torch "
                        f"DataLoader, got {type(X).__name__}")


def check_batch(x, n_visible, name):
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.dtype.is_floating_point:
        raise TypeError(f"{name} must be floating point (images scaled to [0, 1]), got {x.dtype}")
    if x.dim() != 2 or x.shape[1] != n_visible:
        raise ValueError(f"{name} must have shape [N, {n_visible}] (the model's n_visible), got {tuple(x.shape)}")


class Batches:
    """The batches fit trains on; X is checked by check_data first."""

    def __init__(self, X, n_visible, batch_size, seed, rank, world_size, device):
        self.batch_size, self.seed, self.rank, self.world_size, self.device = batch_size, seed, rank, world_size, device
        self.n_visible = n_visible
        self.tensor = X.to(device) if isinstance(X, torch.Tensor) else None
        self.mapped = X if isinstance(X, MappedImages) else None
        self.loader = X if isinstance(X, torch.utils.data.DataLoader) else None
        self.stage, self.transform = 0, None

    def for_stage(self, stage, transform):
        self.stage, self.transform = stage, transform
        if self.tensor is not None and transform is not None:  # encode once, not every epoch
            with torch.no_grad():
                self.stage_tensor = torch.cat([transform(chunk) for chunk in self.tensor.split(4096)])
        else:
            self.stage_tensor = self.tensor
        return self

    def batches_per_epoch(self):
        if self.loader is not None:
            return len(self.loader)
        return math.ceil((self.rows // self.world_size) / self.batch_size)

    @property
    def rows(self):
        return len(self.tensor if self.tensor is not None else self.mapped)

    def local_indices(self, epoch):
        """This rank's row indices of each step of `epoch`, in order (see the module's note)."""
        n, world, rank = self.rows, self.world_size, self.rank
        gen = torch.Generator().manual_seed(ssl_nn.step_seed(self.seed, self.stage * 2**32 + epoch))
        order = torch.randperm(n, generator=gen)[: (n // world) * world]
        for global_batch in order.split(world * self.batch_size):
            rows = global_batch.shape[0] // world
            yield global_batch[rank * rows: (rank + 1) * rows]

    def epoch(self, epoch, start=0):
        """The batches of `epoch`, skipping the first `start` (for resume)."""
        if self.loader is not None:
            yield from self._loader_epoch(epoch, start)
            return
        steps = itertools.islice(self.local_indices(epoch), start, None)
        if self.mapped is not None:
            for xb in prefetch((self.mapped.rows(indices.numpy()) for indices in steps), self.device):
                yield self._transformed(xb)
            return
        for indices in steps:
            yield self.stage_tensor.index_select(0, indices.to(self.device))

    def _loader_epoch(self, epoch, start):
        sampler = getattr(self.loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        for xb in itertools.islice(self.loader, start, None):
            xb = xb[0] if isinstance(xb, (tuple, list)) else xb
            check_batch(xb, self.n_visible, "a batch of X")
            yield self._transformed(xb.to(self.device))

    def _transformed(self, xb):
        """xb through this stage's transform (the codes of the layers below), if it has one."""
        if self.transform is None:
            return xb
        with torch.no_grad():
            return self.transform(xb)
