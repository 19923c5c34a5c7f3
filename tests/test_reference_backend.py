"""What is specific to the `reference` backend (sslkern/backends/reference.py): its own Philox,
its activation derivatives, the epilogue interface (backends/product.py: Epilogues), and that
it is independent of the float64 oracle it is tested against (sslkern/reference.py)."""
import ast
import inspect
import pathlib

import pytest
import torch

import sslkern
from sslkern import backends
from sslkern import reference as oracle
from sslkern.backends import product
from sslkern.backends import reference as ref
from sslkern.backends.base import StepConfig
from sslkern.kinds import ACTIVATIONS, CORRUPTIONS, ELEMENTWISE_CORRUPTIONS, LOSSES

MASK32 = 0xFFFFFFFF
SEED0_WORDS = [0x6627E8D5, 0xF8E4CCA4, 0x04FAA329, 0xC990EF29]  # docs/random.md
SEED0_UNIFORMS = [0.798092902, 0.0555175915, 0.0388988405, 0.425264418]
SEED42_WORD, SEED42_UNIFORM = 0x9CEAF053, 0.774080157
# (n, seed, offset): small and 64-bit seeds, counters that wrap around 2**32 inside the draw,
# the last counter alone, an empty draw.
STREAMS = [(1, 0, 0), (1000, 42, 1000), (300, 2**40 + 123, 2**32 - 100), (64, 2**63 + 5, 2**31 - 7),
           (33, 2**64 - 1, 2**32 - 1), (1, 9, 2**32 - 1), (4097, 2**32, 2**32 - 4096), (0, 5, 17)]
CPU = torch.device("cpu")


def f32(values):
    return torch.tensor(values, dtype=torch.float32)


# --- Philox ------------------------------------------------------------------------------------

def test_philox_words_match_design_vectors():
    (c0,) = ref.philox_words(4, 0, 0, CPU)
    assert ((c0 & MASK32)).tolist() == SEED0_WORDS
    (c0,) = ref.philox_words(1, 42, 0, CPU)
    assert (c0 & MASK32).tolist() == [SEED42_WORD]


def test_philox_uniforms_match_design_vectors():
    assert ref.philox_uniform(4, 0, 0, CPU).tolist() == f32(SEED0_UNIFORMS).tolist()
    assert ref.philox_uniform(1, 42, 0, CPU).tolist() == f32([SEED42_UNIFORM]).tolist()
    # offsets pick elements of one stream
    for offset in range(4):
        assert ref.philox_uniform(1, 0, offset, CPU).tolist() == f32(SEED0_UNIFORMS[offset:offset + 1]).tolist()


@pytest.mark.parametrize("n, seed, offset", STREAMS)
def test_philox_words_bit_identical_to_oracle(n, seed, offset):
    c0, c1 = ref.philox_words(n, seed, offset, CPU, count=2)
    want = oracle.philox4x32_10(n, seed, offset)
    assert torch.equal(c0 & MASK32, want[0])
    assert torch.equal(c1 & MASK32, want[1])
    assert torch.equal(ref.philox_uniform(n, seed, offset, CPU), oracle.philox_uniform(n, seed, offset))
    torch.testing.assert_close(ref.philox_normal(n, seed, offset, CPU), oracle.philox_normal(n, seed, offset),
                               rtol=0, atol=1e-6)


def test_philox_wraps_around_2_to_32():
    tail = ref.philox_uniform(10, 7, 2**32 - 4, CPU)
    assert torch.equal(tail[4:], ref.philox_uniform(6, 7, 0, CPU))
    assert torch.equal(tail[:4], ref.philox_uniform(4, 7, 2**32 - 4, CPU))


def test_uniform_range_and_normal_moments():
    u = ref.philox_uniform(100_000, 3, 0, CPU)
    assert 0.0 <= u.min() and u.max() < 1.0
    assert abs(u.mean().item() - 0.5) < 0.01
    z = ref.philox_normal(100_000, 3, 0, CPU)
    assert z.dtype == torch.float32 and torch.isfinite(z).all()
    assert abs(z.mean().item()) < 0.02 and abs(z.std().item() - 1) < 0.02


def test_epilogue_philox_is_the_stream():
    ep = ref.TorchEpilogues()
    assert torch.equal(ep.philox(5, 11, 2**32 - 2, CPU, False), oracle.philox_uniform(5, 11, 2**32 - 2))
    torch.testing.assert_close(ep.philox(5, 11, 3, CPU, True), oracle.philox_normal(5, 11, 3), rtol=0, atol=1e-6)


# --- activations -------------------------------------------------------------------------------

