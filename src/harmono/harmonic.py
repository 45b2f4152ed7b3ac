"""Harmonic logits, HarMax and the harmonic loss.

Baek, Liu, Tyagi, Tegmark, "Harmonic Loss Trains Interpretable AI Models"
(arXiv 2502.01628). A harmonic head replaces the dot product of a linear
classifier by the distance to each class center ``c_i`` and SoftMax by HarMax.

Exponent convention (used everywhere in harmono)
------------------------------------------------
``p_i ∝ d_i^(-n)`` with ``d_i = ||x - c_i||_2``: the paper's convention. The
official code raises the *squared* distance to ``-n``, so its ``n`` equals our
``n / 2``. The default is ``n = sqrt(D)`` for ``D`` features, as the paper
recommends.

Log-space form
--------------
Everything is computed from the logits ``z_i = -n log d_i``, evaluated as
``-(n/2) log(d_i^2 + eps)`` with ``d_i^2 = ||x||^2 + ||c_i||^2 - 2 x.c_i``
(clamped at zero) in float32 or better, also under bf16/fp16 autocast. Then
``softmax(z)`` is HarMax and ``F.cross_entropy(z, y)`` is the harmonic loss,
with no power that can overflow or underflow and no NaN fix-up.

Cosine variant
--------------
``distance="cosine"`` uses ``d_i = 1 - cos(x, c_i)`` and ``z_i = -n log(d_i +
eps)``. The follow-up study "Rethinking the Harmonic Loss via Non-Euclidean
Distance Layers" (arXiv 2603.10225) reports it as the best trade-off for
accuracy and training stability. Since ``||x/|x| - c/|c| ||^2 = 2 d_i``, it is
the Euclidean harmonic head on unit vectors with exponent ``2n``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from harmono import _checks

DISTANCES = ("euclidean", "cosine")
REDUCTIONS = ("mean", "sum", "none")
DEFAULT_EPS = 1e-6
AUTO_CHUNK_BYTES = 64 * 2**20
"""Above this many bytes of float32 logits, ``harmonic_loss`` chunks by default.

It is also the size of one chunk's logits on the chunked path."""


def default_exponent(dim: int) -> float:
    """The paper's default harmonic exponent ``n = sqrt(D)`` for ``D`` features."""
    return math.sqrt(dim)


def _resolve_exponent(exponent: float | None, dim: int) -> float:
    if exponent is None:
        return default_exponent(dim)
    return _checks.require_positive_number("exponent", exponent)


def _check_eps(eps: float) -> float:
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps) or eps < 0:
        raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
    return float(eps)


def _check_features(x: torch.Tensor, centers: torch.Tensor, validate: bool) -> None:
    _checks.require_tensor("x", x)
    _checks.require_tensor("centers", centers)
    _checks.require_floating("x", x)
    _checks.require_floating("centers", centers)
    if x.ndim < 1:
        raise ValueError(f"x must have shape (..., D), got a 0-d tensor {tuple(x.shape)}")
    _checks.require_ndim("centers", centers, 2, "(C, D)")
    _checks.require_non_empty("centers", centers, "(C, D) with C >= 1 and D >= 1")
    if x.shape[-1] != centers.shape[1]:
        raise ValueError(
            f"feature dims differ: x has shape {tuple(x.shape)} (D = {x.shape[-1]}), "
            f"centers have shape {tuple(centers.shape)} (D = {centers.shape[1]}); "
            "expected x (..., D) and centers (C, D)"
        )
    if x.device != centers.device:
        raise ValueError(f"x is on {x.device} but centers are on {centers.device}")
    if validate:
        _checks.require_finite("x", x)
        _checks.require_finite("centers", centers)


def _compute_dtype(x: torch.Tensor, centers: torch.Tensor) -> torch.dtype:
    """float64 if any input is float64, else float32 (never half precision)."""
    if torch.float64 in (x.dtype, centers.dtype):
        return torch.float64
    return torch.float32


