"""Training: `fit` runs minibatch training of an sslkern autoencoder, with progress bar,
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
Rank 0 writes checkpoints and shows the progress bar.
"""
import glob
import hashlib
import io
import itertools
import math
import os
import re
import time
import warnings

import torch
import torch.distributed as dist
import torch.nn.modules.module as nn_module

from . import nn as ssl_nn
from ._atomic import atomic_write

OPTIMIZERS = ("sgd", "momentum", "adam")
CHECKPOINT_FORMAT = "sslkern-checkpoint"
CHECKPOINT_VERSION = 1
CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d{9})\.pt$")
KEEP_CHECKPOINTS = 3
# Settings that fix the data order and noise: a resume under other values would silently
# train a different model, so it is refused.
_RESUME_MUST_MATCH = ("batch_size", "optimizer", "seed", "world_size")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used (damaged, or written by another model)."""


# ---------------------------------------------------------------------------------------------
# fit


def fit(model, X, *, epochs, batch_size, lr, optimizer="sgd", device=None, seed=0,
        checkpoint_dir=None, checkpoint_every=None, resume=False, progress=True, cuda_graph=False):
    """Train `model` on X and return its history.

    model: a TiedAutoencoder (or preset) or a StackedAutoencoder (greedy layer-wise: each
    layer trains `epochs` epochs on the codes of the layers below). X: a float tensor
    [N, n_visible] or a DataLoader of such batches (or of (x, label) pairs). optimizer: "sgd",
    "momentum" (SGD, momentum 0.9) or "adam". device: where to train (default: the model's).
    checkpoint_every: also checkpoint every that many steps (every epoch's end always is).
    resume: continue from the newest good checkpoint in checkpoint_dir (a damaged one is
    skipped with a warning). cuda_graph: capture the training step in a CUDA graph (CUDA,
    noise-free models, one process). In one process without a CUDA graph, a TiedAutoencoder
    stage whose parameters all train and that has no hooks steps without an autograd graph:
    "sgd" as one fused op (TiedAutoencoder.sgd_step), the others from
    TiedAutoencoder.value_and_grad (same weights to rounding); anything else takes
    forward() and loss.backward(). Under torch.distributed, give a DataLoader a
    DistributedSampler (fit calls its set_epoch); a tensor X is sharded by fit itself.

    Returns a dict: loss (mean objective per epoch), samples_per_second (per epoch), stage
    (the layer each epoch trained), steps (optimizer steps in all), world_size.
    """
    epochs = _count("epochs", epochs, minimum=0)
    batch_size = _count("batch_size", batch_size)
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {list(OPTIMIZERS)}, got {optimizer!r}")
    if checkpoint_every is not None:
        checkpoint_every = _count("checkpoint_every", checkpoint_every)
    if (resume or checkpoint_every) and checkpoint_dir is None:
        raise ValueError("resume and checkpoint_every need a checkpoint_dir")
    if not hasattr(model, "stages"):
        raise TypeError(f"model must be an sslkern.nn autoencoder, got {type(model).__name__}")

    rank, world_size = _init_distributed()
    device = _device_of(model) if device is None else torch.device(device)
    if device.type == "cuda" and device.index is None and world_size > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)))
    model.to(device)
    for module in model.modules():
        if isinstance(module, ssl_nn.TiedAutoencoder):
            module.rank, module.world_size = rank, world_size
    batches = _Batches(X, model.n_visible, batch_size, seed, rank, world_size, device)
    settings = {"epochs": epochs, "batch_size": batch_size, "lr": float(lr), "optimizer": optimizer,
                "seed": seed, "world_size": world_size}

    run = {"stage": 0, "epoch": 0, "batch": 0, "steps": 0, "loss_sum": 0.0, "samples": 0,
           "history": {"loss": [], "samples_per_second": [], "stage": []}}
    optimizer_state = None
    if resume:
        checkpoint = latest_checkpoint(checkpoint_dir, model=model, map_location=device)
        if checkpoint is not None:
            _check_resume_settings(checkpoint["settings"], settings, len(model.stages()))
            model.load_state_dict(checkpoint["model"])
            optimizer_state = checkpoint["optimizer"]
            run = checkpoint["run"]
        else:
            warnings.warn(f"resume=True but {checkpoint_dir!r} holds no checkpoint: training from the start",
                          stacklevel=2)
    elif checkpoint_dir is not None and os.path.isdir(checkpoint_dir) and checkpoint_paths(checkpoint_dir):
        raise ValueError(f"checkpoint_dir {checkpoint_dir!r} already holds checkpoints of another run: "
                         "pass resume=True to continue it, or use an empty folder")
    writer = _CheckpointWriter(checkpoint_dir, checkpoint_every, rank, world_size)

    model.train()
    stages = model.stages()
    for stage in range(run["stage"], len(stages)):
        module, transform = stages[stage]
        params = list(module.parameters())
        opt = _make_optimizer(optimizer, params, lr, capturable=cuda_graph)
        if optimizer_state is not None:
            opt.load_state_dict(optimizer_state)
            optimizer_state = None
            for group in opt.param_groups:  # the caller's lr, not the checkpoint's
                group["lr"] = float(lr)
        step_fn = _make_step(module, opt, optimizer, cuda_graph, world_size, device)
        stage_data = batches.for_stage(stage, transform)
        for epoch in range(run["epoch"], epochs):
            _train_epoch(run, stage, epoch, stage_data, step_fn, model, opt, settings, writer, progress, rank,
                         device, label=f"layer {stage + 1}/{len(stages)} " if len(stages) > 1 else "")
        run.update(stage=stage + 1, epoch=0, batch=0)
    writer.barrier()
    history = dict(run["history"], steps=run["steps"], world_size=world_size)
    return history


def _train_epoch(run, stage, epoch, data, step_fn, model, opt, settings, writer, progress, rank, device, label):
    from tqdm.auto import tqdm

    n_batches = data.batches_per_epoch()
    start = run["batch"]
    loss_sum = torch.tensor(run["loss_sum"], dtype=torch.float64, device=device)
    samples = run["samples"]
    bar = tqdm(total=n_batches, initial=start, desc=f"{label}epoch {epoch + 1}/{settings['epochs']}",
               disable=not progress or rank != 0, leave=False, dynamic_ncols=True)
    started, timed_samples = time.perf_counter(), 0
    refresh = max(1, n_batches // 20)
    for batch_index, xb in enumerate(data.epoch(epoch, start), start):
        loss = step_fn(xb)
        loss_sum += loss.detach().double() * xb.shape[0]
        samples += xb.shape[0]
        timed_samples += xb.shape[0] * settings["world_size"]
        run["steps"] += 1
        bar.update(1)
        if (batch_index + 1) % refresh == 0:
            elapsed = max(time.perf_counter() - started, 1e-9)
            bar.set_postfix(loss=f"{loss.item():.4g}", samples_s=f"{timed_samples / elapsed:.0f}")
        if writer.due(run["steps"]) and batch_index + 1 < n_batches:
            run.update(stage=stage, epoch=epoch, batch=batch_index + 1, loss_sum=loss_sum.item(), samples=samples)
            writer.write(model, opt, run, settings)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elapsed = max(time.perf_counter() - started, 1e-9)
    bar.close()
    totals = torch.stack([loss_sum, torch.tensor(float(samples), dtype=torch.float64, device=device)])
    if settings["world_size"] > 1:
        dist.all_reduce(totals)
    epoch_loss = (totals[0] / totals[1].clamp_min(1)).item()
    history = run["history"]
    history["loss"].append(epoch_loss)
    history["samples_per_second"].append(timed_samples / elapsed)
    history["stage"].append(stage)
    run.update(stage=stage, epoch=epoch + 1, batch=0, loss_sum=0.0, samples=0)
    writer.write(model, opt, run, settings)
    if progress and rank == 0:
        tqdm.write(f"{label}epoch {epoch + 1}/{settings['epochs']}  loss {epoch_loss:.4f}  "
                   f"{timed_samples / elapsed:.0f} samples/s")


def _make_optimizer(name, params, lr, capturable=False):
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    if name == "momentum":
        return torch.optim.SGD(params, lr=lr, momentum=0.9)
    return torch.optim.Adam(params, lr=lr, capturable=capturable)


def _make_step(module, opt, optimizer, cuda_graph, world_size, device):
    if world_size == 1 and not cuda_graph and _graph_free_ok(module):
        return _graph_free_step(module, opt, fused_sgd=optimizer == "sgd")
    trainer = module
    if world_size > 1:
        from torch.nn.parallel import DistributedDataParallel

        trainer = DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)

    def eager_step(xb):
        loss = trainer(xb)
        opt.zero_grad(set_to_none=not cuda_graph)
        loss.backward()
        opt.step()
        return loss

    if not cuda_graph:
        return eager_step
    if device.type != "cuda":
        raise ValueError(f"cuda_graph=True needs a CUDA device, got {device}")
    if world_size > 1:
        raise ValueError("cuda_graph=True runs in one process only (not under torch.distributed)")
    if module.corruption != "none":
        # The op takes its Philox seed as a host integer: a captured graph would replay the
        # same noise every step, which the noise contract forbids.
        raise ValueError(f"cuda_graph=True needs a noise-free model (corruption='none'), got corruption={module.corruption!r}")
    return _GraphedStep(module, eager_step)


def _graph_free_ok(module):
    """Whether skipping autograd and forward() changes nothing: a plain TiedAutoencoder whose
    parameters all train, with no hooks to call."""
    plain = ssl_nn.TiedAutoencoder
    if not isinstance(module, plain) or type(module).forward is not plain.forward:
        return False
    params = (module.weight, module.hidden_bias, module.visible_bias)
    hooks = [module._forward_hooks, module._forward_pre_hooks, module._backward_hooks,
             module._backward_pre_hooks, nn_module._global_forward_hooks,
             nn_module._global_forward_pre_hooks, nn_module._global_backward_hooks,
             nn_module._global_backward_pre_hooks]
    hooks += [getattr(p, name, None) for p in params for name in ("_backward_hooks", "_post_accumulate_grad_hooks")]
    return all(p.requires_grad for p in params) and not any(hooks)


def _graph_free_step(module, opt, fused_sgd):
    """The step without an autograd graph: plain SGD fused into the objective's op, any other
    optimizer fed by autoencoder_value_and_grad (the same numbers as loss.backward(), to
    rounding, for less per-step overhead). The fused step reads the optimizer's lr each step."""
    params = (module.weight, module.hidden_bias, module.visible_bias)

    def fused_sgd_step(xb):
        return module.sgd_step(xb, opt.param_groups[0]["lr"])

    def value_and_grad_step(xb):
        loss, grads = module.value_and_grad(xb)
        for param, grad in zip(params, grads):
            param.grad = grad
        opt.step()
        return loss

    return fused_sgd_step if fused_sgd else value_and_grad_step


class _GraphedStep:
    """Eager warm-up steps on a side stream, then one captured step replayed for every batch
    of the captured size (other sizes, e.g. an epoch's last batch, run eagerly)."""

    WARMUP = 3

    def __init__(self, module, eager_step):
        self.module, self.eager_step = module, eager_step
        self.graph = self.static_x = self.static_loss = None
        self.warmed = 0

    def __call__(self, xb):
        if self.graph is not None and xb.shape == self.static_x.shape:
            self.static_x.copy_(xb)
            self.graph.replay()
            self.module.step += 1  # forward() is not called on replay; keep the counter true
            return self.static_loss.clone()
        if self.graph is not None or self.warmed < self.WARMUP:
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                loss = self.eager_step(xb)
            torch.cuda.current_stream().wait_stream(stream)
            self.warmed += self.graph is None
            return loss
        self.static_x = xb.clone()
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.static_loss = self.eager_step(self.static_x)
        self.graph.replay()
        return self.static_loss.clone()


# ---------------------------------------------------------------------------------------------
# Data


class _Batches:
    """Batches of a tensor (shuffled per epoch, sharded by rank) or of a DataLoader."""

    def __init__(self, X, n_visible, batch_size, seed, rank, world_size, device):
        self.batch_size, self.seed, self.rank, self.world_size, self.device = batch_size, seed, rank, world_size, device
        self.n_visible = n_visible
        if isinstance(X, torch.Tensor):
            _check_batch(X, n_visible, "X")
            if X.shape[0] < world_size:
                raise ValueError(f"X has {X.shape[0]} rows, fewer than the {world_size} processes")
            self.tensor, self.loader = X.to(device), None
        elif isinstance(X, torch.utils.data.DataLoader):
            self.tensor, self.loader = None, X
        else:
            raise TypeError(f"X must be a float tensor [N, {n_visible}] or a torch DataLoader, got {type(X).__name__}")
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
        return math.ceil((self.tensor.shape[0] // self.world_size) / self.batch_size)

    def epoch(self, epoch, start=0):
        """The batches of `epoch`, skipping the first `start` (for resume)."""
        if self.loader is not None:
            sampler = getattr(self.loader, "sampler", None)
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(epoch)
            for xb in itertools.islice(self.loader, start, None):
                xb = xb[0] if isinstance(xb, (tuple, list)) else xb
                _check_batch(xb, self.n_visible, "a batch of X")
                xb = xb.to(self.device)
                if self.transform is not None:
                    with torch.no_grad():
                        xb = self.transform(xb)
                yield xb
            return
        n = self.tensor.shape[0]
        gen = torch.Generator().manual_seed(ssl_nn.step_seed(self.seed, self.stage * 2**32 + epoch))
        order = torch.randperm(n, generator=gen)
        local = order[self.rank: (n // self.world_size) * self.world_size: self.world_size].to(self.device)
        for first in range(start * self.batch_size, local.shape[0], self.batch_size):
            yield self.stage_tensor.index_select(0, local[first: first + self.batch_size])


def _check_batch(x, n_visible, name):
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.dtype.is_floating_point:
        raise TypeError(f"{name} must be floating point (images scaled to [0, 1]), got {x.dtype}")
    if x.dim() != 2 or x.shape[1] != n_visible:
        raise ValueError(f"{name} must have shape [N, {n_visible}] (the model's n_visible), got {tuple(x.shape)}")


# ---------------------------------------------------------------------------------------------
# Checkpoints


class _CheckpointWriter:
    def __init__(self, folder, every, rank, world_size):
        self.folder, self.every, self.rank, self.world_size = folder, every, rank, world_size

    def due(self, steps):
        return self.folder is not None and self.every is not None and steps % self.every == 0

    def write(self, model, opt, run, settings):
        if self.folder is None:
            return
        if self.rank == 0:
            path = os.path.join(self.folder, f"checkpoint-{run['steps']:09d}.pt")
            save_checkpoint(path, model, opt, run, settings)
            for old in checkpoint_paths(self.folder)[:-KEEP_CHECKPOINTS]:
                os.unlink(old)
        self.barrier()

    def barrier(self):
        if self.world_size > 1:
            dist.barrier()


def save_checkpoint(path, model, opt, run, settings):
    """Write a checkpoint atomically. The file holds a sha256 of its payload, so a damaged
    file (truncated or with flipped bits) is detected when it is read."""
    payload = {"model": model.state_dict(), "optimizer": opt.state_dict(), "run": run,
               "settings": settings, "config": model.config()}
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    data = buffer.getvalue()
    outer = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION,
             "sha256": hashlib.sha256(data).hexdigest(),
             "payload": torch.frombuffer(bytearray(data), dtype=torch.uint8)}
    with atomic_write(path) as f:
        torch.save(outer, f)


def load_checkpoint(path, map_location="cpu"):
    """The payload of a checkpoint file, verified; CheckpointError if it is damaged."""
    try:
        outer = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, EOFError, UnpicklingError, ...
        raise CheckpointError(f"checkpoint {path} cannot be read (truncated or not a checkpoint): {exc}") from exc
    if not isinstance(outer, dict) or outer.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"checkpoint {path} is not an sslkern checkpoint")
    if outer.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"checkpoint {path} has version {outer.get('version')!r}, this sslkern reads {CHECKPOINT_VERSION}")
    data = outer["payload"].numpy().tobytes()
    if hashlib.sha256(data).hexdigest() != outer.get("sha256"):
        raise CheckpointError(f"checkpoint {path} is corrupt: its sha256 does not match its contents")
    return torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)


def checkpoint_paths(folder):
    """Checkpoint files in `folder`, oldest first."""
    names = [os.path.basename(p) for p in glob.glob(os.path.join(glob.escape(os.fspath(folder)), "checkpoint-*.pt"))]
    return [os.path.join(folder, n) for n in sorted(n for n in names if CHECKPOINT_PATTERN.match(n))]


def latest_checkpoint(folder, model=None, map_location="cpu"):
    """The newest checkpoint in `folder` that reads back intact (None if there is none).
    Damaged ones are skipped with a warning; one written by a model of another shape or
    configuration than `model` is an error."""
    paths = checkpoint_paths(folder) if os.path.isdir(folder) else []
    failures = []
    for path in reversed(paths):
        try:
            checkpoint = load_checkpoint(path, map_location=map_location)
        except CheckpointError as exc:
            warnings.warn(f"{exc}; trying the previous checkpoint", stacklevel=3)
            failures.append(str(exc))
            continue
        if model is not None:
            check_compatible(checkpoint, model, path)
        return checkpoint
    if failures:
        raise CheckpointError(f"no usable checkpoint in {folder}:\n  " + "\n  ".join(failures))
    return None


def check_compatible(checkpoint, model, path="checkpoint"):
    saved, here = checkpoint.get("config"), model.config()
    if saved != here:
        keys = sorted(set(_flatten(saved)) | set(_flatten(here)))
        diffs = [f"{k}: checkpoint {_flatten(saved).get(k)!r}, model {_flatten(here).get(k)!r}"
                 for k in keys if _flatten(saved).get(k) != _flatten(here).get(k)]
        raise CheckpointError(f"{path} was written by a different model (" + "; ".join(diffs) + ")")


def _flatten(config, prefix=""):
    if isinstance(config, dict):
        out = {}
        for key, value in config.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    if isinstance(config, list) and config and isinstance(config[0], dict):
        out = {}
        for i, value in enumerate(config):
            out.update(_flatten(value, f"{prefix}{i}."))
        return out
    return {prefix.rstrip("."): config}


def _check_resume_settings(saved, now, n_stages):
    # With several stages (layers) the epoch count decides when each layer stops.
    keys = _RESUME_MUST_MATCH + (("epochs",) if n_stages > 1 else ())
    diffs = [f"{k}={saved.get(k)!r} in the checkpoint, {now[k]!r} now" for k in keys if saved.get(k) != now[k]]
    if diffs:
        raise CheckpointError("cannot resume: " + "; ".join(diffs) + " (they fix the data order and the noise)")


# ---------------------------------------------------------------------------------------------
# Helpers


def _init_distributed():
    """(rank, world_size); initialises torch.distributed from torchrun's environment."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _device_of(model):
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def _count(name, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value
