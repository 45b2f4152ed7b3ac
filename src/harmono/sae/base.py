"""The sparse autoencoder all architectures share: encode, decode, losses, decoder constraint, save/load.

An SAE maps ``x (B, d_in)`` to latents ``z (B, d_sae)`` and back::

    x_in = x * input_scale
    pre  = (x_in - b_dec) @ W_enc + b_enc          (B, d_sae)
    z    = activation(pre)                          architecture-specific
    x̂    = (z @ W_dec + b_dec) / input_scale        (B, d_in)

``W_dec (d_sae, d_in)`` has unit-norm rows (atoms): the trainer removes the
gradient component parallel to each atom before a step and renormalises
after it. At initialisation ``W_enc = W_decᵀ`` and ``b_dec`` is the geometric
median (or mean) of a data sample. The losses are computed in the scaled
input space and returned by name in ``SAEOutput.losses``; the trainer adds
``mono_coef * mono_loss`` to them.

``save_pretrained(dir)`` writes ``config.json`` and ``model.safetensors``
with ``input_scale`` folded into the weights (the saved SAE takes raw
inputs); ``SAE.from_pretrained(dir)`` reads them back through the
architecture registry without unpickling anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from harmono.core import checks
from harmono.core.io import (
    PRETRAINED_CONFIG,
    PRETRAINED_WEIGHTS,
    load_fitting_state,
    read_pretrained,
    write_pretrained,
)
from harmono.mono.inputs import SparseEntries
from harmono.sae.config import B_DEC_INITS, SAEConfig
from harmono.sae.registry import FORMATS, REGISTRY

SPARSE_DECODE_MAX_DENSITY = 1 / 16
"""Latents are decoded from the entries of their ``gradient_support`` up to this fraction of them, by a
dense product above (on the CPU ``embedding_bag`` costs about 14x the dense product per entry)."""


class SAEOutput(NamedTuple):
    """What ``SAE.forward`` returns."""

    reconstruction: torch.Tensor
    """``(B, d_in)`` x̂, in the input's scale."""
    latents: torch.Tensor
    """``(B, d_sae)`` z."""
    pre_activations: torch.Tensor
    """``(B, d_sae)`` encoder output before the activation."""
    losses: dict[str, torch.Tensor]
    """Scalar loss terms by name (``reconstruction`` and the architecture's own)."""
    code: SparseEntries | None = None
    """The latents as entries, when they were decoded from them (always for TopK and BatchTopK training)."""


def decode_sparse(
    W_dec: torch.Tensor,
    b_dec: torch.Tensor,
    columns: torch.Tensor,
    values: torch.Tensor,
    offsets: torch.Tensor,
) -> torch.Tensor:
    """``(B, d_in)`` reconstruction from a CSR code: ``Σ values[j] W_dec[columns[j]] + b_dec`` per row.

    Parameters
    ----------
    W_dec : torch.Tensor
        ``(d_sae, d_in)`` atoms.
    b_dec : torch.Tensor
        ``(d_in,)``.
    columns, values : torch.Tensor
        ``(nnz,)`` latent index and activation of each nonzero, row by row.
    offsets : torch.Tensor
        ``(B,)`` start of each row in ``columns``.
    """
    weights = values.to(W_dec.dtype)
    return F.embedding_bag(columns, W_dec, offsets, mode="sum", per_sample_weights=weights) + b_dec


def row_starts(rows: torch.Tensor, num_rows: int) -> torch.Tensor:
    """``(B,)`` offset of each row's first entry, for row-major entries of rows ``rows (nnz,)``."""
    counts = torch.bincount(rows, minlength=num_rows)
    return counts.cumsum(0) - counts


def geometric_median(points: torch.Tensor, iterations: int = 100, tol: float = 1e-6) -> torch.Tensor:
    """The geometric median of ``points (N, D)`` by Weiszfeld's iterations, in float64.

    Returns
    -------
    torch.Tensor
        ``(D,)``, the point minimising the sum of Euclidean distances to ``points``.
    """
    points = points.double()
    median = points.mean(dim=0)
    for _ in range(iterations):
        weights = 1 / torch.linalg.vector_norm(points - median, dim=1).clamp_min(1e-12)
        updated = (weights[:, None] * points).sum(dim=0) / weights.sum()
        done = torch.linalg.vector_norm(updated - median) <= tol * torch.linalg.vector_norm(median).clamp_min(
            1
        )
        median = updated
        if done:
            break
    return median


