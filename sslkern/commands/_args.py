"""Command-line argument types and the user-error class of the `sslkern` CLI.

Each function here is an argparse `type=`: it takes the text the user typed and returns the
value, or raises argparse.ArgumentTypeError with a message that says what was expected, so
argparse answers in one line (see cli.py) before any work starts. Output paths are checked
for writability at parse time, so a benchmark does not run for minutes and then fail to
save its results.

`UsageError` is for mistakes found later, in a command's run(): cli.main prints it on one
line and exits with status 2 (no traceback), as it does for argparse errors.

Nothing here imports torch at module level: `sslkern --version` and `--help` stay fast.
"""
import argparse
import math
import os
import re

EXIT_USAGE = 2


class UsageError(Exception):
    """A mistake in what the user asked for (not a bug): one line on stderr, exit status 2."""


def _fail(message):
    raise argparse.ArgumentTypeError(message)


def _int(text, what):
    try:
        return int(str(text).strip(), 10)
    except ValueError:
        _fail(f"must be {what}, got {text!r}")


def _float(text, what):
    try:
        value = float(str(text).strip())
    except ValueError:
        _fail(f"must be {what}, got {text!r}")
    if not math.isfinite(value):
        _fail(f"must be {what}, got {text!r}")
    return value


# ---------------------------------------------------------------------------------------
# Numbers: one row each (name, parser, what it must be, the test, what it is for)


def _number_type(name, parse, what, ok, used_for):
    def convert(text):
        value = parse(text, what)
        if not ok(value):
            _fail(f"must be {what}, got {text!r}")
        return value

    convert.__name__ = convert.__qualname__ = name
    convert.__doc__ = f"{what[0].upper()}{what[1:]} ({used_for})."
    return convert


positive_int = _number_type("positive_int", _int, "an integer >= 1", lambda v: v >= 1,
                            "epochs, batch size, steps")
nonnegative_int = _number_type("nonnegative_int", _int, "an integer >= 0", lambda v: v >= 0,
                               "warm-up steps; a thread count where 0 means torch's choice")
seed = _number_type("seed", _int, "an integer in [0, 2**64)", lambda v: 0 <= v < 2**64, "a random seed")
finite_positive_float = _number_type("finite_positive_float", _float, "a finite number > 0", lambda v: v > 0,
                                     "learning rate, a time budget")
finite_nonnegative_float = _number_type("finite_nonnegative_float", _float, "a finite number >= 0",
                                        lambda v: v >= 0, "contractive weight, a Gaussian level")
probability = _number_type("probability", _float, "a number in [0, 1]", lambda v: 0.0 <= v <= 1.0,
                           "a masking or salt-and-pepper level")


def hidden_sizes(text):
    """One hidden width, or a comma list of them ("500" or "500,250"): a list of ints >= 1."""
    parts = [p.strip() for p in str(text).split(",")]
    if not parts or any(not re.fullmatch(r"\d+", p) or int(p) < 1 for p in parts):
        _fail(f"must be a width >= 1 or a comma list of them (e.g. 500 or 500,250), got {text!r}")
    return [int(p) for p in parts]


def shape(text):
    """A problem size BxDxH, each >= 1 (e.g. 256x784x512); returned as typed, normalised."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*[xX]\s*(\d+)\s*", str(text))
    if match is None:
        _fail(f"must look like BxDxH (batch x visible x hidden, e.g. 256x784x512), got {text!r}")
    sizes = [int(g) for g in match.groups()]
    if min(sizes) < 1:
        _fail(f"needs batch, visible and hidden sizes >= 1, got {text!r}")
    return "x".join(str(s) for s in sizes)


def images(text):
    """A batch of images BxHxW, each >= 1 (e.g. 256x28x28): a (B, H, W) tuple."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*[xX]\s*(\d+)\s*", str(text))
    if match is None or min(int(g) for g in match.groups()) < 1:
        _fail(f"must look like BxHxW (batch x height x width, each >= 1, e.g. 256x28x28), got {text!r}")
    return tuple(int(g) for g in match.groups())


