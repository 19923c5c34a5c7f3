"""One-command GPU check: build, correctness tests on CUDA, then timings in one process.

    python benchmarks/gpu_check.py [--json PATH] [--budget-s 420] [--reserve-s 90]
                                   [--test-timeout-s 240] [--skip-build] [--skip-tests]
                                   [--full-tests] [--skip-compile] [--skip-max-autotune]
                                   [--autotune] [--quick] [--peak-tflops T] [--dry-run]

Installs nothing. Sections, cheapest and most informative first:

  build             the native extension in place (CUDA on, sm_90) when not built for this Python
  tests             tests/test_triton.py, tests/test_ops.py, tests/test_pretext.py,
                    tests/test_precision.py (every backend's bf16/fp16 routes against the
                    float64 oracle) and tests/test_native_cuda.py on CUDA, in a subprocess
  graph rng         a captured CUDA graph draws fresh noise when (seed, offset) come from a
                    device tensor
  graphed noisy fit fit(cuda_graph=True) matches the same fit without a graph
  step rows (fp32)  the training step of a DAE+CAE (mask 25% + contractive 0.1,
                    sigmoid/sigmoid/bce; forward, backward, SGD update) at the MNIST shapes:
                    PyTorch eager, jax.jit (benchmarks/jax_baseline.py; "skipped (no jax)"
                    without jax), sslkern triton (launched, x~ in-load and by pre-pass, in a
                    CUDA graph, value_and_grad, the fused sgd_step, without the penalty),
                    native when it runs on CUDA, and sgd_step with precision="bf16" (bf16
                    operands, fp32 master weights; information, not a target route)
  corrupt           corrupt alone on 2^28 elements against a device-to-device copy
  step row (bf16)   the same variants at the big bf16 shape (compiles ~30 kernels)
  native paths      benchmarks/gpu_check_native.py's timings (compiled and NVRTC kernels)
  pretext           the pretext generators against a copy of the same batch
  bench cli         `sslkern bench --device cuda` at one MNIST shape, fp32 and bf16 products,
                    as a user runs it (its exit code and table; JSON beside this one)
  compile default   torch.compile of the eager objective, every row
  compile max-autotune  the same in max-autotune mode (the longest compiles come last)

Budget: every section and every timed variant starts only when its cost estimate (COSTS)
fits in what is left of --budget-s; the tests' subprocess gets min(--test-timeout-s, left -
--reserve-s). What did not fit is listed under "skipped_for_budget" in the JSON, which is
written (to --json, else $OUT/gpu_check.json when $OUT is set, else benchmarks/gpu_check.json)
after every section and variant, so a run cut short still leaves its numbers. CUDA steps are
timed with CUDA events, jax.jit with the wall clock around block_until_ready.

--dry-run runs every section's code path on the CPU with tiny shapes (triton under
TRITON_INTERPRET=1, wall-clock timing, the tests collected but not run, JSON by default in
$OUT or the temp folder): what needs CUDA (build, CUDA graphs, native CUDA) says
"skipped (dry run: needs CUDA)". Its numbers mean nothing; it checks the script.

Exit code 1: the tests or a CUDA-graph check failed, a section crashed, or (without
--dry-run) there is no CUDA device.

Targets (H100): MNIST-scale step >= 4x eager, >= 1.5x torch.compile max-autotune and
>= 1.5x jax.jit; the big bf16 step >= 60% of the bf16 tensor-core rate (10·B·D·H FLOPs);
corrupt >= 85% of the device-to-device copy bandwidth.
"""
import argparse
import functools
import json
import os
import platform
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))  # the checkout's sslkern, as built in place
    sys.path.insert(0, str(ROOT / "benchmarks"))
    if "--dry-run" in sys.argv[1:]:
        # before anything imports triton: its kernels then run in the interpreter on CPU tensors
        os.environ["TRITON_INTERPRET"] = "1"

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

MNIST_SHAPES = [(128, 784, 512), (128, 784, 1024), (1024, 784, 512), (1024, 784, 1024)]
BIG_SHAPE = (8192, 4096, 4096)
LEVEL, CONTRACTIVE, LR = 0.25, 0.1, 1e-3
STEP = dict(encoder="sigmoid", decoder="sigmoid", loss="bce", corruption="mask", level=LEVEL,
            contractive=CONTRACTIVE)
CORRUPT_NUMEL = 2**28
# Dense bf16 tensor-core peak (FLOP/s) by device name; --peak-tflops overrides.
PEAKS = [("H100 PCIe", 756e12), ("H100", 989e12), ("H200", 989e12), ("GH200", 989e12)]
DRY_RUN_PEAK_TFLOPS = 1.0  # nominal: lets the dry run exercise the bf16 target

