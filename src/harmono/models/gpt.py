"""A compact GPT with a standard or a harmonic unembedding, in one readable file.

The architecture is GPT-2's (pre-LayerNorm blocks, GELU MLP, learned
positions) as in nanoGPT, with tied embeddings: the token embedding
``wte (V, D)`` is also the unembedding. Only the head differs:

- ``head="standard"``: logits ``h @ wte.T`` and cross-entropy.
- ``head="harmonic"``: the rows of ``wte`` are class centers; logits
  ``-n log ||h - wte_i||`` and the harmonic loss (HarMax), as in Baek et al.,
  "Harmonic Loss Trains Interpretable AI Models", §5. The loss goes through
  the chunked :func:`harmono.harmonic.harmonic_loss`, so a 50k vocabulary
  never materialises the ``(B, T, V)`` logits; distances are computed in
  float32 even under bf16 autocast.

Exponent convention: ``p_i ∝ d_i^(-n)`` with ``d_i`` the distance (the
paper's); the default ``n = sqrt(D)`` is the paper's ``n ≈ 28`` at GPT-2
small. The official code raises the squared distance to ``-n`` (its ``n``
is our ``n / 2``).

Both heads report the loss as the mean negative log-likelihood in nats, so
validation losses are directly comparable (the official code adds a
probability floor to both; harmono does not).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from harmono.core import checks
from harmono.core.io import PRETRAINED_CONFIG, load_fitting_state, read_pretrained, write_pretrained
from harmono.harmonic import harmonic_logits, harmonic_loss
from harmono.harmonic.functional import DEFAULT_EPS

HEADS = ("standard", "harmonic")


@dataclass(frozen=True)
class GPTConfig:
    """Shape and head of a :class:`GPT`."""

    vocab_size: int = 0
    """Number of tokens ``V``; 0: the corpus' vocabulary (the trainer fills it in). GPT-2: 50304."""
    block_size: int = 256
    """Longest context, in tokens."""
    n_layer: int = 4
    """Number of transformer blocks."""
    n_head: int = 4
    """Attention heads per block; must divide ``n_embd``."""
    n_embd: int = 256
    """Width ``D`` of the residual stream and of the embeddings."""
    dropout: float = 0.0
    """Dropout after attention, MLP and embeddings during training."""
    bias: bool = False
    """Biases in the linear layers and LayerNorms (GPT-2: True; the paper's runs: False)."""
    head: str = "standard"
    """``"standard"`` (dot product + softmax) or ``"harmonic"`` (distance + HarMax)."""
    harmonic_exponent: float = 0.0
    """Harmonic exponent ``n`` (``p ∝ d^-n``); 0 means ``sqrt(n_embd)``, the paper's choice."""
    harmonic_eps: float = DEFAULT_EPS
    """Added to the squared distances before the log (bounds the gradient near a center)."""

    def __post_init__(self) -> None:
        for name in ("block_size", "n_layer", "n_head", "n_embd"):
            checks.require_positive_int(name, getattr(self, name))
        if isinstance(self.vocab_size, bool) or not isinstance(self.vocab_size, int) or self.vocab_size < 0:
            raise ValueError(f"vocab_size must be an int >= 0 (0: the corpus'), got {self.vocab_size!r}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd must be divisible by n_head, got {self.n_embd} and {self.n_head}")
        if isinstance(self.dropout, bool) or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be a number in [0, 1), got {self.dropout!r}")
        checks.require_choice("head", self.head, HEADS)
        checks.require_non_negative_number("harmonic_exponent", self.harmonic_exponent)
        checks.require_non_negative_number("harmonic_eps", self.harmonic_eps)

    @property
    def exponent(self) -> float:
        """The harmonic exponent in use: ``harmonic_exponent`` or ``sqrt(n_embd)``."""
        return self.harmonic_exponent or math.sqrt(self.n_embd)


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention (``scaled_dot_product_attention``)."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_head, self.dropout = config.n_head, config.dropout
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, T, D)`` -> ``(B, T, D)``."""
        batch, length, width = x.shape
        q, k, v = self.c_attn(x).split(width, dim=2)
        q, k, v = (t.view(batch, length, self.n_head, -1).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0
        )
        return self.resid_dropout(self.c_proj(y.transpose(1, 2).reshape(batch, length, width)))


class MLP(nn.Module):
    """The block's feed-forward part: ``D -> 4D -> GELU -> D``."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, T, D)`` -> ``(B, T, D)``."""
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x))))


