"""Time one training step (forward, backward, SGD update) of a denoising + contractive
autoencoder: PyTorch eager, torch.compile, the autograd-Jacobian peer, every available
sslkern backend on each of its three routes (autograd, value_and_grad, the fused sgd_step),
and the five matrix products alone (the floor). Prints a Markdown table;
optionally writes JSON and a PNG plot. With --pretext BxHxW it times the pretext generators
against a plain copy of the same batch instead."""
import shlex
import sys

from ..kinds import PRECISIONS
from . import _args

DEFAULT_SHAPES = ["32x784x512", "256x784x512", "1024x784x512"]


def add_arguments(parser):
    parser.add_argument("--shapes", nargs="+", type=_args.shape, default=DEFAULT_SHAPES, metavar="BxDxH",
                        help="batch x visible x hidden (default: %(default)s)")
    parser.add_argument("--device", type=_args.device, default=None,
                        help="cpu, cuda or cuda:N (default: cuda when available)")
    parser.add_argument("--steps", type=_args.positive_int, default=100, help="timed steps per variant (median)")
    parser.add_argument("--warmup", type=_args.nonnegative_int, default=10, help="untimed steps first")
    parser.add_argument("--max-seconds", type=_args.finite_positive_float, default=20.0,
                        help="time budget per variant at each shape (each still gets at least 5 steps)")
    parser.add_argument("--variants", nargs="+", type=_args.bench_variant, default=None,
                        help="subset: products eager compile jacobian sslkern sslkern[native] value_and_grad sgd_step ...")
    parser.add_argument("--corruption", default="mask", choices=["none", "mask"])
    parser.add_argument("--level", type=_args.probability, default=0.25, help="masking probability")
    parser.add_argument("--contractive", type=_args.finite_nonnegative_float, default=0.1)
    parser.add_argument("--precision", nargs="+", choices=PRECISIONS.names(), default=["default"],
                        help="the sslkern routes at each of these product precisions, interleaved; a "
                             "rounded one adds its products floor (products@bf16)")
    parser.add_argument("--threads", type=_args.nonnegative_int, default=None,
                        help="torch.set_num_threads (0 or unset: torch's choice)")
    parser.add_argument("--clock", default="wall", choices=["wall", "cpu"],
                        help="wall time, or this process's CPU time (robust on a shared machine "
                             "with --threads 1)")
    parser.add_argument("--json", type=_args.output_file, default=None,
                        help="write the results here (checked for writability before the benchmark)")
    parser.add_argument("--plot", type=_args.output_file, default=None,
                        help="write a PNG bar chart here (needs matplotlib: pip install 'sslkern[plot]')")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--penalties", action="store_true",
                        help="instead: the fused step with each extra penalty (higher-order contractive, "
                             "kl and l1 sparsity) against the plain step and against the same penalty in "
                             "plain PyTorch, eager and compiled")
    parser.add_argument("--pretext", type=_args.images, default=None, metavar="BxHxW",
                        help="time the pretext generators (sslkern.pretext) on B images of HxW against "
                             "x.clone() of the same batch instead, e.g. --pretext 256x28x28")


def run(args):
    if args.plot:  # before the benchmark, not after it
        _args.require_module("matplotlib", "plot", "--plot")
    import torch

    from .. import bench

    device = args.device if args.device not in (None, "auto") else ("cuda" if torch.cuda.is_available() else "cpu")
    if args.clock == "cpu" and torch.device(device).type != "cpu":
        raise _args.UsageError("--clock cpu times the host only: use it with --device cpu")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.pretext is not None:
        return _pretext(args, bench, device)
    shapes = [bench.Shape.parse(s) for s in args.shapes]
    obj = bench.Objective(args.corruption, args.level, args.contractive)
    if args.penalties:
        return _penalties(args, bench, shapes, device, obj)
    if args.variants is not None:
        names, _ = bench.variants(shapes[0], device, obj, args.variants)
        if not names:
            every, _ = bench.variants(shapes[0], device, obj)
            raise _args.UsageError(f"--variants {' '.join(args.variants)} selects nothing that runs on {device} "
                                   f"here; available: {' '.join(every)}")
    results = bench.compare(shapes, device, obj, warmup=args.warmup, steps=args.steps,
                            max_seconds=args.max_seconds, include=args.variants,
                            progress=not args.no_progress, clock=args.clock, precisions=args.precision)
    info = bench.machine()
    print(f"# {info['cpu']} ({info['cores']} cores, torch threads {info['torch_threads']}), "
          f"GPU {info['gpu']}; python {info['python']}, torch {info['torch']}, "
          f"triton {info['triton']}, sslkern {info['sslkern']}; device {device}, fp32 parameters, "
          f"precisions {' '.join(args.precision)}; {obj.corruption} {obj.level} + contractive {obj.contractive}; {args.clock} clock; "
          f"load {info['load_average']}")
    print(bench.table(results))
    command = " ".join(shlex.quote(a) for a in sys.argv)  # as typed: sslkern bench ... or compare.py ...
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            f.write(bench.to_json(results, command=command, settings=vars(args)))
    if args.plot:
        bench.plot(results, args.plot)


def _penalties(args, bench, shapes, device, obj):
    backend = "native" if device == "cpu" else "triton"
    results = bench.compare_penalties(shapes, device, obj, backend, warmup=args.warmup, steps=args.steps,
                                      max_seconds=args.max_seconds, clock=args.clock)
    info = bench.machine()
    print(f"# {info['cpu']} ({info['cores']} cores, torch threads {info['torch_threads']}); torch "
          f"{info['torch']}, sslkern {info['sslkern']}; device {device}, fp32; plain step: {obj.corruption} "
          f"{obj.level} + contractive {obj.contractive}; penalties: {bench.PENALTY_CASES}; {args.clock} clock; "
          f"load {info['load_average']}")
    print(bench.penalty_table(results))
    if args.json:
        command = " ".join(shlex.quote(a) for a in sys.argv)
        with open(args.json, "w", encoding="utf-8") as f:
            f.write(bench.to_json(results, command=command, settings=vars(args)))


def _pretext(args, bench, device):
    batch, height, width = args.pretext
    rows = bench.compare_pretext(batch, (height, width), device, warmup=args.warmup, steps=max(args.steps, 500),
                                 max_seconds=args.max_seconds, clock=args.clock)
    info = bench.machine()
    print(f"# {info['cpu']} ({info['cores']} cores, torch threads {info['torch_threads']}); torch {info['torch']}, "
          f"sslkern {info['sslkern']}; device {device}, fp32; {args.clock} clock; load {info['load_average']}")
    print(bench.pretext_table(rows, batch, (height, width)))
    if args.json:
        import json

        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"machine": info, "command": " ".join(shlex.quote(a) for a in sys.argv),
                       "results": [dict(r, timing=vars(r["timing"])) for r in rows]}, f, indent=2)
    return 0
