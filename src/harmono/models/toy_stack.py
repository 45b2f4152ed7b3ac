"""A stack of toy models (``harmono.models.toy``), one per seed, trained as one module.

Every parameter carries a leading seed dimension ``S``: one module holds
``S`` independent models, and a forward pass runs all of them with batched
matmuls (``torch.baddbmm``). Nothing mixes across seeds, and AdamW is
elementwise, so training the stack equals training each seed alone; each
seed draws its initialisation from its own ``torch.Generator``.

Dropout is driven by explicit masks (:meth:`BatchedToyModel.dropout_masks`)
so that a seed's masks, too, come from its own generator. It is off
whenever no masks are passed, e.g. at evaluation (the official code left it
on there; :meth:`BatchedToyModel.predict` takes masks for that control).

A stack may also mix configurations that share their shapes: standard and
harmonic heads, several exponents (``BatchedToyModel([config, ...], seeds)``,
one config per model), so that one forward pass trains, for example, both
heads of a task over both samplings and 20 seeds each.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from harmono.models.toy import ToyModelConfig, init_parameters


def batched_harmonic_logits(
    h: torch.Tensor,
    centers: torch.Tensor,
    exponent: float | torch.Tensor,
    eps: float | torch.Tensor,
) -> torch.Tensor:
    """``-(n/2) log(||h - c||^2 + eps)`` per seed: ``h (S, B, D)``, ``centers (S, V, D)`` -> ``(S, B, V)``.

    ``exponent`` and ``eps`` are numbers or ``(S, 1, 1)`` tensors (one per model).
    """
    return _squared_distances(h, centers).clamp_min(0.0).add(eps).log().mul(-exponent / 2)


def _squared_distances(h: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """``||h - c||^2`` by expansion: ``h (S, B, D)``, ``centers (S, V, D)`` -> ``(S, B, V)``."""
    return torch.baddbmm(
        h.square().sum(-1, keepdim=True) + centers.square().sum(-1).unsqueeze(1),
        h,
        centers.transpose(1, 2),
        alpha=-2.0,
    )


def _dropout(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """``x`` times a scaled keep mask (``0`` or ``1 / (1 - rate)``), or ``x`` itself without one."""
    return x if mask is None else x * mask.view(x.shape)


DROPOUT_SITES = ("attention weights", "attention output", "feed-forward hidden", "feed-forward output")
"""Where a transformer layer drops out, in the order of its masks in :meth:`BatchedToyModel.dropout_masks`.

