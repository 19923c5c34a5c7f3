"""sslkern.train.fit on real MNIST images: every model kind learns, checkpoints are atomic and
verified, resume is exact, damaged or foreign checkpoints are handled, two gloo processes."""
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import warnings

import pytest
import torch

from sslkern import data, nn, train
from sslkern.step import AutoencoderStep

N_IMAGES, BATCH = 192, 32  # 6 steps per epoch


@pytest.fixture(scope="module")
def images():
    return data.load("mnist-10k").X_train[:N_IMAGES]


def make(kind, seed=0):
    if kind == "ae":
        return nn.TiedAutoencoder(784, 24, seed=seed)
    if kind == "dae":
        return nn.DenoisingAutoencoder(784, 24, seed=seed)
    if kind == "cae":
        return nn.ContractiveAutoencoder(784, 24, seed=seed)
    return nn.StackedAutoencoder([784, 24, 12], corruption="mask", level=0.25, seed=seed)


def objective(model, X):
    model.eval()
    with torch.no_grad():
        value = model(X).item()
    model.train()
    return value


@pytest.mark.parametrize("kind", ["ae", "dae", "cae", "stacked"])
def test_every_model_kind_learns_on_mnist(kind, images):
    model = make(kind)
    before = objective(model, images)
    history = train.fit(model, images, epochs=1, batch_size=BATCH, lr=0.05, progress=False)
    stages = 2 if kind == "stacked" else 1
    assert history["stage"] == list(range(stages))
    assert history["steps"] == 6 * stages
    assert len(history["loss"]) == len(history["samples_per_second"]) == stages
    assert all(v > 0 for v in history["samples_per_second"])
    assert objective(model, images) < 0.8 * before


def test_training_is_reproducible_and_seed_dependent(images):
    runs = []
    for seed in (0, 0, 1):
        model = make("dae")
        train.fit(model, images, epochs=1, batch_size=BATCH, lr=0.05, seed=seed, progress=False)
        runs.append(model.weight.detach().clone())
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2])  # another data order


class Interrupted(Exception):
    pass


def interrupt_after(monkeypatch, n_steps):
    """Make fit raise after n_steps optimizer steps, as a killed process would stop."""
    make_step = train.steps.make_step

    def patched(*args, **kwargs):
        step = make_step(*args, **kwargs)

        def counted(xb):
            if counted.calls == n_steps:
                raise Interrupted
            counted.calls += 1
            return step(xb)
        counted.calls = 0
        return counted
    monkeypatch.setattr(train.steps, "make_step", patched)


@pytest.mark.parametrize("kind, optimizer", [("dae", "adam"), ("stacked", "momentum")])
def test_resume_reaches_the_uninterrupted_weights_bit_for_bit(kind, optimizer, images, tmp_path, monkeypatch):
    settings = dict(epochs=2, batch_size=BATCH, lr=0.01, optimizer=optimizer, progress=False)
    whole = make(kind)
    expected = train.fit(whole, images, **settings)

    interrupted = make(kind)
    with monkeypatch.context() as patch:
        interrupt_after(patch, 8)  # epoch 2, step 3 of 6 for dae; layer 1, epoch 2 for stacked
        with pytest.raises(Interrupted):
            train.fit(interrupted, images, checkpoint_dir=tmp_path, checkpoint_every=4, **settings)
    assert [os.path.basename(p) for p in train.checkpoint_paths(tmp_path)] == [
        "checkpoint-000000004.pt", "checkpoint-000000006.pt", "checkpoint-000000008.pt"][:len(train.checkpoint_paths(tmp_path))]

    resumed = make(kind)
    history = train.fit(resumed, images, checkpoint_dir=tmp_path, resume=True, **settings)
    for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b
    assert history["loss"] == expected["loss"]
    assert history["steps"] == expected["steps"]


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
@pytest.mark.parametrize("kind", ["dae", "cae", "stacked"])
def test_graph_free_steps_match_the_autograd_step(kind, optimizer, images, monkeypatch):
    """fit steps without an autograd graph (fused SGD, or value_and_grad feeding the
    optimizer, through sslkern.step.AutoencoderStep); a run through forward() and
    loss.backward() reaches the same weights."""
    def autograd_step(module, opt, fused_sgd):
        def step(xb):
            loss = module(xb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            return loss
        return step

    calls = []
    for method in ("sgd_step", "value_and_grad"):
        original = getattr(AutoencoderStep, method)
        monkeypatch.setattr(AutoencoderStep, method,
                            lambda self, *a, _f=original, _m=method: calls.append(_m) or _f(self, *a))
    graph_free = make(kind)
    history = train.fit(graph_free, images, epochs=2, batch_size=BATCH, lr=0.05, optimizer=optimizer,
                        progress=False)
    assert set(calls) == {"sgd_step" if optimizer == "sgd" else "value_and_grad"}
    assert len(calls) == history["steps"]
    monkeypatch.undo()
    monkeypatch.setattr(train.steps, "graph_free_step", autograd_step)
    reference = make(kind)
    want = train.fit(reference, images, epochs=2, batch_size=BATCH, lr=0.05, optimizer=optimizer,
                     progress=False)
    torch.testing.assert_close(history["loss"], want["loss"], rtol=1e-5, atol=0)
    for (name, got), expected in zip(graph_free.state_dict().items(), reference.state_dict().values()):
        if isinstance(got, torch.Tensor):
            torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6, msg=lambda m, n=name: f"{n}: {m}")
        else:
            assert got == expected, name  # the noise step counters


