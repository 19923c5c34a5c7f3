"""benchmarks/gpu_check.py before a GPU runs it: the dry run end to end (sections, order,
budget, JSON), the no-CUDA exit, targets(), and the jax.jit baseline against the torch objective.

The script runs in subprocesses with no visible CUDA device: the dry run is the CPU's check.
"""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


def load_benchmark_module(name):
    """A benchmarks/ module by path (benchmarks/ is not a package and stays off sys.path)."""
    spec = importlib.util.spec_from_file_location(f"_sslkern_bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gpu_check = load_benchmark_module("gpu_check")


def run_script(*args, timeout=120):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    env.pop("OUT", None)
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def dry_run(tmp_path, *args):
    pytest.importorskip("triton")
    out = tmp_path / "dry.json"
    proc = run_script("--dry-run", "--json", str(out), *args)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return json.loads(out.read_text()), proc.stdout


def jax_importable():
    try:
        import jax  # noqa: F401
    except ImportError:
        return False
    return True


def test_without_cuda_the_script_says_so_and_exits_1():
    proc = run_script()
    assert proc.returncode == 1
    assert "no CUDA device" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_dry_run_runs_every_section_in_order(tmp_path):
    result, stdout = dry_run(tmp_path, "--budget-s", "50", "--skip-tests", "--skip-max-autotune")
    plan = gpu_check.DRY_PLAN
    mnist_rows = [f"step {shape} float32" for shape in plan.mnist_shapes]
    big_row = f"step {plan.big_shape} bfloat16"
    names = ["build", "tests", "graph rng", "graphed noisy fit", *mnist_rows, "corrupt", big_row,
             "native paths", "pretext", "bench cli", "compile default", "compile max-autotune"]
    status = {s["name"]: s["status"] for s in result["sections"]}
    assert [s["name"] for s in result["sections"]] == names
    for name in ("build", "graph rng", "graphed noisy fit", "native paths"):
        assert status[name] == gpu_check.DRY_SKIP
    assert status["tests"] == "skipped (--skip-tests)"
    assert status["compile max-autotune"] == "skipped (--skip-max-autotune)"
    assert status[mnist_rows[0]] == "done"
    # what runs late may meet the budget on a slow machine; it must never crash
    assert all(status[name] in ("done", gpu_check.BUDGET_SKIP)
               for name in (*mnist_rows[1:], "corrupt", big_row, "pretext", "bench cli", "compile default"))
    if status["bench cli"] == "done":  # `sslkern bench` as a user runs it, both precisions
        cli = result["bench_cli"]
        # sgd_step on whichever backends load where the script runs (an unbuilt checkout: reference)
        assert cli["exit_code"] == 0 and any("sgd_step[" in line and "@bf16" in line for line in cli["table"])

    first = result["steps"][0]
    assert (first["shape"], first["dtype"]) == (list(plan.mnist_shapes[0]), "float32")
    cells = first["ms"]
    assert isinstance(cells["eager"], float) and isinstance(cells["sslkern[triton]"], float)
    assert isinstance(cells["sgd_step[triton] precision bf16"], float)
    assert cells["sslkern[triton] cuda-graph"] == gpu_check.DRY_SKIP
    assert isinstance(cells["jax.jit"], float) if jax_importable() else cells["jax.jit"] == gpu_check.NO_JAX
    errors = [(row["shape"], k, v) for row in result["steps"] for k, v in row["ms"].items()
              if str(v).startswith("error")]
    assert not errors
    assert result["dry_run"] and result["failed"] == [] and result["targets"]
    assert "DRY RUN" in stdout and "targets:" in stdout


def test_a_tiny_budget_skips_the_sections_and_records_them(tmp_path):
    result, stdout = dry_run(tmp_path, "--budget-s", "1")
    budgeted = [s["name"] for s in result["sections"] if s["status"] == gpu_check.BUDGET_SKIP]
    # every section that runs on the CPU costs more than a 1 s budget
    assert budgeted == [s["name"] for s in result["sections"] if s["status"] != gpu_check.DRY_SKIP]
    assert budgeted[:2] == ["tests", f"step {gpu_check.DRY_PLAN.mnist_shapes[0]} float32"]
    assert result["skipped_for_budget"] == budgeted
    assert result["tests"] == gpu_check.BUDGET_SKIP and result["steps"] == []
    assert "skipped for budget" in stdout


def test_targets_report_met_and_missed():
    result = {"steps": [
        {"shape": [128, 784, 512], "dtype": "float32",
         "ms": {"eager": 1.0, "jax.jit": 0.2, "compile max-autotune": 0.25, "sslkern[triton]": 0.25,
                "sgd_step[triton]": 0.2, "sslkern[triton] cuda-graph": "skipped (budget)",
                "sslkern[native]": 0.01}},  # native is not a triton route: not the best
        {"shape": [1024, 784, 1024], "dtype": "float32", "ms": {"eager": "error: x", "jax.jit": 2.0,
                                                                 "sslkern[triton]": 1.0}},
        {"shape": [8192, 4096, 4096], "dtype": "bfloat16", "ms": {"sslkern[triton]": 3.0}}],
        "corrupt": {"ratio": 0.9}}
    got = {t["target"]: t for t in gpu_check.targets(result, peak=989e12)}
    assert got["[128, 784, 512] >= 4.0x eager"] == {"target": "[128, 784, 512] >= 4.0x eager", "speedup": 5.0,
                                                   "met": True}
    assert not got["[128, 784, 512] >= 1.5x compile max-autotune"]["met"]  # 0.25 / 0.2
    assert not got["[128, 784, 512] >= 1.5x jax.jit"]["met"]
    assert got["[1024, 784, 1024] >= 1.5x jax.jit"]["met"]
    assert "[1024, 784, 1024] >= 4.0x eager" not in got  # an error cell sets no target
    bf16 = got["[8192, 4096, 4096] bf16 >= 60% of 989 TFLOP/s"]
    assert bf16["tflops"] == pytest.approx(458.1, abs=0.1) and not bf16["met"]
    assert got["corrupt >= 85% of D2D copy bandwidth"]["met"]
    assert {t["met"] for t in got.values()} == {True, False}


def x64(jax):
    if hasattr(jax, "enable_x64"):
        return jax.enable_x64(True)
    from jax.experimental import enable_x64  # older jax
    return enable_x64()


def test_jax_objective_and_step_match_torch():
    """Same mask, float64, an awkward shape: value, gradients and the SGD update agree."""
    jax = pytest.importorskip("jax")
    jax_baseline = load_benchmark_module("jax_baseline")
    import numpy as np

    batch, visible, hidden = 7, 13, 5
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(batch, visible, generator=gen, dtype=torch.float64)
    params = [torch.randn(hidden, visible, generator=gen, dtype=torch.float64) / 3,
              0.1 * torch.randn(hidden, generator=gen, dtype=torch.float64),
              0.1 * torch.randn(visible, generator=gen, dtype=torch.float64)]
    with x64(jax):
        key = jax.random.PRNGKey(3)
        _, mask_key = jax.random.split(key)  # the step draws its mask from the second half
        keep = jax_baseline.draw_keep_mask(mask_key, (batch, visible), gpu_check.LEVEL)
        leaves = [p.clone().requires_grad_() for p in params]
        loss = gpu_check.masked_objective(x, torch.from_numpy(np.array(keep)), *leaves)
        grads = torch.autograd.grad(loss, leaves)

        jax_params = tuple(jax.numpy.asarray(p.numpy()) for p in params)
        jax_x = jax.numpy.asarray(x.numpy())
        value, jax_grads = jax.value_and_grad(jax_baseline.masked_objective)(jax_params, jax_x, keep,
                                                                             gpu_check.CONTRACTIVE)
        step = jax_baseline.make_step(gpu_check.LEVEL, gpu_check.CONTRACTIVE, gpu_check.LR)
        stepped, _, step_loss = step(jax_params, jax_x, key)

        assert float(value) == pytest.approx(loss.item(), rel=1e-12)
        assert float(step_loss) == pytest.approx(loss.item(), rel=1e-12)
        for ours, theirs, param, new in zip(grads, jax_grads, params, stepped):
            assert theirs.dtype == np.float64
            np.testing.assert_allclose(np.asarray(theirs), ours.numpy(), rtol=1e-10, atol=1e-13)
            np.testing.assert_allclose(np.asarray(new), (param - gpu_check.LR * ours).numpy(), rtol=1e-12,
                                       atol=1e-15)
