"""Each private torch API sslkern reads (sslkern/_compat.py) still exists and still means what
the code assumes. A torch release that renames or changes one fails here, by name, instead of
silently sending every call down the slow path (or, worse, the fast path under a transform)."""
import pytest
import torch
from torch.overrides import TorchFunctionMode
from helpers import SAME_MATH, assert_close
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
    assert_close(moded, plain, torch.float64, policy=SAME_MATH, what="loss")
    assert_close(got, want, torch.float64, policy=SAME_MATH, what="d/dW")


# ---------------------------------------------------------------------------------------------
# The hook dictionaries (hooks_registered; sslkern.train's graph-free step depends on it)


def test_torch_still_has_the_private_hook_attributes_the_probe_reads():
    """If this fails, a torch release renamed or removed a hook dictionary: every model then
    takes the (slower, always correct) autograd step. Update the *_HOOK_DICTS in sslkern/_compat.py."""
    m = torch.nn.Linear(6, 3)
    for name in _compat.MODULE_HOOK_DICTS:
        assert isinstance(getattr(m, name), dict), f"torch.nn.Module.{name} is gone or not a dict"
    for name in _compat.GLOBAL_HOOK_DICTS:
        assert isinstance(getattr(torch.nn.modules.module, name), dict), f"torch.nn.modules.module.{name} is gone"
    for name in _compat.TENSOR_HOOK_DICTS:
        assert hasattr(m.weight, name), f"torch.Tensor.{name} is gone"
        assert getattr(m.weight, name) is None  # no hook yet
    assert not _compat.hooks_registered(m, tuple(m.parameters()))


@pytest.mark.parametrize("hook", ["forward", "forward_pre", "full_backward", "full_backward_pre",
                                  "global_forward", "global_forward_pre", "global_backward", "tensor",
                                  "post_accumulate_grad"])
def test_every_kind_of_hook_is_seen(hook):
    m = torch.nn.Linear(6, 3)
    params = tuple(m.parameters())
    fn = lambda *args: None  # noqa: E731
    module_hooks = torch.nn.modules.module
    handle = {
        "forward": lambda: m.register_forward_hook(fn),
        "forward_pre": lambda: m.register_forward_pre_hook(fn),
        "full_backward": lambda: m.register_full_backward_hook(fn),
        "full_backward_pre": lambda: m.register_full_backward_pre_hook(fn),
        "global_forward": lambda: module_hooks.register_module_forward_hook(fn),
        "global_forward_pre": lambda: module_hooks.register_module_forward_pre_hook(fn),
        "global_backward": lambda: module_hooks.register_module_full_backward_hook(fn),
        "tensor": lambda: m.weight.register_hook(lambda g: g),
        "post_accumulate_grad": lambda: m.bias.register_post_accumulate_grad_hook(fn),
    }[hook]()
    try:
        assert _compat.hooks_registered(m, params)
    finally:
        handle.remove()
    assert not _compat.hooks_registered(m, params)  # removed: none again
