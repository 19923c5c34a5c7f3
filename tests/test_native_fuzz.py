"""Fuzzing the compiled entry points: every function sslkern._native_cpu (and the argument
checks of sslkern._native_cuda) exports, called with bad sizes, leading dimensions, null and
misaligned pointers, unknown dtype and enum codes, non-finite scalars and wrongly typed
arguments. Each bad call must raise a Python exception (ValueError naming the argument, or
pybind11's TypeError for a wrongly typed one) and write nothing; none may crash.

What no fuzzer can catch, and these tests do not try: a pointer that is non-null and aligned
but dangling, or addresses a buffer smaller than the sizes claim, or of another dtype than
the dtype code says, looks exactly like a good one through a raw-pointer interface. Those
are the callers' contract (sslkern/backends/native.py derives all three from tensors); the
random fuzzer below therefore keeps every size within the buffers it passes, and the
AddressSanitizer run (tests/sanitize.sh) checks that valid calls stay inside exactly sized
buffers.
"""
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sslkern.backends import blas
from sslkern.backends.native import StepArgs, parameter_names, step_signature_mismatch
from sslkern.kinds import ACTIVATIONS, CORRUPTIONS, LOSSES, PRECISIONS, SPARSITIES

native = pytest.importorskip("sslkern._native_cpu")

F32, F64 = 0, 1
N_ACT, N_LOSS, N_KIND = len(ACTIVATIONS), len(LOSSES), len(CORRUPTIONS)
CAPACITY = 2 * 9 * 9  # elements per fuzz buffer: rows, cols, ld <= 8 fit, and [2B, D] of the step
# Each function: (name, argument kinds). Kinds: dtype, ptr (must be non-null unless the
# sizes are zero), opt (nullable pointer), size, ld, act/loss/kind (enum codes), real,
# seed, offset, bool; the step's B, D, H are rows, cols, hidden and its BLAS gemm is `gemm`
# (always the real sgemm_/dgemm_ for the dtype: a function pointer cannot be checked, like
# a dangling data pointer). One bad argument must make the call raise.
STEP = ["dtype", "gemm", "rows", "cols", "hidden", "ptr", "ptr", "ld", "opt", "opt", "kind", "level",
        "seed", "offset", "act", "act", "loss", "real"]  # ... then ax, h, r, s2col, dc, then PRODUCTS
# The products' precision, the bf16 gemm (null: none) and fp16's gradient scale.
PRODUCTS = ["precision", "half_gemm", "scale"]
# The one-call routes' trailing penalties: sparsity, sparsity_target, sparsity_kind, higher_order,
# higher_order_sigma, higher_order_samples.
PENALTIES = ["weight", "target", "sparsity", "weight", "weight", "samples"]
SIGNATURES = {
    "philox_fill": ["ptr32", "n", "seed", "offset", "bool"],
    "corrupt": ["dtype", "ptr", "ptr", "n", "kind", "level", "seed", "offset"],
    "corrupt_grad": ["dtype", "ptr", "ptr", "n", "kind", "level", "seed", "offset"],
    "encoder_epilogue": ["dtype", "ptr", "ld", "rows", "cols", "opt", "act", "opt", "opt"],
    "loss_epilogue": ["dtype", "ptr", "ld", "ptr", "ld", "rows", "cols", "opt", "loss", "act",
                      "real", "opt"],
    "dz_epilogue": ["dtype", "opt", "ld", "ptr", "ld", "rows", "cols", "act", "opt", "real", "real",
                    "ptr", "ld", "opt", "ld", "opt"],
    "row_sq_norms": ["dtype", "ptr", "ld", "rows", "cols", "ptr"],
    "row_scale_add": ["dtype", "ptr", "ld", "ptr", "ld", "rows", "cols", "ptr", "real"],
    "round_operand": ["ptr32", "ld", "rows", "cols", "scale", "precision", "bool", "ptr32"],
    "ae_forward": STEP + ["ptr", "ptr", "ptr", "ptr", "ptr"] + PRODUCTS,
    "ae_backward": STEP + ["ptr", "ptr", "ptr", "ptr", "ptr"] + PRODUCTS + ["real", "ptr", "ptr", "ptr"],
    "ae_value_and_grad": STEP + ["opt", "opt", "opt", "opt", "ptr"] + PRODUCTS + ["ptr", "ptr"] + PENALTIES,
    "ae_sgd_step": (STEP[:8] + ["ptr", "ptr"] + STEP[10:] + ["opt"] * 5 + PRODUCTS + ["real"]  # updates W, b, c
                    + PENALTIES),
    # The pretext generators: an element size instead of a dtype code; x, the outputs and the
    # int64 labels are buffers, the permutations a fixed valid set (their values are indices).
    "rotations": ["esize", "ptr", "ptr", "ptr", "batch", "side", "seed", "offset"],
    "jigsaw": ["esize", "ptr", "ptr", "ptr", "batch", "height", "width", "grid", "grid", "perm", "n_perms", "seed",
               "offset"],
    "relative_patches": ["esize", "ptr", "ptr", "ptr", "ptr", "batch", "height", "width", "patch", "gap", "seed",
                         "offset"],
}
# Permutation sets as long as any fuzzed call reads (n_perms <= 2 rows of up to 64 tiles):
# entries 0 are valid indices for any grid; 99 is out of range for every grid fuzzed here.
PERMUTATIONS = torch.tensor([1, 0, 3, 2] + [0] * 124)  # row 0 a permutation of a 2 x 2 grid
OUT_OF_RANGE = torch.full((128,), 99)
STEPS = {"ae_forward", "ae_backward", "ae_value_and_grad", "ae_sgd_step"}  # need B, D, H >= 1
EXPORTED = {name for name in dir(native) if not name.startswith("_")} - {"build_info", "isa", "set_isa", "kinds"}
GEMMS = blas.gemm_addresses()[0] or {}


