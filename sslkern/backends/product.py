"""Backends whose matrix products come from torch (MKL/oneDNN, cuBLAS) and whose work
between the products is a set of fused epilogue passes (docs/kernels.md).

`reference` plugs in epilogues written in PyTorch, `native` plugs in the compiled ones (C++ on
CPU tensors, CUDA on GPU tensors); the orchestration below (buffers, products, the order of
passes) is shared, so the backends can differ only inside an epilogue. `Epilogues` is the
interface they implement.

The random stream's seed may be the int64 [2] device tensor (seed bits, offset) the ops pass
for a tensor seed: these backends read it back to the host once per call that draws numbers
(a sync), so a CUDA-graph capture of a step with fresh noise per replay needs the triton backend.
"""
import math
from typing import Optional, Protocol, Union, runtime_checkable

import torch

from ..kinds import CORRUPTIONS, LOSSES, PRECISIONS
from . import penalties, structured
from .base import AEForward, Backend

Scalar = Union[float, torch.Tensor]  # a number, or a 0-d tensor (possibly on the device)


@runtime_checkable
class Epilogues(Protocol):
    """The passes a ProductBackend runs between torch's matrix products.

    Conventions shared by every method:
    - Matrices are 2-D with unit column stride; their row stride (leading dimension) may
      exceed the row length, so a matrix may be a column block of a wider buffer. Vectors are
      contiguous. All tensors of one call share a device; floating tensors share a dtype
      (that of the parameters), except the float32 Philox draws.
    - Kinds arrive as names (`act`, `loss`, `decoder`, `kind`) from `sslkern.kinds`; an
      implementation raises ValueError on a name it does not know, never computes another.
    - "In place" means the named output is overwritten; an argument documented as allowed to
      alias another (the same tensor passed twice) is read before it is written, element by
      element. Nothing else is written, and nothing is returned unless stated.
    - Random draws: element i of a tensor (its row-major index) uses counter offset + i
      (mod 2**32) of the Philox stream keyed by the 64-bit `seed`; `seed` and `offset` are host
      integers (ProductBackend has resolved device-tensor seeds already).
    - Sums (penalty and loss totals, column sums) are returned/written in the tensor dtype;
      their order of summation is the implementation's.
    """

    def availability(self) -> "list[str]":
        """Reasons these epilogues cannot run here (an empty list when they can)."""
        ...

    def philox(self, n: int, seed: int, offset: int, device: torch.device, normal: bool) -> torch.Tensor:
        """A new float32 tensor [n] on `device`: element i is tl.rand(seed, offset + i)
        bit for bit, or tl.randn(seed, offset + i) within 1e-5 when `normal`."""
        ...

    def corrupt(self, x: torch.Tensor, out: torch.Tensor, kind: str, level: float, seed: int,
                offset: int) -> None:
        """out <- C(x; kind, level, seed, offset) (docs/random.md), in place. x and out
        have one shape and dtype and are contiguous; out may alias x."""
        ...

    def corrupt_grad(self, grad: torch.Tensor, out: torch.Tensor, kind: str, level: float, seed: int,
                     offset: int) -> None:
        """out <- grad * dx~/dx (the regenerated keep-mask, or grad itself for a kind that
        passes the gradient), in place. grad and out have one shape and are contiguous; out may
        alias grad."""
        ...

    def bias_act(self, z: torch.Tensor, bias: Optional[torch.Tensor], act: str,
                 r: Optional[torch.Tensor] = None, s2col: Optional[torch.Tensor] = None
                 ) -> Optional[torch.Tensor]:
        """z [M, N] <- f(z + bias) in place (bias [N], or None for none).

        With r [N] (the penalty's ||W_j||^2) it also returns the 0-d tensor
        sum_ij f'(z_ij)^2 r_j, f' taken at z + bias (the contractive penalty's sum), and, when
        s2col [N] is given, writes s2col_j = sum_i f'(z_ij)^2. Without r it returns None and
        ignores s2col."""
        ...

    def loss_grad(self, a: torch.Tensor, x: torch.Tensor, c: torch.Tensor, loss: str, decoder: str,
                  scale: float, dc: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The decoder's epilogue. a [B, D] holds h W on entry; in place it becomes
        scale * dL/da of the summed loss L of (g(a + c), x) (bce: from the logit a + c).
        x [B, D] is the clean target, c [D]. Returns L (unscaled) as a 0-d tensor and, when
        dc [D] is given, writes its column sums dc_k = sum_i a_ik (after scaling)."""
        ...

    def act_grad(self, dh: Optional[torch.Tensor], h: torch.Tensor, act: str, out: torch.Tensor, *,
                 r: Optional[torch.Tensor] = None, coef: float = 0.0, g: Scalar = 1.0,
                 h_copy: Optional[torch.Tensor] = None, db: Optional[torch.Tensor] = None) -> None:
        """The encoder's backward epilogue, from h = f(z) [B, H]:
        out <- g * (dh * f'(z) + coef * f'(z) f''(z) r), in place.

        dh [B, H] is the incoming gradient (None: zero; it may alias out). The second term
        is present only with r [H] and coef != 0, and vanishes for a piecewise-linear f. When
        given, h_copy [B, H] <- g * h and db [H] <- sum_i out_i. g is a number or a 0-d
        tensor (on the device: no host sync)."""
        ...

    def row_sq_norms(self, W: torch.Tensor) -> torch.Tensor:
        """A new tensor [H]: r_j = ||W_j||^2 of W [H, D]."""
        ...

    def row_scale_add(self, dW: torch.Tensor, W: torch.Tensor, scale: torch.Tensor, alpha: Scalar) -> None:
        """dW [H, D] += alpha * scale[:, None] * W, in place; scale [H], alpha a number or a 0-d
        tensor."""
        ...


PROD_DTYPES = (torch.float32, torch.float64)


# --- the objective's products at the step's precision (kinds.PRECISIONS) -----------------

_MM_OUT_DTYPE = None  # whether this torch's CUDA mm takes out_dtype (found at the first call)


def _half_product(a, b):
    """a @ b for half-precision operands, accumulated in fp32, as an fp32 tensor. cuBLAS
    writes fp32 (mm's out_dtype). On the CPU, torch's bf16 product (oneDNN, AVX-512 BF16)
    writes bf16, so there the result is rounded once more; its fp16 product has no fast path
    on CPUs without AVX-512 FP16 (12x slower than fp32 here), so fp16 operands are multiplied
    in fp32 instead: exact products of the rounded operands, fp32 sums (docs/design.md
    "Mixed precision")."""
    global _MM_OUT_DTYPE
    if a.device.type == "cuda":
        if _MM_OUT_DTYPE is not False:
            try:
                result = torch.mm(a, b, out_dtype=torch.float32)
                _MM_OUT_DTYPE = True
                return result
            except (TypeError, RuntimeError, NotImplementedError):  # torch without mm(out_dtype=)
                if _MM_OUT_DTYPE:  # it worked before: this failure is another one
                    raise
                _MM_OUT_DTYPE = False
        return torch.mm(a, b).float()
    if a.dtype == torch.float16:
        return torch.mm(a.float(), b.float())
    return torch.mm(a, b).float()


def gradient_scale(cfg, batch):
    """The power of two the backward's gradient operands are multiplied by before an fp16
    rounding: they carry a 1/B, so scaling by about B lifts them out of fp16's subnormals."""
    if not PRECISIONS[cfg.precision].scales_gradients:
        return 1.0
    return float(2 ** max(0, round(math.log2(max(batch, 1)))))


def rounded(t, cfg, scale=1.0, rows=slice(None)):
    """t in the step's operand dtype (t itself at the default precision); `rows` of it, the
    gradient operands, multiplied by `scale` first (gradient_scale)."""
    if cfg.operand_dtype is None:
        return t
    if scale == 1.0:
        return t.to(cfg.operand_dtype)
    out = t.to(cfg.operand_dtype, copy=True)
    out[rows] = t[rows] * scale
    return out


def mm(a, b, cfg, out=None, unscale=1.0, bias=None):
    """a @ b (+ bias, a row vector) at the step's precision: torch's product in the
    parameters' dtype, or the operands rounded (see rounded), fp32 accumulation and an fp32
    result divided by `unscale` (the scale of a gradient operand)."""
    if cfg.operand_dtype is None:
        return torch.mm(a, b, out=out) if bias is None else torch.addmm(bias, a, b, out=out)
    result = _half_product(rounded(a, cfg), rounded(b, cfg))
    if unscale != 1.0:
        result.mul_(1.0 / unscale)
    if bias is not None:
        result.add_(bias)
    return result if out is None else out.copy_(result)


def host_stream(seed, offset):
    """(seed, offset) as host integers; `seed` may be an int64 tensor [2] = (seed bits, offset)."""
    if not isinstance(seed, torch.Tensor):
        return seed, offset
    if seed.dtype != torch.int64 or seed.numel() != 2:
        raise ValueError(f"rng must be an int64 tensor of 2 elements (seed, offset), got "
                         f"{seed.dtype} of shape {tuple(seed.shape)}")
    seed_bits, offset = seed.tolist()  # the one host sync of the call
    return seed_bits % 2**64, offset % 2**32


class ProductBackend(Backend):
    def __init__(self, name, description, epilogues: Epilogues, devices, dtypes):
        self.name, self.description = name, description
        self.ep = epilogues
        self.devices, self.dtypes = tuple(devices), tuple(dtypes)

    def availability(self):
        return self.ep.availability()

    def unsupported(self, device, dtype):
        reasons = []
        if device.type not in self.devices:
            reasons.append(f"runs on {'/'.join(self.devices)} tensors, not {device.type}")
        if dtype not in self.dtypes:
            names = ", ".join(str(d).replace("torch.", "") for d in self.dtypes)
            reasons.append(f"supports {names}, not {str(dtype).replace('torch.', '')}")
        return reasons

    def philox(self, n, seed, offset, device, normal):
        return self.ep.philox(n, *host_stream(seed, offset), device, normal)

    def corrupt(self, x, kind, level, seed, offset):
        out = torch.empty_like(x)
        self.ep.corrupt(x, out, kind, level, *host_stream(seed, offset))
        return out

    def corrupt_grad(self, grad, kind, level, seed, offset):
        out = torch.empty_like(grad)
        self.ep.corrupt_grad(grad, out, kind, level, *host_stream(seed, offset))
        return out

    def linear_act(self, x, W, bias, act, transpose):
        y = torch.mm(x.to(W.dtype), W.t() if transpose else W)
        self.ep.bias_act(y, bias, act)
        return y

    def linear_act_backward(self, grad_y, y, x, W, act, transpose, need_dx=True):
        x = x.to(W.dtype)
        dz = torch.empty_like(y)
        dbias = y.new_empty(y.shape[1])
        self.ep.act_grad(grad_y, y, act, dz, db=dbias)
        if transpose:  # y = f(x Wᵀ + b), W [N, K]
            dx = torch.mm(dz, W) if need_dx else W.new_empty(0)
            return dx, torch.mm(dz.t(), x), dbias
        dx = torch.mm(dz, W.t()) if need_dx else W.new_empty(0)
        return dx, torch.mm(x.t(), dz), dbias

    def contractive(self, x, W, b, act):
        x = x.to(W.dtype)
        r = self.ep.row_sq_norms(W)
        h = torch.mm(x, W.t())
        s2col = W.new_empty(W.shape[0])
        penalty = self.ep.bias_act(h, b, act, r, s2col)
        return penalty / max(x.shape[0], 1), h, r, s2col

    def contractive_backward(self, grad, x, W, h, r, s2col, act, need_dx=True):
        x = x.to(W.dtype)
        coef = 2.0 / max(h.shape[0], 1)
        dz = torch.empty_like(h)
        db = h.new_empty(h.shape[1])
        self.ep.act_grad(None, h, act, dz, r=r, coef=coef, g=grad, db=db)
        dW = torch.mm(dz.t(), x)
        self.ep.row_scale_add(dW, W, s2col, coef * grad)
        return (torch.mm(dz, W) if need_dx else W.new_empty(0)), dW, db

    def ae_forward(self, x, W, b, c, cfg):
        x = x.to(W.dtype)
        batch, hidden = x.shape[0], W.shape[0]
        inv_batch = 1.0 / max(batch, 1)
        contractive = cfg.contractive != 0.0
        ax = W.new_empty(2 * batch, x.shape[1])
        d_a, x_tilde = ax[:batch], ax[batch:]
        keep = None  # a structured mask, drawn once for x~ and the hole weight
        if CORRUPTIONS[cfg.corruption].name == "none":
            x_tilde.copy_(x)
        elif cfg.structured:
            keep = structured.keep_of(self, x, cfg)
            torch.mul(x, keep, out=x_tilde)
        else:
            self.ep.corrupt(x, x_tilde, cfg.corruption, cfg.level, *host_stream(cfg.seed, cfg.offset))
        r = self.ep.row_sq_norms(W) if contractive or cfg.higher_order != 0.0 else W.new_empty(0)
        s2col = W.new_empty(hidden if contractive else 0)
        W_operand = rounded(W, cfg)  # rounded once for both products (W itself at the default precision)
        h = mm(x_tilde, W_operand.t(), cfg)
        penalty = self.ep.bias_act(h, b, cfg.encoder, r if contractive else None,
                                   s2col if contractive else None)
        extra, hcol, h_noisy = (penalties.forward(self, x_tilde, h, W, b, r, cfg) if cfg.extra_penalties
                                else (None, W.new_empty(0), W.new_empty(0, hidden)))
        mm(h, W_operand, cfg, out=d_a)
        dc = W.new_empty(x.shape[1])
        recon = self.ep.loss_grad(d_a, x, c, cfg.loss, cfg.decoder, inv_batch, dc)
        loss = recon * inv_batch
        if cfg.hole_weight != 1.0:
            loss = structured.add_hole_terms(self, h, W, c, x, d_a, dc, loss, cfg, keep)
        if contractive:
            loss = loss + (cfg.contractive * inv_batch) * penalty
        if extra is not None:
            loss = loss + extra
        return AEForward(loss, h, ax, r, s2col, dc, hcol, h_noisy)

    def ae_backward(self, grad, x, W, c, saved, cfg, need_dx):
        x = x.to(W.dtype)
        h, ax = saved.h, saved.ax
        batch, hidden = h.shape
        contractive = cfg.contractive != 0.0
        coef = 2.0 * cfg.contractive / max(batch, 1)
        # [g h ; dZ] beside [dA ; x~]: both weight-gradient products as one call over K = 2B.
        hz = W.new_empty(2 * batch, hidden)
        d_z = hz[batch:]
        scale = gradient_scale(cfg, batch)  # fp16: dL/da and dZ scaled into range before rounding
        W_operand = rounded(W, cfg)  # rounded once for every product below
        mm(rounded(ax[:batch], cfg, scale), W_operand.t(), cfg, out=d_z, unscale=scale)
        db = W.new_empty(hidden)
        self.ep.act_grad(d_z, h, cfg.encoder, d_z, r=saved.r if contractive else None,
                         coef=coef, g=grad, h_copy=hz[:batch], db=db)
        extra = (penalties.backward(self, ax[batch:], h, W, saved.r, saved.hcol, saved.h_noisy, cfg)
                 if cfg.extra_penalties else None)
        if extra is not None:
            d_z.add_(extra.dz_add * grad)
            db.add_(extra.dz_add.sum(0) * grad)
        dW = mm(rounded(hz, cfg, scale, slice(batch, None)).t(), rounded(ax, cfg, scale, slice(batch)), cfg,
                unscale=scale)
        if contractive:
            self.ep.row_scale_add(dW, W, saved.s2col, coef * grad)
        if extra is not None and extra.dW_add is not None:
            dW.add_(extra.dW_add * grad)
        dx = self._input_grad(grad, x, W, W_operand, c, h, d_z, cfg) if need_dx else W.new_empty(0)
        return dx, dW, db, saved.dc * grad

    def _input_grad(self, grad, x, W, W_operand, c, h, d_z, cfg):
        """dL/dx: through x~ (dZ W, masked like the corruption) plus the reconstruction target.
        W_operand: W as the products take it (rounded(W, cfg))."""
        scale = gradient_scale(cfg, h.shape[0])
        dx = mm(rounded(d_z, cfg, scale), W_operand, cfg, unscale=scale)
        keep = None
        if cfg.structured or cfg.hole_weight != 1.0:
            keep = structured.keep_of(self, x, cfg)
            dx.mul_(keep)
        elif not CORRUPTIONS[cfg.corruption].passes_gradient:
            self.ep.corrupt_grad(dx, dx, cfg.corruption, cfg.level, *host_stream(cfg.seed, cfg.offset))
        loss = LOSSES[cfg.loss].name  # target = -d(summed loss)/dx at the clean x
        if loss == "bce":  # softplus(a) - x a
            target = mm(h, W_operand, cfg, bias=c)
        elif loss == "mse":  # (g(a) - x)^2 / 2
            target = mm(h, W_operand, cfg)
            self.ep.bias_act(target, c, cfg.decoder)
            target.sub_(x)
        else:
            raise ValueError(f"unknown loss {loss!r}")
        dx.sub_(target.mul_(grad / max(x.shape[0], 1)))
        if cfg.hole_weight != 1.0:
            dx.add_(structured.recon_input_grad(h, W, c, x, keep, cfg, weighted=False).mul_(grad))
        return dx
