"""fit's arguments, checked before anything changes: `Settings` (what a run is), the device
and the data's identity (what a resume must match)."""
import dataclasses
import hashlib
import math
import os
from numbers import Integral, Real
from typing import Optional

import torch

from .. import _validate as check
from .. import nn as ssl_nn
from ..data.mapped import MappedImages

OPTIMIZERS = ("sgd", "momentum", "adam")
NEW_DATA = "new-data"  # resume=NEW_DATA: continue a checkpoint on other data, on purpose
# Settings that fix the data order and noise: a resume under other values would silently
# train a different model, so it is refused.
RESUME_MUST_MATCH = ("batch_size", "optimizer", "seed", "world_size", "sharding")
# How several processes split a step's batch and its noise (sslkern.train.batches). Recorded
# only when world_size > 1, so that a multi-process checkpoint of an sslkern that split them
# otherwise (rank-interleaved rows, per-rank seeds) is refused instead of resumed on other noise.
SHARDING = "global-batch-blocks"
FINGERPRINT_ROWS = 64  # rows hashed for a tensor's fingerprint, evenly strided


@dataclasses.dataclass(frozen=True)
class Settings:
    """fit's checked arguments (Python numbers: NumPy scalars are converted)."""
    epochs: int
    batch_size: int
    lr: float
    optimizer: str
    seed: int
    checkpoint_dir: Optional[str]
    checkpoint_every: Optional[int]
    resume: object  # False, True or NEW_DATA
    progress: bool
    cuda_graph: bool

    def saved(self, world_size, data):
        """The settings a checkpoint records (and a resume compares)."""
        return {"epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr, "optimizer": self.optimizer,
                "seed": self.seed, "world_size": world_size, "sharding": SHARDING if world_size > 1 else None,
                "data": data}


def check_settings(epochs, batch_size, lr, optimizer, seed, checkpoint_dir, checkpoint_every, resume, progress,
                   cuda_graph):
    """Settings, or ValueError/TypeError naming the argument."""
    epochs = count("epochs", epochs, minimum=0)
    batch_size = count("batch_size", batch_size)
    if isinstance(lr, bool) or not isinstance(lr, Real) or not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
    if not isinstance(optimizer, str) or optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {list(OPTIMIZERS)}, got {optimizer!r}")
    if isinstance(seed, bool) or not isinstance(seed, Integral) or not 0 <= seed < check.MAX_SEED:
        raise ValueError(f"seed must be an integer in [0, 2**64), got {seed!r}")
    if checkpoint_every is not None:
        checkpoint_every = count("checkpoint_every", checkpoint_every)
    if isinstance(resume, str):
        if resume != NEW_DATA:
            raise ValueError(f"resume must be False, True or {NEW_DATA!r} (resume on other data), got {resume!r}")
    else:
        resume = bool(resume)
    if checkpoint_dir is not None:
        try:
            checkpoint_dir = os.fspath(checkpoint_dir)
        except TypeError:
            raise TypeError(f"checkpoint_dir must be a path, got {type(checkpoint_dir).__name__}") from None
    if (resume or checkpoint_every) and checkpoint_dir is None:
        raise ValueError("resume and checkpoint_every need a checkpoint_dir")
    return Settings(epochs, batch_size, float(lr), optimizer, int(seed), checkpoint_dir, checkpoint_every, resume,
                    bool(progress), bool(cuda_graph))


def count(name, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_model(model):
    if not hasattr(model, "stages") or not hasattr(model, "config"):
        raise TypeError(f"model must be an sslkern.nn autoencoder, got {type(model).__name__}")
    for name, param in model.named_parameters():
        if param.device.type == "meta":
            raise ValueError(f"the model's {name} is on the meta device (it holds no weights): nothing to train")


def check_precision(model, precision):
    """The autoencoders whose precision fit(precision=) sets for the run (none for None), each
    checked against its parameters' dtype; ValueError/TypeError naming precision."""
    if precision is None:
        return []
    layers = [m for m in model.modules() if isinstance(m, ssl_nn.TiedAutoencoder)]
    if not layers:
        raise ValueError(f"precision={precision!r} sets the autoencoders' product precision; "
                         f"{type(model).__name__} has no autoencoder objective")
    for layer in layers:
        check.precision(precision, layer.weight.dtype)
    return layers


def resolve_device(model, device, rank, world_size):
    """Where to train: `device`, or the model's; a real device that is there (a tensor can be
    made on it). Under torchrun a bare "cuda" is this process's LOCAL_RANK device."""
    if device is None:
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
    else:
        try:
            device = torch.device(device)
        except (RuntimeError, TypeError, ValueError) as exc:
            raise ValueError(f"device must be a torch device such as 'cpu' or 'cuda:0', got {device!r} ({exc})") from None
    if device.type == "cuda" and device.index is None and world_size > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)))
    if device.type == "meta":
        raise ValueError("device='meta' holds no data: train on a real device (cpu, cuda, ...)")
    try:
        torch.empty(1, device=device)
    except (RuntimeError, AssertionError, AttributeError) as exc:  # no such device, torch without its support
        raise ValueError(f"device {str(device)!r} is not available here: {exc}") from None
    return device


