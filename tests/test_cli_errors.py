"""The CLI answers user errors in one line on stderr with exit status 2 and no traceback,
checked before any work starts; real bugs still show their traceback. In-process through
sslkern.cli.main (fast); two end-to-end checks in a subprocess."""
import os
import subprocess
import sys

import pytest
import torch

import sslkern
from sslkern import cli
from sslkern.commands import _args


def run_cli(argv, capsys):
    """(exit status, stdout, stderr) of `sslkern argv...` in this process."""
    try:
        status = cli.main(argv)
    except SystemExit as exc:
        status = exc.code
    out, err = capsys.readouterr()
    return status, out, err


def assert_one_line_usage_error(status, err, *fragments):
    assert status == 2, err
    assert "Traceback" not in err
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture
def no_benchmark(monkeypatch):
    """Fails the test if the benchmark starts: every probe must be answered before it."""
    from sslkern import bench

    def refuse(*args, **kwargs):
        raise AssertionError("the benchmark ran before the error was reported")

    monkeypatch.setattr(bench, "compare", refuse)


NO_CUDA = not torch.cuda.is_available()
BENCH_PROBES = [
    (["--shapes", "3x4"], "--shapes", "BxDxH"),
    (["--shapes", "0x784x512"], "--shapes", ">= 1"),
    (["--shapes", "32x784x512", "axbxc"], "--shapes", "'axbxc'"),
    (["--steps", "-1"], "--steps", "'-1'"),
    (["--steps", "0"], "--steps", ">= 1"),
    (["--steps", "ten"], "--steps", "'ten'"),
    (["--warmup", "-1"], "--warmup", ">= 0"),
    (["--max-seconds", "nan"], "--max-seconds", "finite"),
    (["--max-seconds", "0"], "--max-seconds", "> 0"),
    (["--variants", "bogus"], "--variants", "'bogus'"),
    (["--variants", "sgd_step[bogus]"], "--variants", "sgd_step[bogus]"),
    (["--variants", "eager[native]"], "--variants", "eager[native]"),
    (["--level", "2"], "--level", "[0, 1]"),
    (["--level", "-0.1"], "--level", "[0, 1]"),
    (["--contractive", "-1"], "--contractive", ">= 0"),
    (["--contractive", "inf"], "--contractive", "finite"),
    (["--threads", "-2"], "--threads", ">= 0"),
    (["--device", "gpu0"], "--device", "'gpu0'"),
    (["--device", "meta"], "--device", "'meta'"),
    (["--corruption", "gaussian"], "--corruption", "gaussian"),
    (["--clock", "sundial"], "--clock", "sundial"),
    (["--json", "/nonexistent-folder/results.json"], "--json", "does not exist"),
    (["--plot", "/nonexistent-folder/plot.png"], "--plot", "does not exist"),
    (["--unknown-flag"], "unrecognized arguments", "--unknown-flag"),
]
if NO_CUDA:
    BENCH_PROBES.append((["--device", "cuda"], "--device", "CUDA"))
    BENCH_PROBES.append((["--device", "cuda:1"], "--device", "CUDA"))


@pytest.mark.parametrize("argv,flag,says", BENCH_PROBES, ids=[" ".join(p[0]) for p in BENCH_PROBES])
def test_bench_probe_answers_in_one_line(argv, flag, says, capsys, no_benchmark):
    status, out, err = run_cli(["bench", *argv], capsys)
    assert_one_line_usage_error(status, err, "sslkern bench: error:", flag, says)
    assert out == ""


def test_bench_json_into_a_folder(tmp_path, capsys, no_benchmark):
    status, _, err = run_cli(["bench", "--json", str(tmp_path)], capsys)
    assert_one_line_usage_error(status, err, "--json", "is a folder")


def test_bench_json_under_a_file(tmp_path, capsys, no_benchmark):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    status, _, err = run_cli(["bench", "--json", str(blocker / "out.json")], capsys)
    assert_one_line_usage_error(status, err, "--json")