def gemm_for(dtype):
    return GEMMS.get(torch.float64 if dtype == F64 else torch.float32, 0)


def test_every_export_is_fuzzed():
    assert EXPORTED == set(SIGNATURES), "a new native function needs a SIGNATURES entry"
    info = native.build_info()
    assert isinstance(info, dict) and "openmp" in info


@pytest.mark.parametrize("name", sorted(SIGNATURES) + ["set_isa"])
def test_every_parameter_is_named(name):
    """py::arg on every m.def: the signature names each parameter (no arg0, arg1...)."""
    names = parameter_names(getattr(native, name))
    assert names and not any(n.startswith("arg") and n[3:].isdigit() for n in names), names
    if name in SIGNATURES:
        assert len(names) == len(SIGNATURES[name]), names


def test_step_args_follow_the_cpp_signature():
    """backends/native.py passes StepArgs positionally: its fields are the C++ names, in order."""
    assert step_signature_mismatch(native) is None
    for name in STEPS:
        assert tuple(parameter_names(getattr(native, name))[:len(StepArgs._fields)]) == StepArgs._fields


@pytest.mark.parametrize("name", sorted(SIGNATURES))
def test_keyword_call_succeeds(name):
    """The py::arg names work as keywords (the same call as test_valid_call_succeeds)."""
    buffers = Buffers(_pointer_count(name))
    kwargs = dict(zip(parameter_names(getattr(native, name)), valid_args(name, buffers)))
    getattr(native, name)(**kwargs)
    assert not buffers.untouched(), f"{name} wrote nothing"


# Argument kinds that carry a kind code, with the family the error names and the table.
ENUMS = {"act": ("activation", ACTIVATIONS), "loss": ("loss", LOSSES), "kind": ("corruption", CORRUPTIONS),
         "sparsity": ("sparsity", SPARSITIES), "precision": ("precision", PRECISIONS)}


@pytest.mark.parametrize("name", sorted(n for n in SIGNATURES if set(SIGNATURES[n]) & set(ENUMS)))
def test_unknown_kind_codes_are_refused_by_name(name):
    """Every export that takes a kind refuses the first code past the table and -1 (and a large
    one) with a ValueError that starts with the argument's name and says which family, before
    writing anything; every code in the table is accepted."""
    names = parameter_names(getattr(native, name))
    for position in _positions(name, ENUMS):
        family, table = ENUMS[SIGNATURES[name][position]]
        for bad in (len(table), -1, 2**31 - 1):
            buffers = Buffers(_pointer_count(name))
            args = valid_args(name, buffers)
            args[position] = bad
            message = _expect_rejected(name, args, buffers)
            assert message.startswith(f"{names[position]}: unknown {family} code {bad}"), message
        for row in table:
            buffers = Buffers(_pointer_count(name))
            args = valid_args(name, buffers)
            args[position] = row.code
            if getattr(row, "needs_image_shape", False):  # block, patch: drawn in PyTorch, refused here
                assert _expect_rejected(name, args, buffers).startswith("corruption: block and patch")
                continue
            if getattr(row, "operands", None) and name in STEPS:  # rounded products of float64 parameters
                assert _expect_rejected(name, args, buffers).startswith("precision: rounded products need float32")
                continue
            getattr(native, name)(*args)


