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
(one matmul for all classes) in float32 or better, also under bf16/fp16
autocast. The squared distances to the ``EXACT_NEAREST`` (4) nearest centers
of each row (and, in the loss, to the target) are recomputed from the explicit
difference ``x - c``, which keeps their digits when ``x`` is close to a center. Then ``softmax(z)`` is
HarMax and ``F.cross_entropy(z, y)`` is the harmonic loss, with no power that
can overflow or underflow and no NaN fix-up.

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

import torch
import torch.nn.functional as F

from harmono.core import checks
from harmono.core.dtypes import compute_dtype
from harmono.harmonic.kernel import EXACT_NEAREST, ChunkSpec, HarmonicCrossEntropy, exact_sq_dist, floor_of

DISTANCES = ("euclidean", "cosine")
REDUCTIONS = ("mean", "sum", "none")
DEFAULT_EPS = 1e-6
AUTO_CHUNK_BYTES = 64 * 2**20
"""Above this many bytes of logits (in the compute dtype), ``harmonic_loss`` chunks by default.

It is also the size of one chunk's logits on the chunked path."""


def default_exponent(dim: int) -> float:
    """The paper's default harmonic exponent ``n = sqrt(D)`` for ``D`` features."""
    return math.sqrt(dim)


def _resolve_exponent(exponent: float | None, dim: int) -> float:
    if exponent is None:
        return default_exponent(dim)
    return checks.require_positive_number("exponent", exponent)


def _check_eps(eps: float) -> float:
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps) or eps < 0:
        raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
    return float(eps)


def _check_features(x: torch.Tensor, centers: torch.Tensor, validate: bool) -> None:
    checks.require_tensor("x", x)
    checks.require_tensor("centers", centers)
    checks.require_floating("x", x)
    checks.require_floating("centers", centers)
    if x.ndim < 1:
        raise ValueError(f"x must have shape (..., D), got a 0-d tensor {tuple(x.shape)}")
    checks.require_ndim("centers", centers, 2, "(C, D)")
    checks.require_non_empty("centers", centers, "(C, D) with C >= 1 and D >= 1")
    if x.shape[-1] != centers.shape[1]:
        raise ValueError(
            f"feature dims differ: x has shape {tuple(x.shape)} (D = {x.shape[-1]}), "
            f"centers have shape {tuple(centers.shape)} (D = {centers.shape[1]}); "
            "expected x (..., D) and centers (C, D)"
        )
    if x.device != centers.device:
        raise ValueError(f"x is on {x.device} but centers are on {centers.device}")
    if validate:
        largest = max(checks.require_finite("x", x), checks.require_finite("centers", centers))
        # |x - c|^2 <= D (2 max|value|)^2 must stay representable in the compute dtype
        dtype = compute_dtype(x, centers)
        if 2 * largest >= math.sqrt(torch.finfo(dtype).max / x.shape[-1]):
            raise ValueError(
                f"x and centers hold values up to {largest:.3g}: squared distances would overflow "
                f"{dtype}; rescale both (the harmonic loss is scale invariant)"
            )


def _kernel_inputs(
    x: torch.Tensor, centers: torch.Tensor, exponent: float, eps: float, distance: str, validate: bool
) -> tuple[torch.Tensor, torch.Tensor, float, float, float]:
    """Map both distances onto ``z = -power * log(d2 + eps2) + shift``, ``d2 = |x - c|^2``.

    Returns ``(x, centers, power, eps2, shift)`` with ``x`` and ``centers`` in
    the compute dtype, unit-normalised for the cosine distance.
    """
    dtype = compute_dtype(x, centers)
    x, centers = x.to(dtype), centers.to(dtype)
    if distance == "euclidean":
        return x, centers, exponent / 2, eps, 0.0
    if validate:
        checks.require_nonzero_rows("x", x, 'distance="cosine"')
        checks.require_nonzero_rows("centers", centers, 'distance="cosine"')
    # cosine: d = 1 - cos = |x/|x| - c/|c||^2 / 2, so -n log(d + eps) = -n log(d2 + 2 eps) + n log 2
    x, centers = F.normalize(x, dim=-1), F.normalize(centers, dim=-1)
    return x, centers, float(exponent), 2 * eps, exponent * math.log(2.0)


