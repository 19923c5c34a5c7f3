"""Mixed precision (the objective's `precision`): bf16/fp16 product operands, fp32 accumulation,
fp32 parameters, loss and gradients. Every backend and route against the float64 oracle with
tolerances derived from the format's unit roundoff; the rounding must actually happen (the
result moves off the fp32 one); fp16's gradient scale; the models, fit, checkpoints, the CLI
flag, opcheck and torch.compile; the errors."""
import numpy as np
import pytest
import torch
from helpers import DEVICE, leaves, make_inputs

import sslkern
from sslkern import kinds
from sslkern import reference as oracle
from sslkern.backends import blas, product
from sslkern.backends.base import StepConfig

BACKENDS = sslkern.available_backends()
# Unit roundoff (half the spacing of 1) of each rounded format: 8 and 11 significant bits.
UNIT_ROUNDOFF = {"bf16": 2.0 ** -8, "fp16": 2.0 ** -11}
# An error bound in units of the roundoff, relative to the largest entry of the exact value:
# each product rounds both operands (2u per term), the CPU's bf16 products round their output
# once more (u), and a product's error feeds the next one through the epilogues (a few u more).
BOUND_IN_UNITS = 16
CASES = {
    "dae+cae": dict(encoder="sigmoid", decoder="sigmoid", loss="bce", corruption="mask", level=0.3,
                    contractive=0.2),
    "tanh-mse-gaussian": dict(encoder="tanh", decoder="linear", loss="mse", corruption="gaussian", level=0.1,
                              contractive=0.1),
}
SHAPE = (37, 53, 29)  # no multiple of any tile


def combos():
    return [pytest.param(b, p, id=f"{b}-{p}") for b in BACKENDS for p in ("bf16", "fp16")]


def exact(x, W, b, c, cfg):
    """The float64 oracle's loss and gradients (x, W, b, c)."""
    inputs = leaves([x, W, b, c], torch.float64, torch.device("cpu"))
    value = oracle.autoencoder_loss(*inputs, **cfg)
    return [value.detach(), *torch.autograd.grad(value, inputs)]


def assert_within_format(got, want, precision, what):
    bound = BOUND_IN_UNITS * UNIT_ROUNDOFF[precision] * float(want.abs().max())
    error = float((got.detach().double().cpu() - want).abs().max())
    assert error <= bound, f"{what}: error {error:.3g} > {bound:.3g} ({precision})"


def inputs(case):
    x, W, b, c = (t.float() for t in make_inputs(*SHAPE, torch.float64, DEVICE))
    return x, W, b, c, dict(CASES[case], seed=2**33 + 5, offset=17)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("backend,precision", combos())
def test_every_route_against_the_oracle(backend, precision, case):
    x, W, b, c, cfg = inputs(case)
    want = exact(x, W, b, c, cfg)
    with sslkern.use_backend(backend):
        # autoencoder_loss with autograd, dx included
        params = leaves([x, W, b, c])
        loss = sslkern.autoencoder_loss(*params, **cfg, precision=precision)
        grads = torch.autograd.grad(loss, params)
        assert loss.dtype == torch.float32 and all(g.dtype == torch.float32 for g in grads)
        for name, got, w in zip(("loss", "dx", "dW", "db", "dc"), [loss, *grads], want):
            assert_within_format(got, w, precision, f"autoencoder_loss {name}")
        # value_and_grad: the same numbers as the autograd route
        value, (dW, db, dc) = sslkern.autoencoder_value_and_grad(x, W, b, c, **cfg, precision=precision)
        for name, got, w in zip(("loss", "dW", "db", "dc"), [value, dW, db, dc], [want[0], *want[2:]]):
            assert_within_format(got, w, precision, f"value_and_grad {name}")
        # sgd_step: the update of value_and_grad's gradients
        lr = 0.5
        stepped = [t.clone() for t in (W, b, c)]
        before = sslkern.autoencoder_sgd_step(x, *stepped, lr=lr, **cfg, precision=precision)
        assert_within_format(before, want[0], precision, "sgd_step loss")
        for name, p, new, g in zip("Wbc", (W, b, c), stepped, want[2:]):
            assert_within_format((p - new) / lr, g, precision, f"sgd_step d{name}")