def _kernel_inputs(
    x: torch.Tensor, centers: torch.Tensor, exponent: float, eps: float, distance: str
) -> tuple[torch.Tensor, torch.Tensor, bool, float, float, float]:
    """Map both distances onto ``z = -power * log(d2 + eps2) + shift``.

    Returns ``(x, centers, on_sphere, power, eps2, shift)``, where the
    returned ``x`` and ``centers`` are in the compute dtype (unit-normalised
    when ``on_sphere``, in which case ``d2 = 2 - 2 x.c``).
    """
    dtype = _compute_dtype(x, centers)
    x, centers = x.to(dtype), centers.to(dtype)
    if distance == "euclidean":
        return x, centers, False, exponent / 2, eps, 0.0
    # cosine: d = 1 - cos = d2 / 2 on the unit sphere, so
    # -n log(d + eps) = -n log(d2 + 2 eps) + n log 2.
    x = F.normalize(x, dim=-1)
    centers = F.normalize(centers, dim=-1)
    return x, centers, True, float(exponent), 2 * eps, exponent * math.log(2.0)


def _log_space_logits(
    x: torch.Tensor, centers: torch.Tensor, on_sphere: bool, power: float, eps2: float
) -> torch.Tensor:
    """``-power * log(max(d2, 0) + eps2)``: ``x (..., D)``, ``centers (C, D)`` -> ``(..., C)``."""
    dots = x @ centers.T
    if on_sphere:
        d2 = 2 - 2 * dots
    else:
        d2 = x.square().sum(-1, keepdim=True) + centers.square().sum(-1) - 2 * dots
    return d2.clamp_min(0).add(eps2).log().mul(-power)


def harmonic_logits(
    x: torch.Tensor,
    centers: torch.Tensor,
    exponent: float | None = None,
    eps: float = DEFAULT_EPS,
    *,
    distance: str = "euclidean",
    validate: bool = True,
) -> torch.Tensor:
    """Harmonic logits ``z_i = -n log d_i``, so that ``softmax(z)`` is HarMax.

    Convention: ``p_i ∝ d_i^(-n)`` with ``d_i = ||x - c_i||_2`` (the paper's;
    the official code's ``n`` applies to ``d^2``, so it equals our ``n/2``).
    Computed as ``-(n/2) log(d_i^2 + eps)`` with float32 (or float64)
    distances, also under bf16/fp16 autocast. ``F.cross_entropy(z, y)`` is
    then the harmonic loss.

    Parameters
    ----------
    x : Tensor, shape (..., D)
        Representations (queries), any leading shape.
    centers : Tensor, shape (C, D)
        Class centers (keys), e.g. ``HarmonicLinear.centers``.
    exponent : float, optional
        Harmonic exponent ``n > 0``. Default ``sqrt(D)``.
    eps : float
        Added to the squared distance (to the cosine distance when
        ``distance="cosine"``); bounds the logits and their gradients when
        ``x`` sits on a center. Must be >= 0.
    distance : {"euclidean", "cosine"}
        ``"cosine"`` uses ``d_i = 1 - cos(x, c_i)`` (see the module notes).
    validate : bool
        Check that ``x`` and ``centers`` are finite (reads the data; switch
        off for speed once a pipeline is trusted).

    Returns
    -------
    Tensor, shape (..., C)
        Log-space logits in float32 (float64 if an input is float64).

    Raises
    ------
    ValueError
        On mismatched feature dims, a non-positive exponent, a negative eps
        or NaN/inf in the inputs.
    """
    _check_features(x, centers, validate)
    n = _resolve_exponent(exponent, centers.shape[1])
    eps = _check_eps(eps)
    _checks.require_choice("distance", distance, DISTANCES)
    with torch.autocast(device_type=x.device.type, enabled=False):
        xk, ck, on_sphere, power, eps2, shift = _kernel_inputs(x, centers, n, eps, distance)
        z = _log_space_logits(xk, ck, on_sphere, power, eps2)
        return z + shift if shift else z


