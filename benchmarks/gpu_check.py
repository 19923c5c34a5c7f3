"""One-command GPU check: build, correctness tests on CUDA, then timings in one process.

    python benchmarks/gpu_check.py [--json PATH] [--budget-s 480] [--skip-build] [--skip-tests]
                                   [--full-tests] [--skip-compile] [--skip-max-autotune]
                                   [--autotune] [--quick]

Installs nothing. Builds the native extension in place (CUDA on, sm_90) when it is not built
for this Python, runs tests/test_triton.py, tests/test_ops.py (and tests/test_native_cuda.py
when present) on CUDA, checks that a captured CUDA graph draws fresh noise when (seed,
offset) come from a device tensor, then times the training step of a DAE+CAE (mask 25% +
contractive 0.1, sigmoid/sigmoid/bce; forward, backward, SGD update) for PyTorch eager,
torch.compile (default, max-autotune) and sslkern (triton launched, triton in a CUDA graph,
value_and_grad and the fused sgd_step, native when it runs on CUDA), x~ made in the encoder's loads vs by a pre-pass, and corrupt
alone on 2^28 elements against a device-to-device copy. Prints a table, writes JSON (to
--json, else $OUT/gpu_check.json when $OUT is set, else benchmarks/gpu_check.json) after
every section, so a run cut short still leaves its numbers. Sections that would start past
--budget-s are skipped and say so (max-autotune compiles come last).

Targets (H100): MNIST-scale step >= 4x eager and >= 1.5x torch.compile max-autotune; the
big bf16 step >= 60% of the bf16 tensor-core rate (10·B·D·H FLOPs); corrupt >= 85% of the
device-to-device copy bandwidth.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

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

_start = time.monotonic()


def elapsed():
    return time.monotonic() - _start


def log(*args):
    print(f"[{elapsed():6.1f}s]", *args, flush=True)


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


def run_tests(timeout_s, full, autotune=False):
    """tests/test_triton.py (every triton kernel at awkward sizes, values and gradients) and the
    other backends' op tests; `full` also runs tests/test_ops.py on triton, which compiles a
    few hundred kernel variants (minutes of a fresh machine's time)."""
    files = ["tests/test_triton.py", "tests/test_ops.py", "tests/test_pretext.py"]
    if (ROOT / "tests" / "test_native_cuda.py").exists():
        files.append("tests/test_native_cuda.py")
    selection = [] if full else ["-k", "not triton or test_triton"]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("TRITON_INTERPRET", None)
    # the backend's tile choice must reach the test process too (autotuning compiles every candidate)
    env["SSLKERN_TRITON_AUTOTUNE"] = "1" if autotune else "0"
    log("tests:", " ".join(files + selection))
    try:
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *files,
                               *selection], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"files": files, "exit_code": None, "timed_out": True, "summary": f"timed out after {timeout_s} s"}
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    if proc.returncode:
        print("\n".join(lines[-40:]))
    return {"files": files, "exit_code": proc.returncode, "summary": lines[-1] if lines else ""}


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


# --- the training step, five ways -----------------------------------------------------------

def make_params(batch, visible, hidden, dtype):
    gen = torch.Generator(device="cuda").manual_seed(0)
    x = torch.rand(batch, visible, device="cuda", generator=gen).to(dtype)
    W = (torch.randn(hidden, visible, device="cuda", generator=gen) / visible ** 0.5).to(dtype)
    b = torch.zeros(hidden, device="cuda", dtype=dtype)
    c = torch.zeros(visible, device="cuda", dtype=dtype)
    return x, [torch.nn.Parameter(t) for t in (W, b, c)]


def torch_objective(x, W, b, c):
    """The same DAE+CAE objective in plain PyTorch (its own RNG for the mask)."""
    batch = x.shape[0]
    x_tilde = x * (torch.rand_like(x) >= LEVEL)
    h = torch.sigmoid(torch.addmm(b, x_tilde, W.t()))
    a = torch.addmm(c, h, W)
    recon = (F.softplus(a) - x * a).sum() / batch
    s = h * (1 - h)
    penalty = (s * s).sum(0) @ (W * W).sum(1) / batch
    return recon + CONTRACTIVE * penalty


