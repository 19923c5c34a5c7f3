"""The objective without an autograd graph: autoencoder_value_and_grad (loss and parameter
gradients) and autoencoder_sgd_step (the same with a plain SGD update in place), on every
backend, against the float64 oracle and against autoencoder_loss + autograd."""
import pytest
import torch
from helpers import (DEVICE, DTYPES, SAME_NUMBERS, SHAPES, assert_close, leaves, make_inputs, objective_cases,
                     objective_config, objective_policy)

import sslkern
from sslkern import reference as oracle

LR = 0.37


def fresh(params):
    """Leaf copies that an in-place step may change (helpers.leaves aliases same-dtype inputs)."""
    return [t.clone().requires_grad_() for t in params]


def _oracle(x, params, config):
    ref = leaves(params, torch.float64)
    value = oracle.autoencoder_loss(x.double(), *ref, **config)
    return value.detach(), torch.autograd.grad(value, ref)


# Every backend, and the native CPU backend's second route too (torch.mm between C++ passes)
ROUTES = [(name, "fused") for name in sslkern.available_backends()]
ROUTES += [("native", "passes")] if "native" in sslkern.available_backends() else []


@pytest.fixture(params=ROUTES, ids=lambda route: route[0] if route[1] == "fused" else "-".join(route))
def route(request, monkeypatch):
    """(backend, SSLKERN_CPU_STEP), active for the test's duration; yields the backend."""
    name, step = request.param
    monkeypatch.setenv("SSLKERN_CPU_STEP", step)
    with sslkern.use_backend(name):
        yield name


@pytest.mark.parametrize("objective, corruption, contractive", objective_cases())
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_value_and_grad_matches_oracle(route, objective, corruption, contractive, dtype, shape):
    if route == "triton" and shape[0] > 3 and DEVICE.type == "cpu":
        pytest.skip("the triton interpreter is slow: small shapes only")
    config = objective_config(objective, corruption, contractive)
    x, *params = make_inputs(*shape, dtype)
    value, grads = sslkern.autoencoder_value_and_grad(x, *leaves(params), **config)
    want_value, want_grads = _oracle(x, params, config)
    policy = objective_policy(corruption)
    assert not value.requires_grad and not any(g.requires_grad for g in grads)
    assert_close(value, want_value, dtype, policy=policy, what="value")
    for name, got, want in zip("Wbc", grads, want_grads):
        assert_close(got, want, dtype, policy=policy, what=f"d/d{name}")


