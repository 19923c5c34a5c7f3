"""sslkern.nn: initialisation, the noise stream, state, presets, stacking, errors."""
import math

import pytest
import torch

import sslkern
from sslkern import nn as ssl_nn
from sslkern import reference


def test_initialisation_follows_the_classic_bounds():
    for encoder, factor in (("sigmoid", 4.0), ("tanh", 1.0), ("relu", 1.0)):
        model = ssl_nn.TiedAutoencoder(37, 11, encoder=encoder, seed=3)
        bound = factor * math.sqrt(6.0 / (37 + 11))
        assert model.weight.shape == (11, 37)
        assert model.weight.abs().max() <= bound
        assert model.weight.abs().max() > 0.8 * bound  # fills the interval, not a narrower one
        assert torch.count_nonzero(model.hidden_bias) == 0 and torch.count_nonzero(model.visible_bias) == 0


def test_initialisation_is_reproducible_from_seed():
    a, b, c = (ssl_nn.TiedAutoencoder(29, 7, seed=s) for s in (5, 5, 6))
    assert torch.equal(a.weight, b.weight)
    assert not torch.equal(a.weight, c.weight)


def test_training_forward_is_the_fused_objective_with_fresh_noise_each_call():
    torch.manual_seed(0)
    model = ssl_nn.TiedAutoencoder(23, 5, corruption="mask", level=0.3, contractive=0.2, seed=11)
    x = torch.rand(7, 23)
    losses = []
    for step in range(3):
        assert model.step == step
        loss = model(x)
        expected = reference.autoencoder_loss(
            x.double(), model.weight.double(), model.hidden_bias.double(), model.visible_bias.double(),
            corruption="mask", level=0.3, contractive=0.2, seed=ssl_nn.step_seed(11, step), offset=0)
        torch.testing.assert_close(loss.double(), expected, rtol=1e-5, atol=1e-4)
        losses.append(loss.item())
    assert len(set(losses)) == 3  # a new mask every call
    assert model.step == 3


def test_eval_forward_is_fixed_and_does_not_advance_the_counter():
    model = ssl_nn.DenoisingAutoencoder(19, 4, seed=2).eval()
    x = torch.rand(5, 19)
    assert model(x).item() == model(x).item()
    assert model.step == 0


def test_step_seeds_never_repeat_across_steps():
    seeds = {ssl_nn.step_seed(7, step) for step in range(1000)}
    assert len(seeds) == 1000
    assert ssl_nn.step_seed(2**64 - 1, 1) < 2**64
    assert ssl_nn.step_seed(7, 0) == 7


def test_ranks_draw_the_rows_of_one_global_batch():
    """Rank r of W on its block of rows draws what one process draws for those rows of the
    global batch: the same seed, at offset r · (its batch's elements)."""
    x = torch.rand(6, 17)
    whole = ssl_nn.DenoisingAutoencoder(17, 3, level=0.5, seed=1)
    ranks = [ssl_nn.DenoisingAutoencoder(17, 3, level=0.5, seed=1) for _ in range(2)]
    losses = []
    for rank, model in enumerate(ranks):
        model.rank, model.world_size = rank, 2
        losses.append(model(x[3 * rank: 3 * rank + 3]))
    torch.testing.assert_close(sum(losses) / 2, whole(x), rtol=1e-6, atol=0)
    assert ranks[0].step == ranks[1].step == whole.step == 1


def test_ranks_draw_different_noise():
    x = torch.rand(6, 17)
    ranks = [ssl_nn.DenoisingAutoencoder(17, 3, level=0.5, seed=1) for _ in range(2)]
    for rank, model in enumerate(ranks):
        model.rank, model.world_size = rank, 2
    assert ranks[0](x).item() != ranks[1](x).item()


def test_step_counter_travels_in_the_state_dict():
    model = ssl_nn.DenoisingAutoencoder(13, 3)
    x = torch.rand(4, 13)
    for _ in range(4):
        model(x)
    copy = ssl_nn.DenoisingAutoencoder(13, 3)
    copy.load_state_dict(model.state_dict())
    assert copy.step == 4
    assert copy.noise_seed() == model.noise_seed()


def test_encode_and_reconstruct_use_the_clean_input():
    model = ssl_nn.DenoisingAutoencoder(31, 6, level=0.9, seed=4)
    x = torch.rand(3, 31)
    h = torch.sigmoid(x @ model.weight.T + model.hidden_bias)
    torch.testing.assert_close(model.encode(x), h)
    torch.testing.assert_close(model.reconstruct(x), torch.sigmoid(h @ model.weight + model.visible_bias))


