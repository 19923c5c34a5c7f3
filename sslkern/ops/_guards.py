"""What every registered op checks before a backend indexes anything.

`torch.ops.sslkern.*` is public surface: torch.compile graphs, torch.export and other
libraries call it without going through sslkern.functional's wrappers. So each op checks
what it indexes — shapes, lengths, dtypes, devices, the names of kinds, the rng tensor — and
raises a ValueError/TypeError naming the argument (a BackendError for an unknown backend).

One function per op family, called by both the op's real implementation and its fake one,
so a compiled graph fails at trace time with the same message. The checks go through
`torch._check_value` / `torch._check_type`, which accept symbolic sizes (under dynamic
shapes they become guards or runtime asserts). On plain tensors each family first runs one
boolean expression of the same conditions (`_*_ok`) and builds no message unless it fails,
which keeps the cost to a microsecond or two per call. The eager fast path (the op bodies
called directly after the public wrapper validated) does not run these.
"""
import math

import torch

from .. import _validate as check
from .. import backends
from ..kinds import ACTIVATIONS, CORRUPTIONS, LOSSES

MAX_COUNTERS = check.MAX_COUNTERS


def _value(op, cond, message):
    """ValueError `sslkern::op: message()` unless cond (a bool or a SymBool)."""
    if cond is True:
        return
    torch._check_value(cond, lambda: f"sslkern::{op}: {message()}")


def _type(op, cond, message):
    if cond is True:
        return
    torch._check_type(cond, lambda: f"sslkern::{op}: {message()}")


def _shape(t):
    return tuple(t.shape)


_PLAIN = (torch.Tensor, torch.nn.Parameter)
_FLOATING = frozenset(d for d in vars(torch).values() if isinstance(d, torch.dtype) and d.is_floating_point)


def _plain(*tensors):
    """Concrete tensors (not fake, not a subclass): the quick boolean checks apply."""
    return all(t is None or type(t) in _PLAIN for t in tensors)


def _kinds_ok(*pairs):
    return all(name in table for name, table in pairs)


def _backend_ok(name):
    return name == backends.AUTO or name in backends.NAMES


# ---------------------------------------------------------------------------------------
# Pieces


def backend(op, name):
    if name != backends.AUTO and name not in backends.NAMES:
        raise backends.BackendError(f"sslkern::{op}: unknown backend {name!r} (from set_backend or "
                                    f"SSLKERN_BACKEND); choose one of {list(backends.NAMES) + [backends.AUTO]}")


def tensor(op, name, t, ndim):
    """A floating-point tensor of `ndim` dimensions (ndim None: any)."""
    _type(op, t.dtype.is_floating_point, lambda: f"{name} must have a floating-point dtype, got {t.dtype}")
    if ndim is not None:
        _value(op, t.dim() == ndim, lambda: f"{name} must have {ndim} dimension(s), got shape {_shape(t)}")


def size(op, name, t, dim, expected, why):
    """t.shape[dim] == expected; `why` says what fixes the size (e.g. "W of shape (3, 4)")."""
    got = t.shape[dim]
    _value(op, got == expected,
           lambda: f"{name} has shape {_shape(t)} but {why} needs {expected} in dimension {dim}")


def same_device(op, **tensors):
    check.same_device(f"sslkern::{op}: ", **tensors)


def same_dtype(op, **tensors):
    check.same_dtype(f"sslkern::{op}: ", **tensors)


def kind(op, name, value, table):
    check.choice(name, value, table, prefix=f"sslkern::{op}: ")


def corruption(op, name, value, level):
    check.corruption(value, level, name=name, prefix=f"sslkern::{op}: ")


def offset(op, value):
    _value(op, value >= 0, lambda: f"offset must be in [0, 2**32), got {value!r}")
    _value(op, value < MAX_COUNTERS, lambda: f"offset must be in [0, 2**32), got {value!r}")


def counters(op, name, numel):
    _value(op, numel <= MAX_COUNTERS,
           lambda: f"{name} has {numel} elements; the 32-bit Philox counter allows at most 2**32")