@pytest.mark.parametrize("backend,precision", combos())
def test_the_rounding_happens(backend, precision):
    """The rounded run leaves the fp32 one by more than fp32 rounding, and the fp32 run is far
    closer to the oracle: the option reaches the products."""
    x, W, b, c, cfg = inputs("dae+cae")
    want = exact(x, W, b, c, cfg)
    with sslkern.use_backend(backend):
        full = sslkern.autoencoder_value_and_grad(x, W, b, c, **cfg)
        rounded = sslkern.autoencoder_value_and_grad(x, W, b, c, **cfg, precision=precision)
    full_error = float((full[1][0].double().cpu() - want[2]).abs().max())
    rounded_error = float((rounded[1][0].double().cpu() - want[2]).abs().max())
    assert rounded_error > 20 * full_error > 0


def test_default_precision_is_bit_identical_to_no_argument():
    x, W, b, c, cfg = inputs("dae+cae")
    plain = sslkern.autoencoder_value_and_grad(x, W, b, c, **cfg)
    named = sslkern.autoencoder_value_and_grad(x, W, b, c, **cfg, precision="default")
    assert torch.equal(plain[0], named[0]) and all(torch.equal(p, n) for p, n in zip(plain[1], named[1]))


def test_half_inputs_are_accepted_with_fp32_parameters():
    x, W, b, c, cfg = inputs("dae+cae")
    want = exact(x.bfloat16().float(), W, b, c, cfg)
    value, grads = sslkern.autoencoder_value_and_grad(x.bfloat16(), W, b, c, **cfg, precision="bf16")
    assert value.dtype == torch.float32 and grads[0].dtype == torch.float32
    assert_within_format(value, want[0], "bf16", "loss")


# --- fp16's gradient scale ----------------------------------------------------------------


def test_fp16_gradient_scale_is_a_power_of_two_near_the_batch():
    fp16, bf16 = StepConfig(precision="fp16"), StepConfig(precision="bf16")
    assert product.gradient_scale(bf16, 1000) == 1.0
    assert product.gradient_scale(fp16, 1000) == 1024.0 and product.gradient_scale(fp16, 1) == 1.0
    assert product.gradient_scale(fp16, 0) == 1.0


def test_fp16_scaled_gradient_operand_survives_where_plain_rounding_flushes_it():
    """dL/da carries a 1/B: entries around 1e-8 flush to zero in fp16 unless scaled first."""
    cfg = StepConfig(precision="fp16")
    gen = torch.Generator().manual_seed(0)
    grad_rows = torch.randn(64, 40, generator=gen) * 1e-8
    W = torch.randn(40, 24, generator=gen)
    want = grad_rows.double() @ W.double()
    plain = product.mm(product.rounded(grad_rows, cfg), W, cfg)
    scale = 2.0 ** 20
    scaled = product.mm(product.rounded(grad_rows, cfg, scale), W, cfg, unscale=scale)
    assert float((plain.double() - want).abs().max()) > 0.5 * float(want.abs().max())  # flushed
    assert_within_format(scaled, want, "fp16", "scaled product")


def test_rounded_scales_only_the_named_rows():
    cfg = StepConfig(precision="fp16")
    t = torch.full((4, 3), 0.5)
    out = product.rounded(t, cfg, 8.0, slice(2, None))
    assert out.dtype == torch.float16
    assert torch.equal(out[:2].float(), t[:2]) and torch.equal(out[2:].float(), 4 * torch.ones(2, 3))


def fp16_at_a_large_batch(backend):
    """B = 4096: dL/da ~ 1/B sits in fp16's subnormals unless the gradient scale lifts it.
    Returns the largest error of (loss, dx, dW, db, dc) in units of the format's bound."""
    x, W, b, c = (t.float() for t in make_inputs(4096, 12, 5, torch.float64, DEVICE))
    cfg = dict(CASES["dae+cae"], seed=3, offset=0)
    want = exact(x, W, b, c, cfg)
    with sslkern.use_backend(backend):
        params = leaves([x, W, b, c])
        loss = sslkern.autoencoder_loss(*params, **cfg, precision="fp16")
        got = [loss.detach(), *torch.autograd.grad(loss, params)]
    bound = BOUND_IN_UNITS * UNIT_ROUNDOFF["fp16"]
    return max(float((g.double().cpu() - w).abs().max()) / (bound * float(w.abs().max())) for g, w in zip(got, want))