def test_presets():
    dae = ssl_nn.DenoisingAutoencoder(10, 4)
    cae = ssl_nn.ContractiveAutoencoder(10, 4)
    assert (dae.corruption, dae.level, dae.contractive) == ("mask", 0.25, 0.0)
    assert (cae.corruption, cae.level, cae.contractive) == ("none", 0.0, 0.1)
    assert ssl_nn.DenoisingAutoencoder(10, 4, level=0.5).level == 0.5
    hcae = ssl_nn.HigherOrderContractiveAutoencoder(10, 4)
    sparse = ssl_nn.SparseAutoencoder(10, 4, sparsity_kind="l1")
    assert hcae.contractive == 0.1 and hcae.penalties["higher_order"] == 0.1
    assert sparse.penalties["sparsity"] == 0.1 and sparse.penalties["sparsity_kind"] == "l1"
    for preset in (hcae, sparse):  # config() rebuilds the same model (what a checkpoint needs)
        rebuilt = ssl_nn.TiedAutoencoder(**preset.config())
        assert rebuilt.config() == preset.config()


def test_model_penalties_reach_the_objective():
    x = torch.rand(6, 10)
    model = ssl_nn.TiedAutoencoder(10, 4, sparsity=0.3, higher_order=0.5, higher_order_samples=2, seed=3).eval()
    params = (model.weight, model.hidden_bias, model.visible_bias)
    want = sslkern.autoencoder_loss(x, *params, sparsity=0.3, higher_order=0.5, higher_order_samples=2, seed=3)
    assert torch.equal(model(x), want)
    assert not torch.equal(model(x), sslkern.autoencoder_loss(x, *params, seed=3))


def test_stacked_encodes_through_every_layer():
    model = ssl_nn.StackedAutoencoder([29, 7, 5], corruption="mask", level=0.2, seed=9)
    assert [layer.weight.shape for layer in model.layers] == [(7, 29), (5, 7)]
    assert [layer.seed for layer in model.layers] == [9, 10]
    x = torch.rand(4, 29)
    torch.testing.assert_close(model.encode(x), model.layers[1].encode(model.layers[0].encode(x)))
    assert model.reconstruct(x).shape == (4, 29)
    stages = model.stages()
    assert [s[0] for s in stages] == list(model.layers)
    torch.testing.assert_close(stages[1][1](x), model.layers[0].encode(x))


def test_float64_model():
    model = ssl_nn.TiedAutoencoder(11, 3, dtype=torch.float64)
    loss = model(torch.rand(2, 11))
    assert loss.dtype == torch.float64
    loss.backward()
    assert model.weight.grad.dtype == torch.float64


@pytest.mark.parametrize("kwargs, message", [
    ({"n_visible": 0, "n_hidden": 3}, "n_visible"),
    ({"n_visible": 5, "n_hidden": 2.5}, "n_hidden"),
    ({"n_visible": 5, "n_hidden": 3, "corruption": "blur"}, "corruption"),
    ({"n_visible": 5, "n_hidden": 3, "corruption": "mask", "level": 1.5}, "level"),
    ({"n_visible": 5, "n_hidden": 3, "contractive": -1.0}, "contractive"),
    ({"n_visible": 5, "n_hidden": 3, "loss": "bce", "decoder": "linear"}, "bce"),
    ({"n_visible": 5, "n_hidden": 3, "seed": -1}, "seed"),
])
def test_bad_arguments_name_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ssl_nn.TiedAutoencoder(**kwargs)


def test_bad_input_names_the_problem():
    model = ssl_nn.TiedAutoencoder(8, 3)
    with pytest.raises(ValueError, match="8"):
        model(torch.rand(2, 9))
    with pytest.raises(TypeError, match="floating"):
        model(torch.ones(2, 8, dtype=torch.int64))
    with pytest.raises(ValueError, match="sizes"):
        ssl_nn.StackedAutoencoder([784])


def test_backward_reaches_every_parameter():
    model = ssl_nn.ContractiveAutoencoder(17, 5)
    model(torch.rand(3, 17)).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_numpy_numbers_are_accepted():
    import numpy as np

    model = ssl_nn.TiedAutoencoder(np.int64(12), np.int32(4), corruption="mask", level=np.float32(0.25),
                                   contractive=np.float64(0.1), seed=np.uint64(3))
    assert model.config() == ssl_nn.TiedAutoencoder(12, 4, corruption="mask", level=float(np.float32(0.25)),
                                                    contractive=0.1, seed=3).config()
    assert all(type(v) in (int, float, str, type(None)) for v in model.config().values())
    stacked = ssl_nn.StackedAutoencoder([np.int64(12), np.int32(6), 3], seed=np.int64(1))
    assert stacked.sizes == [12, 6, 3] and all(type(s) is int for s in stacked.sizes)
