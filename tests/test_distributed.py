"""fit under torchrun with two gloo processes on the CPU (one intra-op thread each):

- both ranks end with the same weights;
- two processes with batch_size b reach, to rounding, the weights of one process with batch
  2b: the same global batches and the same noise (rank r draws its rows' counters of the
  global batch). Not bit for bit: the gradient of a global batch is summed in two halves and
  all-reduced instead of in one product, which rounds differently;
- workers killed under `torchrun --max-restarts` (half-way through a checkpoint file, at the
  wait for a checkpoint, between a step's forward and backward) are restarted with their
  peers and reach the uninterrupted run's weights bit for bit, under the static rendezvous
  and under c10d;
- a resume in another number of processes is refused with a message that says why.

Faults are injected at chosen points, never timed. Every run is bounded by a timeout.
"""
import os
import signal
import socket
import subprocess
import sys
import textwrap

import pytest
import torch
from helpers import assert_same_state

from sslkern import nn, train

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="needs torch.distributed")

JOB = textwrap.dedent('''
    import contextlib, io, os, signal, sys
    import torch
    import torch.distributed as dist
    torch.set_num_threads(1)
    from sslkern import nn, train

    out, checkpoints = sys.argv[1], sys.argv[2]
    rank, restart = int(os.environ["RANK"]), int(os.environ["TORCHELASTIC_RESTART_COUNT"])

    # FAULTS = "round:rank:where:n,...": in restart round `round`, rank `rank` kills itself
    # the n-th time it reaches `where`: "write" (half-way through writing a checkpoint file),
    # "agree" (at a checkpoint: rank 0 after writing it, before the others hear of it; the
    # others while waiting for it), "step" (between a step's forward and backward).
    faults = {}
    for spec in filter(None, os.environ.get("FAULTS", "").split(",")):
        at_round, at_rank, where, n = spec.split(":")
        if int(at_round) == restart and int(at_rank) == rank:
            faults[where] = int(n)
    reached = dict.fromkeys(faults, 0)

    def reach(where):
        if where in faults:
            reached[where] += 1
            if reached[where] == faults[where]:
                os.kill(os.getpid(), signal.SIGKILL)

    real_atomic_write, real_on_rank_zero = train.checkpoints.atomic_write, train.checkpoints.on_rank_zero

    @contextlib.contextmanager
    def tearing_atomic_write(path, mode="wb", **kwargs):
        buffer = io.BytesIO()
        yield buffer
        with real_atomic_write(path, mode, **kwargs) as f:
            data = buffer.getvalue()
            f.write(data[: len(data) // 2])
            f.flush()
            reach("write")
            f.write(data[len(data) // 2:])

    def on_rank_zero(decide, rank, world_size):  # the checkpoint writer's
        def decide_then_reach():
            value = decide()
            reach("agree")
            return value

        if rank != 0:
            reach("agree")
        return real_on_rank_zero(decide_then_reach, rank, world_size)

    train.checkpoints.atomic_write, train.checkpoints.on_rank_zero = tearing_atomic_write, on_rank_zero

    g = torch.Generator().manual_seed(0)
    X = (torch.rand(192, 48, generator=g) > 0.6).double()
    model = nn.DenoisingAutoencoder(48, 12, level=0.3, contractive=0.05, seed=7, dtype=torch.float64)
    model.register_forward_hook(lambda *args: reach("step"))  # after the forward, before the backward
    history = train.fit(model, X, epochs=3, batch_size=8, lr=0.01, optimizer="adam", checkpoint_dir=checkpoints,
                        checkpoint_every=2, resume=True, progress=False)
    torch.save({"model": model.state_dict(), "history": history, "restart": restart}, f"{out}/rank{rank}.pt")
    # Skip the interpreter's teardown: it is slow with torch loaded, and in 2 of 25 runs here it
    # aborted ("terminate called without an active exception") after everything was saved.
    os._exit(0)
''')
N, D, H, BATCH, EPOCHS = 192, 48, 12, 8, 3
STEPS = EPOCHS * N // (2 * BATCH)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(folder, checkpoints, max_restarts=0, faults="", rendezvous="static"):
    """Runs JOB in two processes; returns each rank's saved result. rendezvous: "static"
    (--master-addr/--master-port, torchrun's default) or "c10d"."""
    script = folder / "job.py"
    script.write_text(JOB)
    env = dict(os.environ, OMP_NUM_THREADS="1", SSLKERN_BACKEND="native", PYTHONWARNINGS="ignore", FAULTS=faults)
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", "--nnodes=1",
               f"--max-restarts={max_restarts}",
               *(["--master-addr=127.0.0.1", f"--master-port={free_port()}"] if rendezvous == "static" else
                 ["--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{free_port()}"]),
               str(script), str(folder), str(checkpoints)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=150)
    (folder / "torchrun.log").write_text(result.stderr)
    assert result.returncode == 0, f"torchrun failed ({result.returncode}), log in {folder}:\n{result.stderr[-4000:]}"
    return [torch.load(folder / f"rank{r}.pt", weights_only=True) for r in (0, 1)]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("uninterrupted")
    return torchrun(folder, folder / "checkpoints"), folder / "checkpoints"


