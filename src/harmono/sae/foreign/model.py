"""An SAE saved by another library, run with that library's own forward pass (inference only).

Every format harmono reads (:mod:`harmono.sae.foreign`) comes down to the same
few steps, each set by a field of ``ForeignConfig``::

    x', stats = normalize(x)                    input_norm: none, layer_norm, constant_norm_rescale
    pre = (x' - b_dec·subtract_b_dec) @ W_enc + b_enc                                   (B, d_sae)
    z   = activation(pre)                       identity, relu, topk, jumprelu, groupmax, gated
    x̂'  = z @ W_dec + b_dec (+ x' @ W_skip)                                             (B, d_in)
    x̂   = denormalize(x̂', stats)

The tensors are held in harmono's orientation (``W_enc (d_in, d_sae)``,
``W_dec (d_sae, d_in)``) whatever the file's, so the readers transpose what
they must and nothing downstream needs to know the format.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from harmono.core import checks
from harmono.core.io import shape_differences
from harmono.sae.base import SAE, SAEOutput

ACTIVATIONS = ("identity", "relu", "topk", "jumprelu", "groupmax", "gated")
INPUT_NORMS = ("none", "layer_norm", "constant_norm_rescale")


@dataclass(frozen=True)
class ForeignConfig:
    """How to run a foreign SAE: where it came from and which forward pass its library uses."""

    format: str
    """The library whose files were read: saelens, sparsify, dictionary_learning, saev, openai."""
    architecture: str
    """The architecture as that library names it (e.g. ``jumprelu``, ``AutoEncoderTopK``)."""
    d_in: int
    """Input features per sample."""
    d_sae: int
    """Latents."""
    activation: str
    """One of ``ACTIVATIONS``: how pre-activations become latents."""
    k: int = 0
    """topk: latents kept per sample; groupmax: the number of groups."""
    topk_relu: bool = True
    """topk: clamp the kept values at zero (saev's TopK keeps negative ones)."""
    subtract_b_dec: bool = True
    """Subtract ``b_dec`` from the (normalised) input before encoding."""
    input_norm: str = "none"
    """One of ``INPUT_NORMS``, applied to the input and undone on the reconstruction."""
    norm_eps: float = 1e-5
    """layer_norm: added to the standard deviation the input is divided by."""
    source: str = ""
    """The file or folder read."""

    def __post_init__(self) -> None:
        checks.require_choice("activation", self.activation, ACTIVATIONS)
        checks.require_choice("input_norm", self.input_norm, INPUT_NORMS)
        checks.require_at_least(self, ("d_in", "d_sae"), 1)
        if self.activation in ("topk", "groupmax") and not 1 <= self.k <= self.d_sae:
            raise ValueError(f"{self.source}: k must lie in [1, d_sae = {self.d_sae}], got {self.k}")
        if self.activation == "groupmax" and self.d_sae % self.k:
            raise ValueError(
                f"{self.source}: groupmax needs d_sae divisible by k, got {self.d_sae} and {self.k}"
            )

    def to_dict(self) -> dict:
        """JSON-ready fields."""
        return asdict(self)


def expected_shapes(config: ForeignConfig) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape, in harmono's orientation, that ``config`` needs."""
    d_in, d_sae = config.d_in, config.d_sae
    shapes = {"W_enc": (d_in, d_sae), "b_enc": (d_sae,), "W_dec": (d_sae, d_in), "b_dec": (d_in,)}
    if config.activation == "jumprelu":
        shapes["threshold"] = (d_sae,)
    if config.activation == "gated":
        del shapes["b_enc"]
        shapes.update({"b_gate": (d_sae,), "b_mag": (d_sae,), "r_mag": (d_sae,)})
    return shapes


def fold_decoder_norms(tensors: dict[str, torch.Tensor]) -> None:
    """Give the atoms (rows of ``W_dec``) unit norm, the norms moved into ``W_enc`` and ``b_enc`` (in place).

    The reconstruction is unchanged; each latent is multiplied by its atom's norm.
    """
    norms = torch.linalg.vector_norm(tensors["W_dec"], dim=1)
    tensors["W_enc"] = tensors["W_enc"] * norms
    tensors["b_enc"] = tensors["b_enc"] * norms
    tensors["W_dec"] = tensors["W_dec"] / norms[:, None]


class ForeignSAE(SAE):
    """A foreign SAE: ``encode``, ``decode`` and ``reconstruct`` as its library computes them.

    Parameters
    ----------
    config : ForeignConfig
        The forward pass.
    tensors : dict of str to torch.Tensor
        ``W_enc (d_in, d_sae)``, ``b_enc (d_sae,)``, ``W_dec (d_sae, d_in)``, ``b_dec (d_in,)``;
        ``threshold (d_sae,)`` for jumprelu; ``b_gate``, ``b_mag``, ``r_mag (d_sae,)`` instead of
        ``b_enc`` for gated; optionally ``W_skip (d_in, d_in)``, added as ``x' @ W_skip``.

    Raises
    ------
    ValueError
        A tensor is missing, unexpected or of the wrong shape (the message names ``config.source``).
    """

    def __init__(self, config: ForeignConfig, tensors: dict[str, torch.Tensor]):
        nn.Module.__init__(self)
        self.config = config  # type: ignore[assignment]  # d_in and d_sae, as SAEConfig has them
        shapes = expected_shapes(config)
        if "W_skip" in tensors:
            shapes["W_skip"] = (config.d_in, config.d_in)
        found = {name: tuple(t.shape) for name, t in tensors.items()}
        if found != shapes:
            raise ValueError(
                f"{config.source}: expected the tensors of a {config.format} {config.architecture} SAE "
                f"with d_in {config.d_in} and d_sae {config.d_sae}, got {shape_differences(shapes, found)}"
            )
        for name, tensor in tensors.items():
            self.register_buffer(name, tensor.detach().float().contiguous())

    # -- the forward pass -------------------------------------------------------------------------

    def normalize(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
        """``(x', (scale, mean))``: the input as the SAE sees it, and what ``denormalize`` needs to undo it.

        layer_norm is SAELens's and OpenAI's: ``(x - μ) / (σ + eps)`` with the unbiased standard
        deviation σ of each row, undone as ``x̂' σ + μ`` (without the eps). constant_norm_rescale
        scales each row to norm ``sqrt(d_in)`` and divides the reconstruction by the same factor.
        """
        norm = self.config.input_norm
        if norm == "none":
            return x, None
        if norm == "constant_norm_rescale":
            scale = (self.config.d_in**0.5) / torch.linalg.vector_norm(x, dim=1, keepdim=True)
            return x * scale, (1 / scale, torch.zeros_like(scale))
        mean = x.mean(dim=1, keepdim=True)
        centred = x - mean
        std = centred.std(dim=1, keepdim=True)
        return centred / (std + self.config.norm_eps), (std, mean)

    @staticmethod
    def denormalize(x: torch.Tensor, stats: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        """Undo ``normalize`` on a reconstruction ``x (B, d_in)``: ``x scale + mean``."""
        if stats is None:
            return x
        scale, mean = stats
        return x * scale + mean

    def _pre_activations_scaled(self, x_in: torch.Tensor) -> torch.Tensor:
        if self.config.subtract_b_dec:
            x_in = x_in - self.b_dec
        return x_in @ self.W_enc + (self.b_gate if self.config.activation == "gated" else self.b_enc)

    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, d_sae)`` encoder output of raw inputs ``x (B, d_in)`` (after the format's normalisation).

        For a gated SAE, the gate's pre-activations.
        """
        return self._pre_activations_scaled(self.normalize(x)[0])

    def _latents(self, x_in: torch.Tensor, pre: torch.Tensor) -> torch.Tensor:
        if self.config.activation == "gated":
            if self.config.subtract_b_dec:
                x_in = x_in - self.b_dec
            magnitude = (x_in @ (self.W_enc * self.r_mag.exp()) + self.b_mag).relu()
            return magnitude * (pre > 0)
        return self.activate(pre)

    def activate(self, pre: torch.Tensor) -> torch.Tensor:
        """``(B, d_sae)`` latents of pre-activations, as the format's library computes them."""
        activation = self.config.activation
        if activation == "identity":
            return pre
        if activation == "relu":
            return pre.relu()
        if activation == "jumprelu":
            return pre.relu() * (pre > self.threshold)
        if activation == "topk":
            values, indices = pre.topk(self.config.k, dim=1)
            kept = values.relu() if self.config.topk_relu else values
            return torch.zeros_like(pre).scatter(1, indices, kept)
        if activation == "groupmax":
            groups = pre.relu().unflatten(1, (self.config.k, -1))
            values, positions = groups.max(dim=2)
            indices = positions + torch.arange(0, pre.shape[1], groups.shape[2], device=pre.device)
            return torch.zeros_like(pre).scatter(1, indices, values)
        raise ValueError(f"{self.config.source}: gated latents need the input, not pre-activations")

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, d_sae)`` latents of raw inputs ``x (B, d_in)``."""
        x_in = self.normalize(self.check_input(x))[0]
        return self._latents(x_in, self._pre_activations_scaled(x_in))

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """``(B, d_in)`` ``z @ W_dec + b_dec``, in the normalised space (``reconstruct`` undoes the norm).

        Without ``W_skip`` and input normalisation this is the reconstruction itself.
        """
        return latents @ self.W_dec + self.b_dec

    def _run(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(pre-activations, latents, reconstruction in x's scale)`` of raw inputs ``x``."""
        x_in, stats = self.normalize(self.check_input(x))
        pre = self._pre_activations_scaled(x_in)
        latents = self._latents(x_in, pre)
        recon = self.decode(latents)
        if "W_skip" in self._buffers:
            recon = recon + x_in @ self.W_skip
        return pre, latents, self.denormalize(recon, stats)

    def reconstruct(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(latents (B, d_sae), reconstruction (B, d_in))`` of raw inputs ``x``, in ``x``'s scale."""
        _, latents, recon = self._run(x)
        return latents, recon

    def forward(self, x: torch.Tensor, dead_mask: torch.Tensor | None = None) -> SAEOutput:
        """Latents and reconstruction of ``x (B, d_in)`` with its mean squared error as the only loss."""
        pre, latents, recon = self._run(x)
        return SAEOutput(recon, latents, pre, {"reconstruction": (recon - x).float().square().mean()})

    # -- what a harmono SAE can do and a foreign one cannot -----------------------------------------

    def describe(self) -> dict:
        """What this SAE is, for records: its ``ForeignConfig`` (format, architecture, forward, source)."""
        return self.config.to_dict()

    @property
    def saved_architecture(self) -> str:
        """``<format>/<architecture>``: where the weights came from."""
        return f"{self.config.format}/{self.config.architecture}"

    def save_pretrained(self, directory) -> None:
        """Refused: a foreign SAE stays in its own library's files."""
        raise NotImplementedError(
            f"{self.config.source} is a {self.config.format} SAE: harmono reads it but does not re-save it; "
            "copy its files instead"
        )

    def initialize_from_data(self, x: torch.Tensor, b_dec: str = "geometric_median") -> None:
        """Refused: a foreign SAE is for inference only."""
        raise NotImplementedError(
            f"{self.config.source} is a {self.config.format} SAE, read for inference only"
        )
