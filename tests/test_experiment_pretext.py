"""sslkern train --experiment pretext: every representation probed on the held-out digits and
after pretraining on the digits 0-4 only; the tables, JSON and pictures it writes."""
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from sslkern import cli, data
from sslkern.commands import train as train_command


@pytest.fixture(scope="module")
def small_mnist(tmp_path_factory):
    """300 real MNIST images (200 to train, 100 to test), every digit in both parts."""
    X_train, y_train, X_test, y_test = data.load("mnist-10k")
    assert set(y_train[:200].tolist()) == set(y_test[:100].tolist()) == set(range(10))
    path = tmp_path_factory.mktemp("data") / "mnist-300.npz"
    np.savez(path, x_train=X_train[:200].numpy(), y_train=y_train[:200].numpy(),
             x_test=X_test[:100].numpy(), y_test=y_test[:100].numpy())
    return path


@pytest.fixture(autouse=True)
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def experiment(data_path, out):
    return cli.main(["train", "--experiment", "pretext", "--no-progress", "--epochs", "1", "--hidden", "16",
                     "--batch-size", "32", "--threads", "1", "--data", str(data_path), "--out", str(out)])


def test_pretext_experiment_writes_both_tables_and_the_pictures(small_mnist, tmp_path):
    out = tmp_path / "pretext"
    assert experiment(small_mnist, out) == 0
    result = json.loads((out / "experiment.json").read_text(encoding="utf-8"))
    labels = ["raw pixels"] + [run[0] for run in train_command.PRETEXT_EXPERIMENT_RUNS]
    inpainting = train_command.PRETEXT_EXPERIMENT_RUNS[4][0]
    assert inpainting.startswith("inpainting")
    _, _, _, y_test = data.load(str(small_mnist))
    for part, n_test in (("heldout", 100), ("transfer", int((y_test >= 5).sum()))):
        runs = result[part] if part == "heldout" else result[part]["runs"]
        assert [r["representation"] for r in runs] == labels
        for r in runs:
            if r["representation"] == inpainting and not train_command.inpainting_available():
                assert r["probe_accuracy"] is None and "not available" in r["note"]
                continue
            p = r["probe_accuracy"]
            assert 0.2 < p <= 1.0 and r["n_test"] == n_test
            assert r["standard_error"] == pytest.approx(math.sqrt(p * (1 - p) / n_test))
    transfer = result["transfer"]
    assert transfer["source_digits"] == [0, 1, 2, 3, 4] and transfer["target_digits"] == [5, 6, 7, 8, 9]
    assert transfer["n_probe_test"] == int((y_test >= 5).sum())
    # Each trained transfer model saw only the 0-4 training images.
    transfer_metrics = json.loads((out / "transfer" / "rotation" / "metrics.json").read_text(encoding="utf-8"))
    assert transfer_metrics["data"]["n_train"] == transfer["n_pretrain"] < 200
    assert transfer_metrics["data"]["n_probe_train"] == transfer["n_probe_train"]

    report = (out / "experiment.md").read_text(encoding="utf-8")
    assert "## Linear probe on the 100 held-out images" in report and "## Transfer" in report
    assert report.count("| raw pixels |") == 2 and report.count("| relative location") == 2 and "±" in report
    expected = {"rotation", "jigsaw", "relative"} | ({"inpainting"} if train_command.inpainting_available() else set())
    assert sorted(result["pictures"]) == sorted(f"pretext_{task}.png" for task in expected)
    for picture in result["pictures"]:
        assert Image.open(out / picture).format == "PNG"
    assert Image.open(out / "pretext_rotation.png").width > Image.open(out / "pretext_rotation.png").height
    assert not list(out.rglob("*.tmp"))


def test_transfer_split_is_disjoint_by_label():
    dataset = data.load("mnist-10k")
    source, target = train_command.transfer_split(dataset)
    assert set(source.y_train.tolist()) == set(source.y_test.tolist()) == {0, 1, 2, 3, 4}
    assert set(target.y_train.tolist()) == set(target.y_test.tolist()) == {0, 1, 2, 3, 4}  # 5-9, shifted
    high_train, high_test = dataset.y_train >= 5, dataset.y_test >= 5
    assert torch.equal(target.X_train, dataset.X_train[high_train])
    assert torch.equal(target.y_train + 5, dataset.y_train[high_train])
    assert torch.equal(target.X_test, dataset.X_test[high_test])
    assert torch.equal(source.X_train, dataset.X_train[~high_train])
    assert len(source.X_train) + len(target.X_train) == len(dataset.X_train)
    assert source.image_shape == target.image_shape == (28, 28)


def test_pretext_experiment_needs_labelled_images_of_both_halves(small_mnist, tmp_path, capsys):
    X_train, y_train, X_test, y_test = data.load(str(small_mnist))
    low = tmp_path / "low.npz"
    keep, keep_test = y_train < 5, y_test < 5
    np.savez(low, x_train=X_train[keep].numpy(), y_train=y_train[keep].numpy(),
             x_test=X_test[keep_test].numpy(), y_test=y_test[keep_test].numpy())
    assert experiment(low, tmp_path / "out") == 2
    assert "transfer split" in capsys.readouterr().err
    unlabelled = tmp_path / "unlabelled.npy"
    np.save(unlabelled, X_train.numpy())
    assert experiment(unlabelled, tmp_path / "out2") == 2
    assert "needs labelled images" in capsys.readouterr().err


def test_inpainting_is_built_in_one_place(monkeypatch):
    """The inpainting model: the tied autoencoder with the block mask and the hole weight."""
    built = {}
    monkeypatch.setattr("sslkern.nn.TiedAutoencoder", lambda *args, **kwargs: built.update(args=args, kwargs=kwargs))
    args = cli.build_parser().parse_args(["train", "--hidden", "32", "--seed", "3"])
    train_command.build_inpainting_model(args, 784, (28, 28))
    assert built["args"] == (784, 32)
    assert built["kwargs"] == {"corruption": "block", "level": 0.25, "hole_weight": 2.0, "image_shape": (28, 28),
                               "seed": 3}


def test_the_inpainting_row_and_picture_when_the_build_has_them(small_mnist, tmp_path, monkeypatch):
    """The row and the picture are wired in whether or not this build has the block mask: a
    masking autoencoder stands in for the inpainting model."""
    from sslkern import nn

    monkeypatch.setitem(train_command.INPAINTING, "corruption", "mask")
    monkeypatch.setattr(train_command, "build_inpainting_model",
                        lambda args, n_visible, image_shape: nn.TiedAutoencoder(
                            n_visible, args.hidden[0], corruption="mask", level=0.25, seed=args.seed))
    out = tmp_path / "pretext"
    assert experiment(small_mnist, out) == 0
    result = json.loads((out / "experiment.json").read_text(encoding="utf-8"))
    for runs in (result["heldout"], result["transfer"]["runs"]):
        row = next(r for r in runs if r["representation"].startswith("inpainting"))
        assert 0.2 < row["probe_accuracy"] <= 1.0 and "note" not in row
    assert "pretext_inpainting.png" in result["pictures"]
    # Three rows of ten digits: clean, holed, reconstructed (zoom 2).
    assert Image.open(out / "pretext_inpainting.png").size == (2 * (10 * 29 - 1), 2 * (3 * 29 - 1))
    assert "not available" not in (out / "experiment.md").read_text(encoding="utf-8")
