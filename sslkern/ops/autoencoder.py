"""sslkern::autoencoder_loss — the whole tied-weight objective L + lambda P in two ops — and
two ops without an autograd graph: sslkern::autoencoder_value_and_grad (the objective and its
parameter gradients) and sslkern::autoencoder_sgd_step (the same, with a plain SGD update of
the parameters in place). Each is one C++ call per training step on the CPU.

The forward runs corruption, both products and their fused epilogues, and already writes
dL/da: the backward only needs the two remaining products (dA Wᵀ and the weight gradient).
Every gradient is linear in the incoming scalar gradient, which the backward folds into
its epilogues. `rng`, when given, is an int64 [2] tensor (seed bits, offset) on the data's
device that replaces the integer seed and offset (see sslkern.functional.corrupt).
"""
from typing import Optional

import torch

from .. import _compat
from ..backends.base import AEForward, StepConfig
from . import _guards as guard
from ._common import backend_for, cast_like, stream


# The trailing arguments of every objective op (after rng), with their defaults: the penalties
# of sslkern/backends/penalties.py, then the structured masks' image shape and tile side and
# the hole weight (sslkern/backends/structured.py; 0 for "no image shape"), then the precision
# of the products.
PENALTY_DEFAULTS = {"sparsity": 0.0, "sparsity_target": 0.05, "sparsity_kind": "kl",
                    "higher_order": 0.0, "higher_order_sigma": 0.1, "higher_order_samples": 1}
MASK_DEFAULTS = {"image_height": 0, "image_width": 0, "patch": 0, "hole_weight": 1.0}
PRECISION_DEFAULTS = {"precision": "default"}  # a row of kinds.PRECISIONS: how the products round
TRAILING_DEFAULTS = {**PENALTY_DEFAULTS, **MASK_DEFAULTS, **PRECISION_DEFAULTS}


def _config(encoder, decoder, loss, corruption, level, contractive, seed, offset, rng=None, *extras):
    return StepConfig(encoder, decoder, loss, corruption, level, contractive, *stream(seed, offset, rng),
                      *extras)


def _shape(x, W):
    return x.shape[0], x.shape[1], W.shape[0]


@torch.library.custom_op("sslkern::autoencoder_loss", mutates_args=())
def autoencoder_loss(x: torch.Tensor, W: torch.Tensor, b: torch.Tensor, c: torch.Tensor,
                     encoder: str, decoder: str, loss: str, corruption: str, level: float,
                     contractive: float, seed: int, offset: int, backend: str,
                     rng: Optional[torch.Tensor] = None, sparsity: float = 0.0, sparsity_target: float = 0.05,
                     sparsity_kind: str = "kl", higher_order: float = 0.0, higher_order_sigma: float = 0.1,
                     higher_order_samples: int = 1, image_height: int = 0,
                     image_width: int = 0, patch: int = 0, hole_weight: float = 1.0,
                     precision: str = "default"
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor,
                                torch.Tensor, torch.Tensor]:
    """(loss, h, ax, r, s2col, dc, hcol, h_noisy): see sslkern.backends.base.AEForward."""
    extras = (sparsity, sparsity_target, sparsity_kind, higher_order, higher_order_sigma, higher_order_samples,
              image_height, image_width, patch, hole_weight, precision)
    guard.objective("autoencoder_loss", x, W, b, c, encoder, decoder, loss, corruption, level, contractive,
                    offset, backend, rng, extras)
    cfg = _config(encoder, decoder, loss, corruption, level, contractive, seed, offset, rng, *extras)
    impl = backend_for(backend, W.device, W.dtype, _shape(x, W))
    return tuple(impl.ae_forward(*(t.contiguous() for t in (x, W, b, c)), cfg))  # see the bodies below