def rng(op, value, like):
    """None, or the int64 [2] tensor (seed bits, offset) on `like`'s device, contiguous."""
    check.rng_tensor(value, like.device, prefix=f"sslkern::{op}: ")


def scalar_grad(op, name, grad):
    tensor(op, name, grad, 0)


# ---------------------------------------------------------------------------------------
# One function per op family


def philox(n, offset_, device, backend_):
    op = "philox"
    backend(op, backend_)
    _value(op, n >= 0, lambda: f"n must be >= 0, got {n}")
    if isinstance(n, torch.SymInt):
        torch._check_is_size(n)
    counters(op, "n", n)
    offset(op, offset_)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"sslkern::{op}: device {device} requested but CUDA is not available here")


def corrupt(op, x, kind_, level, offset_, backend_, rng_, name="x", shape=(0, 0), patch=0):
    structured = kind_ in CORRUPTIONS and CORRUPTIONS[kind_].needs_image_shape
    if structured and check.level_ok(kind_, level):
        tensor(op, name, x, 2)  # one image per row
        check.mask_shape(kind_, level, x.shape[1], shape, patch, 1.0, prefix=f"sslkern::{op}: ")
    if (_plain(x, rng_) and _backend_ok(backend_) and x.dtype in _FLOATING and kind_ in CORRUPTIONS
            and check.level_ok(kind_, level) and 0 <= offset_ < MAX_COUNTERS and x.numel() <= MAX_COUNTERS
            and check.rng_tensor_ok(rng_, x.device)):
        return
    backend(op, backend_)
    tensor(op, name, x, None)
    corruption(op, "kind", kind_, level)
    offset(op, offset_)
    counters(op, name, x.numel())
    rng(op, rng_, x)


def _layer_ok(x, W, bias, transpose):
    """The conditions _layer checks, as one boolean (plain tensors only)."""
    xs, ws = x.shape, W.shape
    if not (len(xs) == 2 and len(ws) == 2 and x.dtype in _FLOATING and W.dtype in _FLOATING):
        return False
    inner, outer = (ws[1], ws[0]) if transpose else ws
    device = W.device
    return (xs[1] == inner and x.device == device
            and (bias is None or (bias.shape == (outer,) and bias.dtype == W.dtype and bias.device == device)))


def _layer(op, x, x_name, W, bias, bias_name, transpose):
    """x [B, inner] and bias [outer] against W [H, D]: (inner, outer) = (D, H) when transpose."""
    tensor(op, x_name, x, 2)
    tensor(op, "W", W, 2)
    same_device(op, **{x_name: x, "W": W, bias_name: bias})
    inner, outer = (W.shape[1], W.shape[0]) if transpose else (W.shape[0], W.shape[1])
    size(op, x_name, x, 1, inner, f"W of shape {_shape(W)}")
    if bias is not None:
        tensor(op, bias_name, bias, 1)
        same_dtype(op, W=W, **{bias_name: bias})
        size(op, bias_name, bias, 0, outer, f"W of shape {_shape(W)}")
    return inner, outer


def _single_layer(op, x, W, bias, bias_name, activation, transpose, backend_):
    """f(x Wᵀ + bias) (transpose) or f(x W + bias): the forward of linear_act and the penalty."""
    if _plain(x, W, bias) and _backend_ok(backend_) and activation in ACTIVATIONS and _layer_ok(x, W, bias, transpose):
        return
    backend(op, backend_)
    kind(op, "activation", activation, ACTIVATIONS)
    _layer(op, x, "x", W, bias, bias_name, transpose)


def linear_act(x, W, bias, activation, transpose, backend_):
    _single_layer("linear_act", x, W, bias, "bias", activation, transpose, backend_)


