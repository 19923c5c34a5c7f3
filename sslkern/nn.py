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

from .ops.autoencoder import PENALTY_DEFAULTS

PENALTIES = tuple(PENALTY_DEFAULTS)  # the extra penalties' keyword names, in the ops' order
GOLDEN = 0x9E3779B97F4A7C15
SEED_MODULUS = 2**64


def step_seed(seed, step):
    """The Philox seed of training call `step` (the same on every data-parallel rank)."""
    return (seed + step * GOLDEN) % SEED_MODULUS


def initial_weight(shape, encoder, seed):
    """(W, generator): W [H, D] uniform in ±4·√(6/(H+D)) for sigmoid encoders, ±√(6/(H+D))
    otherwise, drawn in float64 on the CPU from `seed` (the same weights on every device);
    the generator continues the draw for whatever the caller initialises next."""
    bound = math.sqrt(6.0 / (shape[0] + shape[1]))
    if encoder == "sigmoid":
        bound *= 4.0
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=gen, dtype=torch.float64) * (2 * bound) - bound, gen


class TiedAutoencoder(nn.Module):
    """Tied-weight autoencoder: h = f(x̃ Wᵀ + b), x̂ = g(h W + c), W of shape [n_hidden, n_visible].

    corruption "none" | "mask" | "gaussian" | "salt_pepper" at `level`; `contractive` = λ; the
    keyword-only `sparsity`, `sparsity_target`, `sparsity_kind`, `higher_order`,
    `higher_order_sigma`, `higher_order_samples` add the extra penalties of
    sslkern.autoencoder_loss (all off by default); `image_shape`, `patch` and `hole_weight`
    serve the structured masks (corruption "block", "patch") and weight their holes;
    `precision` "bf16"/"fp16" rounds the objective's product operands (float32 parameters stay
    the master weights; sslkern.autoencoder_loss). Initialisation as in the classic
    tutorials: W uniform in ±4·√(6/(H+D)) for sigmoid
    encoders, ±√(6/(H+D)) otherwise, biases zero; drawn on the CPU from `seed`, so the same
    seed gives the same weights on every device.
    """

    def __init__(self, n_visible, n_hidden, encoder="sigmoid", decoder="sigmoid", loss="bce",
                 corruption="none", level=0.0, contractive=0.0, seed=0, *, sparsity=0.0, sparsity_target=0.05,
                 sparsity_kind="kl", higher_order=0.0, higher_order_sigma=0.1, higher_order_samples=1,
                 image_shape=None, patch=None, hole_weight=1.0, precision="default", dtype=None, device=None):
        super().__init__()
        self.n_visible = _positive_int("n_visible", n_visible)
        self.n_hidden = _positive_int("n_hidden", n_hidden)
        self.encoder = check.activation("encoder", encoder)
        self.decoder = check.activation("decoder", decoder)
        self.loss = check.loss(loss, decoder)
        self.corruption = corruption
        self.level = check.corruption(corruption, level, name="corruption")
        self.contractive = check.nonnegative("contractive", contractive)
        self.penalties = dict(zip(PENALTIES, check.penalties(
            encoder, sparsity, sparsity_target, sparsity_kind, higher_order, higher_order_sigma,
            higher_order_samples)))
        height, width, patch, hole_weight = check.mask_shape(
            corruption, self.level, self.n_visible, check.image_shape(image_shape), patch or 0, hole_weight)
        self.masks = {"image_shape": (height, width) if height else None, "patch": patch or None,
                      "hole_weight": hole_weight}
        self.seed = check.seed(seed)
        self.step = 0  # training calls so far: the noise counter (saved as extra state)
        self.rank, self.world_size = 0, 1  # set by sslkern.train.fit under torch.distributed
        self.device_noise = False  # use_device_noise: the seed travels as a device tensor
        self._rng, self._rng_step = None, None  # that tensor, and the value of `step` it matches
        if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise TypeError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")
        factory = {"dtype": dtype, "device": device}
        self.weight = nn.Parameter(torch.empty(self.n_hidden, self.n_visible, **factory))
        self.hidden_bias = nn.Parameter(torch.zeros(self.n_hidden, **factory))
        self.visible_bias = nn.Parameter(torch.zeros(self.n_visible, **factory))
        self.precision = check.precision(precision, self.weight.dtype)
        self.reset_parameters()

    def reset_parameters(self):
        weight, _ = initial_weight(self.weight.shape, self.encoder, self.seed)
        with torch.no_grad():
            self.weight.copy_(weight)
            self.hidden_bias.zero_()
            self.visible_bias.zero_()
        self.step = 0

    def config(self):
        """The constructor arguments (what a checkpoint needs to rebuild this model)."""
        return {"n_visible": self.n_visible, "n_hidden": self.n_hidden, "encoder": self.encoder,
                "decoder": self.decoder, "loss": self.loss, "corruption": self.corruption,
                "level": self.level, "contractive": self.contractive, "seed": self.seed, **self.penalties, **self.masks,
                "precision": self.precision}

    def noise_seed(self):
        """The Philox seed the next training call will use."""
        return step_seed(self.seed, self.step)

    def noise_offset(self, x):
        """The first Philox counter of a training call on batch x: this rank's rows of the
        step's global batch start at rank · x.numel() (every rank holds as many rows), times
        1 + n with n higher-order perturbations, which draw n more x.numel() counters each."""
        return self.rank * x.numel() * self.counters_per_element() if self.rank else 0

    def counters_per_element(self):
        """Philox counters a training call draws per element of x: the corruption's, and the
        higher-order term's perturbations (docs/random.md §9)."""
        return 1 + (self.penalties["higher_order_samples"] if self.penalties["higher_order"] else 0)

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

    def use_device_noise(self, enabled=True):
        """Training calls pass their noise seed as an int64 [2] tensor (seed bits, offset) on
        the model's device, advanced in place by each call, instead of host integers: the
        same numbers (step_seed and noise_offset of the same step), but a step captured in a
        CUDA graph then draws fresh noise on every replay (the triton backend reads the tensor
        on the device). sslkern.train.fit(cuda_graph=True) turns it on. Returns the model."""
        self.device_noise = bool(enabled)
        self._rng = None
        return self

    def advance_replayed_step(self):
        """A captured step was replayed: its device seed advanced on the device, so the host
        counter follows (forward() does both when it runs)."""
        self.step += 1
        if self._rng_step is not None:
            self._rng_step += 1

    def _device_noise(self, x):
        """The rng tensor of the next training call on x: the seed word advanced in place by
        one step (φ in 64-bit wrapping arithmetic: step_seed's recurrence), the offset word
        this rank's noise_offset."""
        W = self.weight
        if self._rng is None or self._rng.device != W.device or self._rng_step != self.step:
            previous = step_seed(self.seed, self.step - 1)
            self._rng = torch.tensor([_as_int64(previous), 0], dtype=torch.int64, device=W.device)
        self._rng[:1].add_(_as_int64(GOLDEN))
        self._rng[1:].fill_(self.noise_offset(x))
        self.step += 1
        self._rng_step = self.step
        return self._rng

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
        if self.training and self.device_noise:
            seed, offset = self._device_noise(x), 0
        else:
            seed, offset = self.take_noise(x)
        return dict(encoder=self.encoder, decoder=self.decoder, loss=self.loss,
                    corruption=self.corruption, level=self.level, contractive=self.contractive,
                    seed=seed, offset=offset, **self.penalties, **self.masks, precision=self.precision)

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
        self._rng = None

    def extra_repr(self):
        return (f"n_visible={self.n_visible}, n_hidden={self.n_hidden}, encoder={self.encoder!r}, "
                f"decoder={self.decoder!r}, loss={self.loss!r}, corruption={self.corruption!r}, "
                f"level={self.level}, contractive={self.contractive}, seed={self.seed}"
                + "".join(f", {k}={v!r}" for k, v in self.penalties.items() if v != PENALTY_DEFAULTS[k])
                + "".join(f", {k}={v!r}" for k, v in self.masks.items() if v not in (None, 1.0))
                + (f", precision={self.precision!r}" if self.precision != "default" else ""))


