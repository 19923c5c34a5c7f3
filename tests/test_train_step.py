"""sslkern.step.AutoencoderStep (checked once, then the fused op each call) gives the public
ops' numbers bit for bit; fit's graph-free step uses it."""
import pytest
import torch

import sslkern
from sslkern import data, nn, train
from sslkern.step import AutoencoderStep
from sslkern.train import steps

D, H, B = 40, 12, 16


def model(**kwargs):
    kwargs = dict(dict(corruption="mask", level=0.25, contractive=0.1, seed=5), **kwargs)
    return nn.TiedAutoencoder(D, H, **kwargs)


def batches(n=4, rows=B, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.rand(rows, D, generator=gen) for _ in range(n)]


def assert_same_model(a, b):
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y) if isinstance(x, torch.Tensor) else x == y, name


@pytest.mark.parametrize("options", [{}, {"corruption": "gaussian", "level": 0.3, "contractive": 0.0},
                                     {"encoder": "tanh", "decoder": "linear", "loss": "mse"},
                                     {"sparsity": 0.2, "higher_order": 0.3, "higher_order_samples": 2}])
def test_sgd_step_matches_the_model_method_bit_for_bit(options):
    old, new = model(**options), model(**options)
    step = AutoencoderStep(new)
    for x in batches() + batches(1, rows=5):  # a short last batch too
        assert torch.equal(old.sgd_step(x, 0.1), step.sgd_step(x, 0.1))
    assert_same_model(old, new)
    assert new.step == 5 and step.step == 5


def test_value_and_grad_and_loss_match_the_model_methods():
    old, new = model(), model()
    step = AutoencoderStep(new)
    for x in batches(2):
        want, got = old.value_and_grad(x), step.value_and_grad(x)
        assert torch.equal(want[0], got[0]) and all(torch.equal(a, b) for a, b in zip(want[1], got[1]))
    x = batches(1)[0]
    want, got = old(x), step.loss(x)
    assert torch.equal(want, got)
    grads = [torch.autograd.grad(v, list(m.parameters())) for v, m in ((want, old), (got, new))]
    assert all(torch.equal(a, b) for a, b in zip(*grads))
    assert old.step == new.step == 3


def test_eval_mode_uses_the_fixed_seed_and_keeps_the_counter():
    m = model()
    m.eval()
    step = AutoencoderStep(m)
    x = batches(1)[0]
    assert torch.equal(step.loss(x), step.loss(x)) and m.step == 0
    assert torch.equal(step.loss(x), m(x))


def test_from_parameters_with_its_own_counter():
    m = model()
    W, b, c = (p.detach().clone() for p in m.parameters())
    step = AutoencoderStep((W, b, c), corruption="mask", level=0.25, contractive=0.1, seed=5)
    for x in batches(3):
        want = sslkern.autoencoder_sgd_step(x, *m.parameters(), lr=0.05, corruption="mask", level=0.25,
                                            contractive=0.1, seed=nn.step_seed(5, step.step))
        assert torch.equal(step.sgd_step(x, 0.05), want)
    assert torch.equal(W, m.weight) and torch.equal(b, m.hidden_bias) and torch.equal(c, m.visible_bias)


def test_settings_are_checked_when_built():
    m = model()
    with pytest.raises(ValueError, match="corruption"):
        AutoencoderStep(tuple(m.parameters()), corruption="blur")
    with pytest.raises(ValueError, match="c has"):
        AutoencoderStep((m.weight, m.hidden_bias, torch.zeros(D + 1)))
    with pytest.raises(TypeError, match="from the model"):
        AutoencoderStep(m, level=0.5)
    with pytest.raises(TypeError, match="TiedAutoencoder or a tuple"):
        AutoencoderStep("model")


