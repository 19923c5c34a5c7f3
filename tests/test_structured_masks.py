"""The structured masks (corruption "block" and "patch") and the hole weight: the masks against
an independent numpy formulation and the float64 oracle, on every backend; their statistics;
the objective with them (and with hole_weight) against the oracle through every route, values
and gradients (dx included); gradcheck; opcheck; the errors."""
import math

import numpy as np
import pytest
import torch
from helpers import DEFAULT, DTYPES, assert_close, leaves

import sslkern
from sslkern import reference as oracle

BACKENDS = sslkern.available_backends()
SHAPES = [(1, 1), (5, 7), (13, 11), (28, 28)]


def images(batch, shape, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed + batch)
    return torch.rand(batch, shape[0] * shape[1], generator=gen, dtype=torch.float64).add_(0.1).to(dtype)


def numpy_block_keep(batch, shape, level, seed, offset):
    """The block mask from the spec of docs/random.md §11, in numpy (draws from the oracle)."""
    height, width = shape
    side = int(round(math.sqrt(level * height * width)))
    u = oracle.philox_uniform(2 * batch, seed, offset).numpy().astype(np.float64)
    keep = np.ones((batch, height, width))
    for i in range(batch):
        top = min(int(np.floor(u[2 * i] * (height - side + 1))), height - side)
        left = min(int(np.floor(u[2 * i + 1] * (width - side + 1))), width - side)
        keep[i, top:top + side, left:left + side] = 0
    return keep.reshape(batch, -1)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
def test_block_mask_is_one_square_hole_where_the_draws_say(backend, shape, dtype):
    batch, level = 6, 0.3
    x = images(batch, shape, dtype)
    with sslkern.use_backend(backend):
        got = sslkern.corrupt(x, "block", level, seed=2**64 - 5, offset=2**32 - 3, image_shape=shape)
    keep = numpy_block_keep(batch, shape, level, 2**64 - 5, 2**32 - 3)
    assert np.array_equal((got != 0).numpy(), keep.astype(bool))
    assert torch.equal(got, x * torch.from_numpy(keep).to(dtype))
    side = int(round(math.sqrt(level * shape[0] * shape[1])))
    assert all(int((row == 0).sum()) == side * side for row in got)  # one square of the stated side


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape, patch", [((5, 7), 2), ((13, 11), 4), ((28, 28), 7), ((28, 28), 28)], ids=str)
def test_patch_mask_drops_whole_tiles_as_the_oracle_does(backend, shape, patch):
    x = images(9, shape)
    with sslkern.use_backend(backend):
        got = sslkern.corrupt(x, "patch", 0.4, seed=11, offset=3, image_shape=shape, patch=patch)
    want = oracle.corrupt(x, "patch", 0.4, 11, 3, shape, patch)
    assert torch.equal(got, want)
    dropped = (got == 0).view(9, shape[0], shape[1])
    for ty in range(0, shape[0], patch):  # all or nothing per tile
        for tx in range(0, shape[1], patch):
            tile = dropped[:, ty:ty + patch, tx:tx + patch].flatten(1)
            assert bool((tile.all(1) | ~tile.any(1)).all())


def test_patch_drop_fraction_and_block_positions_are_uniform():
    shape, batch = (28, 28), 4000
    x = torch.ones(batch, 784)
    tiles = sslkern.corrupt(x, "patch", 0.3, seed=5, image_shape=shape, patch=4).view(batch, 7, 4, 7, 4)
    dropped = (tiles[:, :, 0, :, 0] == 0).double()  # one pixel per tile
    se = math.sqrt(0.3 * 0.7 / dropped.numel())
    assert abs(float(dropped.mean()) - 0.3) < 5 * se
    holes = (sslkern.corrupt(x, "block", 0.25, seed=6, image_shape=shape) == 0).view(batch, 28, 28)
    tops = holes.any(2).double().argmax(1)  # first row of each hole: uniform on 0 .. 28 - 14
    counts = torch.bincount(tops.long(), minlength=15)[:15].double()
    expected = batch / 15
    assert float(((counts - expected) ** 2 / expected).sum()) < 45  # chi-square, 14 dof: p ~ 1e-4


def test_different_offsets_and_seeds_draw_different_masks_and_rng_tensors_draw_the_same():
    x = images(8, (9, 9))
    base = sslkern.corrupt(x, "block", 0.3, seed=1, offset=0, image_shape=(9, 9))
    assert not torch.equal(base, sslkern.corrupt(x, "block", 0.3, seed=1, offset=16, image_shape=(9, 9)))
    assert not torch.equal(base, sslkern.corrupt(x, "block", 0.3, seed=2, offset=0, image_shape=(9, 9)))
    # rows 4.. of a call at offset 0 draw what a call of those rows at offset 2 * 4 draws
    tail = sslkern.corrupt(x[4:], "block", 0.3, seed=1, offset=8, image_shape=(9, 9))
    assert torch.equal(base[4:], tail)
    rng = torch.tensor([1, 0])
    assert torch.equal(base, sslkern.corrupt(x, "block", 0.3, seed=rng, image_shape=(9, 9)))


