"""The training step fit runs for each batch, and the optimizer behind it.

- graph-free (one process, no CUDA graph, a plain TiedAutoencoder whose parameters all train
  and that has no hooks): a `sslkern.step.AutoencoderStep` built once per stage; "sgd" is the
  fused op (W, b, c updated in place, dW never stored), the other optimizers take their
  gradients from its value_and_grad. Same numbers as loss.backward() to rounding.
- autograd: forward() and loss.backward(), then the optimizer; under torch.distributed the
  module is wrapped in DistributedDataParallel (gradients averaged over the ranks). Pretext
  models (sslkern.nn.PretextClassifier) always take it: their forward() generates the batch's
  views and labels (a fused sslkern.pretext pass, nothing to differentiate), encodes and
  classifies, and autograd does the rest.
- CUDA graph: the autograd step captured once and replayed (one process, autoencoders; the
  model draws its noise from a device tensor advanced in place, TiedAutoencoder.use_device_noise,
  so every replay draws the noise eager steps would; fit checks the backend reads it on the device).
"""
import torch

from .. import _compat
from .. import nn as ssl_nn
from ..step import AutoencoderStep
from .distributed import data_parallel


def make_optimizer(name, params, lr, capturable=False):
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    if name == "momentum":
        return torch.optim.SGD(params, lr=lr, momentum=0.9)
    return torch.optim.Adam(params, lr=lr, capturable=capturable)


def make_step(module, opt, optimizer, cuda_graph, world_size, device):
    """The step function xb -> loss for one stage's module."""
    if isinstance(module, ssl_nn.PretextClassifier):
        return pretext_step(module, opt, world_size, device)
    if world_size == 1 and not cuda_graph and graph_free_ok(module):
        return graph_free_step(module, opt, fused_sgd=optimizer == "sgd")
    trainer = data_parallel(module, device) if world_size > 1 else module
    step = autograd_step(trainer, opt, set_to_none=not cuda_graph)
    if not cuda_graph:
        return step
    module.use_device_noise()  # each replay advances the seed tensor: fresh noise, the eager numbers
    return GraphedStep(module, step)


def pretext_step(module, opt, world_size, device):
    """The autograd step of a pretext model (fit refuses a CUDA graph for it)."""
    return autograd_step(data_parallel(module, device) if world_size > 1 else module, opt)


def graph_free_ok(module):
    """Whether skipping autograd and forward() changes nothing: a plain TiedAutoencoder whose
    parameters all train, that draws its noise from host seeds (not use_device_noise), with no hooks to call (sslkern._compat.hooks_registered reads
    torch's private hook dictionaries)."""
    plain = ssl_nn.TiedAutoencoder
    if not isinstance(module, plain) or type(module).forward is not plain.forward or module.device_noise:
        return False
    params = (module.weight, module.hidden_bias, module.visible_bias)
    return all(p.requires_grad for p in params) and not _compat.hooks_registered(module, params)


def graph_free_step(module, opt, fused_sgd):
    """The step without an autograd graph, checked once (sslkern.step.AutoencoderStep). The
    fused SGD step reads the optimizer's lr each step (a scheduler may change it)."""
    step = AutoencoderStep(module)
    params = step.params

    def fused_sgd_step(xb):
        return step.sgd_step(xb, opt.param_groups[0]["lr"])

    def value_and_grad_step(xb):
        loss, grads = step.value_and_grad(xb)
        for param, grad in zip(params, grads):
            param.grad = grad
        opt.step()
        return loss

    return fused_sgd_step if fused_sgd else value_and_grad_step


def autograd_step(trainer, opt, set_to_none=True):
    """forward(), loss.backward(), opt.step()."""
    def step(xb):
        loss = trainer(xb)
        opt.zero_grad(set_to_none=set_to_none)
        loss.backward()
        opt.step()
        return loss

    return step


class GraphedStep:
    """Eager warm-up steps on a side stream, then one captured step replayed for every batch
    of the captured size (other sizes, e.g. an epoch's last batch, run eagerly)."""

    WARMUP = 3

    def __init__(self, module, eager_step):
        self.module, self.eager_step = module, eager_step
        self.graph = self.static_x = self.static_loss = None
        self.warmed = 0

    def __call__(self, xb):
        if self.graph is not None and xb.shape == self.static_x.shape:
            self.static_x.copy_(xb)
            self.graph.replay()
            self.module.advance_replayed_step()  # forward() is not called on replay
            return self.static_loss.clone()
        if self.graph is not None or self.warmed < self.WARMUP:
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                loss = self.eager_step(xb)
            torch.cuda.current_stream().wait_stream(stream)
            self.warmed += self.graph is None
            return loss
        self.static_x = xb.clone()
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.static_loss = self.eager_step(self.static_x)
        self.graph.replay()
        return self.static_loss.clone()
