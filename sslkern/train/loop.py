"""fit: check everything, then train stage by stage, epoch by epoch, checkpointing as it goes."""
import dataclasses
import os
import sys
import time
import warnings

import torch

from . import steps
from .batches import Batches, check_data
from .checkpoints import CheckpointError, CheckpointWriter, checkpoint_paths, latest_checkpoint, prepare_folder
from .distributed import barrier, init_distributed, on_rank_zero, set_ranks, sum_over_ranks
from .settings import (check_cuda_graph, check_model, check_noise_counters, check_precision, check_resume_settings,
                       check_settings, data_identity, resolve_device)


def fit(model, X, *, epochs, batch_size, lr, optimizer="sgd", device=None, seed=0,
        checkpoint_dir=None, checkpoint_every=None, resume=False, progress=True, cuda_graph=False,
        precision=None):
    """Train `model` on X and return its history.

    model: a TiedAutoencoder (or preset), a StackedAutoencoder (greedy layer-wise: each
    layer trains `epochs` epochs on the codes of the layers below) or a PretextClassifier
    (X: images as rows; each step draws fresh pretext labels). X: a float tensor
    [N, n_visible], an sslkern.data.MappedImages (sslkern.data.open_mapped: a file larger
    than memory, read a batch at a time with the next ones prefetched) or a DataLoader of
    such batches (or of (x, label) pairs). optimizer: "sgd",
    "momentum" (SGD, momentum 0.9) or "adam". device: where to train (default: the model's).
    seed: the data order (an integer in [0, 2**64)). checkpoint_every: also checkpoint every
    that many steps (every epoch's end always is). resume: continue from the newest good
    checkpoint in checkpoint_dir (a damaged one is skipped with a warning); a checkpoint of
    other data (another length or fingerprint) is refused unless resume="new-data".
    progress: a progress bar on a terminal, one line per epoch when stderr is not one (a
    log file, CI). precision: "default", "bf16" or "fp16" — the autoencoders' product
    precision for this run (sslkern.autoencoder_loss; float32 parameters, which stay the
    master weights), restored when fit returns; None keeps each model's own. cuda_graph:
    capture the training step in a CUDA graph (CUDA, one
    process; a noisy model then draws its noise from a device tensor, use_device_noise, and
    needs the triton backend). In one process without a CUDA graph, a TiedAutoencoder stage whose
    parameters all train and that has no hooks steps without an autograd graph, through a
    sslkern.step.AutoencoderStep: "sgd" as one fused op, the others from its value_and_grad
    (same weights to rounding); anything else takes forward() and loss.backward(). Under
    torch.distributed (torchrun), batch_size is per process: W processes train like one
    with batch W·batch_size, the same batches and noise (to rounding). A tensor or mapped X is
    sharded by fit itself; give a DataLoader a DistributedSampler (fit calls its set_epoch)
    and equal batch sizes on every rank. Under `torchrun --max-restarts` with resume=True, a
    restarted group continues from the newest complete checkpoint. Python and NumPy numbers
    are both accepted.

    Every argument, the device (a real one, available), the checkpoint folder (a probe file is
    written there and removed) and the resume point are checked before the model is touched:
    a call that fails on them leaves the model where and as it was.

    Returns a dict: loss (mean objective per epoch), samples_per_second (per epoch), stage
    (the layer each epoch trained), steps (optimizer steps in all), world_size.
    """
    settings = check_settings(epochs, batch_size, lr, optimizer, seed, checkpoint_dir, checkpoint_every, resume,
                              progress, cuda_graph)
    check_model(model)
    precision_layers = check_precision(model, precision)
    rank, world_size = init_distributed()
    device = resolve_device(model, device, rank, world_size)
    if device.type == "cuda" and world_size > 1:
        torch.cuda.set_device(device)  # nccl's collectives (and broadcast_object_list) use it
    check_cuda_graph(settings, device, world_size, model)
    check_data(X, model.n_visible, world_size)
    check_noise_counters(settings.batch_size, world_size, model)
    saved_settings = settings.saved(world_size, data_identity(X))
    checkpoint = _starting_point(model, settings, saved_settings, rank, world_size)

    # Nothing above changed the model; from here on it trains.
    model.to(device)
    set_ranks(model, rank, world_size)
    state, optimizer_state = RunState(), None
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        state, optimizer_state = RunState.from_dict(checkpoint["run"]), checkpoint["optimizer"]
    batches = Batches(X, model.n_visible, settings.batch_size, settings.seed, rank, world_size, device)
    writer = CheckpointWriter(settings.checkpoint_dir, settings.checkpoint_every, rank, world_size)
    run = _Run(model, settings, saved_settings, batches, writer, Progress(settings.progress and rank == 0), device,
               world_size)
    model.train()
    stages = model.stages()
    saved_precisions = [layer.precision for layer in precision_layers]
    try:
        for layer in precision_layers:
            layer.precision = precision
        for index in range(state.stage, len(stages)):
            stage = _stage(run, index, stages, optimizer_state)
            optimizer_state = None
            for epoch in range(state.epoch, settings.epochs):
                _train_epoch(state, run, stage, epoch)
            state.start_stage(index + 1)
    finally:
        for layer, saved in zip(precision_layers, saved_precisions):
            layer.precision = saved
    barrier(world_size)
    return dict(state.history, steps=state.steps, world_size=world_size)


