"""The registered ops guard themselves: `torch.ops.sslkern.*` called directly (as torch.compile
graphs, torch.export and other libraries call them, without sslkern.functional's wrappers)
raise a ValueError/TypeError naming the argument for every input a backend would index out
of bounds, on every backend, and their fake implementations raise the same at trace time.

The cases that used to crash the process (segfault, writes past a tensor's end) run in a
subprocess, so a regression fails one test instead of killing pytest."""
import subprocess
import sys
import textwrap

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

import sslkern  # noqa: F401  (registers torch.ops.sslkern.*)

ops = torch.ops.sslkern
B, D, H = 3, 5, 4
NAMES = ("sigmoid", "sigmoid", "bce")  # encoder, decoder, loss
STREAM = ("mask", 0.25, 0.1, 7, 0)  # corruption, level, contractive, seed, offset
BACKENDS = sslkern.available_backends()


def tensors(dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(B, D, generator=g, dtype=dtype)
    W = torch.randn(H, D, generator=g, dtype=dtype) * 0.1
    return x, W, torch.zeros(H, dtype=dtype), torch.zeros(D, dtype=dtype)


def rng():
    return torch.tensor([7, 0], dtype=torch.int64)


# Each op with good arguments, as a function of keyword overrides: a case replaces one
# argument with a bad value. `backend` is filled in per test.

def call_loss(backend, x=None, W=None, b=None, c=None, names=NAMES, stream=STREAM, rng=None):
    gx, gW, gb, gc = tensors()
    return ops.autoencoder_loss(_or(x, gx), _or(W, gW), _or(b, gb), _or(c, gc), *names, *stream, backend, rng)


def call_value_and_grad(backend, x=None, W=None, b=None, c=None, names=NAMES, stream=STREAM, rng=None):
    gx, gW, gb, gc = tensors()
    return ops.autoencoder_value_and_grad(_or(x, gx), _or(W, gW), _or(b, gb), _or(c, gc), *names, *stream,
                                          backend, rng)


def call_sgd_step(backend, x=None, W=None, b=None, c=None, names=NAMES, stream=STREAM, rng=None, lr=0.1):
    gx, gW, gb, gc = tensors()
    return ops.autoencoder_sgd_step(_or(x, gx), _or(W, gW), _or(b, gb), _or(c, gc), *names, *stream,
                                    backend, lr, rng)


def call_loss_backward(backend, grad=None, x=None, W=None, c=None, h=None, ax=None, r=None, s2col=None,
                       dc=None, hcol=None, h_noisy=None, names=NAMES, stream=STREAM, rng=None, penalties=()):
    gx, gW, gb, gc = tensors()
    _, gh, gax, gr, gs2col, gdc, ghcol, gh_noisy = ops.autoencoder_loss(gx, gW, gb, gc, *NAMES, *STREAM, "reference",
                                                                       None, *penalties)
    return ops.autoencoder_loss_backward(
        _or(grad, torch.tensor(1.0)), _or(x, gx), _or(W, gW), _or(c, gc), _or(h, gh), _or(ax, gax),
        _or(r, gr), _or(s2col, gs2col), _or(dc, gdc), _or(hcol, ghcol), _or(h_noisy, gh_noisy), *names, *stream,
        False, backend, rng, *penalties)


def call_linear(backend, x=None, W=None, bias=None, activation="sigmoid", transpose=True):
    gx, gW, gb, gc = tensors()
    default_bias = gb if transpose else gc
    default_x = gx if transpose else torch.rand(B, H)
    return ops.linear_act(_or(x, default_x), _or(W, gW), _or(bias, default_bias), activation, transpose, backend)


def call_linear_backward(backend, grad_y=None, y=None, x=None, W=None, activation="sigmoid", transpose=True):
    gx, gW, gb, _ = tensors()
    gy = ops.linear_act(gx, gW, gb, "sigmoid", True, "reference")
    return ops.linear_act_backward(_or(grad_y, torch.ones_like(gy)), _or(y, gy), _or(x, gx), _or(W, gW),
                                   activation, transpose, True, backend)


def call_penalty(backend, x=None, W=None, b=None, activation="sigmoid"):
    gx, gW, gb, _ = tensors()
    return ops.contractive_penalty(_or(x, gx), _or(W, gW), _or(b, gb), activation, backend)


def call_penalty_backward(backend, grad=None, x=None, W=None, h=None, r=None, s2col=None, activation="sigmoid"):
    gx, gW, gb, _ = tensors()
    _, gh, gr, gs2col = ops.contractive_penalty(gx, gW, gb, "sigmoid", "reference")
    return ops.contractive_penalty_backward(_or(grad, torch.tensor(1.0)), _or(x, gx), _or(W, gW), _or(h, gh),
                                            _or(r, gr), _or(s2col, gs2col), activation, True, backend)


def call_corrupt(backend, x=None, kind="mask", level=0.25, offset=0, rng=None):
    return ops.corrupt(_or(x, tensors()[0]), kind, level, 7, offset, backend, rng)


def call_corrupt_grad(backend, grad=None, kind="mask", level=0.25, offset=0, rng=None):
    return ops.corrupt_grad(_or(grad, tensors()[0]), kind, level, 7, offset, backend, rng)


def call_philox(backend, n=10, offset=0, device="cpu"):
    return ops.philox(n, 7, offset, False, torch.device(device), backend)


def _or(value, default):
    return default if value is None else value


OBJECTIVES = {"autoencoder_loss": call_loss, "autoencoder_value_and_grad": call_value_and_grad,
              "autoencoder_sgd_step": call_sgd_step}
VALID = dict(OBJECTIVES, autoencoder_loss_backward=call_loss_backward, linear_act=call_linear,
             linear_act_decode=lambda be: call_linear(be, transpose=False),
             linear_act_backward=call_linear_backward, contractive_penalty=call_penalty,
             contractive_penalty_backward=call_penalty_backward, corrupt=call_corrupt,
             corrupt_grad=call_corrupt_grad, philox=call_philox)

f64 = torch.float64
# (id, call, overrides, exception, what the message must name)
CASES = []
for op, call in OBJECTIVES.items():
    x, W, b, c = tensors()
    CASES += [
        (f"{op}-short-b", call, dict(b=torch.zeros(1)), ValueError, r"\bb has shape \(1,\)"),
        (f"{op}-short-c", call, dict(c=torch.zeros(2)), ValueError, r"\bc has shape \(2,\)"),
        (f"{op}-long-c", call, dict(c=torch.zeros(D + 3)), ValueError, r"\bc has shape"),
        (f"{op}-mismatched-D", call, dict(x=torch.rand(B, D + 1)), ValueError, r"\bx has shape"),
        (f"{op}-x-1d", call, dict(x=torch.rand(D)), ValueError, r"\bx must have 2 dimension"),
        (f"{op}-W-3d", call, dict(W=W[None]), ValueError, r"\bW must have 2 dimension"),
        (f"{op}-b-2d", call, dict(b=b[None]), ValueError, r"\bb must have 1 dimension"),
        (f"{op}-int-x", call, dict(x=torch.ones(B, D, dtype=torch.int32)), TypeError, r"\bx must have a floating"),
        (f"{op}-int-W", call, dict(W=torch.ones(H, D, dtype=torch.int64)), TypeError, r"\bW must have a floating"),
        (f"{op}-mixed-params", call, dict(c=c.to(f64)), TypeError, r"share one dtype.*\bc is torch.float64"),
        (f"{op}-mixed-b", call, dict(b=b.to(f64)), TypeError, r"share one dtype.*\bb is torch.float64"),
        (f"{op}-encoder", call, dict(names=("sigmoidal", "sigmoid", "bce")), ValueError, r"\bencoder must be one of"),
        (f"{op}-decoder", call, dict(names=("sigmoid", "gelu", "mse")), ValueError, r"\bdecoder must be one of"),
        (f"{op}-loss", call, dict(names=("sigmoid", "sigmoid", "l1")), ValueError, r"\bloss must be one of"),
        (f"{op}-bce-needs-sigmoid", call, dict(names=("sigmoid", "tanh", "bce")), ValueError, r"needs decoder='sigmoid'"),
        (f"{op}-corruption", call, dict(stream=("dropout", 0.25, 0.1, 7, 0)), ValueError, r"\bcorruption must be one of"),
        (f"{op}-level", call, dict(stream=("mask", 1.5, 0.1, 7, 0)), ValueError, r"\blevel must be"),
        (f"{op}-level-nan", call, dict(stream=("gaussian", float("nan"), 0.1, 7, 0)), ValueError, r"\blevel must be"),
        (f"{op}-contractive", call, dict(stream=("mask", 0.25, -1.0, 7, 0)), ValueError, r"\bcontractive must be"),
        (f"{op}-offset", call, dict(stream=("mask", 0.25, 0.1, 7, -1)), ValueError, r"\boffset must be"),
        (f"{op}-offset-2**32", call, dict(stream=("mask", 0.25, 0.1, 7, 2**32)), ValueError, r"\boffset must be"),
        (f"{op}-rng-dtype", call, dict(rng=torch.zeros(2, dtype=torch.int32)), TypeError, r"\brng must be an int64"),
        (f"{op}-rng-shape", call, dict(rng=torch.zeros(3, dtype=torch.int64)), ValueError, r"\brng must have shape \[2\]"),
        (f"{op}-rng-2d", call, dict(rng=torch.zeros(1, 2, dtype=torch.int64)), ValueError, r"\brng must have shape \[2\]"),
        (f"{op}-rng-strided", call, dict(rng=torch.zeros(4, dtype=torch.int64)[::2]), ValueError, r"\brng must be contiguous"),
        (f"{op}-rng-meta", call, dict(rng=torch.zeros(2, dtype=torch.int64, device="meta")), ValueError, r"\brng must be on cpu"),
        (f"{op}-c-meta", call, dict(c=torch.zeros(D, device="meta")), ValueError, r"one device.*\bc on meta"),
    ]
CASES += [
    ("sgd_step-lr-nan", call_sgd_step, dict(lr=float("nan")), ValueError, r"\blr must be"),
    ("sgd_step-lr-negative", call_sgd_step, dict(lr=-1.0), ValueError, r"\blr must be"),
    ("loss_backward-short-h", call_loss_backward, dict(h=torch.zeros(B, H - 1)), ValueError, r"\bh has shape"),
    ("loss_backward-short-ax", call_loss_backward, dict(ax=torch.zeros(B, D)), ValueError, r"\bax has shape"),
    ("loss_backward-short-r", call_loss_backward, dict(r=torch.zeros(1)), ValueError, r"\br has shape"),
    ("loss_backward-short-s2col", call_loss_backward, dict(s2col=torch.zeros(0)), ValueError, r"\bs2col has shape"),
    ("loss_backward-short-dc", call_loss_backward, dict(dc=torch.zeros(1)), ValueError, r"\bdc has shape"),
    ("loss_backward-short-c", call_loss_backward, dict(c=torch.zeros(1)), ValueError, r"\bc has shape"),
    ("loss_backward-grad-1d", call_loss_backward, dict(grad=torch.ones(3)), ValueError, r"\bgrad must have 0 dimension"),
    ("loss_backward-h-f64", call_loss_backward, dict(h=torch.zeros(B, H, dtype=f64)), TypeError, r"\bh is torch.float64"),
    ("loss_backward-short-hcol", call_loss_backward, dict(hcol=torch.zeros(H - 1), penalties=(0.1,)), ValueError,
     r"\bhcol has shape"),
    ("loss_backward-short-h_noisy", call_loss_backward, dict(h_noisy=torch.zeros(B, H), penalties=(0, 0.05, "kl", 0.1, 0.1, 2)),
     ValueError, r"\bh_noisy has shape"),
    ("loss_backward-bad-sparsity-kind", call_loss_backward, dict(penalties=(0.1, 0.05, "l3")), ValueError,
     r"\bsparsity_kind must be one of"),
    ("loss_backward-rng", call_loss_backward, dict(rng=torch.zeros(5, dtype=torch.int64)), ValueError, r"\brng must have shape"),
    ("linear_act-short-bias", call_linear, dict(bias=torch.zeros(1)), ValueError, r"\bbias has shape \(1,\)"),
    ("linear_act-decode-short-bias", call_linear, dict(bias=torch.zeros(2), transpose=False), ValueError, r"\bbias has shape"),
    ("linear_act-mismatched-D", call_linear, dict(x=torch.rand(B, D + 2)), ValueError, r"\bx has shape"),
    ("linear_act-decode-mismatched-H", call_linear, dict(x=torch.rand(B, H + 1), transpose=False), ValueError, r"\bx has shape"),
    ("linear_act-x-3d", call_linear, dict(x=torch.rand(1, B, D)), ValueError, r"\bx must have 2 dimension"),
    ("linear_act-bias-0d", call_linear, dict(bias=torch.tensor(0.0)), ValueError, r"\bbias must have 1 dimension"),
    ("linear_act-int-W", call_linear, dict(W=torch.ones(H, D, dtype=torch.int32)), TypeError, r"\bW must have a floating"),
    ("linear_act-bias-f64", call_linear, dict(bias=torch.zeros(H, dtype=f64)), TypeError, r"\bbias is torch.float64"),
    ("linear_act-activation", call_linear, dict(activation="swish"), ValueError, r"\bactivation must be one of"),
    ("linear_act-bias-meta", call_linear, dict(bias=torch.zeros(H, device="meta")), ValueError, r"\bbias on meta"),
    ("linear_act_backward-short-y", call_linear_backward, dict(y=torch.zeros(B, H - 1)), ValueError, r"\by has shape"),
    ("linear_act_backward-short-grad_y", call_linear_backward, dict(grad_y=torch.zeros(B - 1, H)), ValueError, r"\bgrad_y has shape"),
    ("linear_act_backward-mismatched-D", call_linear_backward, dict(x=torch.rand(B, D - 1)), ValueError, r"\bx has shape"),
    ("linear_act_backward-grad_y-f64", call_linear_backward, dict(grad_y=torch.ones(B, H, dtype=f64)), TypeError, r"\bgrad_y is torch.float64"),
    ("linear_act_backward-activation", call_linear_backward, dict(activation="gelu"), ValueError, r"\bactivation must be one of"),
    ("penalty-short-b", call_penalty, dict(b=torch.zeros(1)), ValueError, r"\bb has shape"),
    ("penalty-mismatched-D", call_penalty, dict(x=torch.rand(B, D + 1)), ValueError, r"\bx has shape"),
    ("penalty-int-x", call_penalty, dict(x=torch.ones(B, D, dtype=torch.int64)), TypeError, r"\bx must have a floating"),
    ("penalty-activation", call_penalty, dict(activation="bogus"), ValueError, r"\bactivation must be one of"),
    ("penalty_backward-short-r", call_penalty_backward, dict(r=torch.zeros(1)), ValueError, r"\br has shape"),
    ("penalty_backward-short-s2col", call_penalty_backward, dict(s2col=torch.zeros(H + 1)), ValueError, r"\bs2col has shape"),
    ("penalty_backward-short-h", call_penalty_backward, dict(h=torch.zeros(B, 1)), ValueError, r"\bh has shape"),
    ("penalty_backward-grad-2d", call_penalty_backward, dict(grad=torch.ones(1, 1)), ValueError, r"\bgrad must have 0"),
    ("corrupt-kind", call_corrupt, dict(kind="dropout"), ValueError, r"\bkind must be one of"),
    ("corrupt-level", call_corrupt, dict(level=2.0), ValueError, r"\blevel must be"),
    ("corrupt-offset", call_corrupt, dict(offset=-5), ValueError, r"\boffset must be"),
    ("corrupt-int-x", call_corrupt, dict(x=torch.ones(3, dtype=torch.int64)), TypeError, r"\bx must have a floating"),
    ("corrupt-rng-dtype", call_corrupt, dict(rng=torch.zeros(2)), TypeError, r"\brng must be an int64"),
    ("corrupt-rng-shape", call_corrupt, dict(rng=torch.zeros(1, dtype=torch.int64)), ValueError, r"\brng must have shape"),
    ("corrupt-rng-device", call_corrupt, dict(rng=torch.zeros(2, dtype=torch.int64, device="meta")), ValueError, r"\brng must be on"),
    ("corrupt-too-many-counters", call_corrupt, dict(x=torch.zeros(1).expand(2**32 + 1)), ValueError, r"\bx has 4294967297 elements"),
    ("corrupt_grad-kind", call_corrupt_grad, dict(kind="none!"), ValueError, r"\bkind must be one of"),
    ("corrupt_grad-rng", call_corrupt_grad, dict(rng=torch.zeros(2, dtype=torch.int64)[:1]), ValueError, r"\brng must have shape"),
    ("corrupt_grad-int", call_corrupt_grad, dict(grad=torch.ones(2, dtype=torch.int32)), TypeError, r"\bgrad must have a floating"),
    ("philox-negative-n", call_philox, dict(n=-1), ValueError, r"\bn must be >= 0"),
    ("philox-too-many", call_philox, dict(n=2**32 + 1), ValueError, r"\bn has 4294967297 elements"),
    ("philox-offset", call_philox, dict(offset=2**32), ValueError, r"\boffset must be"),
]
if not torch.cuda.is_available():
    CASES.append(("philox-cuda-without-cuda", call_philox, dict(device="cuda"), ValueError, r"\bdevice cuda.*CUDA"))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_registered_op_rejects_bad_input(case, backend):
    _, call, overrides, error, names = case
    with pytest.raises(error, match=names):
        call(backend, **overrides)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op", sorted(VALID))
def test_registered_op_runs_good_input(op, backend):
    """The guards let every valid call through (and the strided rng / parameters below)."""
    VALID[op](backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_guarded_ops_take_non_contiguous_inputs(backend):
    """A strided or expanded tensor reaches the backend as a dense copy: what the native
    kernels index is always inside the tensor, and the numbers match the dense call."""
    x, W, b, c = tensors(f64)
    views = (x.T.contiguous().T, torch.stack([W, W], 2)[:, :, 1], torch.stack([b, b], 1)[:, 0],
             torch.zeros(1, dtype=f64).expand(D))
    dense = (x, W, b, torch.zeros(D, dtype=f64))
    for got, want in zip(ops.autoencoder_loss(*views, *NAMES, *STREAM, backend, None),
                         ops.autoencoder_loss(*dense, *NAMES, *STREAM, backend, None)):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    expanded_bias = torch.zeros(1, dtype=f64).expand(H)
    torch.testing.assert_close(ops.linear_act(x, W, expanded_bias, "tanh", True, backend),
                               ops.linear_act(x, W, torch.zeros(H, dtype=f64), "tanh", True, backend))
    expanded_x = torch.ones(1, dtype=f64).expand(B, D)
    torch.testing.assert_close(ops.corrupt(expanded_x, "mask", 0.5, 3, 0, backend, None),
                               ops.corrupt(torch.ones(B, D, dtype=f64), "mask", 0.5, 3, 0, backend, None))


def test_unknown_backend_name_reaching_an_op():
    with pytest.raises(sslkern.BackendError, match="unknown backend 'bogus'"):
        call_linear("bogus")


# --- the fake implementations: compiled graphs fail at trace time --------------------------


@pytest.mark.parametrize("case", [c for c in CASES if "meta" not in c[0] and "philox" not in c[0]
                                  and "too-many" not in c[0]], ids=lambda c: c[0])
def test_fake_implementation_rejects_bad_input(case):
    """The same cases under FakeTensorMode (what torch.compile and torch.export trace with)."""
    _, call, overrides, error, names = case
    with FakeTensorMode(allow_non_fake_inputs=True):
        with pytest.raises(error, match=names):
            call("auto", **overrides)


def test_fake_philox_rejects_bad_input():
    with FakeTensorMode():
        with pytest.raises(ValueError, match=r"\bn must be >= 0"):
            call_philox("auto", n=-3)
        with pytest.raises(ValueError, match=r"\boffset must be"):
            call_philox("auto", offset=-1)
        assert call_philox("auto", n=4).shape == (4,)


def test_compiled_graph_fails_at_trace_time():
    """torch.compile(fullgraph=True) with a short bias raises while tracing (dynamo runs the
    fake implementation), with the guard's message; the real kernel never runs."""
    def encode(x, W, bias):
        return ops.linear_act(x, W, bias, "sigmoid", True, "auto") * 2

    compiled = torch.compile(encode, fullgraph=True, backend="eager")
    with pytest.raises(Exception) as raised:
        compiled(torch.rand(2, D), torch.rand(H, D), torch.rand(2))
    assert type(raised.value).__module__.startswith("torch._dynamo"), type(raised.value)
    assert "bias has shape (2,)" in str(raised.value)


def test_compiled_sgd_step_fails_at_trace_time():
    def step(x, W, b, c):
        return ops.autoencoder_sgd_step(x, W, b, c, *NAMES, "none", 0.0, 0.0, 0, 0, "auto", 0.1, None)

    compiled = torch.compile(step, fullgraph=True, backend="eager")
    x, W, b, _ = tensors()
    with pytest.raises(Exception) as raised:
        compiled(x, W, b, torch.zeros(1))
    assert type(raised.value).__module__.startswith("torch._dynamo"), type(raised.value)
    assert "c has shape (1,)" in str(raised.value)


# --- the crashes of the issue, each in a subprocess -----------------------------------------

CRASH_PROBES = {
    # x and W of 2 x 2**23 with a 1-entry c: a segfault before the guards
    "sgd_step-huge-D-short-c": """
        x = torch.rand(2, 2**23); W = torch.rand(2, 2**23)
        probe(lambda: ops.autoencoder_sgd_step(x, W, torch.zeros(2), torch.zeros(1), "sigmoid", "sigmoid",
                                               "bce", "none", 0., 0., 0, 0, BACKEND, 0.1))
    """,
    # a 2-entry c with D = 6: wrote past c's end
    "sgd_step-D6-short-c": """
        x = torch.rand(2, 6); W = torch.rand(2, 6)
        probe(lambda: ops.autoencoder_sgd_step(x, W, torch.zeros(2), torch.zeros(2), "sigmoid", "sigmoid",
                                               "bce", "none", 0., 0., 0, 0, BACKEND, 0.1))
    """,
    "value_and_grad-short-b": """
        x = torch.rand(64, 300); W = torch.rand(200, 300)
        probe(lambda: ops.autoencoder_value_and_grad(x, W, torch.zeros(1), torch.zeros(300), "sigmoid",
                                                     "sigmoid", "bce", "mask", 0.5, 0.1, 0, 0, BACKEND))
    """,
    # linear_act with a short bias read past it and returned garbage
    "linear_act-short-bias": """
        probe(lambda: ops.linear_act(torch.rand(4, 6), torch.rand(100000, 6), torch.zeros(1), "sigmoid", True,
                                     BACKEND))
    """,
}
PRELUDE = """
import sys, torch, sslkern
ops = torch.ops.sslkern
def probe(fn):
    try:
        fn()
    except (ValueError, TypeError) as exc:
        print("RAISED", type(exc).__name__, exc, flush=True)
        return
    print("NO ERROR", flush=True)
"""


def test_former_crashes_raise_in_a_subprocess():
    """Every probe on each CPU backend, in one child process (importing torch costs seconds):
    each prints one line as it goes, so a crash shows which probe it was."""
    backends = [b for b in ("native", "reference") if b in BACKENDS]
    script = PRELUDE
    for name in sorted(CRASH_PROBES):
        for backend in backends:
            script += f"print({name + ' on ' + backend!r}, end=': ', flush=True)\nBACKEND = {backend!r}\n"
            script += textwrap.dedent(CRASH_PROBES[name])
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (f"a probe crashed (status {done.returncode}); the last line is the one:\n"
                                  f"{done.stdout}\n{done.stderr[-2000:]}")
    lines = done.stdout.splitlines()
    assert len(lines) == len(CRASH_PROBES) * len(backends), done.stdout
    assert all(": RAISED " in line for line in lines), done.stdout
