"""The public ops: argument checks, then the registered torch.library ops.

Shapes: x [B, D], W [H, D] (one row per hidden unit), b [H], c [D]. Parameters share one
dtype; x may be another floating dtype (it is computed in the parameters' dtype, and its
gradient comes back in its own). Inputs need not be contiguous.

An empty batch (B = 0) is defined: encode/decode return [0, H]/[0, D], the penalty and the
objective are 0 (a mean over no rows is taken as 0), and every gradient is zero.
"""
import torch

from . import _validate as check
from .kinds import CORRUPTIONS
from . import backends, ops  # noqa: F401  (ops registers torch.ops.sslkern.*)

_sslkern = torch.ops.sslkern


def _device(device):
    """torch.device(device), or a ValueError naming `device` (a bad string, or CUDA absent)."""
    if device is None:
        return torch.device("cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        detail = f" ({exc})" if isinstance(exc, RuntimeError) else ""
        raise ValueError(f"device must be a torch.device or a string such as 'cpu' or 'cuda:0', "
                         f"got {device!r}{detail}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} needs CUDA, which is not available here "
                         f"(torch {torch.__version__}, CUDA build: {torch.version.cuda is not None})")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"device {str(device)!r} does not exist: {torch.cuda.device_count()} CUDA device(s)")
    return device


def philox_uniform(n, seed, offset=0, device=None):
    """float32 [n]; element i is bit-identical to Triton's tl.rand(seed, offset + i)."""
    n, seed, offset = check.count("n", n), check.seed(seed), check.offset(offset)
    return _sslkern.philox(n, check.signed_seed(seed), offset, False, _device(device), backends.requested())


def philox_normal(n, seed, offset=0, device=None):
    """float32 [n]; element i is within 1e-5 of Triton's tl.randn(seed, offset + i)."""
    n, seed, offset = check.count("n", n), check.seed(seed), check.offset(offset)
    return _sslkern.philox(n, check.signed_seed(seed), offset, True, _device(device), backends.requested())


def corrupt(x, kind="mask", level=0.25, seed=0, offset=0, image_shape=None, patch=None):
    """x~ = C(x; seed, offset) (docs/random.md); element i of x in row-major order uses
    counter offset + i. Differentiable in x: the keep-mask is regenerated in the backward.

    `seed` may also be an int64 tensor [2] = (seed, offset) on x's device (a seed >= 2**63 as
    its two's-complement int64; `offset` then stays 0). The triton backend reads it on the
    device when the kernel runs, so a CUDA-graph-captured step draws fresh noise on every replay
    when the tensor is advanced in place; the other backends read it to the host once per call.
    Do not modify it between a forward and its backward (autograd raises if you do).

    The structured masks take x [B, H*W], one image per row, and `image_shape` = (H, W):
    "block" cuts one square hole of area level * H * W per image at a random position (image
    i draws counters offset + 2i and 2i + 1); "patch" drops each `patch` x `patch` tile with
    probability level (tile t of image i: counter offset + i T + t, T tiles per image)."""
    check.tensor("x", x, x.dim() if isinstance(x, torch.Tensor) else 1)
    level = check.corruption(kind, level)
    seed, offset, rng = check.seed_or_rng(seed, offset, x)
    check.counters("x", x.numel())
    height, width, patch, _ = _mask_args(kind, level, x, image_shape, patch)
    return _sslkern.corrupt(x.contiguous(), kind, level, check.signed_seed(seed), offset,
                            backends.requested(), rng, height, width, patch)


def _mask_args(kind, level, x, image_shape, patch, hole_weight=1.0):
    """(height, width, patch, hole_weight) for the ops: checked, 0 where not given."""
    shape = check.image_shape(image_shape)
    if CORRUPTIONS[kind].needs_image_shape:
        check.tensor("x", x, 2)
    visible = x.shape[-1] if x.dim() else 1
    return check.mask_shape(kind, level, visible, shape, patch or 0, hole_weight)


def _layer(x, x_name, W, bias, bias_name, transpose):
    check.tensor(x_name, x, 2)
    check.tensor("W", W, 2)
    check.tensor(bias_name, bias, 1)
    check.same_device(**{x_name: x, "W": W, bias_name: bias})
    check.same_dtype(W=W, **{bias_name: bias})
    inner, outer = (W.shape[1], W.shape[0]) if transpose else (W.shape[0], W.shape[1])
    if x.shape[1] != inner:
        raise ValueError(f"{x_name} has {x.shape[1]} columns but W of shape {tuple(W.shape)} needs {inner}")
    if bias.shape[0] != outer:
        raise ValueError(f"{bias_name} has {bias.shape[0]} entries but W of shape {tuple(W.shape)} needs {outer}")
    return x.contiguous(), W.contiguous(), bias.contiguous()