class Buffers:
    """One float64 buffer per pointer argument, filled with a sentinel so writes show."""

    def __init__(self, count, capacity=CAPACITY):
        self.tensors = [torch.full((capacity + 1,), 7.0, dtype=torch.float64) for _ in range(count)]

    def ptr(self, i, shift=0):
        return self.tensors[i].data_ptr() + shift

    def untouched(self):
        return all(bool((t == 7.0).all()) for t in self.tensors)


def valid_args(name, buffers, dtype=F64, rows=3, cols=4):
    """A call of `name` that must succeed: sizes within the buffers, every pointer set."""
    args, pointer = [], 0
    for kind in SIGNATURES[name]:
        if kind in ("ptr", "opt", "ptr32"):
            args.append(buffers.ptr(pointer))
            pointer += 1
        elif kind == "gemm":
            args.append(gemm_for(dtype))
        elif kind == "perm":
            args.append(PERMUTATIONS.data_ptr())
        else:
            args.append({"dtype": dtype, "n": rows * cols, "seed": 5, "offset": 9, "bool": False,
                         "kind": 1, "level": 0.5, "ld": cols + 1, "rows": rows, "cols": cols,
                         "hidden": rows + 2, "act": 1, "loss": 0, "real": 0.5, "weight": 0.3,
                         "target": 0.2, "sparsity": 0, "samples": 2,
                         # pretext: 8-byte elements (the float64 buffers), images of 4 x 5 (or 4 x 4)
                         "esize": 8, "batch": rows, "side": 4, "height": 4, "width": 5, "grid": 2,
                         "n_perms": 1, "patch": 1, "gap": 0, "precision": 0, "half_gemm": 0, "scale": 1.0}[kind])
    return args


def _pointer_count(name):
    return sum(kind in ("ptr", "opt", "ptr32") for kind in SIGNATURES[name])


def _positions(name, kinds):
    return [i for i, kind in enumerate(SIGNATURES[name]) if kind in kinds]


def _expect_rejected(name, args, buffers, error=ValueError):
    with pytest.raises(error) as info:
        getattr(native, name)(*args)
    assert buffers.untouched(), f"{name} wrote before rejecting its arguments"
    return str(info.value)


@pytest.mark.parametrize("name", sorted(SIGNATURES))
def test_valid_call_succeeds(name):
    buffers = Buffers(_pointer_count(name))
    getattr(native, name)(*valid_args(name, buffers))
    assert not buffers.untouched(), f"{name} wrote nothing"


