"""Bad input fails early with an error that names the argument; odd but valid input
(non-contiguous views, NaN, an empty batch) behaves as documented; info() and the CLI."""
import json
import subprocess
import sys

import pytest
import torch

import sslkern
from sslkern import backends

B, D, H = 3, 5, 4
# Tests that run an op on each backend use CUDA tensors where there is CUDA (triton needs them).
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def params(dtype=torch.float32, device="cpu"):
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(B, D, generator=gen)
    W = torch.randn(H, D, generator=gen) * 0.5
    b, c = torch.randn(H, generator=gen) * 0.1, torch.randn(D, generator=gen) * 0.1
    return [t.to(dtype=dtype, device=device) for t in (x, W, b, c)]


# --- shapes, dtypes and devices ---------------------------------------------------------

def _shape_cases():
    x, W, b, c = params()
    h = torch.rand(B, H)
    return [
        ("x", lambda: sslkern.encode(x[0], W, b)),
        ("W", lambda: sslkern.encode(x, W[0], b)),
        ("b", lambda: sslkern.encode(x, W, b[None])),
        ("x", lambda: sslkern.encode(x[:, :-1], W, b)),
        ("b", lambda: sslkern.encode(x, W, b[:-1])),
        ("h", lambda: sslkern.decode(x, W, c)),
        ("c", lambda: sslkern.decode(h, W, c[:-1])),
        ("c", lambda: sslkern.decode(h, W, c[None])),
        ("x", lambda: sslkern.contractive_penalty(x.T, W, b)),
        ("b", lambda: sslkern.contractive_penalty(x, W, c)),
        ("x", lambda: sslkern.autoencoder_loss(x[None], W, b, c)),
        ("x", lambda: sslkern.autoencoder_loss(x[:, :-1], W, b, c)),
        ("W", lambda: sslkern.autoencoder_loss(x, W[:, :, None], b, c)),
        ("b", lambda: sslkern.autoencoder_loss(x, W, c, c)),
        ("c", lambda: sslkern.autoencoder_loss(x, W, b, b)),
        ("c", lambda: sslkern.autoencoder_loss(x, W, b, c[None])),
    ]


@pytest.mark.parametrize("case", range(len(_shape_cases())))
def test_wrong_shape_names_the_argument(case):
    name, call = _shape_cases()[case]
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        call()


@pytest.mark.parametrize("bad", ["x", "W", "b", "c"])
def test_integer_dtype_is_a_type_error(bad):
    tensors = dict(zip("xWbc", params()))
    tensors[bad] = tensors[bad].to(torch.int64)
    with pytest.raises(TypeError, match=rf"\b{bad}\b.*floating"):
        sslkern.autoencoder_loss(*tensors.values())


def test_non_tensor_is_a_type_error():
    x, W, b, c = params()
    with pytest.raises(TypeError, match=r"\bW\b"):
        sslkern.encode(x, W.tolist(), b)
    with pytest.raises(TypeError, match=r"\bx\b"):
        sslkern.corrupt([1.0, 2.0])


@pytest.mark.parametrize("bad", ["b", "c"])
def test_parameters_must_share_a_dtype(bad):
    tensors = dict(zip("xWbc", params()))
    tensors[bad] = tensors[bad].double()
    with pytest.raises(TypeError, match=rf"\b{bad}\b"):
        sslkern.autoencoder_loss(*tensors.values())


@pytest.mark.parametrize("bad", ["x", "W", "b", "c"])
def test_tensors_on_different_devices(bad):
    tensors = dict(zip("xWbc", params()))
    tensors[bad] = tensors[bad].to("meta")  # a second device without allocating anything
    with pytest.raises(ValueError, match=rf"\b{bad} on meta"):
        sslkern.autoencoder_loss(*tensors.values())
    if bad != "c":
        with pytest.raises(ValueError, match=rf"\b{bad} on meta"):
            sslkern.encode(tensors["x"], tensors["W"], tensors["b"])


