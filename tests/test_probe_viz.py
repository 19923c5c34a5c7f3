"""sslkern.probe (logistic regression on frozen features) and sslkern.viz (PNG pictures)."""
import builtins
import os

import numpy as np
import pytest
import torch
from PIL import Image

from sslkern import nn, probe, viz


def blobs(n, seed, shift=3.0):
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    X = torch.randn(n, 5, generator=gen)
    X[torch.arange(n), y] += shift
    return X, y


def test_probe_separates_separable_classes_and_not_random_labels():
    X_train, y_train = blobs(150, 0, shift=8.0)
    X_test, y_test = blobs(60, 1, shift=8.0)
    assert probe.linear_probe(None, X_train, y_train, X_test, y_test) == 1.0
    shuffled = y_test[torch.randperm(60, generator=torch.Generator().manual_seed(0))]
    assert probe.linear_probe(None, X_train, y_train, X_test, shuffled) < 0.6


def test_probe_is_deterministic_and_matches_a_callable_encoder():
    X_train, y_train = blobs(120, 2, shift=1.0)
    X_test, y_test = blobs(61, 3, shift=1.0)
    first = probe.linear_probe(None, X_train, y_train, X_test, y_test)
    assert first == probe.linear_probe(None, X_train, y_train, X_test, y_test)
    # Standardisation makes a per-feature affine map of the input irrelevant.
    assert first == pytest.approx(probe.linear_probe(lambda x: 3 * x + 1, X_train, y_train, X_test, y_test), abs=1 / 61)


def test_probe_uses_model_encode_in_eval_mode():
    model = nn.DenoisingAutoencoder(5, 4, level=0.5)
    seen = []
    encode = model.encode
    model.encode = lambda x: seen.append(model.training) or encode(x)
    X_train, y_train = blobs(30, 4)
    X_test, y_test = blobs(9, 5)
    accuracy = probe.linear_probe(model, X_train, y_train, X_test, y_test)
    assert 0.0 <= accuracy <= 1.0 and seen and not any(seen)
    assert model.training  # restored


@pytest.mark.parametrize("y_train, error, message", [
    (torch.zeros(10), TypeError, "y_train"),
    (torch.zeros(9, dtype=torch.int64), ValueError, "9 labels"),
    (torch.full((10,), -1), ValueError, "class indices"),
])
def test_probe_bad_labels(y_train, error, message):
    with pytest.raises(error, match=message):
        probe.linear_probe(None, torch.rand(10, 3), y_train, torch.rand(4, 3), torch.zeros(4, dtype=torch.int64))


