"""Training: `fit` runs minibatch training of an sslkern autoencoder, with progress,
atomic checkpoints, exact resume, optional CUDA-graph capture and data parallelism.

Determinism. The data order of epoch e is a permutation drawn from (seed, stage, e); the
corruption noise of every step comes from the model's seed and its step counter (sslkern.nn).
A checkpoint holds the weights (with the step counter), the optimizer state and the position
in the data, so resume=True continues exactly where the checkpoint was written: on the CPU
the resumed run reaches the uninterrupted run's weights bit for bit.

Data parallelism. Under torchrun (torch.distributed initialised, or the WORLD_SIZE/RANK
environment set: fit then initialises gloo on the CPU, nccl on CUDA), each step's global
batch is batch_size rows per process; rank r takes the r-th block of it and draws the noise
one process would draw for those rows, and DistributedDataParallel averages the gradients.
So W processes train like one process with batch W·batch_size (to rounding). Rank 0 decides
where to resume, writes the checkpoints and shows the progress; every rank gets its answer.
Under `torchrun --max-restarts`, a restarted group opens its process group on a store prefix
of its own round and resumes from the newest complete checkpoint: bit for bit on the CPU.

Data. X is a tensor, an sslkern.data.MappedImages (a file read a batch at a time) or a
DataLoader.

Modules: loop (fit, the epoch loop, RunState), settings (argument, device and data checks),
steps (the graph-free, autograd, DDP and CUDA-graph steps), checkpoints (the file format and
folder), batches (shuffling and sharding), distributed (torch.distributed set-up, restarts,
rank 0's decisions).
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
