"""The float64 test oracle: docs/design.md and docs/random.md written as plain PyTorch.

Everything here is differentiable by torch.autograd (twice: the contractive penalty's gradient
differentiates f') and independent of the backends: the tests compare every backend's values
and gradients against these functions, and no backend may import this module. It is written
to be obviously right, not fast. Philox is computed with int64 tensor arithmetic, so it runs on
any device. An unknown kind name raises ValueError.
"""
import math

import torch

from .kinds import KL_RHO_HAT_CLAMP

_MASK32 = 0xFFFFFFFF
_UNIFORM_SCALE = 4.6566127342e-10


def _mulhilo32(a, b):
    """(hi, lo) 32-bit words of a*b for int64 tensors holding uint32 values (no overflow)."""
    b_hi, b_lo = b >> 16, b & 0xFFFF
    hi = (a * b_hi + ((a * b_lo) >> 16)) >> 16
    return hi & _MASK32, (a * b) & _MASK32  # the low word is exact modulo 2**64 wraparound


def philox4x32_10(n, seed, offset=0, device=None):
    """The four Philox words for counters offset..offset+n-1 (mod 2**32), as int64 tensors."""
    c0 = (torch.arange(n, dtype=torch.int64, device=device) + offset) & _MASK32
    c1, c2, c3 = (torch.zeros_like(c0) for _ in range(3))
    k0, k1 = seed & _MASK32, (seed >> 32) & _MASK32
    for _ in range(10):
        hi_b, lo_b = _mulhilo32(torch.full_like(c2, 0xCD9E8D57), c2)
        hi_a, lo_a = _mulhilo32(torch.full_like(c0, 0xD2511F53), c0)
        c0, c1, c2, c3 = hi_b ^ c1 ^ k0, lo_b, hi_a ^ c3 ^ k1, lo_a
        k0, k1 = (k0 + 0x9E3779B9) & _MASK32, (k1 + 0xBB67AE85) & _MASK32
    return c0, c1, c2, c3


def _to_uniform(word):
    signed = torch.where(word >= 2**31, word - 2**32, word)
    signed = torch.where(signed < 0, -signed - 1, signed)
    return signed.to(torch.float32) * torch.tensor(_UNIFORM_SCALE, dtype=torch.float32)


def philox_uniform(n, seed, offset=0, device=None):
    return _to_uniform(philox4x32_10(n, seed, offset, device)[0])


def philox_normal(n, seed, offset=0, device=None):
    c0, c1, _, _ = philox4x32_10(n, seed, offset, device)
    u1 = torch.clamp(_to_uniform(c0), min=1e-7)
    return torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2 * math.pi * _to_uniform(c1))


def structured_keep(kind, level, seed, offset, batch, image_shape, patch=None):
    """The keep mask [B, H*W] (float64) of a block or patch mask, image by image, pixel loops."""
    height, width = image_shape
    keep = torch.ones(batch, height, width, dtype=torch.float64)
    if kind == "block":
        side = int(round(math.sqrt(level * height * width)))
        u = philox_uniform(2 * batch, seed, offset)
        for i in range(batch):
            top = min(int(float(u[2 * i]) * (height - side + 1)), height - side)
            left = min(int(float(u[2 * i + 1]) * (width - side + 1)), width - side)
            keep[i, top:top + side, left:left + side] = 0
    elif kind == "patch":
        rows, cols = math.ceil(height / patch), math.ceil(width / patch)
        u = philox_uniform(batch * rows * cols, seed, offset)
        threshold = torch.tensor(level, dtype=torch.float32)
        for i in range(batch):
            for ty in range(rows):
                for tx in range(cols):
                    if u[(i * rows + ty) * cols + tx] < threshold:
                        keep[i, ty * patch:(ty + 1) * patch, tx * patch:(tx + 1) * patch] = 0
    else:
        raise ValueError(f"oracle: {kind!r} is not a structured mask (block, patch)")
    return keep.view(batch, height * width)


