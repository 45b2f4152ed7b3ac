"""OpenAI ``sparse_autoencoder`` checkpoints: one ``{layer}.pt`` state dict per autoencoder.

The file holds ``pre_bias (d,)``, ``latent_bias (n,)``, ``encoder.weight (n, d)``
(no encoder bias), ``decoder.weight (d, n)``, three statistics buffers, and
two plain entries: ``activation`` (``"TopK"``, ``"ReLU"`` or ``"Identity"``)
and ``activation_state_dict`` (TopK: ``k`` and ``postact_fn``). TopK
autoencoders normalise their input (OpenAI's library decides this from the
activation name)::

    x', μ, σ = (x - μ) / (σ + 1e-5)        σ the unbiased standard deviation of the row
    z        = relu(topk((x' - pre_bias) @ encoder.weightᵀ + latent_bias, k))
    x̂        = (z @ decoder.weightᵀ + pre_bias) σ + μ

It is a pickle: it is read with ``torch.load(weights_only=True)`` only.
"""

from __future__ import annotations

from pathlib import Path

from harmono.core.io import read_torch_pickle
from harmono.sae.foreign.model import ForeignConfig, ForeignSAE
from harmono.sae.registry import FORMATS, ForeignFormat

TENSORS = ("pre_bias", "latent_bias", "encoder.weight", "decoder.weight")
IGNORED = ("stats_last_nonzero", "latents_activation_frequency", "latents_mean_square")
"""Training statistics the forward pass does not use."""
POSTACT = {"ReLU": True, "Identity": False}
"""TopK's ``postact_fn`` -> whether the kept values pass through ReLU."""


def recognizes(path: Path) -> bool:
    """Any other ``.pt`` file: the reader checks its keys (the other ``.pt`` formats are recognised first)."""
    return path.is_file() and path.suffix == ".pt"


def read_openai(path: str | Path) -> ForeignSAE:
    """The OpenAI sparse autoencoder in the state-dict file ``path``.

    Raises
    ------
    ValueError
        The file is not a plain state dict (nothing is unpickled beyond tensors, numbers, strings and
        containers), lacks one of ``TENSORS``, or names an activation OpenAI's library does not have.
    """
    path = Path(path)
    state = read_torch_pickle(path, "an OpenAI sparse autoencoder state dict")
    if not isinstance(state, dict) or any(name not in state for name in TENSORS):
        found = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise ValueError(
            f"{path}: expected an OpenAI sparse autoencoder with the tensors {list(TENSORS)}, got {found}"
        )
    activation = state.get("activation", "ReLU")
    settings = dict(state.get("activation_state_dict") or {})
    if activation not in ("TopK", "ReLU", "Identity"):
        raise ValueError(f"{path}: expected activation 'TopK', 'ReLU' or 'Identity', got {activation!r}")
    postact = settings.get("postact_fn", "ReLU")
    if activation == "TopK" and postact not in POSTACT:
        raise ValueError(f"{path}: expected a TopK postact_fn in {sorted(POSTACT)}, got {postact!r}")
    encoder, decoder = state["encoder.weight"].float(), state["decoder.weight"].float()
    tensors = {"W_enc": encoder.T, "b_enc": state["latent_bias"].float(), "W_dec": decoder.T,
               "b_dec": state["pre_bias"].float()}  # fmt: skip
    k = settings.get("k", 0)
    foreign = ForeignConfig(
        format="openai",
        architecture=activation,
        d_in=encoder.shape[1],
        d_sae=encoder.shape[0],
        activation={"TopK": "topk", "ReLU": "relu", "Identity": "identity"}[activation],
        k=int(k) if activation == "TopK" else 0,
        topk_relu=POSTACT.get(postact, True),
        input_norm="layer_norm" if activation == "TopK" else "none",
        source=str(path),
    )
    return ForeignSAE(foreign, tensors)


FORMATS["openai"] = ForeignFormat("{layer}.pt (a state dict)", recognizes, read_openai)
