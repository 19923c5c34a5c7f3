"""Shared fixtures. On a machine without CUDA, Triton kernels run under TRITON_INTERPRET=1
(set here, before anything imports triton) on CPU tensors."""
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import sslkern  # noqa: E402

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


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