def grid(text):
    """Jigsaw tiles as ROWSxCOLS (e.g. 2x2 or 3x3), each >= 1: a (rows, cols) tuple."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", str(text))
    if match is None or min(int(g) for g in match.groups()) < 1:
        _fail(f"must look like ROWSxCOLS with both >= 1 (e.g. 2x2 or 3x3), got {text!r}")
    return int(match.group(1)), int(match.group(2))


# ---------------------------------------------------------------------------------------
# Names


def backend_name(text):
    """auto, reference, native or triton, and runnable on this machine (auto always is)."""
    from .. import backends

    name = str(text).strip()
    if name != backends.AUTO and name not in backends.NAMES:
        _fail(f"must be one of {', '.join((backends.AUTO,) + backends.NAMES)}, got {text!r}")
    if name != backends.AUTO:
        why = backends.get(name).availability()
        if why:
            _fail(f"backend {name!r} cannot run here: {'; '.join(why)}")
    return name


def device(text):
    """cpu, cuda, cuda:N or auto (cuda when available); a device this machine has."""
    import torch

    name = str(text).strip()
    if name == "auto":
        return name
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError):
        _fail(f"must be auto, cpu, cuda or cuda:N, got {text!r}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            _fail(f"{name!r} needs CUDA, which is not available here (use cpu)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            _fail(f"{name!r} does not exist: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type != "cpu":
        _fail(f"must be auto, cpu, cuda or cuda:N, got {text!r}")
    return name


def data_source(text):
    """A built-in data set name (mnist-10k, digits) or an existing file."""
    from ..data import NAMES

    if text in NAMES:
        return text
    if not os.path.exists(text):
        _fail(f"must be one of {', '.join(NAMES)} or an existing .npy/.npz/IDX file; {text!r} does not exist")
    return input_file(text)


def input_file(text):
    """An existing, readable file."""
    if not os.path.isfile(text):
        _fail(f"{text!r} is not a file" if os.path.exists(text) else f"{text!r} does not exist or is not a file")
    if not os.access(text, os.R_OK):
        _fail(f"{text!r} is not readable")
    return text


# ---------------------------------------------------------------------------------------
# Outputs, checked before the work


def _nearest_existing(path):
    path = os.path.abspath(path)
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def _probe_folder(folder, text):
    """Whether a file can be created in the existing folder `folder` (tried, then removed: a
    permission check alone says yes to root on a read-only file system)."""
    if not os.path.isdir(folder):
        _fail(f"cannot write {text!r}: {folder!r} is not a folder")
    probe = os.path.join(folder, f".sslkern-write-test-{os.getpid()}")
    try:
        with open(probe, "x"):
            pass
        os.remove(probe)
    except OSError as exc:
        _fail(f"cannot write {text!r}: {exc.strerror or exc}")


def output_file(text):
    """A file path that can be written: its folder exists and takes files, and it is not a
    folder itself. An existing file must be writable (it is replaced)."""
    path = str(text)
    if not path or path.endswith(os.sep):
        _fail(f"must be a file path, got {text!r}")
    if os.path.isdir(path):
        _fail(f"{text!r} is a folder, not a file")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        _fail(f"cannot write {text!r}: folder {os.path.dirname(path) or '.'!r} does not exist")
    if os.path.exists(path):
        try:
            with open(path, "a"):
                pass
        except OSError as exc:
            _fail(f"cannot write {text!r}: {exc.strerror or exc}")
    else:
        _probe_folder(folder, text)
    return path


def output_folder(text):
    """A folder to write into: an existing folder that takes files, or a new one whose nearest
    existing parent does (it is created by the command, not here)."""
    path = str(text)
    if not path:
        _fail("must be a folder path, got ''")
    if os.path.exists(path) and not os.path.isdir(path):
        _fail(f"{text!r} is a file, not a folder")
    _probe_folder(_nearest_existing(path), text)
    return path


def require_module(module, extra, flag):
    """UsageError unless `module` can be imported: `flag` needs the `extra` of sslkern."""
    import importlib.util

    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a module set to None in sys.modules, a broken parent
        found = False
    if not found:
        raise UsageError(f"{flag} needs {module}, which is not installed: pip install 'sslkern[{extra}]' "
                         f"(or pip install {module})")


BENCH_VARIANTS = ("products", "eager", "compile", "jacobian")  # + sslkern's routes, below


def bench_variant(text):
    """A variant of `sslkern bench`: products, eager, compile, jacobian, or an sslkern route
    (sslkern, value_and_grad, sgd_step), optionally on one backend: sgd_step[native]."""
    from .. import backends
    from ..bench import SSLKERN_ROUTES

    match = re.fullmatch(r"(\w+)(?:\[(\w+)\])?", str(text).strip())
    base, backend = match.groups() if match else (None, None)
    known = BENCH_VARIANTS + SSLKERN_ROUTES
    if base not in known or (backend is not None and (base not in SSLKERN_ROUTES or backend not in backends.NAMES)):
        _fail(f"must be one of {', '.join(known)}, or a route on one backend such as "
              f"sgd_step[native] (backends: {', '.join(backends.NAMES)}); got {text!r}")
    return str(text).strip()