def saved_shapes(batch, visible, hidden, contractive, sparsity, sparsity_kind, higher_order, samples):
    """The shapes of what the objective's forward saves (AEForward without the loss)."""
    kl = sparsity != 0.0 and sparsity_kind == "kl"
    norms = hidden if contractive != 0.0 or higher_order != 0.0 else 0
    return ((batch, hidden), (2 * batch, visible), (norms,), (hidden if contractive != 0.0 else 0,),
            (visible,), (hidden if kl else 0,), (samples * batch if higher_order != 0.0 else 0, hidden))


@autoencoder_loss.register_fake
def _(x, W, b, c, encoder, decoder, loss, corruption, level, contractive, seed, offset, backend, rng=None,
      sparsity=0.0, sparsity_target=0.05, sparsity_kind="kl", higher_order=0.0, higher_order_sigma=0.1,
      higher_order_samples=1, image_height=0, image_width=0, patch=0,
      hole_weight=1.0, precision="default"):
    extras = (sparsity, sparsity_target, sparsity_kind, higher_order, higher_order_sigma, higher_order_samples,
              image_height, image_width, patch, hole_weight, precision)
    guard.objective("autoencoder_loss", x, W, b, c, encoder, decoder, loss, corruption, level, contractive,
                    offset, backend, rng, extras)
    shapes = saved_shapes(x.shape[0], x.shape[1], W.shape[0], contractive, sparsity, sparsity_kind,
                          higher_order, higher_order_samples)
    return (W.new_empty(()), *(W.new_empty(shape) for shape in shapes))


@torch.library.custom_op("sslkern::autoencoder_loss_backward", mutates_args=())
def autoencoder_loss_backward(grad: torch.Tensor, x: torch.Tensor, W: torch.Tensor, c: torch.Tensor,
                              h: torch.Tensor, ax: torch.Tensor, r: torch.Tensor, s2col: torch.Tensor,
                              dc: torch.Tensor, hcol: torch.Tensor, h_noisy: torch.Tensor, encoder: str,
                              decoder: str, loss: str, corruption: str, level: float, contractive: float,
                              seed: int, offset: int, need_dx: bool, backend: str,
                              rng: Optional[torch.Tensor] = None, sparsity: float = 0.0,
                              sparsity_target: float = 0.05, sparsity_kind: str = "kl",
                              higher_order: float = 0.0, higher_order_sigma: float = 0.1,
                              higher_order_samples: int = 1, image_height: int = 0,
                              image_width: int = 0, patch: int = 0, hole_weight: float = 1.0,
                              precision: str = "default"
                              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dx or an empty tensor, dW, db, dc), all scaled by grad."""
    extras = (sparsity, sparsity_target, sparsity_kind, higher_order, higher_order_sigma, higher_order_samples,
              image_height, image_width, patch, hole_weight, precision)
    saved = (h, ax, r, s2col, dc, hcol, h_noisy)
    guard.objective_backward(grad, x, W, c, saved, encoder, decoder, loss, corruption, level,
                             contractive, offset, backend, rng, extras)
    cfg = _config(encoder, decoder, loss, corruption, level, contractive, seed, offset, rng, *extras)
    saved = AEForward(None, *(t.contiguous() for t in saved))
    impl = backend_for(backend, W.device, W.dtype, _shape(x, W))  # the forward's choice
    return tuple(impl.ae_backward(grad, x.contiguous(), W.contiguous(), c.contiguous(), saved, cfg, need_dx))


@autoencoder_loss_backward.register_fake
def _(grad, x, W, c, h, ax, r, s2col, dc, hcol, h_noisy, encoder, decoder, loss, corruption, level,
      contractive, seed, offset, need_dx, backend, rng=None, sparsity=0.0, sparsity_target=0.05,
      sparsity_kind="kl", higher_order=0.0, higher_order_sigma=0.1, higher_order_samples=1, image_height=0, image_width=0, patch=0,
      hole_weight=1.0, precision="default"):
    extras = (sparsity, sparsity_target, sparsity_kind, higher_order, higher_order_sigma, higher_order_samples,
              image_height, image_width, patch, hole_weight, precision)
    guard.objective_backward(grad, x, W, c, (h, ax, r, s2col, dc, hcol, h_noisy), encoder, decoder, loss,
                             corruption, level, contractive, offset, backend, rng, extras)
    dx = W.new_empty(x.shape) if need_dx else W.new_empty(0)
    return dx, torch.empty_like(W), W.new_empty(W.shape[0]), W.new_empty(W.shape[1])


DOUBLE_BACKWARD = ("sslkern.autoencoder_loss: double backward (a gradient of its gradients, e.g. after "
                   "create_graph=True) is not supported: its backward runs fused kernels, not differentiable ops")


def _no_double_backward(ctx, *grads):
    raise RuntimeError(DOUBLE_BACKWARD)


autoencoder_loss_backward.register_autograd(_no_double_backward, setup_context=lambda ctx, inputs, output: None)


class _FirstOrderOnly(torch.autograd.Function):
    """Identity on the gradients a backward returns under create_graph=True, whose own backward
    raises DOUBLE_BACKWARD: differentiating them again fails with that message, not with one
    about mm()'s out= arguments, and never silently gives zero."""

    @staticmethod
    def forward(ctx, anchors, *tensors):
        return tuple(g.clone() for g in tensors[anchors:])

    @staticmethod
    def backward(ctx, *_):
        raise RuntimeError(DOUBLE_BACKWARD)