def harmax(
    x: torch.Tensor,
    centers: torch.Tensor,
    exponent: float | None = None,
    eps: float = DEFAULT_EPS,
    *,
    distance: str = "euclidean",
    validate: bool = True,
) -> torch.Tensor:
    """HarMax probabilities ``p_i = d_i^(-n) / sum_j d_j^(-n)``.

    Same convention and arguments as :func:`harmonic_logits`: ``x (..., D)``,
    ``centers (C, D)`` -> ``(..., C)`` probabilities that sum to one over the
    last dim. Scale invariant: scaling every distance by ``a > 0`` leaves
    them unchanged (exactly so for ``eps = 0``).
    """
    return harmonic_logits(x, centers, exponent, eps, distance=distance, validate=validate).softmax(-1)


def _auto_chunk_rows(num_rows: int, num_classes: int, itemsize: int) -> int:
    """Rows per chunk: all rows when their logits fit ``AUTO_CHUNK_BYTES``."""
    if num_rows * num_classes * itemsize <= AUTO_CHUNK_BYTES:
        return num_rows
    return max(1, AUTO_CHUNK_BYTES // (num_classes * itemsize))


def harmonic_loss(
    x: torch.Tensor,
    centers: torch.Tensor,
    target: torch.Tensor,
    exponent: float | None = None,
    *,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    chunk_size: int | None = None,
    eps: float = DEFAULT_EPS,
    distance: str = "euclidean",
    validate: bool = True,
) -> torch.Tensor:
    """Harmonic loss: cross-entropy of HarMax, ``-log p_target``.

    Convention: ``p_i ∝ d_i^(-n)``, ``d_i = ||x - c_i||_2``, default
    ``n = sqrt(D)`` (the official code's ``n`` equals our ``n/2``). Same
    semantics as ``F.cross_entropy(harmonic_logits(x, centers), target)``:
    ``ignore_index``, the three reductions (``"mean"`` averages over the
    targets that are not ignored and, like PyTorch, gives NaN when all are)
    and label smoothing. More accurate than that composition for confident
    predictions: ``log(1 + s)`` is evaluated as ``log1p(s)``, so a loss of
    1e-6 keeps its digits in float32.

    Large vocabularies: the rows are processed in chunks of ``chunk_size``
    rows, chosen automatically so that one chunk's logits take at most
    ``AUTO_CHUNK_BYTES`` (64 MiB); the full ``(N, C)`` logits are never held,
    in the forward or the backward pass. For ``"mean"`` and ``"sum"`` the
    gradients are computed during the forward pass (three matmuls in all, as
    for a linear head); for ``"none"`` each chunk is recomputed in the
    backward pass. Without gradients (``torch.no_grad()``, evaluation) only
    the loss is computed. The loss is once-differentiable; for higher
    derivatives use ``F.cross_entropy(harmonic_logits(...), target)``.

    Parameters
    ----------
    x : Tensor, shape (..., D)
        Representations; any leading shape ``S``.
    centers : Tensor, shape (C, D)
        Class centers.
    target : LongTensor, shape S
        Class indices in ``[0, C)`` or ``ignore_index``.
    exponent : float, optional
        Harmonic exponent ``n > 0``; default ``sqrt(D)``.
    ignore_index : int
        Target value that contributes neither loss nor gradient.
    reduction : {"mean", "sum", "none"}
        As in ``F.cross_entropy``; ``"none"`` returns shape ``S``.
    label_smoothing : float
        In ``[0, 1]``, as in ``F.cross_entropy``.
    chunk_size : int, optional
        Rows per chunk. ``None`` chooses automatically (see above).
    eps, distance : see :func:`harmonic_logits`.
    validate : bool
        Check for NaN/inf in the inputs and for targets out of range (reads
        the data). Shapes and dtypes are always checked.

    Returns
    -------
    Tensor
        A scalar for ``"mean"``/``"sum"``, shape ``S`` for ``"none"``; float32
        (float64 if an input is float64).

    Raises
    ------
    ValueError
        On mismatched feature dims, empty input, a target of the wrong shape,
        dtype or range, a non-positive exponent, NaN/inf in the inputs or an
        unknown option.
    """
    _check_features(x, centers, validate)
    _checks.require_non_empty("x", x, "(..., D) with at least one row")
    num_classes, dim = centers.shape
    _checks.require_class_targets(target, x.shape[:-1], num_classes, ignore_index, validate)
    if target.device != x.device:
        raise ValueError(f"target is on {target.device} but x is on {x.device}")
    n = _resolve_exponent(exponent, dim)
    eps = _check_eps(eps)
    _checks.require_choice("reduction", reduction, REDUCTIONS)
    _checks.require_choice("distance", distance, DISTANCES)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}")
    if chunk_size is not None and (
        isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1
    ):
        raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}")

    flat_x = x.reshape(-1, dim)
    itemsize = torch.finfo(_compute_dtype(x, centers)).bits // 8
    rows = chunk_size or _auto_chunk_rows(flat_x.shape[0], num_classes, itemsize)
    with torch.autocast(device_type=x.device.type, enabled=False):
        xk, ck, on_sphere, power, eps2, _ = _kernel_inputs(flat_x, centers, n, eps, distance)
        spec = _ChunkSpec(on_sphere, power, eps2, ignore_index, label_smoothing, reduction, rows)
        loss = _HarmonicCrossEntropy.apply(xk, ck, target.reshape(-1), spec)
    return loss.reshape(target.shape) if reduction == "none" else loss


