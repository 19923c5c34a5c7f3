"""Timing harness and the training-step comparison behind `sslkern bench`.

One harness for every benchmark (benchmarks/ and the GPU script reuse it): warm-up steps,
then many timed steps with the device synchronised before every clock read, reported as
medians. The comparison times one training step (forward, backward, SGD update) of a
denoising + contractive autoencoder in several implementations, in one process:

  products     the five matrix products of the step alone: the floor
  eager        the same objective in plain PyTorch (analytic penalty)
  compile      that function under torch.compile
  jacobian     the penalty the way most contractive-autoencoder code gets it: the
               per-sample Jacobian dh/dx~ from autograd (torch.func), then its norm
  sslkern[b]   sslkern.autoencoder_loss on backend b, for every backend available here,
               then torch.autograd.grad (the drop-in route)
  value_and_grad[b]
               sslkern.autoencoder_value_and_grad on backend b: the same numbers with no
               autograd graph (the route for a loop that applies its own update)
  sgd_step[b]  sslkern.autoencoder_sgd_step on backend b: the objective, its gradients and
               the update in one op (on the CPU, one C++ call; dW is never stored)

Every variant but sgd_step[b] applies the same update: params -= lr * grad (torch._foreach_add_).
"""
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field, replace

import torch

import sslkern
from sslkern.kinds import PRECISIONS

LEARNING_RATE = 0.01
JACOBIAN_BYTES_LIMIT = 2**30  # the B x H x D Jacobian the peer materialises


# ---------------------------------------------------------------------------------------
# Harness