def first_order_only(grads, anchors):
    """`grads` (some None), marked so that a second backward through them raises; unchanged
    outside create_graph=True (grad mode is off in a plain backward)."""
    anchors = [t for t in anchors if t is not None and t.requires_grad]
    present = [g for g in grads if g is not None]
    if not anchors or not present:
        return grads
    marked = iter(_FirstOrderOnly.apply(len(anchors), *anchors, *present))
    return tuple(None if g is None else next(marked) for g in grads)


# One save-and-backward implementation for both autograd paths: the registered op below and
# the eager fast path (EagerAutoencoderLoss) save the same tensors and take the same gradients;
# they differ only in how the backward is run (the backward op, or the backend directly).


def save_forward(ctx, x, W, c, out: AEForward, rng, higher_order):
    """Saves what the backward needs. dx and the higher-order term redraw noise: then rng is
    saved too, so the backward reads the same (seed, offset), and advancing it in place before
    the backward raises."""
    redraws = ctx.needs_input_grad[0] or higher_order != 0.0
    ctx.save_for_backward(x, W, c, *out[1:], rng if redraws else None)


def saved_gradients(ctx, grad, run_backward):
    """(dx or None, dW, db, dc) from what save_forward saved; run_backward(grad, x, W, c,
    saved, need_dx, rng) returns the backend's (dx, dW, db, dc)."""
    x, W, c, *saved, rng = ctx.saved_tensors
    if grad is None:  # only auxiliary outputs were used: no gradient flows from the loss
        grad = W.new_zeros(())
    need_dx = ctx.needs_input_grad[0]
    dx, dW, db, dc = run_backward(grad.to(W.dtype), x, W, c, AEForward(None, *saved), need_dx, rng)
    return cast_like(dx, x) if need_dx else None, dW, db, dc


def _setup(ctx, inputs, output):
    x, W, _, c = inputs[:4]
    ctx.config, rng = inputs[4:13], inputs[13]  # encoder ... backend; rng
    ctx.extras = tuple(inputs[14:]) + tuple(TRAILING_DEFAULTS.values())[len(inputs) - 14:]
    save_forward(ctx, x, W, c, AEForward(*output), rng, ctx.extras[3])  # extras[3]: higher_order
    ctx.set_materialize_grads(False)  # the auxiliary outputs' zero gradients cost a [2B, D] fill


def _backward(ctx, grad, *_unused_aux):
    *step, backend = ctx.config

    def through_the_op(grad, x, W, c, saved, need_dx, rng):
        return autoencoder_loss_backward(grad, x, W, c, *saved[1:], *step, need_dx, backend, rng, *ctx.extras)

    return saved_gradients(ctx, grad, through_the_op) + (None,) * (10 + len(ctx.extras))