@pytest.mark.parametrize("kind, kw", [("block", {}), ("patch", {"patch": 3})])
def test_gradient_is_the_regenerated_mask(kind, kw):
    x = images(4, (6, 5)).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda t: sslkern.corrupt(t, kind, 0.35, seed=9, offset=1, image_shape=(6, 5), **kw), (x,))
    out = sslkern.corrupt(x, kind, 0.35, seed=9, offset=1, image_shape=(6, 5), **kw)
    (grad,) = torch.autograd.grad(out.sum(), x)
    assert torch.equal(grad, (out != 0).double())


# --- the objective with structured masks and hole weights -----------------------------------

OBJECTIVE_CASES = {
    "block": dict(corruption="block", level=0.3),
    "block-hole2": dict(corruption="block", level=0.25, hole_weight=2.0),
    "patch-mse": dict(corruption="patch", level=0.4, patch=3, encoder="tanh", loss="mse", decoder="linear"),
    "patch-hole-penalties": dict(corruption="patch", level=0.4, patch=4, hole_weight=3.0, contractive=0.2,
                                 sparsity=0.1, sparsity_kind="l1"),
    "mask-hole": dict(corruption="mask", level=0.3, hole_weight=0.5),
    "salt-hole-mse": dict(corruption="salt_pepper", level=0.3, hole_weight=4.0, loss="mse", decoder="sigmoid"),
}


def _params(shape, hidden, dtype):
    gen = torch.Generator().manual_seed(hidden)
    visible = shape[0] * shape[1]
    W = torch.randn(hidden, visible, generator=gen, dtype=torch.float64) * (1.5 / visible ** 0.5)
    b = torch.randn(hidden, generator=gen, dtype=torch.float64) * 0.3
    c = torch.randn(visible, generator=gen, dtype=torch.float64) * 0.3
    return [t.to(dtype) for t in (W, b, c)]


ROUTE_SHAPES = [(backend, shape) for backend in BACKENDS
                for shape in ([(5, 7)] if backend == "triton" else [(5, 7), (13, 11)])]


@pytest.mark.parametrize("case", OBJECTIVE_CASES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend, shape", ROUTE_SHAPES, ids=str)
def test_objective_matches_oracle_on_every_route(backend, shape, dtype, case):
    cfg = dict(seed=2**40 + 1, offset=17, image_shape=shape, **OBJECTIVE_CASES[case])
    x = images(6, shape, dtype)
    params = _params(shape, 5, dtype)
    exact = leaves([x, *params], torch.float64)
    want = oracle.autoencoder_loss(*exact, **cfg)
    want_grads = torch.autograd.grad(want, exact)
    tracked = leaves([x, *params])
    updated = [p.clone() for p in params]
    with sslkern.use_backend(backend):
        value = sslkern.autoencoder_loss(*tracked, **cfg)
        grads = torch.autograd.grad(value, tracked)
        v2, grads2 = sslkern.autoencoder_value_and_grad(x, *params, **cfg)
        v3 = sslkern.autoencoder_sgd_step(x, *updated, lr=0.2, **cfg)
    for what, got in (("loss", value), ("value_and_grad", v2), ("sgd_step", v3)):
        assert_close(got, want.detach(), dtype, policy=DEFAULT, what=what)
    for name, got, exp in zip(("x", "W", "b", "c"), grads, want_grads):
        assert_close(got, exp, dtype, policy=DEFAULT, what=f"d/d{name}")
    for name, got, start, exp in zip("Wbc", grads2, params, want_grads[1:]):
        assert_close(got, exp, dtype, policy=DEFAULT, what=f"value_and_grad d/d{name}")
        assert_close(updated["Wbc".index(name)], start.double() - 0.2 * exp, dtype, policy=DEFAULT,
                     what=f"sgd_step {name}")


def test_hole_weight_weights_exactly_the_dropped_pixels():
    """The objective with hole weight w minus the one without is (w - 1) times the dropped
    pixels' loss: computed here from the mask the op draws."""
    shape = (6, 6)
    x = images(4, shape)
    W, b, c = _params(shape, 3, torch.float64)
    cfg = dict(corruption="block", level=0.25, seed=3, image_shape=shape)
    plain = sslkern.autoencoder_loss(x, W, b, c, **cfg)
    weighted = sslkern.autoencoder_loss(x, W, b, c, hole_weight=3.0, **cfg)
    x_tilde = sslkern.corrupt(x, "block", 0.25, seed=3, image_shape=shape)
    a = torch.sigmoid(x_tilde @ W.T + b) @ W + c
    element = torch.nn.functional.softplus(a) - x * a
    hole_loss = (element * (x_tilde == 0)).sum() / 4
    torch.testing.assert_close(weighted - plain, 2.0 * hole_loss, rtol=1e-12, atol=1e-12)


def test_gradcheck_with_block_mask_and_hole_weight():
    shape = (4, 3)
    inputs = leaves([images(3, shape), *_params(shape, 2, torch.float64)])
    assert torch.autograd.gradcheck(lambda *t: sslkern.autoencoder_loss(
        *t, corruption="patch", level=0.5, patch=2, image_shape=shape, hole_weight=2.5, seed=4), inputs)


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b in ("reference", "native")])
def test_opcheck_with_structured_masks(backend):
    shape = (3, 4)
    x = images(3, shape)
    W, b, c = _params(shape, 2, torch.float64)
    ops = torch.ops.sslkern
    step = ("sigmoid", "sigmoid", "bce", "patch", 0.4, 0.0, 5, 2)
    trailing = (0.0, 0.05, "kl", 0.0, 0.1, 1, 3, 4, 2, 2.0)
    saved = ops.autoencoder_loss(x, W, b, c, *step, backend, None, *trailing)[1:]
    for op, args in [
        (ops.corrupt.default, (leaves([x])[0], "block", 0.3, 1, 2, backend, None, 3, 4, 0)),
        (ops.corrupt_grad.default, (x, "patch", 0.3, 1, 2, backend, None, 3, 4, 2)),
        (ops.autoencoder_loss.default, (*leaves([x, W, b, c]), *step, backend, None, *trailing)),
        (ops.autoencoder_loss_backward.default, (torch.tensor(1.5, dtype=torch.float64), x, W, c, *saved, *step,
                                                 True, backend, None, *trailing)),
        (ops.autoencoder_value_and_grad.default, (x, W, b, c, *step, backend, None, *trailing)),
    ]:
        torch.library.opcheck(op, args)