# Seconds a piece of work must have left in the budget to start. Guesses until a GPU run's
# "sections" (each with its seconds) calibrate them; the compiles dominate.
COSTS = {"tests": 60, "check": 20, "variant": 10, "variant big": 30, "corrupt": 15, "native paths": 45,
         "pretext": 30, "bench cli": 45, "compile default": 60, "compile max-autotune": 180}
DRY_RUN_COSTS = dict.fromkeys(COSTS, 2) | {"tests": 15, "bench cli": 15, "compile default": 10,
                                           "compile max-autotune": 15}

DRY_SKIP = "skipped (dry run: needs CUDA)"
BUDGET_SKIP = "skipped (budget)"
NO_JAX = "skipped (no jax)"

_start = time.monotonic()


def elapsed():
    return time.monotonic() - _start


def log(*args):
    print(f"[{elapsed():6.1f}s]", *args, flush=True)


def dtype_name(dtype):
    return str(dtype).replace("torch.", "")


# --- what a run measures: the GPU's plan or the dry run's -----------------------------------

@dataclass
class Plan:
    dry_run: bool
    device: str
    mnist_shapes: list
    big_shape: tuple
    corrupt_numel: int
    pretext: dict  # bench.compare_pretext's arguments
    costs: dict

    def sample_counts(self, shape, quick):
        """(steps per sample, samples, warm-up steps)."""
        if self.dry_run:
            return 1, 2, 1
        small = shape[0] * shape[1] * shape[2] < 2**31
        if quick:
            return (10, 5, 5) if small else (2, 3, 2)
        return (20, 10, 10) if small else (3, 5, 3)

    def median_ms(self, step, steps_per_sample, samples, warmup):
        from sslkern.bench import cuda_event_median_ms, wall_median_ms

        timer = wall_median_ms if self.dry_run else cuda_event_median_ms
        return timer(step, samples, warmup, steps_per_sample)


GPU_PLAN = Plan(False, "cuda", MNIST_SHAPES, BIG_SHAPE, CORRUPT_NUMEL,
                dict(batch=256, image_shape=(28, 28), device="cuda", steps=200, max_seconds=5.0), COSTS)
DRY_PLAN = Plan(True, "cpu", [(8, 20, 12)], (16, 24, 20), 2**12,
                dict(batch=8, image_shape=(8, 8), device="cpu", warmup=1, steps=3, max_seconds=1.0),
                DRY_RUN_COSTS)


class Budget:
    """What is left of --budget-s; work starts only when its cost estimate fits, and what did
    not fit is recorded (the list is the JSON's "skipped_for_budget")."""

    def __init__(self, total_s):
        self.total_s = total_s
        self.skipped = []

    def left(self):
        return self.total_s - elapsed()

    def allows(self, what, cost_s):
        if self.left() >= cost_s:
            return True
        log(f"budget: skipping {what} ({self.left():.0f} s left, needs ~{cost_s:.0f} s)")
        self.skipped.append(what)
        return False


class Run:
    """The result dict, its JSON file, the budget and the plan, shared by the sections."""

    def __init__(self, args, plan, target):
        self.args, self.plan, self.target = args, plan, target
        self.budget = Budget(args.budget_s)
        self.result = {"dry_run": plan.dry_run, "budget_s": args.budget_s, "sections": [], "steps": [],
                       "skipped_for_budget": self.budget.skipped}

    def save(self):
        self.result["elapsed_s"] = round(elapsed(), 1)
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self.target.write_text(json.dumps(self.result, indent=1, default=str))

    def section(self, name, body, cost_s=0.0, needs_cuda=False, skip_flag=None, key=None):
        """Runs body() as one section when it may start; records its status and duration
        (and the status under `key` when it did not run), then saves."""
        start = elapsed()
        if skip_flag:
            status = f"skipped ({skip_flag})"
        elif needs_cuda and self.plan.dry_run:
            status = DRY_SKIP
        elif not self.budget.allows(name, cost_s):
            status = BUDGET_SKIP
        else:
            log(f"section: {name}")
            try:
                body()
                status = "done"
            except Exception as exc:  # a bug in the script: report it, keep the other sections
                status = f"error: {type(exc).__name__}: {exc}"[:500]
                log(f"section {name} crashed: {status}")
        if key and status != "done":
            self.result[key] = status
        self.result["sections"].append({"name": name, "status": status, "seconds": round(elapsed() - start, 1)})
        self.save()

    def variant(self, what, cost_s, measure, needs_cuda=False):
        """measure() -> ms as one cell, when the budget allows it; the JSON is saved after it."""
        if needs_cuda and self.plan.dry_run:
            return DRY_SKIP
        if not self.budget.allows(what, cost_s):
            return BUDGET_SKIP
        value = timed(what, measure)
        self.save()
        return value