@pytest.mark.parametrize("backend", BACKENDS)
def test_fp16_at_a_large_batch_matches_the_oracle(backend):
    assert fp16_at_a_large_batch(backend) <= 1.0


@pytest.mark.skipif("triton" not in BACKENDS, reason="triton is not installed")
@pytest.mark.parametrize("scale", [1.0, 2.0 ** 20])
def test_triton_backward_kernels_scale_their_gradient_operands(scale):
    """Each backward product with a gradient operand around 1e-8 (fp16 flushes it): with the
    scale it matches float64 within the format, without it the result is lost."""
    from sslkern.backends import triton as tb
    gen = torch.Generator().manual_seed(1)
    tiny = lambda *shape: (torch.randn(*shape, generator=gen) * 1e-8).to(DEVICE)  # noqa: E731
    normal = lambda *shape: torch.randn(*shape, generator=gen).to(DEVICE)  # noqa: E731
    B, H, D = 33, 19, 27
    W, h, d_a, dz, x_tilde = normal(H, D), normal(B, H), tiny(B, D), tiny(B, H), normal(B, D)
    prec = tb._precision(W, "fp16")
    dz_out = torch.empty(B, H, device=DEVICE)
    tb._dz(d_a, W, h, None, dz_out, "linear", 0.0, False, prec, scale)
    dW = tb._weight_grad(h, dz, torch.cat([d_a, x_tilde]), torch.empty_like(W), prec, grad_scale=scale)
    dx = tb._input_grad(dz, W, W.stride(0), 1, D, torch.empty(B, D, device=DEVICE), prec, grad_scale=scale)
    d = lambda t: t.double().cpu()  # noqa: E731
    products = {"dz": (dz_out, d(d_a) @ d(W).T),
                "weight_grad": (dW, d(h).T @ d(d_a) + d(dz).T @ d(x_tilde)),
                "input_grad": (dx, d(dz) @ d(W))}
    for name, (got, want) in products.items():
        if scale == 1.0:  # flushed: the error is of the size of the result itself
            assert float((d(got) - want).abs().max()) > 0.1 * float(want.abs().max()), name
        else:
            assert_within_format(got, want, "fp16", name)


# --- the compiled CPU step at a rounded precision -------------------------------------------

native_cpu = pytest.importorskip("sslkern._native_cpu") if "native" in BACKENDS else None
needs_fused_step = pytest.mark.skipif("native" not in BACKENDS or blas.gemm_addresses()[0] is None,
                                      reason="no native CPU module or no BLAS gemm to hand it")


def special_values():
    """Normal values at every scale, fp16's subnormals and edges, ties, signed zeros, inf, NaN."""
    gen = torch.Generator().manual_seed(3)
    spread = torch.randn(4000, generator=gen) * torch.exp2(torch.randint(-30, 18, (4000,), generator=gen).float())
    edges = [0.0, -0.0, float("inf"), -float("inf"), float("nan"), 65504.0, 65519.99, 65520.0, -65536.0,
             2.0 ** -14, 2.0 ** -24, 2.0 ** -25, 3 * 2.0 ** -25, -(2.0 ** -26), 1 + 2.0 ** -8, 1 + 3 * 2.0 ** -8,
             1 + 2.0 ** -11, 1 + 3 * 2.0 ** -11, 3.4e38, -3.4e38, 1e-45]
    return torch.cat([spread, torch.tensor(edges)])


def same_values(got, want):
    """Bit-equal, NaN for NaN (any payload), -0 apart from +0."""
    nan = torch.isnan(want)
    assert torch.equal(torch.isnan(got), nan)
    assert torch.equal(got[~nan].view(torch.int32), want[~nan].view(torch.int32))