The attention and feed-forward outputs are dropped before each is added to
the residual stream and layer-normalised (post-LN).
"""

SHARED_FIELDS = (
    "arch", "vocab_size", "seq_len", "embed_dim", "mlp_hidden", "num_heads", "ff_dim", "num_layers",
    "dropout",
)  # fmt: skip
"""Fields every model of one stack shares; ``head``, ``exponent`` and ``eps`` may differ per model."""


def _member_configs(
    config: ToyModelConfig | Sequence[ToyModelConfig], num_models: int
) -> tuple[ToyModelConfig, ...]:
    """One config per model: ``config`` repeated, or the sequence checked for shared shapes."""
    if isinstance(config, ToyModelConfig):
        return (config,) * num_models
    configs = tuple(config)
    if len(configs) != num_models:
        raise ValueError(f"expected one model config per seed ({num_models}), got {len(configs)}")
    for index, other in enumerate(configs):
        for name in SHARED_FIELDS:
            if getattr(other, name) != getattr(configs[0], name):
                raise ValueError(
                    f"models of one stack must share {name}: model 0 has {getattr(configs[0], name)!r}, "
                    f"model {index} has {getattr(other, name)!r}"
                )
    return configs


class BatchedToyModel(nn.Module):
    """``S`` toy models (one per seed) in one module; see the module notes.

    Parameters
    ----------
    config : ToyModelConfig or sequence of ToyModelConfig
        One config for every model, or one per model: models of one stack
        share their shapes (``SHARED_FIELDS``) and may differ in head,
        exponent and ``eps``.
    seeds : sequence of int
        One model per seed; seed ``s`` draws its parameters from
        ``torch.Generator().manual_seed(s)``, the same alone or in a stack.

    Notes
    -----
    All parameters live in one ``(S, P)`` tensor, ``flat`` (row ``s`` is
    model ``s``), so that one optimizer step updates every model at once;
    :attr:`params` views it by name. A parameter that only some models have
    (``out_bias`` of the standard MLP, ``centers`` of the harmonic
    transformer) is zero, and unused, in the others.

    Shapes
    ------
    ``forward(tokens (S, B, T))`` -> logits ``(S, B, V)``.
    """

    def __init__(
        self, config: ToyModelConfig | Sequence[ToyModelConfig], seeds: list[int] | tuple[int, ...]
    ) -> None:
        super().__init__()
        if len(seeds) == 0:
            raise ValueError("seeds must list at least one seed, got an empty list")
        self.seeds = tuple(int(s) for s in seeds)
        self.configs = _member_configs(config, len(self.seeds))
        per_model = [
            init_parameters(c, torch.Generator().manual_seed(s))
            for c, s in zip(self.configs, self.seeds, strict=True)
        ]
        shapes: dict[str, tuple[int, ...]] = {}
        for params in per_model:
            for name, value in params.items():
                shapes.setdefault(name, tuple(value.shape))
        self._shapes = shapes
        """Each parameter's shape per model, in the order of the columns of :attr:`flat`."""
        self.flat = nn.Parameter(
            torch.stack(
                [
                    torch.cat(
                        [p[n].flatten() if n in p else torch.zeros(math.prod(s)) for n, s in shapes.items()]
                    )
                    for p in per_model
                ]
            )
        )
        harmonic = [c.head == "harmonic" for c in self.configs]
        self.heads = "harmonic" if all(harmonic) else "standard" if not any(harmonic) else "mixed"
        column = (-1, 1, 1)
        self.register_buffer("harmonic_rows", torch.tensor(harmonic).view(column), persistent=False)
        self.register_buffer(
            "exponents", torch.tensor([c.exponent for c in self.configs]).view(column), persistent=False
        )
        self.register_buffer(
            "eps", torch.tensor([c.eps for c in self.configs]).view(column), persistent=False
        )

    @property
    def config(self) -> ToyModelConfig:
        """The first model's config; its ``SHARED_FIELDS`` hold for every model."""
        return self.configs[0]

    @property
    def num_seeds(self) -> int:
        """``S``, the number of stacked models."""
        return len(self.seeds)

    @property
    def params(self) -> dict[str, torch.Tensor]:
        """Every parameter by name, ``(S, ...)``: views into :attr:`flat`."""
        rows = self.flat.shape[0]
        sizes = [math.prod(shape) for shape in self._shapes.values()]
        # one split: its backward assembles the gradient of ``flat`` in one pass (slices would each fill it)
        pieces = self.flat.split(sizes, dim=1)
        return {
            name: piece.view(rows, *shape)
            for (name, shape), piece in zip(self._shapes.items(), pieces, strict=True)
        }

    @property
    def embedding(self) -> torch.Tensor:
        """Input embeddings ``(S, V, D)`` (the class centers of the harmonic MLP)."""
        return self.params["embedding"]

    @property
    def output_centers(self) -> torch.Tensor:
        """The output layer's class vectors ``(S, V, D)``: tied embeddings or untied centers."""
        return self._output_centers(self.params)

    def _output_centers(self, p: dict[str, torch.Tensor]) -> torch.Tensor:
        if "centers" not in p:
            return p["embedding"]
        return torch.where(self.harmonic_rows[: len(p["embedding"])], p["centers"], p["embedding"])

    def dropout_masks(
        self, generators: list[torch.Generator], steps: list[int] | int, batch_size: int
    ) -> list[torch.Tensor] | None:
        """Scaled keep masks for one epoch, split by where they apply; ``None`` without dropout.

        Model ``k`` draws ``(steps[k], batch_size, mask_width)`` uniform values
        from ``generators[k]`` (CPU; an entry is kept when its value is at
        least ``dropout``) and is padded with ones to the longest epoch.
        Returns, per layer, the four masks of ``DROPOUT_SITES``, each contiguous
        ``(S, max(steps), batch_size, width)`` with entries ``0`` or
        ``1 / (1 - dropout)``: ``None`` when the model has no dropout (MLPs,
        or rate 0).
        """
        c = self.config
        rate = c.dropout
        if c.arch != "transformer" or rate == 0.0:
            return None
        steps = [steps] * len(generators) if isinstance(steps, int) else list(steps)
        longest = max(steps)
        masks = torch.ones(len(generators), longest, batch_size, c.mask_width)
        for mask, generator, count in zip(masks, generators, steps, strict=True):
            drawn = torch.rand((count, batch_size, c.mask_width), generator=generator)
            mask[:count] = drawn.ge_(rate)
        masks.div_(1 - rate)
        t, d = c.seq_len, c.embed_dim
        widths = [c.num_heads * t * t, t * d, t * c.ff_dim, t * d] * c.num_layers
        return [part.contiguous() for part in masks.split(widths, dim=-1)]

    def forward(
        self,
        tokens: torch.Tensor,
        masks: list[torch.Tensor] | None = None,
        params: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Logits ``(S, B, V)`` for ``tokens (S, B, T)``.

        ``masks`` (one step of :meth:`dropout_masks`, each ``(S, B, width)``)
        turn dropout on. ``params`` (default :attr:`params`) lets a caller
        reuse one set of views, e.g. for a regulariser in the same step; the
        views of the first ``S' <= S`` models (:meth:`leading_params`) run
        only those models, on ``tokens (S', B, T)``.
        """
        p = self.params if params is None else params
        h = self.features(tokens, masks, params=p)
        if self.heads == "harmonic":
            return self._harmonic_logits(p, h)
        if self.heads == "standard":
            return self._standard_logits(p, h)
        harmonic = self.harmonic_rows[: len(h)]
        return torch.where(harmonic, self._harmonic_logits(p, h), self._standard_logits(p, h))

    def leading_params(self, count: int) -> dict[str, torch.Tensor]:
        """The :attr:`params` of the first ``count`` models, ``(count, ...)`` each (views)."""
        if not 1 <= count <= self.num_seeds:
            raise ValueError(f"count must be in [1, {self.num_seeds}], got {count}")
        return {name: value[:count] for name, value in self.params.items()}

    @torch.no_grad()
    def predict(self, tokens: torch.Tensor, masks: list[torch.Tensor] | None = None) -> torch.Tensor:
        """The most likely token ``(S, B)`` for ``tokens (S, B, T)``; dropout off unless ``masks`` are given.

        The same argmax as :meth:`forward` (with the same ``masks``), without
        the logarithm of the harmonic logits: the nearest center wins.
        """
        p = self.params
        h = self.features(tokens, masks, params=p)
        if self.heads == "standard":
            return self._standard_logits(p, h).argmax(-1)
        nearest = _squared_distances(h, self._output_centers(p)).argmin(-1)
        if self.heads == "harmonic":
            return nearest
        return torch.where(self.harmonic_rows.view(-1, 1), nearest, self._standard_logits(p, h).argmax(-1))

    def features(
        self,
        tokens: torch.Tensor,
        masks: list[torch.Tensor] | None = None,
        params: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """The representation ``(S, B, D)`` that the head reads, for ``tokens (S, B, T)``.

        ``params`` (default :attr:`params`) lets a caller reuse one set of
        views, or run only the first models (see :meth:`forward`).
        """
        p = self.params if params is None else params
        s, b, t = tokens.shape
        rows = len(p["embedding"])
        if s != rows or t != self.config.seq_len:
            raise ValueError(
                f"tokens must have shape (S={rows}, B, T={self.config.seq_len}), got {tuple(tokens.shape)}"
            )
        seed_index = torch.arange(s, device=tokens.device)[:, None, None]
        x = p["embedding"][seed_index, tokens]  # (S, B, T, D)
        if self.config.arch == "mlp":
            return self._mlp(p, x.reshape(s, b, -1))
        return self._transformer(p, x, masks)

    def _harmonic_logits(self, p: dict[str, torch.Tensor], h: torch.Tensor) -> torch.Tensor:
        rows = len(h)
        return batched_harmonic_logits(h, self._output_centers(p), self.exponents[:rows], self.eps[:rows])

    @staticmethod
    def _standard_logits(p: dict[str, torch.Tensor], h: torch.Tensor) -> torch.Tensor:
        logits = torch.bmm(h, p["embedding"].transpose(1, 2))
        return logits + p["out_bias"].unsqueeze(1) if "out_bias" in p else logits

    @staticmethod
    def _mlp(p: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        hidden = F.silu(torch.baddbmm(p["b1"].unsqueeze(1), x, p["w1"]))
        return torch.baddbmm(p["b2"].unsqueeze(1), hidden, p["w2"])

    def _transformer(
        self, p: dict[str, torch.Tensor], x: torch.Tensor, masks: list[torch.Tensor] | None
    ) -> torch.Tensor:
        c = self.config
        s, b, t, d = x.shape
        x = (x + p["position"].unsqueeze(1)).reshape(s, b * t, d)
        for layer in range(c.num_layers):
            layer_masks = None if masks is None else masks[4 * layer : 4 * layer + 4]
            x = x + self._encoder_layer(p, x, layer, (s, b, t, d), layer_masks)
        return x.reshape(s, b, t, d)[:, :, -1]

    def _encoder_layer(
        self,
        p: dict[str, torch.Tensor],
        x: torch.Tensor,
        layer: int,
        shape: tuple[int, int, int, int],
        masks: list[torch.Tensor] | None,
    ) -> torch.Tensor:
        """One post-LN ``nn.TransformerEncoderLayer`` (ReLU): ``x (S, B*T, D)`` -> same shape."""
        c, name = self.config, f"l{layer}_"
        s, b, t, d = shape
        heads, hd = c.num_heads, d // c.num_heads
        m_attn, m_out, m_hidden, m_ff = (None,) * 4 if masks is None else masks
        qkv = torch.baddbmm(p[name + "qkv_b"].unsqueeze(1), x, p[name + "qkv"])
        q, k, v = qkv.reshape(s, b, t, 3, heads, hd).unbind(3)  # each (S, B, T, H, hd)
        # T is tiny: broadcast products beat batched matmuls of (T, hd) blocks and need no permutes
        scores = (q.unsqueeze(3) * k.unsqueeze(2)).sum(-1) / math.sqrt(hd)  # (S, B, T_query, T_key, H)
        weights = _dropout(torch.softmax(scores, dim=3), m_attn)
        attended = (weights.unsqueeze(-1) * v.unsqueeze(2)).sum(3).reshape(s, b * t, d)
        attended = torch.baddbmm(p[name + "proj_b"].unsqueeze(1), attended, p[name + "proj"])
        x = _layer_norm(x + _dropout(attended, m_out), p[name + "ln1_w"], p[name + "ln1_b"])
        hidden = _dropout(F.relu(torch.baddbmm(p[name + "ff1_b"].unsqueeze(1), x, p[name + "ff1"])), m_hidden)
        ff = torch.baddbmm(p[name + "ff2_b"].unsqueeze(1), hidden, p[name + "ff2"])
        return _layer_norm(x + _dropout(ff, m_ff), p[name + "ln2_w"], p[name + "ln2_b"])


def _layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Layer norm of ``x (S, N, D)`` with each model's own ``weight``, ``bias (S, D)``."""
    return torch.addcmul(bias.unsqueeze(1), F.layer_norm(x, x.shape[-1:]), weight.unsqueeze(1))
