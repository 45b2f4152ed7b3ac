"""The chunked harmonic cross-entropy behind :func:`harmono.harmonic_loss`.

Everything here works on flat float32/float64 tensors that the public
functions have checked: ``x (N, D)``, ``centers (C, D)``, ``target (N,)``
(long). Both distances reach this module as a squared Euclidean distance
``d2`` (the cosine distance as the chord between unit vectors), and the
logits are ``z_j = -power * log(d2_j)``.

Precision
---------
``d2_j = |x|^2 + |c_j|^2 - 2 x.c_j`` (one matmul for all classes) loses
digits when ``x`` sits close to ``c_j`` compared with its norm, which is
exactly where the harmonic loss drives training. The entries that decide the
loss of a row, its target and its ``EXACT_NEAREST`` nearest centers, are
therefore recomputed from explicit differences ``x - c`` (O(N k D) work), and
their gradient terms use those differences too; the other entries keep the
matmul form, whose error is small relative to their larger distances.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

EXACT_NEAREST = 4
"""Per row, the distances to this many nearest centers are computed from explicit differences."""


@dataclass(frozen=True, slots=True)
class ChunkSpec:
    """Constant settings of one loss call (not a tensor, not differentiated)."""

    power: float
    """``z = -power * log(d2)``."""
    eps2: float
    """Added to every squared distance."""
    ignore_index: int
    """Target value that contributes nothing."""
    label_smoothing: float
    """As in ``F.cross_entropy``."""
    reduction: str
    """``"mean"``, ``"sum"`` or ``"none"``."""
    rows: int
    """Rows per chunk."""
    grad_enabled: bool
    """Whether autograd records this call (false under ``torch.no_grad``)."""


def floor_of(eps2: float, dtype: torch.dtype) -> float:
    """Smallest squared distance used: ``eps2``, or the smallest normal number when ``eps2 = 0``."""
    return max(eps2, torch.finfo(dtype).tiny)


def exact_sq_dist(x: torch.Tensor, centers: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``|x - c_k|^2`` from explicit differences (differentiable).

    ``x (..., D)`` and ``centers (..., K, D)`` (K centers per row) ->
    ``(d2 (..., K), diff (..., K, D))`` with ``diff = x - centers``.
    """
    diff = x.unsqueeze(-2) - centers
    return diff.square().sum(-1), diff