def sgd_step(objective, x, params):
    loss = objective(x, *params)
    grads = torch.autograd.grad(loss, params)
    with torch.no_grad():
        torch._foreach_add_(params, grads, alpha=-LR)
    return loss


def sslkern_step(contractive=True, route="sslkern"):
    """A training step through sslkern: autoencoder_loss and autograd ("sslkern"),
    autoencoder_value_and_grad and the same update, or autoencoder_sgd_step (fused update)."""
    import sslkern
    counter = [0]
    step = dict(STEP, contractive=CONTRACTIVE if contractive else 0.0)

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


def median_step_ms(step, steps_per_sample, samples, warmup):
    from sslkern.bench import cuda_event_median_ms

    return cuda_event_median_ms(step, samples, warmup, steps_per_sample)


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


def time_variant(label, make_step, shape, dtype, quick):
    batch = shape[0]
    small = batch * shape[1] * shape[2] < 2**31
    steps, samples, warmup = ((20, 10, 10) if small else (3, 5, 3)) if not quick else ((10, 5, 5) if small else (2, 3, 2))
    try:
        x, params = make_params(*shape, dtype)
        step = make_step(x, params)
        ms = median_step_ms(step, steps, samples, warmup)
        log(f"  {label:<28} {ms:9.4f} ms")
        return round(ms, 5)
    except Exception as exc:  # one broken variant must not hide the others' numbers
        log(f"  {label:<28} error: {type(exc).__name__}: {exc}")
        return f"error: {type(exc).__name__}: {str(exc)[:300]}"


def cheap_variants(dtype):
    """(label, make_step) for everything that needs no torch.compile."""
    import sslkern
    from sslkern import backends
    from sslkern.backends import triton as triton_backend

    def eager(x, params):
        return lambda: sgd_step(torch_objective, x, params)

    def ours(name, mode=None, graph=False, contractive=True, route="sslkern"):
        def make(x, params):
            train_step = sslkern_step(contractive, route)

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

    variants = [("eager", eager), ("sslkern[triton]", ours("triton")),
                ("sslkern[triton] x~ in-load", ours("triton", "load")),
                ("sslkern[triton] x~ pre-pass", ours("triton", "prepass")),
                ("sslkern[triton] cuda-graph", ours("triton", graph=True)),
                ("value_and_grad[triton]", ours("triton", route="value_and_grad")),
                ("sgd_step[triton]", ours("triton", route="sgd_step")),
                # what the penalty's epilogue work costs (r and s² sums in the encoder, dZ terms)
                ("triton, no penalty (info)", ours("triton", contractive=False))]
    if not backends.reasons("native", torch.device("cuda"), dtype):
        variants += [("sslkern[native]", ours("native")), ("sslkern[native] cuda-graph", ours("native", graph=True)),
                     ("value_and_grad[native]", ours("native", route="value_and_grad")),
                     ("sgd_step[native]", ours("native", route="sgd_step"))]
    return variants


def compiled_variant(mode):
    def make(x, params):
        objective = torch.compile(torch_objective, mode=mode, dynamic=False)
        return lambda: sgd_step(objective, x, params)
    return make


# --- corrupt bandwidth ----------------------------------------------------------------------

def corrupt_bandwidth():
    import sslkern
    x = torch.rand(CORRUPT_NUMEL, device="cuda")
    out = torch.empty_like(x)
    moved = 2 * x.numel() * x.element_size()

    def gbps(fn):
        return moved / (median_step_ms(fn, 5, 10, 3) * 1e-3) / 1e9

    with sslkern.use_backend("triton"):
        corrupt = gbps(lambda: sslkern.corrupt(x, "mask", LEVEL, 3, 0))
    copy = gbps(lambda: out.copy_(x))
    return {"numel": CORRUPT_NUMEL, "corrupt_GBps": round(corrupt, 1), "d2d_copy_GBps": round(copy, 1),
            "ratio": round(corrupt / copy, 3)}


