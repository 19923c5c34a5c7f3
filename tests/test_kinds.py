"""The C++ side of the registry of kinds (sslkern/kinds.py): the generated header the kernels
include, the counts the compiled modules were built with, and a case for every kind in each
of the kernels' switches. (The Python side of the registry is tested elsewhere.)"""
import re
import types
from pathlib import Path

import pytest

from sslkern import _native, kinds
from sslkern.kinds import ACTIVATIONS, CORRUPTIONS, LOSSES, cpp_name

ROOT = Path(__file__).resolve().parents[1]
HEADER = ROOT / "csrc" / "include" / "sslkern" / "kinds.h"
REGENERATE = "python -m sslkern.kinds > csrc/include/sslkern/kinds.h"


def source(relative):
    return (ROOT / "csrc" / relative).read_text(encoding="utf-8")


def built_kinds():
    """What a module built from the current header reports from its kinds()."""
    return {"activation": len(ACTIVATIONS), "loss": len(LOSSES), "corruption": len(CORRUPTIONS),
            "sparsity": len(kinds.SPARSITIES), "precision": len(kinds.PRECISIONS),
            "piecewise_linear": sorted(row.code for row in ACTIVATIONS if row.piecewise_linear)}


def test_committed_header_is_generated_from_the_registry():
    assert HEADER.read_text(encoding="utf-8") == kinds.cpp_header(), (
        f"{HEADER.relative_to(ROOT)} is stale: regenerate it with `{REGENERATE}`")


def test_header_declares_every_kind_and_count():
    text = HEADER.read_text(encoding="utf-8")
    for table in kinds.FAMILIES:
        for row in table:
            assert re.search(rf"\b{cpp_name(row)} = {row.code},", text), row
        assert f"constexpr int k{table.cpp_enum}Count = {len(table)};" in text


def test_no_other_source_defines_the_enums():
    """activations.h and philox.h include kinds.h; no C++ or CUDA file repeats an enum."""
    for path in (ROOT / "csrc").rglob("*"):
        if path.suffix in (".h", ".cpp", ".cu", ".cuh") and path != HEADER:
            for table in kinds.FAMILIES:
                assert f"enum {table.cpp_enum} " not in path.read_text(encoding="utf-8"), path


def _cases(text, start, end):
    """The `case kX:` labels between two markers of a source text."""
    body = text[text.index(start):]
    body = body[:body.index(end)]
    return set(re.findall(r"case (k\w+):", body))


def test_every_kind_has_a_case_in_every_switch():
    """Each switch over a kind names every row of its table (an unknown code throws or traps;
    the static_asserts on the counts make a new kind fail the build until it is added)."""
    acts = {cpp_name(row) for row in ACTIVATIONS}
    losses = {cpp_name(row) for row in LOSSES}
    corruptions = {cpp_name(row) for row in CORRUPTIONS}
    shared = source("include/sslkern/activations.h")
    rows = source("cpu/kernels_rows.h")
    assert _cases(shared, "#define SSLK_ACT_SWITCH", "unknown_kind") == acts
    assert _cases(shared, "T loss_and_grad(", "unknown_kind") == losses
    assert _cases(source("include/sslkern/philox.h"), "T corrupt_element(", "unknown_kind") == corruptions
    assert _cases(rows, "auto with_act(", "unknown_kind") == acts
    assert _cases(rows, "auto with_loss(", "unknown_kind") == losses
    assert _cases(rows, "auto with_corruption(", "unknown_kind") == corruptions
    assert _cases(source("cpu/kernels.cpp"), "void round_operand(", "unknown_kind") == {
        cpp_name(row) for row in kinds.PRECISIONS}
    for row in ACTIVATIONS:
        assert f"template <> struct ActMath<{cpp_name(row)}>" in shared, row.name
    for name, table in (("kActivationCount", ACTIVATIONS), ("kLossCount", LOSSES),
                        ("kCorruptionCount", CORRUPTIONS)):
        for text in (shared, rows, source("include/sslkern/philox.h")):
            for count in re.findall(rf"static_assert\({name} == (\d+)", text):
                assert int(count) == len(table), f"a static_assert still expects {count} for {name}"


# -- the compiled modules ----------------------------------------------------------------------

def _module(name):
    try:
        return __import__(f"sslkern._native_{name}", fromlist=["kinds"])
    except ImportError:
        pytest.skip(f"sslkern._native_{name} is not built")


def test_cpu_module_was_built_with_these_kinds():
    module = _module("cpu")
    assert dict(module.kinds()) == built_kinds(), (
        "sslkern._native_cpu was built from another kinds.h: rebuild (pip install -e .)")


def test_cuda_module_was_built_with_these_kinds():
    """The CUDA module imports without a GPU (static cudart); kinds() runs on the host."""
    module = _module("cuda")
    assert dict(module.kinds()) == built_kinds(), (
        "sslkern._native_cuda was built from another kinds.h: rebuild (SSLKERN_CUDA=1 pip install -e .)")


def test_loader_refuses_a_stale_build():
    assert _native.expected_kinds() == built_kinds()
    stale = types.SimpleNamespace(kinds=lambda: dict(built_kinds(), activation=len(ACTIVATIONS) - 1))
    assert "activation" in _native.kinds_mismatch(stale)
    assert "kinds()" in _native.kinds_mismatch(types.SimpleNamespace())
    for name in ("cpu", "cuda"):
        module = _native.load(name)
        if module is not None:
            assert _native.kinds_mismatch(module) is None