def test_models_and_the_step_object_take_the_masks():
    shape = (6, 7)
    x = images(5, shape, torch.float32)
    model = sslkern.nn.InpaintingAutoencoder(42, 4, image_shape=shape, seed=2)
    twin = sslkern.nn.InpaintingAutoencoder(42, 4, image_shape=shape, seed=2)
    step = sslkern.step.AutoencoderStep(twin)
    for _ in range(3):
        assert torch.equal(model.sgd_step(x, 0.1), step.sgd_step(x, 0.1))
    assert torch.equal(model.weight, twin.weight)
    rebuilt = sslkern.nn.TiedAutoencoder(**model.config())
    assert rebuilt.config() == model.config() and rebuilt.masks["hole_weight"] == 2.0


@pytest.mark.parametrize("kwargs, message", [
    (dict(kind="block"), "corruption='block' needs image_shape=(height, width)"),
    (dict(kind="block", image_shape=(5, 5)), "image_shape (5, 5) has 25 pixels but the rows of x have 42"),
    (dict(kind="patch", image_shape=(6, 7)), "corruption='patch' needs patch= (the tile side) between 1 and 7"),
    (dict(kind="patch", image_shape=(6, 7), patch=8), "needs patch= (the tile side) between 1 and 7, got 8"),
    (dict(kind="block", image_shape=(1, 42), level=0.5), "makes a square hole of side 5, which does not fit"),
    (dict(kind="block", image_shape=(6, 7, 1)), "image_shape must be a pair (height, width)"),
    (dict(kind="block", image_shape=(6, 7), level=0.005), "makes a square hole of side 0"),
    (dict(kind="block", image_shape=(6, 0)), "image_shape must be a pair of positive integers"),
])
def test_bad_mask_arguments_name_the_argument(kwargs, message):
    kwargs = dict(kwargs)
    kind, level = kwargs.pop("kind"), kwargs.pop("level", 0.25)
    with pytest.raises(ValueError) as info:
        sslkern.corrupt(images(2, (6, 7)), kind, level, **kwargs)
    assert message in str(info.value)


def test_hole_weight_needs_a_corruption_that_drops_pixels():
    x = images(2, (6, 7))
    W, b, c = _params((6, 7), 3, torch.float64)
    with pytest.raises(ValueError, match="hole_weight=2.0 weights the pixels a mask drops, but corruption='gaussian'"):
        sslkern.autoencoder_loss(x, W, b, c, corruption="gaussian", level=0.1, hole_weight=2.0)
    with pytest.raises(ValueError, match=r"sslkern::autoencoder_loss: corruption='block' needs image_shape"):
        torch.ops.sslkern.autoencoder_loss(x, W, b, c, "sigmoid", "sigmoid", "bce", "block", 0.25, 0.0, 0, 0,
                                           "auto")
