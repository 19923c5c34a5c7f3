"""Loads the compiled modules and explains, when one cannot be used, what was built and why.

A module that fails to load never breaks `import sslkern`: the reference backend still
works, and `load_error(name)` (shown by `sslkern info`) says what went wrong.
"""
import importlib
import json
from pathlib import Path

_BUILD_FILE = Path(__file__).with_name("_build.json")
_modules = {}
_errors = {}


def build_record():
    """What setup.py/CMake built, or None for a source tree that was never built."""
    try:
        return json.loads(_BUILD_FILE.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def load(name):
    """The compiled module `name` ("cpu" or "cuda"), or None with the reason in load_error.
    A module built for other kinds than sslkern/kinds.py declares (a stale build) is refused."""
    if name in _modules:
        return _modules[name]
    module = None
    try:
        module = importlib.import_module(f"sslkern._native_{name}")
    except ImportError as exc:
        _errors[name] = _explain(name, exc)
    if module is not None:
        stale = kinds_mismatch(module)
        if stale is not None:
            _errors[name] = f"sslkern._native_{name} is stale: {stale}; rebuild (pip install -e .)"
            module = None
    _modules[name] = module
    return module


def expected_kinds():
    """What a module built from csrc/include/sslkern/kinds.h reports from its kinds()."""
    from .kinds import ACTIVATIONS, CORRUPTIONS, LOSSES, PRECISIONS, SPARSITIES

    return {"activation": len(ACTIVATIONS), "loss": len(LOSSES), "corruption": len(CORRUPTIONS),
            "sparsity": len(SPARSITIES), "precision": len(PRECISIONS),
            "piecewise_linear": sorted(ACTIVATIONS.code(name)
                                       for name in ACTIVATIONS.where(piecewise_linear=True))}


def kinds_mismatch(module):
    """None when `module` was built with the kinds of sslkern/kinds.py, else what differs."""
    if not hasattr(module, "kinds"):
        return "it was built before sslkern/kinds.py (no kinds())"
    built, want = dict(module.kinds()), expected_kinds()
    if built != want:
        return f"built with kinds {built}, sslkern/kinds.py declares {want}"
    return None


def load_error(name):
    load(name)
    return _errors.get(name)


def _explain(name, exc):
    record = build_record()
    if record is None:
        return (f"sslkern._native_{name} is not built (no {_BUILD_FILE.name} beside the package: "
                "install with `pip install .` or build in place with `pip install -e .`); "
                f"import said: {exc}")
    if name == "cuda" and not record.get("native_cuda"):
        return f"the CUDA module was not built: {record.get('cuda_note', 'unknown reason')}"
    return f"sslkern._native_{name} was built ({record}) but failed to load: {exc}"
