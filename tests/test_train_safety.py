"""fit never harms the caller's model: every argument, the device, the checkpoint folder and
the resume point are checked before the model is moved or changed; NumPy numbers work;
checkpoint write errors are clear and leave the previous checkpoint intact; stale temporaries
are removed; a resume on other data is refused unless asked for."""
import contextlib
import errno
import os
import shutil

import numpy as np
import pytest
import torch

from sslkern import data, nn, train
from sslkern.train import checkpoints, steps

BATCH = 32


@pytest.fixture(scope="module")
def images():
    return data.load("mnist-10k").X_train[:128]


def make():
    return nn.DenoisingAutoencoder(784, 16, seed=1)


def snapshot(model):
    return {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in model.state_dict().items()}


def assert_untouched(model, before, moves):
    assert not moves, f"fit moved the model ({moves}) before failing"
    assert model.weight.device.type == "cpu"
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]) if isinstance(value, torch.Tensor) else value == before[key], key


@pytest.fixture
def guarded(monkeypatch):
    """A model whose .to() calls are recorded, and its state before fit."""
    model = make()
    moves = []
    real_to = model.to
    monkeypatch.setattr(model, "to", lambda *a, **k: moves.append((a, k)) or real_to(*a, **k))
    return model, snapshot(model), moves


def fit(model, X, **kwargs):
    settings = dict(epochs=1, batch_size=BATCH, lr=0.05, progress=False)
    settings.update(kwargs)
    return train.fit(model, X, **settings)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"device": "meta"}, ValueError, "meta"),
    ({"device": "nonsense"}, ValueError, "device"),
    ({"seed": "a"}, ValueError, "seed"),
    ({"seed": -1}, ValueError, "seed"),
    ({"seed": 2**64}, ValueError, "seed"),
    ({"seed": 1.5}, ValueError, "seed"),
    ({"epochs": 1.5}, ValueError, "epochs"),
    ({"resume": "yes"}, ValueError, "resume"),
    ({"checkpoint_dir": 3}, TypeError, "checkpoint_dir"),
    ({"optimizer": ["sgd"]}, ValueError, "optimizer"),
    ({"batch_size": 2**32 // 784 + 1}, ValueError, r"global batch \(1 processes × batch_size \d+ × 784 features × 1 draws\)"),
])
def test_bad_arguments_fail_before_the_model_is_touched(kwargs, error, message, guarded, images):
    model, before, moves = guarded
    with pytest.raises(error, match=message):
        fit(model, images, **kwargs)
    assert_untouched(model, before, moves)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_an_unavailable_device_fails_before_the_model_is_touched(guarded, images):
    model, before, moves = guarded
    with pytest.raises(ValueError, match="not available"):
        fit(model, images, device="cuda")
    assert_untouched(model, before, moves)


@pytest.mark.parametrize("X", [torch.rand(8, 100), torch.ones(8, 784, dtype=torch.int64), "images"])
def test_bad_data_fails_before_the_model_is_touched(X, guarded):
    model, before, moves = guarded
    with pytest.raises((TypeError, ValueError)):
        fit(model, X, device="cpu")
    assert_untouched(model, before, moves)


def test_an_unusable_checkpoint_folder_fails_before_the_model_is_touched(guarded, images, tmp_path):
    model, before, moves = guarded
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(train.CheckpointError, match=f"{blocker}.*(exists|Not a directory)"):
        fit(model, images, checkpoint_dir=blocker)
    with pytest.raises(train.CheckpointError, match="Not a directory"):
        fit(model, images, checkpoint_dir=blocker / "below")
    assert_untouched(model, before, moves)


def test_the_folder_probe_leaves_nothing_behind(images, tmp_path):
    fit(make(), images, checkpoint_dir=tmp_path / "run")
    assert sorted(os.listdir(tmp_path / "run")) == ["checkpoint-000000004.pt"]


def test_numpy_numbers_are_accepted(images, tmp_path):
    got = make()
    history = fit(got, images, epochs=np.int64(2), batch_size=np.int64(BATCH), lr=np.float32(0.05),
                  seed=np.uint64(3), checkpoint_every=np.int32(3), checkpoint_dir=tmp_path)
    want = make()
    expected = fit(want, images, epochs=2, batch_size=BATCH, lr=float(np.float32(0.05)), seed=3)
    assert history["loss"] == expected["loss"] and history["steps"] == 8
    assert torch.equal(got.weight, want.weight)
    settings = train.load_checkpoint(train.checkpoint_paths(tmp_path)[-1])["settings"]
    assert type(settings["epochs"]) is int and type(settings["lr"]) is float and type(settings["seed"]) is int


# ---------------------------------------------------------------------------------------------
# Checkpoint errors