def data_and_model():
    g = torch.Generator().manual_seed(0)
    X = (torch.rand(N, D, generator=g) > 0.6).double()
    return X, nn.DenoisingAutoencoder(D, H, level=0.3, contractive=0.05, seed=7, dtype=torch.float64)


def test_ranks_end_with_the_same_weights(uninterrupted):
    (rank0, rank1), _ = uninterrupted
    assert_same_state(rank1["model"], rank0["model"])
    assert rank0["history"]["loss"] == rank1["history"]["loss"]  # reduced over the ranks
    assert rank0["history"]["steps"] == STEPS and rank0["history"]["world_size"] == 2
    assert rank0["model"]["_extra_state"] == {"step": STEPS}


def test_two_processes_match_one_process_with_the_global_batch(uninterrupted):
    (rank0, _), _ = uninterrupted
    X, model = data_and_model()
    history = train.fit(model, X, epochs=EPOCHS, batch_size=2 * BATCH, lr=0.01, optimizer="adam", progress=False)
    assert history["steps"] == STEPS
    for key, value in model.state_dict().items():
        if isinstance(value, torch.Tensor):
            torch.testing.assert_close(rank0["model"][key], value, rtol=1e-9, atol=1e-12, msg=key)
    torch.testing.assert_close(rank0["history"]["loss"], history["loss"], rtol=1e-9, atol=0)
    # ... and the comparison can fail: another noise stream moves the weights far beyond rounding.
    _, other = data_and_model()
    other.seed = 8
    train.fit(other, X, epochs=EPOCHS, batch_size=2 * BATCH, lr=0.01, optimizer="adam", progress=False)
    assert not torch.allclose(rank0["model"]["weight"], other.weight.detach(), rtol=1e-6, atol=1e-9)


def test_resume_in_another_number_of_processes_is_refused(uninterrupted):
    _, checkpoints = uninterrupted
    X, model = data_and_model()
    with pytest.raises(train.CheckpointError, match=r"world_size=2 in the checkpoint, 1 now"):
        train.fit(model, X, epochs=EPOCHS, batch_size=BATCH, lr=0.01, optimizer="adam", checkpoint_dir=checkpoints,
                  resume=True, progress=False)
    assert model.step == 0  # refused before training


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL (POSIX)")
def test_killed_workers_restart_and_reach_the_uninterrupted_weights(uninterrupted, tmp_path):
    (want, _), _ = uninterrupted
    # Round 0: rank 0 dies half-way through its 3rd checkpoint file. Round 1: rank 1 dies
    # waiting for rank 0's 2nd checkpoint. Round 2: rank 0 dies after writing its 2nd
    # checkpoint, before the others hear of it. Round 3: rank 1 dies in its 4th step. Round 4 ends.
    faults = "0:0:write:3,1:1:agree:2,2:0:agree:2,3:1:step:4"
    checkpoints = tmp_path / "checkpoints"
    got = torchrun(tmp_path, checkpoints, max_restarts=4, faults=faults)
    assert [r["restart"] for r in got] == [4, 4], "every fault should have cost one restart"
    for rank in got:
        assert_same_state(rank["model"], want["model"])
    assert got[0]["history"]["steps"] == STEPS
    assert all(train.CHECKPOINT_PATTERN.match(p.name) for p in checkpoints.iterdir()), \
        "a torn temporary file was left behind"


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL (POSIX)")
def test_a_restart_under_the_c10d_rendezvous_reaches_the_uninterrupted_weights(uninterrupted, tmp_path):
    (want, _), _ = uninterrupted
    got = torchrun(tmp_path, tmp_path / "checkpoints", max_restarts=1, faults="0:1:step:9", rendezvous="c10d")
    assert [r["restart"] for r in got] == [1, 1]
    for rank in got:
        assert_same_state(rank["model"], want["model"])
