"""Function-vector parallelograms in token embeddings (harmonic-loss paper, §5).

For a task given as word pairs ``(input, output)`` (see
:mod:`harmono.data.analogies`), two pairs ``(a, b)`` and ``(c, d)`` form a
parallelogram in embedding space when the function vector ``E_b - E_a`` of
the first equals ``E_d - E_c`` of the second. The parallelogram loss measures
how far they are from it::

    l_para = ||E_a + E_d - E_b - E_c|| / sigma,   sigma = sqrt(mean_k ||E_k||^2),

where ``E`` is the token-embedding matrix, centred over the whole vocabulary
and projected onto its top principal components (5 in the paper's figure).
Dividing by the root-mean-square norm ``σ`` makes the loss invariant to a
rotation, a scaling and a translation of all embeddings, so models trained
with different losses can be compared. The official notebook reports the
squared loss; this module reports the loss itself (same ordering, same CDF
up to a change of the x axis).

The functions take an embedding matrix ``emb`` of shape ``(V, D)`` (e.g. the
tied ``wte`` weight of a GPT), token ids of pairs ``(P, 2)`` and quadruples
of pair indices ``(Q, 2)``, and return one loss per quadruple.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping
from pathlib import Path

import torch

from harmono.analysis.plotting import pyplot

__all__ = [
    "analogy_quadruples",
    "parallelogram_loss",
    "plot_cdfs",
    "principal_projection",
    "random_quadruple_loss",
    "summarize",
]


# ---------------------------------------------------------------- input checks


def _int_arg(name: str, value: object, minimum: int) -> int:
    """Return ``value`` as an int if it is an integer (not a bool) ``>= minimum``, else raise."""
    try:
        number = operator.index(value)
    except TypeError:
        number = None
    if isinstance(value, bool) or number is None:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value!r}")
    if number < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {number}")
    return number


def _check_emb(emb: object) -> torch.Tensor:
    """Check the embedding matrix ``(V, D)``: a finite floating 2-D tensor with ``V >= 2``."""
    if not isinstance(emb, torch.Tensor):
        raise ValueError(f"emb: expected a torch.Tensor of shape (V, D), got {type(emb).__name__}")
    if emb.ndim != 2:
        raise ValueError(f"emb: expected shape (V, D) (2-D), got shape {tuple(emb.shape)}")
    if not emb.is_floating_point():
        raise ValueError(f"emb: expected a floating-point tensor, got dtype {emb.dtype}")
    if emb.shape[0] < 2 or emb.shape[1] < 1:
        raise ValueError(f"emb: expected shape (V, D) with V >= 2 and D >= 1, got shape {tuple(emb.shape)}")
    finite = torch.isfinite(emb.detach())
    if not bool(finite.all()):
        bad = int((~finite).sum())
        raise ValueError(f"emb: expected finite values, got {bad} NaN or inf out of {emb.numel()}")
    return emb


def _check_num_pcs(num_pcs: object, emb: torch.Tensor) -> int | None:
    """Check ``num_pcs``: ``None`` or an int in ``[1, min(V, D)]``."""
    if num_pcs is None:
        return None
    limit = min(emb.shape)
    try:
        number = operator.index(num_pcs)
    except TypeError:
        number = None
    if isinstance(num_pcs, bool) or number is None or not 1 <= number <= limit:
        raise ValueError(
            f"num_pcs: expected None or an int in [1, min(V, D)] = [1, {limit}] for emb of shape "
            f"{tuple(emb.shape)}, got {num_pcs!r}"
        )
    return number


def _check_ids(
    name: str, ids: object, shape_doc: str, ndim: int, width: int | None, high: int
) -> torch.Tensor:
    """Check a non-empty integer tensor of ``ndim`` dims (last one ``width``), values in ``[0, high)``."""
    if not isinstance(ids, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor of shape {shape_doc}, got {type(ids).__name__}")
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise ValueError(f"{name}: expected an integer tensor (e.g. torch.long), got dtype {ids.dtype}")
    if ids.ndim != ndim or (width is not None and ids.shape[-1] != width):
        raise ValueError(f"{name}: expected shape {shape_doc}, got shape {tuple(ids.shape)}")
    if ids.numel() == 0:
        raise ValueError(f"{name}: expected at least one row of shape {shape_doc}, got an empty tensor")
    low, top = int(ids.min()), int(ids.max())
    if low < 0 or top >= high:
        raise ValueError(f"{name}: expected values in [0, {high}), got values in [{low}, {top}]")
    return ids


# ---------------------------------------------------------------- projection and loss


def principal_projection(emb: torch.Tensor, num_pcs: int | None) -> torch.Tensor:
    """Centre the rows of ``emb`` and project them onto their top principal components.

    Parameters
    ----------
    emb : Tensor, shape (V, D)
        Finite floating-point embeddings (one row per token), ``V >= 2``.
    num_pcs : int or None
        Number ``k`` of principal components, in ``[1, min(V, D)]``;
        ``None`` keeps all ``D`` centred coordinates (no projection).

    Returns
    -------
    Tensor, shape (V, k), float64
        Coordinates of the centred rows on the components, sorted by
        decreasing variance (``k = D`` when ``num_pcs`` is None). The sign of
        each component is arbitrary; norms of differences do not depend on it.
    """
    emb = _check_emb(emb)
    k = _check_num_pcs(num_pcs, emb)
    centred = emb.detach().to(torch.float64)
    centred = centred - centred.mean(dim=0, keepdim=True)  # (V, D)
    if k is None:
        return centred
    cov = centred.T @ centred / centred.shape[0]  # (D, D)
    _, vectors = torch.linalg.eigh(cov)  # eigenvalues ascending, vectors in columns
    top = vectors[:, -k:].flip(dims=(1,))  # (D, k), decreasing variance
    return centred @ top


def _rms_norm(proj: torch.Tensor) -> torch.Tensor:
    """``σ = sqrt(mean_k ||E_k||²)`` of the projected rows ``(V, k)``; raise if zero."""
    sigma = proj.square().sum(dim=1).mean().sqrt()
    if not float(sigma) > 0:
        raise ValueError(
            "emb: expected rows that are not all equal (after centring and projection their "
            "root-mean-square norm is 0, so the loss is undefined)"
        )
    return sigma


def _quadruple_loss(
    proj: torch.Tensor,
    sigma: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    c: torch.Tensor,
    d: torch.Tensor,
) -> torch.Tensor:
    """``||E_a + E_d - E_b - E_c|| / σ`` for token-id vectors ``a, b, c, d`` of shape ``(Q,)``."""
    gap = (proj[a] - proj[b]) + (proj[d] - proj[c])  # (Q, k)
    return torch.linalg.vector_norm(gap, dim=1) / sigma


def parallelogram_loss(
    emb: torch.Tensor,
    pairs: torch.Tensor,
    quadruples: torch.Tensor,
    num_pcs: int | None = 5,
) -> torch.Tensor:
    """Parallelogram loss of each quadruple of word pairs.

    For quadruple ``(i, j)`` with ``(a, b) = pairs[i]`` and
    ``(c, d) = pairs[j]`` (input and output tokens), the loss is
    ``||E_a + E_d - E_b - E_c|| / σ`` with ``E = principal_projection(emb,
    num_pcs)`` and ``σ = sqrt(mean over all V rows of ||E_k||²)``. It is 0
    exactly when ``E_b - E_a = E_d - E_c`` (the four points form a
    parallelogram) and does not change when all embeddings are rotated,
    scaled or translated together.

    Parameters
    ----------
    emb : Tensor, shape (V, D)
        Token embeddings, finite and floating, ``V >= 2``.
    pairs : LongTensor, shape (P, 2)
        ``(input token, output token)`` ids in ``[0, V)``, e.g. from
        :func:`harmono.data.analogies.pair_token_ids`.
    quadruples : LongTensor, shape (Q, 2)
        Pair indices ``(i, j)`` in ``[0, P)``, e.g. from
        :func:`analogy_quadruples`; ``Q >= 1``. A row with ``i == j`` has loss 0.
    num_pcs : int or None
        Principal components kept, in ``[1, min(V, D)]``; None keeps all.
        Default 5 (the paper's figure).

    Returns
    -------
    Tensor, shape (Q,), float64
        One loss per quadruple, on the device of ``emb``.
    """
    proj = principal_projection(emb, num_pcs)  # checks emb and num_pcs
    vocab = emb.shape[0]
    pairs = _check_ids("pairs", pairs, "(P, 2)", 2, 2, vocab)
    quadruples = _check_ids("quadruples", quadruples, "(Q, 2)", 2, 2, pairs.shape[0])
    sigma = _rms_norm(proj)
    pairs = pairs.to(device=proj.device, dtype=torch.int64)
    quadruples = quadruples.to(device=proj.device, dtype=torch.int64)
    first, second = pairs[quadruples[:, 0]], pairs[quadruples[:, 1]]  # (Q, 2) each
    return _quadruple_loss(proj, sigma, first[:, 0], first[:, 1], second[:, 0], second[:, 1])


def analogy_quadruples(num_pairs: int, max_quadruples: int = 10_000, seed: int = 0) -> torch.Tensor:
    """Ordered pairs ``(i, j)``, ``i != j``, of pair indices: the quadruples of a task.

    Parameters
    ----------
    num_pairs : int
        Number ``P >= 2`` of word pairs of the task.
    max_quadruples : int
        Upper bound on the number of quadruples (``>= 1``). When
        ``P (P - 1) <= max_quadruples`` every ordered pair is returned,
        otherwise ``max_quadruples`` of them are drawn uniformly without
        replacement.
    seed : int
        Seed of the ``torch.Generator`` used for the draw.

    Returns
    -------
    LongTensor, shape (Q, 2)
        ``Q = min(P (P - 1), max_quadruples)`` distinct rows in
        lexicographic order, on the CPU.
    """
    num_pairs = _int_arg("num_pairs", num_pairs, 2)
    max_quadruples = _int_arg("max_quadruples", max_quadruples, 1)
    seed = _int_arg("seed", seed, 0)
    total = num_pairs * (num_pairs - 1)
    if total <= max_quadruples:
        flat = torch.arange(total, dtype=torch.int64)
    else:
        generator = torch.Generator().manual_seed(seed)
        flat = torch.randperm(total, generator=generator, dtype=torch.int64)[:max_quadruples].sort().values
    first = flat // (num_pairs - 1)
    rest = flat % (num_pairs - 1)
    second = rest + (rest >= first).to(torch.int64)  # skip j == i
    return torch.stack([first, second], dim=1)


def random_quadruple_loss(
    emb: torch.Tensor,
    token_ids: torch.Tensor,
    num_quadruples: int = 10_000,
    num_pcs: int | None = 5,
    seed: int = 0,
) -> torch.Tensor:
    """Parallelogram loss of random quadruples of distinct tokens: the chance baseline.

    Each quadruple ``(a, b, c, d)`` is drawn uniformly among ordered
    4-tuples of distinct tokens of ``token_ids`` (duplicates in
    ``token_ids`` count once), and scored as in :func:`parallelogram_loss`.

    Parameters
    ----------
    emb : Tensor, shape (V, D)
        Token embeddings, finite and floating, ``V >= 2``.
    token_ids : LongTensor, shape (T,)
        Candidate token ids in ``[0, V)``, at least 4 distinct (e.g. all the
        tokens of a task, or ``torch.arange(V)``).
    num_quadruples : int
        Number ``Q >= 1`` of quadruples.
    num_pcs : int or None
        Principal components kept, as in :func:`parallelogram_loss`.
    seed : int
        Seed of the ``torch.Generator`` used for the draw.

    Returns
    -------
    Tensor, shape (Q,), float64
        One loss per random quadruple, on the device of ``emb``.
    """
    proj = principal_projection(emb, num_pcs)
    token_ids = _check_ids("token_ids", token_ids, "(T,)", 1, None, emb.shape[0])
    num_quadruples = _int_arg("num_quadruples", num_quadruples, 1)
    seed = _int_arg("seed", seed, 0)
    tokens = torch.unique(token_ids.detach().cpu().to(torch.int64))  # (T',) sorted, distinct
    if tokens.numel() < 4:
        raise ValueError(f"token_ids: expected at least 4 distinct tokens, got {tokens.numel()}")
    sigma = _rms_norm(proj)
    generator = torch.Generator().manual_seed(seed)
    picks = torch.randint(tokens.numel(), (num_quadruples, 4), generator=generator)
    while True:  # redraw the rows that repeat a token: uniform over distinct 4-tuples
        ordered = picks.sort(dim=1).values
        clash = (ordered[:, 1:] == ordered[:, :-1]).any(dim=1)
        count = int(clash.sum())
        if count == 0:
            break
        picks[clash] = torch.randint(tokens.numel(), (count, 4), generator=generator)
    quad = tokens[picks].to(proj.device)  # (Q, 4) token ids
    return _quadruple_loss(proj, sigma, quad[:, 0], quad[:, 1], quad[:, 2], quad[:, 3])


# ---------------------------------------------------------------- summaries and figure


def _check_losses(name: str, losses: object) -> torch.Tensor:
    """Check a non-empty finite floating 1-D tensor of losses ``(Q,)``."""
    if not isinstance(losses, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor of shape (Q,), got {type(losses).__name__}")
    if losses.ndim != 1 or losses.numel() == 0:
        raise ValueError(
            f"{name}: expected a non-empty 1-D tensor of shape (Q,), got shape {tuple(losses.shape)}"
        )
    if not losses.is_floating_point():
        raise ValueError(f"{name}: expected a floating-point tensor, got dtype {losses.dtype}")
    if not bool(torch.isfinite(losses).all()):
        raise ValueError(f"{name}: expected finite values, got NaN or inf")
    return losses


def summarize(losses: torch.Tensor) -> dict[str, float]:
    """Count, mean and quartiles of a set of parallelogram losses.

    Parameters
    ----------
    losses : Tensor, shape (Q,)
        Finite losses, ``Q >= 1``.

    Returns
    -------
    dict
        ``{"count": Q, "mean", "median", "q25", "q75"}``: ``count`` is an int,
        the others Python floats; quantiles interpolate linearly between
        order statistics (numpy's default).
    """
    losses = _check_losses("losses", losses).detach().to(device="cpu", dtype=torch.float64)
    q25, median, q75 = torch.quantile(losses, torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64)).tolist()
    return {
        "count": int(losses.numel()),
        "mean": float(losses.mean()),
        "median": median,
        "q25": q25,
        "q75": q75,
    }


def plot_cdfs(
    curves: Mapping[str, Mapping[str, torch.Tensor]],
    path: str | Path,
    title: str | None = None,
) -> Path:
    """Empirical CDFs of parallelogram losses, one panel per task, one line per model.

    Parameters
    ----------
    curves : mapping label -> (mapping task -> Tensor of shape (Q,))
        E.g. ``{"standard": {"antonym": losses, ...}, "harmonic": {...}}``.
        Tasks appear in the order they are first met; a label may lack a task.
    path : str or Path
        Where to write the PNG (parent folders are created).
    title : str, optional
        Figure title.

    Returns
    -------
    Path
        ``path``.
    """
    if not isinstance(curves, Mapping) or not curves:
        raise ValueError(f"curves: expected a non-empty mapping label -> {{task: losses}}, got {curves!r}")
    tasks: list[str] = []
    for label, per_task in curves.items():
        if not isinstance(per_task, Mapping) or not per_task:
            raise ValueError(
                f"curves[{label!r}]: expected a non-empty mapping task -> losses, got {per_task!r}"
            )
        for task, losses in per_task.items():
            _check_losses(f"curves[{label!r}][{task!r}]", losses)
            if task not in tasks:
                tasks.append(task)
    plt = pyplot()
    ncols = min(4, len(tasks))
    nrows = math.ceil(len(tasks) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.4 * ncols, 2.9 * nrows), squeeze=False)
    for ax, task in zip(axes.flat, tasks, strict=False):
        for number, (label, per_task) in enumerate(curves.items()):
            if task not in per_task:
                continue
            xs = per_task[task].detach().to(device="cpu", dtype=torch.float64).sort().values
            ys = torch.arange(1, xs.numel() + 1, dtype=torch.float64) / xs.numel()
            ax.step(xs.numpy(), ys.numpy(), where="post", color=f"C{number}", label=label)
        ax.set_title(task)
        ax.set_ylim(0.0, 1.0)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(tasks) :]:
        ax.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    for ax in list(axes.flat)[1 : len(tasks)]:  # labels missing from the first panel
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    axes.flat[0].legend(handles, labels, loc="lower right", fontsize="small")
    fig.supxlabel("parallelogram loss")
    fig.supylabel("fraction of quadruples ≤ x")
    if title is not None:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=120)
    plt.close(fig)
    return path
