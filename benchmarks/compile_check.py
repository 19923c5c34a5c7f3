"""Compile every launch of the triton backend for sm_90 on a machine without a GPU.

    python benchmarks/compile_check.py [--arch 90]

The interpreter (TRITON_INTERPRET=1, what the tests use here) accepts code that the compiler
rejects (non-constexpr globals, tl.dot's out_dtype rules...). This script runs the backend's
launchers on small CPU tensors with kernel launches replaced by `triton.compile` for a CUDA
target (frontend, MLIR passes and ptxas; nothing runs), for every dtype and both x~ modes.
Exit code 1 when any kernel fails to compile.
"""
import argparse
import os
import sys
from pathlib import Path

os.environ.pop("TRITON_INTERPRET", None)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402
from triton.runtime.jit import JITFunction  # noqa: E402

POINTER_TYPES = {torch.float32: "*fp32", torch.float64: "*fp64", torch.bfloat16: "*bf16",
                 torch.float16: "*fp16", torch.int64: "*i64"}


def scalar_type(value):
    if isinstance(value, bool):
        return "i1"
    if isinstance(value, int):
        return "i32" if -2**31 <= value < 2**31 else ("i64" if value < 2**63 else "u64")
    if isinstance(value, float):
        return "fp32"
    raise TypeError(f"unexpected kernel argument of type {type(value).__name__}")


def compiling_run(target, seen, results):
    def run(self, *args, grid, warmup, **kwargs):
        bound = dict(zip(self.arg_names, args))
        bound.update({k: v for k, v in kwargs.items() if k in self.arg_names})
        options = {k: v for k, v in kwargs.items() if k not in self.arg_names}
        signature, constexprs = {}, {}
        for param, name in zip(self.params, self.arg_names):
            value = bound[name]
            if param.is_constexpr:
                signature[name], constexprs[name] = "constexpr", value
            else:
                signature[name] = POINTER_TYPES[value.dtype] if isinstance(value, torch.Tensor) else scalar_type(value)
        key = (self.__name__, str(sorted(signature.items())), str(sorted(constexprs.items(), key=str)),
               str(sorted(options.items())))
        if key in seen:
            return
        seen.add(key)
        try:
            triton.compile(ASTSource(self, signature, constexprs), target=target, options=options)
            results.append((self.__name__, None))
        except Exception as exc:  # report every failure, not just the first
            results.append((self.__name__, f"{type(exc).__name__}: {exc}"))
    return run


def exercise(impl, module):
    from sslkern.backends.base import StepConfig

    tiles = {torch.bfloat16: module._HALF_TILES[0], torch.float16: module._HALF_TILES[0],
             torch.float32: module._FP32_TILES[0], torch.float64: module._FP64_TILES[0]}
    cpu = torch.device("cpu")
    for dtype in (torch.bfloat16, torch.float32, torch.float64):
        module._tile = lambda *args, dtype=dtype: tiles[dtype]
        B, D, H = 40, 30, 20
        x, W = torch.rand(B, D, dtype=dtype), torch.randn(H, D, dtype=dtype)
        b, c = torch.randn(H, dtype=dtype), torch.randn(D, dtype=dtype)
        grad = torch.tensor(1.0, dtype=dtype)
        steps = [StepConfig(encoder="tanh", decoder="sigmoid", loss="mse", corruption="gaussian", level=0.2,
                            contractive=0.3, seed=3, offset=5),
                 StepConfig(corruption="mask", level=0.2, contractive=0.0, seed=torch.tensor([1, 2]), offset=0)]
        for mode in ("load", "prepass"):
            module.XT_MODE = mode
            for cfg in steps:
                saved = impl.ae_forward(x, W, b, c, cfg)
                impl.ae_backward(grad, x, W, c, saved, cfg, True)
        impl.linear_act(x, W, b, "relu", True)
        impl.linear_act(x[:, :H].contiguous(), W, c, "softplus", False)
        impl.linear_act_backward(x[:, :H].contiguous(), x[:, :H].contiguous(), x, W, "sigmoid", True)
        impl.linear_act_backward(x, x, x[:, :H].contiguous(), W, "sigmoid", False)
        _, h, r, s2col = impl.contractive(x, W, b, "sigmoid")
        impl.contractive_backward(grad, x, W, h, r, s2col, "sigmoid")
        impl.corrupt(x, "salt_pepper", 0.3, 2**64 - 1, 7)
        impl.corrupt_grad(x, "mask", 0.3, 1, 7)
    impl.philox(100, 5, 6, cpu, True)
    impl.philox(100, torch.tensor([1, 2]), 0, cpu, False)
    # mixed precision: bf16 x, fp32 parameters (bf16 operands, fp32 everything else)
    module._tile = lambda *args: module._HALF_TILES[0]
    module.HALF_INPUT_OPERANDS = True
    x, W = torch.rand(40, 30, dtype=torch.bfloat16), torch.randn(20, 30)
    b, c = torch.randn(20), torch.randn(30)
    cfg = StepConfig(corruption="mask", level=0.2, contractive=0.3, seed=3, offset=5)
    impl.ae_backward(torch.tensor(1.0), x, W, c, impl.ae_forward(x, W, b, c, cfg), cfg, True)


def exercise_tiles(impl, module):
    """The training step's kernels with every autotuning candidate tile."""
    from sslkern.backends.base import StepConfig

    cfg = StepConfig(corruption="mask", level=0.2, contractive=0.3, seed=3, offset=5)
    for dtype, tiles in ((torch.bfloat16, module._HALF_TILES), (torch.float32, module._FP32_TILES)):
        x, W = torch.rand(40, 30, dtype=dtype), torch.randn(20, 30, dtype=dtype)
        b, c = torch.randn(20, dtype=dtype), torch.randn(30, dtype=dtype)
        for tile in tiles:
            module._tile = lambda *args, tile=tile: tile
            for mode in ("load", "prepass"):
                module.XT_MODE = mode
                saved = impl.ae_forward(x, W, b, c, cfg)
                impl.ae_backward(torch.tensor(1.0, dtype=dtype), x, W, c, saved, cfg, False)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", type=int, default=90)
    parser.add_argument("--all-tiles", action="store_true", help="also every autotuning candidate tile")
    args = parser.parse_args()
    from sslkern.backends import triton as module

    seen, results = set(), []
    JITFunction.run = compiling_run(GPUTarget("cuda", args.arch, 32), seen, results)
    exercise(module.TritonBackend(), module)
    if args.all_tiles:
        exercise_tiles(module.TritonBackend(), module)
    failures = [(name, error) for name, error in results if error]
    print(f"triton {triton.__version__}, sm_{args.arch}: {len(results)} kernel variants compiled, "
          f"{len(failures)} failed")
    for name, error in failures:
        print(f"  {name}: {error[:2000]}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