class DenoisingAutoencoder(TiedAutoencoder):
    """TiedAutoencoder with masking noise (25% by default)."""

    def __init__(self, n_visible, n_hidden, corruption="mask", level=0.25, **kwargs):
        super().__init__(n_visible, n_hidden, corruption=corruption, level=level, **kwargs)


class ContractiveAutoencoder(TiedAutoencoder):
    """TiedAutoencoder with the contractive penalty λ‖∂h/∂x‖²_F (λ = 0.1 by default)."""

    def __init__(self, n_visible, n_hidden, contractive=0.1, **kwargs):
        super().__init__(n_visible, n_hidden, contractive=contractive, **kwargs)


class HigherOrderContractiveAutoencoder(TiedAutoencoder):
    """The contractive autoencoder with the higher-order term of Rifai et al. (2011):
    λ‖J(x̃)‖²_F + γ mean_ε ‖J(x̃) − J(x̃ + ε)‖²_F, ε ~ N(0, σ²) (λ = 0.1, γ = 0.1, σ = 0.1,
    one perturbation per example by default)."""

    def __init__(self, n_visible, n_hidden, contractive=0.1, higher_order=0.1, higher_order_sigma=0.1,
                 higher_order_samples=1, **kwargs):
        super().__init__(n_visible, n_hidden, contractive=contractive, higher_order=higher_order,
                         higher_order_sigma=higher_order_sigma, higher_order_samples=higher_order_samples,
                         **kwargs)