def timed(label, measure):
    try:
        ms = measure()
    except Exception as exc:  # one broken variant must not hide the others' numbers
        log(f"  {label:<44} error: {type(exc).__name__}: {exc}")
        return f"error: {type(exc).__name__}: {str(exc)[:300]}"
    if isinstance(ms, str):  # the measurement declined (no jax)
        log(f"  {label:<44} {ms}")
        return ms
    log(f"  {label:<44} {ms:9.4f} ms")
    return round(ms, 5)


# --- build and tests ------------------------------------------------------------------------

def native_built():
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    return all((ROOT / "sslkern" / f"_native_{name}{suffix}").exists() for name in ("cpu", "cuda"))


def build():
    """Builds the C++/CUDA extension in place for this Python (nothing is installed)."""
    if native_built():
        return {"built": False, "note": "already built for this Python"}
    env = dict(os.environ, SSLKERN_CUDA="1", SSLKERN_CUDA_ARCHS=os.environ.get("SSLKERN_CUDA_ARCHS", "90"))
    log("building the native extension in place (SSLKERN_CUDA=1, sm_90)")
    proc = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    tail = (proc.stdout + proc.stderr)[-3000:]
    if proc.returncode:
        print(tail)
    return {"built": proc.returncode == 0, "returncode": proc.returncode, "log_tail": tail[-800:]}


def run_tests(timeout_s, full, autotune=False, collect_only=False):
    """tests/test_triton.py (every triton kernel at awkward sizes, values and gradients) and the
    other backends' op tests; `full` also runs tests/test_ops.py on triton, which compiles a
    few hundred kernel variants (minutes of a fresh machine's time). `collect_only` (the dry
    run) only collects them: the subprocess, its timeout and the summary, without the hours
    the interpreter would take."""
    files = ["tests/test_triton.py", "tests/test_ops.py", "tests/test_pretext.py", "tests/test_precision.py"]
    if (ROOT / "tests" / "test_native_cuda.py").exists():
        files.append("tests/test_native_cuda.py")
    selection = [] if full else ["-k", "not triton or test_triton or test_precision"]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    if not collect_only:
        env.pop("TRITON_INTERPRET", None)
    # the backend's tile choice must reach the test process too (autotuning compiles every candidate)
    env["SSLKERN_TRITON_AUTOTUNE"] = "1" if autotune else "0"
    mode = ["--collect-only"] if collect_only else []
    log(f"tests (timeout {timeout_s:.0f} s):", " ".join(mode + files + selection))
    try:
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *mode, *files,
                               *selection], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"files": files, "exit_code": None, "timed_out": True, "summary": f"timed out after {timeout_s:.0f} s"}
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    if proc.returncode:
        print("\n".join(lines[-40:]))
    return {"files": files, "exit_code": proc.returncode, "summary": lines[-1] if lines else "",
            "timeout_s": round(timeout_s), "collect_only": collect_only}


def graph_rng_check():
    """A CUDA graph capturing draws with (seed, offset) in a device tensor: each replay after
    advancing the offset must give the oracle's numbers for the new offset."""
    from sslkern import backends
    from sslkern import reference as oracle

    impl = backends.get("triton")
    rng = torch.tensor([1234, 0], dtype=torch.int64, device="cuda")
    n = 1 << 20
    impl.philox(n, rng, 0, rng.device, False)  # compile outside the capture
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = impl.philox(n, rng, 0, rng.device, False)
    results = []
    for offset in (0, n, 2 * n + 7):
        rng[1] = offset
        graph.replay()
        results.append(torch.equal(out.cpu(), oracle.philox_uniform(n, 1234, offset)))
    return {"fresh_noise_per_replay_matches_oracle": all(results)}