def encode(x, W, b, activation="sigmoid"):
    """h = f(x Wᵀ + b): [B, D] -> [B, H]."""
    check.activation("activation", activation)
    x, W, b = _layer(x, "x", W, b, "b", transpose=True)
    return _sslkern.linear_act(x, W, b, activation, True, backends.requested())


def decode(h, W, c, activation="sigmoid"):
    """x̂ = g(h W + c): [B, H] -> [B, D]."""
    check.activation("activation", activation)
    h, W, c = _layer(h, "h", W, c, "c", transpose=False)
    return _sslkern.linear_act(h, W, c, activation, False, backends.requested())


def contractive_penalty(x, W, b, activation="sigmoid"):
    """Mean over the batch of ||∂h/∂x||²_F for h = f(x Wᵀ + b), analytic: O(BH + HD)."""
    check.activation("activation", activation)
    x, W, b = _layer(x, "x", W, b, "b", transpose=True)
    return _sslkern.contractive_penalty(x, W, b, activation, backends.requested())[0]


def autoencoder_loss(x, W, b, c, *, encoder="sigmoid", decoder="sigmoid", loss="bce",
                     corruption="none", level=0.0, contractive=0.0, seed=0, offset=0,
                     sparsity=0.0, sparsity_target=0.05, sparsity_kind="kl",
                     higher_order=0.0, higher_order_sigma=0.1, higher_order_samples=1,
                     image_shape=None, patch=None, hole_weight=1.0, precision="default"):
    """The scalar objective L + λP + the extra penalties of docs/design.md.

    L reconstructs the clean x from the corrupted x~ = C(x; seed, offset) (bce from the
    decoder's logit, or mse), P is the contractive penalty at the encoder's input x~, λ =
    `contractive`. Differentiable in W, b, c and x. `seed` may be an int64 tensor [2] =
    (seed, offset) on x's device, as in `corrupt`.

    Extra penalties, at the encoder's output h = f(x~ Wᵀ + b) (0 switches each off):
    - `sparsity` = β: β Σ_j KL(ρ ‖ mean_i h_ij) with ρ = `sparsity_target` (sparsity_kind
      "kl", a sigmoid encoder), or β mean_i Σ_j |h_ij| (sparsity_kind "l1", any encoder);
    - `higher_order` = γ: γ mean over the batch and `higher_order_samples` perturbations ε of
      ‖J(x~) − J(x~ + ε)‖²_F, J = ∂h/∂x~, ε ~ N(0, σ²) with σ = `higher_order_sigma`, drawn
      from the Philox stream past the corruption's counters (docs/random.md).

    Structured masks (corruption "block" or "patch", see `corrupt`) take `image_shape` (and
    `patch`); `hole_weight` multiplies the reconstruction loss of the pixels a mask dropped
    (the context encoder's weighting of the hole; any corruption that drops pixels).

    `precision` (float32 parameters only): "bf16" or "fp16" round the operands of the
    objective's matrix products to that format and accumulate in fp32; the loss, the penalty
    statistics and the gradients stay fp32 (mixed precision with fp32 master weights). "fp16"
    scales the gradient operands by a power of two against underflow. "default": products in
    the parameters' dtype. docs/design.md "Mixed precision" says which route rounds what.
    """
    args, penalties = _objective_args(x, W, b, c, encoder, decoder, loss, corruption, level, contractive, seed,
                                      offset, sparsity, sparsity_target, sparsity_kind, higher_order,
                                      higher_order_sigma, higher_order_samples, image_shape=image_shape,
                                      patch=patch, hole_weight=hole_weight, precision=precision)
    if ops.autoencoder.eager_fast_path_ok(*args[:4], args[-1]):  # same kernels, no dispatcher overhead
        return ops.autoencoder.autoencoder_loss_eager(*args, *penalties)
    return _sslkern.autoencoder_loss(*args, *penalties)[0]


