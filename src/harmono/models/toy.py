"""The harmonic-loss paper's toy MLP and transformer: their configuration and parameter initialisation.

``harmono.models.toy_stack.BatchedToyModel`` runs them, many seeds at once;
each seed draws its parameters from its own ``torch.Generator`` through
:func:`init_parameters`.

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
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from harmono.core import checks

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
        checks.require_choice("arch", self.arch, ARCHITECTURES)
        checks.require_choice("head", self.head, HEADS)
        checks.require_at_least(
            self, ("vocab_size", "seq_len", "embed_dim", "mlp_hidden", "num_heads", "ff_dim", "num_layers"), 1
        )
        checks.require_positive_number("exponent", self.exponent)
        checks.require_non_negative_number("eps", self.eps)
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


def init_parameters(config: ToyModelConfig, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """The parameters of one seed's model, drawn in a fixed order from ``generator``.

    Parameters
    ----------
    config : ToyModelConfig
        The model.
    generator : torch.Generator
        The seed's generator; the same seed gives the same parameters.

    Returns
    -------
    dict of str to torch.Tensor
        Parameters by name, float32, without a seed dimension: e.g. ``embedding (V, D)``,
        ``w1 (T D, hidden)`` (weights are stored ``(in, out)``), ``centers (V, D)``.
    """
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