def _not_an_sae(path: Path) -> str:
    """The error for a path that holds no SAE of any format: what each format is, and what came."""
    formats = "; ".join(f"{name}: {found.files}" for name, found in FORMATS.items())
    if path.is_dir():
        entries = sorted(path.iterdir())
        nested = [e.name for e in entries if e.is_dir() and any(f.recognizes(e) for f in FORMATS.values())]
        got = f"a folder holding {[e.name for e in entries[:12]]}"
        if nested:
            got += f" (its sub-folders {nested} are SAEs: pass one of them)"
    else:
        got = "a file no format reads" if path.is_file() else "nothing at that path"
    return (
        f"{path}: expected a saved SAE, harmono's ({PRETRAINED_CONFIG} + {PRETRAINED_WEIGHTS}) or another "
        f"library's ({formats}), got {got}"
    )


class SAE(nn.Module):
    """Base class: subclasses set ``architecture`` and implement ``activate`` (and extra losses).

    Parameters
    ----------
    config : SAEConfig
        Its ``architecture`` must be the subclass's.
    """

    architecture: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if cls.architecture:
            REGISTRY[cls.architecture] = cls

    def __init__(self, config: SAEConfig):
        super().__init__()
        if config.architecture != self.architecture:
            raise ValueError(f"{type(self).__name__} needs architecture {self.architecture!r}, got {config}")
        self.config = config
        atoms = F.normalize(torch.randn(config.d_sae, config.d_in), dim=1)
        self.W_dec = nn.Parameter(atoms)
        self.W_enc = nn.Parameter(atoms.T.clone())
        self.b_enc = nn.Parameter(torch.zeros(config.d_sae))
        self.b_dec = nn.Parameter(torch.zeros(config.d_in))

    # -- the forward pass -------------------------------------------------------------------------

    def check_input(self, x: object) -> torch.Tensor:
        """``x`` as a validated ``(B, d_in)`` floating tensor (clear errors otherwise)."""
        x = checks.require_tensor("x", x)
        checks.require_floating("x", x)
        if x.ndim != 2 or x.shape[1] != self.config.d_in:
            raise ValueError(f"x must have shape (B, d_in) = (B, {self.config.d_in}), got {tuple(x.shape)}")
        checks.require_non_empty("x", x, f"(B, {self.config.d_in})")
        return x

    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, d_sae)`` encoder output of raw inputs ``x (B, d_in)``."""
        return self._pre_activations_scaled(x * self.config.input_scale)

    def _pre_activations_scaled(self, x_in: torch.Tensor) -> torch.Tensor:
        return (x_in - self.b_dec) @ self.W_enc + self.b_enc

    def activate(self, pre: torch.Tensor) -> torch.Tensor:
        """``(B, d_sae)`` latents of pre-activations (architecture-specific)."""
        raise NotImplementedError

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, d_sae)`` latents of ``x (B, d_in)``."""
        return self.activate(self.pre_activations(self.check_input(x)))

    def decode_scaled(self, latents: torch.Tensor) -> torch.Tensor:
        """``(B, d_in)`` reconstruction in the scaled input space."""
        return latents @ self.W_dec + self.b_dec

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """``(B, d_in)`` reconstruction of ``latents (B, d_sae)``, in the input's scale."""
        return self.decode_scaled(latents) / self.config.input_scale

    def reconstruct(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(latents (B, d_sae), reconstruction (B, d_in))`` of ``x (B, d_in)``, without the losses."""
        latents = self.encode(x)
        return latents, self.decode(latents)

    def extra_losses(
        self, x_in: torch.Tensor, pre: torch.Tensor, latents: torch.Tensor, recon_in: torch.Tensor,
        dead_mask: torch.Tensor | None,
    ) -> dict[str, torch.Tensor]:  # fmt: skip
        """Sparsity and auxiliary loss terms by name (none by default)."""
        return {}

    def forward(self, x: torch.Tensor, dead_mask: torch.Tensor | None = None) -> SAEOutput:
        """Encode, decode and compute the losses of ``x (B, d_in)``.

        ``dead_mask (d_sae,)`` bool marks the latents the trainer counts as
        dead (used by the AuxK loss of TopK and BatchTopK).
        """
        x = self.check_input(x)
        x_in = x * self.config.input_scale
        pre = self._pre_activations_scaled(x_in)
        latents, recon_in, code = self.activate_and_decode(pre)
        losses = {"reconstruction": self.reconstruction_loss(recon_in, x_in)}
        losses.update(self.extra_losses(x_in, pre, latents, recon_in, dead_mask))
        return SAEOutput(recon_in / self.config.input_scale, latents, pre, losses, code)

    def activate_and_decode(
        self, pre: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, SparseEntries | None]:
        """Latents, scaled reconstruction and, when decoded from it, the sparse code.

        Latents with at most ``SPARSE_DECODE_MAX_DENSITY`` of their entries in
        ``gradient_support`` are decoded from those entries (``embedding_bag``,
        ``O(nnz d_in)`` both ways), others by the dense ``O(B d_sae d_in)``
        product; the gradients are the same.
        """
        latents = self.activate(pre)
        code = self._code_of(pre, latents, SPARSE_DECODE_MAX_DENSITY)
        if code is None:
            return latents, self.decode_scaled(latents), None
        starts = row_starts(code.rows, len(pre))
        return latents, decode_sparse(self.W_dec, self.b_dec, code.columns, code.values, starts), code

    def gradient_support(self, pre: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """``(B, d_sae)`` bool: the latent entries through which a gradient reaches the parameters.

        The nonzero latents by default (a zero of ReLU or of a top-k
        selection passes no gradient back).
        """
        return latents != 0

    def sparse_code(self, output: SAEOutput, max_density: float = 1.0) -> SparseEntries | None:
        """The latents of ``output`` as ``SparseEntries``, differentiable, for a sparse loss on them.

        Lists every entry whose gradient reaches the parameters (see
        ``gradient_support``), so a loss computed from these entries (e.g.
        ``mono_loss(code, x, num_latents=d_sae)``) trains the SAE exactly as
        the same loss on the dense latents.

        Parameters
        ----------
        output : SAEOutput
            A forward pass of this SAE.
        max_density : float
            Return None instead when the code would list more than this
            fraction of the ``B d_sae`` entries (a loss on the dense latents
            is then cheaper: an untrained ReLU SAE fires half its latents).
        """
        if output.code is None:
            return self._code_of(output.pre_activations, output.latents, max_density)
        return None if output.code.values.numel() > max_density * output.latents.numel() else output.code

    def _code_of(self, pre: torch.Tensor, latents: torch.Tensor, max_density: float) -> SparseEntries | None:
        rows, columns = self.gradient_support(pre, latents).nonzero(as_tuple=True)
        if len(rows) > max_density * latents.numel():
            return None
        flat = rows * latents.shape[1] + columns
        return SparseEntries(latents.reshape(-1)[flat], rows, columns, len(latents))

    def reconstruction_loss(self, recon_in: torch.Tensor, x_in: torch.Tensor) -> torch.Tensor:
        """``mse``: mean squared error per element; ``nmse``: per-sample error / mean squared input."""
        error = (recon_in - x_in).float().square()
        if self.config.reconstruction_loss == "mse":
            return error.mean()
        return (error.mean(dim=1) / x_in.float().square().mean(dim=1).clamp_min(1e-12)).mean()

    # -- the decoder constraint and initialisation ------------------------------------------------

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        """Rescale every atom (row of ``W_dec``) to unit norm."""
        self.W_dec.div_(torch.linalg.vector_norm(self.W_dec, dim=1, keepdim=True).clamp_min(1e-12))

    @torch.no_grad()
    def remove_parallel_gradient(self) -> None:
        """Remove from ``W_dec.grad`` each row's component along its (unit-norm) atom."""
        if self.W_dec.grad is not None:
            parallel = (self.W_dec.grad * self.W_dec).sum(dim=1, keepdim=True)
            self.W_dec.grad.sub_(parallel * self.W_dec)

    @torch.no_grad()
    def initialize_from_data(self, x: torch.Tensor, b_dec: str = "geometric_median") -> None:
        """Set ``b_dec`` from a data sample ``x (N, d_in)`` (raw inputs) and ``W_enc = W_decᵀ``.

        ``b_dec`` is ``"geometric_median"`` (Weiszfeld), ``"mean"`` or ``"zeros"``.
        """
        checks.require_choice("b_dec", b_dec, B_DEC_INITS)
        x = self.check_input(x) * self.config.input_scale
        checks.require_finite("x", x)
        if b_dec == "geometric_median":
            value = geometric_median(x)
        elif b_dec == "mean":
            value = x.double().mean(dim=0)
        else:
            value = torch.zeros(self.config.d_in)
        self.b_dec.copy_(value.to(self.b_dec))
        self.normalize_decoder()
        self.W_enc.copy_(self.W_dec.T)

    # -- saving and loading -----------------------------------------------------------------------

    def inference_state(self) -> dict[str, torch.Tensor]:
        """Tensors to save, with ``input_scale`` folded in (the saved SAE takes raw inputs)."""
        scale = self.config.input_scale
        state = {
            name: tensor.detach().float().cpu().contiguous() for name, tensor in self.state_dict().items()
        }
        state["W_enc"] = state["W_enc"] * scale
        state["b_dec"] = state["b_dec"] / scale
        state["W_dec"] = state["W_dec"] / scale
        return state

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``config.json`` and ``model.safetensors`` into ``directory``; return it.

        The weights file's metadata names the architecture (``sae/<name>``): a
        ``config.json`` edited to another one is refused on load.
        """
        config = SAEConfig.from_dict({**self.config.to_dict(), "input_scale": 1.0})
        return write_pretrained(directory, self.inference_state(), config.to_dict(), self.saved_architecture)

    def describe(self) -> dict:
        """What this SAE is, for records: ``format`` (harmono), ``architecture``, ``d_in``, ``d_sae``."""
        return {"format": "harmono", "architecture": self.config.architecture, "d_in": self.config.d_in,
                "d_sae": self.config.d_sae}  # fmt: skip

    @property
    def saved_architecture(self) -> str:
        """The architecture stored with the weights: ``sae/<architecture>``."""
        return f"sae/{self.config.architecture}"

    @staticmethod
    def from_pretrained(directory: str | Path, device: str | torch.device = "cpu") -> SAE:
        """The SAE saved in ``directory``, in eval mode (nothing is unpickled beyond plain data).

        ``directory`` is a folder written by ``save_pretrained``, or another library's SAE: a folder or
        file of one of the formats in ``harmono.sae.registry.FORMATS`` (SAELens, sparsify,
        dictionary_learning, saev, OpenAI), read as a ``harmono.sae.foreign.ForeignSAE`` that runs
        that library's forward pass.

        Raises
        ------
        FileNotFoundError
            ``directory`` is no SAE of any format, or a file of a harmono SAE is missing.
        ValueError
            A file is damaged, a config holds a field of the wrong type, or the weights do not fit it
            (another architecture, other tensors).
        """
        path = Path(directory)
        if not (path / PRETRAINED_WEIGHTS).is_file():
            for found in FORMATS.values():
                if found.recognizes(path):
                    return found.read(path).to(device).eval()
            raise FileNotFoundError(_not_an_sae(path))
        record, state, saved_architecture = read_pretrained(directory, "SAE")
        source = Path(directory) / PRETRAINED_CONFIG
        architecture = record.get("architecture")
        if architecture not in REGISTRY:
            raise ValueError(f"{source}: architecture must be one of {tuple(REGISTRY)}, got {architecture!r}")
        sae = REGISTRY[architecture](SAEConfig.from_dict(record, str(source)))
        load_fitting_state(sae, state, directory, sae.saved_architecture, saved_architecture)
        return sae.to(device).eval()
