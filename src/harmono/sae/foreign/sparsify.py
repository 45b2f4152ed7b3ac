"""sparsify (EleutherAI, PyPI ``eai-sparsify``) SAEs: per hookpoint a ``cfg.json`` and ``sae.safetensors``.

Tensors: ``encoder.weight (n, d_in)``, ``encoder.bias (n,)``, ``W_dec (n, d_in)``
(row i is latent i's atom), ``b_dec (d_in,)`` and, with ``skip_connection``,
``W_skip (d_in, d_in)``. The forward pass::

    pre = relu((x - b_dec) @ encoder.weightᵀ + encoder.bias)     no b_dec subtraction when transcode
    z   = topk(pre, k)  or  groupmax: the max of each of k contiguous groups of n / k latents
    x̂   = z @ W_dec + b_dec (+ x @ W_skipᵀ)

A transcoder predicts another activation than its input, so its R² against
the input means nothing; its latents can still be scored. A training run's
folder holds one SAE folder per hookpoint: pass one of them.
"""

from __future__ import annotations

from pathlib import Path

from harmono.core.io import read_json, read_safetensors
from harmono.sae.foreign.model import ForeignConfig, ForeignSAE
from harmono.sae.registry import FORMATS, ForeignFormat

CONFIG_FILE = "cfg.json"
WEIGHTS_FILE = "sae.safetensors"
RENAMES = {"encoder.weight": "W_enc", "encoder.bias": "b_enc", "W_dec": "W_dec", "b_dec": "b_dec",
           "W_skip": "W_skip"}  # fmt: skip
"""sparsify tensor name -> ``ForeignSAE`` name (``encoder.weight`` and ``W_skip`` are transposed)."""


def recognizes(path: Path) -> bool:
    """A folder holding ``cfg.json`` and ``sae.safetensors``."""
    return (path / CONFIG_FILE).is_file() and (path / WEIGHTS_FILE).is_file()


def read_sparsify(path: str | Path) -> ForeignSAE:
    """The sparsify SAE (or transcoder) saved in the hookpoint folder ``path``.

    Raises
    ------
    FileNotFoundError
        A file is missing.
    ValueError
        The config holds an activation harmono does not know, or the older ``signed`` option, or the
        tensors do not fit it.
    """
    path = Path(path)
    source = path / CONFIG_FILE
    config = read_json(source, "a sparsify SAE config", ("d_in",))
    if config.get("signed"):
        raise ValueError(
            f"{source}: a 'signed' sparsify SAE (top-k of |pre|, no ReLU; sparsify releases of mid-2024) "
            "is not supported: expected signed false"
        )
    activation = config.get("activation", "topk")
    if activation not in ("topk", "groupmax"):
        raise ValueError(f"{source}: expected activation 'topk' or 'groupmax', got {activation!r}")
    tensors, _ = read_safetensors(path / WEIGHTS_FILE)
    unknown = sorted(set(tensors) - set(RENAMES))
    if unknown:
        raise ValueError(f"{path / WEIGHTS_FILE}: expected the tensors {sorted(RENAMES)}, got also {unknown}")
    renamed = {RENAMES[name]: tensor.float() for name, tensor in tensors.items()}
    for name in ("W_enc", "W_skip"):
        if name in renamed:
            renamed[name] = renamed[name].T
    d_in = config["d_in"]
    d_sae = config.get("num_latents") or d_in * config.get("expansion_factor", 32)
    foreign = ForeignConfig(
        format="sparsify",
        architecture="transcoder" if config.get("transcode") else "sae",
        d_in=d_in,
        d_sae=d_sae,
        activation=activation,
        k=config.get("k", 32),
        subtract_b_dec=not config.get("transcode", False),
        source=str(path),
    )
    return ForeignSAE(foreign, renamed)


FORMATS["sparsify"] = ForeignFormat(f"<hookpoint>/{CONFIG_FILE} + {WEIGHTS_FILE}", recognizes, read_sparsify)
