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

pytestmark = pytest.mark.usefixtures("restore_threads")


def experiment(data_path, out):
    return cli.main(["train", "--experiment", "pretext", "--no-progress", "--epochs", "1", "--hidden", "16",
                     "--batch-size", "32", "--threads", "1", "--data", str(data_path), "--out", str(out)])


def test_pretext_experiment_writes_both_tables_and_the_pictures(small_mnist, tmp_path):
    out = tmp_path / "pretext"
    assert experiment(small_mnist, out) == 0
    result = json.loads((out / "experiment.json").read_text(encoding="utf-8"))
    labels = ["raw pixels"] + [run[0] for run in train_command.PRETEXT_EXPERIMENT_RUNS]
    _, _, _, y_test = data.load(str(small_mnist))
    for part, n_test in (("heldout", 100), ("transfer", int((y_test >= 5).sum()))):
        runs = result[part] if part == "heldout" else result[part]["runs"]
        assert [r["representation"] for r in runs] == labels
        for r in runs:
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
    assert sorted(result["pictures"]) == sorted(f"pretext_{task}.png" for task in ("rotation", "jigsaw", "relative",
                                                                                   "inpainting"))
    for picture in result["pictures"]:
        assert Image.open(out / picture).format == "PNG"
    assert Image.open(out / "pretext_rotation.png").width > Image.open(out / "pretext_rotation.png").height
    # Inpainting: three rows of ten digits (clean, holed, reconstructed; zoom 2), the model
    # the tied autoencoder with one block hole and the hole weighted.
    assert Image.open(out / "pretext_inpainting.png").size == (2 * (10 * 29 - 1), 2 * (3 * 29 - 1))
    inpainting = json.loads((out / "heldout" / "inpainting" / "metrics.json").read_text(encoding="utf-8"))
    config = inpainting["config"]["model_config"]
    assert (config["corruption"], config["level"], config["hole_weight"]) == ("block", 0.25, 2.0)
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
