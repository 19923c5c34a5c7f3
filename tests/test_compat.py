"""Each private torch API sslkern reads (sslkern/_compat.py) still exists and still means what
the code assumes. A torch release that renames or changes one fails here, by name, instead of
silently sending every call down the slow path (or, worse, the fast path under a transform)."""
import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

import sslkern
from sslkern import _compat
from sslkern.ops import autoencoder as ae_ops


class _PassDispatch(TorchDispatchMode):
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))


class _PassFunction(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))


def test_every_private_api_is_present():
    assert _compat.missing() == [], f"torch {torch.__version__} lacks {_compat.missing()}"


def test_nothing_intercepts_plain_eager_code():
    assert not _compat.dispatch_mode_active()
    assert not _compat.function_mode_active()
    assert not _compat.functorch_transform_active()
    assert not _compat.intercepted()


def test_dispatch_mode_probe():
    with _PassDispatch():
        assert _compat.dispatch_mode_active() and _compat.intercepted()
    assert not _compat.dispatch_mode_active()


def test_function_mode_probe():
    with _PassFunction():
        assert _compat.function_mode_active() and _compat.intercepted()
    assert not _compat.function_mode_active()


def test_functorch_probe_sees_vmap_and_grad():
    seen = []

    def probe(t):
        seen.append(_compat.functorch_transform_active())
        return t * 2

    torch.vmap(probe)(torch.ones(3))
    torch.func.grad(lambda t: probe(t).sum())(torch.ones(3))
    assert seen == [True, True]
    assert not _compat.functorch_transform_active()


def test_fake_tensors_are_intercepted():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        assert _compat.intercepted()


def test_eager_fast_path_follows_the_probes():
    x = torch.rand(2, 3)
    assert ae_ops.eager_fast_path_ok(x)
    with _PassDispatch():
        assert not ae_ops.eager_fast_path_ok(x)
    assert not ae_ops.eager_fast_path_ok(torch.empty(2, 3, device="meta"))


@pytest.mark.parametrize("mode", [_PassDispatch, _PassFunction])
def test_the_objective_is_right_under_a_mode(mode):
    """Under a mode the registered op runs (not the fast path); the numbers are the same."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(5, 7, generator=g, dtype=torch.float64)
    W = (torch.rand(3, 7, generator=g, dtype=torch.float64) - 0.5).requires_grad_()
    b, c = torch.zeros(3, dtype=torch.float64), torch.zeros(7, dtype=torch.float64)
    kw = dict(corruption="mask", level=0.3, contractive=0.2, seed=4)
    plain = sslkern.autoencoder_loss(x, W, b, c, **kw)
    (want,) = torch.autograd.grad(plain, W)
    with mode():
        moded = sslkern.autoencoder_loss(x, W, b, c, **kw)
        (got,) = torch.autograd.grad(moded, W)
    torch.testing.assert_close(moded.detach(), plain.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