def _oracle_derivatives(act, z):
    z = z.detach().requires_grad_()
    h = oracle.activation(act, z)
    (d1,) = torch.autograd.grad(h.sum(), z, create_graph=True)
    d2 = torch.autograd.grad(d1.sum(), z)[0] if d1.requires_grad else torch.zeros_like(z)
    return h.detach(), d1.detach(), d2


@pytest.mark.parametrize("act", ACTIVATIONS.names())
def test_derivatives_from_h_match_autograd(act):
    z = torch.cat([torch.linspace(-8, 8, 161, dtype=torch.float64),
                   torch.tensor([0.0, 30.0, -30.0], dtype=torch.float64)])
    if act == "relu":  # f' jumps at 0: compare away from it
        z = z[z != 0]
    h, d1, d2 = _oracle_derivatives(act, z)
    torch.testing.assert_close(ref.act_d1(act, h), d1, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ref.act_d2(act, h), d2, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ref.act_d2(act, h, ref.act_d1(act, h)), d2, rtol=1e-12, atol=1e-12)
    z_in_place = z.clone()
    assert ref.activate_(act, z_in_place) is z_in_place
    torch.testing.assert_close(z_in_place, h, rtol=1e-15, atol=0)


def test_elu_from_h():
    """elu (alpha = 1): f'(z) = (h > 0 ? 1 : h + 1), f''(z) = (h > 0 ? 0 : h + 1); NaN propagates."""
    z = torch.tensor([-3.0, -1e-3, 0.0, 1e-3, 2.0, float("nan")], dtype=torch.float64)
    h = ref.activate_("elu", z.clone())
    expected_h = torch.where(z > 0, z, torch.expm1(z))
    torch.testing.assert_close(h, expected_h, equal_nan=True)
    torch.testing.assert_close(ref.act_d1("elu", h), torch.where(h > 0, 1.0, h + 1), equal_nan=True)
    torch.testing.assert_close(ref.act_d2("elu", h), torch.where(h > 0, 0.0, h + 1), equal_nan=True)
    assert torch.isnan(ref.act_d1("elu", h)[-1]) and torch.isnan(ref.act_d2("elu", h)[-1])


@pytest.mark.parametrize("act", sorted(ACTIVATIONS.where(piecewise_linear=True)))
def test_piecewise_linear_second_derivative_is_zero(act):
    h = torch.randn(7, 5, dtype=torch.float64)
    assert torch.equal(ref.act_d2(act, h), torch.zeros_like(h))


UNKNOWN = ["gelu", "", None, 3, "SIGMOID"]


@pytest.mark.parametrize("name", UNKNOWN)
def test_unknown_activation_raises(name):
    h = torch.rand(3, 4)
    ep = ref.TorchEpilogues()
    for call in (lambda: ref.act_d1(name, h), lambda: ref.act_d2(name, h), lambda: ref.activate_(name, h.clone()),
                 lambda: ep.bias_act(h.clone(), None, name),
                 lambda: ep.act_grad(h.clone(), h, name, torch.empty_like(h)),
                 lambda: ep.loss_grad(h.clone(), h, torch.zeros(4), "mse", name, 1.0)):
        with pytest.raises(ValueError):
            call()


@pytest.mark.parametrize("name", UNKNOWN)
def test_unknown_loss_and_corruption_raise(name):
    x = torch.rand(3, 4)
    ep = ref.TorchEpilogues()
    with pytest.raises(ValueError):
        ep.loss_grad(x.clone(), x, torch.zeros(4), name, "sigmoid", 1.0)
    with pytest.raises(ValueError):
        ep.corrupt(x, torch.empty_like(x), name, 0.5, 0, 0)
    with pytest.raises(ValueError):
        ep.corrupt_grad(x, torch.empty_like(x), name, 0.5, 0, 0)


def test_every_kind_is_implemented():
    """A row added to sslkern.kinds without its reference implementation fails here, not in use."""
    x = torch.rand(4, 6, dtype=torch.float64)
    ep = ref.TorchEpilogues()
    for act in ACTIVATIONS.names():
        h = ref.activate_(act, x.clone() - 0.5)
        ref.act_d1(act, h), ref.act_d2(act, h)
    for loss in LOSSES.names():
        ep.loss_grad(x.clone(), x, torch.zeros(6, dtype=torch.float64), loss, LOSSES[loss].needs_decoder or "tanh", 1.0)
    for kind in ELEMENTWISE_CORRUPTIONS:  # the structured masks are no epilogue (backends/structured.py)
        ep.corrupt(x, torch.empty_like(x), kind, 0.3, 1, 2)
        ep.corrupt_grad(x, torch.empty_like(x), kind, 0.3, 1, 2)


