"""AdamW for a stack of independent models held in one ``(S, P)`` parameter.

Row ``s`` of the parameter is model ``s``. Each model has its own learning
rate, weight decay and step count, and a step can leave some models out
(``active``): their parameters, moments and step counts stay as they were,
so a model that ran out of batches in this step of its epoch trains exactly
as it would alone. The update is ``torch.optim.AdamW``'s (decoupled weight
decay, bias-corrected moments, no AMSGrad), applied row by row.
"""

from __future__ import annotations

import torch


class StackedAdamW:
    """AdamW over the rows of ``param (S, P)``; see the module notes.

    Parameters
    ----------
    param : torch.Tensor
        ``(S, P)`` leaf tensor with ``requires_grad``; one row per model.
    lr, weight_decay : torch.Tensor
        ``(S,)`` learning rate and decoupled weight decay of each model.
    betas : tuple of float
        Decay of the first and second moment estimates.
    eps : float
        Added to the root of the second moment.
    """

    def __init__(
        self,
        param: torch.Tensor,
        lr: torch.Tensor,
        weight_decay: torch.Tensor,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        if param.ndim != 2:
            raise ValueError(f"param must have shape (S, P), got {tuple(param.shape)}")
        rows = param.shape[0]
        for name, value in (("lr", lr), ("weight_decay", weight_decay)):
            if value.shape != (rows,):
                raise ValueError(f"{name} must have shape (S={rows},), got {tuple(value.shape)}")
        self.param = param
        self.lr = lr.to(param.device, torch.float64)
        self.weight_decay = weight_decay.to(param.device, torch.float64)
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.exp_avg = torch.zeros_like(param)
        self.exp_avg_sq = torch.zeros_like(param)
        self.steps = torch.zeros(rows, dtype=torch.float64, device=param.device)

    @torch.no_grad()
    def step(self, active: torch.Tensor | None = None) -> None:
        """Update the rows where ``active (S,)`` is true (all rows when ``None``) from ``param.grad``."""
        grad = self.param.grad
        if grad is None:
            raise RuntimeError("StackedAdamW.step needs param.grad; call backward() first")
        on = torch.ones_like(self.steps) if active is None else active.to(self.steps.dtype)
        self.steps.add_(on)
        taken = self.steps.clamp_min(1.0)
        bias1 = 1 - self.beta1**taken
        bias2_root = (1 - self.beta2**taken).sqrt()
        column = (-1, 1)
        self.exp_avg.lerp_(grad, ((1 - self.beta1) * on).to(grad.dtype).view(column))
        self.exp_avg_sq.lerp_(grad.square(), ((1 - self.beta2) * on).to(grad.dtype).view(column))
        self.param.mul_((1 - self.lr * self.weight_decay * on).to(grad.dtype).view(column))
        denom = (self.exp_avg_sq.sqrt() / bias2_root.to(grad.dtype).view(column)).add_(self.eps)
        step_size = (self.lr / bias1 * on).to(grad.dtype).view(column)
        self.param.addcdiv_(self.exp_avg * step_size, denom, value=-1.0)

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """The optimizer state, for a checkpoint: moments ``(S, P)`` and step counts ``(S,)``."""
        return {"exp_avg": self.exp_avg, "exp_avg_sq": self.exp_avg_sq, "steps": self.steps}

    def load_state_tensors(self, state: dict[str, torch.Tensor]) -> None:
        """Restore what :meth:`state_tensors` returned (shapes must match)."""
        for name, tensor in self.state_tensors().items():
            if state[name].shape != tensor.shape:
                raise ValueError(
                    f"optimizer state {name!r} must have shape {tuple(tensor.shape)}, "
                    f"got {tuple(state[name].shape)}"
                )
            tensor.copy_(state[name])