def graphed_noisy_fit_check():
    """fit(cuda_graph=True) of a denoising model on triton (noise from a device tensor advanced
    by each replay) against the same fit without a graph: the epoch losses and the weights agree
    (the same noise, fresh per step), so the captured step neither freezes nor skips the noise."""
    import sslkern

    gen = torch.Generator().manual_seed(0)
    X = torch.rand(512, 784, generator=gen).cuda()
    runs = {}
    with sslkern.use_backend("triton"):
        for graph in (False, True):
            model = sslkern.nn.DenoisingAutoencoder(784, 256, seed=3).cuda()
            history = sslkern.train.fit(model, X, epochs=2, batch_size=128, lr=0.1, progress=False,
                                        cuda_graph=graph)
            runs[graph] = (torch.tensor(history["loss"]), model.weight.detach().clone(), model.step)
    eager, graphed = runs[False], runs[True]
    loss_diff = float((eager[0] - graphed[0]).abs().max())
    weight_diff = float((eager[1] - graphed[1]).abs().max())
    return {"max_loss_diff": loss_diff, "max_weight_diff": weight_diff, "steps": [eager[2], graphed[2]],
            "matches_eager": loss_diff < 1e-3 and weight_diff < 1e-3 and eager[2] == graphed[2]}


# --- the training step, several ways --------------------------------------------------------

def make_params(batch, visible, hidden, dtype, device="cuda"):
    gen = torch.Generator(device=device).manual_seed(0)
    x = torch.rand(batch, visible, device=device, generator=gen).to(dtype)
    W = (torch.randn(hidden, visible, device=device, generator=gen) / visible ** 0.5).to(dtype)
    b = torch.zeros(hidden, device=device, dtype=dtype)
    c = torch.zeros(visible, device=device, dtype=dtype)
    return x, [torch.nn.Parameter(t) for t in (W, b, c)]


def masked_objective(x, keep, W, b, c):
    """The DAE+CAE objective for a given keep mask (jax_baseline.masked_objective's twin)."""
    batch = x.shape[0]
    h = torch.sigmoid(torch.addmm(b, x * keep, W.t()))
    a = torch.addmm(c, h, W)
    recon = (F.softplus(a) - x * a).sum() / batch
    s = h * (1 - h)
    penalty = (s * s).sum(0) @ (W * W).sum(1) / batch
    return recon + CONTRACTIVE * penalty


def torch_objective(x, W, b, c):
    """The same DAE+CAE objective in plain PyTorch (its own RNG for the mask)."""
    return masked_objective(x, torch.rand_like(x) >= LEVEL, W, b, c)


def sgd_step(objective, x, params):
    loss = objective(x, *params)
    grads = torch.autograd.grad(loss, params)
    with torch.no_grad():
        torch._foreach_add_(params, grads, alpha=-LR)
    return loss


def sslkern_step(contractive=True, route="sslkern", precision="default"):
    """A training step through sslkern: autoencoder_loss and autograd ("sslkern"),
    autoencoder_value_and_grad and the same update, or autoencoder_sgd_step (fused update);
    `precision` "bf16" rounds the products' operands of the (fp32) parameters."""
    import sslkern
    counter = [0]
    step = dict(STEP, contractive=CONTRACTIVE if contractive else 0.0, precision=precision)

    def options(x):
        counter[0] += 1  # a fresh (seed, counter) range every step
        return dict(step, seed=7, offset=(counter[0] * x.numel()) % 2**32)

    def run(x, params):
        if route == "sgd_step":
            return sslkern.autoencoder_sgd_step(x, *params, lr=LR, **options(x))
        if route == "value_and_grad":
            loss, grads = sslkern.autoencoder_value_and_grad(x, *params, **options(x))
            with torch.no_grad():
                torch._foreach_add_(params, list(grads), alpha=-LR)
            return loss
        return sgd_step(lambda *t: sslkern.autoencoder_loss(*t, **options(x)), x, params)
    return run


def graphed(step):
    """The step captured in a CUDA graph (warm-up, autotuning and compiling happen first)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    return graph.replay


def torch_step_ms(make_step, shape, dtype, plan, quick):
    x, params = make_params(*shape, dtype, plan.device)
    return plan.median_ms(make_step(x, params), *plan.sample_counts(shape, quick))


def jax_step_ms(shape, dtype, plan, quick):
    """jax.jit's step (wall clock), or why it is not timed."""
    try:
        import jax_baseline
    except ImportError:
        return NO_JAX
    if not plan.dry_run and jax_baseline.backend() == "cpu":
        return "skipped (jax without a GPU backend)"
    steps, samples, warmup = plan.sample_counts(shape, quick)
    return jax_baseline.time_step(shape, dtype_name(dtype), LEVEL, CONTRACTIVE, LR, steps, samples, warmup)


