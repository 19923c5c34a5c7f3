"""The float64 oracle itself (sslkern/reference.py): every kind of the registry, elu's definition
and derivatives, unknown names, and the analytic penalty against the full Jacobian. The other
test files trust it; this one checks it against the design's formulas."""
import pytest
import torch

from sslkern import reference as oracle
from sslkern.kinds import ACTIVATIONS, CORRUPTIONS, LOSSES

F64 = torch.float64


def derivatives(act, z):
    """(h, f'(z), f''(z)) by autograd through the oracle."""
    z = z.detach().clone().requires_grad_()
    h = oracle.activation(act, z)
    (d1,) = torch.autograd.grad(h.sum(), z, create_graph=True)
    d2 = torch.autograd.grad(d1.sum(), z)[0] if d1.requires_grad else torch.zeros_like(z)
    return h.detach(), d1.detach(), d2


def test_every_registered_activation_is_defined():
    z = torch.linspace(-3, 3, 13, dtype=F64)
    for act in ACTIVATIONS.names():
        assert oracle.activation(act, z).shape == z.shape, act


@pytest.mark.parametrize("name", ["gelu", "", None, 5, "Sigmoid"])
def test_unknown_activation_raises(name):
    with pytest.raises(ValueError, match="activation"):
        oracle.activation(name, torch.zeros(3, dtype=F64))


def _params(seed=0, batch=5, visible=7, hidden=4):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(batch, visible, generator=g, dtype=F64), torch.randn(hidden, visible, generator=g, dtype=F64),
            torch.randn(hidden, generator=g, dtype=F64), torch.randn(visible, generator=g, dtype=F64))


def test_unknown_loss_and_corruption_raise():
    x, W, b, c = _params()
    with pytest.raises(ValueError, match="loss"):
        oracle.autoencoder_loss(x, W, b, c, loss="hinge")
    with pytest.raises(ValueError, match="corruption"):
        oracle.corrupt(x, "dropout", 0.5)
    for loss in LOSSES.names():
        assert torch.isfinite(oracle.autoencoder_loss(x, W, b, c, loss=loss, decoder="sigmoid"))
    for kind in CORRUPTIONS.names():
        shape = (1, x.shape[1]) if CORRUPTIONS[kind].needs_image_shape else None
        assert oracle.corrupt(x, kind, 0.3, seed=1, image_shape=shape, patch=1).shape == x.shape


# --- elu (alpha = 1) -------------------------------------------------------------------------------

def test_elu_values():
    z = torch.tensor([-50.0, -2.0, -1e-8, 0.0, 1e-8, 3.0, 1e6], dtype=F64)
    h = oracle.activation("elu", z)
    torch.testing.assert_close(h, torch.where(z > 0, z, torch.expm1(z)), rtol=0, atol=0)
    assert h[3] == 0.0 and h[-1] == 1e6 and h[0] == torch.expm1(torch.tensor(-50.0, dtype=F64))
    assert torch.isnan(oracle.activation("elu", torch.tensor([float("nan")], dtype=F64))).all()
    infinities = torch.tensor([float("inf"), -float("inf")], dtype=F64)
    assert oracle.activation("elu", infinities).tolist() == [float("inf"), -1.0]


def test_elu_derivatives_follow_the_spec_from_h():
    """f'(z) = (h > 0 ? 1 : h + 1), f''(z) = (h > 0 ? 0 : h + 1), including z = 0."""
    z = torch.cat([torch.linspace(-10, 10, 201, dtype=F64), torch.tensor([0.0, -1e-12, 1e-12], dtype=F64)])
    h, d1, d2 = derivatives("elu", z)
    torch.testing.assert_close(d1, torch.where(h > 0, 1.0, h + 1), rtol=1e-15, atol=0)
    torch.testing.assert_close(d2, torch.where(h > 0, 0.0, h + 1), rtol=1e-15, atol=0)


def test_elu_gradients_stay_finite_far_out():
    """expm1 only sees min(z, 0): a large z sends no inf (and no NaN gradient) through the
    branch that where() drops, to any order."""
    z = torch.tensor([1e3, 88.0, 710.0, -1e3], dtype=F64)
    h, d1, d2 = derivatives("elu", z)
    assert torch.isfinite(d1).all() and torch.isfinite(d2).all()
    assert d1.tolist() == [1.0, 1.0, 1.0, 0.0] and d2.tolist() == [0.0, 0.0, 0.0, 0.0]
    x, W, b, c = _params(1)
    W = (W * 300).requires_grad_()  # saturating pre-activations of both signs
    total = oracle.autoencoder_loss(x, W, b, c, encoder="elu", decoder="elu", loss="mse", contractive=0.5)
    (dW,) = torch.autograd.grad(total, W)
    assert torch.isfinite(total) and torch.isfinite(dW).all()


def test_elu_nan_propagates_through_derivatives():
    z = torch.tensor([float("nan"), 1.0, -1.0], dtype=F64)
    h, d1, d2 = derivatives("elu", z)
    assert torch.isnan(h[0]) and torch.isnan(d1[0]) and torch.isnan(d2[0])  # as h + 1 from h does
    assert d1[1:].tolist() == [1.0, torch.exp(torch.tensor(-1.0, dtype=F64)).item()]


# --- derivatives of every activation against docs/design.md's table --------------------------------------

DESIGN_TABLE = {  # (f'(z), f''(z)) from z and h = f(z), docs/design.md (+ elu)
    "sigmoid": (lambda z, h: h * (1 - h), lambda z, h: h * (1 - h) * (1 - 2 * h)),
    "tanh": (lambda z, h: 1 - h * h, lambda z, h: -2 * h * (1 - h * h)),
    "relu": (lambda z, h: (z > 0).to(F64), lambda z, h: torch.zeros_like(z)),
    "softplus": (lambda z, h: torch.sigmoid(z), lambda z, h: torch.sigmoid(z) * (1 - torch.sigmoid(z))),
    "linear": (lambda z, h: torch.ones_like(z), lambda z, h: torch.zeros_like(z)),
    "elu": (lambda z, h: torch.where(h > 0, 1.0, h + 1), lambda z, h: torch.where(h > 0, 0.0, h + 1)),
}


def test_design_table_covers_the_registry():
    assert set(DESIGN_TABLE) == set(ACTIVATIONS.names())


@pytest.mark.parametrize("act", ACTIVATIONS.names())
def test_derivatives_match_design_table(act):
    z = torch.linspace(-6, 6, 121, dtype=F64)
    z = z[z != 0]  # relu's f' jumps there
    h, d1, d2 = derivatives(act, z)
    first, second = DESIGN_TABLE[act]
    torch.testing.assert_close(d1, first(z, h), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(d2, second(z, h), rtol=1e-12, atol=1e-14)
    if ACTIVATIONS[act].piecewise_linear:
        assert torch.equal(d2, torch.zeros_like(d2))
    low, high = ACTIVATIONS[act].output_range
    assert (h >= low).all() and (h <= high).all()


@pytest.mark.parametrize("act", ACTIVATIONS.names())
def test_analytic_penalty_equals_jacobian_penalty(act):
    x, W, b, _ = _params(2)
    W, b = W.requires_grad_(), b.requires_grad_()
    analytic = oracle.contractive_penalty(x, W, b, act)
    jacobian = oracle.contractive_penalty_jacobian(x, W, b, act)
    torch.testing.assert_close(analytic, jacobian, rtol=1e-12, atol=1e-14)
    grads = [torch.autograd.grad(p, (W, b), allow_unused=True, materialize_grads=True) for p in (analytic, jacobian)]
    for got, want in zip(*grads):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