@dataclasses.dataclass
class RunState:
    """Where a run stands: what a checkpoint's "run" holds, and what resume restores."""
    stage: int = 0
    epoch: int = 0  # the next epoch to train
    batch: int = 0  # batches of that epoch already trained
    steps: int = 0  # optimizer steps in all
    loss_sum: float = 0.0  # of the epoch so far: sum of batch loss · batch size
    samples: int = 0  # of the epoch so far
    history: dict = dataclasses.field(default_factory=lambda: {"loss": [], "samples_per_second": [], "stage": []})

    @classmethod
    def from_dict(cls, run):
        return cls(**run)

    def as_dict(self):
        return dataclasses.asdict(self)

    def start_stage(self, stage):
        self.stage, self.epoch, self.batch = stage, 0, 0


@dataclasses.dataclass(frozen=True)
class _Run:
    """What stays fixed through a run."""
    model: torch.nn.Module
    settings: object
    saved_settings: dict
    batches: Batches
    writer: CheckpointWriter
    progress: "Progress"
    device: torch.device
    world_size: int


@dataclasses.dataclass(frozen=True)
class _Stage:
    index: int
    label: str
    data: Batches
    opt: torch.optim.Optimizer
    step: object  # xb -> loss


def _starting_point(model, settings, saved_settings, rank, world_size):
    """The checkpoint to resume from, or None; prepares the checkpoint folder. Rank 0 reads
    the folder and decides, and every rank gets its answer (the same checkpoint, or the same
    error): ranks that looked for themselves could see different newest files. Changes
    nothing but that folder."""
    if settings.checkpoint_dir is None:
        return None
    return on_rank_zero(lambda: _newest_checkpoint(model, settings, saved_settings), rank, world_size)


def _newest_checkpoint(model, settings, saved_settings):
    folder = settings.checkpoint_dir
    if not settings.resume and os.path.isdir(folder) and checkpoint_paths(folder):
        raise ValueError(f"checkpoint_dir {folder!r} already holds checkpoints of another run: "
                         "pass resume=True to continue it, or use an empty folder")
    prepare_folder(folder)
    if not settings.resume:
        return None
    checkpoint = latest_checkpoint(folder, model=model)
    if checkpoint is None:
        warnings.warn(f"resume={settings.resume!r} but {folder!r} holds no checkpoint: training from the start",
                      stacklevel=6)  # the caller of fit
        return None
    problem = check_resume_settings(checkpoint["settings"], saved_settings, len(model.stages()), settings.resume)
    if problem:
        raise CheckpointError(problem)
    return checkpoint