def keep_mask(x, kind, level, seed=0, offset=0, image_shape=None, patch=None):
    """1 where the corruption lets x through unchanged (mask, salt_pepper, block, patch), as x."""
    if kind in ("block", "patch"):
        return structured_keep(kind, level, seed, offset, x.shape[0], image_shape, patch).to(x)
    if kind in ("mask", "salt_pepper"):
        u = philox_uniform(x.numel(), seed, offset, x.device).view(x.shape)
        return (u >= torch.tensor(level, dtype=torch.float32)).to(x.dtype)
    return torch.ones_like(x)


def corrupt(x, kind="mask", level=0.25, seed=0, offset=0, image_shape=None, patch=None):
    """x~ = C(x; seed, offset); element i of the contiguous x uses counter offset + i (the
    structured masks: the draws of docs/random.md §11, image by image)."""
    if kind == "none":
        return x
    if kind in ("block", "patch"):
        return x * keep_mask(x, kind, level, seed, offset, image_shape, patch)
    flat = x.reshape(-1)
    if kind == "gaussian":
        noise = philox_normal(flat.numel(), seed, offset, x.device).to(x.dtype)
        return (flat + level * noise).reshape(x.shape)
    u = philox_uniform(flat.numel(), seed, offset, x.device)
    if kind == "mask":
        return torch.where(u >= level, flat, torch.zeros_like(flat)).reshape(x.shape)
    if kind == "salt_pepper":
        out = torch.where(u < level / 2, torch.zeros_like(flat), flat)
        return torch.where((u >= level / 2) & (u < level), torch.ones_like(flat), out).reshape(x.shape)
    raise ValueError(f"oracle: unknown corruption kind {kind!r}; known: none, mask, gaussian, salt_pepper")


def _elu(z):
    """z for z > 0, e^z - 1 otherwise (alpha = 1). expm1 sees 0 where z > 0, so a large z
    cannot send an inf (and a NaN gradient) through the branch where() drops; NaN goes down
    the expm1 branch, so it propagates to the value and to every derivative."""
    negative_part = torch.where(z > 0, torch.zeros_like(z), z)
    return torch.where(z > 0, z, torch.expm1(negative_part))


_ACTIVATIONS = {
    "linear": lambda t: t,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "relu": torch.relu,
    "softplus": torch.nn.functional.softplus,
    "elu": _elu,
}


def activation(name, z):
    """f(z) for the activation called `name` (sslkern.kinds.ACTIVATIONS)."""
    try:
        f = _ACTIVATIONS[name]
    except (KeyError, TypeError):
        raise ValueError(f"oracle: unknown activation {name!r}; known: {', '.join(_ACTIVATIONS)}") from None
    return f(z)


def encode(x, W, b, activation_name="sigmoid"):
    return activation(activation_name, x @ W.T + b)


def decode(h, W, c, activation_name="sigmoid"):
    return activation(activation_name, h @ W + c)


def contractive_penalty(x, W, b, activation_name="sigmoid"):
    """Mean over the batch of ||dh/dx||_F^2 in the analytic form sum_j f'(z_j)^2 ||W_j||^2."""
    s = _encoder_slopes(x, W, b, activation_name)
    return (s.pow(2) * W.pow(2).sum(1)).sum() / max(x.shape[0], 1)


def contractive_penalty_jacobian(x, W, b, activation_name="sigmoid"):
    """The same penalty from the full autograd Jacobian (B x H x D): the slow, obvious way."""
    total = x.new_zeros(())
    for row in x:
        jac = torch.autograd.functional.jacobian(
            lambda v: encode(v, W, b, activation_name), row, create_graph=True)
        total = total + jac.pow(2).sum()
    return total / max(x.shape[0], 1)


def _encoder_slopes(x, W, b, activation_name):
    """s = f'(x Wᵀ + b) by autograd, differentiable again."""
    with torch.enable_grad():
        z = x @ W.T + b
        if not z.requires_grad:  # plain tensors: differentiate z itself
            z.requires_grad_()
        (s,) = torch.autograd.grad(activation(activation_name, z).sum(), z, create_graph=True)
    return s