class SparseAutoencoder(TiedAutoencoder):
    """TiedAutoencoder with the sparsity penalty β Σ_j KL(ρ ‖ ρ̂_j), ρ̂_j the batch mean of unit j
    (β = 0.1, ρ = 0.05 by default; sparsity_kind="l1" for β mean Σ_j |h_j| instead)."""

    def __init__(self, n_visible, n_hidden, sparsity=0.1, sparsity_target=0.05, sparsity_kind="kl", **kwargs):
        super().__init__(n_visible, n_hidden, sparsity=sparsity, sparsity_target=sparsity_target,
                         sparsity_kind=sparsity_kind, **kwargs)


class InpaintingAutoencoder(TiedAutoencoder):
    """The context encoder's task on a tied autoencoder: one square hole of a quarter of the
    image per image (corruption "block", level 0.25) to fill in, the hole's reconstruction
    loss weighted twice (hole_weight 2). `image_shape` is required (e.g. (28, 28))."""

    def __init__(self, n_visible, n_hidden, image_shape, corruption="block", level=0.25, hole_weight=2.0,
                 **kwargs):
        super().__init__(n_visible, n_hidden, corruption=corruption, level=level, image_shape=image_shape,
                         hole_weight=hole_weight, **kwargs)


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


def _as_int64(value):
    """An unsigned 64-bit value as the two's-complement int64 a tensor holds."""
    return value - SEED_MODULUS if value >= 2**63 else value