@pytest.mark.parametrize("objective, corruption, contractive", objective_cases())
@pytest.mark.parametrize("dtype", DTYPES)
def test_sgd_step_matches_oracle_update(route, objective, corruption, contractive, dtype):
    shape = (3, 5, 7) if route == "triton" and DEVICE.type == "cpu" else (37, 129, 65)
    config = objective_config(objective, corruption, contractive)
    x, *params = make_inputs(*shape, dtype)
    want_value, want_grads = _oracle(x, params, config)
    updated = fresh(params)
    value = sslkern.autoencoder_sgd_step(x, *updated, lr=LR, **config)
    policy = objective_policy(corruption)
    assert_close(value, want_value, dtype, policy=policy, what="value")
    for name, got, start, grad in zip("Wbc", updated, params, want_grads):
        assert_close(got, start.double() - LR * grad, dtype, policy=policy, what=f"updated {name}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_same_numbers_as_autograd(route, dtype):
    """value_and_grad is the autograd route's numbers; sgd_step is p - lr g of them (the fused
    CPU update accumulates into W in another order: equal to rounding)."""
    x, *params = make_inputs(9, 11, 6, dtype)
    config = objective_config(("tanh", "sigmoid", "bce"), "salt_pepper", 0.4)
    tracked = leaves(params)
    loss = sslkern.autoencoder_loss(x, *tracked, **config)
    want = torch.autograd.grad(loss, tracked)
    value, grads = sslkern.autoencoder_value_and_grad(x, *leaves(params), **config)
    assert_close(value, loss.detach(), dtype, policy=SAME_NUMBERS, what="value")
    for name, got, expected in zip("Wbc", grads, want):
        assert_close(got, expected, dtype, policy=SAME_NUMBERS, what=f"d/d{name}")
    updated = fresh(params)
    assert sslkern.autoencoder_sgd_step(x, *updated, lr=LR, **config) == value
    for got, start, grad in zip(updated, params, want):
        assert_close(got.detach(), start - LR * grad, dtype, policy=SAME_NUMBERS, what="updated")


def test_sgd_step_keeps_the_parameters_and_advances_their_versions(route):
    x, *params = make_inputs(4, 6, 5, torch.float32)
    W, b, c = leaves(params)
    storage = [t.data_ptr() for t in (W, b, c)]
    versions = [t._version for t in (W, b, c)]
    sslkern.autoencoder_sgd_step(x, W, b, c, lr=0.1, corruption="mask", level=0.5, contractive=0.2)
    assert [t.data_ptr() for t in (W, b, c)] == storage
    assert all(t._version > v for t, v in zip((W, b, c), versions))
    assert W.requires_grad and W.is_leaf and W.grad is None


def test_sgd_step_invalidates_a_saved_weight(route):
    """A graph that saved W before the in-place step raises on backward, as torch's own
    in-place ops make it."""
    x, *params = make_inputs(4, 6, 5, torch.float32)
    W, b, c = leaves(params)
    stale = (W * W).sum()  # saves W
    sslkern.autoencoder_sgd_step(x, W, b, c, lr=0.1)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        stale.backward()


def test_loss_whose_weight_took_an_sgd_step_refuses_its_backward(route):
    """The eager forward may precompute its gradients (native CPU): they belong to the old W,
    so a backward after W changed in place must raise, as for any saved tensor."""
    x, *params = make_inputs(4, 6, 5, torch.float32)
    W, b, c = fresh(params)
    loss = sslkern.autoencoder_loss(x, W, b, c, corruption="mask", level=0.3, contractive=0.2)
    sslkern.autoencoder_sgd_step(x, W, b, c, lr=0.1)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_lr_zero_leaves_the_parameters(route):
    x, *params = make_inputs(5, 7, 3, torch.float64)
    updated = fresh(params)
    sslkern.autoencoder_sgd_step(x, *updated, lr=0.0, corruption="mask", level=0.3, contractive=0.5)
    for got, start in zip(updated, params):
        assert torch.equal(got.detach(), start)


def test_empty_batch(route):
    x, *params = make_inputs(0, 7, 3, torch.float32)
    value, grads = sslkern.autoencoder_value_and_grad(x, *params, corruption="mask", level=0.3, contractive=0.5)
    assert value.item() == 0.0 and all(bool((g == 0).all()) for g in grads)
    updated = fresh(params)
    assert sslkern.autoencoder_sgd_step(x, *updated, lr=1.0, contractive=0.5).item() == 0.0
    for got, start in zip(updated, params):
        assert torch.equal(got.detach(), start)


def test_x_that_requires_grad_is_data_here(route):
    x, *params = make_inputs(4, 6, 5, torch.float32)
    x = x.requires_grad_()
    value, grads = sslkern.autoencoder_value_and_grad(x, *params, corruption="gaussian", level=0.2)
    assert value.grad_fn is None and all(g.grad_fn is None for g in grads)


def test_sgd_step_with_x_in_another_dtype(route):
    x, *params = make_inputs(6, 8, 5, torch.float64)
    params = [p.float() for p in params]
    want_value, want_grads = _oracle(x, params, dict(corruption="mask", level=0.3, contractive=0.2))
    updated = fresh(params)
    value = sslkern.autoencoder_sgd_step(x, *updated, lr=LR, corruption="mask", level=0.3, contractive=0.2)
    assert_close(value, want_value, torch.float32, what="value")
    for name, got, start, grad in zip("Wbc", updated, params, want_grads):
        assert_close(got, start.double() - LR * grad, torch.float32, what=f"updated {name}")


def test_direct_op_calls_take_any_layout(route):
    """torch.ops.sslkern.* skip the public wrappers' contiguity: a strided b or c is read and
    updated where it lives, its neighbours untouched; the versions advance."""
    x, W, b, c = make_inputs(6, 8, 5, torch.float32)
    names = ("sigmoid", "sigmoid", "bce", "mask", 0.3, 0.2, 11, 3, route)
    store_b, store_c = torch.full((5, 2), 9.0), torch.full((8, 3), 9.0)
    strided_b, strided_c = store_b[:, 0], store_c[:, 1]
    strided_b.copy_(b)
    strided_c.copy_(c)
    ops = torch.ops.sslkern
    want = ops.autoencoder_value_and_grad(x, W, b, c, *names)
    got = ops.autoencoder_value_and_grad(x, W, strided_b, strided_c, *names)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)
    W2 = W.clone()
    versions = [t._version for t in (W2, strided_b, strided_c)]
    loss = ops.autoencoder_sgd_step(x, W2, strided_b, strided_c, *names, LR)
    torch.testing.assert_close(loss, want[0])
    torch.testing.assert_close(strided_b, b - LR * want[2])
    torch.testing.assert_close(strided_c, c - LR * want[3])
    assert bool((store_b[:, 1] == 9.0).all()) and bool((store_c[:, [0, 2]] == 9.0).all())
    assert all(t._version > v for t, v in zip((W2, strided_b, strided_c), versions))