# --- names and levels -------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, name", [
    (dict(corruption="dropout"), "corruption"),
    (dict(encoder="gelu"), "encoder"),
    (dict(decoder="Sigmoid"), "decoder"),
    (dict(loss="l1"), "loss"),
    (dict(loss="bce", decoder="tanh"), "decoder"),
    (dict(loss="bce", decoder="linear"), "decoder"),
    (dict(corruption="mask", level=1.5), "level"),
    (dict(corruption="mask", level=-0.1), "level"),
    (dict(corruption="salt_pepper", level=1.01), "level"),
    (dict(corruption="salt_pepper", level=-1e-3), "level"),
    (dict(corruption="gaussian", level=-0.5), "level"),
    (dict(corruption="gaussian", level=float("nan")), "level"),
    (dict(corruption="mask", level="0.5"), "level"),
    (dict(contractive=-1.0), "contractive"),
    (dict(contractive=float("inf")), "contractive"),
    (dict(seed=-1), "seed"),
    (dict(seed=2**64), "seed"),
    (dict(seed=1.5), "seed"),
    (dict(offset=-1), "offset"),
    (dict(offset=2**32), "offset"),
])
def test_bad_option_names_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        sslkern.autoencoder_loss(*params(), **kwargs)


@pytest.mark.parametrize("kind, level", [("mask", 1.2), ("mask", -0.2), ("salt_pepper", 2.0),
                                         ("salt_pepper", -0.5), ("gaussian", -0.1)])
def test_corrupt_level_range(kind, level):
    with pytest.raises(ValueError, match=r"\blevel\b"):
        sslkern.corrupt(params()[0], kind, level)


def test_corrupt_unknown_kind():
    with pytest.raises(ValueError, match=r"\bkind\b"):
        sslkern.corrupt(params()[0], "cutout", 0.1)


def test_large_gaussian_level_is_fine():
    assert torch.isfinite(sslkern.corrupt(params()[0], "gaussian", 3.0)).all()


@pytest.mark.parametrize("fn", [sslkern.encode, sslkern.decode, sslkern.contractive_penalty])
def test_unknown_activation(fn):
    x, W, b, c = params()
    args = (torch.rand(B, H), W, c) if fn is sslkern.decode else (x, W, b)
    with pytest.raises(ValueError, match=r"\bactivation\b"):
        fn(*args, activation="swish")


@pytest.mark.parametrize("fn", [sslkern.philox_uniform, sslkern.philox_normal])
@pytest.mark.parametrize("kwargs, name", [
    (dict(n=4, seed=-1), "seed"), (dict(n=4, seed=2**64), "seed"), (dict(n=4, seed=0, offset=-3), "offset"),
    (dict(n=4, seed=0, offset=2**32), "offset"), (dict(n=-1, seed=0), "n"), (dict(n=2**32 + 1, seed=0), "n"),
])
def test_bad_philox_arguments(fn, kwargs, name):
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        fn(**kwargs)


BAD_DEVICES = ["gpu0", "cuda:x", 3.5] + (["cuda", "cuda:0"] if not torch.cuda.is_available() else [])


@pytest.mark.parametrize("fn", [sslkern.philox_uniform, sslkern.philox_normal])
@pytest.mark.parametrize("device", BAD_DEVICES, ids=str)
def test_bad_philox_device_names_the_argument(fn, device):
    with pytest.raises(ValueError, match=r"\bdevice\b"):
        fn(4, seed=0, device=device)


def test_largest_seed_and_offset_are_accepted():
    assert sslkern.philox_uniform(2, seed=2**64 - 1, offset=2**32 - 1).shape == (2,)


# --- 32-bit counters: tensors too large, without allocating them -------------------------

@pytest.fixture
def huge(monkeypatch):
    """2**32 + 2**17 elements as a zero-stride view of one float; copying it (16 GiB) would be
    the bug, so a copy fails the test instead of exhausting memory."""
    contiguous = torch.Tensor.contiguous

    def no_huge_copies(self, *args, **kwargs):
        assert self.numel() <= 2**32, "a tensor too large for the counters was copied before the check"
        return contiguous(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "contiguous", no_huge_copies)
    return torch.zeros(1).expand(2**17, 2**15 + 1)


def test_corrupt_too_large_for_counters(huge):
    with pytest.raises(ValueError, match=r"\bx\b.*2\*\*32"):
        sslkern.corrupt(huge, "mask", 0.1)


def test_autoencoder_loss_too_large_for_counters(huge):
    W, b, c = torch.zeros(1).expand(2, huge.shape[1]), torch.zeros(2), torch.zeros(huge.shape[1])
    with pytest.raises(ValueError, match=r"\bx\b.*2\*\*32"):
        sslkern.autoencoder_loss(huge, W, b, c, corruption="mask", level=0.1)
    meta = [t.to("meta") for t in (W, b, c)]
    with pytest.raises(ValueError, match=r"\bx\b.*2\*\*32"):
        sslkern.autoencoder_loss(torch.empty(huge.shape, device="meta"), *meta, corruption="gaussian", level=0.1)