autoencoder_loss.register_autograd(_backward, setup_context=_setup)


def value_and_grad(impl, x, W, b, c, cfg):
    """(loss, dW, db, dc) for an incoming gradient of 1: the backend's one-call route where it
    has one, else its forward and backward back to back."""
    fused = impl.ae_value_and_grad(x, W, b, c, cfg)
    if fused is not None:
        return tuple(fused)
    saved = impl.ae_forward(x, W, b, c, cfg)
    _, dW, db, dc = impl.ae_backward(W.new_ones(()), x, W, c, saved, cfg, False)
    return saved.loss, dW, db, dc


def sgd_step(impl, x, W, b, c, cfg, lr):
    """One SGD step on W, b, c in place; the loss before it. The backend's one-call route
    where it has one, else value_and_grad and a foreach update."""
    loss = impl.ae_sgd_step(x, W, b, c, cfg, lr)
    if loss is None:
        loss, *grads = value_and_grad(impl, x, W, b, c, cfg)
        torch._foreach_add_([W, b, c], grads, alpha=-lr)
    return loss


def _backend_and_config(x, W, encoder, decoder, loss, corruption, level, contractive, seed, offset,
                        backend, rng, extras):
    cfg = _config(encoder, decoder, loss, corruption, level, contractive, seed, offset, rng, *extras)
    return backend_for(backend, W.device, W.dtype, _shape(x, W)), cfg


# The bodies of the two graph-free ops, called directly by the eager path (no dispatcher).
# Backends take contiguous tensors: the public wrappers pass them, a direct torch.ops call
# may not, so every op body makes sure (a no-op for contiguous tensors).


