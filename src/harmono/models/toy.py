"""The harmonic-loss paper's toy MLP and transformer, for many seeds at once.

Every parameter carries a leading seed dimension ``S``: one module holds
``S`` independent models, and a forward pass runs all of them with batched
matmuls (``torch.baddbmm``). Nothing mixes across seeds, and AdamW is
elementwise, so training the stack equals training each seed alone; each
seed draws its initialisation from its own ``torch.Generator``.

Architectures (as in the paper and its code, 16-d embeddings)
--------------------------------------------------------------
- ``mlp``: the ``T`` input embeddings, concatenated ->
  Linear(16 T, 100) -> SiLU -> Linear(100, 16) -> head. The head is tied to
  the embedding ``E (V, 16)``: standard logits ``h . E_v + b_v`` (untied
  bias), or harmonic logits with ``E`` as the class centers. The embedding
  is initialised like a linear layer, U(-1/4, 1/4).
- ``transformer``: token embedding ``E`` (N(0, 1/4^2)) plus a learned
  position encoding (N(0, 1)), two post-LN encoder layers (2 heads, ReLU
  feed-forward of width 64, dropout 0.1 on the attention weights, the
  attention output, the hidden and the output of the feed-forward; no
  causal mask), each wrapped in an extra residual ``x + layer(x)``. The last
  position's output gives the logits: ``h . E_v`` (standard, tied, no bias)
  or harmonic logits to a separate, untied center matrix ``C (V, 16)``.

Harmonic logits are ``-(n / 2) log(||h - c||^2 + eps)`` (harmono's
convention ``p ∝ d^(-n)``); the default ``n = 2`` is the official code's
``n_exp = 1`` on ``d^2``, with which the paper's toy results were made.

Dropout is driven by explicit masks (:meth:`BatchedToyModel.dropout_masks`)
so that a seed's masks, too, come from its own generator. It is off
whenever no masks are passed, e.g. at evaluation (the official code left it
on there).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from harmono import _checks

ARCHITECTURES = ("mlp", "transformer")
HEADS = ("standard", "harmonic")


@dataclass(frozen=True)
class ToyModelConfig:
    """Shape and head of a toy model (defaults: the paper's)."""

    arch: str = "mlp"
    """``"mlp"`` or ``"transformer"``."""
    head: str = "harmonic"
    """``"standard"`` (dot product + SoftMax) or ``"harmonic"`` (distance + HarMax)."""
    vocab_size: int = 31
    """``V``: tokens in the shared input/output vocabulary."""
    seq_len: int = 2
    """``T``: input tokens per example."""
    embed_dim: int = 16
    """Embedding (and model) width."""
    exponent: float = 2.0
    """Harmonic exponent ``n`` in ``p ∝ d^(-n)`` (the official code's n = 1 on d^2)."""
    eps: float = 1e-4
    """Added to the squared distance inside the log (the official code's)."""
    mlp_hidden: int = 100
    """Width of the MLP's hidden layer."""
    num_heads: int = 2
    """Attention heads per transformer layer."""
    ff_dim: int = 64
    """Width of the transformer's feed-forward layer."""
    num_layers: int = 2
    """Transformer layers."""
    dropout: float = 0.1
    """Transformer dropout rate during training."""

    def __post_init__(self) -> None:
        _checks.require_choice("arch", self.arch, ARCHITECTURES)
        _checks.require_choice("head", self.head, HEADS)
        _checks.require_at_least(
            self, ("vocab_size", "seq_len", "embed_dim", "mlp_hidden", "num_heads", "ff_dim", "num_layers"), 1
        )
        _checks.require_positive_number("exponent", self.exponent)
        _checks.require_non_negative_number("eps", self.eps)
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} must be a multiple of num_heads {self.num_heads}")

    @property
    def mask_width(self) -> int:
        """Dropout mask values per example: attention weights, attention out, hidden, out; per layer."""
        t, d = self.seq_len, self.embed_dim
        return self.num_layers * (self.num_heads * t * t + t * (2 * d + self.ff_dim))


def _uniform(generator: torch.Generator, shape: tuple[int, ...], bound: float) -> torch.Tensor:
    return (torch.rand(shape, generator=generator, dtype=torch.float64) * 2 - 1).mul_(bound).float()


def _normal(generator: torch.Generator, shape: tuple[int, ...], std: float) -> torch.Tensor:
    return torch.randn(shape, generator=generator, dtype=torch.float64).mul_(std).float()


