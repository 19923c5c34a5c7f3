"""The triton kernels' switches over kinds (sslkern/kinds.py): every known code compiles and
computes its kind, an unknown one fails when the kernel is built (never computes another kind),
and elu against a float64 torch formula. On machines without CUDA the kernels run on CPU
tensors under TRITON_INTERPRET=1 (tests/conftest.py sets it)."""
import pytest
import torch

import sslkern
from sslkern import backends
from sslkern.backends.base import StepConfig
from sslkern.kinds import ACTIVATIONS, CORRUPTIONS, LOSSES

triton = pytest.importorskip("triton")
tl = pytest.importorskip("triton.language")

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
if backends.reasons("triton", DEVICE, torch.float32):
    pytest.skip("triton cannot run here: " + "; ".join(backends.reasons("triton", DEVICE, torch.float32)),
                allow_module_level=True)

from sslkern.backends import triton as module  # noqa: E402
from sslkern.kernels.triton import common  # noqa: E402

UNKNOWN = len(ACTIVATIONS) + len(LOSSES) + len(CORRUPTIONS) + 7  # no family has this code


@triton.jit
def _switch_kernel(x_ptr, out_ptr, n, seed, level, WHICH: tl.constexpr, CODE: tl.constexpr, BLOCK: tl.constexpr):
    """out = one of common's switches over a kind, applied to x."""
    idx = tl.arange(0, BLOCK)
    ok = idx < n
    x = tl.load(x_ptr + idx, mask=ok, other=0.0)
    if WHICH == 0:
        y = common.activation(x, CODE)
    elif WHICH == 1:
        y = common.act_d1(x, CODE)
    elif WHICH == 2:
        y = common.act_d2(x, CODE)
    elif WHICH == 3:
        y = common.corrupt_values(x, idx.to(tl.int64), seed.to(tl.uint64), 0, level, 0.0, CODE)
    else:
        y = common.keep_values(x, idx.to(tl.int64), seed.to(tl.uint64), 0, level, CODE)
    tl.store(out_ptr + idx, y, mask=ok)


SWITCHES = {"activation": (0, ACTIVATIONS), "act_d1": (1, ACTIVATIONS), "act_d2": (2, ACTIVATIONS),
            "corrupt_values": (3, CORRUPTIONS), "keep_values": (4, CORRUPTIONS)}


def run_switch(which, code, x):
    out = torch.empty_like(x)
    _switch_kernel[(1,)](x_ptr=x, out_ptr=out, n=x.numel(), seed=5, level=0.5, WHICH=SWITCHES[which][0],
                         CODE=code, BLOCK=triton.next_power_of_2(x.numel()))
    return out