def check_cuda_graph(settings, device, world_size, model):
    """cuda_graph=True runs on CUDA, in one process; with noise, on the triton backend."""
    if not settings.cuda_graph:
        return
    if device.type != "cuda":
        raise ValueError(f"cuda_graph=True needs a CUDA device, got {device}")
    if world_size > 1:
        raise ValueError("cuda_graph=True runs in one process only (not under torch.distributed)")
    autoencoders = []
    for module, _ in model.stages():
        if isinstance(module, ssl_nn.PretextClassifier):
            # Its labels are drawn with a host-integer seed per step, which a graph would freeze.
            raise ValueError("cuda_graph=True is for autoencoders; a pretext model draws fresh "
                             "labels every step from a host seed")
        autoencoders.append(module)
    noisy = [module for module in autoencoders
             if module.corruption != "none" or module.penalties["higher_order"] != 0.0]
    if noisy:
        # fit draws the noise of a captured step from a device tensor (TiedAutoencoder.
        # use_device_noise), which only the triton backend reads on the device; the others
        # copy it to the host, a sync that a capture forbids.
        from .. import backends

        module = noisy[0]  # `auto` may choose by shape on CUDA: ask with the step's
        name = backends.resolve(backends.requested(), device, module.weight.dtype,
                                (settings.batch_size, module.n_visible, module.n_hidden)).name
        if name != "triton":
            raise ValueError(f"cuda_graph=True with noise (corruption={noisy[0].corruption!r}, or a higher-order "
                             f"term) needs the triton backend, which reads the noise seed on the device; the "
                             f"{name!r} backend reads it to the host, which a captured graph cannot do")


def check_noise_counters(batch_size, world_size, model):
    """A step's global batch must fit the 32-bit Philox counter: rank r draws from offset
    r · (its batch's elements), so the last rank's counters end at the global batch's size."""
    for module, _ in model.stages():
        per_element = module.counters_per_element() if isinstance(module, ssl_nn.TiedAutoencoder) else 1
        if getattr(module, "corruption", "none") != "none" or per_element > 1:
            check.counters(f"the global batch ({world_size} processes × batch_size {batch_size} × "
                           f"{module.n_visible} features × {per_element} draws)",
                           world_size * batch_size * module.n_visible * per_element)


def data_identity(X):
    """{"rows", "fingerprint"} of a tensor or MappedImages X: its length and a sha256 of its
    shape, dtype and FINGERPRINT_ROWS evenly strided rows (cheap for any size; a file and the
    tensor of its rows get the same one). For a DataLoader the length of its dataset when it
    has one, and no fingerprint."""
    if isinstance(X, (torch.Tensor, MappedImages)):
        n = X.shape[0]
        rows = torch.linspace(0, max(n - 1, 0), min(n, FINGERPRINT_ROWS)).round().long().unique()
        sample = X.rows(rows.numpy()) if isinstance(X, MappedImages) else X.detach()[rows.to(X.device)]
        sample = sample.to("cpu", torch.float64).contiguous()
        digest = hashlib.sha256(f"{tuple(X.shape)} {X.dtype}".encode())
        digest.update(sample.numpy().tobytes())
        return {"rows": int(n), "fingerprint": digest.hexdigest()[:32]}
    dataset = getattr(X, "dataset", None)
    try:
        rows = len(dataset) if dataset is not None else None
    except TypeError:  # an iterable dataset without a length
        rows = None
    return {"rows": rows, "fingerprint": None}


def check_resume_settings(saved, now, n_stages, resume):
    """CheckpointError's message, or None, for resuming under `now` what ran under `saved`."""
    # With several stages (layers) the epoch count decides when each layer stops.
    keys = RESUME_MUST_MATCH + (("epochs",) if n_stages > 1 else ())
    diffs = [f"{k}={saved.get(k)!r} in the checkpoint, {now[k]!r} now" for k in keys if saved.get(k) != now[k]]
    if diffs:
        return "cannot resume: " + "; ".join(diffs) + " (they fix the data order and the noise)"
    before, data = saved.get("data"), now["data"]
    if before is None or resume == NEW_DATA:  # checkpoints of sslkern <= 0.2.0 hold no data identity
        return None
    for key, what in (("rows", "rows"), ("fingerprint", "a fingerprint")):
        if before.get(key) is not None and data.get(key) is not None and before[key] != data[key]:
            return (f"cannot resume: the checkpoint was trained on other data ({what} {before[key]!r}, "
                    f"now {data[key]!r}); pass resume={NEW_DATA!r} to continue it on this data")
    return None
