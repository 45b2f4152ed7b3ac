"""SAELens folders: ``cfg.json`` + ``sae_weights.safetensors`` (+ ``sparsity.safetensors``), read and written.

Read (SAELens v6 and the pre-6 configs it still loads): the architectures
``standard`` (ReLU), ``topk``, ``jumprelu`` (also how SAELens saves its
BatchTopK and Matryoshka SAEs, with one threshold repeated per latent) and
``gated``; ``normalize_activations`` ``none``, ``expected_average_only_in``
and ``covariance_whitening`` (both identity once saved: SAELens folds them
into the weights), ``constant_norm_rescale`` and ``layer_norm`` (applied at
run time, as SAELens does). Tensors ``W_enc (d_in, d_sae)``, ``b_enc``,
``W_dec (d_sae, d_in)``, ``b_dec``; jumprelu ``threshold``; gated ``b_gate``,
``b_mag``, ``r_mag`` instead of ``b_enc``. A topk SAE saved with
``rescale_acts_by_decoder_norm`` and decoder rows not of unit norm has the
norms folded in on load, which gives SAELens's reconstruction and latents.

Written (``write_saelens``): harmono's TopK as ``topk``, BatchTopK as
``jumprelu`` with its inference threshold for every latent (as SAELens saves
its own), JumpReLU as ``jumprelu`` and ReLU as ``standard``, with
``metadata`` from the feature store the SAE was trained on. An SAE trained on
L2-normalised rows is written with ``constant_norm_rescale`` and the factor
``sqrt(d_in)`` folded into its weights, so the SAELens SAE takes the store's
raw rows and returns its reconstruction in their scale.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from harmono.core.io import read_json, read_safetensors, write_atomically, write_json_atomically
from harmono.core.version import __version__
from harmono.sae.base import SAE
from harmono.sae.foreign.model import ForeignConfig, ForeignSAE, fold_decoder_norms
from harmono.sae.registry import FORMATS, ForeignFormat

CONFIG_FILE = "cfg.json"
WEIGHTS_FILE = "sae_weights.safetensors"
SPARSITY_FILE = "sparsity.safetensors"
ACTIVATIONS = {"standard": "relu", "topk": "topk", "jumprelu": "jumprelu", "gated": "gated"}
"""SAELens inference architecture -> the activation of ``ForeignSAE``."""
NORMS = {
    "none": "none",
    "expected_average_only_in": "none",
    "covariance_whitening": "none",
    "constant_norm_rescale": "constant_norm_rescale",
    "layer_norm": "layer_norm",
}
"""SAELens ``normalize_activations`` -> ``ForeignConfig.input_norm`` (at inference)."""
WRITTEN_VERSION = "6.0.0"
"""The SAELens version written into ``metadata.sae_lens_version``: it makes SAELens read the v6 layout."""
PRE_6_RENAMES = {"hook_point": "hook_name", "hook_point_head_index": "hook_head_index",
                 "activation_fn_str": "activation_fn"}  # fmt: skip


def recognizes(path: Path) -> bool:
    """A folder holding ``cfg.json`` and ``sae_weights.safetensors``."""
    return (path / CONFIG_FILE).is_file() and (path / WEIGHTS_FILE).is_file()


def _major_version(config: dict) -> int:
    version = config.get("sae_lens_version") or (config.get("metadata") or {}).get("sae_lens_version")
    try:
        return int(str(version).split(".")[0])
    except ValueError:
        return 0


def upgrade_pre_6(config: dict) -> dict:
    """A pre-6.0 SAELens config in v6 terms: renamed keys, topk from ``activation_fn_kwargs.k``, defaults."""
    config = {PRE_6_RENAMES.get(key, key): value for key, value in config.items()}
    config.setdefault("architecture", "standard")
    config.setdefault("apply_b_dec_to_input", True)
    if config.get("activation_fn", "relu") == "topk" and "k" in (config.get("activation_fn_kwargs") or {}):
        config["architecture"] = "topk"
        config["k"] = config["activation_fn_kwargs"]["k"]
    normalize = config.get("normalize_activations")
    if isinstance(normalize, bool) or normalize is None:
        config["normalize_activations"] = "expected_average_only_in" if normalize else "none"
    return config


def read_saelens(path: str | Path) -> ForeignSAE:
    """The SAELens SAE saved in the folder ``path``, with SAELens's inference forward pass.

    Raises
    ------
    FileNotFoundError
        ``cfg.json`` or ``sae_weights.safetensors`` is missing.
    ValueError
        The config lacks ``d_in``/``d_sae`` or names an architecture or normalisation harmono cannot
        run (a transcoder, a training checkpoint), or the tensors do not fit it.
    """
    path = Path(path)
    source = path / CONFIG_FILE
    config = read_json(source, "a SAELens SAE config", ("d_in", "d_sae"), ("metadata",))
    if _major_version(config) < 6:
        config = upgrade_pre_6(config)
    architecture = config.get("architecture", "standard")
    if architecture not in ACTIVATIONS:
        raise ValueError(
            f"{source}: expected a SAELens SAE of the architectures {sorted(ACTIVATIONS)} (as SAELens saves "
            f"them for inference), got {architecture!r}"
        )
    normalize = config.get("normalize_activations", "none")
    if normalize not in NORMS:
        raise ValueError(f"{source}: expected normalize_activations in {sorted(NORMS)}, got {normalize!r}")
    tensors, _ = read_safetensors(path / WEIGHTS_FILE)
    tensors = {name: tensor.float() for name, tensor in tensors.items()}
    if architecture == "topk" and config.get("rescale_acts_by_decoder_norm") and "W_dec" in tensors:
        norms = torch.linalg.vector_norm(tensors["W_dec"], dim=1)
        if not torch.allclose(norms, torch.ones_like(norms)):
            fold_decoder_norms(tensors)
    foreign = ForeignConfig(
        format="saelens",
        architecture=architecture,
        d_in=_integer(config, "d_in", source),
        d_sae=_integer(config, "d_sae", source),
        activation=ACTIVATIONS[architecture],
        k=_integer(config, "k", source) if architecture == "topk" else 0,
        subtract_b_dec=bool(config.get("apply_b_dec_to_input", True)),
        input_norm=NORMS[normalize],
        source=str(path),
    )
    return ForeignSAE(foreign, tensors)


def _integer(config: dict, key: str, source: Path) -> int:
    value = config.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{source}: expected {key!r} to be an integer, got {value!r}")
    return value


def saelens_state(sae: SAE, l2_normalized: bool) -> tuple[str, dict[str, torch.Tensor]]:
    """``(SAELens architecture, tensors)`` of a harmono SAE (its ``input_scale`` folded in).

    With ``l2_normalized`` (the SAE was trained on unit rows) the factor ``sqrt(d_in)`` of SAELens's
    ``constant_norm_rescale`` is folded in, so the SAELens SAE computes the same latents.
    """
    architecture = sae.config.architecture
    state = sae.inference_state()
    if architecture == "batchtopk":
        threshold = float(state.pop("threshold"))
        if threshold < 0:
            raise ValueError(
                "this BatchTopK SAE has no inference threshold yet (it never trained a step), so SAELens "
                "could not run it: expected a trained SAE"
            )
        state["threshold"] = torch.full((sae.config.d_sae,), threshold)
    if architecture == "jumprelu":
        state["threshold"] = state["threshold"].clamp_min(0)
    if l2_normalized:
        root = sae.config.d_in**0.5
        state["W_enc"] = state["W_enc"] / root
        state["b_dec"] = state["b_dec"] * root
        state["W_dec"] = state["W_dec"] * root
    saved = {"topk": "topk", "batchtopk": "jumprelu", "jumprelu": "jumprelu", "relu": "standard"}
    return saved[architecture], state


def write_saelens(
    sae: SAE,
    out: str | Path,
    metadata: dict | None = None,
    l2_normalized: bool = False,
    overwrite: bool = False,
) -> Path:
    """Write ``sae`` as a SAELens v6 folder ``out`` that ``sae_lens.SAE.load_from_disk`` reads.

    Parameters
    ----------
    sae : SAE
        A harmono TopK, BatchTopK, JumpReLU or ReLU SAE.
    out : str or Path
        The folder; it must not hold a ``cfg.json`` already unless ``overwrite``.
    metadata : dict, optional
        SAELens ``metadata`` entries (``model_name``, ``hook_name``, ``dataset_path``, ...).
    l2_normalized : bool
        The SAE was trained on L2-normalised rows: write ``constant_norm_rescale`` (see the module notes).
    overwrite : bool
        Replace the files of an SAE already in ``out``.

    Returns
    -------
    Path
        ``out``.
    """
    from safetensors.torch import save

    out = Path(out)
    if (out / CONFIG_FILE).exists() and not overwrite:
        raise FileExistsError(
            f"{out} holds a SAELens SAE already ({CONFIG_FILE}): pass overwrite to replace it"
        )
    architecture, state = saelens_state(sae, l2_normalized)
    config = {
        "architecture": architecture,
        "d_in": sae.config.d_in,
        "d_sae": sae.config.d_sae,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": True,
        "normalize_activations": "constant_norm_rescale" if l2_normalized else "none",
        "reshape_activations": "none",
        "metadata": {**(metadata or {}), "sae_lens_version": WRITTEN_VERSION, "harmono_version": __version__},
    }
    if architecture == "topk":
        config.update(k=sae.config.k, rescale_acts_by_decoder_norm=False)
    json.dumps(config)  # a value JSON cannot hold fails before anything is written
    out.mkdir(parents=True, exist_ok=True)
    blob = save({name: tensor.contiguous() for name, tensor in state.items()})
    write_atomically(out / WEIGHTS_FILE, lambda handle: handle.write(blob))
    write_json_atomically(out / CONFIG_FILE, config, indent=1)
    return out


FORMATS["saelens"] = ForeignFormat(f"{CONFIG_FILE} + {WEIGHTS_FILE}", recognizes, read_saelens)