def raised_unknown(excinfo):
    """The exception (or one it was raised from) names an unknown code."""
    exc = excinfo.value
    while exc is not None:
        if "unknown" in str(exc) or "unknown" in repr(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def test_codes_come_from_the_registry():
    for table, names in ((ACTIVATIONS, dict(linear="LINEAR", sigmoid="SIGMOID", tanh="TANH", relu="RELU",
                                            softplus="SOFTPLUS", elu="ELU")),
                         (LOSSES, dict(bce="BCE", mse="MSE")),
                         (CORRUPTIONS, dict(none="NO_CORRUPTION", mask="MASK", gaussian="GAUSSIAN",
                                            salt_pepper="SALT_PEPPER", block="BLOCK", patch="PATCH"))):
        assert set(names) == set(table.names()), "a kind without its constant in kernels/triton/common.py"
        for name, constant in names.items():
            assert getattr(common, constant).value == table.code(name)
    for bits, table, prop in ((common.PIECEWISE_LINEAR, ACTIVATIONS, "piecewise_linear"),
                              (common.PASSES_GRADIENT, CORRUPTIONS, "passes_gradient")):
        assert bits.value == sum(1 << row.code for row in table if getattr(row, prop))


@pytest.mark.parametrize("which", list(SWITCHES))
def test_every_known_code_runs_and_an_unknown_one_raises(which):
    x = torch.linspace(-3, 3, 13, dtype=torch.float32, device=DEVICE)
    for row in SWITCHES[which][1]:
        if getattr(row, "needs_image_shape", False):  # block, patch: drawn in PyTorch, refused by the switch
            with pytest.raises(Exception):
                run_switch(which, row.code, x)
            continue
        assert torch.isfinite(run_switch(which, row.code, x)).all(), row.name
    with pytest.raises(Exception) as excinfo:
        run_switch(which, UNKNOWN, x)
    assert raised_unknown(excinfo)


def test_keep_values_follows_passes_gradient():
    x = torch.linspace(1, 2, 64, dtype=torch.float32, device=DEVICE)
    for row in CORRUPTIONS:
        if row.needs_image_shape:
            continue  # drawn in PyTorch (backends/structured.py)
        kept = run_switch("keep_values", row.code, x)
        assert torch.equal(kept, x) == row.passes_gradient, row.name


def test_act_d2_vanishes_for_the_piecewise_linear():
    h = torch.linspace(-2, 2, 9, dtype=torch.float32, device=DEVICE)
    for row in ACTIVATIONS:
        if row.piecewise_linear:
            assert (run_switch("act_d2", row.code, h) == 0).all(), row.name


class _Unknown:
    """A kinds table in which every name has a code no kernel knows."""
    def __init__(self, table):
        self.table = table

    def code(self, name):
        self.table.code(name)  # still a known name
        return UNKNOWN

    def __getitem__(self, name):
        return self.table[name]


@pytest.mark.parametrize("family", ["ACTIVATIONS", "LOSSES", "CORRUPTIONS"])
def test_launch_with_an_unknown_code_raises(family, monkeypatch):
    """Through the launchers: an unknown code fails the launch instead of returning z (or x,
    or the MSE branch) as the kernels' old `else` branches did."""
    monkeypatch.setattr(module, family, _Unknown(getattr(module, family)))
    impl = backends.get("triton")
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(5, 7, generator=gen).to(DEVICE)
    W, b, c = (torch.randn(*s, generator=gen).to(DEVICE) for s in ((3, 7), (3,), (7,)))
    calls = {"ACTIVATIONS": [lambda: impl.linear_act(x, W, b, "sigmoid", True),
                             lambda: impl.contractive(x, W, b, "tanh")],
             "LOSSES": [lambda: impl.ae_forward(x, W, b, c, StepConfig(loss="mse", decoder="linear"))],
             "CORRUPTIONS": [lambda: impl.corrupt(x, "mask", 0.3, 1, 2),
                             lambda: impl.corrupt_grad(x, "gaussian", 0.3, 1, 2),
                             lambda: impl.ae_forward(x, W, b, c, StepConfig(corruption="none"))]}[family]
    for call in calls:
        with pytest.raises(Exception) as excinfo:
            call()
        assert raised_unknown(excinfo)


# --- elu against float64 torch --------------------------------------------------------------

def elu(z):
    return torch.where(z > 0, z, torch.expm1(z))


def penalty(x, W, b):
    """Batch mean of ||dh/dx||_F^2 = sum_j f'(z_j)^2 ||W_j||^2, f'(z) = 1 or e^z."""
    z = x @ W.T + b
    s = torch.where(z > 0, torch.ones_like(z), torch.exp(z))
    return (s * s * (W * W).sum(1)).sum() / max(x.shape[0], 1)


def elu_inputs(dtype, batch=37, visible=29, hidden=23):
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(batch, visible, generator=gen, dtype=torch.float64) * 2 - 1
    W = torch.randn(hidden, visible, generator=gen, dtype=torch.float64) * (2.0 / visible ** 0.5)
    b = torch.randn(hidden, generator=gen, dtype=torch.float64) * 0.5
    c = torch.randn(visible, generator=gen, dtype=torch.float64) * 0.5
    return [t.to(DEVICE) for t in (x, W, b, c)]


def check(fn, formula, inputs, dtype):
    tolerance = {torch.float64: 1e-12, torch.float32: 2e-6}[dtype]
    ours = [t.detach().to(dtype).requires_grad_(True) for t in inputs]
    ref = [t.detach().double().requires_grad_(True) for t in inputs]
    with sslkern.use_backend("triton"):
        out = fn(*ours)
    expected = formula(*ref)
    g = torch.randn(expected.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64).to(DEVICE)
    assert (expected.double() < 0).any() or expected.dim() == 0
    scale = max(expected.abs().max().item(), 1.0)
    assert (out.double() - expected).abs().max().item() <= tolerance * scale
    for name, a, e in zip("xWbc", torch.autograd.grad(out, ours, g.to(dtype)), torch.autograd.grad(expected, ref, g)):
        scale = max(e.abs().max().item(), 1.0)
        assert (a.double() - e).abs().max().item() <= tolerance * scale, f"d{name}"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_elu_single_layers(dtype):
    x, W, b, c = elu_inputs(dtype)
    check(lambda *t: sslkern.encode(*t, activation="elu"), lambda x, W, b: elu(x @ W.T + b), [x, W, b], dtype)
    h = x[:, :W.shape[0]]
    check(lambda *t: sslkern.decode(*t, activation="elu"), lambda h, W, c: elu(h @ W + c), [h, W, c], dtype)
    check(lambda *t: 1.7 * sslkern.contractive_penalty(*t, activation="elu"),
          lambda *t: 1.7 * penalty(*t), [x, W, b], dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_elu_objective(dtype):
    """elu encoder and decoder, MSE, contractive: L + λP with f'' = e^z in the penalty's gradient."""
    lam = 0.4

    def formula(x, W, b, c):
        y = elu(elu(x @ W.T + b) @ W + c)
        return 0.5 * ((y - x) ** 2).sum() / x.shape[0] + lam * penalty(x, W, b)

    check(lambda *t: sslkern.autoencoder_loss(*t, encoder="elu", decoder="elu", loss="mse", corruption="none",
                                              contractive=lam),
          lambda *t: formula(*t).reshape(()), elu_inputs(dtype), dtype)


def test_elu_keeps_nan_and_large_inputs():
    z = torch.tensor([float("nan"), -1e4, -50.0, -1e-8, 0.0, 1e-8, 80.0, 1e30, float("inf")], device=DEVICE)
    code = ACTIVATIONS.code("elu")
    f = run_switch("activation", code, z)
    assert torch.isnan(f[0])
    torch.testing.assert_close(f[1:], elu(z[1:].double()).float(), rtol=1e-6, atol=0)  # a few ulps (expm1)
    h = f[1:]
    assert torch.equal(run_switch("act_d1", code, h), torch.where(h > 0, 1.0, h + 1.0))
    assert torch.equal(run_switch("act_d2", code, h), torch.where(h > 0, 0.0, h + 1.0))
    assert torch.isnan(run_switch("act_d1", code, f[:1])).all() and torch.isnan(run_switch("act_d2", code, f[:1])).all()
