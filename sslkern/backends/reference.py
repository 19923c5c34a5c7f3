"""The `reference` backend: design.md's fused passes written as plain PyTorch.

It runs on every device and dtype torch supports (float64 included). It is also what `auto`
falls back to wherever no compiled module loads, so it is written for speed: the epilogues
work in place on the product outputs, and the Philox stream is vectorised int64 tensor
arithmetic with as few passes as the algorithm allows. The activation derivatives come from
h = f(z), as the compiled kernels take them.

It shares nothing with the float64 test oracle (`sslkern/reference.py`): the tests compare
the two, so neither may be computed from the other.
"""
import math

import torch
import torch.nn.functional as F

from ..kinds import ACTIVATIONS, CORRUPTIONS, LOSSES
from .product import ProductBackend

# --- Philox4x32-10 (design.md section 2) -------------------------------------------------------

_MASK32 = 0xFFFFFFFF
_MUL_A, _MUL_B = 0xD2511F53, 0xCD9E8D57      # c0 -> (c2, c3), c2 -> (c0, c1)
_KEY_STEP0, _KEY_STEP1 = 0x9E3779B9, 0xBB67AE85
_ROUNDS = 10
_UNIFORM_SCALE = 4.6566127342e-10  # the fp32 multiplier of tl.rand (rounded to float32 by torch)


# A word of the state is a Python int (every element equal: the zero words of the counter
# early on), a "clean" int64 tensor holding uint32 values, or a "product": the wrapped int64
# result of clean * multiplier, whose low 32 bits are a word and whose high 32 bits (shifted
# down, then masked) are another. Products are never masked: only their low 32 bits ever
# reach another word, through an xor whose result is masked before it is multiplied again.

def _times(word, multiplier):
    """word * multiplier: the full 64-bit product (wrapped int64 for a tensor)."""
    if isinstance(word, int):
        return word * multiplier
    return torch.mul(word, multiplier)


def _low(product):
    return product & _MASK32 if isinstance(product, int) else product


def _high_xor(product, word, key, clean=True):
    """(product >> 32) ^ word ^ key as a word; `clean` masks it to 32 bits (a tensor result
    that feeds a multiplication must be clean)."""
    if isinstance(product, int):
        if isinstance(word, int):
            return ((product >> 32) ^ word ^ key) & _MASK32
        out = torch.bitwise_xor(word, ((product >> 32) ^ key) & _MASK32)
    else:
        out = torch.bitwise_right_shift(product, 32)
        if isinstance(word, int):
            key ^= word
        else:
            out.bitwise_xor_(word)
        if key:
            out.bitwise_xor_(key)
    return out.bitwise_and_(_MASK32) if clean else out


def philox_words(n, seed, offset, device, count=1):
    """The first `count` (1 or 2) Philox4x32-10 output words (c0[, c1]) at counters
    offset .. offset+n-1 (mod 2**32) with the 64-bit key `seed`, as int64 tensors [n]. Their
    low 32 bits are the words; the higher bits are unspecified (take `& 0xFFFFFFFF`, or cast
    to int32, which keeps exactly the low 32 bits)."""
    seed, offset = int(seed), int(offset)
    k0, k1 = seed & _MASK32, (seed >> 32) & _MASK32
    c0 = torch.arange(offset, offset + n, dtype=torch.int64, device=device)
    if offset + n > 2**32 or offset < 0:
        c0.bitwise_and_(_MASK32)
    c1 = c2 = c3 = 0
    for round_ in range(_ROUNDS):
        last = round_ == _ROUNDS - 1
        p_b = _times(c2, _MUL_B)
        new_c0 = _high_xor(p_b, c1, k0, clean=not last)
        if last:
            c0, c1 = new_c0, _low(p_b)
            break
        p_a = _times(c0, _MUL_A)
        c0, c1, c2, c3 = new_c0, _low(p_b), _high_xor(p_a, c3, k1), _low(p_a)
        k0, k1 = (k0 + _KEY_STEP0) & _MASK32, (k1 + _KEY_STEP1) & _MASK32
    return [c0, c1][:count]  # tensors from the second round on


def _uniform_from_word(word):
    """tl.rand's float from a word: as int32 v, v = ~v where v < 0, float32(v) * scale."""
    v = word.to(torch.int32)  # keeps the low 32 bits
    v.bitwise_xor_(v >> 31)   # ~v where negative, v otherwise
    return v.to(torch.float32).mul_(_UNIFORM_SCALE)


def philox_uniform(n, seed, offset, device):
    """float32 [n], element i bit-identical to tl.rand(seed, offset + i)."""
    return _uniform_from_word(philox_words(n, seed, offset, device)[0])


def philox_normal(n, seed, offset, device):
    """float32 [n], element i within 1e-5 of tl.randn(seed, offset + i) (Box-Muller on c0, c1)."""
    c0, c1 = philox_words(n, seed, offset, device, count=2)
    radius = _uniform_from_word(c0).clamp_(min=1e-7).log_().mul_(-2.0).sqrt_()
    return radius.mul_(_uniform_from_word(c1).mul_(2 * math.pi).cos_())


# --- activations and their derivatives from h = f(z) (csrc/include/sslkern/activations.h) -----

def _softplus_(z):
    return z.copy_(F.softplus(z))


_ACTIVATE_ = {  # in place
    "linear": lambda z: z,
    "sigmoid": torch.sigmoid_,
    "tanh": torch.tanh_,
    "relu": torch.relu_,
    "softplus": _softplus_,
    "elu": F.elu_,
}

