"""Training: `fit` runs minibatch training of an sslkern autoencoder, with progress,
atomic checkpoints, exact resume, optional CUDA-graph capture and data parallelism.

Determinism. The data order of epoch e is a permutation drawn from (seed, stage, e); the
corruption noise of every step comes from the model's seed and its step counter (sslkern.nn).
A checkpoint holds the weights (with the step counter), the optimizer state and the position
in the data, so resume=True continues exactly where the checkpoint was written: on the CPU
the resumed run reaches the uninterrupted run's weights bit for bit.

Data parallelism. Under torchrun (torch.distributed initialised, or the WORLD_SIZE/RANK
environment set: fit then initialises gloo on the CPU, nccl on CUDA), every rank takes its
own shard of each epoch's permutation, draws its own noise (the rank is folded into the noise
seed) and gradients are averaged by DistributedDataParallel. batch_size is per process.
Rank 0 writes checkpoints and shows the progress.

Modules: loop (fit, the epoch loop, RunState), settings (argument, device and data checks),
steps (the graph-free, autograd, DDP and CUDA-graph steps), checkpoints (the file format and
folder), batches (shuffling and sharding), distributed (torch.distributed set-up).
"""
from .checkpoints import (  # noqa: F401
    CHECKPOINT_FORMAT,
    CHECKPOINT_PATTERN,
    CHECKPOINT_VERSION,
    KEEP_CHECKPOINTS,
    CheckpointError,
    check_compatible,
    checkpoint_paths,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from .loop import RunState, fit  # noqa: F401
from .settings import NEW_DATA, OPTIMIZERS  # noqa: F401

__all__ = ["fit", "RunState", "CheckpointError", "save_checkpoint", "load_checkpoint", "checkpoint_paths",
           "latest_checkpoint", "check_compatible", "KEEP_CHECKPOINTS", "CHECKPOINT_FORMAT", "CHECKPOINT_VERSION",
           "CHECKPOINT_PATTERN", "OPTIMIZERS", "NEW_DATA"]