@dataclass(frozen=True, slots=True)
class _ChunkSpec:
    """Constant settings of one loss call (not a tensor, not differentiated)."""

    on_sphere: bool
    power: float
    eps2: float
    ignore_index: int
    label_smoothing: float
    reduction: str
    rows: int


def _chunked_pass(
    x: torch.Tensor,
    centers: torch.Tensor,
    target: torch.Tensor,
    spec: _ChunkSpec,
    row_weight: torch.Tensor | None,
    needs_grad: tuple[bool, bool] = (True, True),
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """One pass over row chunks of the harmonic cross-entropy.

    With ``z_j = -power * log(d2_j)``, its maximum ``m`` at the nearest
    center ``a`` and ``e_j = exp(z_j - m) = (d2_a / d2_j)^power`` (in
    ``(0, 1]``, no log or exp of large numbers), the row loss is
    ``(z_a - z_t) + log1p(rest)`` with ``rest = sum_{j != a} e_j``, and the
    target's ``p_t - 1`` is ``-rest / (1 + rest)`` when ``t = a``: both stay
    accurate when the prediction is confident.

    Parameters
    ----------
    x : Tensor, shape (N, D)
        Rows in the compute dtype (unit-normalised when ``spec.on_sphere``).
    centers : Tensor, shape (C, D)
        Centers in the compute dtype (unit-normalised when ``spec.on_sphere``).
    target : LongTensor, shape (N,)
        Class indices or ``spec.ignore_index``.
    spec : _ChunkSpec
        Exponent, eps, smoothing, chunk rows.
    row_weight : Tensor, shape (N,), optional
        ``dL/dloss_r`` for each row; when given, the gradients of
        ``sum_r row_weight_r * loss_r`` are accumulated as well.
    needs_grad : (bool, bool)
        Which of the gradients for ``x`` and ``centers`` to compute when
        ``row_weight`` is given.

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
    smooth, power = spec.label_smoothing, spec.power
    euclid = not spec.on_sphere
    floor = max(spec.eps2, torch.finfo(x.dtype).tiny)  # d2 > 0 even with eps = 0
    # d2 = |x|^2 + |c|^2 - 2 x.c, or 2 - 2 x.c on the sphere; norms without a (C, D) temporary
    if euclid:
        column_term = torch.linalg.vector_norm(centers, dim=1).square_()
        row_term = torch.linalg.vector_norm(x, dim=1).square_().add_(spec.eps2)
    else:
        column_term = torch.full((num_classes,), 2 + spec.eps2, dtype=x.dtype, device=x.device)
    loss = torch.empty(x.shape[0], dtype=x.dtype, device=x.device)
    want_grad = row_weight is not None
    need_x, need_c = needs_grad if want_grad else (False, False)
    grad_x = torch.empty_like(x) if need_x else None
    grad_c = torch.zeros_like(centers) if need_c else None
    col_sum = torch.zeros(num_classes, dtype=x.dtype, device=x.device) if need_c and euclid else None
    # two chunk buffers, allocated once and reused by every chunk
    chunk_rows = min(spec.rows, x.shape[0])
    d2_buffer = torch.empty(chunk_rows, num_classes, dtype=x.dtype, device=x.device)
    e_buffer = torch.empty_like(d2_buffer)
    for start in range(0, x.shape[0], spec.rows):
        rows = slice(start, start + spec.rows)
        x_r, t_r = x[rows], safe_target[rows]
        d2 = torch.addmm(column_term, x_r, centers.T, alpha=-2, out=d2_buffer[: x_r.shape[0]])  # (R, C)
        if euclid:
            d2.add_(row_term[rows].unsqueeze(1))
        d2.clamp_min_(floor)
        d2_min, nearest = d2.min(1, keepdim=True)
        d2_target = d2.gather(1, t_r)
        e = torch.div(d2_min, d2, out=e_buffer[: x_r.shape[0]]).pow_(power)
        e.scatter_(1, nearest, 0.0)  # e_j = (d2_min / d2_j)^power, 0 at the nearest
        rest = e.sum(1, keepdim=True)
        total = 1 + rest
        row_loss = power * (d2_target.log() - d2_min.log()) + torch.log1p(rest)
        if smooth:  # lse - mean_j z_j
            lse_minus_mean = power * (torch.log(d2).mean(1, keepdim=True) - d2_min.log()) + torch.log1p(rest)
            row_loss = (1 - smooth) * row_loss + smooth * lse_minus_mean
        loss[rows] = row_loss.squeeze(1).masked_fill_(~valid[rows], 0)
        if not want_grad:
            continue
        # dL/d(d2_j) = s * h_j with s = -power * w / total and h_j = (e_j - total * y_j) / d2_j,
        # y = (1 - smooth) onehot(t) + smooth / C; the row scale s is applied to the (R, D) sides.
        p_target_minus_one = torch.where(
            nearest == t_r,
            (smooth * total - rest) / total,
            (d2_min / d2_target).pow_(power) / total - (1 - smooth),
        )
        h = e.scatter_(1, nearest, 1.0)
        if smooth:
            h.sub_(total * (smooth / num_classes))
        h.div_(d2)
        h.scatter_(1, t_r, total * (p_target_minus_one - smooth / num_classes) / d2_target)
        scale = (row_weight[rows] * valid[rows] * -power).unsqueeze(1) / total  # (R, 1)
        if need_x:
            grad_x_r = torch.mm(h, centers).mul_(-2 * scale)
            if euclid:
                grad_x_r.addcmul_(x_r, 2 * scale * h.sum(1, keepdim=True))
            grad_x[rows] = grad_x_r
        if need_c:
            grad_c.addmm_(h.T, x_r * scale, alpha=-2)
            if euclid:
                col_sum.add_((scale.T @ h).squeeze(0))
    if col_sum is not None:
        grad_c.addcmul_(centers, 2 * col_sum.unsqueeze(1))
    return loss, grad_x, grad_c


class _HarmonicCrossEntropy(torch.autograd.Function):
    """Harmonic cross-entropy over row chunks; never holds more than one chunk's logits."""

    @staticmethod
    def forward(ctx, x, centers, target, spec):  # noqa: D102
        valid_count = (target != spec.ignore_index).sum()
        needs_grad = tuple(ctx.needs_input_grad[:2])
        ctx.spec = spec
        if spec.reduction == "none":
            loss, _, _ = _chunked_pass(x, centers, target, spec, None)
            ctx.save_for_backward(x, centers, target)
            return loss
        row_weight = None
        if any(needs_grad):
            scale = 1.0 / valid_count.clamp_min(1) if spec.reduction == "mean" else 1.0
            row_weight = torch.ones_like(x[:, 0]) * scale
        loss, grad_x, grad_c = _chunked_pass(x, centers, target, spec, row_weight, needs_grad)
        total = loss.sum()
        ctx.save_for_backward(grad_x, grad_c)
        return total / valid_count if spec.reduction == "mean" else total

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):  # noqa: D102
        with torch.autocast(device_type=grad_out.device.type, enabled=False):
            if ctx.spec.reduction == "none":
                x, centers, target = ctx.saved_tensors
                _, grad_x, grad_c = _chunked_pass(
                    x, centers, target, ctx.spec, grad_out.to(x.dtype), tuple(ctx.needs_input_grad[:2])
                )
            else:
                # Returned as they are when grad_out is 1 (a plain loss.backward()):
                # autograd then adopts them as .grad without another (C, D) copy.
                grad_x, grad_c = ctx.saved_tensors
                if not bool(grad_out == 1):
                    grad_x = None if grad_x is None else grad_x * grad_out
                    grad_c = None if grad_c is None else grad_c * grad_out
        return grad_x, grad_c, None, None


