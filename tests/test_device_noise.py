"""Noise from a device tensor (TiedAutoencoder.use_device_noise), the route a CUDA-graph-
captured step takes: on the CPU (a device tensor there, no graph) it must draw exactly the
host-integer route's numbers, step after step, through fit, checkpoints and replays."""
import pytest
import torch

import sslkern
from sslkern import nn as ssl_nn
from sslkern.train import steps


def model(**kw):
    return ssl_nn.TiedAutoencoder(12, 5, corruption="mask", level=0.3, contractive=0.1, seed=2**63 + 11, **kw)


def batches(n=6, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.rand(7, 12, generator=gen) for _ in range(n)]


def train(m, data):
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    losses = []
    for xb in data:
        loss = m(xb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.detach())
    return losses


@pytest.mark.parametrize("world", [(0, 1), (1, 3)])  # rank 1 of 3: a nonzero offset word
@pytest.mark.parametrize("kw", [{}, {"higher_order": 0.2, "higher_order_samples": 2}])
def test_device_noise_draws_the_host_numbers(world, kw):
    host, device = model(**kw), model(**kw).use_device_noise()
    for m in (host, device):
        m.rank, m.world_size = world
    assert all(torch.equal(a, b) for a, b in zip(train(host, batches()), train(device, batches())))
    assert torch.equal(host.weight, device.weight) and host.step == device.step == 6


def test_the_seed_tensor_follows_the_step_counter():
    m = model().use_device_noise()
    seeds = []
    for _ in range(3):
        seeds.append(m._device_noise(torch.zeros(7, 12))[0].item() % 2**64)
    assert seeds == [ssl_nn.step_seed(m.seed, k) for k in range(3)]
    state = m.state_dict()
    m.step = 1  # changed on the host: the tensor is rebuilt from it
    assert m._device_noise(torch.zeros(7, 12))[0].item() % 2**64 == ssl_nn.step_seed(m.seed, 1)
    m.load_state_dict(state)
    assert m._device_noise(torch.zeros(7, 12))[0].item() % 2**64 == ssl_nn.step_seed(m.seed, 3)


def test_a_replayed_step_keeps_host_and_device_in_step():
    """What GraphedStep does on replay: the captured call advanced the tensor; the host follows."""
    m = model().use_device_noise()
    rng = m._device_noise(torch.zeros(7, 12))          # the call that was captured (step 0)
    rng[:1].add_(ssl_nn._as_int64(ssl_nn.GOLDEN))  # its replay advances the tensor on the device
    m.advance_replayed_step()
    assert m.step == 2 and m._device_noise(torch.zeros(7, 12)) is rng
    assert rng[0].item() % 2**64 == ssl_nn.step_seed(m.seed, 2)


def test_fit_through_device_noise_gives_the_host_weights(monkeypatch):
    """fit's autograd route with device noise against the same route with host seeds
    (graph_free_ok refuses device-noise models, so both take forward + backward)."""
    X = torch.cat(batches(4))
    host, device = model(), model().use_device_noise()
    monkeypatch.setattr(steps, "graph_free_ok", lambda module: False)
    for m in (host, device):
        sslkern.train.fit(m, X, epochs=2, batch_size=8, lr=0.1, progress=False)
    assert torch.equal(host.weight, device.weight) and host.step == device.step


def test_cuda_graph_with_noise_needs_a_backend_that_reads_the_seed_on_the_device():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    m = model().cuda()
    with sslkern.use_backend("native"), pytest.raises(ValueError, match="needs the triton backend"):
        sslkern.train.fit(m, torch.rand(16, 12, device="cuda"), epochs=1, batch_size=8, cuda_graph=True,
                          progress=False)
