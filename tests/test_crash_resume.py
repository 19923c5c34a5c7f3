"""Crash-safe training (CPU): a fit run killed with SIGKILL at random points and resumed ends
with the weights of an uninterrupted run, bit for bit, and no kill leaves a damaged file as
the newest checkpoint.

Every run is a subprocess (the same script, the same environment, one intra-op thread,
warmed up before it says "ready" so that the kill times fall into training, not imports).
The chain: a run killed by fault injection half-way through writing a checkpoint file (a
torn write at a seeded random step), then runs killed at seeded random times within the
measured training time (a checkpoint is written every step, so kills land mid-write too),
each resumed from what the previous one left, and a last resume to the end. After every
kill the newest checkpoint must read back intact; the end weights, step counter included,
must equal the uninterrupted run's.
"""
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from helpers import assert_same_state

train = pytest.importorskip("sslkern.train")
if not hasattr(train, "fit"):
    pytest.skip("sslkern.train.fit is not there yet", allow_module_level=True)

JOB = textwrap.dedent('''
    import os, sys, time
    import torch
    torch.set_num_threads(1)
    from sslkern import nn, train

    checkpoint_dir, out, resume = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
    tear_write = int(os.environ.get("TEAR_CHECKPOINT_WRITE", "0"))
    atomic_write_under_test = train.checkpoints.atomic_write
    if tear_write:  # fault injection: die half-way through writing checkpoint number `tear_write`
        import contextlib, io, signal
        real_atomic_write, writes = train.checkpoints.atomic_write, [0]

        @contextlib.contextmanager
        def tearing_atomic_write(path, mode="wb", **kwargs):
            writes[0] += 1
            if writes[0] < tear_write:
                with real_atomic_write(path, mode, **kwargs) as f:
                    yield f
                return
            buffer = io.BytesIO()
            yield buffer
            with real_atomic_write(path, mode, **kwargs) as f:
                data = buffer.getvalue()
                f.write(data[: len(data) // 2])
                f.flush()
                os.fsync(f.fileno())
                os.kill(os.getpid(), signal.SIGKILL)

        atomic_write_under_test = tearing_atomic_write

    g = torch.Generator().manual_seed(0)
    X = (torch.rand(240, 24, generator=g) > 0.6).float()

    def run(model, folder, resume):
        train.fit(model, X, epochs=5, batch_size=16, lr=0.02, optimizer="adam", checkpoint_dir=folder,
                  checkpoint_every=1, resume=resume, progress=False)

    import tempfile
    with tempfile.TemporaryDirectory() as scratch:  # warm-up: lazy imports, first calls
        warm = nn.DenoisingAutoencoder(24, 10, corruption="mask", level=0.3, contractive=0.05, seed=7)
        train.fit(warm, X[:32], epochs=1, batch_size=16, lr=0.02, optimizer="adam", checkpoint_dir=scratch,
                  checkpoint_every=1, progress=False)
    train.checkpoints.atomic_write = atomic_write_under_test
    model = nn.DenoisingAutoencoder(24, 10, corruption="mask", level=0.3, contractive=0.05, seed=7)
    print("ready", flush=True)
    started = time.perf_counter()
    run(model, checkpoint_dir, resume)
    print(f"trained {time.perf_counter() - started:.6f}", flush=True)
    torch.save(model.state_dict(), out + ".tmp")
    os.replace(out + ".tmp", out)
    os._exit(0)  # skip interpreter teardown (seconds with torch loaded)
''')
TOTAL_STEPS = 5 * 240 // 16  # epochs * batches per epoch in JOB
ENV = dict(os.environ, OMP_NUM_THREADS="1", SSLKERN_BACKEND="native", PYTHONWARNINGS="ignore")


def _start(script, checkpoint_dir, out, resume, **env):
    return subprocess.Popen([sys.executable, str(script), str(checkpoint_dir or ""), str(out), "1" if resume else "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(ENV, **env))


def _wait_ready(proc):
    line = proc.stdout.readline()
    assert line.strip() == "ready", f"job did not start: {line!r} {proc.stderr.read()}"


def _finish(proc):
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, f"job failed ({proc.returncode}):\n{err[-3000:]}"
    return out


def _assert_latest_checkpoint_intact(folder):
    paths = train.checkpoint_paths(folder)
    if not paths:
        return None
    checkpoint = train.load_checkpoint(paths[-1])  # raises CheckpointError if damaged
    return checkpoint["run"]["steps"]


def _assert_same_weights(got_path, want):
    assert_same_state(torch.load(got_path, weights_only=True), want)


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """The script, the uninterrupted run's weights and its training time in seconds."""
    folder = tmp_path_factory.mktemp("crash")
    script = folder / "job.py"
    script.write_text(JOB)
    reference = folder / "uninterrupted.pt"
    proc = _start(script, folder / "uninterrupted", reference, resume=False)
    _wait_ready(proc)
    seconds = float(_finish(proc).split()[-1])
    return script, torch.load(reference, weights_only=True), seconds


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL (POSIX)")
def test_killed_runs_resume_to_the_uninterrupted_weights(job, tmp_path):
    script, want, seconds = job
    rng = random.Random(20261128)
    checkpoints, out = tmp_path / "checkpoints", tmp_path / "resumed.pt"

    # 1. Torn write: killed half-way through writing checkpoint number `tear_at` (= its step).
    tear_at = rng.randint(5, 40)
    proc = _start(script, checkpoints, out, resume=False, TEAR_CHECKPOINT_WRITE=str(tear_at))
    _wait_ready(proc)
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL, "the fault injection did not fire"
    # The torn file is a hidden temporary, never a checkpoint: the newest is the write before.
    assert _assert_latest_checkpoint_intact(checkpoints) == tear_at - 1
    assert any(not train.CHECKPOINT_PATTERN.match(p.name) for p in checkpoints.iterdir()), \
        "expected the torn temporary file to be left behind"

    # 2. SIGKILL at random times, each run resuming from what the last one left.
    progress, killed = [tear_at - 1], 0
    for _ in range(2):
        proc = _start(script, checkpoints, out, resume=True)
        _wait_ready(proc)
        remaining = seconds * (TOTAL_STEPS - progress[-1]) / TOTAL_STEPS
        time.sleep(rng.uniform(0.05, 0.5) * remaining)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        killed += proc.returncode == -signal.SIGKILL  # else it finished first (a loaded machine)
        progress.append(_assert_latest_checkpoint_intact(checkpoints))
    assert killed, "every run finished before its kill: the delays are too long"
    assert progress == sorted(progress), f"a resumed run lost progress: steps {progress}"

    # 3. The last resume finishes; the weights (and the noise step counter) are bit-exact.
    _finish(_start(script, checkpoints, out, resume=True))
    _assert_same_weights(out, want)