@pytest.mark.parametrize("setup", ["frozen visible bias", "forward hook", "tensor hook"])
def test_frozen_parameters_and_hooks_take_the_autograd_step(setup, images):
    """What the graph-free step would skip makes fit use forward() and loss.backward()."""
    model, seen = make("dae"), []
    if setup == "frozen visible bias":
        model.visible_bias.requires_grad_(False)
    elif setup == "forward hook":
        model.register_forward_hook(lambda *_: seen.append("forward"))
    else:
        model.weight.register_hook(lambda grad: seen.append("grad") or grad)
    frozen = model.visible_bias.detach().clone()
    history = train.fit(model, images, epochs=1, batch_size=BATCH, lr=0.05, progress=False)
    if setup == "frozen visible bias":
        assert torch.equal(model.visible_bias.detach(), frozen)
    else:
        assert len(seen) == history["steps"]


def test_checkpoints_are_atomic_and_load_with_weights_only(images, tmp_path):
    train.fit(make("dae"), images, epochs=2, batch_size=BATCH, lr=0.05, progress=False,
              checkpoint_dir=tmp_path, checkpoint_every=5)
    names = sorted(os.listdir(tmp_path))
    assert not [n for n in names if n.endswith(".tmp")]
    assert len(names) == train.KEEP_CHECKPOINTS  # older ones are pruned
    outer = torch.load(tmp_path / names[-1], weights_only=True)
    assert outer["format"] == "sslkern-checkpoint"
    checkpoint = train.load_checkpoint(tmp_path / names[-1])
    assert checkpoint["run"]["epoch"] == 2 and checkpoint["model"]["_extra_state"] == {"step": 12}


