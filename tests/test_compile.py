"""The ops trace into one torch.compile graph (no graph breaks) and the compiled step, forward
and AOT-compiled backward, gives eager's values and gradients. One inductor compile: slow."""
import torch

import sslkern


def objective(x, W, b, c):
    """A denoising + contractive step; x~ through the public corrupt op adds a second op."""
    x_tilde = sslkern.corrupt(x, "salt_pepper", 0.2, seed=3)
    return sslkern.autoencoder_loss(x_tilde, W, b, c, encoder="tanh", decoder="sigmoid", loss="bce",
                                    corruption="mask", level=0.25, contractive=0.3, seed=2**40 + 1,
                                    offset=9)


def _inputs():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(9, 13, generator=gen)
    W = torch.randn(6, 13, generator=gen) * 0.4
    b, c = torch.randn(6, generator=gen) * 0.1, torch.randn(13, generator=gen) * 0.1
    return [t.requires_grad_(True) for t in (x, W, b, c)]


def _value_and_grads(fn):
    inputs = _inputs()
    value = fn(*inputs)
    value.backward()
    return [value.detach()] + [t.grad for t in inputs]


def test_compiled_step_matches_eager():
    torch._dynamo.reset()
    compiled = torch.compile(objective, fullgraph=True, backend="inductor")
    eager = _value_and_grads(objective)
    got = _value_and_grads(compiled)
    for name, g, e in zip(["loss", "x", "W", "b", "c"], got, eager):
        assert g is not None, name
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-6, msg=lambda m, n=name: f"{n}: {m}")