def higher_order_noise(x, sigma, samples, seed=0, offset=0):
    """The perturbations eps_k [samples, B, D]: sigma times the normals of counters
    offset + (1 + k) B D + i, in x's dtype."""
    batch, visible = x.shape
    draws = [philox_normal(batch * visible, seed, (offset + (1 + k) * batch * visible) % 2**32, x.device)
             for k in range(samples)]
    return torch.stack(draws).view(samples, batch, visible).to(x.dtype) * sigma


def higher_order_penalty(x, W, b, eps, activation_name="sigmoid"):
    """Mean over the batch and the samples of ||J(x) - J(x + eps_k)||_F^2, J = dh/dx, in the
    analytic form sum_j (f'(z_j) - f'(z'_j))^2 ||W_j||^2."""
    s = _encoder_slopes(x, W, b, activation_name)
    norms = W.pow(2).sum(1)
    total = sum(((s - _encoder_slopes(x + e, W, b, activation_name)).pow(2) * norms).sum() for e in eps)
    return total / (max(x.shape[0], 1) * len(eps))


def higher_order_penalty_jacobian(x, W, b, eps, activation_name="sigmoid"):
    """The same from full autograd Jacobians (B x H x D): the slow, obvious way."""
    def jacobian(row):
        return torch.autograd.functional.jacobian(lambda v: encode(v, W, b, activation_name), row,
                                                  create_graph=True)
    total = x.new_zeros(())
    for e in eps:
        for row, noise in zip(x, e):
            total = total + (jacobian(row) - jacobian(row + noise)).pow(2).sum()
    return total / (max(x.shape[0], 1) * len(eps))


def sparsity_penalty(h, kind="kl", target=0.05):
    """kl: sum_j KL(target || mean_i h_ij) (Bernoulli); l1: mean over the batch of sum_j |h_ij|."""
    if kind == "kl":  # at rho^ clamped (kinds.KL_RHO_HAT_CLAMP), the slope too (straight through)
        rho, rho_hat = target, h.mean(0)
        rho_hat = rho_hat + (rho_hat.clamp(KL_RHO_HAT_CLAMP, 1 - KL_RHO_HAT_CLAMP) - rho_hat).detach()
        return (rho * torch.log(rho / rho_hat) + (1 - rho) * torch.log((1 - rho) / (1 - rho_hat))).sum()
    if kind == "l1":
        return h.abs().sum() / max(h.shape[0], 1)
    raise ValueError(f"oracle: unknown sparsity kind {kind!r}; known: kl, l1")


def autoencoder_loss(x, W, b, c, *, encoder="sigmoid", decoder="sigmoid", loss="bce",
                     corruption="none", level=0.0, contractive=0.0, seed=0, offset=0,
                     sparsity=0.0, sparsity_target=0.05, sparsity_kind="kl",
                     higher_order=0.0, higher_order_sigma=0.1, higher_order_samples=1,
                     image_shape=None, patch=None, hole_weight=1.0):
    """L + lambda P + the extra penalties of docs/design.md: reconstruction of the clean x from
    the corrupted x~ (the dropped pixels' loss times hole_weight), every penalty at x~."""
    batch = max(x.shape[0], 1)
    x_tilde = corrupt(x, corruption, level, seed, offset, image_shape, patch)
    h = encode(x_tilde, W, b, encoder)
    a = h @ W + c
    if loss == "bce":  # from the logit: the decoder is sigmoid by definition
        element = torch.nn.functional.softplus(a) - x * a
    elif loss == "mse":
        element = 0.5 * (activation(decoder, a) - x).pow(2)
    else:
        raise ValueError(f"oracle: unknown loss {loss!r}; known: bce, mse")
    if hole_weight != 1.0:
        dropped = 1 - keep_mask(x, corruption, level, seed, offset, image_shape, patch)
        element = element * (1 + (hole_weight - 1) * dropped)
    recon = element.sum() / batch
    if contractive:
        recon = recon + contractive * contractive_penalty(x_tilde, W, b, encoder)
    if sparsity:
        recon = recon + sparsity * sparsity_penalty(h, sparsity_kind, sparsity_target)
    if higher_order:
        eps = higher_order_noise(x_tilde, higher_order_sigma, higher_order_samples, seed, offset)
        recon = recon + higher_order * higher_order_penalty(x_tilde, W, b, eps, encoder)
    return recon