def autoencoder_value_and_grad(x, W, b, c, *, encoder="sigmoid", decoder="sigmoid", loss="bce",
                               corruption="none", level=0.0, contractive=0.0, seed=0, offset=0,
                               sparsity=0.0, sparsity_target=0.05, sparsity_kind="kl",
                               higher_order=0.0, higher_order_sigma=0.1, higher_order_samples=1,
                               image_shape=None, patch=None, hole_weight=1.0, precision="default"):
    """(loss, (dW, db, dc)): `autoencoder_loss` (same arguments) and its gradients in W, b and
    c, computed together without an autograd graph — for a training loop that applies its own
    update. x is data here (no dx). Nothing returned requires grad.

    Same numbers as `autoencoder_loss` followed by `torch.autograd.grad`, for less per-step
    overhead: on the CPU the whole step is one C++ call (benchmarks/RESULTS.md).
    """
    args, penalties = _objective_args(x, W, b, c, encoder, decoder, loss, corruption, level, contractive, seed,
                                      offset, sparsity, sparsity_target, sparsity_kind, higher_order,
                                      higher_order_sigma, higher_order_samples, image_shape=image_shape,
                                      patch=patch, hole_weight=hole_weight, precision=precision)
    args = (*(t.detach() for t in args[:4]), *args[4:], *penalties)
    if ops.autoencoder.eager_fast_path_ok(*args[:4], args[13]):
        value, *grads = ops.autoencoder.value_and_grad_body(*args)
    else:
        value, *grads = _sslkern.autoencoder_value_and_grad(*args)
    return value, tuple(grads)


def autoencoder_sgd_step(x, W, b, c, *, lr, encoder="sigmoid", decoder="sigmoid", loss="bce",
                         corruption="none", level=0.0, contractive=0.0, seed=0, offset=0,
                         sparsity=0.0, sparsity_target=0.05, sparsity_kind="kl",
                         higher_order=0.0, higher_order_sigma=0.1, higher_order_samples=1,
                         image_shape=None, patch=None, hole_weight=1.0, precision="default"):
    """One step of plain SGD in place: W, b, c -= lr * their gradients of `autoencoder_loss`
    (same arguments). Returns that loss, from before the update; x is data here.

    The fused form of `autoencoder_value_and_grad` then `p -= lr * g` (same numbers up to
    rounding): on the CPU one C++ call in which dW is never stored, since the weight-gradient
    product accumulates straight into W. W, b and c must be contiguous (they are written in
    place); their version counters advance, so autograd still catches a stale saved W.
    """
    lr = check.nonnegative("lr", lr)
    for name, value in (("W", W), ("b", b), ("c", c)):
        if isinstance(value, torch.Tensor) and not value.is_contiguous():
            raise ValueError(f"{name} must be contiguous: autoencoder_sgd_step updates it in place")
    args, penalties = _objective_args(x, W, b, c, encoder, decoder, loss, corruption, level, contractive, seed,
                                      offset, sparsity, sparsity_target, sparsity_kind, higher_order,
                                      higher_order_sigma, higher_order_samples, image_shape=image_shape,
                                      patch=patch, hole_weight=hole_weight, precision=precision)
    *named, rng = args[4:]
    args = (*(t.detach() for t in args[:4]), *named, lr, rng, *penalties)
    if ops.autoencoder.eager_fast_path_ok(*args[:4], rng):
        return ops.autoencoder.autoencoder_sgd_step_eager(*args)
    return _sslkern.autoencoder_sgd_step(*args)


def _objective_args(x, W, b, c, encoder, decoder, loss, corruption, level, contractive, seed, offset,
                    *penalties, image_shape=None, patch=None, hole_weight=1.0, precision="default"):
    """The checked arguments of the objective ops: ((x, W, b, c, names..., backend, rng),
    their trailing arguments: the penalties', the masks', the precision)."""
    check.activation("encoder", encoder)
    check.activation("decoder", decoder)
    check.loss(loss, decoder)
    level = check.corruption(corruption, level, name="corruption")
    contractive = check.nonnegative("contractive", contractive)
    penalties = check.penalties(encoder, *(penalties or ops.autoencoder.PENALTY_DEFAULTS.values()))
    check.tensor("x", x, 2)
    seed, offset, rng = check.seed_or_rng(seed, offset, x)
    if corruption != "none":  # before _layer copies x: a zero-stride x may be huge
        check.counters("x", x.numel())
    check.penalty_counters("x", x.numel(), penalties[3], penalties[5])
    x, W, b = _layer(x, "x", W, b, "b", transpose=True)
    masks = _mask_args(corruption, level, x, image_shape, patch, hole_weight)
    check.tensor("c", c, 1)
    check.same_device(x=x, W=W, c=c)
    check.same_dtype(W=W, c=c)
    if c.shape[0] != W.shape[1]:
        raise ValueError(f"c has {c.shape[0]} entries but W of shape {tuple(W.shape)} needs {W.shape[1]}")
    precision = check.precision(precision, W.dtype)
    return (x, W, b, c.contiguous(), encoder, decoder, loss, corruption, level, contractive,
            check.signed_seed(seed), offset, backends.requested(), rng), penalties + masks + (precision,)