def failing_writes(monkeypatch, after, error):
    """checkpoints.atomic_write fails (as the OS would) from write number `after` + 1 on."""
    real, calls = checkpoints.atomic_write, [0]

    @contextlib.contextmanager
    def writer(path, mode="wb", **kwargs):
        calls[0] += 1
        with real(path, mode, **kwargs) as f:
            if calls[0] > after:
                f.write(b"half a checkpoint")
                raise OSError(error, os.strerror(error))
            yield f
    monkeypatch.setattr(checkpoints, "atomic_write", writer)


@pytest.mark.parametrize("error", [errno.ENOSPC, errno.EROFS, errno.EACCES])
def test_a_failing_checkpoint_write_is_a_clear_error_and_keeps_the_previous_one(error, images, tmp_path, monkeypatch):
    failing_writes(monkeypatch, after=2, error=error)
    with pytest.raises(train.CheckpointError) as info:
        fit(make(), images, epochs=2, checkpoint_dir=tmp_path, checkpoint_every=2)
    message = str(info.value)
    assert str(tmp_path / "checkpoint-000000006.pt") in message and os.strerror(error) in message
    assert isinstance(info.value.__cause__, OSError)
    assert [os.path.basename(p) for p in train.checkpoint_paths(tmp_path)] == [
        "checkpoint-000000002.pt", "checkpoint-000000004.pt"]
    assert train.load_checkpoint(train.checkpoint_paths(tmp_path)[-1])["run"]["steps"] == 4  # intact
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]


def test_a_vanished_checkpoint_folder_is_a_clear_error(images, tmp_path, monkeypatch):
    folder = tmp_path / "checkpoints"
    make_step = steps.make_step

    def removing_the_folder(*args, **kwargs):
        step = make_step(*args, **kwargs)

        def wrapped(xb):
            if wrapped.calls == 3:
                shutil.rmtree(folder)
            wrapped.calls += 1
            return step(xb)
        wrapped.calls = 0
        return wrapped
    monkeypatch.setattr(steps, "make_step", removing_the_folder)
    with pytest.raises(train.CheckpointError, match=f"{folder}.*No such file or directory"):
        fit(make(), images, checkpoint_dir=folder, checkpoint_every=2)
    assert not folder.exists()  # not silently re-created


@pytest.mark.parametrize("resume", [False, True])
def test_stale_temporaries_of_killed_writes_are_removed(resume, images, tmp_path):
    if resume:
        fit(make(), images, checkpoint_dir=tmp_path, checkpoint_every=2)
    stale = [tmp_path / ".checkpoint-000000006.pt.k1ll3d.tmp", tmp_path / ".checkpoint-000000008.pt.x.tmp"]
    for path in stale:
        path.write_bytes(b"torn")
    (tmp_path / "notes.txt").write_text("mine")
    fit(make(), images, epochs=2, checkpoint_dir=tmp_path, resume=resume)
    assert not any(path.exists() for path in stale)
    assert (tmp_path / "notes.txt").read_text(encoding="utf-8") == "mine"


# ---------------------------------------------------------------------------------------------
# Resume on other data


def test_resume_refuses_other_data_unless_asked(images, tmp_path, monkeypatch):
    first, other = images[:64], images[64:128]
    fit(make(), first, checkpoint_dir=tmp_path)
    saved = train.load_checkpoint(train.checkpoint_paths(tmp_path)[-1])["settings"]["data"]
    assert saved["rows"] == 64 and len(saved["fingerprint"]) == 32

    model = make()
    before, moves = snapshot(model), []
    real_to = model.to
    monkeypatch.setattr(model, "to", lambda *a, **k: moves.append(a) or real_to(*a, **k))
    with pytest.raises(train.CheckpointError, match="other data.*fingerprint.*resume='new-data'"):
        fit(model, other, epochs=2, checkpoint_dir=tmp_path, resume=True)
    with pytest.raises(train.CheckpointError, match="other data.*rows 64.*96"):
        fit(model, images[:96], epochs=2, checkpoint_dir=tmp_path, resume=True)
    assert_untouched(model, before, moves)

    history = fit(make(), first.clone(), epochs=2, checkpoint_dir=tmp_path, resume=True)  # same data: fine
    assert history["steps"] == 4
    shutil.rmtree(tmp_path)
    fit(make(), first, checkpoint_dir=tmp_path)
    history = fit(make(), other, epochs=2, checkpoint_dir=tmp_path, resume="new-data")
    assert history["steps"] == 4 and len(history["loss"]) == 2


def test_the_fingerprint_is_cheap_and_sees_a_changed_row(images):
    from sslkern.train.settings import data_identity

    base = data_identity(images)
    assert data_identity(images.clone()) == base
    changed = images.clone()
    changed[0, 300] += 0.5  # row 0 is always in the sample
    assert data_identity(changed)["fingerprint"] != base["fingerprint"]
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images), batch_size=BATCH)
    assert data_identity(loader) == {"rows": 128, "fingerprint": None}