class PretextClassifier(nn.Module):
    """A tied-weight encoder h = f(x Wᵀ + b) (the autoencoders' encoder and its op,
    sslkern.encode) under a linear softmax head, trained with cross-entropy on labels that a
    pretext generator (sslkern.pretext) draws from each batch of images.

    task: "rotation" (4 classes), "jigsaw" (one class per permutation; `grid`, `permutations`)
    or "relative" (8 classes; `patch`, `gap`): siamese, the same encoder on the centre and the
    neighbour patch, the head on their concatenated codes. The data are images as rows,
    [N, H*W] with `image_shape` = (H, W); the encoder sees whole images, or patch*patch
    pixels for "relative". Training call `step` draws its labels with the Philox seed of
    sslkern.nn.step_seed(seed, step) at this rank's offset, rank · B · draws_per_row, as the
    autoencoders split a step's global batch over the ranks (docs/random.md §7, §10), and
    advances `step`, which is saved as extra state: a checkpoint restores the label stream. In
    eval mode the labels come from `seed` itself, every call. W and b start as a
    TiedAutoencoder's with this seed; the head's weights continue the same generator.
    """

    def __init__(self, task, image_shape, n_hidden, *, grid=(2, 2), permutations=None, patch=8, gap=2,
                 encoder="sigmoid", seed=0, dtype=None, device=None):
        super().__init__()
        from . import pretext

        self.task = check.choice("task", task, pretext.TASKS).name
        self.image_shape = _image_shape(image_shape)
        self.n_visible = self.image_shape[0] * self.image_shape[1]  # the data's width (fit checks it)
        self.n_hidden = _positive_int("n_hidden", n_hidden)
        self.encoder = check.activation("encoder", encoder)
        self.seed = check.seed(seed)
        self.grid, self.patch, self.gap = tuple(grid), patch, gap
        self.step, self.rank, self.world_size = 0, 0, 1
        self._check_geometry(pretext, permutations)
        if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise TypeError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")
        factory = {"dtype": dtype, "device": device}
        codes = self.n_hidden * (2 if pretext.TASKS[self.task].siamese else 1)
        self.weight = nn.Parameter(torch.empty(self.n_hidden, self.n_inputs, **factory))
        self.hidden_bias = nn.Parameter(torch.zeros(self.n_hidden, **factory))
        self.head_weight = nn.Parameter(torch.empty(self.n_classes, codes, **factory))
        self.head_bias = nn.Parameter(torch.zeros(self.n_classes, **factory))
        self.reset_parameters()

    def _check_geometry(self, pretext, permutations):
        """Checks the task's arguments once (by generating from one blank image) and sets
        n_inputs (the encoder's width), n_classes and, for jigsaw, the permutations buffer."""
        blank = torch.zeros(1, self.n_visible)
        if self.task == "rotation":
            pretext.rotations(blank, self.image_shape)
            self.n_inputs, self.n_classes = self.n_visible, 4
        elif self.task == "jigsaw":
            if permutations is None:
                permutations = pretext.default_permutations(self.grid)
            else:
                permutations = pretext.check_permutations(permutations, self.grid[0] * self.grid[1],
                                                           permutations.device).cpu().clone()  # ours
            pretext.jigsaw_checked(blank, self.image_shape, self.grid, permutations)
            self.register_buffer("permutations", permutations)
            self.n_inputs, self.n_classes = self.n_visible, permutations.shape[0]
        elif self.task == "relative":
            pretext.relative_patches(blank, self.image_shape, self.patch, self.gap)
            self.n_inputs, self.n_classes = self.patch * self.patch, 8
        else:
            raise ValueError(f"unknown pretext task {self.task!r}")

    def reset_parameters(self):
        weight, gen = initial_weight(self.weight.shape, self.encoder, self.seed)
        bound = 1.0 / math.sqrt(self.head_weight.shape[1])  # torch.nn.Linear's, from our generator
        head = torch.rand(self.head_weight.shape, generator=gen, dtype=torch.float64) * (2 * bound) - bound
        with torch.no_grad():
            self.weight.copy_(weight)
            self.hidden_bias.zero_()
            self.head_weight.copy_(head)
            self.head_bias.zero_()
        self.step = 0

    def config(self):
        config = {"task": self.task, "image_shape": list(self.image_shape), "n_hidden": self.n_hidden,
                  "encoder": self.encoder, "seed": self.seed}
        if self.task == "jigsaw":
            config.update(grid=list(self.grid), n_permutations=self.n_classes)
        if self.task == "relative":
            config.update(patch=self.patch, gap=self.gap)
        return config

    take_noise = TiedAutoencoder.take_noise
    noise_seed = TiedAutoencoder.noise_seed

    def noise_offset(self, x):
        """This rank's first counter: its rows of the step's global batch, draws_per_row each."""
        from . import pretext

        return self.rank * x.shape[0] * pretext.TASKS[self.task].draws_per_row

    def generate(self, x, seed, offset=0):
        """(views, labels): the task's inputs for the encoder (one tensor, or the centre and
        neighbour patches) and its labels, drawn with `seed` at `offset`."""
        from . import pretext

        if self.task == "rotation":
            rotated, labels = pretext.rotations(x, self.image_shape, seed=seed, offset=offset)
            return (rotated,), labels
        if self.task == "jigsaw":
            shuffled, labels = pretext.jigsaw_checked(x, self.image_shape, self.grid, self.permutations, seed=seed,
                                                      offset=offset)
            return (shuffled,), labels
        if self.task == "relative":
            center, neighbour, labels = pretext.relative_patches(x, self.image_shape, self.patch, self.gap, seed=seed,
                                                                 offset=offset)
            return (center, neighbour), labels
        raise ValueError(f"unknown pretext task {self.task!r}")

    def logits(self, views):
        """The head's logits for the encoder inputs `views` (siamese: codes side by side; one
        encoder call over the stacked views)."""
        codes = F.encode(torch.cat(views) if len(views) > 1 else views[0], self.weight, self.hidden_bias,
                         self.encoder)
        if len(views) > 1:
            codes = torch.cat(codes.chunk(len(views)), dim=1)
        return torch.nn.functional.linear(codes, self.head_weight, self.head_bias)

    def forward(self, x):
        """Mean cross-entropy of the head on a freshly generated batch (training: step += 1)."""
        x = _on_model_device(x, self.weight, self.n_visible)
        views, labels = self.generate(x, *self.take_noise(x))
        return torch.nn.functional.cross_entropy(self.logits(views), labels)

    def encode(self, x):
        """Codes of encoder inputs [N, n_inputs]; for "relative", images [N, H*W] give the
        codes of their non-overlapping patch grid side by side (features for a linear probe)."""
        if self.task == "relative" and x.dim() == 2 and x.shape[1] == self.n_visible:
            patches = torch.nn.functional.unfold(x.reshape(-1, 1, *self.image_shape), self.patch, stride=self.patch)
            x = patches.transpose(1, 2).reshape(-1, self.n_inputs)  # [N * L, patch²]
            return self.encode(x).reshape(patches.shape[0], -1)
        x = _on_model_device(x, self.weight, self.n_inputs)
        return F.encode(x, self.weight, self.hidden_bias, self.encoder)

    def stages(self):
        return [(self, None)]

    get_extra_state = TiedAutoencoder.get_extra_state

    def set_extra_state(self, state):
        if not isinstance(state, dict) or not isinstance(state.get("step"), int) or state["step"] < 0:
            raise ValueError(f"extra state of a PretextClassifier must be {{'step': int >= 0}}, got {state!r}")
        self.step = state["step"]

    def extra_repr(self):
        return ", ".join(f"{k}={v!r}" for k, v in self.config().items())


def _image_shape(value):
    if (not isinstance(value, (tuple, list)) or len(value) != 2
            or not all(isinstance(s, Integral) and not isinstance(s, bool) and s >= 1 for s in value)):
        raise ValueError(f"image_shape must be two positive integers (height, width), got {value!r}")
    return int(value[0]), int(value[1])


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)  # a NumPy integer too


def _on_model_device(x, weight, width=None):
    """x checked as [B, width] (default: W's input width) and moved to the model's device."""
    check.tensor("x", x, 2)
    width = weight.shape[1] if width is None else width
    if x.shape[1] != width:
        raise ValueError(f"x has {x.shape[1]} features but the model expects {width} (W is {tuple(weight.shape)})")
    return x.to(device=weight.device)
