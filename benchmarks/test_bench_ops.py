"""Each op, forward and forward + backward, for every sslkern backend available here and
for the same computation written in plain PyTorch ("torch")."""
import pytest
import torch

import sslkern
from sslkern.bench import make_problem, torch_objective

LEVEL, LAMBDA = 0.25, 0.1


def torch_penalty(x, W, b):
    h = torch.sigmoid(x @ W.t() + b)
    s = h * (1 - h)
    return (s * s * (W * W).sum(1)).sum() / x.shape[0]


def op_table(x, W, b, c, h):
    """name -> (torch version, sslkern version); each returns a tensor to differentiate."""
    return {
        "corrupt": (lambda: x * (torch.rand_like(x) >= LEVEL),
                    lambda: sslkern.corrupt(x, "mask", LEVEL, seed=1)),
        "encode": (lambda: torch.sigmoid(x @ W.t() + b), lambda: sslkern.encode(x, W, b)),
        "decode": (lambda: torch.sigmoid(h @ W + c), lambda: sslkern.decode(h, W, c)),
        "contractive_penalty": (lambda: torch_penalty(x, W, b),
                                lambda: sslkern.contractive_penalty(x, W, b)),
        "autoencoder_loss": (
            lambda: torch_objective(x, W, b, c, (torch.rand_like(x) >= LEVEL).to(x.dtype), LAMBDA),
            lambda: sslkern.autoencoder_loss(x, W, b, c, corruption="mask", level=LEVEL,
                                             contractive=LAMBDA, seed=1)),
    }


OPS = ["corrupt", "encode", "decode", "contractive_penalty", "autoencoder_loss"]


def _setup(shape, device, impl, op, backward):
    x, params = make_problem(shape, device)
    W, b, c = params
    h = torch.rand(shape.batch, shape.hidden, device=device).requires_grad_(backward)
    if op == "corrupt":
        x.requires_grad_(backward)
    if not backward:
        W, b, c = (p.detach() for p in (W, b, c))
    torch_fn, sslkern_fn = op_table(x, W, b, c, h)[op]
    fn = torch_fn if impl == "torch" else sslkern_fn
    inputs = [t for t in (x, W, b, c, h) if t.requires_grad]
    backend = "auto" if impl == "torch" else impl[len("sslkern["):-1]

    def forward():
        with sslkern.use_backend(backend):
            return fn()

    def forward_backward():
        with sslkern.use_backend(backend):
            out = fn()
            return torch.autograd.grad(out.sum(), inputs, allow_unused=True)
    return forward_backward if backward else forward


@pytest.mark.parametrize("op", OPS)
def test_forward(run, shape, device, impl, op):
    run(_setup(shape, device, impl, op, backward=False))


@pytest.mark.parametrize("op", OPS)
def test_forward_backward(run, shape, device, impl, op):
    run(_setup(shape, device, impl, op, backward=True))