def synchronize(device):
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cuda_event_median_ms(fn, samples=30, warmup=5, calls_per_sample=1):
    """Median GPU time of fn() in ms from CUDA events (no host clock; one sync per sample)."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(samples):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(calls_per_sample):
            fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / calls_per_sample)
    return statistics.median(times)


def wall_median_ms(fn, samples=30, warmup=5, calls_per_sample=1, wait=lambda out: None):
    """Median wall time of fn() in ms, for work CUDA events cannot see (the CPU, another
    framework's stream): wait(last output) ends the warm-up and every sample."""
    out = None
    for _ in range(warmup):
        out = fn()
    wait(out)
    times = []
    for _ in range(samples):
        start = time.perf_counter()
        for _ in range(calls_per_sample):
            out = fn()
        wait(out)
        times.append((time.perf_counter() - start) * 1e3 / calls_per_sample)
    return statistics.median(times)


@dataclass
class Timing:
    median_ms: float
    p10_ms: float
    p90_ms: float
    steps: int


CLOCKS = {
    "wall": time.perf_counter,
    # CPU seconds of this process: with one thread, immune to other processes taking the
    # cores (a shared machine); with several it also counts OpenMP spin-waiting.
    "cpu": time.process_time,
}


def _summary(samples):
    samples = sorted(samples)
    pick = lambda q: samples[min(len(samples) - 1, int(q * len(samples)))]  # noqa: E731
    return Timing(statistics.median(samples), pick(0.1), pick(0.9), len(samples))


def measure(fn, device="cpu", warmup=10, steps=100, max_seconds=None, clock="wall"):
    """Median time of fn() in ms. Synchronises before each clock read; stops early (but
    after at least 5 steps) once max_seconds of timed steps have run."""
    return measure_interleaved({"fn": fn}, device, warmup, steps, max_seconds, clock)["fn"]


def measure_interleaved(fns, device="cpu", warmup=10, steps=100, max_seconds=None, clock="wall",
                        chunk=10, on_round=None):
    """{name: Timing} for several step functions timed in alternation: rounds of `chunk`
    steps of each in turn, so a slow spell of a shared machine lands on all of them
    instead of on whichever ran then (their ratios are what `sslkern bench` reports).
    Synchronises before each clock read; stops early (after at least 5 steps each) once
    max_seconds per function have run."""
    if clock not in CLOCKS:
        raise ValueError(f"clock must be one of {sorted(CLOCKS)}, got {clock!r}")
    if clock == "cpu" and torch.device(device).type != "cpu":
        raise ValueError("clock='cpu' times the host only: use it with device='cpu'")
    now = CLOCKS[clock]
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples = {name: [] for name in fns}
    budget_end = None if max_seconds is None else time.perf_counter() + max_seconds * len(fns)
    timed = 0  # steps each function has had so far
    while timed < steps:
        for name, fn in fns.items():
            for _ in range(min(chunk, steps - timed)):
                synchronize(device)
                start = now()
                fn()
                synchronize(device)
                samples[name].append((now() - start) * 1e3)
        timed = min(len(v) for v in samples.values())
        if on_round is not None:
            on_round(timed)
        if budget_end is not None and timed >= 5 and time.perf_counter() > budget_end:
            break
    return {name: _summary(v) for name, v in samples.items()}


def machine():
    """What the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    try:
        import triton
        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    return {
        "cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "gpu": gpu,
        "python": platform.python_version(), "torch": torch.__version__, "triton": triton_version,
        "sslkern": sslkern.__version__, "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }


# ---------------------------------------------------------------------------------------
# The objective, shapes and one step per implementation


@dataclass(frozen=True)
class Shape:
    batch: int
    visible: int
    hidden: int

    @classmethod
    def parse(cls, text):
        """'256x784x512' -> Shape(256, 784, 512)."""
        try:
            batch, visible, hidden = (int(v) for v in text.lower().split("x"))
        except ValueError:
            raise ValueError(f"shape must look like BxDxH (e.g. 256x784x512), got {text!r}") from None
        if min(batch, visible, hidden) < 1:
            raise ValueError(f"shape needs batch, visible and hidden sizes >= 1, got {text!r}")
        return cls(batch, visible, hidden)

    def __str__(self):
        return f"{self.batch}x{self.visible}x{self.hidden}"


@dataclass(frozen=True)
class Objective:
    corruption: str = "mask"
    level: float = 0.25
    contractive: float = 0.1
    # the extra penalties (sslkern.autoencoder_loss's keywords; 0 switches each off)
    sparsity: float = 0.0
    sparsity_target: float = 0.05
    sparsity_kind: str = "kl"
    higher_order: float = 0.0
    higher_order_sigma: float = 0.1
    higher_order_samples: int = 1
    precision: str = "default"  # the products' precision (sslkern.kinds.PRECISIONS)

    def penalties(self):
        return {name: getattr(self, name) for name in sslkern.nn.PENALTIES}


# `sslkern bench --penalties`: each extra penalty added to the default DAE + CAE objective.
PENALTY_CASES = {
    "hcae": dict(higher_order=0.1, higher_order_sigma=0.1, higher_order_samples=1),
    "kl": dict(sparsity=0.1, sparsity_target=0.05, sparsity_kind="kl"),
    "l1": dict(sparsity=0.1, sparsity_kind="l1"),
}


def make_problem(shape, device="cpu", dtype=torch.float32, seed=0):
    """(x, [W, b, c]) with parameters that require grad."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(shape.batch, shape.visible, generator=gen).to(device, dtype)
    W = (torch.randn(shape.hidden, shape.visible, generator=gen) * 0.01).to(device, dtype)
    b = torch.zeros(shape.hidden).to(device, dtype)
    c = torch.zeros(shape.visible).to(device, dtype)
    return x, [p.requires_grad_() for p in (W, b, c)]


def torch_objective(x, W, b, c, keep, contractive, extra=None):
    """L + lambda P in plain PyTorch, as a PyTorch user writes it (analytic penalty); `extra`
    = (Objective, eps or None) adds the extra penalties the same way."""
    x_tilde = x * keep
    h = torch.sigmoid(x_tilde @ W.t() + b)
    a = h @ W + c
    batch = x.shape[0]
    loss = torch.nn.functional.binary_cross_entropy_with_logits(a, x, reduction="sum") / batch
    s = h * (1 - h)
    norms = (W * W).sum(1)
    penalty = (s * s * norms).sum() / batch
    total = loss + contractive * penalty
    if extra is None:
        return total
    obj, eps = extra
    if obj.sparsity and obj.sparsity_kind == "kl":
        rho, rho_hat = obj.sparsity_target, h.mean(0)
        total = total + obj.sparsity * (rho * torch.log(rho / rho_hat)
                                        + (1 - rho) * torch.log((1 - rho) / (1 - rho_hat))).sum()
    elif obj.sparsity:
        total = total + obj.sparsity * h.abs().sum() / batch
    if obj.higher_order:
        h_noisy = torch.sigmoid((x_tilde + eps) @ W.t() + b)
        delta = s - h_noisy * (1 - h_noisy)
        total = total + obj.higher_order * (delta * delta * norms).sum() / batch
    return total


def jacobian_objective(x, W, b, c, keep, contractive):
    """The peer: reconstruction as above, penalty from the autograd Jacobian dh/dx~."""
    x_tilde = x * keep
    encoder = lambda row: torch.sigmoid(row @ W.t() + b)  # noqa: E731
    jac = torch.func.vmap(torch.func.jacrev(encoder))(x_tilde)  # [B, H, D]
    h = encoder(x_tilde)
    a = h @ W + c
    batch = x.shape[0]
    loss = torch.nn.functional.binary_cross_entropy_with_logits(a, x, reduction="sum") / batch
    return loss + contractive * jac.pow(2).sum() / batch


def _sgd(params, grads):
    with torch.no_grad():
        torch._foreach_add_(params, grads, alpha=-LEARNING_RATE)


def _torch_step(objective_fn, x, params, obj, with_penalties=False):
    level = obj.level if obj.corruption == "mask" else 0.0

    def step():
        keep = (torch.rand_like(x) >= level).to(x.dtype)
        if with_penalties:
            eps = obj.higher_order_sigma * torch.randn_like(x) if obj.higher_order else None
            total = objective_fn(x, *params, keep, obj.contractive, (obj, eps))
        else:
            total = objective_fn(x, *params, keep, obj.contractive)
        _sgd(params, torch.autograd.grad(total, params))
    return step


SSLKERN_ROUTES = ("sslkern", "value_and_grad", "sgd_step")


def sslkern_step(backend, x, params, obj, seed=0, route="sslkern"):
    """One sslkern training step on one of SSLKERN_ROUTES (see the module docstring); every
    call draws fresh counters (offset += B*D)."""
    counter = {"offset": 0}
    stride = x.numel() * (1 + (obj.higher_order_samples if obj.higher_order else 0))
    W, b, c = params

    def step():
        options = dict(corruption=obj.corruption, level=obj.level, contractive=obj.contractive,
                       seed=seed, offset=counter["offset"], precision=obj.precision, **obj.penalties())
        with sslkern.use_backend(backend):
            if route == "sgd_step":
                sslkern.autoencoder_sgd_step(x, W, b, c, lr=LEARNING_RATE, **options)
            elif route == "value_and_grad":
                _sgd(params, sslkern.autoencoder_value_and_grad(x, W, b, c, **options)[1])
            else:
                _sgd(params, torch.autograd.grad(sslkern.autoencoder_loss(x, W, b, c, **options), params))
        counter["offset"] = (counter["offset"] + stride) % 2**32
    return step


def products_step(x, params, dtype=None):
    """The five products of a step, into preallocated outputs: x~Wᵀ, hW, dA Wᵀ, hᵀdA, dZᵀx~
    (in `dtype`, e.g. bf16: the floor of a rounded precision)."""
    W = params[0].detach()
    if dtype is not None:
        x, W = x.to(dtype), W.to(dtype)
    batch, hidden = x.shape[0], W.shape[0]
    h, d_a = x.new_empty(batch, hidden), torch.empty_like(x)
    d_z, dW, dW2 = x.new_empty(batch, hidden), torch.empty_like(W), torch.empty_like(W)

    def step():
        torch.mm(x, W.t(), out=h)
        torch.mm(h, W, out=d_a)
        torch.mm(d_a, W.t(), out=d_z)
        torch.mm(h.t(), d_a, out=dW)
        torch.mm(d_z.t(), x, out=dW2)
    return step


def sslkern_backends(device):
    """Backends available here that can run on `device` (triton only on CUDA: on the CPU it
    runs through the interpreter, a correctness tool)."""
    names = []
    for name in sslkern.available_backends():
        if name == "triton" and torch.device(device).type != "cuda":
            continue
        if not sslkern.backends.reasons(name, torch.device(device), torch.float32):
            names.append(name)
    return names


def variants(shape, device, obj, include=None, precisions=("default",)):
    """{name: zero-argument builder of a step function} for this shape. Each precision other
    than the default adds its products floor and sslkern routes, named with "@precision"."""
    table = {"products": None, "eager": None, "compile": None}
    for precision in precisions:
        suffix = "" if precision == "default" else f"@{precision}"
        if suffix:
            table["products" + suffix] = precision
        for route in SSLKERN_ROUTES:
            table.update({f"{route}[{name}]{suffix}": (route, name, precision)
                          for name in sslkern_backends(device)})
    jac_bytes = shape.batch * shape.hidden * shape.visible * 4
    if jac_bytes <= JACOBIAN_BYTES_LIMIT:
        table["jacobian"] = None
    names = [n for n in table if include is None or n in include or n.split("[")[0].split("@")[0] in include]

    def build(name):
        x, params = make_problem(shape, device)
        if name == "products":
            return products_step(x, params)
        if name.startswith("products@"):
            return products_step(x, params, getattr(torch, PRECISIONS[table[name]].operands))
        if name == "eager":
            return _torch_step(torch_objective, x, params, obj)
        if name == "compile":
            return _torch_step(torch.compile(torch_objective), x, params, obj)
        if name == "jacobian":
            return _torch_step(jacobian_objective, x, params, obj)
        route, backend, precision = table[name]
        return sslkern_step(backend, x, params, replace(obj, precision=precision), route=route)
    return names, build


def penalty_variants(shape, device, obj, backend="native"):
    """{name: step function} for `sslkern bench --penalties`: the plain objective on sslkern's
    fused step, then per PENALTY_CASES entry the same step with it and that objective in plain
    PyTorch, eager and compiled; the five products as the floor."""
    def problem():
        return make_problem(shape, device)

    steps = {"products": products_step(*problem())}
    steps[f"sgd_step[{backend}]"] = sslkern_step(backend, *problem(), obj, route="sgd_step")
    for case, penalties in PENALTY_CASES.items():
        with_case = replace(obj, **penalties)
        steps[f"sgd_step[{backend}] +{case}"] = sslkern_step(backend, *problem(), with_case, route="sgd_step")
        steps[f"eager +{case}"] = _torch_step(torch_objective, *problem(), with_case, with_penalties=True)
        steps[f"compile +{case}"] = _torch_step(torch.compile(torch_objective), *problem(), with_case,
                                                with_penalties=True)
    return steps


def compare_penalties(shapes, device="cpu", obj=Objective(), backend="native", warmup=10, steps=100,
                      max_seconds=20.0, clock="wall"):
    """Results of penalty_variants at every shape, timed interleaved; ratios against the plain
    step ("x_plain"), the floor, and the same penalty in eager and compiled PyTorch."""
    results = []
    for shape in shapes:
        timings = measure_interleaved(penalty_variants(shape, device, obj, backend), device, warmup=warmup,
                                      steps=steps, max_seconds=max_seconds, clock=clock)
        plain = timings[f"sgd_step[{backend}]"].median_ms
        for name, timing in timings.items():
            result = Result(str(shape), name, timing)
            result.ratios["x_plain"] = timing.median_ms / plain
            result.ratios["x_floor"] = timing.median_ms / timings["products"].median_ms
            case = name.split("+")[-1] if "+" in name else None
            if case is not None and name.startswith("sgd_step"):
                for base in ("eager", "compile"):
                    result.ratios[f"speedup_vs_{base}"] = timings[f"{base} +{case}"].median_ms / timing.median_ms
            results.append(result)
    return results


def penalty_table(results):
    lines = ["| shape BxDxH | variant | median ms | × plain step | × floor | vs eager | vs compile |",
             "|---|---|---:|---:|---:|---:|---:|"]
    fmt = lambda v: "" if v is None else f"{v:.2f}"  # noqa: E731
    for r in results:
        lines.append(f"| {r.shape} | {r.variant} | {r.timing.median_ms:.3f} | {fmt(r.ratios.get('x_plain'))} | "
                     f"{fmt(r.ratios.get('x_floor'))} | {fmt(r.ratios.get('speedup_vs_eager'))} | "
                     f"{fmt(r.ratios.get('speedup_vs_compile'))} |")
    return "\n".join(lines)


@dataclass
class Result:
    shape: str
    variant: str
    timing: Timing = None
    skipped: str = None
    ratios: dict = field(default_factory=dict)


def compare(shapes, device="cpu", obj=Objective(), warmup=10, steps=100, max_seconds=20.0,
            include=None, progress=True, clock="wall", precisions=("default",)):
    """Times every variant at every shape (interleaved within a shape, see
    measure_interleaved); returns a list of Result."""
    from tqdm import tqdm

    results = []
    bar = tqdm(total=len(shapes) * steps, desc="sslkern bench", unit="step", disable=not progress,
               file=sys.stderr)
    for shape in shapes:
        names, build = variants(shape, device, obj, include, precisions)
        fast = [n for n in names if n != "jacobian"]  # the peer is slow: timed on its own
        bar.set_postfix_str(str(shape))
        done = bar.n

        def advance(count, done=done):
            bar.update(done + count - bar.n)

        timings = measure_interleaved({n: build(n) for n in fast}, device, warmup=warmup, steps=steps,
                                      max_seconds=max_seconds, clock=clock, on_round=advance)
        if "jacobian" in names:
            timings["jacobian"] = measure(build("jacobian"), device, warmup=2, steps=steps,
                                          max_seconds=max_seconds, clock=clock)
        results += [Result(str(shape), n, timings[n]) for n in names]
        bar.update(done + steps - bar.n)
    bar.close()
    _add_ratios(results)
    return results


def _add_ratios(results):
    by_shape = {}
    for r in results:
        by_shape.setdefault(r.shape, {})[r.variant] = r.timing.median_ms
    for r in results:
        ref = by_shape[r.shape]
        me = r.timing.median_ms
        if "products" in ref:
            r.ratios["x_floor"] = me / ref["products"]
        for base in ("eager", "compile"):
            if base in ref:
                r.ratios[f"speedup_vs_{base}"] = ref[base] / me


def table(results):
    """A Markdown table: median ms, ratio to the products-only floor, speedups."""
    lines = ["| shape BxDxH | variant | median ms | p10-p90 ms | steps | × floor | vs eager | vs compile |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    fmt = lambda v: "" if v is None else f"{v:.2f}"  # noqa: E731
    for r in results:
        t = r.timing
        lines.append(f"| {r.shape} | {r.variant} | {t.median_ms:.3f} | {t.p10_ms:.2f}-{t.p90_ms:.2f} | "
                     f"{t.steps} | {fmt(r.ratios.get('x_floor'))} | {fmt(r.ratios.get('speedup_vs_eager'))} | "
                     f"{fmt(r.ratios.get('speedup_vs_compile'))} |")
    return "\n".join(lines)


def to_json(results, command=None, settings=None):
    return json.dumps({"machine": machine(), "command": command, "settings": settings or {},
                       "results": [asdict(r) for r in results]}, indent=2)


def plot(results, path, title="training step"):
    """Grouped bars, one group per shape, log-scale milliseconds."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shapes = list(dict.fromkeys(r.shape for r in results))
    names = list(dict.fromkeys(r.variant for r in results))
    width = 0.8 / max(len(names), 1)
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(shapes) * len(names) / 3), 4.5))
    for k, name in enumerate(names):
        xs, ys = [], []
        for i, shape in enumerate(shapes):
            for r in results:
                if r.shape == shape and r.variant == name:
                    xs.append(i + (k - (len(names) - 1) / 2) * width)
                    ys.append(r.timing.median_ms)
        ax.bar(xs, ys, width, label=name)
    ax.set_xticks(range(len(shapes)), shapes)
    ax.set_xlabel("batch × visible × hidden")
    ax.set_yscale("log")
    ax.set_ylabel("median ms per step (log)")
    info = machine()
    ax.set_title(f"{title}: {info['gpu'] or info['cpu']} ({info['cores']} cores), torch {info['torch']}")
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---------------------------------------------------------------------------------------
# The pretext generators against a plain copy of the same batch


def pretext_generators(x, image_shape):
    """{name: fn} for each generator of sslkern.pretext on x (rotations only for square
    images), through the public API with its default arguments (jigsaw: the 24 permutations of
    a 2x2 grid, relative patches: 8-pixel patches 2 apart, or the largest that fit)."""
    from . import pretext

    height, width = image_shape
    patch = min(8, (min(height, width) - 4) // 3) if min(height, width) >= 7 else 1
    gap = 2 if 3 * patch + 4 <= min(height, width) else 0
    grid = (2, 2) if min(height, width) >= 2 else (1, 1)
    permutations = pretext.default_permutations(grid, device=x.device)
    fns = {}
    if height == width:
        fns["rotations"] = lambda: pretext.rotations(x, image_shape, seed=1)
    fns["jigsaw"] = lambda: pretext.jigsaw_checked(x, image_shape, grid, permutations, seed=1)
    fns["relative_patches"] = lambda: pretext.relative_patches(x, image_shape, patch=patch, gap=gap, seed=1)
    return fns


def pretext_backends(device):
    """The backends with pretext kernels that run on `device` here (triton on CUDA only)."""
    from .ops import pretext as pretext_ops

    names = []
    for name in sslkern_backends(device):
        try:
            pretext_ops.implementation_for(name, torch.device(device), torch.float32)
        except sslkern.BackendError:
            continue
        names.append(name)
    return names


def compare_pretext(batch, image_shape, device="cpu", warmup=20, steps=500, max_seconds=10.0, clock="wall"):
    """[{"backend", "variant", "timing", "x_copy"}]: each generator on each backend, timed
    interleaved with x.clone() of the same batch (the copy's own rows have x_copy 1)."""
    x = torch.rand(batch, image_shape[0] * image_shape[1], device=device)
    rows = []
    for name in pretext_backends(device):
        fns = dict(copy=lambda: x.clone(), **pretext_generators(x, image_shape))
        with sslkern.use_backend(name):  # around the whole measurement: no per-call cost
            timings = measure_interleaved(fns, device, warmup, steps, max_seconds, clock)
        copy = timings["copy"].median_ms
        rows += [{"backend": name, "variant": variant, "timing": t, "x_copy": t.median_ms / copy}
                 for variant, t in timings.items()]
    return rows


def pretext_table(rows, batch, image_shape):
    lines = ["| B x H x W | backend | variant | median µs | p10-p90 µs | × x.clone() |",
             "|---|---|---|---:|---:|---:|"]
    shape = f"{batch}x{image_shape[0]}x{image_shape[1]}"
    for r in rows:
        t = r["timing"]
        lines.append(f"| {shape} | {r['backend']} | {r['variant']} | {t.median_ms * 1e3:.1f} | "
                     f"{t.p10_ms * 1e3:.1f}-{t.p90_ms * 1e3:.1f} | {r['x_copy']:.2f} |")
    return "\n".join(lines)
