"""AdamW for a stack of independent models held in one ``(S, P)`` parameter.

Row ``s`` of the parameter is model ``s``. Each model has its own learning
rate, weight decay and step count, and a step can leave some models out
(``active``): their parameters, moments and step counts stay as they were,
so a model that ran out of batches in this step of its epoch trains exactly
as it would alone.

It is ``torch.optim.AdamW`` (its fused kernel where the device has one)
over the rows: each row is one parameter of the optimizer (a view of the
stack), rows that share a learning rate and weight decay form one group,
and a row left out of a step has no gradient in it, which AdamW skips.
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
        self.rows = list(param.detach().unbind(0))  # views: updating a row updates the stack
        groups: dict[tuple[float, float], list[torch.Tensor]] = {}
        for row, rate, decay in zip(self.rows, lr.tolist(), weight_decay.tolist(), strict=True):
            groups.setdefault((rate, decay), []).append(row)
        fused = param.device.type in ("cpu", "cuda") and param.dtype in (torch.float32, torch.float64)
        param_groups = [
            {"params": rows, "lr": rate, "weight_decay": decay} for (rate, decay), rows in groups.items()
        ]
        self.optimizer = torch.optim.AdamW(
            param_groups,
            betas=betas,
            eps=eps,
            fused=fused or None,
        )

    @torch.no_grad()
    def step(self, active: torch.Tensor | None = None) -> None:
        """Update the rows where ``active (S,)`` is true (all rows when ``None``) from ``param.grad``."""
        grad = self.param.grad
        if grad is None:
            raise RuntimeError("StackedAdamW.step needs param.grad; call backward() first")
        taking = [True] * len(self.rows) if active is None else active.tolist()
        for row, row_grad, takes in zip(self.rows, grad.unbind(0), taking, strict=True):
            row.grad = row_grad if takes else None
        self.optimizer.step()
        for row in self.rows:
            row.grad = None

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """The optimizer state, for a checkpoint: moments ``(S, P)`` and step counts ``(S,)``."""
        states = [self.optimizer.state.get(row, {}) for row in self.rows]
        zeros = torch.zeros_like(self.rows[0])
        return {
            "exp_avg": torch.stack([s.get("exp_avg", zeros) for s in states]),
            "exp_avg_sq": torch.stack([s.get("exp_avg_sq", zeros) for s in states]),
            "steps": torch.tensor([float(s["step"]) if "step" in s else 0.0 for s in states]),
        }

    def load_state_tensors(self, state: dict[str, torch.Tensor]) -> None:
        """Restore what :meth:`state_tensors` returned (shapes must match)."""
        expected = {"exp_avg": self.param.shape, "exp_avg_sq": self.param.shape, "steps": (len(self.rows),)}
        for name, shape in expected.items():
            if tuple(state[name].shape) != tuple(shape):
                raise ValueError(
                    f"optimizer state {name!r} must have shape {tuple(shape)}, got {tuple(state[name].shape)}"
                )
        group = self.optimizer.param_groups[0]
        step_dtype = torch.float32 if group["fused"] else torch.get_default_dtype()
        for k, row in enumerate(self.rows):
            steps = float(state["steps"][k])
            if steps == 0:
                self.optimizer.state.pop(row, None)
                continue
            self.optimizer.state[row] = {
                "step": torch.tensor(steps, dtype=step_dtype, device=row.device if group["fused"] else "cpu"),
                "exp_avg": state["exp_avg"][k].to(row).clone(),
                "exp_avg_sq": state["exp_avg_sq"][k].to(row).clone(),
            }