# --- backends ---------------------------------------------------------------------------

def test_unknown_backend_name():
    with pytest.raises(ValueError, match=r"\bbackend\b.*'fastest'"):
        sslkern.set_backend("fastest")
    with pytest.raises(ValueError, match=r"\bbackend\b"):
        with sslkern.use_backend("gpu"):
            pass
    assert backends.requested() in backends.NAMES + (backends.AUTO,)


def test_unknown_backend_reaching_an_op():
    with pytest.raises(sslkern.BackendError, match="unknown backend 'bogus'"):
        torch.ops.sslkern.philox(3, 0, 0, False, torch.device("cpu"), "bogus")


@pytest.mark.skipif("native" not in sslkern.available_backends(), reason="native not built")
def test_forced_native_with_bfloat16_lists_the_reason():
    x, W, b, c = params(torch.bfloat16)
    with sslkern.use_backend("native"), pytest.raises(sslkern.BackendError, match="native.*bfloat16"):
        sslkern.autoencoder_loss(x, W, b, c)


def test_reference_runs_bfloat16():
    with sslkern.use_backend("reference"):
        assert sslkern.encode(*params(torch.bfloat16)[:3]).dtype == torch.bfloat16


def test_forcing_an_unavailable_backend_says_why(monkeypatch):
    reason = "cannot be imported: No module named 'triton' (faked by the test)"
    monkeypatch.setitem(backends._instances, "triton", backends._Unavailable("triton", reason))
    with sslkern.use_backend("triton"), pytest.raises(sslkern.BackendError) as raised:
        sslkern.encode(*params()[:3])
    assert "'triton'" in str(raised.value) and reason in str(raised.value)


# --- valid but unusual input ------------------------------------------------------------

def _run_all(x, W, b, c):
    """Every op's outputs and gradients, for comparing two layouts of the same values."""
    leaves = [t.detach().requires_grad_(True) for t in (x, W, b, c)]
    x, W, b, c = leaves
    outputs = [
        sslkern.corrupt(x, "salt_pepper", 0.3, seed=5),
        sslkern.encode(x, W, b, "tanh"),
        sslkern.decode(x[:, :H], W, c, "softplus"),
        sslkern.contractive_penalty(x, W, b, "sigmoid"),
        sslkern.autoencoder_loss(x, W, b, c, corruption="mask", level=0.3, contractive=0.4, seed=3),
    ]
    weights = [torch.linspace(0.5, 1.5, out.numel(), device=out.device).reshape(out.shape) for out in outputs]
    total = sum((out * weight).sum() for out, weight in zip(outputs, weights))
    return [out.detach() for out in outputs] + list(torch.autograd.grad(total, leaves))


def test_non_contiguous_inputs_give_the_same_result(backend):
    x, W, b, c = params(torch.float64, DEVICE)
    views = (x.T.contiguous().T,                                    # transposed storage
             torch.stack([W, W], dim=2)[:, :, 1],                  # a strided slice
             torch.stack([b, -b], dim=1)[:, 0],                    # stride 2
             torch.stack([-c, c], dim=1)[:, 1])
    assert not any(v.is_contiguous() for v in views)
    for view, dense in zip(views, (x, W, b, c)):
        assert torch.equal(view, dense)
    for got, want in zip(_run_all(*views), _run_all(x, W, b, c)):
        torch.testing.assert_close(got, want, rtol=1e-14, atol=1e-14)


def test_nan_reaches_the_loss(backend):
    x, W, b, c = params(device=DEVICE)
    x[1, 2] = float("nan")
    for kwargs in (dict(), dict(corruption="gaussian", level=0.1, contractive=0.2),
                   dict(loss="mse", decoder="linear", encoder="relu")):
        assert torch.isnan(sslkern.autoencoder_loss(x, W, b, c, **kwargs))
    assert torch.isnan(sslkern.encode(x, W, b)[1]).all()


@pytest.mark.parametrize("kwargs", [dict(), dict(corruption="mask", level=0.3, contractive=0.5),
                                    dict(loss="mse", decoder="tanh", encoder="relu",
                                         corruption="gaussian", level=0.2, contractive=0.1)])
