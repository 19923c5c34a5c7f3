"""A training step built once: `AutoencoderStep` checks the model (or W, b, c) and the
objective's settings when it is made, and each call then runs the fused op directly.

The public ops (`sslkern.autoencoder_sgd_step`, ...) and the model methods built on them
(`TiedAutoencoder.sgd_step`, ...) re-check every argument on every call: names, levels,
seed, the shapes, dtypes and devices of x, W, b and c — tens of microseconds of Python per
step, a visible share of a step at small batches. A step object checks those once. Per call
it checks only what can change between calls:
- the batch: a plain tensor with the first batch's feature count, dtype and device (a batch
  that differs is checked in full, as the public op would, and then becomes the reference);
- the parameters: still the same tensors, with the same dtype and device as at build time
  (otherwise the step raises: build a new one after moving the model);
- the noise: the seed of each call follows the model's step counter (below);
- the tracing state: under torch.compile, a tracer, a torch function or dispatch mode or a
  functorch transform, the call goes through the public op (with its full checks) instead.

The numbers are those of the public ops, bit for bit: the same op bodies on the same
arguments.

Noise. Built from a `TiedAutoencoder`, every call draws the noise the model's own methods
would (training mode: the seed of its step counter at its rank's offset, and the counter
advances; eval mode: the model's fixed seed). Built from `(W, b, c)` and keywords, the step
keeps its own counter: call number k uses seed `sslkern.nn.step_seed(seed, k)`, offset 0.

    step = AutoencoderStep(model)              # or AutoencoderStep((W, b, c), corruption="mask", ...)
    for xb in batches:
        loss = step.sgd_step(xb, lr)           # W, b, c -= lr * grad, in place; the loss before
        # or: loss, (dW, db, dc) = step.value_and_grad(xb);  loss = step.loss(xb) (differentiable)
"""
import torch

from . import _validate as check
from . import backends
from . import functional as F
from . import nn as ssl_nn
from .ops import autoencoder as ops_ae

__all__ = ["AutoencoderStep"]

_PLAIN = (torch.Tensor, torch.nn.Parameter)  # as ops.autoencoder's fast path: subclasses get the op
_OPTIONS = ("encoder", "decoder", "loss", "corruption", "level", "contractive")
_PENALTIES = tuple(ops_ae.PENALTY_DEFAULTS)  # sparsity ... higher_order_samples
# The keywords after the penalties: the structured masks' and the products' precision.
_KEYWORDS = ("image_shape", "patch", "hole_weight", "precision")


