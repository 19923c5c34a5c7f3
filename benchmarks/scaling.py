"""Data-parallel scaling on this machine: samples/s of `sslkern.train.fit` in one process
with 2 threads against two processes (torchrun, gloo) with 1 thread each, at the same
global batch. Run from the repository root:

    python benchmarks/scaling.py --batches 64 256 --epochs 3 --rounds 2

Each configuration trains a denoising autoencoder 784-500 (25 % masking, SGD) on the
embedded MNIST training images and reports the mean samples/s of the epochs after the first
(the first warms up), and first the time of one gloo all-reduce of that model's gradient
between two processes. One process is timed on both of its step routes: the graph-free fused
step that fit takes there, and the autograd step (forced by a no-op hook) that two processes
take under DistributedDataParallel. The configurations run in turn, `--rounds` times, so a
busy spell of a shared machine lands on all of them. Prints one JSON line per run, with the
load average before and after.
"""
import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile

WORKER = r'''
import json, os, sys
import torch
from sslkern import data, nn, train
threads, batch, epochs, route = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
torch.set_num_threads(threads)
X = data.load("mnist-10k").X_train
model = nn.DenoisingAutoencoder(784, 500, seed=0)
if route == "autograd":
    model.weight.register_hook(lambda grad: grad)  # a hook: fit takes forward() + backward()
history = train.fit(model, X, epochs=epochs, batch_size=batch, lr=0.05, progress=False)
if int(os.environ.get("RANK", "0")) == 0:
    rates = history["samples_per_second"][1:]
    print("RESULT " + json.dumps({"samples_per_second": sum(rates) / len(rates), "world_size": history["world_size"]}))
'''

ALL_REDUCE = r'''
import json, time, torch, torch.distributed as dist
torch.set_num_threads(1)
dist.init_process_group("gloo")
grad = torch.zeros(500 * 784 + 500 + 784)  # a 784-500 model's gradient
for _ in range(10):
    dist.all_reduce(grad)
times = []
for _ in range(100):
    dist.barrier()
    started = time.perf_counter()
    dist.all_reduce(grad)
    times.append(time.perf_counter() - started)
times.sort()
if dist.get_rank() == 0:
    print("RESULT " + json.dumps({"all_reduce_values": grad.numel(), "median_ms": times[50] * 1e3,
                                 "p10_ms": times[10] * 1e3, "world_size": 2}))
dist.destroy_process_group()
'''


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(script, processes, threads, batch, epochs, route="graph-free"):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONWARNINGS="ignore")
    args = [str(script), str(threads), str(batch), str(epochs), route]
    if processes == 1:
        command = [sys.executable, *args]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={processes}", "--nnodes=1",
                   "--master-addr=127.0.0.1", f"--master-port={free_port()}", *args]
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=True, timeout=900).stdout
    result = json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:])
    return dict(result, processes=processes, threads=threads, batch_per_process=batch,
                global_batch=batch * processes, route=route if processes == 1 else "DDP autograd")


def run_all_reduce(script):
    """The gloo all-reduce of one step's gradient between two 1-thread processes (100 calls)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", "--nnodes=1",
               "--master-addr=127.0.0.1", f"--master-port={free_port()}", script]
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=True, timeout=300).stdout
    return json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 256], help="global batch sizes")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        script = os.path.join(scratch, "worker.py")
        with open(script, "w") as f:
            f.write(WORKER)
        print(json.dumps({"load_average": os.getloadavg()}), flush=True)
        all_reduce = os.path.join(scratch, "all_reduce.py")
        with open(all_reduce, "w") as f:
            f.write(ALL_REDUCE)
        print(json.dumps(run_all_reduce(all_reduce)), flush=True)
        for round_ in range(args.rounds):
            for batch in args.batches:
                for result in (run(script, 1, 2, batch, args.epochs),
                               run(script, 1, 2, batch, args.epochs, "autograd"),
                               run(script, 2, 1, batch // 2, args.epochs)):
                    print(json.dumps(dict(result, round=round_ + 1)), flush=True)
        print(json.dumps({"load_average": os.getloadavg()}), flush=True)


if __name__ == "__main__":
    main()