def test_bench_json_unwritable_folder(tmp_path, capsys, no_benchmark):
    if os.geteuid() == 0:  # root writes anywhere: a read-only file system is the unwritable place
        target = "/proc/sslkern-results.json"
    else:
        folder = tmp_path / "ro"
        folder.mkdir(mode=0o500)
        target = str(folder / "out.json")
    status, _, err = run_cli(["bench", "--json", target], capsys)
    assert_one_line_usage_error(status, err, "--json", "cannot write")


def test_bench_plot_without_matplotlib_names_the_extra(tmp_path, capsys, monkeypatch, no_benchmark):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    status, _, err = run_cli(["bench", "--shapes", "2x3x4", "--plot", str(tmp_path / "p.png")], capsys)
    assert_one_line_usage_error(status, err, "--plot", "matplotlib", "sslkern[plot]")


@pytest.mark.skipif(not NO_CUDA or "triton" not in sslkern.available_backends(), reason="triton on CPU only")
def test_bench_variants_that_select_nothing_here(capsys, no_benchmark):
    status, _, err = run_cli(["bench", "--shapes", "2x3x4", "--variants", "sgd_step[triton]"], capsys)
    assert_one_line_usage_error(status, err, "--variants", "selects nothing", "sgd_step[native]")


def test_bench_runs_and_writes_json(tmp_path, capsys):
    """The validated flags still reach the benchmark (a tiny one)."""
    out_file = tmp_path / "r.json"
    status, out, err = run_cli(["bench", "--shapes", "2x3x4", "--steps", "5", "--warmup", "0",
                                "--max-seconds", "0.5", "--variants", "products", "sgd_step",
                                "--no-progress", "--json", str(out_file)], capsys)
    assert status == 0, err
    assert "| 2x3x4 | products |" in out
    import json

    saved = json.loads(out_file.read_text(encoding="utf-8"))
    assert saved["settings"]["shapes"] == ["2x3x4"] and saved["results"]


def test_info_probe_answers_in_one_line(capsys):
    status, _, err = run_cli(["info", "--verbose"], capsys)
    assert_one_line_usage_error(status, err, "sslkern info: error: unrecognized arguments: --verbose")


def test_unknown_command(capsys):
    status, _, err = run_cli(["bogus"], capsys)
    assert_one_line_usage_error(status, err, "invalid choice: 'bogus'")


def test_version_and_help_still_work(capsys):
    status, out, _ = run_cli(["--version"], capsys)
    assert status == 0 and out.strip() == f"sslkern {sslkern.__version__}"
    status, out, _ = run_cli(["bench", "--help"], capsys)
    assert status == 0 and "--shapes" in out


# --- the top-level handler: user errors in one line, bugs with their traceback -------------


@pytest.fixture
def info_runs(monkeypatch):
    """Makes `sslkern info` run the function given instead."""
    from sslkern.commands import info

    def install(fn):
        monkeypatch.setattr(info, "run", lambda args: fn())
    return install


def test_usage_error_from_a_command(info_runs, capsys):
    def fail():
        raise _args.UsageError("--thing needs another thing")
    info_runs(fail)
    status, _, err = run_cli(["info"], capsys)
    assert_one_line_usage_error(status, err, "sslkern info: error: --thing needs another thing")


def test_sslkern_validation_error_is_a_user_error(info_runs, capsys):
    info_runs(lambda: sslkern.philox_uniform(-1, seed=0))
    status, _, err = run_cli(["info"], capsys)
    assert_one_line_usage_error(status, err, "sslkern info: error:", "n must be")


def test_registered_op_guard_is_a_user_error(info_runs, capsys):
    info_runs(lambda: torch.ops.sslkern.linear_act(torch.rand(2, 3), torch.rand(4, 3), torch.rand(1),
                                                   "sigmoid", True, "auto"))
    status, _, err = run_cli(["info"], capsys)
    assert_one_line_usage_error(status, err, "bias has shape (1,)")


def test_missing_input_file_is_a_user_error(info_runs, capsys):
    info_runs(lambda: sslkern.data.load("/nonexistent/images.npy"))
    status, _, err = run_cli(["info"], capsys)
    assert_one_line_usage_error(status, err, "/nonexistent/images.npy")