def _log_space_logits(x: torch.Tensor, centers: torch.Tensor, power: float, eps2: float) -> torch.Tensor:
    """``-power * log(|x - c|^2 + eps2)``: ``x (..., D)``, ``centers (C, D)`` -> ``(..., C)``.

    One matmul for every class; the ``EXACT_NEAREST`` nearest centers of each
    row are recomputed from explicit differences, so rows close to a center
    keep their digits.
    """
    d2 = x.square().sum(-1, keepdim=True) + centers.square().sum(-1) - 2 * (x @ centers.T)
    near = d2.detach().topk(min(EXACT_NEAREST, centers.shape[0]), dim=-1, largest=False).indices
    exact, _ = exact_sq_dist(x, centers[near])
    d2 = d2.scatter(-1, near, exact)
    return d2.add(eps2).clamp_min(floor_of(eps2, d2.dtype)).log().mul(-power)


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
        Check that ``x`` and ``centers`` are finite, that their squared
        distances cannot overflow and, for the cosine distance, that no row
        is a zero vector (reads the data; switch off for speed once a
        pipeline is trusted).

    Returns
    -------
    Tensor, shape (..., C)
        Log-space logits in float32 (float64 if an input is float64).

    Raises
    ------
    ValueError
        On mismatched feature dims, a non-positive exponent, a negative eps,
        or (with ``validate``) NaN/inf, overflowing values or, for the cosine
        distance, zero vectors in the inputs.
    """
    _check_features(x, centers, validate)
    n = _resolve_exponent(exponent, centers.shape[1])
    eps = _check_eps(eps)
    checks.require_choice("distance", distance, DISTANCES)
    with torch.autocast(device_type=x.device.type, enabled=False):
        xk, ck, power, eps2, shift = _kernel_inputs(x, centers, n, eps, distance, validate)
        z = _log_space_logits(xk, ck, power, eps2)
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
        The data checks of :func:`harmonic_logits`, plus targets out of
        range (reads the data). Shapes and dtypes are always checked.

    Returns
    -------
    Tensor
        A scalar for ``"mean"``/``"sum"``, shape ``S`` for ``"none"``; float32
        (float64 if an input is float64).

    Raises
    ------
    ValueError
        On mismatched feature dims, empty input, a target of the wrong shape,
        dtype, device or range, a non-positive exponent, an unknown option,
        or the data problems listed in :func:`harmonic_logits`.
    """
    _check_features(x, centers, validate)
    checks.require_non_empty("x", x, "(..., D) with at least one row")
    num_classes, dim = centers.shape
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
        raise ValueError(f"ignore_index must be an int, got {ignore_index!r}")
    checks.require_class_targets(
        target,
        x.shape[:-1],
        num_classes,
        ignore_index,
        validate,
        shape_doc=f"the leading shape of x, {tuple(x.shape[:-1])}",
    )
    if target.device != x.device:
        raise ValueError(f"target is on {target.device} but x is on {x.device}")
    n = _resolve_exponent(exponent, dim)
    eps = _check_eps(eps)
    checks.require_choice("reduction", reduction, REDUCTIONS)
    checks.require_choice("distance", distance, DISTANCES)
    if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, (int, float)):
        raise ValueError(f"label_smoothing must be a number in [0, 1], got {label_smoothing!r}")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}")
    if chunk_size is not None and (
        isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1
    ):
        raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}")

    flat_x = x.reshape(-1, dim)
    itemsize = compute_dtype(x, centers).itemsize
    rows = chunk_size or _auto_chunk_rows(flat_x.shape[0], num_classes, itemsize)
    with torch.autocast(device_type=x.device.type, enabled=False):
        xk, ck, power, eps2, _ = _kernel_inputs(flat_x, centers, n, eps, distance, validate)
        spec = ChunkSpec(
            power, eps2, ignore_index, label_smoothing, reduction, rows, grad_enabled=torch.is_grad_enabled()
        )
        loss = HarmonicCrossEntropy.apply(xk, ck, target.reshape(-1).long(), spec)
    return loss.reshape(target.shape) if reduction == "none" else loss
