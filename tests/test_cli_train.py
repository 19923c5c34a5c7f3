"""`sslkern train`: the run folder, resume, the stacked model, bad data."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from sslkern import cli, data

pytestmark = pytest.mark.usefixtures("restore_threads")


def train(*args):
    return cli.main(["train", "--no-progress", "--epochs", "1", "--hidden", "16", "--batch-size", "32", *args])


def test_train_writes_the_run_folder(small_mnist, tmp_path, capsys):
    out = tmp_path / "run"
    assert train("--data", str(small_mnist), "--out", str(out), "--backend", "reference", "--threads", "1") == 0
    assert "linear probe" in capsys.readouterr().out
    for picture in ("filters.png", "reconstructions.png", "loss.png"):
        assert Image.open(out / picture).format == "PNG"
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["backend"] == "reference" and metrics["device"] == "cpu"
    assert 0.0 < metrics["final_loss"] < 600
    assert 0.1 < metrics["probe_accuracy"] <= 1.0 and 0.1 < metrics["probe_accuracy_raw"] <= 1.0
    assert metrics["samples_per_second"] > 0 and metrics["threads"] == 1
    config = metrics["config"]
    assert config["model"] == "dae" and config["model_config"]["corruption"] == "mask"
    assert config["model_config"]["level"] == 0.25 and config["batch_size"] == 32
    assert metrics["data"]["n_train"] == 200 and metrics["history"]["steps"] == 7
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*"))

    # --resume continues the same run for one more epoch.
    assert train("--data", str(small_mnist), "--out", str(out), "--resume", "--epochs", "2") == 0
    resumed = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert resumed["history"]["loss"][0] == metrics["history"]["loss"][0]
    assert len(resumed["history"]["loss"]) == 2 and resumed["history"]["steps"] == 14


@pytest.mark.parametrize("model, extra, check", [
    ("stacked", ["--hidden", "16,8"], lambda c: [l["n_hidden"] for l in c["layers"]] == [16, 8]),
    ("cae", ["--contractive", "0.3"], lambda c: c["contractive"] == 0.3 and c["corruption"] == "none"),
    ("ae", ["--optimizer", "adam", "--lr", "0.001"], lambda c: c["corruption"] == "none" and c["contractive"] == 0),
    ("hcae", [], lambda c: c["contractive"] == 0.1 and c["higher_order"] == 0.1 and c["higher_order_samples"] == 1),
    ("sparse", ["--sparsity-kind", "l1", "--sparsity", "0.2"],
     lambda c: c["sparsity"] == 0.2 and c["sparsity_kind"] == "l1" and c["higher_order"] == 0),
    ("dae", ["--higher-order", "0.2", "--higher-order-samples", "2", "--higher-order-sigma", "0.3"],
     lambda c: (c["higher_order"], c["higher_order_samples"], c["higher_order_sigma"], c["corruption"])
     == (0.2, 2, 0.3, "mask")),
])
def test_other_models(model, extra, check, small_mnist, tmp_path):
    out = tmp_path / model
    assert train("--data", str(small_mnist), "--out", str(out), "--model", model, *extra) == 0
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert check(metrics["config"]["model_config"])


def test_a_penalty_combination_the_model_refuses_is_a_user_error(capsys, small_mnist):
    message = error_of(capsys, SystemExit, "--data", str(small_mnist), "--model", "sparse", "--sparsity-target", "1.5")
    assert "sparsity_target must be in (0, 1)" in message


def error_of(capsys, error, *args):
    """The message of the user error `sslkern train ARGS` reports: raised as `error`, or (the
    CLI answering user errors in one line) printed on stderr with exit status 2."""
    capsys.readouterr()
    try:
        status = train(*args)
    except error as exc:
        return str(exc)
    assert status == 2, f"expected a user error, got exit status {status}"
    return capsys.readouterr().err


def test_bad_data_file_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "x.npy"
    bad.write_text("not an array")
    message = error_of(capsys, data.DataError, "--data", str(bad), "--out", str(tmp_path / "run"))
    assert "not a readable numpy file" in message


def test_resume_needs_out(capsys):
    assert "--resume needs --out" in error_of(capsys, SystemExit, "--resume")


def test_progress_to_a_file_is_one_line_per_epoch(small_mnist, tmp_path, capfd):
    """Not a terminal (a log, CI, nohup): no progress-bar frames, one line per epoch."""
    out = tmp_path / "run"
    assert cli.main(["train", "--epochs", "2", "--hidden", "16", "--batch-size", "32", "--data", str(small_mnist),
                     "--out", str(out)]) == 0
    stdout, stderr = capfd.readouterr()
    assert "\r" not in stdout + stderr
    epochs = [line for line in stdout.splitlines() if line.startswith("epoch ")]
    assert [line.split("  ")[0] for line in epochs] == ["epoch 1/2", "epoch 2/2"]
    assert all("loss" in line and "samples/s" in line for line in epochs)


def test_progress_on_a_terminal_is_a_bar():
    from sslkern.train import loop

    class Terminal:
        def isatty(self):
            return True

    assert loop.Progress(True, stream=Terminal()).terminal
    assert not loop.Progress(False, stream=Terminal()).terminal
    assert not loop.Progress(True, stream=open(os.devnull, "w")).terminal


@pytest.mark.parametrize("kind, rows", [("dae", ["clean", "corrupted", "reconstruction"]),
                                        ("stacked", ["clean", "corrupted", "reconstruction"]),
                                        ("ae", ["clean", "reconstruction"])])
def test_the_reconstruction_picture_shows_what_the_model_saw(kind, rows):
    import torch

    from sslkern import viz
    from sslkern.commands import train as command

    args = _args()
    model = command.build_model(args, kind, 784)
    sample = data.load("mnist-10k").X_test[:10]
    got = command.reconstruction_rows(model, sample, torch.device("cpu"))
    assert list(got) == rows
    if "corrupted" in got:  # 25% masking: about a quarter of the ink zeroed, the rest kept
        ink, kept = sample != 0, got["corrupted"] == sample
        assert 0.15 < (~kept[ink]).float().mean() < 0.35 and torch.all(got["corrupted"][~kept] == 0)
    grid = viz.reconstructions_grid(got["clean"], got["reconstruction"], got.get("corrupted"), image_shape=(28, 28))
    assert grid.shape == (len(rows) * 29 - 1, 10 * 29 - 1)


def _args():
    import argparse

    from sslkern.commands import train as command

    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    return parser.parse_args(["--hidden", "16"])


def test_resume_on_other_data_needs_new_data(small_mnist, tmp_path, capsys):
    from sslkern import train as training

    X_train, y_train, X_test, y_test = data.load("mnist-10k")
    other = tmp_path / "other.npz"
    np.savez(other, x_train=X_train[200:400].numpy(), y_train=y_train[200:400].numpy(),
             x_test=X_test[:100].numpy(), y_test=y_test[:100].numpy())
    out = tmp_path / "run"
    assert train("--data", str(small_mnist), "--out", str(out)) == 0
    message = error_of(capsys, training.CheckpointError, "--data", str(other), "--out", str(out), "--resume",
                       "--epochs", "2")
    assert "other data" in message and "new-data" in message
    assert train("--data", str(other), "--out", str(out), "--resume", "--new-data", "--epochs", "2") == 0
    assert json.loads((out / "metrics.json").read_text(encoding="utf-8"))["history"]["steps"] == 14
    assert "--new-data goes with --resume" in error_of(capsys, SystemExit, "--new-data", "--out", str(out))


@pytest.mark.parametrize("model, extra", [("rotation", []), ("jigsaw", ["--grid", "2x2"]),
                                          ("relative", ["--patch", "7", "--gap", "1"])])
def test_pretext_models_train_on_the_embedded_data(model, extra, tmp_path, capsys):
    out = tmp_path / model
    assert train("--model", model, "--data", "mnist-10k", "--out", str(out), "--threads", "1", *extra) == 0
    assert "linear probe" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    config = metrics["config"]["model_config"]
    assert config["task"] == model and config["image_shape"] == [28, 28] and metrics["history"]["steps"] > 0
    assert 0.0 < metrics["final_loss"] < 10 and 0.1 < metrics["probe_accuracy"] <= 1.0
    assert Image.open(out / "filters.png").format == "PNG" and not (out / "reconstructions.png").exists()


def test_pretext_geometry_that_does_not_fit_is_a_usage_error(capsys):
    assert train("--model", "relative", "--patch", "10", "--data", "mnist-10k") == 2
    assert "--model relative" in capsys.readouterr().err
    assert train("--model", "rotation", "--grid", "3x3") == 2  # a flag the model would ignore
    assert "--grid is for --model jigsaw" in capsys.readouterr().err