class HarmonicLinear(nn.Module):
    """A harmonic classification head: a drop-in for ``nn.Linear`` + cross-entropy.

    ``forward(x)`` returns the harmonic logits ``z_i = -n log ||x - c_i||`` of
    :func:`harmonic_logits` (convention ``p_i ∝ d_i^(-n)``; the official
    code's ``n`` equals our ``n/2``), so ``nn.CrossEntropyLoss`` and
    ``F.cross_entropy`` work unchanged and give the harmonic loss. For large
    vocabularies call :meth:`loss`, which never materialises the logits.

    Parameters
    ----------
    in_features : int
        ``D``, the size of each input.
    out_features : int
        ``C``, the number of classes (centers).
    exponent : float, optional
        Harmonic exponent ``n``; default ``sqrt(in_features)``.
    distance : {"euclidean", "cosine"}
        ``"cosine"`` uses ``d = 1 - cos(x, c)``; arXiv 2603.10225 found it the
        best distance for accuracy and training stability.
    eps : float
        See :func:`harmonic_logits`.
    validate : bool
        NaN/inf checks on every call (see :func:`harmonic_logits`).

    Attributes
    ----------
    weight : Parameter, shape (C, D)
        The class centers; tie it to an embedding exactly like a linear head.

    Shapes
    ------
    ``x (..., D)`` -> logits ``(..., C)`` (float32 even under autocast).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        exponent: float | None = None,
        *,
        distance: str = "euclidean",
        eps: float = DEFAULT_EPS,
        validate: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("in_features", in_features), ("out_features", out_features)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.in_features = in_features
        self.out_features = out_features
        self.exponent = _resolve_exponent(exponent, in_features)
        self.distance = _checks.require_choice("distance", distance, DISTANCES)
        self.eps = _check_eps(eps)
        self.validate = validate
        self.weight = nn.Parameter(torch.empty(out_features, in_features, device=device, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise the centers as ``nn.Linear`` does (uniform in ±1/sqrt(D))."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    @property
    def centers(self) -> torch.Tensor:
        """The class centers, shape ``(out_features, in_features)`` (the weight)."""
        return self.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Harmonic logits: ``x (..., D)`` -> ``(..., C)``."""
        return harmonic_logits(
            x, self.weight, self.exponent, self.eps, distance=self.distance, validate=self.validate
        )

    def loss(self, x: torch.Tensor, target: torch.Tensor, **kwargs) -> torch.Tensor:
        """:func:`harmonic_loss` of this head; ``kwargs`` as there (reduction, chunk_size, ...)."""
        return harmonic_loss(
            x,
            self.weight,
            target,
            self.exponent,
            eps=self.eps,
            distance=self.distance,
            validate=self.validate,
            **kwargs,
        )

    def extra_repr(self) -> str:
        """Sizes, exponent and distance, shown in ``repr(module)``."""
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"exponent={self.exponent:.4g}, distance={self.distance!r}"
        )
