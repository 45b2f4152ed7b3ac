"""JumpReLU and ReLU SAEs.

JumpReLU (Rajamanoharan et al. 2024): ``z = pre * H(pre - θ)`` with a
per-latent threshold θ, a parameter in its own right (not ``exp`` of one,
which under Adam moves θ by only about ``θ * lr`` per step) kept in float32.
The step has no gradient, so θ learns through the rectangle-kernel
pseudo-derivatives of bandwidth ε, ``K(u) = 1{|u| < 1/2}``::

    ∂z/∂θ ≈ -(θ/ε) K((pre - θ)/ε)          ∂H/∂θ ≈ -(1/ε) K((pre - θ)/ε)

The sparsity loss is ``l0_coef * mean_b Σ_i H(pre - θ)``. With
``ste_to_input`` the pseudo-derivative also reaches the pre-activations
(``∂H/∂pre ≈ (1/ε) K``), Anthropic's variant.

ReLU: ``z = relu(pre)`` with the L1 penalty ``l1_coef * mean_b Σ_i z_i ‖W_dec,i‖``.
"""

from __future__ import annotations

import torch

from harmono.sae.base import SAE
from harmono.sae.config import SAEConfig


def _kernel(pre: torch.Tensor, threshold: torch.Tensor, bandwidth: float) -> torch.Tensor:
    return (((pre - threshold) / bandwidth).abs() < 0.5).to(pre.dtype) / bandwidth


class _JumpReLUFunction(torch.autograd.Function):
    """``pre * H(pre - θ)``; gradient to ``pre`` through the mask, to θ through the kernel."""

    @staticmethod
    def forward(ctx, pre, threshold, bandwidth):
        ctx.save_for_backward(pre, threshold)
        ctx.bandwidth = bandwidth
        return torch.where(pre > threshold, pre, 0.0)

    @staticmethod
    def backward(ctx, grad):
        pre, threshold = ctx.saved_tensors
        grad_pre = grad * (pre > threshold)
        grad_threshold = -(threshold * _kernel(pre, threshold, ctx.bandwidth) * grad).sum(dim=0)
        return grad_pre, grad_threshold, None


class _StepFunction(torch.autograd.Function):
    """``H(pre - θ)``; pseudo-derivative to θ, and to ``pre`` when ``to_input``."""

    @staticmethod
    def forward(ctx, pre, threshold, bandwidth, to_input):
        ctx.save_for_backward(pre, threshold)
        ctx.bandwidth, ctx.to_input = bandwidth, to_input
        return (pre > threshold).to(pre.dtype)

    @staticmethod
    def backward(ctx, grad):
        pre, threshold = ctx.saved_tensors
        kernel = _kernel(pre, threshold, ctx.bandwidth) * grad
        return (kernel if ctx.to_input else None), -kernel.sum(dim=0), None, None


class JumpReLUSAE(SAE):
    """Per-latent learned thresholds, L0 penalty through the step's pseudo-derivative."""

    architecture = "jumprelu"

    def __init__(self, config: SAEConfig):
        super().__init__(config)
        self.threshold = torch.nn.Parameter(torch.full((config.d_sae,), config.threshold_init))

    def _threshold(self) -> torch.Tensor:
        return self.threshold.float().clamp_min(0)

    def activate(self, pre: torch.Tensor) -> torch.Tensor:
        """``pre * H(pre - θ)``, computed in float32."""
        threshold = self._threshold()
        return _JumpReLUFunction.apply(pre.float(), threshold, self.config.bandwidth).to(pre.dtype)

    def gradient_support(self, pre: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """``pre > θ - ε``: the nonzero latents and the zeros near θ, which pass a gradient to θ.

        The kernel reaches ``ε / 2`` below θ; the whole bandwidth keeps every
        such zero whatever the rounding (an extra zero listed passes nothing).
        """
        return pre > self._threshold() - self.config.bandwidth

    def extra_losses(self, x_in, pre, latents, recon_in, dead_mask):
        """``{"l0": l0_coef * mean active count}``, differentiable through the step's pseudo-derivative."""
        step = _StepFunction.apply(
            pre.float(), self._threshold(), self.config.bandwidth, self.config.ste_to_input
        )
        return {"l0": self.config.l0_coef * step.sum(dim=1).mean()}


class ReLUSAE(SAE):
    """``relu(pre)`` with an L1 penalty weighted by the decoder norms."""

    architecture = "relu"

    def activate(self, pre: torch.Tensor) -> torch.Tensor:
        """``relu(pre)``."""
        return pre.relu()

    def extra_losses(self, x_in, pre, latents, recon_in, dead_mask):
        """``{"l1": l1_coef * mean_b Σ_i z_i ‖W_dec,i‖}``."""
        norms = torch.linalg.vector_norm(self.W_dec, dim=1)
        return {"l1": self.config.l1_coef * (latents.float() * norms).sum(dim=1).mean()}
