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


# Hooks. torch has no public "would any hook run?" query; these are the dictionaries it keeps
# them in. Module and tensor ones are instance attributes (read per call); the global module
# hooks live in torch.nn.modules.module.
MODULE_HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
GLOBAL_HOOK_DICTS = ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks",
                     "_global_backward_pre_hooks")
TENSOR_HOOK_DICTS = ("_backward_hooks", "_post_accumulate_grad_hooks")  # None until a hook is registered
for _name in GLOBAL_HOOK_DICTS:
    _lookup(f"torch.nn.modules.module.{_name}")


def hooks_registered(module, tensors):
    """Whether any hook would run in `module`'s forward() or in the backward of `tensors`: the
    module's own hooks, the global module hooks, the tensors' hooks (sslkern.train takes the
    graph-free step only when there are none). An attribute a torch release renamed or removed
    counts as a hook: the caller then takes the step that runs hooks, which is always correct."""
    import torch.nn.modules.module as nn_module

    for owner, names in ((module, MODULE_HOOK_DICTS), (nn_module, GLOBAL_HOOK_DICTS)):
        if any(getattr(owner, name, True) for name in names):
            return True
    return any(getattr(t, name, True) for t in tensors for name in TENSOR_HOOK_DICTS)