def cheap_variants(dtype, plan):
    """(label, make_step, needs_cuda) for the torch steps that need no torch.compile."""
    import sslkern
    from sslkern import backends
    from sslkern.backends import triton as triton_backend

    def eager(x, params):
        return lambda: sgd_step(torch_objective, x, params)

    def ours(name, mode=None, graph=False, contractive=True, route="sslkern", precision="default"):
        def make(x, params):
            train_step = sslkern_step(contractive, route, precision)

            def step():
                with sslkern.use_backend(name):
                    previous = triton_backend.XT_MODE
                    triton_backend.XT_MODE = mode or previous
                    try:
                        return train_step(x, params)
                    finally:
                        triton_backend.XT_MODE = previous
            return graphed(step) if graph else step
        return make

    variants = [("eager", eager, False), ("sslkern[triton]", ours("triton"), False),
                ("sslkern[triton] x~ in-load", ours("triton", "load"), False),
                ("sslkern[triton] x~ pre-pass", ours("triton", "prepass"), False),
                ("sslkern[triton] cuda-graph", ours("triton", graph=True), True),
                ("value_and_grad[triton]", ours("triton", route="value_and_grad"), False),
                ("sgd_step[triton]", ours("triton", route="sgd_step"), False),
                # what the penalty's epilogue work costs (r and s² sums in the encoder, dZ terms)
                ("triton, no penalty (info)", ours("triton", contractive=False), False)]
    if dtype == torch.float32:  # mixed precision: bf16 operands, fp32 master weights (not a target route)
        variants += [("sgd_step[triton] precision bf16", ours("triton", route="sgd_step", precision="bf16"), False),
                     ("sgd_step[native] precision bf16", ours("native", route="sgd_step", precision="bf16"), True)]
    # the dry run lists native's cells (as needing CUDA) so the table has their columns
    if plan.dry_run or not backends.reasons("native", torch.device("cuda"), dtype):
        variants += [("sslkern[native]", ours("native"), True),
                     ("sslkern[native] cuda-graph", ours("native", graph=True), True),
                     ("value_and_grad[native]", ours("native", route="value_and_grad"), True),
                     ("sgd_step[native]", ours("native", route="sgd_step"), True)]
    return variants


def compiled_variant(mode):
    def make(x, params):
        objective = torch.compile(torch_objective, mode=mode, dynamic=False)
        return lambda: sgd_step(objective, x, params)
    return make


def step_row(run, shape, dtype):
    """One row of the step table: eager, jax.jit and the sslkern routes, each when the budget allows."""
    plan, quick = run.plan, run.args.quick
    name = f"step {tuple(shape)} {dtype_name(dtype)}"
    row = {"shape": list(shape), "dtype": dtype_name(dtype), "ms": {}}
    run.result["steps"].append(row)
    cost = plan.costs["variant big" if shape == plan.big_shape else "variant"]
    measures = [(label, functools.partial(torch_step_ms, make, shape, dtype, plan, quick), needs_cuda)
                for label, make, needs_cuda in cheap_variants(dtype, plan)]
    measures.insert(1, ("jax.jit", functools.partial(jax_step_ms, shape, dtype, plan, quick), False))  # by eager
    for label, measure, needs_cuda in measures:
        row["ms"][label] = run.variant(f"{name}: {label}", cost, measure, needs_cuda)


def compile_column(run, mode):
    """torch.compile(mode) of the eager objective in every row that was timed."""
    for row in run.result["steps"]:
        shape, dtype = tuple(row["shape"]), getattr(torch, row["dtype"])
        row["ms"][f"compile {mode}"] = run.variant(
            f"step {shape} {row['dtype']}: compile {mode}", run.plan.costs[f"compile {mode}"],
            lambda: torch_step_ms(compiled_variant(mode), shape, dtype, run.plan, run.args.quick))


# --- corrupt bandwidth ----------------------------------------------------------------------

def corrupt_bandwidth(plan):
    import sslkern
    x = torch.rand(plan.corrupt_numel, device=plan.device)
    out = torch.empty_like(x)
    moved = 2 * x.numel() * x.element_size()

    def gbps(fn):
        steps, samples, warmup = (1, 2, 1) if plan.dry_run else (5, 10, 3)
        return moved / (plan.median_ms(fn, steps, samples, warmup) * 1e-3) / 1e9

    with sslkern.use_backend("triton"):
        corrupt = gbps(lambda: sslkern.corrupt(x, "mask", LEVEL, 3, 0))
    copy = gbps(lambda: out.copy_(x))
    return {"numel": plan.corrupt_numel, "corrupt_GBps": round(corrupt, 1), "d2d_copy_GBps": round(copy, 1),
            "ratio": round(corrupt / copy, 3)}