def _linear(generator: torch.Generator, fan_in: int, fan_out: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``nn.Linear``'s default init, as ``(weight (in, out), bias (out,))``."""
    bound = 1 / math.sqrt(fan_in)
    return _uniform(generator, (fan_in, fan_out), bound), _uniform(generator, (fan_out,), bound)


def _init_one(config: ToyModelConfig, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """The parameters of one seed's model, drawn in a fixed order from ``generator``."""
    v, d = config.vocab_size, config.embed_dim
    params: dict[str, torch.Tensor] = {}
    if config.arch == "mlp":
        params["embedding"] = _uniform(generator, (v, d), 1 / math.sqrt(d))
        params["w1"], params["b1"] = _linear(generator, config.seq_len * d, config.mlp_hidden)
        params["w2"], params["b2"] = _linear(generator, config.mlp_hidden, d)
        if config.head == "standard":
            params["out_bias"] = _uniform(generator, (v,), 1 / math.sqrt(d))
        return params
    params["embedding"] = _normal(generator, (v, d), 1 / math.sqrt(d))
    params["position"] = _normal(generator, (config.seq_len, d), 1.0)
    for layer in range(config.num_layers):
        p = f"l{layer}_"
        params[p + "qkv"] = _uniform(generator, (d, 3 * d), math.sqrt(6 / (4 * d)))  # xavier on (3d, d)
        params[p + "qkv_b"] = torch.zeros(3 * d)
        params[p + "proj"] = _uniform(generator, (d, d), 1 / math.sqrt(d))
        params[p + "proj_b"] = torch.zeros(d)
        params[p + "ln1_w"], params[p + "ln1_b"] = torch.ones(d), torch.zeros(d)
        params[p + "ff1"], params[p + "ff1_b"] = _linear(generator, d, config.ff_dim)
        params[p + "ff2"], params[p + "ff2_b"] = _linear(generator, config.ff_dim, d)
        params[p + "ln2_w"], params[p + "ln2_b"] = torch.ones(d), torch.zeros(d)
    if config.head == "harmonic":
        params["centers"] = _uniform(generator, (v, d), 1 / math.sqrt(d))
    return params


def batched_harmonic_logits(
    h: torch.Tensor, centers: torch.Tensor, exponent: float, eps: float
) -> torch.Tensor:
    """``-(n/2) log(||h - c||^2 + eps)`` per seed: ``h (S, B, D)``, ``centers (S, V, D)`` -> ``(S, B, V)``."""
    d2 = torch.baddbmm(
        h.square().sum(-1, keepdim=True) + centers.square().sum(-1).unsqueeze(1),
        h,
        centers.transpose(1, 2),
        alpha=-2.0,
    )
    return d2.clamp_min(0.0).add(eps).log().mul(-exponent / 2)


def _dropout(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """``x`` times a scaled keep mask (``0`` or ``1 / (1 - rate)``), or ``x`` itself without one."""
    return x if mask is None else x * mask.reshape(x.shape)


class BatchedToyModel(nn.Module):
    """``S`` toy models (one per seed) in one module; see the module notes.

    Parameters
    ----------
    config : ToyModelConfig
        Architecture, head and sizes.
    seeds : sequence of int
        One model per seed; seed ``s`` draws its parameters from
        ``torch.Generator().manual_seed(s)``, the same alone or in a stack.

    Shapes
    ------
    ``forward(tokens (S, B, T))`` -> logits ``(S, B, V)``.
    """

    def __init__(self, config: ToyModelConfig, seeds: list[int] | tuple[int, ...]) -> None:
        super().__init__()
        if len(seeds) == 0:
            raise ValueError("seeds must list at least one seed, got an empty list")
        self.config = config
        self.seeds = tuple(int(s) for s in seeds)
        per_seed = [_init_one(config, torch.Generator().manual_seed(s)) for s in self.seeds]
        self.params = nn.ParameterDict(
            {name: nn.Parameter(torch.stack([p[name] for p in per_seed])) for name in per_seed[0]}
        )

    @property
    def num_seeds(self) -> int:
        """``S``, the number of stacked models."""
        return len(self.seeds)

    @property
    def embedding(self) -> torch.Tensor:
        """Input embeddings ``(S, V, D)`` (the class centers of the harmonic MLP)."""
        return self.params["embedding"]

    @property
    def output_centers(self) -> torch.Tensor:
        """The output layer's class vectors ``(S, V, D)``: tied embeddings or untied centers."""
        return self.params["centers"] if "centers" in self.params else self.embedding

    def dropout_masks(
        self, generators: list[torch.Generator], steps: int, batch_size: int
    ) -> torch.Tensor | None:
        """Scaled keep masks for ``steps`` batches: ``(S, steps, batch_size, mask_width)``.

        Entry ``0`` (probability ``dropout``) or ``1 / (1 - dropout)``; seed
        ``k``'s masks come from ``generators[k]`` (CPU). ``None`` when the
        model has no dropout (MLPs, or rate 0).
        """
        rate = self.config.dropout
        if self.config.arch != "transformer" or rate == 0.0:
            return None
        masks = torch.empty(len(generators), steps, batch_size, self.config.mask_width)
        for mask, generator in zip(masks, generators, strict=True):
            mask.bernoulli_(1 - rate, generator=generator)
        return masks.div_(1 - rate)

    def forward(self, tokens: torch.Tensor, masks: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``(S, B, V)`` for ``tokens (S, B, T)``; ``masks (S, B, mask_width)`` turn dropout on."""
        s, b, t = tokens.shape
        if s != self.num_seeds or t != self.config.seq_len:
            raise ValueError(
                f"tokens must have shape (S={self.num_seeds}, B, T={self.config.seq_len}), "
                f"got {tuple(tokens.shape)}"
            )
        seed_index = torch.arange(s, device=tokens.device)[:, None, None]
        x = self.embedding[seed_index, tokens]  # (S, B, T, D)
        if self.config.arch == "mlp":
            h = self._mlp(x.reshape(s, b, -1))
        else:
            h = self._transformer(x, masks)
        if self.config.head == "harmonic":
            return batched_harmonic_logits(h, self.output_centers, self.config.exponent, self.config.eps)
        logits = torch.bmm(h, self.embedding.transpose(1, 2))
        return logits + self.params["out_bias"].unsqueeze(1) if "out_bias" in self.params else logits

    def _mlp(self, x: torch.Tensor) -> torch.Tensor:
        p = self.params
        hidden = F.silu(torch.baddbmm(p["b1"].unsqueeze(1), x, p["w1"]))
        return torch.baddbmm(p["b2"].unsqueeze(1), hidden, p["w2"])

    def _transformer(self, x: torch.Tensor, masks: torch.Tensor | None) -> torch.Tensor:
        c = self.config
        s, b, t, d = x.shape
        x = (x + self.params["position"].unsqueeze(1)).reshape(s, b * t, d)
        per_layer = c.mask_width // c.num_layers
        for layer in range(c.num_layers):
            layer_masks = None if masks is None else masks[..., layer * per_layer : (layer + 1) * per_layer]
            x = x + self._encoder_layer(x, layer, (s, b, t, d), layer_masks)
        return x.reshape(s, b, t, d)[:, :, -1]

    def _encoder_layer(
        self, x: torch.Tensor, layer: int, shape: tuple[int, int, int, int], masks: torch.Tensor | None
    ) -> torch.Tensor:
        """One post-LN ``nn.TransformerEncoderLayer`` (ReLU): ``x (S, B*T, D)`` -> same shape."""
        c, p, name = self.config, self.params, f"l{layer}_"
        s, b, t, d = shape
        heads, hd = c.num_heads, d // c.num_heads
        cuts = (heads * t * t, t * d, t * c.ff_dim, t * d)
        m_attn, m_out, m_hidden, m_ff = (None,) * 4 if masks is None else masks.split(cuts, dim=-1)
        qkv = torch.baddbmm(p[name + "qkv_b"].unsqueeze(1), x, p[name + "qkv"])
        q, k, v = qkv.reshape(s, b, t, 3, heads, hd).unbind(3)  # each (S, B, T, H, hd)
        # T is tiny: broadcast products beat batched matmuls of (T, hd) blocks and need no permutes
        scores = (q.unsqueeze(3) * k.unsqueeze(2)).sum(-1) / math.sqrt(hd)  # (S, B, T_query, T_key, H)
        weights = _dropout(torch.softmax(scores, dim=3), m_attn)
        attended = (weights.unsqueeze(-1) * v.unsqueeze(2)).sum(3).reshape(s, b * t, d)
        attended = torch.baddbmm(p[name + "proj_b"].unsqueeze(1), attended, p[name + "proj"])
        x = F.layer_norm(x + _dropout(attended, m_out), (d,), None, None) * p[name + "ln1_w"].unsqueeze(
            1
        ) + p[name + "ln1_b"].unsqueeze(1)
        hidden = F.relu(torch.baddbmm(p[name + "ff1_b"].unsqueeze(1), x, p[name + "ff1"]))
        hidden = _dropout(hidden, m_hidden)
        ff = torch.baddbmm(p[name + "ff2_b"].unsqueeze(1), hidden, p[name + "ff2"])
        return F.layer_norm(x + _dropout(ff, m_ff), (d,), None, None) * p[name + "ln2_w"].unsqueeze(1) + p[
            name + "ln2_b"
        ].unsqueeze(1)