class Block(nn.Module):
    """A pre-LayerNorm transformer block."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, T, D)`` -> ``(B, T, D)``."""
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """A GPT language model whose unembedding is tied to the token embedding.

    Parameters
    ----------
    config : GPTConfig

    Attributes
    ----------
    wte : nn.Embedding, weight (V, D)
        Token embeddings; also the unembedding (the harmonic head's class centers).
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        if config.vocab_size < 1:
            raise ValueError("expected a GPTConfig with vocab_size >= 1, got 0 (the corpus' size is filled "
                             "in by the trainer; set it to build a model directly)")  # fmt: skip
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.apply(self._init_weights)
        for name, parameter in self.named_parameters():
            if name.endswith("c_proj.weight"):  # GPT-2's scaled init of the residual projections
                nn.init.normal_(parameter, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def num_parameters(self, non_embedding: bool = True) -> int:
        """Parameter count; without the position embeddings by default (as GPT-2 papers count)."""
        total = sum(p.numel() for p in self.parameters())
        return total - self.wpe.weight.numel() if non_embedding else total

    def hidden(self, idx: torch.Tensor) -> torch.Tensor:
        """The final hidden states: token ids ``idx (B, T)`` -> ``(B, T, D)`` (after the last LayerNorm)."""
        if idx.ndim != 2 or idx.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"expected token ids of shape (B, T) and an integer dtype, got "
                             f"{tuple(idx.shape)} {idx.dtype}")  # fmt: skip
        length = idx.shape[1]
        if not 1 <= length <= self.config.block_size:
            raise ValueError(f"expected 1 to block_size = {self.config.block_size} tokens, got {length}")
        positions = torch.arange(length, device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(positions))
        for block in self.blocks:
            x = block(x)
        return self.ln_f(x)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Next-token logits of the head: ``hidden (..., D)`` -> ``(..., V)``.

        Harmonic: ``-n log ||h - wte_i||`` (float32), so ``softmax`` is HarMax.
        """
        if self.config.head == "harmonic":
            return harmonic_logits(hidden, self.wte.weight, self.config.exponent, self.config.harmonic_eps)
        return F.linear(hidden, self.wte.weight)

    def loss(self, hidden: torch.Tensor, targets: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
        """Mean next-token NLL (nats) of ``hidden (B, T, D)`` against ``targets (B, T)``.

        The harmonic head uses the chunked loss: the logits are never held whole.
        """
        if self.config.head == "harmonic":
            return harmonic_loss(
                hidden,
                self.wte.weight,
                targets,
                self.config.exponent,
                eps=self.config.harmonic_eps,
                ignore_index=ignore_index,
                validate=False,
            )
        logits = F.linear(hidden, self.wte.weight)
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # float32 under autocast
        return F.cross_entropy(logits.flatten(0, -2), targets.flatten(), ignore_index=ignore_index)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        """The loss for ``idx (B, T)`` and ``targets (B, T)``, or the last position's logits ``(B, V)``."""
        hidden = self.hidden(idx)
        if targets is None:
            return self.logits(hidden[:, -1])
        if targets.shape != idx.shape:
            raise ValueError(f"expected targets of shape {tuple(idx.shape)}, got {tuple(targets.shape)}")
        return self.loss(hidden, targets)

    @torch.no_grad()
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Sample ``max_new_tokens`` continuations of ``idx (B, T)``; returns ``(B, T + max_new_tokens)``.

        ``temperature`` divides the logits (0 picks the most likely token);
        ``top_k`` keeps only the k most likely tokens.
        """
        checks.require_non_negative_number("temperature", temperature)
        if top_k is not None:
            checks.require_positive_int("top_k", top_k)
        for _ in range(max_new_tokens):
            logits = self(idx[:, -self.config.block_size :]).float()
            if temperature == 0:
                next_token = logits.argmax(dim=-1, keepdim=True)
            else:
                logits = logits / temperature
                if top_k is not None and top_k < logits.shape[-1]:
                    kth = torch.topk(logits, top_k).values[:, -1:]
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                probs = torch.softmax(logits, dim=-1)
                next_token = torch.multinomial(probs, 1, generator=generator)
            idx = torch.cat([idx, next_token], dim=1)
        return idx

    @property
    def architecture(self) -> str:
        """What the weights are for, stored with them: ``gpt/<head>``."""
        return f"gpt/{self.config.head}"

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``config.json`` + ``model.safetensors`` into ``directory`` (the latter names the head)."""
        return write_pretrained(directory, self.state_dict(), {"gpt": asdict(self.config)}, self.architecture)

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | torch.device = "cpu") -> GPT:
        """Load a model written by :meth:`save_pretrained`, in eval mode.

        Raises
        ------
        FileNotFoundError
            A file is missing.
        ValueError
            A file is damaged, ``config.json`` holds no GPT or a field of the
            wrong type, or the weights do not fit it (another head, other tensors).
        """
        record, state, saved_architecture = read_pretrained(directory, "GPT")
        source = Path(directory) / PRETRAINED_CONFIG
        settings = record.get("gpt")
        if not isinstance(settings, dict):
            raise ValueError(
                f"{source} holds no GPT: expected a 'gpt' entry of GPT settings, got {settings!r}"
            )
        checks.require_known_fields(GPTConfig, settings, f"{source}: gpt")
        checks.require_field_types(GPTConfig, settings, f"{source}: gpt")
        model = cls(GPTConfig(**settings))
        load_fitting_state(model, state, directory, model.architecture, saved_architecture)
        return model.to(device).eval()