def test_a_batch_that_changes_is_checked_again():
    m = model()
    step = AutoencoderStep(m)
    step.sgd_step(batches(1)[0], 0.1)
    with pytest.raises(ValueError, match="features"):
        step.sgd_step(torch.rand(B, D + 1), 0.1)
    with pytest.raises(TypeError, match="floating"):
        step.sgd_step(torch.ones(B, D, dtype=torch.int64), 0.1)
    with pytest.raises(ValueError, match="lr"):
        step.sgd_step(batches(1)[0], float("nan"))
    old = model()
    old.sgd_step(batches(1)[0], 0.1)
    x64 = batches(1)[0].double()  # another dtype: checked in full, then runs as the op would
    assert torch.equal(step.sgd_step(x64, 0.1), old.sgd_step(x64, 0.1))
    assert_same_model(old, m)


def test_moved_or_replaced_parameters_are_refused():
    m = model()
    step = AutoencoderStep(m)
    m.double()
    with pytest.raises(RuntimeError, match="build a new one"):
        step.sgd_step(batches(1)[0], 0.1)
    m = model()
    step = AutoencoderStep(m)
    m.weight = torch.nn.Parameter(m.weight.detach().clone())
    with pytest.raises(RuntimeError, match="replaced"):
        step.value_and_grad(batches(1)[0])


def test_under_a_torch_function_mode_it_takes_the_public_op(monkeypatch):
    class Mode(torch.overrides.TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            return func(*args, **(kwargs or {}))

    seen, public = [], sslkern.functional.autoencoder_sgd_step
    monkeypatch.setattr(sslkern.functional, "autoencoder_sgd_step", lambda *a, **k: seen.append(1) or public(*a, **k))
    old, new = model(), model()
    step = AutoencoderStep(new)
    x = batches(1)[0]
    step.sgd_step(x, 0.1)
    assert not seen  # plain eager: the op body directly
    with Mode():
        got = step.sgd_step(x, 0.1)
    assert seen  # a mode could observe the difference: the public op
    old.sgd_step(x, 0.1)
    assert torch.equal(got, old.sgd_step(x, 0.1))
    assert_same_model(old, new)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_fit_matches_the_per_call_route_bit_for_bit(optimizer, monkeypatch):
    """fit's step object against the route it replaced (TiedAutoencoder.sgd_step and
    .value_and_grad, every argument checked on every call)."""
    X = data.load("mnist-10k").X_train[:96]

    def per_call_route(module, opt, fused_sgd):
        params = (module.weight, module.hidden_bias, module.visible_bias)

        def step(xb):
            if fused_sgd:
                return module.sgd_step(xb, opt.param_groups[0]["lr"])
            loss, grads = module.value_and_grad(xb)
            for param, grad in zip(params, grads):
                param.grad = grad
            opt.step()
            return loss
        return step

    settings = dict(epochs=2, batch_size=32, lr=0.05, optimizer=optimizer, progress=False)
    new = nn.DenoisingAutoencoder(784, 24, contractive=0.1)
    got = train.fit(new, X, **settings)
    monkeypatch.setattr(steps, "graph_free_step", per_call_route)
    old = nn.DenoisingAutoencoder(784, 24, contractive=0.1)
    want = train.fit(old, X, **settings)
    assert got["loss"] == want["loss"]
    assert_same_model(old, new)


def test_non_contiguous_parameters_take_the_public_op():
    m = model()
    W = m.weight.detach().t().contiguous().t().requires_grad_()  # [H, D] with transposed strides
    b, c = m.hidden_bias.detach().clone(), m.visible_bias.detach().clone()
    step = AutoencoderStep((W, b, c), corruption="mask", level=0.25, contractive=0.1, seed=5)
    x = batches(1)[0]
    want = sslkern.autoencoder_loss(x, W, b, c, corruption="mask", level=0.25, contractive=0.1,
                                    seed=nn.step_seed(5, 0))
    assert torch.equal(step.loss(x), want)
    with pytest.raises(ValueError, match="contiguous"):
        step.sgd_step(x, 0.1)