class AutoencoderStep:
    """One objective on fixed parameters, checked once; see the module docstring.

    model_or_params: a `sslkern.nn.TiedAutoencoder` (its settings and noise counter are used;
    then no keywords), or a tuple (W, b, c) with the objective's keywords (the defaults of
    `sslkern.autoencoder_loss`) and `seed`.
    """

    def __init__(self, model_or_params, *, encoder=None, decoder=None, loss=None, corruption=None,
                 level=None, contractive=None, seed=None, **penalties):
        unknown = set(penalties) - set(_PENALTIES) - set(_KEYWORDS)
        if unknown:
            raise TypeError(f"AutoencoderStep got unexpected keyword(s) {sorted(unknown)}")
        given = {k: v for k, v in dict(encoder=encoder, decoder=decoder, loss=loss, corruption=corruption,
                                       level=level, contractive=contractive, seed=seed, **penalties).items()
                 if v is not None}
        if isinstance(model_or_params, ssl_nn.TiedAutoencoder):
            if given:
                raise TypeError(f"AutoencoderStep(model) takes its settings from the model; got {sorted(given)}")
            model = model_or_params
            options = {name: getattr(model, name) for name in _OPTIONS}
            options.update(model.penalties)
            keywords = dict(model.masks, precision=model.precision)
            params = (model.weight, model.hidden_bias, model.visible_bias)
            self.seed = model.seed
        elif isinstance(model_or_params, (tuple, list)) and len(model_or_params) == 3:
            model = None
            options = dict(encoder="sigmoid", decoder="sigmoid", loss="bce", corruption="none", level=0.0,
                           contractive=0.0, **ops_ae.PENALTY_DEFAULTS)
            keywords = {name: given.pop(name) for name in _KEYWORDS if name in given}
            options.update({k: v for k, v in given.items() if k != "seed"})
            params = tuple(model_or_params)
            self.seed = check.seed(given.get("seed", 0))
        else:
            raise TypeError("AutoencoderStep takes a sslkern.nn.TiedAutoencoder or a tuple (W, b, c), "
                            f"got {type(model_or_params).__name__}")
        W, b, c = params
        check.tensor("W", W, 2)
        # Everything but the batch, checked as the public op checks it (on an empty batch).
        args, penalties = F._objective_args(W.detach().new_empty(0, W.shape[1]), W, b, c,
                                            *(options[name] for name in _OPTIONS), self.seed, 0,
                                            *(options[name] for name in _PENALTIES), **keywords)
        self.model, self.params = model, params
        self.names = args[4:10]  # encoder, decoder, loss, corruption, level, contractive (checked)
        self.penalties = penalties  # the ops' trailing arguments (checked)
        self.options = dict(zip(_OPTIONS + _PENALTIES, self.names + penalties[:len(_PENALTIES)]), **keywords)
        self._keywords = keywords
        self.step = 0  # calls so far (the noise counter when built from (W, b, c))
        self._dtype, self._device, self._n_visible = W.dtype, W.device, W.shape[1]
        # Philox counters a call draws per element of x (the corruption's, then the higher-order term's).
        higher_order, samples = penalties[3], penalties[5]
        self._draws_per_element = (1 + samples) if higher_order else int(self.names[3] != "none")
        # Parameter subclasses, meta or non-contiguous tensors: always the public op, which
        # knows what to do with them (or raises, as sgd_step does for non-contiguous ones).
        self._direct = ops_ae.eager_fast_path_ok(*params) and all(p.is_contiguous() for p in params)
        self._batch = None  # (dtype, device) of the last batch checked in full

    # -- the three calls ------------------------------------------------------------------

    def sgd_step(self, x, lr):
        """One plain SGD step of size lr on W, b, c in place (as sslkern.autoencoder_sgd_step);
        returns the loss from before it."""
        lr = check.nonnegative("lr", lr)
        x = self._checked_batch(x)
        seed, offset = self._next_noise(x)
        if self._direct and ops_ae.eager_fast_path_ok(x):
            W, b, c = self.params
            return ops_ae.autoencoder_sgd_step_eager(x.detach(), W.detach(), b.detach(), c.detach(), *self.names,
                                                     check.signed_seed(seed), offset, backends.requested(), lr, None,
                                                     *self.penalties)
        return F.autoencoder_sgd_step(x, *self.params, lr=lr, **self.options, seed=seed, offset=offset)

    def value_and_grad(self, x):
        """(loss, (dW, db, dc)) without an autograd graph (as sslkern.autoencoder_value_and_grad)."""
        x = self._checked_batch(x)
        seed, offset = self._next_noise(x)
        if self._direct and ops_ae.eager_fast_path_ok(x):
            W, b, c = self.params
            value, *grads = ops_ae.value_and_grad_body(x.detach(), W.detach(), b.detach(), c.detach(), *self.names,
                                                       check.signed_seed(seed), offset, backends.requested(), None,
                                                       *self.penalties)
            return value, tuple(grads)
        return F.autoencoder_value_and_grad(x, *self.params, **self.options, seed=seed, offset=offset)

    def loss(self, x):
        """The objective, differentiable (as sslkern.autoencoder_loss)."""
        x = self._checked_batch(x)
        seed, offset = self._next_noise(x)
        if self._direct and ops_ae.eager_fast_path_ok(x):
            return ops_ae.autoencoder_loss_eager(x, *self.params, *self.names, check.signed_seed(seed), offset,
                                                 backends.requested(), None, *self.penalties)
        return F.autoencoder_loss(x, *self.params, **self.options, seed=seed, offset=offset)

    __call__ = loss

    # -- per call -------------------------------------------------------------------------

    def _next_noise(self, x):
        """(seed, offset) of this call: the model's (sslkern.nn), or this step's own counter."""
        model = self.model
        if model is not None and not model.training:
            return model.take_noise(x)  # the fixed evaluation seed; no step taken
        noise = (ssl_nn.step_seed(self.seed, self.step), 0) if model is None else model.take_noise(x)
        self.step += 1
        return noise

    def _checked_batch(self, x):
        """x, contiguous; what can change since the last call is checked here."""
        W, b, c = self.params
        m = self.model
        if m is not None and (m.weight is not W or m.hidden_bias is not b or m.visible_bias is not c):
            raise RuntimeError("the model's parameters were replaced after this AutoencoderStep was built: "
                               "build a new one")
        if W.dtype != self._dtype or W.device != self._device:
            raise RuntimeError(f"W changed from {self._dtype} on {self._device} to {W.dtype} on {W.device} "
                               "after this AutoencoderStep was built: build a new one")
        batch = self._batch
        if (batch is not None and type(x) in _PLAIN and x.dtype == batch[0] and x.device == batch[1]
                and x.dim() == 2 and x.shape[1] == self._n_visible
                and x.numel() * self._draws_per_element <= check.MAX_COUNTERS):
            return x.contiguous()
        return self._check_batch_in_full(x)

    def _check_batch_in_full(self, x):
        if self.model is not None:  # the model's methods move the batch to the model's device
            x = ssl_nn._on_model_device(x, self.params[0])
        x = F._objective_args(x, *self.params, *self.names, self.seed, 0, *self.penalties[:len(_PENALTIES)],
                              **self._keywords)[0][0]
        self._batch = (x.dtype, x.device)
        return x
