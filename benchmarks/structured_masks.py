"""The training step with the structured masks against the elementwise mask, in one process.

    python benchmarks/structured_masks.py [--threads 1] [--clock cpu]

Times AutoencoderStep.sgd_step of a tied sigmoid autoencoder (D = 784 as 28 x 28 images, H =
500) with 25 % masking (the one-call C++ step on the CPU), a block hole of a quarter of the
image, 4 x 4 patches dropped at 25 %, and the block hole with hole_weight 2 (the structured
routes go pass by pass: the mask drawn per image in PyTorch). Interleaved, medians in ms.
"""
import argparse

import torch

import sslkern
from sslkern import bench
from sslkern.step import AutoencoderStep

CASES = {
    "mask 0.25": dict(corruption="mask", level=0.25),
    "block 0.25": dict(corruption="block", level=0.25, image_shape=(28, 28)),
    "patch 4x4 0.25": dict(corruption="patch", level=0.25, image_shape=(28, 28), patch=4),
    "block 0.25, hole_weight 2": dict(corruption="block", level=0.25, image_shape=(28, 28), hole_weight=2.0),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--clock", default="cpu", choices=["cpu", "wall"])
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"# {bench.machine()}")
    print("| batch | corruption | median ms | × mask |\n|---:|---|---:|---:|")
    for batch in args.batches:
        x = torch.rand(batch, 784)
        steps = {name: AutoencoderStep(sslkern.nn.TiedAutoencoder(784, 500, **kw)) for name, kw in CASES.items()}
        timings = bench.measure_interleaved({name: (lambda s=s: s.sgd_step(x, 0.01)) for name, s in steps.items()},
                                            warmup=3, steps=args.steps, clock=args.clock)
        base = timings["mask 0.25"].median_ms
        for name, t in timings.items():
            print(f"| {batch} | {name} | {t.median_ms:.2f} | {t.median_ms / base:.2f} |")


if __name__ == "__main__":
    main()