# --- report ---------------------------------------------------------------------------------

def peak_flops(override, plan):
    if override:
        return override * 1e12
    if plan.dry_run:
        return DRY_RUN_PEAK_TFLOPS * 1e12
    name = torch.cuda.get_device_name()
    return next((peak for key, peak in PEAKS if key in name), None)


def best_triton_ms(row):
    """The fastest triton route of a row at the row's own precision (the bf16-operand
    variants of an fp32 row are information, not a comparison with fp32 baselines)."""
    return min((v for k, v in row["ms"].items()
                if "[triton]" in k and "precision bf16" not in k and isinstance(v, float)), default=None)


def targets(result, peak):
    rows = result["steps"]
    out = []
    for row in rows:
        if row["dtype"] != "float32":
            continue
        best = best_triton_ms(row)
        for base, factor in (("eager", 4.0), ("compile max-autotune", 1.5), ("jax.jit", 1.5)):
            ref = row["ms"].get(base)
            if isinstance(ref, float) and best:
                out.append({"target": f"{row['shape']} >= {factor}x {base}", "speedup": round(ref / best, 2),
                            "met": ref / best >= factor})
    for row in rows:
        if row["dtype"] == "bfloat16" and peak:
            batch, visible, hidden = row["shape"]
            best = best_triton_ms(row)
            if best:
                rate = 10 * batch * visible * hidden / (best * 1e-3)
                out.append({"target": f"{row['shape']} bf16 >= 60% of {peak / 1e12:.0f} TFLOP/s",
                            "tflops": round(rate / 1e12, 1), "fraction": round(rate / peak, 3),
                            "met": rate / peak >= 0.6})
    if isinstance(result.get("corrupt"), dict):
        ratio = result["corrupt"]["ratio"]
        out.append({"target": "corrupt >= 85% of D2D copy bandwidth", "fraction": ratio, "met": ratio >= 0.85})
    return out


TABLE_WORDS = {DRY_SKIP: "- (dry run)", BUDGET_SKIP: "- (budget)", NO_JAX: "- (no jax)"}


def cell(value):
    if isinstance(value, float):
        return f"{value:.4f}"
    if str(value).startswith("error"):
        return "error (see JSON)"
    return TABLE_WORDS.get(value, str(value)[:26])


def print_table(result):
    rows = result["steps"]
    labels = []
    for row in rows:
        labels += [k for k in row["ms"] if k not in labels]
    print("\nstep time (ms; forward + backward + SGD update)" + (" -- DRY RUN: CPU, numbers mean nothing"
                                                                 if result["dry_run"] else ""))
    print(f"{'shape (B, D, H)':<22}{'dtype':<10}" + "".join(f"{label[:26]:>28}" for label in labels))
    for row in rows:
        cells = "".join(f"{cell(row['ms'].get(label, '-')):>28}" for label in labels)
        print(f"{str(tuple(row['shape'])):<22}{row['dtype']:<10}{cells}")
    if isinstance(result.get("corrupt"), dict):
        print(f"\ncorrupt on {result['corrupt']['numel']} fp32:", result["corrupt"])
    print("\nsections:")
    for section in result["sections"]:
        print(f"  {section['name']:<36} {section['status'][:80]} ({section['seconds']} s)")
    print("\ntargets:")
    for t in result.get("targets", []):
        print(f"  [{'met' if t['met'] else 'MISSED'}] {t['target']}: "
              + ", ".join(f"{k}={v}" for k, v in t.items() if k not in ("target", "met")))


def failures(result):
    """What makes the exit code 1: failed or timed-out tests, a failed CUDA-graph check, a
    section that crashed. A section skipped (budget, dry run, flag) is no failure."""
    out = []
    tests = result.get("tests")
    if isinstance(tests, dict) and (tests.get("timed_out") or tests.get("exit_code") not in (0, None)):
        out.append("tests")
    for key, flag in (("graph_rng", "fresh_noise_per_replay_matches_oracle"), ("graphed_noisy_fit", "matches_eager")):
        if isinstance(result.get(key), dict) and not result[key].get(flag):
            out.append(key)
    cli = result.get("bench_cli")
    if isinstance(cli, dict) and cli.get("exit_code") != 0:
        out.append("bench_cli")
    return out + [s["name"] for s in result["sections"] if s["status"].startswith("error")]


# --- the sections, in order -----------------------------------------------------------------

