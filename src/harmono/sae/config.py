"""The configuration of a sparse autoencoder: architecture, sizes and the architecture's own settings."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from harmono.core import checks
from harmono.sae.registry import REGISTRY

RECONSTRUCTION_LOSSES = ("mse", "nmse")
B_DEC_INITS = ("geometric_median", "mean", "zeros")


@dataclass(frozen=True)
class SAEConfig:
    """What an SAE is; saved as ``config.json`` next to its weights.

    The defaults follow the MonoLoss paper (``d_sae`` 8192, ``k`` 64, AuxK
    with ``alpha`` 1/32) and the SAE libraries' consensus where the paper is
    silent (``k_aux`` = ``d_in / 2``).
    """

    architecture: str
    """One of topk, batchtopk, jumprelu, relu."""
    d_in: int
    """Input features per sample."""
    d_sae: int = 8192
    """Latents (dictionary atoms)."""
    k: int = 64
    """Active latents per sample (topk; the batch average for batchtopk)."""
    k_aux: int = 0
    """Dead latents the AuxK loss decodes (topk, batchtopk; 0: d_in / 2)."""
    aux_coef: float = 1 / 32
    """Weight of the AuxK loss (topk, batchtopk; 0 turns it off)."""
    threshold_momentum: float = 0.01
    """batchtopk: weight of each batch's smallest kept activation in the inference threshold's average."""
    threshold_init: float = 0.001
    """jumprelu: initial threshold of every latent."""
    bandwidth: float = 0.001
    """jumprelu: width of the rectangle kernel of the threshold's pseudo-derivative."""
    l0_coef: float = 0.001
    """jumprelu: weight of the L0 penalty."""
    ste_to_input: bool = False
    """jumprelu: also pass the step's pseudo-derivative to the pre-activations (Anthropic's variant)."""
    l1_coef: float = 1e-4
    """relu: weight of the L1 penalty (activations weighted by decoder norms)."""
    reconstruction: str = ""
    """mse (element mean) or nmse (per-sample squared error over mean squared input); empty: the paper's
    choice, nmse for topk and mse for the others."""
    input_scale: float = 1.0
    """Inputs are multiplied by this before encoding (1: off); folded into the weights on save."""

    def __post_init__(self) -> None:
        checks.require_choice("architecture", self.architecture, tuple(REGISTRY))
        checks.require_at_least(self, ("d_in", "d_sae", "k"), 1)
        checks.require_at_least(self, ("k_aux",), 0)
        if self.k > self.d_sae:
            raise ValueError(f"k must be <= d_sae = {self.d_sae}, got {self.k}")
        for name in ("aux_coef", "l0_coef", "l1_coef"):
            checks.require_non_negative_number(name, getattr(self, name))
        for name in ("threshold_init", "bandwidth", "input_scale"):
            checks.require_positive_number(name, getattr(self, name))
        if not 0 < self.threshold_momentum <= 1:
            raise ValueError(f"threshold_momentum must lie in (0, 1], got {self.threshold_momentum}")
        if self.reconstruction:
            checks.require_choice("reconstruction", self.reconstruction, RECONSTRUCTION_LOSSES)

    @property
    def reconstruction_loss(self) -> str:
        """The reconstruction loss in use (``reconstruction`` or the architecture's default)."""
        return self.reconstruction or ("nmse" if self.architecture == "topk" else "mse")

    @property
    def aux_k(self) -> int:
        """Dead latents the AuxK loss decodes at most."""
        return self.k_aux or max(self.d_in // 2, 1)

    def to_dict(self) -> dict:
        """JSON-ready fields."""
        return asdict(self)

    @classmethod
    def from_dict(cls, record: dict, source: str = "SAE config") -> SAEConfig:
        """The config of ``to_dict``; unknown keys (another version's checkpoint) and wrong types are errors.

        ``source`` names where ``record`` came from (e.g. the ``config.json`` read) in the errors.
        """
        checks.require_known_fields(cls, record, source)
        checks.require_field_types(cls, record, source)
        return cls(**record)
