"""Every private torch API sslkern reads, in one place, each behind a function with a test
(tests/test_compat.py) that fails loudly when a torch release changes it.

A probe whose API is missing answers the safe way (for `intercepted`: yes, so the registered
op runs, which is always correct, only slower), and `missing()` lists what was not found, so
`sslkern info` and the tests can say so instead of silently going slow.
"""
import torch

_MISSING = []


def _lookup(path):
    """The object at a dotted path under `torch`, or None (recorded in missing())."""
    obj = torch
    for part in path.split(".")[1:]:
        obj = getattr(obj, part, None)
        if obj is None:
            _MISSING.append(path)
            return None
    return obj


_current_dispatch_mode = _lookup("torch.utils._python_dispatch._get_current_dispatch_mode")
_function_mode_enabled = _lookup("torch._C._is_torch_function_mode_enabled")
_functorch_stack = _lookup("torch._C._functorch.peek_interpreter_stack")


def missing():
    """The private APIs this torch lacks (empty on every version sslkern was tested with)."""
    return list(_MISSING)


def dispatch_mode_active():
    """A TorchDispatchMode (fake tensors, make_fx, FlopCounter, ...) is on the stack."""
    return _current_dispatch_mode is None or _current_dispatch_mode() is not None


def function_mode_active():
    """A TorchFunctionMode is active (it would see every torch call)."""
    return _function_mode_enabled is None or bool(_function_mode_enabled())


def functorch_transform_active():
    """Inside vmap, grad, jacrev, ... (functorch's interpreter stack is not empty)."""
    return _functorch_stack is None or _functorch_stack() is not None


def intercepted():
    """Whether anything could observe the difference between a registered op and a direct
    call of its body: tracing (dynamo, jit), a dispatch or function mode, a functorch
    transform. The eager fast paths run only when this is False."""
    return (torch.compiler.is_compiling() or torch.jit.is_tracing() or dispatch_mode_active()
            or function_mode_active() or functorch_transform_active())