def value_and_grad_body(x: torch.Tensor, W: torch.Tensor, b: torch.Tensor, c: torch.Tensor,
                        encoder: str, decoder: str, loss: str, corruption: str, level: float,
                        contractive: float, seed: int, offset: int, backend: str,
                        rng: Optional[torch.Tensor] = None, *extras
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, dW, db, dc): the objective and its parameter gradients, no autograd graph (not
    differentiable: the public wrapper passes detached tensors). `extras`: the trailing
    arguments of TRAILING_DEFAULTS, in order."""
    impl, cfg = _backend_and_config(x, W, encoder, decoder, loss, corruption, level, contractive,
                                    seed, offset, backend, rng, extras)
    return value_and_grad(impl, x.contiguous(), W.contiguous(), b.contiguous(), c.contiguous(), cfg)


def sgd_step_body(x: torch.Tensor, W: torch.Tensor, b: torch.Tensor, c: torch.Tensor,
                  encoder: str, decoder: str, loss: str, corruption: str, level: float,
                  contractive: float, seed: int, offset: int, backend: str, lr: float,
                  rng: Optional[torch.Tensor] = None, *extras) -> torch.Tensor:
    """The loss; W, b and c take one SGD step of size lr in place (not differentiable)."""
    impl, cfg = _backend_and_config(x, W, encoder, decoder, loss, corruption, level, contractive,
                                    seed, offset, backend, rng, extras)
    params = (W, b, c)
    work = [p.contiguous() for p in params]  # the update lands in a copy, then is copied back
    total = sgd_step(impl, x.contiguous(), *work, cfg, lr)
    for param, updated in zip(params, work):
        if updated is not param:
            param.copy_(updated)
    return total


# The registered ops check their arguments (sslkern/ops/_guards.py), then run the bodies; the
# eager path calls the bodies directly, after the public wrapper has checked the same things.


@torch.library.custom_op("sslkern::autoencoder_value_and_grad", mutates_args=())
def autoencoder_value_and_grad(x: torch.Tensor, W: torch.Tensor, b: torch.Tensor, c: torch.Tensor,
                               encoder: str, decoder: str, loss: str, corruption: str, level: float,
                               contractive: float, seed: int, offset: int, backend: str,
                               rng: Optional[torch.Tensor] = None, sparsity: float = 0.0,
                               sparsity_target: float = 0.05, sparsity_kind: str = "kl",
                               higher_order: float = 0.0, higher_order_sigma: float = 0.1,
                               higher_order_samples: int = 1, image_height: int = 0,
                              image_width: int = 0, patch: int = 0, hole_weight: float = 1.0,
                              precision: str = "default"
                               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """value_and_grad_body, after the checks."""
    extras = (sparsity, sparsity_target, sparsity_kind, higher_order, higher_order_sigma, higher_order_samples,
              image_height, image_width, patch, hole_weight, precision)
    guard.objective("autoencoder_value_and_grad", x, W, b, c, encoder, decoder, loss, corruption, level,
                    contractive, offset, backend, rng, extras)
    return value_and_grad_body(x, W, b, c, encoder, decoder, loss, corruption, level, contractive, seed, offset,
                               backend, rng, *extras)


@torch.library.custom_op("sslkern::autoencoder_sgd_step", mutates_args=("W", "b", "c"))
def autoencoder_sgd_step(x: torch.Tensor, W: torch.Tensor, b: torch.Tensor, c: torch.Tensor,
                         encoder: str, decoder: str, loss: str, corruption: str, level: float,
                         contractive: float, seed: int, offset: int, backend: str, lr: float,
                         rng: Optional[torch.Tensor] = None, sparsity: float = 0.0,
                         sparsity_target: float = 0.05, sparsity_kind: str = "kl",
                         higher_order: float = 0.0, higher_order_sigma: float = 0.1,
                         higher_order_samples: int = 1, image_height: int = 0,
                         image_width: int = 0, patch: int = 0, hole_weight: float = 1.0,
                         precision: str = "default") -> torch.Tensor:
    """sgd_step_body, after the checks."""
    extras = (sparsity, sparsity_target, sparsity_kind, higher_order, higher_order_sigma, higher_order_samples,
              image_height, image_width, patch, hole_weight, precision)
    guard.objective("autoencoder_sgd_step", x, W, b, c, encoder, decoder, loss, corruption, level,
                    contractive, offset, backend, rng, extras)
    guard.learning_rate("autoencoder_sgd_step", lr)
    return sgd_step_body(x, W, b, c, encoder, decoder, loss, corruption, level, contractive, seed, offset,
                         backend, lr, rng, *extras)


@autoencoder_value_and_grad.register_fake
def _(x, W, b, c, encoder, decoder, loss, corruption, level, contractive, seed, offset, backend, rng=None,
      sparsity=0.0, sparsity_target=0.05, sparsity_kind="kl", higher_order=0.0, higher_order_sigma=0.1,
      higher_order_samples=1, image_height=0, image_width=0, patch=0,
      hole_weight=1.0, precision="default"):
    extras = (sparsity, sparsity_target, sparsity_kind, higher_order, higher_order_sigma, higher_order_samples,
              image_height, image_width, patch, hole_weight, precision)
    guard.objective("autoencoder_value_and_grad", x, W, b, c, encoder, decoder, loss, corruption, level,
                    contractive, offset, backend, rng, extras)
    return W.new_empty(()), torch.empty_like(W), W.new_empty(W.shape[0]), W.new_empty(W.shape[1])


@autoencoder_sgd_step.register_fake
def _(x, W, b, c, encoder, decoder, loss, corruption, level, contractive, seed, offset, backend, lr, rng=None,
      sparsity=0.0, sparsity_target=0.05, sparsity_kind="kl", higher_order=0.0, higher_order_sigma=0.1,
      higher_order_samples=1, image_height=0, image_width=0, patch=0,
      hole_weight=1.0, precision="default"):
    extras = (sparsity, sparsity_target, sparsity_kind, higher_order, higher_order_sigma, higher_order_samples,
              image_height, image_width, patch, hole_weight, precision)
    guard.objective("autoencoder_sgd_step", x, W, b, c, encoder, decoder, loss, corruption, level,
                    contractive, offset, backend, rng, extras)
    guard.learning_rate("autoencoder_sgd_step", lr)
    return W.new_empty(())


# ---------------------------------------------------------------------------------------
# The eager fast path. A custom op call costs tens of microseconds in the dispatcher, twice
# per step (forward and backward), which is most of a step at small batches
# (benchmarks/RESULTS.md). Plain eager calls therefore run the same backend forward and
# backward through a torch.autograd.Function; anything that traces or intercepts (dynamo,
# make_fx, fake or subclass tensors, functorch transforms, torch function modes) gets the
# registered op above, so torch.compile and opcheck see exactly that.


_PLAIN_TENSORS = (torch.Tensor, torch.nn.Parameter)  # subclasses may intercept: they get the op


def eager_fast_path_ok(*tensors):
    """True when nothing would observe the difference between the op and a direct call."""
    if _compat.intercepted():
        return False
    return all(t is None or (type(t) in _PLAIN_TENSORS and t.device.type != "meta") for t in tensors)


class EagerAutoencoderLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, W, b, c, rng, cfg, backend):
        impl = backend_for(backend, W.device, W.dtype, _shape(x, W))
        ctx.cfg, ctx.impl = cfg, impl  # the backward runs on the backend the forward ran on
        ctx.precomputed = False
        if not ctx.needs_input_grad[0] and any(ctx.needs_input_grad[1:4]):
            # Gradients are linear in the incoming scalar: a backend may compute them now, for
            # 1, and the backward only scales (one compiled call per training step on the CPU).
            fused = impl.ae_value_and_grad(x, W, b, c, cfg)
            if fused is not None:
                loss, dW, db, dc = fused
                ctx.precomputed = True
                # released after the backward: .grad can take them. W only for its version
                # check: changed in place before the backward, the gradients would be stale.
                ctx.save_for_backward(dW, db, dc, W)
                return loss
        out = impl.ae_forward(x, W, b, c, cfg)
        save_forward(ctx, x, W, c, out, rng, cfg.higher_order)
        return out.loss

    @staticmethod
    def backward(ctx, grad):
        if torch.is_grad_enabled():  # create_graph=True: first-order gradients, marked as such
            with torch.no_grad():
                grads = EagerAutoencoderLoss.backward(ctx, grad)
            return first_order_only(grads, ctx.saved_tensors)
        if ctx.precomputed:
            wanted = ctx.needs_input_grad[1:4]
            grads = ctx.saved_tensors[:3]  # unpacking raises if W was modified in place
            if float(grad) != 1.0:  # loss.backward() passes exactly 1: nothing to scale
                grads = [g * grad.to(g.dtype) for g in grads]
            return (None, *(g if w else None for g, w in zip(grads, wanted)), None, None, None)

        def through_the_backend(grad, x, W, c, saved, need_dx, _rng):
            return ctx.impl.ae_backward(grad, x, W, c, saved, ctx.cfg, need_dx)

        return saved_gradients(ctx, grad, through_the_backend) + (None, None, None)


def autoencoder_loss_eager(x, W, b, c, encoder, decoder, loss, corruption, level, contractive,
                           seed, offset, backend, rng=None, *extras):
    """The loss of torch.ops.sslkern.autoencoder_loss (same arguments), without the dispatcher."""
    cfg = _config(encoder, decoder, loss, corruption, level, contractive, seed, offset, rng, *extras)
    return EagerAutoencoderLoss.apply(x, W, b, c, rng, cfg, backend)


def autoencoder_sgd_step_eager(*args):
    """torch.ops.sslkern.autoencoder_sgd_step (same arguments), without the dispatcher (which
    would advance the parameters' versions itself)."""
    total = sgd_step_body(*args)
    for param in args[1:4]:  # W, b, c: written through raw pointers (one call each: torch < 2.5 takes one tensor)
        torch.autograd.graph.increment_version(param)
    return total