@pytest.fixture(scope="module")
def finished_run(images, tmp_path_factory):
    """An uninterrupted run's weights, and the checkpoints of the same run."""
    settings = dict(epochs=2, batch_size=BATCH, lr=0.05, progress=False)
    whole = make("dae")
    train.fit(whole, images, **settings)
    folder = tmp_path_factory.mktemp("checkpoints")
    train.fit(make("dae"), images, checkpoint_dir=folder, checkpoint_every=4, **settings)
    return whole.weight.detach(), folder, settings


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_damaged_newest_checkpoint_falls_back_to_the_previous_one(damage, finished_run, images, tmp_path):
    expected, folder, settings = finished_run
    shutil.copytree(folder, tmp_path, dirs_exist_ok=True)
    newest = train.checkpoint_paths(tmp_path)[-1]
    raw = bytearray(open(newest, "rb").read())
    if damage == "truncate":
        raw = raw[: len(raw) // 2]
    else:
        raw[len(raw) // 2] ^= 0xFF  # inside the payload: only the checksum can tell
    with open(newest, "wb") as f:
        f.write(raw)
    resumed = make("dae")
    with pytest.warns(UserWarning, match="corrupt|cannot be read"):
        history = train.fit(resumed, images, checkpoint_dir=tmp_path, resume=True, **settings)
    assert history["steps"] == 12
    assert torch.equal(resumed.weight, expected)


def test_all_checkpoints_damaged_is_an_error(tmp_path, images):
    (tmp_path / "checkpoint-000000001.pt").write_bytes(b"not a checkpoint")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(train.CheckpointError, match="no usable checkpoint"):
            train.fit(make("dae"), images, epochs=1, batch_size=BATCH, lr=0.05, progress=False,
                      checkpoint_dir=tmp_path, resume=True)


def test_checkpoint_of_another_model_shape_is_refused(images, tmp_path):
    train.fit(make("dae"), images[:64], epochs=1, batch_size=BATCH, lr=0.05, progress=False, checkpoint_dir=tmp_path)
    with pytest.raises(train.CheckpointError, match="n_hidden: checkpoint 24, model 25"):
        train.fit(nn.DenoisingAutoencoder(784, 25), images[:64], epochs=2, batch_size=BATCH, lr=0.05,
                  progress=False, checkpoint_dir=tmp_path, resume=True)
    with pytest.raises(train.CheckpointError, match="batch_size"):
        train.fit(make("dae"), images[:64], epochs=2, batch_size=16, lr=0.05, progress=False,
                  checkpoint_dir=tmp_path, resume=True)
    with pytest.raises(ValueError, match="already holds checkpoints"):
        train.fit(make("dae"), images[:64], epochs=1, batch_size=BATCH, lr=0.05, progress=False, checkpoint_dir=tmp_path)


def test_dataloader_input(images):
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, torch.zeros(len(images))),
                                         batch_size=BATCH)
    model = make("ae")
    before = objective(model, images)
    history = train.fit(model, loader, epochs=1, batch_size=BATCH, lr=0.05, progress=False)
    assert history["steps"] == 6 and objective(model, images) < before


@pytest.mark.parametrize("X, error, message", [
    (torch.ones(8, 784, dtype=torch.int64), TypeError, "floating point"),
    (torch.rand(8, 100), ValueError, r"\[N, 784\]"),
    (torch.rand(784), ValueError, r"\[N, 784\]"),
    ([[0.0] * 784], TypeError, "DataLoader"),
])
def test_bad_data_is_a_clear_error(X, error, message):
    with pytest.raises(error, match=message):
        train.fit(make("ae"), X, epochs=1, batch_size=4, lr=0.1, progress=False)


@pytest.mark.parametrize("kwargs, message", [
    ({"epochs": -1}, "epochs"), ({"batch_size": 0}, "batch_size"), ({"lr": 0.0}, "lr"),
    ({"optimizer": "rmsprop"}, "optimizer"), ({"resume": True}, "checkpoint_dir"),
    ({"cuda_graph": True}, "cuda_graph"),
])
def test_bad_settings_name_the_argument(kwargs, message):
    settings = dict(epochs=1, batch_size=4, lr=0.1, progress=False, device="cpu")
    settings.update(kwargs)
    with pytest.raises(ValueError, match=message):
        train.fit(make("ae"), torch.rand(8, 784), **settings)


DDP_SCRIPT = textwrap.dedent("""
    import os, sys, torch, torch.distributed as dist
    from sslkern import data, nn, train
    X = data.load("mnist-10k").X_train[:96]
    model = nn.DenoisingAutoencoder(784, 16, seed=3)
    history = train.fit(model, X, epochs=1, batch_size=16, lr=0.05, progress=False)
    rank = dist.get_rank()
    torch.save({"weight": model.weight.detach(), "history": history, "offset": model.noise_offset(X[:16]),
                "backend": dist.get_backend()}, f"{sys.argv[1]}/rank{rank}.pt")
    os._exit(0)  # not the interpreter's teardown, which gloo sometimes aborts (docs/training.md §3)
""")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_data_parallel_two_gloo_processes(tmp_path):
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", "--nnodes=1",
               "--master-addr=127.0.0.1", f"--master-port={free_port()}", str(script), str(tmp_path)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert all(r["backend"] == "gloo" for r in ranks)
    assert torch.equal(ranks[0]["weight"], ranks[1]["weight"])  # gradients were averaged
    assert not torch.equal(ranks[0]["weight"], nn.DenoisingAutoencoder(784, 16, seed=3).weight)
    assert ranks[0]["offset"] != ranks[1]["offset"]  # each rank draws its own noise
    assert ranks[0]["history"]["world_size"] == 2
    assert ranks[0]["history"]["steps"] == 3  # 96 images / 2 ranks / batch 16
    assert ranks[0]["history"]["loss"] == ranks[1]["history"]["loss"]  # reduced over ranks