def test_empty_batch(backend, kwargs):
    _, W, b, c = params(device=DEVICE)
    x = torch.zeros(0, D, device=DEVICE)
    leaves = [t.clone().requires_grad_(True) for t in (x, W, b, c)]
    loss = sslkern.autoencoder_loss(*leaves, **kwargs)
    assert loss.shape == () and loss.item() == 0.0
    for leaf, grad in zip(leaves, torch.autograd.grad(loss, leaves)):
        assert grad.shape == leaf.shape and not grad.any()


def test_empty_batch_other_ops(backend):
    _, W, b, c = params(device=DEVICE)
    x = torch.zeros(0, D, device=DEVICE, requires_grad=True)
    assert sslkern.encode(x, W, b).shape == (0, H)
    assert sslkern.decode(torch.zeros(0, H, device=DEVICE), W, c).shape == (0, D)
    assert sslkern.corrupt(x, "mask", 0.5).shape == (0, D)
    penalty = sslkern.contractive_penalty(x, W.requires_grad_(True), b)
    assert penalty.item() == 0.0
    assert not torch.autograd.grad(penalty, W)[0].any()
    assert sslkern.philox_uniform(0, seed=1, device=DEVICE).shape == (0,)


# --- info and the command line ----------------------------------------------------------

INFO_KEYS = {"torch", "triton", "native_cpu", "native_cuda", "cuda_devices", "backends"}


def test_info_keys():
    info = sslkern.info()
    assert INFO_KEYS <= info.keys()
    assert info["torch"] == torch.__version__
    assert info["backends"] == sslkern.available_backends() and "reference" in info["backends"]
    assert isinstance(info["native_cpu"], bool) and isinstance(info["cuda_devices"], int)
    assert info["native_cpu"] == ("native" in info["backends"])


def test_cli_info_prints_json(tmp_path):
    # cwd away from the checkout: `python -m` puts cwd first on sys.path, and an unbuilt
    # source tree there would shadow the installed package
    done = subprocess.run([sys.executable, "-m", "sslkern.cli", "info"], capture_output=True,
                          text=True, timeout=120, check=True, cwd=tmp_path)
    printed = json.loads(done.stdout)
    assert INFO_KEYS <= printed.keys()
    assert printed["backends"] == sslkern.available_backends()


# --- data files and double backward -------------------------------------------------------


def test_idx_header_whose_dimensions_overflow_names_the_file(tmp_path):
    """2**16 x 2**16 x 2**16 x 2**16 bytes is 2**64: numpy's int64 product wraps to 0, and the
    empty payload used to pass the length check and fail in reshape without naming the file."""
    from sslkern import data

    path = tmp_path / "huge-images-idx3-ubyte"
    path.write_bytes(bytes([0, 0, 0x08, 4]) + (2**16).to_bytes(4, "big") * 4)
    with pytest.raises(ValueError, match=str(path).replace(".", r"\.") + r".*header says shape"):
        data.load(str(path))
    with pytest.raises(data.DataError, match="header says shape"):
        data.parse_idx(bytes([0, 0, 0x0D, 2]) + (2**31).to_bytes(4, "big") * 2, "f32.idx")


@pytest.mark.parametrize("x_grad", [False, True], ids=["params", "params+x"])
@pytest.mark.parametrize("path", ["eager", "op"])
def test_double_backward_says_it_is_not_supported(backend, path, x_grad):
    x, W, b, c = (t.to(DEVICE).requires_grad_(i > 0 or x_grad) for i, t in enumerate(params()))
    if path == "eager":
        loss = sslkern.autoencoder_loss(x, W, b, c, corruption="mask", level=0.3, contractive=0.2, seed=1)
    else:
        loss = torch.ops.sslkern.autoencoder_loss(x, W, b, c, "sigmoid", "sigmoid", "bce", "mask", 0.3, 0.2, 1,
                                                  0, backend, None)[0]
    dW, = torch.autograd.grad(loss, W, create_graph=True)  # first order still works
    plain, = torch.autograd.grad(loss, W, retain_graph=True)
    torch.testing.assert_close(dW.detach(), plain)
    with pytest.raises(RuntimeError, match="double backward .* is not supported"):
        torch.autograd.grad(dW.sum(), W)