def chunked_pass(
    x: torch.Tensor,
    centers: torch.Tensor,
    target: torch.Tensor,
    spec: ChunkSpec,
    row_weight: torch.Tensor | None,
    needs_grad: tuple[bool, bool] = (True, True),
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """One pass over row chunks of the harmonic cross-entropy.

    With ``a`` the nearest center of a row, ``e_j = exp(z_j - z_a) =
    (d2_a / d2_j)^power`` (no log or exp of large numbers) and
    ``rest = sum_{j != a} e_j``, the row loss is
    ``power * log(d2_t / d2_a) + log1p(rest)`` (plus the smoothing term), and
    ``p_t - 1 = -rest / (1 + rest)`` when ``t = a``: both keep their digits
    when the prediction is confident.

    Parameters
    ----------
    x : Tensor, shape (N, D)
    centers : Tensor, shape (C, D)
    target : LongTensor, shape (N,)
        Class indices or ``spec.ignore_index``.
    spec : ChunkSpec
    row_weight : Tensor, shape (N,), optional
        ``dL/dloss_r`` for each row; when given, the gradients of
        ``sum_r row_weight_r * loss_r`` are computed as well.
    needs_grad : (bool, bool)
        Which of the gradients for ``x`` and ``centers`` to compute.

    Returns
    -------
    loss : Tensor, shape (N,)
        Per-row loss, zero for ignored rows.
    grad_x : Tensor, shape (N, D), or None
    grad_centers : Tensor, shape (C, D), or None
    """
    num_classes = centers.shape[0]
    valid = target != spec.ignore_index
    safe_target = torch.where(valid, target, 0).unsqueeze(1)
    smooth, power, eps2 = spec.label_smoothing, spec.power, spec.eps2
    floor = floor_of(eps2, x.dtype)
    # squared row norms without a (C, D) temporary
    column_term = torch.linalg.vector_norm(centers, dim=1).square_()
    row_term = torch.linalg.vector_norm(x, dim=1).square_().add_(eps2).unsqueeze(1)
    loss = torch.empty(x.shape[0], dtype=x.dtype, device=x.device)
    need_x, need_c = needs_grad if row_weight is not None else (False, False)
    grad_x = torch.empty_like(x) if need_x else None
    grad_c = torch.zeros_like(centers) if need_c else None
    col_sum = torch.zeros(num_classes, dtype=x.dtype, device=x.device) if need_c else None
    # two chunk buffers, allocated once and reused by every chunk
    chunk_rows = min(spec.rows, x.shape[0])
    d2_buffer = torch.empty(chunk_rows, num_classes, dtype=x.dtype, device=x.device)
    e_buffer = torch.empty_like(d2_buffer)
    for start in range(0, x.shape[0], spec.rows):
        rows = slice(start, start + spec.rows)
        x_r, t_r = x[rows], safe_target[rows]
        n_r = x_r.shape[0]
        d2 = torch.addmm(column_term, x_r, centers.T, alpha=-2, out=d2_buffer[:n_r])  # (R, C)
        d2.add_(row_term[rows])
        # the entries that matter most, from explicit differences: the k nearest and the target
        near = d2.topk(min(EXACT_NEAREST, num_classes), dim=1, largest=False).indices  # (R, k)
        d2_k, diff_k = exact_sq_dist(x_r, centers[near])  # (R, k), (R, k, D)
        d2_target, diff_target = exact_sq_dist(x_r, centers[t_r])  # (R, 1), (R, 1, D)
        d2_k = d2_k.add_(eps2).clamp_min_(floor)
        d2_target = d2_target.add_(eps2).clamp_min_(floor)
        d2.clamp_min_(floor).scatter_(1, near, d2_k).scatter_(1, t_r, d2_target)
        d2_min, best = d2_k.min(1, keepdim=True)
        nearest = near.gather(1, best)  # (R, 1): the reference class a
        e = torch.div(d2_min, d2, out=e_buffer[:n_r]).pow_(power)
        e.scatter_(1, nearest, 0.0)  # e_j = (d2_a / d2_j)^power, 0 at the nearest
        rest = e.sum(1, keepdim=True)
        total = 1 + rest
        log_near = d2_min.log()
        row_loss = power * (d2_target.log() - log_near) + torch.log1p(rest)
        if smooth:  # lse - mean_j z_j (one more (R, C) temporary)
            lse_minus_mean = power * (torch.log(d2).mean(1, keepdim=True) - log_near) + torch.log1p(rest)
            row_loss = (1 - smooth) * row_loss + smooth * lse_minus_mean
        loss[rows] = row_loss.squeeze(1).masked_fill_(~valid[rows], 0)
        if not (need_x or need_c):
            continue
        # dL/d(d2_j) = s * h_j with s = -power * w / total, h_j = (e_j - total * y_j) / d2_j and
        # y = (1 - smooth) onehot(t) + smooth / C. The row factor s goes on the (R, D) sides.
        at_target = nearest == t_r
        p_minus_y_target = torch.where(
            at_target,
            (smooth * total - rest) / total,  # p_t - (1 - smooth) when t is the nearest
            (d2_min / d2_target).pow_(power) / total - (1 - smooth),
        )
        smooth_part = total * (smooth / num_classes)
        h = e.scatter_(1, nearest, 1.0)
        if smooth:
            h.sub_(smooth_part)
        h.div_(d2).scatter_(1, t_r, (total * p_minus_y_target - smooth_part) / d2_target)
        # the k nearest and the target enter through their exact differences, not the matmuls
        h_k = h.gather(1, near).masked_fill_(near == t_r, 0.0)  # the target is counted once
        h_target = h.gather(1, t_r)
        h.scatter_(1, near, 0.0).scatter_(1, t_r, 0.0)
        scale = (row_weight[rows] * valid[rows] * -power).unsqueeze(1) / total  # (R, 1)
        # 2 s h_j (x - c_j) for j in {k nearest, target}: (R, k, D) and (R, 1, D); h_j (x - c_j)
        # first, so that a huge h_j (d2_j at the floor, x on c_j) meets its zero difference
        exact_k = (h_k.unsqueeze(2) * diff_k).mul_((2 * scale).unsqueeze(2))
        exact_target = (h_target.unsqueeze(2) * diff_target).mul_((2 * scale).unsqueeze(2))
        if need_x:
            # sum_j 2 s h_j (x - c_j)
            grad_x_r = torch.mm(h, centers).mul_(-2 * scale)
            grad_x_r.addcmul_(x_r, 2 * scale * h.sum(1, keepdim=True))
            grad_x[rows] = grad_x_r + exact_k.sum(1) + exact_target.squeeze(1)
        if need_c:
            # sum_r 2 s_r h_rj (c_j - x_r)
            grad_c.addmm_(h.T, x_r * scale, alpha=-2)
            col_sum.add_((scale.T @ h).squeeze(0))
            grad_c.index_add_(0, near.reshape(-1), exact_k.reshape(-1, x.shape[1]), alpha=-1)
            grad_c.index_add_(0, t_r.reshape(-1), exact_target.reshape(-1, x.shape[1]), alpha=-1)
    if col_sum is not None:
        grad_c.addcmul_(centers, 2 * col_sum.unsqueeze(1))
    return loss, grad_x, grad_c


class HarmonicCrossEntropy(torch.autograd.Function):
    """Harmonic cross-entropy over row chunks; never holds more than one chunk's logits.

    For ``"mean"``/``"sum"`` the gradients are computed in the forward pass
    and handed to autograd in the first backward pass without a copy; any
    further backward pass through the same graph (``retain_graph=True``)
    recomputes them. For ``"none"`` every backward pass recomputes.
    """

    @staticmethod
    def forward(ctx, x, centers, target, spec):  # noqa: D102
        ctx.spec = spec
        ctx.save_for_backward(x, centers, target)
        needs_grad = tuple(spec.grad_enabled and need for need in ctx.needs_input_grad[:2])
        ctx.eager_grads = None
        if spec.reduction == "none":
            loss, _, _ = chunked_pass(x, centers, target, spec, None)
            return loss
        row_weight = _row_weight(target, spec, x.dtype) if any(needs_grad) else None
        loss, grad_x, grad_c = chunked_pass(x, centers, target, spec, row_weight, needs_grad)
        ctx.eager_grads = (grad_x, grad_c) if any(needs_grad) else None
        total = loss.sum()
        return total / (target != spec.ignore_index).sum() if spec.reduction == "mean" else total

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):  # noqa: D102
        needs = (ctx.needs_input_grad[0], ctx.needs_input_grad[1])
        with torch.autocast(device_type=grad_out.device.type, enabled=False):
            x, centers, target = ctx.saved_tensors  # also autograd's check for in-place changes
            if ctx.eager_grads is not None:
                # first backward: hand over the gradients of the forward pass, no (C, D) copy
                grad_x, grad_c = ctx.eager_grads
                ctx.eager_grads = None
                grad_x = None if grad_x is None else grad_x.mul_(grad_out)
                grad_c = None if grad_c is None else grad_c.mul_(grad_out)
            else:
                weight = grad_out.to(x.dtype)
                if ctx.spec.reduction != "none":
                    weight = _row_weight(target, ctx.spec, x.dtype) * weight
                _, grad_x, grad_c = chunked_pass(x, centers, target, ctx.spec, weight, needs)
        return grad_x, grad_c, None, None


def _row_weight(target: torch.Tensor, spec: ChunkSpec, dtype: torch.dtype) -> torch.Tensor:
    """``dL/dloss_r`` of the mean or sum reduction, shape ``(N,)``."""
    weight = torch.ones(target.shape, dtype=dtype, device=target.device)
    if spec.reduction == "mean":
        weight /= (target != spec.ignore_index).sum().clamp_min(1)
    return weight
