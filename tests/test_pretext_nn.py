"""The pretext classifier (sslkern.nn.PretextClassifier) and its training through fit."""
import pytest
import torch

import sslkern
from sslkern import pretext
from sslkern.nn import PretextClassifier, TiedAutoencoder, step_seed
from sslkern.train import fit

SHAPE = (10, 10)
TASKS = [("rotation", {}), ("jigsaw", {"grid": (2, 2)}), ("relative", {"patch": 2, "gap": 1})]


def digits(n=96, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(n, SHAPE[0] * SHAPE[1], generator=gen)


@pytest.mark.parametrize("task, options", TASKS)
def test_loss_is_cross_entropy_of_the_generated_labels(task, options):
    model = PretextClassifier(task, SHAPE, 6, seed=3, **options)
    x = digits(9)
    loss = model(x)
    assert model.step == 1
    seed = step_seed(3, 0)
    if task == "rotation":
        views, labels = (pretext.rotations(x, SHAPE, seed=seed)[0],), pretext.rotations(x, SHAPE, seed=seed)[1]
    elif task == "jigsaw":
        out, labels = pretext.jigsaw(x, SHAPE, grid=(2, 2), seed=seed)
        views = (out,)
    else:
        center, neighbour, labels = pretext.relative_patches(x, SHAPE, patch=2, gap=1, seed=seed)
        views = (center, neighbour)
    codes = torch.cat([torch.sigmoid(v @ model.weight.T + model.hidden_bias) for v in views], dim=1)
    logits = codes @ model.head_weight.T + model.head_bias
    expected = torch.nn.functional.cross_entropy(logits, labels)
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_same_seed_same_model_and_encoder_starts_as_autoencoders():
    a, b = PretextClassifier("rotation", SHAPE, 6, seed=4), PretextClassifier("rotation", SHAPE, 6, seed=4)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert torch.equal(a.weight, TiedAutoencoder(100, 6, seed=4).weight)
    a.eval()
    assert torch.equal(a(digits(8)), a(digits(8))) and a.step == 0  # eval: fixed labels, no step


def test_ranks_draw_their_own_labels():
    """Data-parallel ranks (set by fit) share the step's seed and draw at their own offsets, as
    the autoencoders do: two ranks of 32 rows draw what one process draws for the 64."""
    models = [PretextClassifier("jigsaw", SHAPE, 4, seed=6) for _ in range(2)]
    x = digits(64)
    labels = []
    for rank, model in enumerate(models):
        model.rank, model.world_size = rank, 2
        assert model.noise_seed() == step_seed(6, 0)
        labels.append(model.generate(x[32 * rank:32 * (rank + 1)], *model.take_noise(x[:32]))[1])
    assert not torch.equal(labels[0], labels[1]) and models[0].step == models[1].step == 1
    one = PretextClassifier("jigsaw", SHAPE, 4, seed=6)
    assert torch.equal(torch.cat(labels), one.generate(x, *one.take_noise(x))[1])


def test_siamese_encode_gives_patch_grid_features():
    model = PretextClassifier("relative", SHAPE, 5, patch=3, gap=0)
    x = digits(4)
    features = model.encode(x)
    assert features.shape == (4, 9 * 5)  # a 3x3 grid of 3x3 patches in a 10x10 image
    first_patch = x.view(4, 10, 10)[:, :3, :3].reshape(4, 9)
    torch.testing.assert_close(features[:, :5], model.encode(first_patch))


@pytest.mark.parametrize("bad, error, match", [
    (dict(task="colour"), ValueError, "task"),
    (dict(task="rotation", image_shape=(10, 12)), ValueError, "square"),
    (dict(task="jigsaw", grid=(11, 1)), ValueError, "grid"),
    (dict(task="jigsaw", permutations=torch.tensor([[0, 0, 1, 2]])), ValueError, "not a permutation"),
    (dict(task="relative", patch=4, gap=0), ValueError, "patch=4"),
    (dict(task="rotation", image_shape=(10,)), ValueError, "image_shape"),
])
def test_bad_model_arguments(bad, error, match):
    kwargs = dict(task="rotation", image_shape=SHAPE, n_hidden=4)
    kwargs.update(bad)
    shape = kwargs.pop("image_shape")
    with pytest.raises(error, match=match):
        PretextClassifier(kwargs.pop("task"), shape, kwargs.pop("n_hidden"), **kwargs)


@pytest.mark.parametrize("task, options", TASKS)
def test_fit_trains_and_lowers_the_loss(task, options):
    torch.manual_seed(0)
    model = PretextClassifier(task, SHAPE, 16, seed=1, **options)
    history = fit(model, digits(256), epochs=4, batch_size=32, lr=0.5, optimizer="adam" if task != "relative" else "sgd",
                  progress=False)
    assert history["steps"] == 32 and model.step == 32
    assert history["loss"][-1] < history["loss"][0]


def test_fit_resume_is_exact(tmp_path):
    X = digits(80)
    full = PretextClassifier("jigsaw", SHAPE, 8, seed=2)
    fit(full, X, epochs=2, batch_size=16, lr=0.1, optimizer="momentum", progress=False)
    folder = tmp_path / "ck"
    part = PretextClassifier("jigsaw", SHAPE, 8, seed=2)
    fit(part, X, epochs=1, batch_size=16, lr=0.1, optimizer="momentum", progress=False, checkpoint_dir=folder,
        checkpoint_every=3)
    newest = sorted(folder.glob("checkpoint-*.pt"))[-1]
    assert newest.name == "checkpoint-000000005.pt"
    newest.unlink()  # as if the run died after step 3, in the middle of epoch 1
    resumed = PretextClassifier("jigsaw", SHAPE, 8, seed=2)
    fit(resumed, X, epochs=2, batch_size=16, lr=0.1, optimizer="momentum", progress=False, checkpoint_dir=folder,
        resume=True)
    assert resumed.step == full.step == 10
    assert all(torch.equal(p, q) for p, q in zip(resumed.parameters(), full.parameters()))


def test_fit_refuses_a_cuda_graph_and_other_widths():
    model = PretextClassifier("rotation", SHAPE, 4)
    with pytest.raises(ValueError, match="shape"):
        fit(model, torch.rand(8, 99), epochs=1, batch_size=4, lr=0.1, progress=False)
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match="pretext"):
            fit(model, digits(8), epochs=1, batch_size=4, lr=0.1, progress=False, device="cuda", cuda_graph=True)


def test_backends_train_the_same_model():
    """The generators are bit-identical, so one step on any backend gives the same weights
    to rounding (the products differ only by the backend's BLAS)."""
    results = []
    for name in ("reference", "native"):
        model = PretextClassifier("relative", SHAPE, 6, patch=2, gap=1, seed=5)
        with sslkern.use_backend(name):
            fit(model, digits(32), epochs=1, batch_size=16, lr=0.5, progress=False)
        results.append(model.state_dict())
    for key in results[0]:
        torch.testing.assert_close(results[0][key], results[1][key], rtol=1e-5, atol=1e-6)
