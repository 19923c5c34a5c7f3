"""Argument checks for the public ops. Each error names the argument it is about."""
import math
from numbers import Integral, Real

import torch

from .kinds import ACTIVATIONS, CORRUPTIONS, LOSSES, PRECISIONS, SPARSITIES, unit_interval

MAX_COUNTERS = 2**32  # Philox counters are 32-bit (docs/random.md)
FLOAT32_MAX = 3.4028234663852886e38
MAX_SEED = 2**64


def tensor(name, value, ndim):
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if not value.dtype.is_floating_point:
        raise TypeError(f"{name} must have a floating-point dtype, got {value.dtype}")
    if value.dim() != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {tuple(value.shape)}")
    return value


def same_device(prefix="", **tensors):
    """The non-None tensors share one device; `prefix` goes before the message (the registered
    ops name themselves, "sslkern::op: ")."""
    devices = {name: t.device for name, t in tensors.items() if t is not None}
    if len(set(devices.values())) > 1:
        listed = ", ".join(f"{name} on {dev}" for name, dev in devices.items())
        raise ValueError(f"{prefix}tensors must be on one device: {listed}")


def same_dtype(prefix="", **tensors):
    dtypes = {name: t.dtype for name, t in tensors.items() if t is not None}
    if len(set(dtypes.values())) > 1:
        listed = ", ".join(f"{name} is {dt}" for name, dt in dtypes.items())
        raise TypeError(f"{prefix}parameters must share one dtype: {listed}")


def choice(name, value, table, prefix=""):
    """The row of `table` (a sslkern.kinds.Table) called `value`; the error names the argument."""
    if not isinstance(value, str) or value not in table:
        raise ValueError(f"{prefix}{name} must be one of {list(table.names())}, got {value!r}")
    return table[value]


def activation(name, value):
    choice(name, value, ACTIVATIONS)
    return value


def loss(value, decoder):
    needs = choice("loss", value, LOSSES).needs_decoder
    if needs is not None and decoder != needs:
        raise ValueError(f"loss={value!r} needs decoder={needs!r} (it is computed from the logit), "
                         f"got decoder={decoder!r}")
    return value


def corruption(kind, level, name="kind", prefix=""):
    """The level as a float, in the range the corruption kind's row allows."""
    row = choice(name, kind, CORRUPTIONS, prefix)
    if isinstance(level, bool) or not isinstance(level, Real) or not math.isfinite(level):
        raise ValueError(f"{prefix}level must be a finite number, got {level!r}")
    if not level_ok(kind, level):
        low, high = row.level_range
        span = f"[{low:g}, {high:g}]" if math.isfinite(high) else f">= {low:g}"
        raise ValueError(f"{prefix}level must be {'in ' if math.isfinite(high) else ''}{span} for {kind!r} "
                         f"({row.level_meaning}), got {level}")
    return float(level)


def level_ok(kind, level):
    """The fast test: a known kind's finite level inside its row's range."""
    low, high = CORRUPTIONS[kind].level_range
    return math.isfinite(level) and low <= level <= high


def nonnegative(name, value):
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def penalties(encoder, sparsity, sparsity_target, sparsity_kind, higher_order, higher_order_sigma,
              higher_order_samples, prefix=""):
    """The sparsity and higher-order contractive arguments, checked and normalised (floats,
    an int sample count); `prefix` goes before each message."""
    values = {}
    for name, value in (("sparsity", sparsity), ("higher_order", higher_order),
                        ("higher_order_sigma", higher_order_sigma)):
        if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value) or value < 0:
            raise ValueError(f"{prefix}{name} must be a finite number >= 0, got {value!r}")
        values[name] = float(value)
    if values["higher_order_sigma"] > FLOAT32_MAX:  # the normals are float32 (docs/random.md §3)
        raise ValueError(f"{prefix}higher_order_sigma must be a finite float32, got {higher_order_sigma!r}")
    row = choice("sparsity_kind", sparsity_kind, SPARSITIES, prefix)
    if row.needs_unit_interval:
        if (isinstance(sparsity_target, bool) or not isinstance(sparsity_target, Real)
                or not 0 < sparsity_target < 1):
            raise ValueError(f"{prefix}sparsity_target must be in (0, 1) for sparsity_kind="
                             f"{sparsity_kind!r} (a target mean activation), got {sparsity_target!r}")
        if values["sparsity"] and not unit_interval(encoder):
            low, high = ACTIVATIONS[encoder].output_range
            raise ValueError(f"{prefix}sparsity_kind={sparsity_kind!r} needs an encoder whose outputs lie in "
                             f"(0, 1) (sigmoid), got encoder={encoder!r} with outputs in ({low:g}, {high:g}); "
                             f"use sparsity_kind='l1' for it")
    elif isinstance(sparsity_target, bool) or not isinstance(sparsity_target, Real):
        raise ValueError(f"{prefix}sparsity_target must be a number, got {sparsity_target!r}")
    if isinstance(higher_order_samples, bool) or not isinstance(higher_order_samples, Integral) \
            or higher_order_samples < 1:
        raise ValueError(f"{prefix}higher_order_samples must be an integer >= 1, got {higher_order_samples!r}")
    return (values["sparsity"], float(sparsity_target), sparsity_kind, values["higher_order"],
            values["higher_order_sigma"], int(higher_order_samples))


def precision(value, dtype, prefix=""):
    """A row name of kinds.PRECISIONS that parameters of `dtype` can train with: a rounded
    precision keeps fp32 master parameters (the products' operands are rounded, not them)."""
    row = choice("precision", value, PRECISIONS, prefix)
    if row.operands is not None and dtype != torch.float32:
        raise TypeError(f"{prefix}precision={value!r} rounds the products' operands of float32 parameters "
                        f"(fp32 master weights); the parameters are {dtype}: use float32 parameters, or "
                        f"precision='default'")
    return value