# --- the epilogue contract ---------------------------------------------------------------------

def _column_block(rows, cols, dtype=torch.float64, seed=0, extra=5):
    """A rows x cols view with unit column stride and a larger row stride (a column block)."""
    g = torch.Generator().manual_seed(seed)
    wide = torch.randn(rows, cols + extra, generator=g, dtype=dtype)
    return wide[:, 2:2 + cols]


def test_epilogues_on_column_blocks_match_contiguous():
    ep = ref.TorchEpilogues()
    z = _column_block(9, 13, seed=1)
    b, r = torch.rand(13, dtype=torch.float64), torch.rand(13, dtype=torch.float64)
    outs = []
    for zz in (z.clone(), z.contiguous()):  # clone keeps the strides of the view
        s2 = torch.empty(13, dtype=torch.float64)
        outs.append((ep.bias_act(zz, b, "softplus", r, s2), zz, s2))
    for got, want in zip(*outs):
        torch.testing.assert_close(got, want, rtol=1e-14, atol=0)
    h, dh = outs[1][1], _column_block(9, 13, seed=2)
    outs = []
    for layout in (lambda t: t, lambda t: t.contiguous()):
        out, copy, db = torch.empty_like(layout(dh)), torch.empty_like(layout(dh)), torch.empty(13, dtype=torch.float64)
        ep.act_grad(layout(dh), layout(h), "softplus", out, r=r, coef=0.7, g=torch.tensor(1.5, dtype=torch.float64),
                    h_copy=copy, db=db)
        outs.append((out, copy, db))
    for got, want in zip(*outs):
        torch.testing.assert_close(got, want, rtol=1e-14, atol=0)


