"""GPU check of the native CUDA backend: correctness tests, then one training step timed beside
the other backends, on both kernel paths (compiled by nvcc, compiled at run time by NVRTC).

    python benchmarks/gpu_check_native.py [--json results.json] [--skip-tests]

benchmarks/gpu_check.py imports `check()` and `time_steps()`. The printed table is what
sslkern/backends/cuda_auto.py's RULES are written from.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SHAPES = [(128, 784, 512), (1024, 784, 1000), (4096, 1024, 1024), (4096, 2048, 2048)]
STEP = dict(encoder="sigmoid", decoder="sigmoid", loss="bce", corruption="mask", level=0.25,
            contractive=0.1, seed=0, offset=0)


def check():
    """Runs tests/test_native_cuda.py (every path that is available); returns pytest's exit code."""
    return subprocess.call([sys.executable, "-m", "pytest", "-q", "-x", str(ROOT / "tests" / "test_native_cuda.py")],
                           cwd=ROOT)


def _median_ms(fn, warmup=5, repeat=30):
    from sslkern.bench import cuda_event_median_ms

    return cuda_event_median_ms(fn, repeat, warmup)


def _variants():
    """(label, backend name, native CUDA path or None) for everything that can run here."""
    import sslkern
    from sslkern import _cuda_runtime as runtime

    out = []
    for path in runtime.PATHS:
        if runtime.open_kernels(path)[0] is not None:
            out.append((f"native[{path}]", "native", path))
    out += [(name, name, None) for name in ("triton", "reference") if name in sslkern.available_backends()]
    return out


def time_steps(shapes=SHAPES, dtype=torch.float32):
    """Median ms of one training step (forward + backward) per shape and backend."""
    import sslkern
    from sslkern import backends
    from sslkern.backends.native_cuda import NativeCudaEpilogues

    native_cuda = backends.get("native").parts["cuda"]
    default_epilogues = native_cuda.ep
    rows = []
    for batch, visible, hidden in shapes:
        gen = torch.Generator(device="cuda").manual_seed(0)
        x = torch.rand(batch, visible, device="cuda", dtype=dtype, generator=gen)
        W = (0.01 * torch.randn(hidden, visible, device="cuda", dtype=dtype, generator=gen)).requires_grad_()
        b = torch.zeros(hidden, device="cuda", dtype=dtype, requires_grad=True)
        c = torch.zeros(visible, device="cuda", dtype=dtype, requires_grad=True)
        row = {"batch": batch, "visible": visible, "hidden": hidden}
        for label, name, path in _variants():
            native_cuda.ep = NativeCudaEpilogues(path) if path else default_epilogues

            def step():
                loss = sslkern.autoencoder_loss(x, W, b, c, **STEP)
                torch.autograd.grad(loss, (W, b, c))

            try:
                with sslkern.use_backend(name):
                    row[label] = round(_median_ms(step), 4)
            except Exception as exc:  # report and go on: one broken backend must not hide the rest
                row[label] = f"error: {type(exc).__name__}: {exc}"[:200]
        native_cuda.ep = default_epilogues
        rows.append(row)
        print(row, flush=True)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the results here (default: $OUT/native_cuda.json when $OUT is set)")
    parser.add_argument("--skip-tests", action="store_true")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("no CUDA device: this check runs on the GPU machine")
    import sslkern

    status = 0 if args.skip_tests else check()
    result = {"machine": torch.cuda.get_device_name(), "python": platform.python_version(),
              "torch": torch.__version__, "sslkern": sslkern.__version__, "info": sslkern.info(),
              "tests_exit_code": status, "step_ms_fp32": time_steps()}
    target = args.json or (os.path.join(os.environ["OUT"], "native_cuda.json") if os.environ.get("OUT") else None)
    if target:
        Path(target).write_text(json.dumps(result, indent=1, default=str))
    sys.exit(status)


if __name__ == "__main__":
    main()
