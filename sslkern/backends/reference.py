"""The `reference` backend: the fused passes of docs/kernels.md written as plain PyTorch.

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

# --- Philox4x32-10 (docs/random.md) -------------------------------------------------------

_MASK32 = 0xFFFFFFFF
_MUL_A, _MUL_B = 0xD2511F53, 0xCD9E8D57      # c0 -> (c2, c3), c2 -> (c0, c1)
_KEY_STEP0, _KEY_STEP1 = 0x9E3779B9, 0xBB67AE85
_ROUNDS = 10
_UNIFORM_SCALE = 4.6566127342e-10  # the fp32 multiplier of tl.rand (rounded to float32 by torch)


# The state words are int64 tensors. c0 and c2 are kept "clean" (uint32 values), as a
# multiplication needs; c1 and c3 are kept as the full wrapped int64 products they are the low
# words of, never masked: only their low 32 bits reach another word, through an xor whose result
# is masked before it is multiplied. The first two rounds see the zero words of the counter as
# Python ints. Every pass writes into a buffer whose words are spent: a draw allocates six
# tensors [n] whatever the number of rounds.

def _hi_xor_(out, product, word, key, clean=True):
    """out <- (product >> 32) ^ word ^ key, masked to 32 bits when `clean`; returns out."""
    torch.bitwise_right_shift(product, 32, out=out)
    if word is not None:
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
    keys = []  # (k0, k1) of each round
    k0, k1 = seed & _MASK32, (seed >> 32) & _MASK32
    for _ in range(_ROUNDS):
        keys.append((k0, k1))
        k0, k1 = (k0 + _KEY_STEP0) & _MASK32, (k1 + _KEY_STEP1) & _MASK32
    c0 = torch.arange(offset, offset + n, dtype=torch.int64, device=device)
    if offset < 0 or offset + n > 2**32:
        c0.bitwise_and_(_MASK32)

    # Round 1, with c1 = c2 = c3 = 0: c0 <- k0, c1 <- 0, (c2, c3) <- (hi ^ k1, lo) of c0 * A.
    k0, k1 = keys[0]
    c3 = torch.mul(c0, _MUL_A)
    c2 = _hi_xor_(c0, c3, None, k1)  # the counters are spent
    first_c0 = k0

    # Round 2, with c0 = first_c0 and c1 = 0: c0 * A is a number.
    k0, k1 = keys[1]
    c1 = torch.mul(c2, _MUL_B)
    c0 = _hi_xor_(c2, c1, None, k0)
    product_a = first_c0 * _MUL_A
    c2 = c3.bitwise_xor_(((product_a >> 32) ^ k1) & _MASK32).bitwise_and_(_MASK32)  # c3 is spent
    low_a = product_a & _MASK32  # c3, the same for every element

    # Round 3, with c3 = low_a.
    k0, k1 = keys[2]
    product_b, product_a = torch.mul(c2, _MUL_B), torch.mul(c0, _MUL_A)
    _hi_xor_(c0, product_b, c1, k0)
    _hi_xor_(c2, product_a, None, k1 ^ low_a)
    spare_b, spare_a = c1, torch.empty_like(c1)
    c1, c3 = product_b, product_a

    # Rounds 4 .. 10. In round 9, c0 is not computed: it only feeds the last round's c0 * A,
    # which no output needs; the last round computes c0 alone (and c1 = its product's low word).
    for round_ in range(3, _ROUNDS):
        k0, k1 = keys[round_]
        last = round_ == _ROUNDS - 1
        product_b = torch.mul(c2, _MUL_B, out=spare_b)
        if last:
            return [_hi_xor_(c0, product_b, c1, k0, clean=False), product_b][:count]
        product_a = torch.mul(c0, _MUL_A, out=spare_a)
        if round_ != _ROUNDS - 2:
            _hi_xor_(c0, product_b, c1, k0)
        _hi_xor_(c2, product_a, c3, k1)
        spare_b, spare_a, c1, c3 = c1, c3, product_b, product_a


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

def _one_minus_square(h):
    return torch.addcmul(h.new_ones(()), h, h, value=-1)


_D1 = {  # f'(z) from h, as a new tensor
    "linear": torch.ones_like,
    "sigmoid": lambda h: torch.rsub(h, 1).mul_(h),                  # h (1 - h)
    "tanh": _one_minus_square,                                      # 1 - h^2
    "relu": lambda h: (h > 0).to(h.dtype),                          # 1[z > 0]
    "softplus": lambda h: torch.neg(h).expm1_().neg_(),             # 1 - e^-h = sigmoid(z)
    "elu": lambda h: torch.clamp(h, max=0).add_(1),                 # h > 0 ? 1 : h + 1
}

_D2 = {  # f''(z) from h and s = f'(z), as a new tensor (not for piecewise-linear f)
    "sigmoid": lambda h, s: torch.rsub(h, 1, alpha=2).mul_(s),       # s (1 - 2h)
    "tanh": lambda h, s: torch.mul(h, s).mul_(-2),                  # -2 h s
    "softplus": lambda h, s: torch.neg(h).exp_().mul_(s),           # s e^-h = s (1 - s)
    "elu": lambda h, s: torch.where(h > 0, h.new_zeros(()), s),     # h > 0 ? 0 : h + 1
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


def act_d2(act, h, s=None):
    """f''(z) from h = f(z) (activations.h: act_d2), given s = f'(z) when at hand; zero for a
    piecewise-linear f (kinds.ACTIVATIONS' property)."""
    if ACTIVATIONS[act].piecewise_linear:
        return torch.zeros_like(h)
    d2 = _lookup(ACTIVATIONS, _D2, act)
    return d2(h, act_d1(act, h) if s is None else s)


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
        # out = g s (dh + coef f'' r): f'' vanishes for a piecewise-linear f.
        curved = r is not None and coef != 0 and not ACTIVATIONS[act].piecewise_linear
        s = act_d1(act, h)
        if curved:
            d2 = act_d2(act, h, s)
            if dh is not None:
                torch.addcmul(dh, d2, r, value=coef, out=out)  # out may be dh
            else:
                torch.mul(d2, r, out=out).mul_(coef)
            out.mul_(s)
        elif dh is not None:
            torch.mul(dh, s, out=out)
        else:
            out.zero_()
        if h_copy is not None:
            torch.mul(h, g, out=h_copy)
        if not (isinstance(g, (int, float)) and g == 1):
            out.mul_(g)
        if db is not None:
            torch.sum(out, 0, out=db)

    def row_sq_norms(self, W):
        return torch.linalg.vector_norm(W, dim=1).square_()  # one pass, no [H, D] temporary

    def row_scale_add(self, dW, W, scale, alpha):
        dW.addcmul_(W, (scale * alpha).unsqueeze(1))


def make_backend():
    return ProductBackend(
        "reference", "plain PyTorch on any device and dtype (the fallback where nothing compiled loads)",
        TorchEpilogues(), devices=("cpu", "cuda", "mps", "xpu", "meta"),
        dtypes=(torch.float16, torch.bfloat16, torch.float32, torch.float64))