# --- report ---------------------------------------------------------------------------------

def peak_flops(override):
    if override:
        return override * 1e12
    name = torch.cuda.get_device_name()
    return next((peak for key, peak in PEAKS if key in name), None)


def targets(result, peak):
    rows = result["steps"]
    out = []
    for row in rows:
        if row["dtype"] != "float32":
            continue
        best = min((v for k, v in row["ms"].items() if "[triton]" in k and isinstance(v, float)),
                   default=None)
        for base, factor in (("eager", 4.0), ("compile max-autotune", 1.5)):
            ref = row["ms"].get(base)
            if isinstance(ref, float) and best:
                out.append({"target": f"{row['shape']} >= {factor}x {base}", "speedup": round(ref / best, 2),
                            "met": ref / best >= factor})
    for row in rows:
        if row["dtype"] == "bfloat16" and peak:
            batch, visible, hidden = row["shape"]
            best = min((v for k, v in row["ms"].items() if "[triton]" in k and isinstance(v, float)),
                       default=None)
            if best:
                rate = 10 * batch * visible * hidden / (best * 1e-3)
                out.append({"target": f"{row['shape']} bf16 >= 60% of {peak / 1e12:.0f} TFLOP/s",
                            "tflops": round(rate / 1e12, 1), "fraction": round(rate / peak, 3),
                            "met": rate / peak >= 0.6})
    if isinstance(result.get("corrupt"), dict):
        ratio = result["corrupt"]["ratio"]
        out.append({"target": "corrupt >= 85% of D2D copy bandwidth", "fraction": ratio, "met": ratio >= 0.85})
    return out