@needs_fused_step
@pytest.mark.parametrize("scale", [1.0, 1024.0])
def test_round_operand_rounds_as_torch_does(scale):
    """The C++ rounding of the products' operands against torch's conversions (round to
    nearest, ties to even), bit for bit, from a strided source."""
    values = special_values()
    cols = 61
    rows = values.numel() // cols
    src = torch.zeros(rows, cols + 3)
    src[:, :cols] = values[:rows * cols].view(rows, cols)
    scaled = src[:, :cols] * scale
    out = torch.empty(rows, cols)
    words = torch.empty(rows, cols, dtype=torch.bfloat16)
    for precision, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
        code = kinds.PRECISIONS.code(precision)
        native_cpu.round_operand(src.data_ptr(), src.stride(0), rows, cols, scale, code, False, out.data_ptr())
        same_values(out, scaled.to(dtype).float())
    native_cpu.round_operand(src.data_ptr(), src.stride(0), rows, cols, scale, 1, True, words.data_ptr())
    same_values(words.float(), scaled.to(torch.bfloat16).float())


@needs_fused_step
def test_the_compiled_step_runs_rounded_precisions():
    """bf16 and fp16 run in the one-call C++ step; with a higher-order term (whose products
    stay fp32) they go pass by pass."""
    from sslkern.backends import native
    backend = native.make_backend().parts["cpu"]
    x, W = torch.rand(4, 6), torch.rand(3, 6)
    for precision in ("bf16", "fp16"):
        assert backend.fused_step(x, W, StepConfig(precision=precision), one_call=True)
        assert not backend.fused_step(x, W, StepConfig(precision=precision, higher_order=0.5), one_call=True)


def native_value_and_grad(case, precision, shape=SHAPE):
    x, W, b, c = (t.float() for t in make_inputs(*shape, torch.float64, "cpu"))
    with sslkern.use_backend("native"):
        value, grads = sslkern.autoencoder_value_and_grad(x, W, b, c, **CASES[case], seed=5, offset=3,
                                                          precision=precision)
    return [value, *grads]


def largest_relative_difference(run, other):
    return max(float((a.double() - b.double()).abs().max() / b.double().abs().max()) for a, b in zip(run, other))


@needs_fused_step
@pytest.mark.parametrize("case", CASES)
def test_bf16_gemm_and_emulated_bf16_agree(case, monkeypatch):
    """The step's bf16 products through the BLAS bf16 gemm, and through sgemm on the same
    rounded values: both are exact products of the same operands with fp32 sums, so they
    agree to fp32 rounding, far below bf16's."""
    if blas.bf16_gemm_address() is None:
        pytest.skip("torch's BLAS has no bf16 gemm here")
    gemm = native_value_and_grad(case, "bf16", (64, 97, 45))
    monkeypatch.setattr(blas, "bf16_gemm_address", lambda: None)
    emulated = native_value_and_grad(case, "bf16", (64, 97, 45))
    fp32 = native_value_and_grad(case, "default", (64, 97, 45))
    assert largest_relative_difference(gemm, emulated) < 2e-5
    assert largest_relative_difference(gemm, fp32) > 20 * 2e-5  # the operands were rounded


@needs_fused_step
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_compiled_step_rounds_what_the_pass_route_rounds(case, precision, monkeypatch):
    """The C++ step against the pass-by-pass route, with torch's products of the rounded (and
    scaled) operands taken in fp32 (its CPU bf16 product would round the output too): the same
    roundings of the same operands, so fp32-level agreement. A rounding missed or added on
    either side shows at the format's level."""
    fused = native_value_and_grad(case, precision, (64, 97, 45))
    monkeypatch.setenv("SSLKERN_CPU_STEP", "passes")
    monkeypatch.setattr(product, "_half_product", lambda a, b: torch.mm(a.float(), b.float()))
    passes = native_value_and_grad(case, precision, (64, 97, 45))
    assert largest_relative_difference(fused, passes) < 2e-5


@needs_fused_step
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_two_call_route_equals_one_call_at_a_rounded_precision(precision):
    """The registered op runs ae_forward and ae_backward as two C++ calls, rounding every
    operand afresh; the one-call route rounds W, x~ and h once. Same bits."""
    x, W, b, c = (t.float() for t in make_inputs(*SHAPE, torch.float64, "cpu"))
    cfg = CASES["dae+cae"]
    params = leaves([W, b, c])
    loss = torch.ops.sslkern.autoencoder_loss(x, *params, cfg["encoder"], cfg["decoder"], cfg["loss"],
                                              cfg["corruption"], cfg["level"], cfg["contractive"], 5, 3,
                                              "native", precision=precision)[0]
    two_calls = [loss.detach(), *torch.autograd.grad(loss, params)]
    one_call = native_value_and_grad("dae+cae", precision)
    for got, want in zip(two_calls, one_call):
        assert torch.equal(got, want)


