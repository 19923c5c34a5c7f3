"""Autoencoder modules over the fused op `sslkern.autoencoder_loss`.

`TiedAutoencoder.forward(x)` returns the training objective L + λP of docs/design.md.
In training mode every call draws fresh corruption noise: call number `step` uses the Philox
seed (seed + step · φ) mod 2⁶⁴, where φ = 0x9E3779B97F4A7C15 (odd, so distinct steps give
distinct seeds). One process draws from offset 0; data-parallel rank r, whose batch x is rows
r·B … (r+1)·B − 1 of the step's global batch (sslkern.train shards that way), draws from
offset r · x.numel(): the counters one process would draw for those rows, so ranks never
share noise and W processes draw what one process with their global batch draws. The step
counter lives in the module's state_dict (extra state, a host int: reading it never syncs a
GPU), so a checkpoint restores the noise stream exactly.
"""
import math
from numbers import Integral

import torch
from torch import nn

from . import _validate as check
from . import functional as F

GOLDEN = 0x9E3779B97F4A7C15
SEED_MODULUS = 2**64


def step_seed(seed, step):
    """The Philox seed of training call `step` (the same on every data-parallel rank)."""
    return (seed + step * GOLDEN) % SEED_MODULUS


class TiedAutoencoder(nn.Module):
    """Tied-weight autoencoder: h = f(x̃ Wᵀ + b), x̂ = g(h W + c), W of shape [n_hidden, n_visible].

    corruption "none" | "mask" | "gaussian" | "salt_pepper" at `level`; `contractive` = λ.
    Initialisation as in the classic tutorials: W uniform in ±4·√(6/(H+D)) for sigmoid
    encoders, ±√(6/(H+D)) otherwise, biases zero; drawn on the CPU from `seed`, so the same
    seed gives the same weights on every device.
    """

    def __init__(self, n_visible, n_hidden, encoder="sigmoid", decoder="sigmoid", loss="bce",
                 corruption="none", level=0.0, contractive=0.0, seed=0, *, dtype=None, device=None):
        super().__init__()
        self.n_visible = _positive_int("n_visible", n_visible)
        self.n_hidden = _positive_int("n_hidden", n_hidden)
        self.encoder = check.activation("encoder", encoder)
        self.decoder = check.activation("decoder", decoder)
        self.loss = check.loss(loss, decoder)
        self.corruption = corruption
        self.level = check.corruption(corruption, level, name="corruption")
        self.contractive = check.nonnegative("contractive", contractive)
        self.seed = check.seed(seed)
        self.step = 0  # training calls so far: the noise counter (saved as extra state)
        self.rank, self.world_size = 0, 1  # set by sslkern.train.fit under torch.distributed
        if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise TypeError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")
        factory = {"dtype": dtype, "device": device}
        self.weight = nn.Parameter(torch.empty(self.n_hidden, self.n_visible, **factory))
        self.hidden_bias = nn.Parameter(torch.zeros(self.n_hidden, **factory))
        self.visible_bias = nn.Parameter(torch.zeros(self.n_visible, **factory))
        self.reset_parameters()

    def reset_parameters(self):
        bound = math.sqrt(6.0 / (self.n_hidden + self.n_visible))
        if self.encoder == "sigmoid":
            bound *= 4.0
        gen = torch.Generator().manual_seed(self.seed)
        weight = torch.rand(self.weight.shape, generator=gen, dtype=torch.float64) * (2 * bound) - bound
        with torch.no_grad():
            self.weight.copy_(weight)
            self.hidden_bias.zero_()
            self.visible_bias.zero_()
        self.step = 0

    def config(self):
        """The constructor arguments (what a checkpoint needs to rebuild this model)."""
        return {"n_visible": self.n_visible, "n_hidden": self.n_hidden, "encoder": self.encoder,
                "decoder": self.decoder, "loss": self.loss, "corruption": self.corruption,
                "level": self.level, "contractive": self.contractive, "seed": self.seed}

    def noise_seed(self):
        """The Philox seed the next training call will use."""
        return step_seed(self.seed, self.step)

    def noise_offset(self, x):
        """The first Philox counter of a training call on batch x: this rank's rows of the
        step's global batch start at rank · x.numel() (every rank holds as many rows)."""
        return self.rank * x.numel() if self.rank else 0

    def forward(self, x):
        """The objective on batch x [B, n_visible]. Training mode: fresh noise, step += 1;
        eval mode: the noise of the model's own seed, every time (a fixed, comparable value)."""
        return F.autoencoder_loss(*self._objective_inputs(x), **self._objective_options(x))

    def value_and_grad(self, x):
        """(loss, (dW, db, dc)): forward(x) and its parameter gradients without an autograd
        graph (same noise, same step counter; the gradients are not written to .grad)."""
        return F.autoencoder_value_and_grad(*self._objective_inputs(x), **self._objective_options(x))

    def sgd_step(self, x, lr):
        """forward(x), then one plain SGD step of size lr on the parameters, fused into one op
        (sslkern.autoencoder_sgd_step); returns the loss from before the step. Like forward,
        in eval mode it uses the model's fixed evaluation noise. Every call checks every argument;
        for a loop of many steps, sslkern.step.AutoencoderStep(model) checks once (same numbers)."""
        return F.autoencoder_sgd_step(*self._objective_inputs(x), lr=lr, **self._objective_options(x))

    def _objective_inputs(self, x):
        return _on_model_device(x, self.weight), self.weight, self.hidden_bias, self.visible_bias

    def take_noise(self, x):
        """(seed, offset) of the next objective call on batch x: in training mode the step's
        fresh seed and this rank's offset (and the step counter advances), in eval mode the
        model's fixed evaluation seed at offset 0."""
        if not self.training:
            return self.seed, 0
        noise = self.noise_seed(), self.noise_offset(x)
        self.step += 1
        return noise

    def _objective_options(self, x):
        """The objective's keyword arguments for the next call on x; training mode takes a step."""
        seed, offset = self.take_noise(x)
        return dict(encoder=self.encoder, decoder=self.decoder, loss=self.loss,
                    corruption=self.corruption, level=self.level, contractive=self.contractive,
                    seed=seed, offset=offset)

    def encode(self, x):
        """Hidden codes h = f(x Wᵀ + b) of the clean input (no corruption)."""
        return F.encode(_on_model_device(x, self.weight), self.weight, self.hidden_bias, self.encoder)

    def decode(self, h):
        return F.decode(h, self.weight, self.visible_bias, self.decoder)

    def reconstruct(self, x):
        """x̂ = g(h W + c) from the clean input."""
        return self.decode(self.encode(x))

    def stages(self):
        """What sslkern.train.fit trains, in order: (module, transform of the data)."""
        return [(self, None)]

    def get_extra_state(self):
        return {"step": self.step}

    def set_extra_state(self, state):
        if not isinstance(state, dict) or not isinstance(state.get("step"), int) or state["step"] < 0:
            raise ValueError(f"extra state of a TiedAutoencoder must be {{'step': int >= 0}}, got {state!r}")
        self.step = state["step"]

    def extra_repr(self):
        return (f"n_visible={self.n_visible}, n_hidden={self.n_hidden}, encoder={self.encoder!r}, "
                f"decoder={self.decoder!r}, loss={self.loss!r}, corruption={self.corruption!r}, "
                f"level={self.level}, contractive={self.contractive}, seed={self.seed}")