def parse_args(argv=None):
    # no abbreviations: --dry-run is looked for in sys.argv before argparse runs
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--json", help="output path (default $OUT/gpu_check.json or benchmarks/gpu_check.json)")
    parser.add_argument("--budget-s", type=float, default=420.0,
                        help="no section or variant starts unless its cost estimate fits in what is left")
    parser.add_argument("--reserve-s", type=float, default=90.0,
                        help="seconds of the budget the tests leave to the timings")
    parser.add_argument("--test-timeout-s", type=float, default=240.0)
    parser.add_argument("--full-tests", action="store_true", help="also tests/test_ops.py on triton (slow)")
    parser.add_argument("--autotune", action="store_true",
                        help="time the tile candidates (many more compiles; the default is the backend's fixed tile)")
    parser.add_argument("--skip-build", action="store_true")
    parser.add_argument("--skip-tests", action="store_true")
    parser.add_argument("--skip-compile", action="store_true", help="no torch.compile baselines at all")
    parser.add_argument("--skip-max-autotune", action="store_true")
    parser.add_argument("--quick", action="store_true", help="fewer timing samples")
    parser.add_argument("--peak-tflops", type=float, help="dense bf16 peak of this GPU (default: by name)")
    parser.add_argument("--dry-run", action="store_true",
                        help="every section's code path on the CPU with tiny shapes (checks the script, not the GPU)")
    return parser.parse_args(argv)


def output_path(args):
    name = "gpu_check_dry_run.json" if args.dry_run else "gpu_check.json"
    if args.json:
        return Path(args.json)
    if os.environ.get("OUT"):
        return Path(os.environ["OUT"]) / name
    # a dry run's numbers must not land where a GPU run's are kept
    return Path(tempfile.gettempdir()) / name if args.dry_run else ROOT / "benchmarks" / name


def correctness_sections(run):
    args, result, budget = run.args, run.result, run.budget

    def tests():
        timeout = min(args.test_timeout_s, budget.left() - args.reserve_s)
        result["tests"] = run_tests(timeout, args.full_tests, args.autotune, collect_only=run.plan.dry_run)
        log("tests:", result["tests"]["summary"])

    def graph_rng():
        try:
            result["graph_rng"] = graph_rng_check()
        except Exception as exc:
            result["graph_rng"] = {"fresh_noise_per_replay_matches_oracle": False,
                                   "error": f"{type(exc).__name__}: {exc}"[:500]}
        log("graph rng:", result["graph_rng"])

    def graphed_noisy_fit():
        try:
            result["graphed_noisy_fit"] = graphed_noisy_fit_check()
        except Exception as exc:
            result["graphed_noisy_fit"] = {"matches_eager": False, "error": f"{type(exc).__name__}: {exc}"[:500]}
        log("graphed noisy fit:", result["graphed_noisy_fit"])

    costs = run.plan.costs
    run.section("tests", tests, costs["tests"] + args.reserve_s, skip_flag=args.skip_tests and "--skip-tests",
                key="tests")
    run.section("graph rng", graph_rng, costs["check"], needs_cuda=True, key="graph_rng")
    run.section("graphed noisy fit", graphed_noisy_fit, costs["check"], needs_cuda=True, key="graphed_noisy_fit")


def timing_sections(run):
    import sslkern

    args, plan, result = run.args, run.plan, run.result
    costs = plan.costs
    for shape in plan.mnist_shapes:
        run.section(f"step {shape} float32", lambda: step_row(run, shape, torch.float32), costs["variant"])

    def corrupt():
        try:
            result["corrupt"] = corrupt_bandwidth(plan)
        except Exception as exc:
            result["corrupt"] = f"error: {type(exc).__name__}: {exc}"
        log("corrupt:", result["corrupt"])

    def native_paths():
        if "native" not in sslkern.available_backends():
            result["native_paths_step_ms"] = "skipped (native backend not available)"
            return
        import gpu_check_native
        try:  # both of the native helper's kernel paths, as its own script times them
            result["native_paths_step_ms"] = gpu_check_native.time_steps(shapes=plan.mnist_shapes[:1]
                                                                         + plan.mnist_shapes[-1:])
        except Exception as exc:
            result["native_paths_step_ms"] = f"error: {type(exc).__name__}: {exc}"

    def pretext():  # the pretext generators against a copy of the same batch
        from sslkern import bench
        try:
            rows = bench.compare_pretext(**plan.pretext)
            result["pretext"] = [dict(r, timing=vars(r["timing"])) for r in rows]
        except Exception as exc:
            result["pretext"] = f"error: {type(exc).__name__}: {exc}"
        log("pretext:", result["pretext"])

    run.section("corrupt", corrupt, costs["corrupt"], key="corrupt")
    run.section(f"step {plan.big_shape} bfloat16", lambda: step_row(run, plan.big_shape, torch.bfloat16),
                costs["variant big"])
    run.section("native paths", native_paths, costs["native paths"], needs_cuda=True, key="native_paths_step_ms")
    run.section("pretext", pretext, costs["pretext"], key="pretext")
    run.section("bench cli", lambda: result.update(bench_cli=bench_cli(run)), costs["bench cli"], key="bench_cli")
    for mode, flag in (("default", args.skip_compile and "--skip-compile"),
                       ("max-autotune", (args.skip_compile and "--skip-compile")
                        or (args.skip_max_autotune and "--skip-max-autotune"))):
        run.section(f"compile {mode}", lambda: compile_column(run, mode), costs[f"compile {mode}"], skip_flag=flag)