@pytest.mark.parametrize("backend", BACKENDS)
def test_rounded_precision_with_a_higher_order_term_matches_the_oracle(backend):
    x, W, b, c, cfg = inputs("dae+cae")
    cfg = dict(cfg, higher_order=0.4, higher_order_sigma=0.2)
    want = exact(x, W, b, c, cfg)
    with sslkern.use_backend(backend):
        value, grads = sslkern.autoencoder_value_and_grad(x, W, b, c, **cfg, precision="bf16")
    for name, got, w in zip(("loss", "dW", "db", "dc"), [value, *grads], [want[0], *want[2:]]):
        assert_within_format(got, w, "bf16", name)


# --- models, fit, checkpoints, CLI ---------------------------------------------------------


def test_model_precision_travels_in_config_and_repr():
    model = sslkern.nn.DenoisingAutoencoder(20, 6, precision="bf16")
    assert model.config()["precision"] == "bf16" and "precision='bf16'" in repr(model)
    assert sslkern.nn.TiedAutoencoder(20, 6).config()["precision"] == "default"


def test_model_route_uses_its_precision():
    X = torch.rand(16, 20)
    runs = {}
    for precision in ("default", "bf16"):
        model = sslkern.nn.DenoisingAutoencoder(20, 6, seed=1, precision=precision)
        runs[precision] = model(X).detach()
    direct = sslkern.nn.DenoisingAutoencoder(20, 6, seed=1)
    step_seed, offset = direct.take_noise(X)
    value, _ = sslkern.autoencoder_value_and_grad(X, direct.weight, direct.hidden_bias, direct.visible_bias,
                                                  corruption="mask", level=0.25, seed=step_seed,
                                                  offset=offset, precision="bf16")
    assert torch.equal(runs["bf16"], value) and not torch.equal(runs["bf16"], runs["default"])


def test_autoencoder_step_follows_the_model_precision():
    X = torch.rand(16, 20)
    weights = []
    for use_step in (False, True):
        model = sslkern.nn.DenoisingAutoencoder(20, 6, seed=2, precision="bf16")
        if use_step:
            sslkern.step.AutoencoderStep(model).sgd_step(X, 0.1)
        else:
            model.sgd_step(X, 0.1)
        weights.append(model.weight.detach().clone())
    assert torch.equal(*weights)


def test_fit_precision_applies_for_the_run_and_is_restored():
    X = torch.rand(64, 20)
    runs = {}
    for precision in (None, "bf16"):
        model = sslkern.nn.DenoisingAutoencoder(20, 6, seed=3)
        sslkern.train.fit(model, X, epochs=1, batch_size=16, lr=0.1, progress=False, precision=precision)
        assert model.precision == "default"
        runs[precision] = model.weight.detach().clone()
    preset = sslkern.nn.DenoisingAutoencoder(20, 6, seed=3, precision="bf16")
    sslkern.train.fit(preset, X, epochs=1, batch_size=16, lr=0.1, progress=False)
    assert torch.equal(preset.weight, runs["bf16"]) and not torch.equal(runs[None], runs["bf16"])


def test_fit_precision_reaches_every_stacked_layer():
    X = torch.rand(32, 20)
    seen = []
    model = sslkern.nn.StackedAutoencoder([20, 8, 4], corruption="mask", level=0.2)
    for layer in model.layers:
        layer.register_forward_pre_hook(lambda module, args: seen.append(module.precision))
    sslkern.train.fit(model, X, epochs=1, batch_size=16, lr=0.1, progress=False, precision="bf16")
    assert seen and set(seen) == {"bf16"}
    assert [layer.precision for layer in model.layers] == ["default", "default"]


def test_a_checkpoint_resumes_under_another_precision(tmp_path):
    X = torch.rand(64, 20)
    model = sslkern.nn.DenoisingAutoencoder(20, 6, seed=4, precision="bf16")
    sslkern.train.fit(model, X, epochs=1, batch_size=16, lr=0.1, progress=False, checkpoint_dir=tmp_path)
    again = sslkern.nn.DenoisingAutoencoder(20, 6, seed=4)
    history = sslkern.train.fit(again, X, epochs=2, batch_size=16, lr=0.1, progress=False,
                                checkpoint_dir=tmp_path, resume=True)
    assert len(history["loss"]) == 2 and history["steps"] == 8


