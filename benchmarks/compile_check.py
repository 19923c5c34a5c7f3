"""Compile every launch of the triton backend for sm_90 on a machine without a GPU.

    python benchmarks/compile_check.py [--arch 90] [--all-tiles] [--spills] [--every-kind]

The interpreter (TRITON_INTERPRET=1, what the tests use here) accepts code that the compiler
rejects (non-constexpr globals, tl.dot's out_dtype rules...). This script runs the backend's
launchers on small CPU tensors with kernel launches replaced by `triton.compile` for a CUDA
target (frontend, MLIR passes and ptxas; nothing runs), for every dtype and both x~ modes,
and for every activation, loss and corruption kind in sslkern/kinds.py, and the pretext
generators' kernels. Arguments get the
JIT's alignment specialisation (16-byte aligned pointers, ints that are multiples of 16), so
that shared memory and register use match what a launch on the device compiles.

It also compiles the tiles the backend picks first on the device (`_candidates` with sm_90's
shared memory and each launch's register budget) at a small and an MNIST-scale step, and checks
that each such variant's shared memory fits sm_90 (a variant over it raises OutOfResources at
launch). The reductions (finalize_kernel, row_sq_norms_kernel) are compiled with the tiles
CUDA launches (REDUCE_TILES), not the interpreter's. --spills runs ptxas -v on each variant's
PTX and reports, per first-choice variant, registers per thread, shared memory, the blocks per
SM they allow on sm_90, and spills. Exit code 1 when any kernel fails to compile, a
first-choice tile does not fit, or (with --spills) a first-choice tile of a training-step
kernel (HOT_KERNELS) spills in the default step.

--every-kind also runs the first-choice (and, with --all-tiles, every candidate) tiles of the
MNIST-scale step with each activation as encoder and MSE decoder (the data behind the backend's
_ACC_BUDGETS); their spills are listed as phase "every-kind" and do not set the exit code.
"""
import argparse
import os
import sys
from pathlib import Path
from typing import NamedTuple

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


def divisible_by_16(param, value):
    """The JIT's alignment specialisation: pointers 16-byte aligned and ints that are multiples
    of 16 get tt.divisibility 16 (vectorised loads), unless the parameter opts out."""
    if getattr(param, "do_not_specialize", False) or isinstance(value, bool):
        return False
    if isinstance(value, torch.Tensor):
        return value.data_ptr() % 16 == 0
    return isinstance(value, int) and value % 16 == 0


def spilled_bytes(ptxas_log):
    """Spilled bytes (stores + loads) in a ptxas -v log."""
    import re
    return sum(int(n) for n in re.findall(r"(\d+) bytes spill (?:stores|loads)", ptxas_log))


def registers_used(ptxas_log):
    """Registers per thread in a ptxas -v log (the largest, if several functions)."""
    import re
    found = [int(n) for n in re.findall(r"Used (\d+) registers", ptxas_log)]
    return max(found) if found else None


# sm_90's per-SM limits, for the occupancy a variant allows (CUDA occupancy calculator rules).
SM90 = {"registers": 65536, "register_unit": 256, "threads": 2048, "blocks": 32, "shared": 233472}


