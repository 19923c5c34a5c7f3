"""The checkpoint format and its folder.

A checkpoint file `checkpoint-<steps:09d>.pt` is a torch.save'd dict {"format", "version",
"sha256", "payload"}; the payload (itself torch.save'd bytes) holds the model's state_dict
(with its noise step counter), the optimizer's, the run's position ("run"), the settings it
ran under ("settings", with the data's length and fingerprint) and the model's config. The
sha256 catches a damaged file when it is read. Files are written atomically (a hidden
temporary `.checkpoint-*.tmp`, fsync, rename); the newest KEEP_CHECKPOINTS are kept.

Errors while writing (disk full, a read-only or vanished folder) raise CheckpointError naming
the path and the OS error; the previous checkpoint is left as it was.
"""
import contextlib
import glob
import hashlib
import io
import os
import re
import uuid
import warnings

import torch

from .. import _atomic
from .distributed import on_rank_zero

CHECKPOINT_FORMAT = "sslkern-checkpoint"
CHECKPOINT_VERSION = 1
CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d{9})\.pt$")
TEMPORARY_PATTERN = ".checkpoint-*.tmp"  # what atomic_write leaves when a write is killed
KEEP_CHECKPOINTS = 3

atomic_write = _atomic.atomic_write  # looked up at each write (tests inject faults here)


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used (damaged, written by another model or on other data)
    or cannot be written (the message names the path and the OS error)."""


def save_checkpoint(path, model, opt, run, settings):
    """Write a checkpoint atomically; CheckpointError if the file system refuses."""
    payload = {"model": model.state_dict(), "optimizer": opt.state_dict(), "run": run,
               "settings": settings, "config": model.config()}
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    data = buffer.getvalue()
    outer = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION,
             "sha256": hashlib.sha256(data).hexdigest(),
             "payload": torch.frombuffer(bytearray(data), dtype=torch.uint8)}
    blob = io.BytesIO()
    torch.save(outer, blob)  # in memory first: a failing write is then a plain OSError
    with _os_errors("cannot write checkpoint", path):
        # The folder is not re-created: one that vanished mid-run is an error, not a fresh start.
        with atomic_write(path, make_folder=False) as f:
            f.write(blob.getvalue())


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


# Settings of how a model trains, not of what it is: a run may resume under another value
# (a checkpoint from before a setting existed has no entry for it).
TRAINING_SETTINGS = ("precision",)


def check_compatible(checkpoint, model, path="checkpoint"):
    saved, here = checkpoint.get("config"), model.config()
    if saved != here:
        saved_flat, here_flat = _model_entries(saved), _model_entries(here)
        diffs = [f"{k}: checkpoint {saved_flat.get(k)!r}, model {here_flat.get(k)!r}"
                 for k in sorted(set(saved_flat) | set(here_flat)) if saved_flat.get(k) != here_flat.get(k)]
        if not diffs:
            return
        raise CheckpointError(f"{path} was written by a different model (" + "; ".join(diffs) + ")")


def prepare_folder(folder):
    """Make `folder`, check that a file can be written there and removed (a probe), and
    remove the temporaries of writes that were killed. CheckpointError if it cannot. (Rank 0
    only: a temporary there may be another rank's write in progress.)"""
    with _os_errors("checkpoint folder is not usable", folder):
        os.makedirs(folder, exist_ok=True)
        probe = os.path.join(folder, f".sslkern-probe-{uuid.uuid4().hex}.tmp")
        with open(probe, "wb") as f:
            f.write(b"sslkern")
        os.unlink(probe)
    for stale in glob.glob(os.path.join(glob.escape(folder), TEMPORARY_PATTERN)):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(stale)


class CheckpointWriter:
    """Writes checkpoints on rank 0 (every `every` steps and at every epoch's end) and prunes
    the old ones; the other ranks wait for it and raise its CheckpointError if it fails."""

    def __init__(self, folder, every, rank, world_size):
        self.folder, self.every, self.rank, self.world_size = folder, every, rank, world_size

    def due(self, steps):
        return self.folder is not None and self.every is not None and steps % self.every == 0

    def write(self, model, opt, run, settings):
        if self.folder is None:
            return
        on_rank_zero(lambda: self._write(model, opt, run, settings), self.rank, self.world_size)

    def _write(self, model, opt, run, settings):
        path = os.path.join(self.folder, f"checkpoint-{run['steps']:09d}.pt")
        save_checkpoint(path, model, opt, run, settings)
        for old in checkpoint_paths(self.folder)[:-KEEP_CHECKPOINTS]:
            with _os_errors("cannot remove the old checkpoint", old):
                os.unlink(old)


@contextlib.contextmanager
def _os_errors(what, path):
    try:
        yield
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise CheckpointError(f"{what} {os.fspath(path)}: {reason} (errno {exc.errno})") from exc


def _model_entries(config):
    return {key: value for key, value in _flatten(config).items()
            if key.rsplit(".", 1)[-1] not in TRAINING_SETTINGS}


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