def print_table(result):
    rows = result["steps"]
    labels = []
    for row in rows:
        labels += [k for k in row["ms"] if k not in labels]
    print("\nstep time (ms; forward + backward + SGD update)")
    print(f"{'shape (B, D, H)':<22}{'dtype':<10}" + "".join(f"{label[:26]:>28}" for label in labels))
    for row in rows:
        cells = "".join(f"{(f'{v:.4f}' if isinstance(v, float) else str(v)[:26]):>28}"
                        for v in (row["ms"].get(label, "-") for label in labels))
        print(f"{str(tuple(row['shape'])):<22}{row['dtype']:<10}{cells}")
    if isinstance(result.get("corrupt"), dict):
        print("\ncorrupt on 2^28 fp32:", result["corrupt"])
    print("\ntargets:")
    for t in result.get("targets", []):
        print(f"  [{'met' if t['met'] else 'MISSED'}] {t['target']}: "
              + ", ".join(f"{k}={v}" for k, v in t.items() if k not in ("target", "met")))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="output path (default $OUT/gpu_check.json or benchmarks/gpu_check.json)")
    parser.add_argument("--budget-s", type=float, default=480.0, help="skip sections that would start later")
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
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("no CUDA device: benchmarks/gpu_check.py runs on the GPU machine")
    target = Path(args.json or (Path(os.environ["OUT"]) / "gpu_check.json" if os.environ.get("OUT")
                                else ROOT / "benchmarks" / "gpu_check.json"))

    result = {"machine": torch.cuda.get_device_name(), "python": platform.python_version(),
              "torch": torch.__version__, "allow_tf32": torch.backends.cuda.matmul.allow_tf32, "steps": []}

    def save():
        result["elapsed_s"] = round(elapsed(), 1)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(result, indent=1, default=str))

    result["build"] = {"skipped": True} if args.skip_build else build()
    import triton

    import sslkern
    from sslkern.backends import triton as triton_backend
    triton_backend.AUTOTUNE = args.autotune
    result.update(autotune=triton_backend.AUTOTUNE, sslkern=sslkern.__version__, triton=triton.__version__,
                  backends=sslkern.available_backends())
    save()
    if not args.skip_tests:
        result["tests"] = run_tests(args.test_timeout_s, args.full_tests, autotune=args.autotune)
        log("tests:", result["tests"]["summary"])
    try:
        result["graph_rng"] = graph_rng_check()
    except Exception as exc:
        result["graph_rng"] = {"fresh_noise_per_replay_matches_oracle": False,
                               "error": f"{type(exc).__name__}: {exc}"[:500]}
    log("graph rng:", result["graph_rng"])
    save()
    try:
        result["graphed_noisy_fit"] = graphed_noisy_fit_check()
    except Exception as exc:
        result["graphed_noisy_fit"] = {"matches_eager": False, "error": f"{type(exc).__name__}: {exc}"[:500]}
    log("graphed noisy fit:", result["graphed_noisy_fit"])
    save()

    shapes = [(s, torch.float32) for s in MNIST_SHAPES] + [(BIG_SHAPE, torch.bfloat16)]
    rows = {}
    for shape, dtype in shapes:
        if elapsed() > args.budget_s:
            log(f"budget spent: skipping {shape}")
            continue
        log(f"step {shape} {str(dtype).replace('torch.', '')}")
        row = {"shape": list(shape), "dtype": str(dtype).replace("torch.", ""), "ms": {}}
        for label, make in cheap_variants(dtype):
            row["ms"][label] = time_variant(label, make, shape, dtype, args.quick)
        rows[shape] = row
        result["steps"].append(row)
        save()

    if elapsed() <= args.budget_s:
        try:
            result["corrupt"] = corrupt_bandwidth()
        except Exception as exc:
            result["corrupt"] = f"error: {type(exc).__name__}: {exc}"
        log("corrupt:", result["corrupt"])
        save()

    if elapsed() <= args.budget_s:  # the pretext generators against a copy of the same batch
        try:
            from sslkern import bench
            rows = bench.compare_pretext(256, (28, 28), "cuda", steps=200, max_seconds=5.0)
            result["pretext"] = [dict(r, timing=vars(r["timing"])) for r in rows]
        except Exception as exc:
            result["pretext"] = f"error: {type(exc).__name__}: {exc}"
        log("pretext:", result["pretext"])
        save()

    # Native paths, as the native helper's script times them (both of its kernel paths).
    try:
        import gpu_check_native
        if elapsed() <= args.budget_s and "native" in sslkern.available_backends():
            result["native_paths_step_ms"] = gpu_check_native.time_steps(shapes=MNIST_SHAPES[:1] + MNIST_SHAPES[-1:])
            save()
    except Exception as exc:
        result["native_paths_step_ms"] = f"error: {type(exc).__name__}: {exc}"

    modes = [] if args.skip_compile else ["default"] + ([] if args.skip_max_autotune else ["max-autotune"])
    for shape, dtype in shapes:  # MNIST shapes first: their targets need max-autotune
        for mode in modes:
            if shape not in rows:
                continue
            if elapsed() > args.budget_s:
                rows[shape]["ms"][f"compile {mode}"] = "skipped (budget)"
                continue
            log(f"compile {mode} {shape}")
            rows[shape]["ms"][f"compile {mode}"] = time_variant(f"compile {mode}", compiled_variant(mode),
                                                                 shape, dtype, args.quick)
            save()

    result["targets"] = targets(result, peak_flops(args.peak_tflops))
    save()
    print_table(result)
    print(f"\nwrote {target}")
    tests = result.get("tests", {})  # no entry: --skip-tests
    failed = (tests.get("timed_out") or tests.get("exit_code") not in (0, None)
              or not result["graph_rng"]["fresh_noise_per_replay_matches_oracle"]
              or not result["graphed_noisy_fit"]["matches_eager"])
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