def linear_act_backward(grad_y, y, x, W, activation, transpose, backend_):
    if (_plain(grad_y, y, x, W) and _backend_ok(backend_) and activation in ACTIVATIONS
            and _layer_ok(x, W, None, transpose)):
        rows_cols = (x.shape[0], W.shape[0] if transpose else W.shape[1])
        if all(t.dim() == 2 and tuple(t.shape) == rows_cols and t.dtype == W.dtype and t.device == W.device
               for t in (grad_y, y)):
            return
    op = "linear_act_backward"
    backend(op, backend_)
    kind(op, "activation", activation, ACTIVATIONS)
    _, outer = _layer(op, x, "x", W, None, "bias", transpose)
    for name, t in (("grad_y", grad_y), ("y", y)):
        tensor(op, name, t, 2)
        size(op, name, t, 0, x.shape[0], f"x of shape {_shape(x)}")
        size(op, name, t, 1, outer, f"W of shape {_shape(W)}")
    same_device(op, grad_y=grad_y, y=y, x=x, W=W)
    same_dtype(op, W=W, grad_y=grad_y, y=y)


def contractive(x, W, b, activation, backend_):
    _single_layer("contractive_penalty", x, W, b, "b", activation, True, backend_)


def contractive_backward(grad, x, W, h, r, s2col, activation, backend_):
    if (_plain(grad, x, W, h, r, s2col) and _backend_ok(backend_) and activation in ACTIVATIONS
            and _layer_ok(x, W, None, True) and grad.dim() == 0 and grad.dtype in _FLOATING
            and _saved_ok(W, (h, (x.shape[0], W.shape[0])), (r, (W.shape[0],)), (s2col, (W.shape[0],)))
            and grad.device == W.device):
        return
    op = "contractive_penalty_backward"
    backend(op, backend_)
    kind(op, "activation", activation, ACTIVATIONS)
    scalar_grad(op, "grad", grad)
    _layer(op, x, "x", W, None, "b", True)
    tensor(op, "h", h, 2)
    size(op, "h", h, 0, x.shape[0], f"x of shape {_shape(x)}")
    size(op, "h", h, 1, W.shape[0], f"W of shape {_shape(W)}")
    for name, t in (("r", r), ("s2col", s2col)):
        tensor(op, name, t, 1)
        size(op, name, t, 0, W.shape[0], f"W of shape {_shape(W)}")
    same_device(op, grad=grad, x=x, W=W, h=h, r=r, s2col=s2col)
    same_dtype(op, W=W, h=h, r=r, s2col=s2col)


def _saved_ok(W, *tensors_and_shapes):
    """Each tensor has the shape given, W's dtype and W's device."""
    return all(t.shape == shape and t.dtype == W.dtype and t.device == W.device for t, shape in tensors_and_shapes)


def _objective_ok(x, W, b, c, encoder, decoder, loss, corruption_, level, contractive_, offset_, backend_, rng_):
    if not (_plain(x, W, b, c, rng_) and _backend_ok(backend_)
            and _kinds_ok((encoder, ACTIVATIONS), (decoder, ACTIVATIONS), (loss, LOSSES), (corruption_, CORRUPTIONS))):
        return False
    needs = LOSSES[loss].needs_decoder
    return ((needs is None or decoder == needs) and check.level_ok(corruption_, level)
            and math.isfinite(contractive_) and contractive_ >= 0 and 0 <= offset_ < MAX_COUNTERS
            and _layer_ok(x, W, b, True) and c.shape == (W.shape[1],) and c.dtype == W.dtype and c.device == W.device
            and (corruption_ == "none" or x.numel() <= MAX_COUNTERS) and check.rng_tensor_ok(rng_, x.device))


def objective(op, x, W, b, c, encoder, decoder, loss, corruption_, level, contractive_, offset_,
              backend_, rng_, penalties_=None):
    """The arguments every objective op shares (b may be None: the backward has none);
    `penalties_` the trailing sparsity and higher-order arguments (None: their defaults)."""
    penalties(op, encoder, corruption_, level, x, _DEFAULT_TRAILING if penalties_ is None else penalties_)
    if penalties_ is not None and penalties_[10] != "default":
        check.precision(penalties_[10], W.dtype, prefix=f"sslkern::{op}: ")
    if _objective_ok(x, W, b, c, encoder, decoder, loss, corruption_, level, contractive_, offset_, backend_, rng_):
        return
    backend(op, backend_)
    kind(op, "encoder", encoder, ACTIVATIONS)
    kind(op, "decoder", decoder, ACTIVATIONS)
    kind(op, "loss", loss, LOSSES)
    needs = LOSSES[loss].needs_decoder
    if needs is not None and decoder != needs:
        raise ValueError(f"sslkern::{op}: loss={loss!r} needs decoder={needs!r}, got decoder={decoder!r}")
    corruption(op, "corruption", corruption_, level)
    if not (math.isfinite(contractive_) and contractive_ >= 0):
        raise ValueError(f"sslkern::{op}: contractive must be a finite number >= 0, got {contractive_!r}")
    offset(op, offset_)
    _layer(op, x, "x", W, b, "b", True)
    tensor(op, "c", c, 1)
    same_device(op, x=x, W=W, c=c)
    same_dtype(op, W=W, c=c)
    size(op, "c", c, 0, W.shape[1], f"W of shape {_shape(W)}")
    if corruption_ != "none":
        counters(op, "x", x.numel())
    rng(op, rng_, x)