def test_multi_line_message_becomes_one_line(info_runs, capsys):
    def fail():
        raise sslkern.BackendError("no backend can run:\n  native: no\n  triton: no")
    info_runs(fail)
    status, _, err = run_cli(["info"], capsys)
    assert_one_line_usage_error(status, err, "no backend can run: native: no triton: no")


def test_a_bug_keeps_its_traceback(info_runs):
    info_runs(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        cli.main(["info"])


def test_a_value_error_from_a_builtin_is_a_bug(info_runs):
    """int("abc") inside our code is not a deliberate check: it shows its traceback."""
    info_runs(lambda: int("abc"))
    with pytest.raises(ValueError, match="invalid literal"):
        cli.main(["info"])


def test_a_value_error_from_a_library_is_a_bug(info_runs):
    """Raised inside numpy or torch, not by a check of ours: a bug, with its traceback."""
    import numpy as np

    info_runs(lambda: np.linspace(0, 1, -1))
    with pytest.raises(ValueError, match="must be non-negative"):
        cli.main(["info"])
    info_runs(lambda: torch.zeros(2).view(3))
    with pytest.raises(RuntimeError):
        cli.main(["info"])


def test_sslkern_traceback_shows_user_errors_too(info_runs, monkeypatch):
    monkeypatch.setenv("SSLKERN_TRACEBACK", "1")
    info_runs(lambda: sslkern.philox_uniform(-1, seed=0))
    with pytest.raises(ValueError, match="n must be"):
        cli.main(["info"])


# --- the argument types, for `sslkern train` and others to adopt ----------------------------

GOOD = [
    (_args.positive_int, "3", 3), (_args.nonnegative_int, "0", 0), (_args.seed, str(2**64 - 1), 2**64 - 1),
    (_args.finite_positive_float, "1e-3", 1e-3), (_args.finite_nonnegative_float, "0", 0.0),
    (_args.probability, "1", 1.0), (_args.hidden_sizes, "500,250", [500, 250]), (_args.hidden_sizes, "64", [64]),
    (_args.shape, "2X3x4", "2x3x4"), (_args.backend_name, "auto", "auto"), (_args.backend_name, "reference", "reference"),
    (_args.device, "cpu", "cpu"), (_args.device, "auto", "auto"), (_args.data_source, "mnist-10k", "mnist-10k"),
    (_args.bench_variant, "sgd_step[native]", "sgd_step[native]"), (_args.bench_variant, "eager", "eager"),
]
BAD = [
    (_args.positive_int, "0"), (_args.positive_int, "1.5"), (_args.nonnegative_int, "-1"), (_args.seed, "-1"),
    (_args.seed, str(2**64)), (_args.finite_positive_float, "-1"), (_args.finite_positive_float, "inf"),
    (_args.finite_nonnegative_float, "nan"), (_args.probability, "1.01"), (_args.probability, "x"),
    (_args.hidden_sizes, "abc"), (_args.hidden_sizes, "500,"), (_args.hidden_sizes, "0"), (_args.hidden_sizes, "-5"),
    (_args.shape, "3x4"), (_args.shape, "1x2x3x4"), (_args.backend_name, "bogus"), (_args.device, "gpu0"),
    (_args.data_source, "/nonexistent.npy"), (_args.input_file, "/nonexistent.bin"),
    (_args.output_file, "/nonexistent-folder/x.json"), (_args.output_folder, "/proc/self/status/run"),
]


@pytest.mark.parametrize("convert,text,value", GOOD, ids=[f"{c.__name__}({t})" for c, t, _ in GOOD])
def test_argument_type_accepts(convert, text, value):
    assert convert(text) == value


@pytest.mark.parametrize("convert,text", BAD, ids=[f"{c.__name__}({t})" for c, t in BAD])
def test_argument_type_rejects(convert, text):
    import argparse

    with pytest.raises(argparse.ArgumentTypeError) as raised:
        convert(text)
    assert "\n" not in str(raised.value)


def test_output_folder_for_a_new_run(tmp_path):
    assert _args.output_folder(str(tmp_path / "runs" / "new")) == str(tmp_path / "runs" / "new")
    assert not (tmp_path / "runs").exists()  # checked, not created
    (tmp_path / "file").write_text("x")
    import argparse

    with pytest.raises(argparse.ArgumentTypeError, match="is a file"):
        _args.output_folder(str(tmp_path / "file"))


def test_output_file_leaves_nothing_behind(tmp_path):
    assert _args.output_file(str(tmp_path / "r.json")) == str(tmp_path / "r.json")
    assert list(tmp_path.iterdir()) == []


# --- end to end ----------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [["bench", "--steps", "-1"], ["bench", "--json", "/nonexistent-folder/r.json"]])
def test_end_to_end_one_line_and_status_2(argv, tmp_path):
    done = subprocess.run([sys.executable, "-m", "sslkern", *argv], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and done.stderr.startswith("sslkern bench: error:")
    assert done.stdout == ""


# --- sslkern train ------------------------------------------------------------------------

TRAIN_PROBES = [
    (["--epochs", "-1"], "--epochs"),
    (["--batch-size", "0"], "--batch-size"),
    (["--lr", "nan"], "--lr"),
    (["--hidden", "abc"], "--hidden"),
    (["--backend", "bogus"], "--backend"),
    (["--data", "missing.npy"], "--data"),
    (["--corruption", "bogus"], "--corruption"),
    (["--seed", "-1"], "--seed"),
    (["--threads", "-2"], "--threads"),
    (["--checkpoint-every", "0"], "--checkpoint-every"),
    (["--resume"], "--resume needs --out"),
    (["--new-data", "--out", "x"], "--new-data goes with --resume"),
] + ([(["--device", "cuda"], "--device")] if NO_CUDA else [])


@pytest.fixture
def no_training(monkeypatch):
    """Fails the test if training starts: every probe must be answered before it."""
    from sslkern import train

    def refuse(*args, **kwargs):
        raise AssertionError("training started before the error was reported")

    monkeypatch.setattr(train, "fit", refuse)


@pytest.mark.parametrize("argv,says", TRAIN_PROBES, ids=[" ".join(p[0]) for p in TRAIN_PROBES])
def test_train_probe_answers_in_one_line(argv, says, capsys, no_training, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status, _, err = run_cli(["train", *argv], capsys)
    assert_one_line_usage_error(status, err, says)


def test_train_level_out_of_range_and_two_widths(capsys, no_training, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status, _, err = run_cli(["train", "--level", "2", "--out", "r"], capsys)
    assert_one_line_usage_error(status, err, "level must be in [0, 1]")
    status, _, err = run_cli(["train", "--model", "ae", "--hidden", "5,6", "--out", "r"], capsys)
    assert_one_line_usage_error(status, err, "--hidden takes one width")


def test_train_out_under_a_file(capsys, no_training, tmp_path):
    (tmp_path / "f").write_text("x")
    status, _, err = run_cli(["train", "--out", str(tmp_path / "f")], capsys)
    assert_one_line_usage_error(status, err, "--out")


def _tiny_data(tmp_path):
    import numpy as np

    path = tmp_path / "tiny.npy"
    np.save(path, np.random.default_rng(0).random((40, 16), dtype=np.float32))
    return str(path)


def test_train_garbage_data_file(capsys, tmp_path):
    path = tmp_path / "garbage.npy"
    path.write_bytes(b"not numpy at all")
    status, _, err = run_cli(["train", "--data", str(path), "--out", str(tmp_path / "r")], capsys)
    assert_one_line_usage_error(status, err, "garbage.npy")


def test_train_resume_with_another_width_and_another_run(capsys, tmp_path):
    """Unlabelled data trains (the closing line has no probe); a resume with another --hidden,
    or a new run into a folder holding one, is refused in one line."""
    data, out = _tiny_data(tmp_path), str(tmp_path / "run")
    common = ["train", "--data", data, "--epochs", "1", "--batch-size", "8", "--no-progress", "--out", out]
    status, printed, err = run_cli([*common, "--hidden", "4"], capsys)
    assert status == 0, err
    assert "linear probe" not in printed and printed.startswith(f"wrote {out}")
    status, _, err = run_cli([*common, "--hidden", "5", "--resume"], capsys)
    assert_one_line_usage_error(status, err, "different model", "n_hidden")
    status, _, err = run_cli([*common, "--hidden", "4"], capsys)
    assert_one_line_usage_error(status, err, "already holds checkpoints")
