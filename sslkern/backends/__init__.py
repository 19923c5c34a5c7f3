"""Backend choice as data.

Each backend says what it supports; `resolve` picks the requested one or, for "auto", the
first of the device's preference list that fits, and otherwise raises one error that lists
every backend's reasons. Nothing falls back silently: a backend named by the user either
runs or fails with its reasons.

The requested name comes from, in order: the innermost `use_backend(...)` block of the
current thread or asyncio task, `set_backend(...)` (process-wide), the SSLKERN_BACKEND
environment variable, "auto".
"""
import contextlib
import contextvars
import importlib
import os
import threading

import torch

from . import cuda_auto

NAMES = ("reference", "native", "triton")
AUTO = "auto"
# "auto" preference per device type: fastest first. On CUDA, triton's fused kernels beat
# torch products + passes at every shape we target (see benchmarks/RESULTS.md).
# On CUDA the order may also depend on the shape: see cuda_auto.py (a table of measurements).
AUTO_ORDER = {"cpu": ("native", "reference"), "cuda": cuda_auto.DEFAULT_ORDER}
_MODULES = {"reference": ".reference", "native": ".native", "triton": ".triton"}

_instances = {}
_requested = os.environ.get("SSLKERN_BACKEND", AUTO) or AUTO  # set_backend: the process-wide choice
# use_backend: a per-context override (None: none). A ContextVar is local to each thread and
# asyncio task, so overlapping blocks in two threads or tasks cannot undo each other's choice.
_override = contextvars.ContextVar("sslkern_use_backend", default=None)


class _ThreadChoice(threading.local):
    """The same override, per thread, for torch.compile: dynamo cannot trace ContextVar.get,
    but reads (and guards on) a threading.local attribute, so a compiled function recompiles
    when the thread's choice changes. Kept equal to the ContextVar's value at every block
    entry and exit; asyncio tasks of one thread that interleave use_backend blocks can leave
    it out of step, so such tasks should not run compiled sslkern code."""
    name = None


_thread_choice = _ThreadChoice()


class BackendError(RuntimeError):
    """No backend (or not the requested one) can run this call; the message says why."""


def get(name):
    """The backend object for `name` (created on first use)."""
    if name not in _MODULES:
        raise ValueError(f"backend must be one of {list(NAMES) + [AUTO]}, got {name!r}")
    if name not in _instances:
        try:
            module = importlib.import_module(_MODULES[name], __name__)
            _instances[name] = module.make_backend()
        except ImportError as exc:  # e.g. triton not installed
            _instances[name] = _Unavailable(name, f"cannot be imported: {exc}")
    return _instances[name]


class _Unavailable:
    def __init__(self, name, reason):
        self.name, self.reason = name, reason

    def availability(self):
        return [self.reason]

    def unsupported(self, device, dtype):
        return []


def available_backends():
    """Names of the backends that can run on this machine."""
    return [name for name in NAMES if not get(name).availability()]


def requested():
    """The backend name the next call asks for: this context's use_backend block, else set_backend's."""
    override = _thread_choice.name if torch.compiler.is_compiling() else _override.get()
    return _requested if override is None else override


def _check_name(name):
    if name != AUTO and name not in NAMES:
        raise ValueError(f"backend must be one of {list(NAMES) + [AUTO]}, got {name!r}")
    return name


def set_backend(name):
    """Use backend `name` ("auto", "reference", "native", "triton") from now on, process-wide:
    every thread and task that is not inside a `use_backend` block sees it."""
    global _requested
    _requested = _check_name(name)


@contextlib.contextmanager
def use_backend(name):
    """Use backend `name` inside a `with` block, in this thread or asyncio task only (a
    contextvars.ContextVar): other threads and tasks keep their own choice, and leaving the
    block restores the one before it even when blocks in other threads overlap. Overrides
    set_backend while the block runs. A new thread starts without the override (it sees
    set_backend's choice); an asyncio task or contextvars.copy_context() inherits it."""
    token = _override.set(_check_name(name))
    _thread_choice.name = name
    try:
        yield get(name) if name != AUTO else None
    finally:
        _override.reset(token)
        _thread_choice.name = _override.get()


def reasons(name, device, dtype):
    backend = get(name)
    return list(backend.availability()) + list(backend.unsupported(device, dtype))


def resolve(name, device, dtype, shape=None):
    """The backend that runs a call on `device` with parameters of `dtype`; `shape` =
    (batch, visible, hidden) lets `auto` follow cuda_auto's per-shape measurements."""
    if name != AUTO:
        if name not in NAMES:
            raise BackendError(f"unknown backend {name!r} (from set_backend or SSLKERN_BACKEND); "
                               f"choose one of {list(NAMES) + [AUTO]}")
        why = reasons(name, device, dtype)
        if why:
            raise BackendError(f"backend {name!r} cannot run on {device} with {dtype}: " + "; ".join(why))
        return get(name)
    order = AUTO_ORDER.get(device.type, ("reference",))
    if device.type == "cuda" and shape is not None:
        order = cuda_auto.cuda_order(*shape)
    refusals = {}
    for candidate in order:
        why = reasons(candidate, device, dtype)
        if not why:
            return get(candidate)
        refusals[candidate] = why
    listed = "\n".join(f"  {n}: {'; '.join(w)}" for n, w in refusals.items())
    raise BackendError(f"no backend can run on {device} with {dtype}:\n{listed}")