# Single bad arguments, each with the error it must raise. (kind, bad value, error)
BAD_VALUES = [
    ("dtype", 2, ValueError), ("dtype", -1, ValueError), ("dtype", 2**31 - 1, ValueError),
    ("dtype", 2**40, TypeError), ("dtype", 1.0, TypeError), ("dtype", None, TypeError),
    ("n", -1, ValueError), ("n", -(2**63), ValueError), ("n", 2**32 + 1, ValueError),
    ("n", 2**63, TypeError), ("n", "3", TypeError),
    ("rows", -1, ValueError), ("rows", -(2**63), ValueError), ("cols", -1, ValueError),
    ("hidden", -1, ValueError), ("hidden", 2**40, ValueError), ("gemm", 0, ValueError),
    ("ld", 0, ValueError), ("ld", -4, ValueError), ("ld", 3, ValueError),  # ld < cols = 4
    ("act", -1, ValueError), ("act", N_ACT, ValueError), ("act", 2**31 - 1, ValueError),
    ("loss", N_LOSS, ValueError), ("loss", -2, ValueError),
    ("kind", N_KIND, ValueError), ("kind", -1, ValueError),
    ("level", float("nan"), ValueError), ("level", float("inf"), ValueError),
    ("level", -float("inf"), ValueError), ("level", 1e39, ValueError),
    ("seed", -1, TypeError), ("seed", 2**64, TypeError),
    ("offset", -1, TypeError), ("offset", 2**32, TypeError),
    ("real", "x", TypeError), ("bool", "yes", TypeError),
    ("weight", -0.1, ValueError), ("weight", float("nan"), ValueError), ("weight", float("inf"), ValueError),
    ("target", 0.0, ValueError), ("target", 1.0, ValueError), ("target", float("nan"), ValueError),
    ("samples", 0, ValueError), ("samples", -3, ValueError), ("samples", 2**40, ValueError),
    ("esize", 3, ValueError), ("esize", 0, ValueError), ("esize", 16, ValueError),
    ("batch", -1, ValueError), ("batch", 2**32 + 1, ValueError), ("batch", 2**63, TypeError),
    ("side", 0, ValueError), ("side", 2**40, ValueError), ("height", 0, ValueError), ("width", -1, ValueError),
    ("grid", 0, ValueError), ("grid", 9, ValueError), ("n_perms", 0, ValueError),
    ("perm", 0, ValueError), ("perm", OUT_OF_RANGE.data_ptr(), ValueError),
    ("patch", 0, ValueError), ("patch", 2, ValueError), ("gap", -1, ValueError), ("gap", 1, ValueError),
    ("precision", 3, ValueError), ("precision", -1, ValueError), ("half_gemm", 8, ValueError),
    ("scale", 0.0, ValueError), ("scale", -2.0, ValueError), ("scale", float("nan"), ValueError),
    ("scale", 1e39, ValueError),
]


@pytest.mark.parametrize("name", sorted(SIGNATURES))
def test_each_bad_argument_raises(name):
    kinds = SIGNATURES[name]
    for position, kind in enumerate(kinds):
        for bad_kind, value, error in BAD_VALUES:
            if bad_kind != kind:
                continue
            buffers = Buffers(_pointer_count(name))
            args = valid_args(name, buffers)
            args[position] = value
            message = _expect_rejected(name, args, buffers, error)
            if error is ValueError:
                assert ":" in message and message.split(":")[0].strip(), message


@pytest.mark.parametrize("name", sorted(SIGNATURES))
@pytest.mark.parametrize("dtype", [F32, F64])
def test_null_and_misaligned_pointers_raise(name, dtype):
    for position in _positions(name, ("ptr", "ptr32", "opt")):
        kind = SIGNATURES[name][position]
        element = 4 if kind == "ptr32" or dtype == F32 else 8
        for shift in range(1, element):
            buffers = Buffers(_pointer_count(name))
            args = valid_args(name, buffers, dtype)
            args[position] += shift
            assert "aligned" in _expect_rejected(name, args, buffers)
        if kind == "opt":
            continue  # null means "not wanted" there; tested below
        buffers = Buffers(_pointer_count(name))
        args = valid_args(name, buffers, dtype)
        args[position] = 0
        assert "null" in _expect_rejected(name, args, buffers)
        for bad in (-8, 2**64, "0x10", 1.5):
            args[position] = bad
            _expect_rejected(name, args, buffers, TypeError)


@pytest.mark.parametrize("name", sorted(SIGNATURES))
def test_optional_pointers_may_be_null(name):
    buffers = Buffers(_pointer_count(name))
    args = valid_args(name, buffers)
    for position in _positions(name, ("opt",)):
        args[position] = 0
    getattr(native, name)(*args)


@pytest.mark.parametrize("name", sorted(STEPS))
def test_step_refuses_empty_shapes(name):
    """The fused step needs B, D, H >= 1; sslkern/backends/native.py sends empty ones elsewhere."""
    buffers = Buffers(_pointer_count(name))
    assert "B, D, H >= 1" in _expect_rejected(name, valid_args(name, buffers, rows=0), buffers)


def test_isa_choice():
    best = native.isa()
    assert best in ("baseline", "avx2", "avx512")
    with pytest.raises(ValueError, match="isa"):
        native.set_isa("sse9")
    try:
        native.set_isa("baseline")
        assert native.isa() == "baseline"
    finally:
        native.set_isa(best)


@pytest.mark.parametrize("name", sorted(set(SIGNATURES) - STEPS))
def test_empty_sizes_accept_null_pointers(name):
    """Zero elements: nothing is read or written, so null data pointers are fine."""
    buffers = Buffers(_pointer_count(name))
    args = valid_args(name, buffers, rows=0, cols=0)
    for position in _positions(name, ("ptr", "ptr32", "opt")):
        args[position] = 0
    getattr(native, name)(*args)
    assert buffers.untouched()