def test_probe_bad_features():
    with pytest.raises(TypeError, match="X_train"):
        probe.linear_probe(None, torch.ones(4, 3, dtype=torch.int64), torch.zeros(4, dtype=torch.int64),
                           torch.rand(2, 3), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(ValueError, match="features"):
        probe.linear_probe(None, torch.rand(4, 3), torch.zeros(4, dtype=torch.int64),
                           torch.rand(2, 5), torch.zeros(2, dtype=torch.int64))


def test_filter_grid_layout(tmp_path):
    W = torch.zeros(12, 6)  # 12 filters of 2×3, 4 per row
    W[5, 4] = 1.0  # filter 5 (row 1, column 1), pixel (1, 1)
    viz.save_filters(W, tmp_path / "f.png", image_shape=(2, 3), columns=4, zoom=1)
    image = np.asarray(Image.open(tmp_path / "f.png"))
    assert image.shape == (3 * 3 - 1, 4 * 4 - 1)
    assert image[1 * 3 + 1, 1 * 4 + 1] == 255
    assert (image == 255).sum() == 1  # every other filter is flat and draws as black
    assert os.listdir(tmp_path) == ["f.png"]  # no temporary file left behind


def test_filters_of_a_model_and_panels(tmp_path):
    model = nn.TiedAutoencoder(784, 30)
    viz.save_filters(model, tmp_path / "f.png")
    assert Image.open(tmp_path / "f.png").size == ((6 * 29 - 1) * 2, (5 * 29 - 1) * 2)
    viz.save_filter_panels([model.weight, model.weight], ["0%", "25%"], tmp_path / "p.png")
    assert Image.open(tmp_path / "p.png").width > 2 * (6 * 29 - 1) * 2
    with pytest.raises(ValueError, match="image_shape"):
        viz.save_filters(torch.rand(3, 10), tmp_path / "bad.png")


def test_reconstructions_sit_under_their_inputs(tmp_path):
    inputs, recon = torch.zeros(3, 4), torch.ones(3, 4)
    viz.save_reconstructions(inputs, recon, tmp_path / "r.png", image_shape=(2, 2), zoom=1)
    image = np.asarray(Image.open(tmp_path / "r.png"))
    assert image.shape == (5, 8)
    assert image[:2].max() == 0 and image[3:, :2].min() == 255


def test_loss_curve_with_and_without_matplotlib(tmp_path, monkeypatch):
    viz.save_loss_curve({"loss": [3.0, 2.0, 1.5]}, tmp_path / "a.png")
    assert Image.open(tmp_path / "a.png").format == "PNG"
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError("no matplotlib")
        return real_import(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    viz.save_loss_curve([3.0], tmp_path / "b.png")
    assert Image.open(tmp_path / "b.png").size == (500, 320)
    with pytest.raises(ValueError, match="losses"):
        viz.save_loss_curve([], tmp_path / "c.png")


def test_reconstructions_of_a_denoising_model_have_three_rows(tmp_path):
    clean, corrupted, recon = torch.zeros(3, 4), torch.full((3, 4), 0.5), torch.ones(3, 4)
    grid = viz.reconstructions_grid(clean, recon, corrupted, image_shape=(2, 2))
    assert grid.shape == (3 * 3 - 1, 3 * 3 - 1)  # three rows of three 2x2 images, 1-pixel gaps
    assert grid[:2].max() == 0 and (grid[3:5, :2] == 128).all() and grid[6:, :2].min() == 255
    assert viz.reconstructions_grid(clean, recon, image_shape=(2, 2)).shape == (5, 8)
    viz.save_reconstructions(clean, recon, tmp_path / "r.png", image_shape=(2, 2), zoom=1, corrupted=corrupted)
    assert np.asarray(Image.open(tmp_path / "r.png")).shape == (8, 8)
    with pytest.raises(ValueError, match="corrupted"):
        viz.reconstructions_grid(clean, recon, torch.zeros(2, 4), image_shape=(2, 2))


@pytest.mark.parametrize("bad", [dict(n_filters=-5), dict(n_filters=0), dict(zoom=0), dict(columns=0), dict(zoom=1.5)])
def test_save_filters_refuses_bad_sizes(tmp_path, bad):
    name = next(iter(bad))
    with pytest.raises(ValueError, match=name):
        viz.save_filters(torch.rand(4, 784), tmp_path / "f.png", **bad)
    assert not (tmp_path / "f.png").exists()


def test_model_refuses_an_integer_dtype():
    with pytest.raises(TypeError, match="dtype must be a floating-point"):
        nn.TiedAutoencoder(4, 3, dtype=torch.int64)


def test_patch_pair_layouts_put_the_neighbour_in_its_labelled_cell():
    patch = 2
    centres, neighbours = torch.full((8, 4), 0.5), torch.ones(8, 4)
    boards = viz.patch_pair_layouts(centres, neighbours, torch.arange(8), patch).reshape(8, 8, 8)
    cells = [(r, c) for r in range(3) for c in range(3) if (r, c) != (1, 1)]  # labels 0..7, row by row
    for label, (r, c) in enumerate(cells):
        board = boards[label]
        assert (board[3:5, 3:5] == 0.5).all()  # the centre patch
        assert (board[r * 3: r * 3 + 2, c * 3: c * 3 + 2] == 1.0).all()
        assert (board == 1.0).sum() == 4  # nowhere else
    with pytest.raises(ValueError, match="labels must be neighbour numbers"):
        viz.patch_pair_layouts(centres, neighbours, torch.full((8,), 8), patch)
    with pytest.raises(ValueError, match="patch = 3"):
        viz.patch_pair_layouts(centres, neighbours, torch.arange(8), 3)


def test_pretext_examples_show_inputs_above_their_labelled_views(tmp_path):
    x = torch.rand(5, 16)
    rotated = torch.rand(5, 16)
    path = tmp_path / "rotation.png"
    viz.save_pretext_examples("rotation", x, [rotated], torch.tensor([0, 1, 2, 3, 0]), path, image_shape=(4, 4))
    image = np.asarray(Image.open(path))
    # Two rows of five 12-pixel tiles (zoom 3), each with a caption strip beneath it.
    assert image.shape == (2 * (12 + 14), 5 * (12 + 4) - 4)
    expected = np.round(rotated[1].reshape(4, 4).numpy() * 255).repeat(3, 0).repeat(3, 1)
    assert np.abs(image[26:38, 16:28].astype(float) - expected).max() <= 1  # second view, second row
    with pytest.raises(ValueError, match="task must be one of"):
        viz.save_pretext_examples("colour", x, [rotated], torch.zeros(5, dtype=torch.int64), path, (4, 4))
    with pytest.raises(ValueError, match="patch"):
        viz.save_pretext_examples("relative", x, [x[:, :4], x[:, :4]], torch.zeros(5, dtype=torch.int64), path, (4, 4))
    with pytest.raises(ValueError, match="captions must give one text per image"):
        viz.labelled_grid(x, ["a"], image_shape=(4, 4))
    assert viz.PRETEXT_CAPTIONS["relative"](7) == "7: SE" and viz.PRETEXT_CAPTIONS["jigsaw"](3) == "perm 3"