def penalties(op, encoder, corruption_, level, x, values):
    """The trailing arguments: the sparsity and higher-order ones (sslkern._validate.penalties)
    with the counters a higher-order term draws, then the structured masks' image shape, tile
    side and hole weight (sslkern._validate.mask_shape); the precision is objective()'s."""
    structured = corruption_ in CORRUPTIONS and CORRUPTIONS[corruption_].needs_image_shape
    if values == _DEFAULT_TRAILING and not structured:
        return
    prefix = f"sslkern::{op}: "
    if encoder in ACTIVATIONS:  # an unknown encoder is reported by objective()
        check.penalties(encoder, *values[:6], prefix=prefix)
    higher_order, samples = values[3], values[5]
    if higher_order and isinstance(samples, int) and samples >= 1:
        counters(op, "x", (1 + samples) * x.numel())
    if corruption_ in CORRUPTIONS and check.level_ok(corruption_, level) and x.dim() == 2:  # else objective() says why
        check.mask_shape(corruption_, level, x.shape[1], values[6:8], *values[8:10], prefix=prefix)


_DEFAULT_TRAILING = (0.0, 0.05, "kl", 0.0, 0.1, 1, 0, 0, 0, 1.0, "default")

_SAVED = ("h", "ax", "r", "s2col", "dc", "hcol", "h_noisy")


def objective_backward(grad, x, W, c, saved, encoder, decoder, loss, corruption_, level, contractive_,
                       offset_, backend_, rng_, penalties_=None):
    """The forward's checks, and the saved tensors (h, ax, r, s2col, dc, hcol, h_noisy) against
    the shapes the forward gave them (sslkern.ops.autoencoder.saved_shapes)."""
    from .autoencoder import TRAILING_DEFAULTS, saved_shapes

    op = "autoencoder_loss_backward"
    values = tuple(TRAILING_DEFAULTS.values()) if penalties_ is None else penalties_
    objective(op, x, W, None, c, encoder, decoder, loss, corruption_, level, contractive_, offset_,
              backend_, rng_, values)
    sparsity, _, sparsity_kind, higher_order, _, samples = values[:6]
    expected = saved_shapes(x.shape[0], x.shape[1], W.shape[0], contractive_, sparsity, sparsity_kind,
                            higher_order, samples)
    if (_plain(grad, *saved) and grad.dim() == 0 and grad.dtype in _FLOATING and grad.device == W.device
            and _saved_ok(W, *zip(saved, expected))):
        return
    scalar_grad(op, "grad", grad)
    why = f"x of shape {_shape(x)}, W of shape {_shape(W)} and these penalties"
    for name, t, shape in zip(_SAVED, saved, expected):
        tensor(op, name, t, len(shape))
        for dim, length in enumerate(shape):
            if name not in ("r", "s2col") or length:  # r, s2col: read only when the forward made them
                size(op, name, t, dim, length, why)
    same_device(op, grad=grad, x=x, W=W, **dict(zip(_SAVED, saved)))
    same_dtype(op, W=W, **dict(zip(_SAVED, saved)))


def learning_rate(op, lr):
    if not (math.isfinite(lr) and lr >= 0):
        raise ValueError(f"sslkern::{op}: lr must be a finite number >= 0, got {lr!r}")