@pytest.mark.parametrize("name", sorted(n for n in SIGNATURES if "ld" in SIGNATURES[n]))
def test_offset_overflow_is_rejected(name):
    """rows * ld past int64 byte offsets must be refused before any pointer arithmetic."""
    for position in _positions(name, ("ld",)):
        buffers = Buffers(_pointer_count(name))
        args = valid_args(name, buffers)
        args[position] = 2**62
        assert "overflow" in _expect_rejected(name, args, buffers)
    buffers = Buffers(_pointer_count(name))
    args = valid_args(name, buffers)
    for position in _positions(name, ("rows",)):
        args[position] = 2**62
    for position in _positions(name, ("ld",)):
        args[position] = 2**20
    assert "overflow" in _expect_rejected(name, args, buffers)


# Random calls: every argument drawn from a pool of good and bad values, sizes always within
# the buffers (see the module docstring). The call may succeed or raise; it may not crash,
# and a ValueError must name an argument.
SMALL = st.integers(-3, 8)
POOLS = {
    "dtype": st.sampled_from([F32, F64, 2, -1]),
    "n": st.one_of(st.integers(-3, CAPACITY), st.sampled_from([2**32 + 1, -(2**63)])),
    "rows": SMALL, "cols": SMALL, "ld": SMALL, "hidden": SMALL,
    "act": st.integers(-2, N_ACT + 1), "loss": st.integers(-2, N_LOSS + 1), "kind": st.integers(-2, N_KIND + 1),
    "level": st.sampled_from([0.0, 0.3, 1.0, -0.5, 2.0, float("nan"), float("inf"), 1e39]),
    "real": st.sampled_from([0.0, 1.0, -2.5, float("nan"), float("inf")]),
    "seed": st.sampled_from([0, 1, 2**64 - 1]), "offset": st.sampled_from([0, 7, 2**32 - 1]),
    "bool": st.booleans(),
    "weight": st.sampled_from([0.0, 0.3, -1.0, float("nan"), float("inf")]),
    "target": st.sampled_from([0.05, 0.0, 1.0, float("nan")]),
    "sparsity": st.integers(-2, len(SPARSITIES) + 1), "samples": st.sampled_from([1, 2, 0, -1, 2**40]),
    # pretext: batch x height x width <= 3 x 7 x 7 elements of <= 8 bytes fit the buffers
    "esize": st.sampled_from([2, 4, 8, 3]), "batch": st.integers(-2, 3), "side": st.integers(-2, 7),
    "height": st.integers(-2, 7), "width": st.integers(-2, 7), "grid": st.integers(-1, 8),
    "n_perms": st.integers(-1, 2), "patch": st.integers(-1, 3), "gap": st.integers(-1, 2),
    "perm": st.sampled_from([0, 1, PERMUTATIONS.data_ptr(), OUT_OF_RANGE.data_ptr()]),
    "precision": st.integers(-1, len(PRECISIONS)),
    # a function pointer cannot be checked: only null and the real bf16 gemm
    "half_gemm": st.sampled_from([0, blas.bf16_gemm_address() or 0]),
    "scale": st.sampled_from([1.0, 1024.0, 0.0, -1.0, float("nan"), 1e39]),
}
POINTER_SHIFTS = st.sampled_from([None, 0, 0, 0, 1, 4, 7])  # None: null