def test_device_tensor_seed_is_the_integer_seed(route):
    x, *params = make_inputs(6, 8, 5, torch.float32)
    rng = torch.tensor([2**40 + 3, 29], dtype=torch.int64, device=x.device)
    by_int = sslkern.autoencoder_value_and_grad(x, *params, corruption="mask", level=0.3, seed=2**40 + 3, offset=29)
    by_tensor = sslkern.autoencoder_value_and_grad(x, *params, corruption="mask", level=0.3, seed=rng)
    assert torch.equal(by_int[0], by_tensor[0])
    assert all(torch.equal(a, b) for a, b in zip(by_int[1], by_tensor[1]))


@pytest.mark.parametrize("bad, message", [
    (dict(lr=-0.1), "lr must be a finite number >= 0"),
    (dict(lr=float("nan")), "lr must be a finite number >= 0"),
    (dict(lr=True), "lr must be a finite number >= 0"),
    (dict(lr="0.1"), "lr must be a finite number >= 0"),
    (dict(W="transposed"), "W must be contiguous"),
    (dict(b="strided"), "b must be contiguous"),
    (dict(corruption="dropout"), "corruption"),
    (dict(contractive=-1.0), "contractive"),
])
def test_sgd_step_bad_arguments_name_the_argument(bad, message):
    x, W, b, c = make_inputs(4, 6, 5, torch.float32)
    if bad.pop("W", None):
        W = W.t().contiguous().t()  # same values, column-major
    if bad.pop("b", None):
        b = torch.stack([b, b], 1)[:, 0]
    before = [t.clone() for t in (W, b, c)]
    with pytest.raises(ValueError, match=message):
        sslkern.autoencoder_sgd_step(x, W, b, c, **{"lr": 0.1, **bad})
    assert all(torch.equal(t, u) for t, u in zip((W, b, c), before)), "a rejected call wrote"


def test_value_and_grad_bad_arguments_name_the_argument():
    x, W, b, c = make_inputs(4, 6, 5, torch.float32)
    with pytest.raises(ValueError, match="c has 5 entries"):
        sslkern.autoencoder_value_and_grad(x, W, b, c[:5])
    with pytest.raises(ValueError, match="loss"):
        sslkern.autoencoder_value_and_grad(x, W, b, c, loss="hinge")


def test_compiled_value_and_grad_and_sgd_step_match_eager():
    torch._dynamo.reset()
    x, *params = make_inputs(9, 13, 6, torch.float32, "cpu")
    config = objective_config(("sigmoid", "sigmoid", "bce"), "mask", 0.3)

    def train_step(x, W, b, c):
        value, grads = sslkern.autoencoder_value_and_grad(x, W, b, c, **config)
        loss = sslkern.autoencoder_sgd_step(x, W, b, c, lr=LR, **config)
        return value, grads, loss

    eager_params, compiled_params = [t.clone() for t in params], [t.clone() for t in params]
    want = train_step(x, *eager_params)
    got = torch.compile(train_step, fullgraph=True, backend="aot_eager")(x, *compiled_params)
    torch.testing.assert_close(got, want)
    for got_p, want_p in zip(compiled_params, eager_params):
        torch.testing.assert_close(got_p, want_p)