def image_shape(value, name="image_shape"):
    """(height, width) as ints from None, a pair of positive ints, or anything shaped so; None
    gives (0, 0), "not given"."""
    if value is None:
        return 0, 0
    try:
        height, width = value
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (height, width), got {value!r}") from None
    for part in (height, width):
        if isinstance(part, bool) or not isinstance(part, Integral) or part < 1:
            raise ValueError(f"{name} must be a pair of positive integers (height, width), got {value!r}")
    return int(height), int(width)


def mask_shape(kind, level, visible, shape, patch, hole_weight, prefix=""):
    """The structured masks' arguments: the rows of x are images of `shape` = (height, width)
    ((0, 0): not given), `patch` the tile side of the patch mask (0: not given), and the hole
    weight (which needs a corruption that drops pixels)."""
    row = choice("corruption", kind, CORRUPTIONS, prefix)
    height, width = shape
    if row.needs_image_shape:
        if height * width == 0:
            raise ValueError(f"{prefix}corruption={kind!r} needs image_shape=(height, width): the rows of x "
                             f"are images")
        if height * width != visible:
            raise ValueError(f"{prefix}image_shape ({height}, {width}) has {height * width} pixels but the rows of x "
                             f"have {visible}")
    if row.name == "block":
        side = int(round(math.sqrt(level * height * width)))
        if level > 0 and side == 0:
            raise ValueError(f"{prefix}level={level} makes a square hole of side 0 in images of {height} x {width}: "
                             f"nothing would be dropped")
        if side > min(height, width):
            raise ValueError(f"{prefix}level={level} makes a square hole of side {side}, which does not fit in "
                             f"images of {height} x {width}")
    if row.name == "patch" and not (isinstance(patch, Integral) and not isinstance(patch, bool)
                                    and 1 <= patch <= max(height, width)):
        raise ValueError(f"{prefix}corruption='patch' needs patch= (the tile side) between 1 and "
                         f"{max(height, width)}, got {patch!r}")
    if isinstance(hole_weight, bool) or not isinstance(hole_weight, Real) or not math.isfinite(hole_weight) \
            or hole_weight < 0:
        raise ValueError(f"{prefix}hole_weight must be a finite number >= 0, got {hole_weight!r}")
    if hole_weight != 1 and row.passes_gradient:
        raise ValueError(f"{prefix}hole_weight={hole_weight} weights the pixels a mask drops, but "
                         f"corruption={kind!r} drops none")
    return height, width, int(patch or 0), float(hole_weight)


def penalty_counters(name, numel, higher_order, samples, prefix=""):
    """A higher-order term draws `samples` more B*D counters past the corruption's."""
    if higher_order and (1 + samples) * numel > MAX_COUNTERS:
        raise ValueError(f"{prefix}{name} has {numel} elements and higher_order_samples={samples}: "
                         f"(1 + samples) * {numel} counters exceed the 2**32 of the Philox stream")


def seed(value):
    if isinstance(value, bool) or not isinstance(value, Integral) or not 0 <= value < MAX_SEED:
        raise ValueError(f"seed must be an integer in [0, 2**64), got {value!r}")
    return int(value)


def rng_tensor_ok(value, device):
    """The fast test of rng_tensor: None, or a valid (seed bits, offset) tensor for `device`."""
    return value is None or (value.dtype == torch.int64 and value.shape == (2,) and value.device == device
                             and value.is_contiguous())


def rng_tensor(value, device, name="rng", prefix=""):
    """The one check of a random-stream tensor: None, or an int64 [2] = (seed bits, offset) on
    the data's `device`, contiguous (a copy would not see the caller advancing it in place).
    `prefix` goes before the message (the registered ops name themselves)."""
    if rng_tensor_ok(value, device):
        return value
    if value.dtype != torch.int64:
        raise TypeError(f"{prefix}{name} must be an int64 tensor (seed bits, offset), got {value.dtype}")
    if value.shape != (2,):
        raise ValueError(f"{prefix}{name} must have shape [2] (seed bits, offset), got {tuple(value.shape)}")
    if value.device != device:
        raise ValueError(f"{prefix}{name} must be on {device} with the data, got {value.device}")
    raise ValueError(f"{prefix}{name} must be contiguous (a captured step advances it in place)")


def seed_or_rng(value, offset_value, like):
    """(int seed, int offset, rng): `seed` is an integer, or an int64 tensor [2] = (seed bits,
    offset) on `like`'s device that the kernels read when they run (then offset must stay 0:
    the tensor carries it)."""
    if not isinstance(value, torch.Tensor):
        return seed(value), offset(offset_value), None
    rng_tensor(value, like.device, name="seed")
    if isinstance(offset_value, bool) or not isinstance(offset_value, Integral) or offset_value != 0:
        raise ValueError(f"offset must be 0 when seed is a tensor (its second element is the offset), "
                         f"got {offset_value!r}")
    return 0, 0, value


def offset(value):
    if isinstance(value, bool) or not isinstance(value, Integral) or not 0 <= value < MAX_COUNTERS:
        raise ValueError(f"offset must be an integer in [0, 2**32), got {value!r}")
    return int(value)


def counters(name, numel):
    if numel > MAX_COUNTERS:
        raise ValueError(f"{name} has {numel} elements; the 32-bit Philox counter allows at most 2**32")


def count(name, value):
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    counters(name, value)
    return int(value)


def signed_seed(value):
    """The 64-bit seed as the int64 a torch.library schema carries."""
    return value - MAX_SEED if value >= 2**63 else value