def test_cli_precision_flag(tmp_path):
    from sslkern.cli import main
    data = tmp_path / "x.npy"
    np.save(data, torch.rand(40, 16).numpy())
    out = tmp_path / "run"
    code = main(["train", "--data", str(data), "--hidden", "6", "--epochs", "1", "--batch-size", "8",
                 "--precision", "bf16", "--no-progress", "--out", str(out), "--device", "cpu"])
    assert code in (0, None) and (out / "metrics.json").exists()


# --- registered ops, compile, errors -------------------------------------------------------


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b in ("reference", "native")])
def test_opcheck_with_a_rounded_precision(backend):
    x, W, b, c = (t.float() for t in make_inputs(3, 5, 4, torch.float64, "cpu"))
    ops = torch.ops.sslkern
    step = ("sigmoid", "sigmoid", "bce", "mask", 0.25, 0.3, 123, 4)
    trailing = (*sslkern.ops.autoencoder.PENALTY_DEFAULTS.values(), 0, 0, 0, 1.0, "bf16")
    saved = ops.autoencoder_loss(x, W, b, c, *step, backend, None, *trailing)[1:]
    grad = torch.tensor(1.3)
    for op, args in [
        (ops.autoencoder_loss.default, (*leaves([x, W, b, c]), *step, backend, None, *trailing)),
        (ops.autoencoder_loss_backward.default, (grad, x, W, c, *saved, *step, True, backend, None, *trailing)),
        (ops.autoencoder_value_and_grad.default, (x, W, b, c, *step, backend, None, *trailing)),
        (ops.autoencoder_sgd_step.default, (x, W.clone(), b.clone(), c.clone(), *step, backend, 0.1, None,
                                            *trailing)),
    ]:
        torch.library.opcheck(op, args)


def test_compiled_objective_with_a_rounded_precision_matches_eager():
    def objective(x, W, b, c):
        return sslkern.autoencoder_loss(x, W, b, c, corruption="mask", level=0.2, contractive=0.1, seed=5,
                                        precision="bf16")

    def run(fn):
        tensors = leaves([t.float() for t in make_inputs(7, 11, 6, torch.float64, "cpu")])
        value = fn(*tensors)
        value.backward()
        return [value.detach()] + [t.grad for t in tensors]

    torch._dynamo.reset()
    compiled = torch.compile(objective, fullgraph=True, backend="aot_eager")
    for got, want in zip(run(compiled), run(objective)):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_errors_name_the_argument():
    x, W, b, c, cfg = inputs("dae+cae")
    with pytest.raises(ValueError, match=r"precision must be one of \['default', 'bf16', 'fp16'\], got 'int8'"):
        sslkern.autoencoder_loss(x, W, b, c, **cfg, precision="int8")
    with pytest.raises(TypeError, match=r"precision='bf16'.*float32 parameters.*torch.float64"):
        sslkern.autoencoder_loss(x, W.double(), b.double(), c.double(), **cfg, precision="bf16")
    with pytest.raises(ValueError, match=r"sslkern::autoencoder_value_and_grad: precision must be one of"):
        torch.ops.sslkern.autoencoder_value_and_grad(x, W, b, c, "sigmoid", "sigmoid", "bce", "none", 0.0, 0.0,
                                                     0, 0, "auto", None, 0.0, 0.05, "kl", 0.0, 0.1, 1, 0, 0, 0,
                                                     1.0, "tf32")
    with pytest.raises(TypeError, match=r"precision='fp16'.*torch.float64"):
        sslkern.nn.TiedAutoencoder(5, 3, precision="fp16", dtype=torch.float64)
    with pytest.raises(ValueError, match=r"PretextClassifier has no autoencoder objective"):
        model = sslkern.nn.PretextClassifier("rotation", (8, 8), 6)
        sslkern.train.fit(model, torch.rand(8, 64), epochs=1, batch_size=4, lr=0.1, progress=False,
                          precision="bf16")


def test_every_precision_row_is_tested():
    assert set(kinds.PRECISIONS.names()) == {"default", *UNIT_ROUNDOFF}