def _stage(run, index, stages, optimizer_state):
    """Stage `index`: its optimizer (restored on resume, with the caller's lr), step and data."""
    module, transform = stages[index]
    settings = run.settings
    opt = steps.make_optimizer(settings.optimizer, list(module.parameters()), settings.lr,
                               capturable=settings.cuda_graph)
    if optimizer_state is not None:
        opt.load_state_dict(optimizer_state)
        for group in opt.param_groups:  # the caller's lr, not the checkpoint's
            group["lr"] = settings.lr
    step = steps.make_step(module, opt, settings.optimizer, settings.cuda_graph, run.world_size, run.device)
    label = f"layer {index + 1}/{len(stages)} " if len(stages) > 1 else ""
    return _Stage(index, label, run.batches.for_stage(index, transform), opt, step)


def _train_epoch(state, run, stage, epoch):
    n_batches = stage.data.batches_per_epoch()
    title = f"{stage.label}epoch {epoch + 1}/{run.settings.epochs}"
    loss_sum = torch.tensor(state.loss_sum, dtype=torch.float64, device=run.device)
    samples, timed_samples = state.samples, 0
    bar = run.progress.bar(n_batches, state.batch, title)
    started = time.perf_counter()
    for batch_index, xb in enumerate(stage.data.epoch(epoch, state.batch), state.batch):
        loss = stage.step(xb)
        loss_sum += loss.detach().double() * xb.shape[0]
        samples += xb.shape[0]
        timed_samples += xb.shape[0] * run.world_size
        state.steps += 1
        bar.update(batch_index, loss, timed_samples / max(time.perf_counter() - started, 1e-9))
        if run.writer.due(state.steps) and batch_index + 1 < n_batches:
            state.stage, state.epoch, state.batch = stage.index, epoch, batch_index + 1
            state.loss_sum, state.samples = loss_sum.item(), samples
            run.writer.write(run.model, stage.opt, state.as_dict(), run.saved_settings)
    if run.device.type == "cuda":
        torch.cuda.synchronize(run.device)
    elapsed = max(time.perf_counter() - started, 1e-9)
    bar.close()
    totals = torch.stack([loss_sum, torch.tensor(float(samples), dtype=torch.float64, device=run.device)])
    totals = sum_over_ranks(totals, run.world_size)
    epoch_loss = (totals[0] / totals[1].clamp_min(1)).item()
    state.history["loss"].append(epoch_loss)
    state.history["samples_per_second"].append(timed_samples / elapsed)
    state.history["stage"].append(stage.index)
    state.stage, state.epoch, state.batch, state.loss_sum, state.samples = stage.index, epoch + 1, 0, 0.0, 0
    run.writer.write(run.model, stage.opt, state.as_dict(), run.saved_settings)
    run.progress.line(f"{title}  loss {epoch_loss:.4f}  {timed_samples / elapsed:.0f} samples/s")


class Progress:
    """On a terminal (stderr is a tty): a tqdm bar per epoch, then one line. Elsewhere (a log
    file, CI, nohup): only the line per epoch, no carriage-return frames. Off: nothing."""

    def __init__(self, enabled, stream=None):
        self.enabled = enabled
        stream = sys.stderr if stream is None else stream
        isatty = getattr(stream, "isatty", None)
        try:
            self.terminal = enabled and callable(isatty) and bool(isatty())
        except (ValueError, OSError):  # a closed stream
            self.terminal = False

    def bar(self, total, initial, title):
        return _Bar(total, initial, title) if self.terminal else _NO_BAR

    def line(self, text):
        if not self.enabled:
            return
        if self.terminal:
            from tqdm.auto import tqdm

            tqdm.write(text)
        else:
            print(text, flush=True)


class _Bar:
    def __init__(self, total, initial, title):
        from tqdm.auto import tqdm

        self.tqdm = tqdm(total=total, initial=initial, desc=title, leave=False, dynamic_ncols=True)
        self.refresh = max(1, total // 20)

    def update(self, batch_index, loss, samples_per_second):
        self.tqdm.update(1)
        if (batch_index + 1) % self.refresh == 0:
            self.tqdm.set_postfix(loss=f"{loss.item():.4g}", samples_s=f"{samples_per_second:.0f}")

    def close(self):
        self.tqdm.close()


class _NoBar:
    def update(self, batch_index, loss, samples_per_second):
        pass

    def close(self):
        pass


_NO_BAR = _NoBar()
