"""Data-parallel scaling on this machine: samples/s of `sslkern.train.fit` in one process
with 2 threads against two processes (torchrun, gloo) with 1 thread each, at the same
global batch. Run from the repository root:

    python benchmarks/scaling.py --batches 64 256 --epochs 3

Each configuration trains a denoising autoencoder 784-500 (25 % masking, SGD) on the
embedded MNIST training images and reports the mean samples/s of the epochs after the first
(the first warms up). One process is timed on both of its step routes: the graph-free fused
step that fit takes there, and the autograd step (forced by a no-op hook) that two processes
take under DistributedDataParallel. Prints one JSON line per configuration.
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 256], help="global batch sizes")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        script = os.path.join(scratch, "worker.py")
        with open(script, "w") as f:
            f.write(WORKER)
        print(json.dumps({"load_average": os.getloadavg()}), flush=True)
        for batch in args.batches:
            for result in (run(script, 1, 2, batch, args.epochs), run(script, 1, 2, batch, args.epochs, "autograd"),
                           run(script, 2, 1, batch // 2, args.epochs)):
                print(json.dumps(result), flush=True)
        print(json.dumps({"load_average": os.getloadavg()}), flush=True)


if __name__ == "__main__":
    main()