class DenoisingAutoencoder(TiedAutoencoder):
    """TiedAutoencoder with masking noise (25% by default)."""

    def __init__(self, n_visible, n_hidden, corruption="mask", level=0.25, **kwargs):
        super().__init__(n_visible, n_hidden, corruption=corruption, level=level, **kwargs)


class ContractiveAutoencoder(TiedAutoencoder):
    """TiedAutoencoder with the contractive penalty λ‖∂h/∂x‖²_F (λ = 0.1 by default)."""

    def __init__(self, n_visible, n_hidden, contractive=0.1, **kwargs):
        super().__init__(n_visible, n_hidden, contractive=contractive, **kwargs)


class StackedAutoencoder(nn.Module):
    """Tied autoencoders stacked by `sizes`, e.g. [784, 500, 500], pretrained greedily.

    Layer i has seed `seed + i` and learns to reconstruct the codes of layers 0..i-1 (clean,
    uncorrupted codes); sslkern.train.fit trains the layers one after the other.
    `encode` runs through all layers. Keyword arguments go to every layer.
    """

    def __init__(self, sizes, seed=0, **kwargs):
        super().__init__()
        sizes = list(sizes) if isinstance(sizes, (list, tuple)) else sizes
        if not isinstance(sizes, list) or len(sizes) < 2:
            raise ValueError(f"sizes must be a list of at least two layer widths, got {sizes!r}")
        self.sizes = [_positive_int(f"sizes[{i}]", s) for i, s in enumerate(sizes)]
        seed = check.seed(seed)
        self.seed = seed
        self.layers = nn.ModuleList(
            TiedAutoencoder(d, h, seed=(seed + i) % SEED_MODULUS, **kwargs)
            for i, (d, h) in enumerate(zip(self.sizes[:-1], self.sizes[1:])))
        self.n_visible, self.n_hidden = self.sizes[0], self.sizes[-1]

    def config(self):
        return {"sizes": list(self.sizes), "layers": [layer.config() for layer in self.layers]}

    def encode(self, x, depth=None):
        """Codes after the first `depth` layers (all of them by default)."""
        for layer in self.layers[:depth]:
            x = layer.encode(x)
        return x

    def reconstruct(self, x):
        """Encode through every layer, then decode back down."""
        h = self.encode(x)
        for layer in reversed(self.layers):
            h = layer.decode(h)
        return h

    def forward(self, x):
        """The sum of every layer's objective, each on the clean codes of the layers below."""
        total = 0
        for layer in self.layers:
            total = total + layer(x)
            x = layer.encode(x).detach()
        return total

    def stages(self):
        """Greedy layer-wise pretraining: layer i on the codes of the (frozen) layers below."""
        return [(layer, (lambda x, depth=i: self.encode(x, depth)) if i else None)
                for i, layer in enumerate(self.layers)]

    @property
    def weight(self):
        """The first layer's filters [H₁, D] (what save_filters draws)."""
        return self.layers[0].weight


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)  # a NumPy integer too


def _on_model_device(x, weight):
    check.tensor("x", x, 2)
    if x.shape[1] != weight.shape[1]:
        raise ValueError(f"x has {x.shape[1]} features but the model expects {weight.shape[1]} (W is {tuple(weight.shape)})")
    return x.to(device=weight.device)
