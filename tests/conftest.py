"""Shared fixtures. On a machine without CUDA, Triton kernels run under TRITON_INTERPRET=1
(set here, before anything imports triton) on CPU tensors.

The suite refuses to run against an sslkern without its native CPU module (an unbuilt
checkout shadowing the installed package, a failed build): skipping the compiled code would
hide exactly what the tests exist to catch. SSLKERN_TESTS_ALLOW_NO_NATIVE=1 asks for a
pure-Python run on purpose.
"""
import os
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import sslkern  # noqa: E402
from helpers import DEVICE  # noqa: E402  (the one definition; tests import it from helpers)

ALLOW_NO_NATIVE = os.environ.get("SSLKERN_TESTS_ALLOW_NO_NATIVE") == "1"


def native_missing_message():
    """Why the tests cannot run here and what to do, or None when the native module loaded."""
    from sslkern import _native

    if _native.load("cpu") is not None:
        return None
    package = Path(sslkern.__file__).resolve().parent
    checkout = Path(__file__).resolve().parent.parent
    where = ("the source checkout (python -m pytest puts the current folder first on sys.path)"
             if package.parent == checkout else "an installed package")
    return (f"sslkern's native CPU module is not loaded, so the compiled code would go untested.\n"
            f"  imported from: {package}, {where}\n"
            f"  why: {_native.load_error('cpu')}\n"
            "Either build in place (pip install -e . --no-build-isolation), or install "
            "(pip install .) and run plain `pytest`, which imports the installed package; "
            "SSLKERN_TESTS_ALLOW_NO_NATIVE=1 runs the pure-Python tests on purpose.")


def pytest_configure(config):
    message = native_missing_message()
    if message and not ALLOW_NO_NATIVE:
        raise pytest.UsageError(message)


def backends_here():
    return sslkern.available_backends()


@pytest.fixture(params=backends_here())
def backend(request):
    """Each backend available here, active for the test's duration."""
    with sslkern.use_backend(request.param):
        yield request.param


@pytest.fixture
def device():
    return DEVICE


@pytest.fixture(autouse=True)
def _no_flush_to_zero():
    """torch < 2.6 builds torch.compile's CPU kernels with -ffast-math, which turns on
    flush-to-zero for the whole thread once one is loaded; later tests would then lose their
    subnormals (and hypothesis refuses to draw floats)."""
    yield
    torch.set_flush_denormal(False)


@pytest.fixture(scope="session")
def small_mnist(tmp_path_factory):
    """300 real MNIST images (200 to train, 100 to test), every digit in both parts, as an .npz
    file (the CLI tests' data)."""
    import numpy as np

    from sslkern import data

    X_train, y_train, X_test, y_test = data.load("mnist-10k")
    assert set(y_train[:200].tolist()) == set(y_test[:100].tolist()) == set(range(10))
    path = tmp_path_factory.mktemp("data") / "mnist-300.npz"
    np.savez(path, x_train=X_train[:200].numpy(), y_train=y_train[:200].numpy(),
             x_test=X_test[:100].numpy(), y_test=y_test[:100].numpy())
    return path


@pytest.fixture
def restore_threads():
    """`sslkern train --threads N` sets torch's thread count: undo it."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
