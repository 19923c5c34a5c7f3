"""The sparsity and higher-order contractive penalties (docs/design.md, "Extra penalties"),
written once in PyTorch around a backend's own products, for the routes that run pass by pass:
the reference backend, the native backend on CUDA and the triton backend call `forward` and
`backward` beside their fused kernels. The native CPU backend's one-call routes
(value_and_grad, sgd_step) compute the same terms inside csrc/cpu/penalties.cpp instead.

With x~ the encoder's input, h = f(z) [B, H], s = f'(z), r_j = ||W_j||^2:

- sparsity, kl:  beta * sum_j KL(rho || rho^_j),  rho^_j = mean_i h_ij
- sparsity, l1:  beta * mean_i sum_j |h_ij|
- higher order:  gamma * mean over i and the n samples k of sum_j (s_ij - s'_kij)^2 r_j, where
  s' = f'(z') at z' = (x~ + eps_k) W^T + b, eps_k = sigma * the Philox normals of counters
  offset + (1 + k) B D + i (`perturbation_counter`): past the corruption's B D counters, so the
  two never share a draw.

`backward` returns the terms as the fused backward wants them: dz_add [B, H] joins dL/dz
(so the existing weight-gradient product with x~ and the input-gradient product with W carry
it), and dW_add [H, D] holds what does not pair with x~ (the eps_k part of the perturbed
inputs, and the rows of W through r). Neither is scaled by the incoming gradient.
"""
from typing import NamedTuple, Optional

import torch

from ..kinds import KL_RHO_HAT_CLAMP, SPARSITIES

# f' and f'' from h = f(z), as the reference backend computes them (imported when first used:
# reference.py imports product.py, which imports this module).


def act_d1(act, h):
    from .reference import act_d1 as d1
    return d1(act, h)


def act_d2(act, h, s=None):
    from .reference import act_d2 as d2
    return d2(act, h, s)


COUNTERS = 2**32


class PenaltyGrads(NamedTuple):
    dz_add: torch.Tensor               # [B, H], pairs with x~
    dW_add: Optional[torch.Tensor]     # [H, D], or None without a higher-order term


def perturbation_counter(batch, visible, sample):
    """The first counter of higher-order sample `sample`, relative to the call's offset."""
    return (1 + sample) * batch * visible


def _shifted(seed, offset, by):
    """(seed, offset) moved `by` counters on; a device-tensor seed (seed bits, offset) is
    shifted on the device (no host sync)."""
    if isinstance(seed, torch.Tensor):
        moved = seed.clone()
        moved[1:] += by
        return moved, 0
    return seed, (offset + by) % COUNTERS


def perturbations(backend, x_tilde, cfg):
    """eps [n B, D]: sigma times the normals of each sample's counters, in x~'s dtype."""
    batch, visible = x_tilde.shape
    streams = [_shifted(cfg.seed, cfg.offset, perturbation_counter(batch, visible, k))
               for k in range(cfg.higher_order_samples)]
    draws = [backend.philox(batch * visible, seed, offset, x_tilde.device, True) for seed, offset in streams]
    eps = torch.cat(draws).view(-1, visible).to(x_tilde.dtype)
    return eps.mul_(cfg.higher_order_sigma)


def row_sq_norms(W):
    return torch.linalg.vector_norm(W, dim=1).square_()


def forward(backend, x_tilde, h, W, b, r, cfg):
    """(value, hcol, h_noisy): the weighted penalties (a 0-d tensor, to add to the objective)
    and what `backward` needs. r may be empty: it is computed when the higher-order term needs it."""
    batch, hidden = h.shape
    inv_batch = 1.0 / max(batch, 1)
    value = h.new_zeros(())
    hcol, h_noisy = h.new_empty(0), h.new_empty(0, hidden)
    if cfg.sparsity != 0.0:
        kind = SPARSITIES[cfg.sparsity_kind].name
        if kind == "kl":
            hcol = h.sum(0)
            value = value + cfg.sparsity * kl_divergence(cfg.sparsity_target, mean_activation(hcol, batch)).sum()
        elif kind == "l1":
            value = value + (cfg.sparsity * inv_batch) * h.abs().sum()
        else:
            raise ValueError(f"no sparsity kind {kind!r} in penalties.forward")
    if cfg.higher_order != 0.0:
        r = r if r.numel() else row_sq_norms(W)
        n = cfg.higher_order_samples
        noisy = perturbations(backend, x_tilde, cfg).add_(x_tilde.repeat(n, 1))
        h_noisy = backend.linear_act(noisy, W, b, cfg.encoder, True)
        delta = _delta(h, h_noisy, cfg)
        value = value + (cfg.higher_order * inv_batch / n) * (delta.square_() * r).sum()
    return value, hcol, h_noisy


def mean_activation(hcol, batch):
    """rho^ of the kl sparsity from the column sums, clamped (kinds.KL_RHO_HAT_CLAMP)."""
    return (hcol * (1.0 / max(batch, 1))).clamp_(KL_RHO_HAT_CLAMP, 1 - KL_RHO_HAT_CLAMP)


def kl_divergence(rho, rho_hat):
    """KL(rho || rho_hat) of Bernoulli distributions, elementwise."""
    return rho * torch.log(rho / rho_hat) + (1 - rho) * torch.log((1 - rho) / (1 - rho_hat))


def _delta(h, h_noisy, cfg, s=None):
    """s - s' for every sample, [n B, H]; s = f'(z) from h unless given."""
    s = act_d1(cfg.encoder, h) if s is None else s
    return s.repeat(cfg.higher_order_samples, 1).sub_(act_d1(cfg.encoder, h_noisy))


def backward(backend, x_tilde, h, W, r, hcol, h_noisy, cfg):
    """PenaltyGrads of the terms `forward` added (see the module docstring)."""
    batch, hidden = h.shape
    inv_batch = 1.0 / max(batch, 1)
    s = act_d1(cfg.encoder, h)
    dz_add = torch.zeros_like(h)
    if cfg.sparsity != 0.0:
        kind = SPARSITIES[cfg.sparsity_kind].name
        if kind == "kl":
            rho, rho_hat = cfg.sparsity_target, mean_activation(hcol, batch)
            dz_add += s * ((cfg.sparsity * inv_batch) * ((1 - rho) / (1 - rho_hat) - rho / rho_hat))
        elif kind == "l1":
            dz_add += s * torch.sign(h) * (cfg.sparsity * inv_batch)
        else:
            raise ValueError(f"no sparsity kind {kind!r} in penalties.backward")
    if cfg.higher_order == 0.0:
        return PenaltyGrads(dz_add, None)
    n = cfg.higher_order_samples
    r = r if r.numel() else row_sq_norms(W)
    coef = 2.0 * cfg.higher_order * inv_batch / n
    delta = _delta(h, h_noisy, cfg, s)                                 # s - s', [n B, H]
    delta_sq = delta.square().sum(0)                                   # over i and k
    delta_r = delta.mul_(r)
    dz_noisy = act_d2(cfg.encoder, h_noisy).mul_(delta_r).mul_(-coef)  # dP/dz' of each sample
    dz_add += act_d2(cfg.encoder, h, s) * delta_r.view(n, batch, hidden).sum(0) * coef
    dz_add += dz_noisy.view(n, batch, hidden).sum(0)  # z' = (x~ + eps) W^T: its x~ part pairs with x~
    dW_add = dz_noisy.t() @ perturbations(backend, x_tilde, cfg)       # ... and its eps part
    dW_add.addcmul_(W, (coef * delta_sq).unsqueeze(1))                 # through r_j = ||W_j||^2
    return PenaltyGrads(dz_add, dW_add)
