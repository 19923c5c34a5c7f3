"""The interface every backend implements: a handful of primitives the ops are built from.

Tensors reaching a backend are contiguous, validated, on one device; parameters share a
dtype. Each backend states what it supports (`availability`, `unsupported`) as reasons, so
the dispatcher can explain every refusal in one error.
"""
from dataclasses import dataclass
from typing import NamedTuple

import torch

from ..kinds import CORRUPTIONS, PRECISIONS


@dataclass(frozen=True)
class StepConfig:
    """One training objective (docs/design.md): names, levels and the random stream."""
    encoder: str = "sigmoid"
    decoder: str = "sigmoid"
    loss: str = "bce"
    corruption: str = "none"
    level: float = 0.0
    contractive: float = 0.0
    seed: int = 0    # or an int64 tensor [2] (seed bits, offset) on the data's device; offset is then 0
    offset: int = 0
    # The penalties of sslkern/backends/penalties.py (0 switches each off).
    sparsity: float = 0.0              # beta
    sparsity_target: float = 0.05      # rho (the kl kind only)
    sparsity_kind: str = "kl"          # a row of kinds.SPARSITIES
    higher_order: float = 0.0          # gamma
    higher_order_sigma: float = 0.1    # the standard deviation of the input perturbation
    higher_order_samples: int = 1      # perturbations per example
    # The structured masks (corruption block/patch: sslkern/backends/structured.py) and the hole weight.
    image_height: int = 0              # the rows of x are images of image_height x image_width (0: not given)
    image_width: int = 0
    patch: int = 0                     # the tile side of the patch mask
    hole_weight: float = 1.0           # multiplies the reconstruction loss of the dropped pixels
    precision: str = "default"         # a row of kinds.PRECISIONS: how the products round their operands

    @property
    def structured(self):
        """Whether the corruption is a structured mask (drawn in PyTorch, per image)."""
        return CORRUPTIONS[self.corruption].needs_image_shape

    @property
    def image_shape(self):
        return self.image_height, self.image_width

    @property
    def operand_dtype(self):
        """The dtype the products' operands are rounded to (None: the parameters')."""
        name = PRECISIONS[self.precision].operands
        return None if name is None else getattr(torch, name)

    @property
    def extra_penalties(self):
        """Whether a sparsity or higher-order contractive term is on."""
        return self.sparsity != 0.0 or self.higher_order != 0.0


class AEForward(NamedTuple):
    """What the fused forward returns. Everything but `loss` is saved for the backward:
    h = f(z) [B,H]; ax = [dL/da ; x~] [2B,D] (the weight-gradient operand); r = ||W_j||^2 [H]
    (empty without a contractive or higher-order term); s2col = sum_i s_ij^2 [H] (empty
    without a contractive term); dc = dL/dc [D]; hcol = sum_i h_ij [H] (empty without KL
    sparsity); h_noisy [nB,H] = f at the n perturbed copies of x~ (no rows without a
    higher-order term)."""
    loss: torch.Tensor
    h: torch.Tensor
    ax: torch.Tensor
    r: torch.Tensor
    s2col: torch.Tensor
    dc: torch.Tensor
    hcol: torch.Tensor
    h_noisy: torch.Tensor


class Backend:
    name = "base"
    description = ""

    def availability(self):
        """Reasons this backend cannot run at all here (empty when it can)."""
        return []

    def unsupported(self, device, dtype):
        """Reasons it cannot run a call on `device` with parameters of `dtype`."""
        raise NotImplementedError

    # Primitives. grad arguments are 0-d tensors; the ops handle dtype casts back to x. A `seed`
    # may be an int64 tensor [2] (seed bits, offset) on the data's device, as in StepConfig.
    def philox(self, n, seed, offset, device, normal):
        raise NotImplementedError

    def corrupt(self, x, kind, level, seed, offset):
        raise NotImplementedError

    def corrupt_grad(self, grad, kind, level, seed, offset):
        raise NotImplementedError

    def linear_act(self, x, W, bias, act, transpose):
        """f(x Wᵀ + bias) when transpose (encode), f(x W + bias) otherwise (decode)."""
        raise NotImplementedError

    def linear_act_backward(self, grad_y, y, x, W, act, transpose, need_dx=True):
        """(dx, dW, dbias) of linear_act, from its output y; dx is an empty tensor unless need_dx."""
        raise NotImplementedError

    def contractive(self, x, W, b, act):
        """(penalty, h, r, s2col): the mean of ||dh/dx||_F^2 and what its backward needs."""
        raise NotImplementedError

    def contractive_backward(self, grad, x, W, h, r, s2col, act, need_dx=True):
        """(dx, dW, db) of the penalty; dx is an empty tensor unless need_dx."""
        raise NotImplementedError

    def ae_forward(self, x, W, b, c, cfg: StepConfig) -> AEForward:
        raise NotImplementedError

    def ae_backward(self, grad, x, W, c, saved: AEForward, cfg: StepConfig, need_dx):
        """(dx or an empty tensor, dW, db, dc) of the objective, scaled by grad."""
        raise NotImplementedError

    def ae_value_and_grad(self, x, W, b, c, cfg: StepConfig):
        """(loss, dW, db, dc) for an incoming gradient of 1 in one go, or None where the
        backend has no such path (then ae_forward and ae_backward run). The eager path uses
        it when x needs no gradient; nothing is saved for a backward but the gradients."""
        return None

    def ae_sgd_step(self, x, W, b, c, cfg: StepConfig, lr):
        """One plain SGD step on W, b, c in place, returning the loss before it, or None where
        the backend has no one-call route (then value_and_grad and a foreach update run)."""
        return None