@pytest.mark.parametrize("name", sorted(SIGNATURES))
def test_random_calls_raise_or_succeed(name):
    @settings(max_examples=150, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def prop(data):
        buffers = Buffers(_pointer_count(name))
        args, pointer = [], 0
        for kind in SIGNATURES[name]:
            if kind in ("ptr", "opt", "ptr32"):
                shift = data.draw(POINTER_SHIFTS)
                args.append(0 if shift is None else buffers.ptr(pointer, shift))
                pointer += 1
            elif kind == "gemm":
                args.append(gemm_for(args[0]))
            else:
                args.append(data.draw(POOLS[kind]))
        try:
            getattr(native, name)(*args)
        except ValueError as exc:
            assert str(exc).split(":")[0].strip(), f"error names no argument: {exc}"
        except TypeError:
            pass

    prop()


def _cuda_module():
    try:
        import sslkern._native_cuda as module
    except ImportError:
        pytest.skip("sslkern._native_cuda is not built")
    return module


def test_cuda_launcher_rejects_bad_calls_before_launching():
    """The CUDA module's launcher takes device pointers packed as bytes, which it cannot
    check; it can check the handle, the argument count and the launch shape, and it must
    reject those before touching a device (with or without a GPU)."""
    module = _cuda_module()
    table = module.kernel_table()
    assert table and all(isinstance(n, str) and arity >= 0 for n, arity in table)
    arity = table[0][1]
    good = dict(grid=(1, 1, 1), block=(32, 1, 1), stream=0, device=0, args=bytes(8 * arity))
    bad_calls = [
        (dict(good, handle=-1), ValueError), (dict(good, handle=len(table)), ValueError),
        (dict(good, handle=2**40), TypeError),
        (dict(good, handle=0, args=bytes(8 * arity + 1)), ValueError),
        (dict(good, handle=0, args=bytes(8 * (arity + 1))), ValueError),
        (dict(good, handle=0, args="not bytes"), TypeError),
        (dict(good, handle=0, grid=(1, 1)), ValueError),
        (dict(good, handle=0, block=(1, 1, 1, 1)), ValueError),
        (dict(good, handle=0, grid=(-1, 1, 1)), RuntimeError),  # pybind11's cast error
        (dict(good, handle=0, stream=-1), TypeError),
    ]
    for kwargs, error in bad_calls:
        with pytest.raises(error):
            module.launch(**kwargs)
    assert isinstance(module.device_count(), int)


# --- the registered ops, called directly ---------------------------------------------------
# torch.ops.sslkern.* is public surface (torch.compile graphs and other libraries call it
# without the Python wrappers): random, mostly inconsistent shapes, dtypes and kinds must raise
# ValueError/TypeError naming what is wrong, or succeed; never crash (tests/sanitize.sh runs
# this under ASan and UBSan).

NAMES = {"act": st.sampled_from(list(ACTIVATIONS.names()) + ["bogus"]),
         "loss": st.sampled_from(list(LOSSES.names()) + ["bogus"]),
         "kind": st.sampled_from(list(CORRUPTIONS.names()) + ["bogus"])}
EXTENT = st.integers(0, 5)
OP_DTYPE = st.sampled_from([torch.float32, torch.float64, torch.float32, torch.int32])


def _tensor(data, *shape):
    dtype = data.draw(OP_DTYPE)
    return torch.rand(shape).to(dtype)


@pytest.mark.parametrize("op", ["autoencoder_loss", "autoencoder_value_and_grad", "autoencoder_sgd_step",
                                "linear_act", "contractive_penalty", "corrupt"])
@pytest.mark.parametrize("backend", ["native", "reference"])
def test_registered_ops_raise_or_succeed_on_random_calls(op, backend):
    ops = torch.ops.sslkern

    @settings(max_examples=60, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def prop(data):
        B, D, H = (data.draw(EXTENT) for _ in range(3))
        # each length is right or off by a little: the guards must catch every mismatch
        def near(n):
            return max(0, n + data.draw(st.sampled_from([0, 0, 0, -1, 1])))
        x, W = _tensor(data, B, near(D)), _tensor(data, H, D)
        b, c = _tensor(data, near(H)), _tensor(data, near(D))
        act, loss, kind = data.draw(NAMES["act"]), data.draw(NAMES["loss"]), data.draw(NAMES["kind"])
        level = data.draw(st.sampled_from([0.0, 0.3, 1.5, -0.1]))
        try:
            if op == "linear_act":
                ops.linear_act(x, W, b, act, data.draw(st.booleans()), backend)
            elif op == "contractive_penalty":
                ops.contractive_penalty(x, W, b, act, backend)
            elif op == "corrupt":
                ops.corrupt(x, kind, level, 0, 0, backend, None)
            else:
                args = (x, W, b, c, act, data.draw(NAMES["act"]), loss, kind, level, 0.1, 0, 0, backend)
                if op == "autoencoder_sgd_step":
                    args = (*args, 0.1)
                getattr(ops, op)(*args)
        except (ValueError, TypeError) as exc:
            assert str(exc).strip(), "an error must say what is wrong"
        except RuntimeError as exc:  # only torch._check's own class, which the fake path raises
            assert "sslkern::" in str(exc), f"unexpected error from {op}: {exc}"

    prop()