def blocks_per_sm(registers, shared, num_warps, limits=SM90):
    """Resident blocks per SM: the least that registers, shared memory, threads and the
    block limit allow (registers allocated per warp in units of 256)."""
    threads = 32 * num_warps
    per_warp = -(-registers * 32 // limits["register_unit"]) * limits["register_unit"]
    by_registers = limits["registers"] // (per_warp * num_warps) if registers else limits["blocks"]
    by_shared = limits["shared"] // shared if shared else limits["blocks"]
    return min(by_registers, by_shared, limits["threads"] // threads, limits["blocks"])


def compile_logged(source, target, options, spills):
    """triton.compile, and with `spills` the log of Triton's own ptxas -v run (exactly its
    options), which Triton prints when asked; the cache is bypassed so that ptxas runs."""
    if not spills:
        return triton.compile(source, target=target, options=options), ""
    import contextlib
    import io

    from triton import knobs
    log = io.StringIO()
    with knobs.nvidia.scope(), knobs.compilation.scope(), contextlib.redirect_stdout(log):
        knobs.nvidia.dump_ptxas_log = True
        knobs.compilation.always_compile = True
        compiled = triton.compile(source, target=target, options=options)
    return compiled, log.getvalue()


def compiling_run(target, seen, results, phase, spills=False):
    def run(self, *args, grid, warmup, **kwargs):
        bound = dict(zip(self.arg_names, args))
        bound.update({k: v for k, v in kwargs.items() if k in self.arg_names})
        options = {k: v for k, v in kwargs.items() if k not in self.arg_names}
        signature, constexprs, attrs = {}, {}, {}
        for index, (param, name) in enumerate(zip(self.params, self.arg_names)):
            value = bound[name]
            if param.is_constexpr:
                signature[name], constexprs[name] = "constexpr", value
            else:
                signature[name] = POINTER_TYPES[value.dtype] if isinstance(value, torch.Tensor) else scalar_type(value)
                if divisible_by_16(param, value):  # as the JIT specialises a launch on the device
                    attrs[(index,)] = [["tt.divisibility", 16]]
        key = (self.__name__, str(sorted(signature.items())), str(sorted(constexprs.items(), key=str)),
               str(sorted(options.items())), str(sorted(attrs)))
        if key in seen:
            return
        seen.add(key)
        tile = {k: v for k, v in constexprs.items() if k.startswith("BLOCK")}
        kinds = "".join(f" {k}={constexprs[k]}" for k in KIND_ARGUMENTS if k in constexprs)
        what = f"{self.__name__} {tile} {options}{kinds}"
        try:
            compiled, log = compile_logged(ASTSource(self, signature, constexprs, attrs), target, options, spills)
        except Exception as exc:  # report every failure, not just the first
            results.append(Result(phase[0], what, f"{type(exc).__name__}: {exc}", 0, None, None, None,
                                  self.__name__))
            return
        registers = registers_used(log) if spills else None
        warps = options.get("num_warps", 4)
        results.append(Result(phase[0], what, None, compiled.metadata.shared,
                              spilled_bytes(log) if spills else None, registers,
                              blocks_per_sm(registers, compiled.metadata.shared, warps) if spills else None,
                              self.__name__))
    return run


class Result(NamedTuple):
    phase: str        # "kinds", "first-choice", "every-kind" or "all-tiles"
    what: str         # kernel, tile constexprs, launch options
    error: "str | None"
    shared: int       # bytes of shared memory the compiled kernel needs
    spills: "int | None"  # bytes spilled (ptxas -v), with --spills
    registers: "int | None" = None  # per thread (ptxas -v), with --spills
    blocks_per_sm: "int | None" = None  # resident blocks the registers and shared memory allow
    kernel: str = ""


# The kernels of the training step: a spill in one of their first-choice tiles fails the check.
HOT_KERNELS = ("encoder_kernel", "decoder_loss_kernel", "dz_kernel", "weight_grad_kernel", "input_grad_kernel",
               "row_sq_norms_kernel", "finalize_kernel")
KIND_ARGUMENTS = ("ACT", "LOSS", "DECODER")  # the constexprs that name a variant's kinds in the listing


def force_tiles(module, pick):
    """Make the backend's launchers use `pick(prec, M, N, products, acc_budget)` (a list of
    tiles) on CPU."""
    module._chosen.clear()
    module._tiles = lambda device, prec, M, N, products, acc_budget: pick(prec, M, N, products, acc_budget)


def cuda_reduction_tiles(module):
    """Make the reduction launchers use the tiles they launch on CUDA (REDUCE_TILES) on CPU
    tensors: their tile is a fixed function of the device, not a candidate list."""
    module._reduce_tile = lambda name, device: module.REDUCE_TILES[name]


def training_steps(precision="default", every_kind=False):
    """The default training step (BCE, sigmoid, mask, contractive), and with `every_kind` one
    more per activation as encoder and MSE decoder."""
    from sslkern.backends.base import StepConfig
    from sslkern.kinds import ACTIVATIONS

    base = dict(corruption="mask", level=0.2, contractive=0.3, seed=3, offset=5, precision=precision)
    kinds = [dict(encoder=act, decoder=act, loss="mse") for act in ACTIVATIONS.names()] if every_kind else []
    return [StepConfig(**base)] + [StepConfig(**base, **kind) for kind in kinds]


# (parameter dtype, precision): every operand type a training step's products can have
STEP_TYPES = ((torch.bfloat16, "default"), (torch.float16, "default"), (torch.float32, "default"),
              (torch.float64, "default"), (torch.float32, "bf16"), (torch.float32, "fp16"))


def exercise(impl, module):
    """Every launcher, dtype, x~ mode and kind, with the first candidate tile of each dtype."""
    from sslkern.backends.base import StepConfig
    from sslkern.kinds import ACTIVATIONS, CORRUPTIONS, ELEMENTWISE_CORRUPTIONS, LOSSES

    tiles = {torch.bfloat16: module._HALF_TILES[0], torch.float16: module._HALF_TILES[0],
             torch.float32: module._FP32_TILES[0], torch.float64: module._FP64_TILES[0]}
    cpu = torch.device("cpu")
    for dtype in (torch.bfloat16, torch.float32, torch.float64):
        force_tiles(module, lambda prec, *args: [tiles[prec.operands]])
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
        # every kind: each activation as encoder (with the penalty) and as MSE decoder, each
        # loss, each corruption (forward in the encoder's loads, and the input gradient)
        module.XT_MODE = "load"
        for act, corruption in zip(ACTIVATIONS.names(), CORRUPTIONS.names() * len(ACTIVATIONS)):
            images = dict(image_height=5, image_width=6, patch=2) if CORRUPTIONS[corruption].needs_image_shape else {}
            for loss in LOSSES.names():
                decoder = LOSSES[loss].needs_decoder or act
                cfg = StepConfig(encoder=act, decoder=decoder, loss=loss, corruption=corruption, level=0.2,
                                 contractive=0.3, seed=3, offset=5, sparsity=0.1, sparsity_kind="l1",
                                 higher_order=0.2, hole_weight=1.0 if CORRUPTIONS[corruption].passes_gradient else 2.0,
                                 **images)
                impl.ae_backward(grad, x, W, c, impl.ae_forward(x, W, b, c, cfg), cfg, True)
            impl.linear_act(x, W, b, act, True)
            impl.linear_act_backward(x[:, :H].contiguous(), x[:, :H].contiguous(), x, W, act, True)
            _, h, r, s2col = impl.contractive(x, W, b, act)
            impl.contractive_backward(grad, x, W, h, r, s2col, act)
        for corruption in ELEMENTWISE_CORRUPTIONS:  # block, patch: the encoder's, above, after a PyTorch mask
            impl.corrupt(x, corruption, 0.3, 2**64 - 1, 7)
            impl.corrupt_grad(x, corruption, 0.3, 1, 7)
        impl.linear_act(x[:, :H].contiguous(), W, c, "softplus", False)
        impl.linear_act_backward(x, x, x[:, :H].contiguous(), W, "sigmoid", False)
    impl.philox(100, 5, 6, cpu, True)
    impl.philox(100, torch.tensor([1, 2]), 0, cpu, False)
    # mixed precision: fp32 parameters, an fp32 or half x; bf16 or fp16 operands (fp16 with the
    # gradient scale), fp32 everything else
    force_tiles(module, lambda *args: [module._HALF_TILES[0]])
    W, b, c = torch.randn(20, 30), torch.randn(20), torch.randn(30)
    for precision, half in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
        cfg = StepConfig(corruption="mask", level=0.2, contractive=0.3, seed=3, offset=5, precision=precision)
        for x in (torch.rand(40, 30), torch.rand(40, 30, dtype=half)):
            impl.ae_backward(torch.tensor(1.0), x, W, c, impl.ae_forward(x, W, b, c, cfg), cfg, True)


def exercise_pretext():
    """The pretext generators' kernels (sslkern/kernels/triton/pretext.py): every element size,
    a seed past 2**63 (an unsigned argument), one permutation (n_perms == 1), small and MNIST
    images."""
    from sslkern.kernels.triton import pretext

    for dtype in (torch.bfloat16, torch.float32, torch.float64):
        for side in (5, 28):
            x = torch.rand(3, side * side, dtype=dtype)
            for seed in (3, 2**64 - 1):
                pretext.rotations(x, side, seed, 7)
                pretext.relative_patches(x, side, side, 1, 1, seed, 7)
                for perms in (torch.tensor([[1, 0, 3, 2]]), torch.tensor([[0, 1, 2, 3], [3, 2, 1, 0]])):
                    pretext.jigsaw(x, side, side, 2, 2, perms, seed, 7)


def train_steps(impl, dtype, steps, B=256):
    """Forward and backward (with the input gradient) of each of `steps` at an MNIST-sized step."""
    D, H = 784, 512
    x, W = torch.rand(B, D, dtype=dtype), torch.randn(H, D, dtype=dtype)
    b, c = torch.randn(H, dtype=dtype), torch.randn(D, dtype=dtype)
    for step in steps:
        impl.ae_backward(torch.tensor(1.0, dtype=dtype), x, W, c, impl.ae_forward(x, W, b, c, step), step, True)
    return x, W


def exercise_first_choices(impl, module, phase, every_kind=False):
    """The tiles the backend picks first on sm_90 (no autotuning), at batch 8 and 256 of an
    MNIST-sized step, with the input gradient (two products in input_grad_kernel) and the
    single-layer backward (one); with `every_kind`, then every activation at batch 256."""
    force_tiles(module, lambda prec, M, N, products, acc_budget: module._candidates(
        prec.operands, M, N, products=products, acc_budget=acc_budget, smem_limit=module.SM90_SHARED_MEMORY,
        staged=prec.staged)[:1])
    module.XT_MODE = "auto"
    for dtype, precision in STEP_TYPES:
        for B in (8, 256):
            x, W = train_steps(impl, dtype, training_steps(precision), B)
            H = W.shape[0]
            impl.linear_act_backward(x[:, :H].contiguous(), x[:, :H].contiguous(), x, W, "sigmoid", True)
    if every_kind:
        phase[0] = "every-kind"
        for dtype, precision in STEP_TYPES:
            train_steps(impl, dtype, training_steps(precision, every_kind=True))


def exercise_tiles(impl, module, every_kind=False):
    """The training step's kernels with every candidate tile (autotuning tries them all), at an
    MNIST-sized step (strides multiples of 16, as on the device)."""
    tables = {torch.bfloat16: module._HALF_TILES, torch.float32: module._FP32_TILES, torch.float64: module._FP64_TILES}
    for dtype, precision in ((torch.bfloat16, "default"), (torch.float32, "default"), (torch.float64, "default"),
                             (torch.float32, "bf16")):
        for tile in tables[torch.bfloat16 if precision == "bf16" else dtype]:
            force_tiles(module, lambda *args, tile=tile: [tile])
            for mode in ("load", "prepass"):
                module.XT_MODE = mode
                train_steps(impl, dtype, training_steps(precision, every_kind and mode == "load"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", type=int, default=90)
    parser.add_argument("--all-tiles", action="store_true", help="also every autotuning candidate tile")
    parser.add_argument("--spills", action="store_true", help="report register spills (ptxas -v)")
    parser.add_argument("--every-kind", action="store_true",
                        help="also the first-choice (and --all-tiles) tiles with every activation")
    args = parser.parse_args()
    from sslkern.backends import triton as module

    seen, results, phase = set(), [], ["kinds"]
    JITFunction.run = compiling_run(GPUTarget("cuda", args.arch, 32), seen, results, phase, args.spills)
    impl = module.TritonBackend()
    cuda_reduction_tiles(module)
    exercise(impl, module)
    exercise_pretext()
    phase[0] = "first-choice"
    exercise_first_choices(impl, module, phase, args.every_kind)
    if args.all_tiles:
        phase[0] = "all-tiles"
        exercise_tiles(impl, module, args.every_kind)
    limit = module.SM90_SHARED_MEMORY
    failures = [r for r in results if r.error]
    too_big = [r for r in results if not r.error and r.shared > limit]
    # a first choice must launch; other phases force tiles the backend would filter out
    failures += [r._replace(error=f"needs {r.shared} B of shared memory > {limit} B (sm_90)")
                 for r in too_big if r.phase in ("first-choice", "every-kind")]
    failed_to_compile = len(failures)
    print(f"triton {triton.__version__}, sm_{args.arch}: {len(results)} kernel variants compiled, "
          f"{failed_to_compile} failed to compile or do not fit")
    for r in too_big:
        if r.phase not in ("first-choice", "every-kind"):
            print(f"  note ({r.phase}): {r.what} needs {r.shared} B of shared memory > {limit} B: "
                  "the backend skips this tile there")
    if args.spills:
        print("  first-choice variants: registers/thread, shared memory, blocks per SM, spills")
        for r in results:
            if r.phase in ("first-choice", "every-kind") and not r.error:
                print(f"    {r.registers or '?':>4} regs {r.shared:7d} B smem {r.blocks_per_sm or '?':>3} blocks/SM "
                      f"{r.spills or 0:6d} B spilled  {r.what}" + ("  (every-kind)" if r.phase == "every-kind" else ""))
        spilling = [r for r in results if r.spills]
        print(f"  {len(spilling)} variants spill registers" + (":" if spilling else ""))
        for r in spilling:
            print(f"    {r.spills:6d} B  ({r.phase}) {r.what}")
        failures += [r._replace(error=f"spills {r.spills} B in a hot kernel's first-choice tile")
                     for r in spilling if r.phase == "first-choice" and r.kernel in HOT_KERNELS]
        print(f"  {len(failures) - failed_to_compile} first-choice variants of training-step kernels spill")
    for r in failures:
        print(f"  FAILED ({r.phase}) {r.what}: {r.error[:2000]}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