def bench_cli(run):
    """`sslkern bench --device cuda` as a user runs it (one shape, both product precisions, a
    short budget): its exit code, its table and where its JSON went."""
    plan = run.plan
    shape = "x".join(map(str, plan.mnist_shapes[-1 if not plan.dry_run else 0]))
    target = run.target.parent / "bench_cli.json"
    command = [sys.executable, "-m", "sslkern", "bench", "--device", plan.device, "--shapes", shape,
               "--variants", "eager", "value_and_grad", "sgd_step", "--precision", "default", "bf16",
               "--steps", "3" if plan.dry_run else "20", "--warmup", "1" if plan.dry_run else "3",
               "--max-seconds", "1" if plan.dry_run else "3", "--no-progress", "--json", str(target)]
    log("bench cli:", " ".join(command[1:]))
    timeout = max(10.0, run.budget.left() - run.args.reserve_s)
    try:
        proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"command": command[1:], "exit_code": None, "timed_out": True}
    table = [line for line in proc.stdout.splitlines() if line.startswith("|")]
    log(f"bench cli: exit {proc.returncode}, {max(len(table) - 2, 0)} rows")
    return {"command": command[1:], "exit_code": proc.returncode, "table": table,
            "json": str(target) if target.exists() else None, "stderr_tail": proc.stderr[-600:]}


def header(plan):
    if plan.dry_run:
        return {"machine": f"cpu (dry run: {platform.machine()})", "python": platform.python_version(),
                "torch": torch.__version__}
    return {"machine": torch.cuda.get_device_name(), "python": platform.python_version(),
            "torch": torch.__version__, "fp32_matmul": fp32_matmul_setting()}


def fp32_matmul_setting():
    """"tf32"/"ieee" from the new API where torch has it: reading the legacy allow_tf32 after
    the new one was set raises on torch >= 2.9."""
    matmul = torch.backends.cuda.matmul
    precision = getattr(matmul, "fp32_precision", None)
    return precision if precision is not None else ("tf32" if matmul.allow_tf32 else "ieee")


def main(argv=None):
    args = parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        sys.exit("no CUDA device: benchmarks/gpu_check.py runs on the GPU machine "
                 "(--dry-run checks the script on the CPU)")
    plan = DRY_PLAN if args.dry_run else GPU_PLAN
    run = Run(args, plan, output_path(args))
    run.result.update(header(plan))
    if plan.dry_run:
        log(f"DRY RUN on the CPU (TRITON_INTERPRET={os.environ.get('TRITON_INTERPRET')}), writing {run.target}")
    run.section("build", lambda: run.result.update(build=build()), needs_cuda=True,
                skip_flag=args.skip_build and "--skip-build", key="build")
    import triton  # after the build: the native module it made is loaded with sslkern

    import sslkern
    from sslkern.backends import triton as triton_backend
    triton_backend.AUTOTUNE = args.autotune
    run.result.update(autotune=triton_backend.AUTOTUNE, sslkern=sslkern.__version__, triton=triton.__version__,
                      backends=sslkern.available_backends())
    run.save()
    correctness_sections(run)
    timing_sections(run)

    run.result["targets"] = targets(run.result, peak_flops(args.peak_tflops, plan))
    run.result["failed"] = failures(run.result)
    run.save()
    print_table(run.result)
    if run.budget.skipped:
        print(f"\nskipped for budget ({len(run.budget.skipped)}):", "; ".join(run.budget.skipped))
    if run.result["failed"]:
        print("\nfailed:", ", ".join(run.result["failed"]))
    print(f"\nwrote {run.target}")
    sys.exit(1 if run.result["failed"] else 0)


if __name__ == "__main__":
    main()