@pytest.mark.parametrize("act", ACTIVATIONS.names())
def test_act_grad_in_place_on_dh(act):
    ep = ref.TorchEpilogues()
    h = ref.activate_(act, torch.randn(6, 5, dtype=torch.float64))
    dh, r = torch.randn(6, 5, dtype=torch.float64), torch.rand(5, dtype=torch.float64)
    separate, db1, db2 = torch.empty_like(dh), torch.empty(5, dtype=torch.float64), torch.empty(5, dtype=torch.float64)
    ep.act_grad(dh, h, act, separate, r=r, coef=0.3, g=2.0, db=db1)
    aliased = dh.clone()
    ep.act_grad(aliased, h, act, aliased, r=r, coef=0.3, g=2.0, db=db2)
    torch.testing.assert_close(aliased, separate, rtol=1e-15, atol=0)
    # the definition: g (dh f' + coef f' f'' r)
    s, d2 = ref.act_d1(act, h), ref.act_d2(act, h)
    torch.testing.assert_close(separate, 2.0 * (dh * s + 0.3 * s * d2 * r), rtol=1e-13, atol=1e-15)
    torch.testing.assert_close(db1, separate.sum(0), rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("kind", CORRUPTIONS.names())
def test_corrupt_in_place_and_keep_mask(kind):
    ep = ref.TorchEpilogues()
    x = torch.rand(11, 17, dtype=torch.float64) * 0.5 + 0.25
    out = torch.empty_like(x)
    ep.corrupt(x, out, kind, 0.4, 2**35 + 1, 2**32 - 50)
    torch.testing.assert_close(out, oracle.corrupt(x, kind, 0.4, 2**35 + 1, 2**32 - 50), rtol=0, atol=1e-6)
    aliased = x.clone()
    ep.corrupt(aliased, aliased, kind, 0.4, 2**35 + 1, 2**32 - 50)
    assert torch.equal(aliased, out)
    grad = torch.randn_like(x)
    masked = grad.clone()
    ep.corrupt_grad(masked, masked, kind, 0.4, 2**35 + 1, 2**32 - 50)
    if CORRUPTIONS[kind].passes_gradient:
        assert torch.equal(masked, grad)
    else:
        keep = out == x
        assert torch.equal(masked, torch.where(keep, grad, torch.zeros_like(grad)))


def test_half_precision_runs():
    for dtype in (torch.float16, torch.bfloat16):
        x, W = torch.rand(5, 7), torch.randn(4, 7) * 0.3
        b, c = torch.zeros(4), torch.zeros(7)
        with sslkern.use_backend("reference"):
            loss, grads = sslkern.autoencoder_value_and_grad(
                x, W.to(dtype), b.to(dtype), c.to(dtype), corruption="mask", level=0.3, contractive=0.2, seed=1)
            want, want_grads = sslkern.autoencoder_value_and_grad(
                x, W, b, c, corruption="mask", level=0.3, contractive=0.2, seed=1)
        assert grads[0].dtype == dtype
        torch.testing.assert_close(loss.float(), want, rtol=3e-2, atol=3e-2)
        for got, expected in zip(grads, want_grads):
            torch.testing.assert_close(got.float(), expected, rtol=5e-2, atol=5e-2)


# --- elu through the backend's primitives (the shared tests add it once validation admits it) ----

@pytest.mark.parametrize("encoder, decoder, loss", [("elu", "sigmoid", "bce"), ("elu", "elu", "mse"),
                                                    ("sigmoid", "elu", "mse")])
@pytest.mark.parametrize("corruption", ["none", "mask", "gaussian"])
def test_elu_objective_against_oracle(encoder, decoder, loss, corruption):
    backend = backends.get("reference")
    g = torch.Generator().manual_seed(3)
    x = torch.rand(7, 9, generator=g, dtype=torch.float64)
    W = torch.randn(5, 9, generator=g, dtype=torch.float64)
    b, c = torch.randn(5, generator=g, dtype=torch.float64), torch.randn(9, generator=g, dtype=torch.float64)
    cfg = StepConfig(encoder=encoder, decoder=decoder, loss=loss, corruption=corruption, level=0.3,
                     contractive=0.4, seed=2**40 + 1, offset=2**32 - 20)
    saved = backend.ae_forward(x, W, b, c, cfg)
    dx, dW, db, dc = backend.ae_backward(torch.tensor(1.0, dtype=torch.float64), x, W, c, saved, cfg, need_dx=True)

    leaves = [t.clone().requires_grad_() for t in (x, W, b, c)]
    want = oracle.autoencoder_loss(*leaves, encoder=encoder, decoder=decoder, loss=loss, corruption=corruption,
                                   level=0.3, contractive=0.4, seed=2**40 + 1, offset=2**32 - 20)
    want_grads = torch.autograd.grad(want, leaves)
    tol = dict(rtol=1e-6, atol=1e-6) if corruption == "gaussian" else dict(rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(saved.loss, want.detach(), **tol)
    for name, got, expected in zip("x W b c".split(), (dx, dW, db, dc), want_grads):
        torch.testing.assert_close(got, expected, **tol, msg=lambda m, name=name: f"d/d{name}: {m}")


def test_elu_single_layer_ops_against_oracle():
    backend = backends.get("reference")
    g = torch.Generator().manual_seed(4)
    x = torch.randn(6, 8, generator=g, dtype=torch.float64)
    W = torch.randn(5, 8, generator=g, dtype=torch.float64)
    b = torch.randn(5, generator=g, dtype=torch.float64)
    leaves = [t.clone().requires_grad_() for t in (x, W, b)]
    h = backend.linear_act(x, W, b, "elu", transpose=True)
    want = oracle.encode(*leaves, "elu")
    torch.testing.assert_close(h, want.detach())
    grad_y = torch.randn_like(h)
    for got, expected in zip(backend.linear_act_backward(grad_y, h, x, W, "elu", transpose=True),
                             torch.autograd.grad(want, leaves, grad_y)):
        torch.testing.assert_close(got, expected)
    penalty, h, r, s2col = backend.contractive(x, W, b, "elu")
    want = oracle.contractive_penalty(*leaves, "elu")
    torch.testing.assert_close(penalty, want.detach())
    grad = torch.tensor(0.7, dtype=torch.float64)
    for got, expected in zip(backend.contractive_backward(grad, x, W, h, r, s2col, "elu"),
                             torch.autograd.grad(want, leaves, grad)):
        torch.testing.assert_close(got, expected)


# --- independence from the oracle --------------------------------------------------------------

BACKEND_SOURCES = [pathlib.Path(module.__file__) for module in (ref, product, backends.base)]


def _imports_oracle(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name == "sslkern.reference" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level == 0 and (module == "sslkern.reference" or
                                    (module == "sslkern" and any(a.name == "reference" for a in node.names))):
                return True
            if node.level == 2 and (module == "reference" or
                                    (module == "" and any(a.name == "reference" for a in node.names))):
                return True
    return False


@pytest.mark.parametrize("path", BACKEND_SOURCES, ids=lambda p: p.name)
def test_backend_sources_do_not_import_the_oracle(path):
    assert not _imports_oracle(ast.parse(path.read_text(encoding="utf-8"))), f"{path} imports sslkern.reference (the oracle)"


def test_detector_sees_oracle_imports():
    for text in ("from .. import reference as oracle", "from ..reference import corrupt", "import sslkern.reference",
                 "from sslkern import reference", "from sslkern.reference import activation"):
        assert _imports_oracle(ast.parse(text)), text
    assert not _imports_oracle(ast.parse("from . import reference\nfrom .reference import TorchEpilogues"))


def test_backend_never_calls_the_oracle(monkeypatch):
    """Every public function of the oracle raises while the reference backend runs every op."""
    def forbidden(*args, **kwargs):
        raise AssertionError("the reference backend called the oracle")

    for name, value in list(vars(oracle).items()):
        if inspect.isfunction(value) and value.__module__ == oracle.__name__:
            monkeypatch.setattr(oracle, name, forbidden)
    g = torch.Generator().manual_seed(5)
    x = torch.rand(6, 9, generator=g, dtype=torch.float64, requires_grad=True)
    W = torch.randn(4, 9, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    c = torch.zeros(9, dtype=torch.float64, requires_grad=True)
    with sslkern.use_backend("reference"):
        sslkern.philox_uniform(10, 1), sslkern.philox_normal(10, 1)
        for kind in CORRUPTIONS.names():
            torch.autograd.grad(sslkern.corrupt(x, kind, 0.3, seed=1).sum(), x)
        for act in ACTIVATIONS.names():
            torch.autograd.grad(sslkern.decode(sslkern.encode(x, W, b, act), W, c, act).sum()
                                + sslkern.contractive_penalty(x, W, b, act), (x, W, b, c))
        for loss, decoder in (("bce", "sigmoid"), ("mse", "tanh")):
            total = sslkern.autoencoder_loss(x, W, b, c, decoder=decoder, loss=loss, corruption="mask", level=0.3,
                                             contractive=0.1, seed=2)
            torch.autograd.grad(total, (x, W, b, c))
            sslkern.autoencoder_value_and_grad(x.detach(), W, b, c, decoder=decoder, loss=loss, corruption="gaussian",
                                               level=0.3, contractive=0.1, seed=2)
            sslkern.autoencoder_sgd_step(x.detach(), W.detach().clone(), b.detach().clone(), c.detach().clone(),
                                         lr=0.1, decoder=decoder, loss=loss, corruption="salt_pepper", level=0.3,
                                         contractive=0.1, seed=2)


# --- the Epilogues protocol --------------------------------------------------------------------

def _epilogue_classes():
    from sslkern.backends.native import NativeCpuEpilogues
    from sslkern.backends.native_cuda import NativeCudaEpilogues

    return [ref.TorchEpilogues, NativeCpuEpilogues, NativeCudaEpilogues]


PROTOCOL_METHODS = [name for name, value in vars(product.Epilogues).items()
                    if inspect.isfunction(value) and not name.startswith("_")]


def test_protocol_has_the_nine_methods_with_docs():
    assert sorted(PROTOCOL_METHODS) == sorted(["availability", "philox", "corrupt", "corrupt_grad", "bias_act",
                                               "loss_grad", "act_grad", "row_sq_norms", "row_scale_add"])
    for name in PROTOCOL_METHODS:
        assert inspect.getdoc(getattr(product.Epilogues, name)), name


@pytest.mark.parametrize("cls", _epilogue_classes(), ids=lambda c: c.__name__)
def test_epilogue_classes_match_the_protocol_signatures(cls):
    for name in PROTOCOL_METHODS:
        want = inspect.signature(getattr(product.Epilogues, name))
        got = inspect.signature(getattr(cls, name))
        simplify = lambda sig: [(p.name, p.kind, p.default) for p in sig.parameters.values()]  # noqa: E731
        assert simplify(got) == simplify(want), f"{cls.__name__}.{name}{got} != Epilogues.{name}{want}"


def test_epilogue_instances_are_protocol_instances():
    """Every epilogue object that can be built here, whether or not it can run (runtime_checkable)."""
    from sslkern.backends.native import NativeCpuEpilogues
    from sslkern.backends.native_cuda import NativeCudaEpilogues

    instances = [ref.TorchEpilogues(), NativeCpuEpilogues(), NativeCudaEpilogues()]
    for name in backends.NAMES:  # the epilogues the product backends were built with
        backend = backends.get(name)
        for part in getattr(backend, "parts", {name: backend}).values():
            if isinstance(part, product.ProductBackend):
                instances.append(part.ep)
    assert len(instances) >= 5
    for ep in instances:
        assert isinstance(ep, product.Epilogues), type(ep).__name__
    assert not isinstance(object(), product.Epilogues)


def test_reference_backend_plugs_its_epilogues():
    backend = backends.get("reference")
    assert isinstance(backend, product.ProductBackend)
    assert isinstance(backend.ep, ref.TorchEpilogues) and isinstance(backend.ep, product.Epilogues)
