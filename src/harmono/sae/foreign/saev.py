"""saev (OSU-NLP-Group) SAEs: ``sae.pt``, one JSON header line followed by a ``torch.save`` state dict.

The header is ``{"schema": 5, "cfg": {"d_model", "d_sae", "activation": {"cls", "params": {"top_k"}}, ...}}``
in current saev; older files have ``d_vit`` for ``d_model`` and ``exp_factor``
for ``d_sae / d_model``, and the oldest (no ``schema``) are the ``cfg``
itself, ReLU only. Tensors ``W_enc (d, d_sae)``, ``b_enc``, ``W_dec (d_sae, d)``,
``b_dec``; BatchTopK adds the scalar ``activation.threshold``. The forward
pass, in eval mode::

    h = x @ W_enc + b_enc          (x - b_dec) for files of schema 1 or none, written before saev
                                   stopped subtracting b_dec (July 2025)
    z = relu(h)                    Relu
        top-k of h                 TopK, without ReLU: a kept value may be negative
        h (h > threshold)          BatchTopK; relu(h) when threshold <= 0
    x̂ = z @ W_dec + b_dec

saev stores no input normalisation; its old data loader scaled inputs by a
mean and a scalar it computed itself, which such a file's user must apply to
the store. The state dict is read with ``torch.load(weights_only=True)`` only.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from harmono.core.io import read_torch_pickle
from harmono.sae.foreign.model import ForeignConfig, ForeignSAE
from harmono.sae.registry import FORMATS, ForeignFormat

WEIGHTS_FILE = "sae.pt"
MAX_HEADER = 1 << 20
"""Bytes read at most for the header line."""
ACTIVATIONS = ("Relu", "TopK", "BatchTopK")


def _file(path: Path) -> Path:
    return path / WEIGHTS_FILE if path.is_dir() else path


def _header(path: Path) -> tuple[dict, int] | None:
    """``(header, its length with the newline)``, or None when the file does not start with a JSON line."""
    with path.open("rb") as handle:
        line = handle.readline(MAX_HEADER)
    if not line.startswith(b"{") or not line.endswith(b"\n"):
        return None
    try:
        header = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return (header, len(line)) if isinstance(header, dict) else None


def recognizes(path: Path) -> bool:
    """A ``.pt`` file (or a folder with ``sae.pt``) whose first line is a JSON object."""
    file = _file(path)
    return file.is_file() and file.suffix == ".pt" and _header(file) is not None


def _config(header: dict, source: Path) -> tuple[dict, str, dict, bool]:
    """``(cfg, activation class, its params, subtract b_dec)`` of any header schema."""
    schema = header.get("schema")
    cfg = dict(header["cfg"]) if schema is not None and isinstance(header.get("cfg"), dict) else dict(header)
    if "d_vit" in cfg:
        cfg["d_model"] = cfg.pop("d_vit")
    if "d_model" not in cfg:
        raise ValueError(
            f"{source}: expected a saev header whose cfg has d_model (or d_vit), got {sorted(cfg)}"
        )
    if "d_sae" not in cfg:
        if "exp_factor" not in cfg:
            raise ValueError(f"{source}: expected a saev header with d_sae or exp_factor, got {sorted(cfg)}")
        cfg["d_sae"] = int(cfg["d_model"] * cfg["exp_factor"])
    activation = cfg.get("activation")
    if isinstance(activation, dict):
        cls, params = activation.get("cls"), dict(activation.get("params") or {})
    else:
        cls = {"TopKConfig": "TopK", "BatchTopKConfig": "BatchTopK"}.get(header.get("cls", ""), "Relu")
        params = {"top_k": cfg["top_k"]} if "top_k" in cfg else {}
    if cls not in ACTIVATIONS:
        raise ValueError(f"{source}: expected a saev activation in {list(ACTIVATIONS)}, got {cls!r}")
    return cfg, cls, params, schema is None or schema == 1


def read_saev(path: str | Path) -> ForeignSAE:
    """The saev SAE in ``path`` (``sae.pt`` or a folder holding it).

    Raises
    ------
    ValueError
        The header is not a JSON line of a known schema, the state dict is not plain tensors, or the
        tensors do not fit the header.
    """
    file = _file(Path(path))
    if not file.is_file():
        raise FileNotFoundError(f"expected a saev checkpoint at {file}, found no file")
    found = _header(file)
    if found is None:
        raise ValueError(
            f"{file}: expected a saev checkpoint (a JSON header line, then a state dict), got no header"
        )
    header, start = found
    cfg, cls, params, subtract = _config(header, file)
    state = read_torch_pickle(file, "a saev state dict", start=start)
    if not isinstance(state, dict):
        raise ValueError(f"{file}: expected a state dict after the header, got a {type(state).__name__}")
    tensors = {name: tensor.float() for name, tensor in state.items() if name != "activation.threshold"}
    activation, k = "relu", 0
    if cls == "TopK":
        activation, k = "topk", min(int(params.get("top_k", 0)), int(cfg["d_sae"]))
    if cls == "BatchTopK":
        if "activation.threshold" not in state:
            raise ValueError(
                f"{file}: a BatchTopK SAE without activation.threshold (saev before November 2025) has no "
                "inference rule: expected the threshold in the state dict"
            )
        threshold = float(state["activation.threshold"])
        if threshold > 0:
            activation = "jumprelu"
            tensors["threshold"] = torch.full((int(cfg["d_sae"]),), threshold)
    foreign = ForeignConfig(
        format="saev",
        architecture=cls,
        d_in=int(cfg["d_model"]),
        d_sae=int(cfg["d_sae"]),
        activation=activation,
        k=k,
        topk_relu=False,
        subtract_b_dec=subtract,
        source=str(file),
    )
    return ForeignSAE(foreign, tensors)


FORMATS["saev"] = ForeignFormat(
    f"{WEIGHTS_FILE} (a JSON header line, then a state dict)", recognizes, read_saev
)