_D1 = {  # f'(z) as a new tensor
    "linear": torch.ones_like,
    "sigmoid": lambda h: h * (1 - h),
    "tanh": lambda h: 1 - h * h,
    "relu": lambda h: (h > 0).to(h.dtype),
    "softplus": lambda h: torch.expm1(-h).neg_(),
    "elu": lambda h: torch.where(h > 0, 1.0, h + 1),
}

_D2 = {  # f''(z), for the activations that are not piecewise linear
    "sigmoid": lambda h: h * (1 - h) * (1 - 2 * h),
    "tanh": lambda h: -2 * h * (1 - h * h),
    "softplus": lambda h: torch.expm1(-h).neg_().mul_(torch.exp(-h)),
    "elu": lambda h: torch.where(h > 0, 0.0, h + 1),
}


def _lookup(table, functions, name):
    row = table[name]  # ValueError for a name the registry does not know
    try:
        return functions[row.name]
    except KeyError:
        raise ValueError(f"the reference backend has no {table.family} {name!r}") from None


def activate_(act, z):
    """z <- f(z) in place; returns z."""
    return _lookup(ACTIVATIONS, _ACTIVATE_, act)(z)


def act_d1(act, h):
    """f'(z) from h = f(z) (activations.h: act_d1)."""
    return _lookup(ACTIVATIONS, _D1, act)(h)


def act_d2(act, h):
    """f''(z) from h = f(z) (activations.h: act_d2); zero for a piecewise-linear f."""
    if ACTIVATIONS[act].piecewise_linear:
        return torch.zeros_like(h)
    return _lookup(ACTIVATIONS, _D2, act)(h)


def _keeps_everything(kind):
    return CORRUPTIONS[kind].passes_gradient


# --- the epilogues -----------------------------------------------------------------------------

class TorchEpilogues:
    """The product backends' epilogues (product.Epilogues) in PyTorch, in place where the
    contract allows; any device, any floating dtype, any strides."""

    def availability(self):
        return []

    def philox(self, n, seed, offset, device, normal):
        return (philox_normal if normal else philox_uniform)(n, seed, offset, device)

    def corrupt(self, x, out, kind, level, seed, offset):
        kind = CORRUPTIONS[kind].name
        if kind == "none":
            if out is not x:
                out.copy_(x)
            return
        n = x.numel()
        if kind == "gaussian":
            noise = philox_normal(n, seed, offset, x.device).view(x.shape)
            torch.add(x, noise.to(x.dtype), alpha=level, out=out)
            return
        u = philox_uniform(n, seed, offset, x.device).view(x.shape)
        if kind == "mask":
            torch.where(u >= level, x, x.new_zeros(()), out=out)
        elif kind == "salt_pepper":
            salt = (u >= level / 2) & (u < level)
            torch.where(u < level / 2, x.new_zeros(()), x, out=out)
            out.masked_fill_(salt, 1.0)
        else:
            raise ValueError(f"the reference backend has no corruption {kind!r}")

    def corrupt_grad(self, grad, out, kind, level, seed, offset):
        if _keeps_everything(kind):
            if out is not grad:
                out.copy_(grad)
            return
        u = philox_uniform(grad.numel(), seed, offset, grad.device).view(grad.shape)
        torch.where(u >= level, grad, grad.new_zeros(()), out=out)

    def bias_act(self, z, bias, act, r=None, s2col=None):
        activate = _lookup(ACTIVATIONS, _ACTIVATE_, act)
        if bias is not None:
            z.add_(bias)
        activate(z)
        if r is None:
            return None
        s2 = act_d1(act, z).square_()
        column = torch.sum(s2, 0, out=s2col) if s2col is not None else s2.sum(0)
        return (column * r).sum()

    def loss_grad(self, a, x, c, loss, decoder, scale, dc=None):
        loss = LOSSES[loss].name
        a.add_(c)
        if loss == "bce":  # from the logit a, whatever the decoder
            total = F.softplus(a).addcmul_(x, a, value=-1).sum()
            a.sigmoid_().sub_(x)
        elif loss == "mse":
            activate_(decoder, a)
            diff = a - x
            slope = act_d1(decoder, a)
            torch.mul(diff, slope, out=a)
            total = 0.5 * diff.square_().sum()
        else:
            raise ValueError(f"the reference backend has no loss {loss!r}")
        a.mul_(scale)
        if dc is not None:
            torch.sum(a, 0, out=dc)
        return total

    def act_grad(self, dh, h, act, out, *, r=None, coef=0.0, g=1.0, h_copy=None, db=None):
        curved = r is not None and coef and not ACTIVATIONS[act].piecewise_linear
        s = act_d1(act, h)
        if dh is not None:
            torch.mul(dh, s, out=out)
        else:
            out.zero_()
        if curved:
            out.addcmul_(act_d2(act, h).mul_(s), r, value=coef)
        if h_copy is not None:
            torch.mul(h, g, out=h_copy)
        if not (isinstance(g, (int, float)) and g == 1):
            out.mul_(g)
        if db is not None:
            torch.sum(out, 0, out=db)

    def row_sq_norms(self, W):
        return torch.linalg.vecdot(W, W, dim=1)

    def row_scale_add(self, dW, W, scale, alpha):
        dW.addcmul_(W, (scale * alpha).unsqueeze(1))


def make_backend():
    return ProductBackend(
        "reference", "plain PyTorch on any device and dtype (the fallback where nothing compiled loads)",
        TorchEpilogues(), devices=("cpu", "cuda", "mps", "xpu", "meta"),
        dtypes=(torch.float16, torch.bfloat16, torch.float32, torch.float64))
