"""dictionary_learning (saprmarks) SAEs: a trainer folder with ``ae.pt`` (a state dict) and ``config.json``.

``config.json`` names the class in ``trainer.dict_class``; the sizes come from
the tensors. ``A`` is ``activation_dim``, ``D`` ``dict_size``; ``relu`` and
``topk`` as in the library (ReLU before the top-k, strict ``>`` thresholds):

- ``AutoEncoder``: ``encoder.weight [D, A]``, ``encoder.bias``, ``decoder.weight [A, D]``,
  ``bias [A]``; ``z = relu(enc(x - bias))``.
- ``AutoEncoderNew``: the same with ``decoder.bias`` and no ``bias``; ``z = relu(enc(x))``.
- ``AutoEncoderTopK``: ``encoder.*``, ``decoder.weight``, ``b_dec``, scalars ``k`` and
  ``threshold``; ``z = topk(relu(enc(x - b_dec)), k)``.
- ``BatchTopKSAE``: the same tensors; ``z = p (p > threshold)``, ``p = relu(enc(x - b_dec))``.
- ``MatryoshkaBatchTopKSAE``: ``W_enc [A, D]``, ``b_enc``, ``W_dec [D, A]``, ``b_dec``, ``k``,
  ``threshold``, ``group_sizes``; as BatchTopK.
- ``JumpReluAutoEncoder``: ``W_enc``, ``b_enc``, ``W_dec``, ``b_dec``, ``threshold [D]``;
  ``z = relu(h) (h > threshold)``, ``h = x W_enc + b_enc`` (no ``b_dec`` subtracted).
- ``GatedAutoEncoder``: ``encoder.weight``, ``gate_bias``, ``mag_bias``, ``r_mag``,
  ``decoder.weight``, ``decoder_bias``; ``z = (h + gate_bias > 0) relu(exp(r_mag) h + mag_bias)``,
  ``h = enc(x - decoder_bias)``.

The reconstruction is ``z W_dec + b_dec`` (``decoder(z) + bias``). A trainer
run with ``normalize_activations`` divides the inputs by a norm factor while
training and, before saving, multiplies the biases (and thresholds) by it,
so the saved SAE takes raw activations: nothing more to undo here. As the
library's own loader does, an ``AutoEncoder`` gets unit-norm decoder columns
with the norms moved into the encoder (same reconstruction). BatchTopK runs
with its threshold, the library's inference default (a threshold of -1,
never estimated, leaves plain ReLU). ``ae.pt`` is a pickle: it is read with
``torch.load(weights_only=True)`` only.
"""

from __future__ import annotations

from pathlib import Path

import torch

from harmono.core.io import read_json, read_torch_pickle
from harmono.sae.foreign.model import ForeignConfig, ForeignSAE, fold_decoder_norms
from harmono.sae.registry import FORMATS, ForeignFormat

WEIGHTS_FILE = "ae.pt"
CONFIG_FILE = "config.json"
SAELENS_LIKE = ("W_enc", "b_enc", "W_dec", "b_dec")
"""Tensors some classes save under harmono's names and orientation."""
LINEAR = {"encoder.weight": ("W_enc", True), "encoder.bias": ("b_enc", False),
          "decoder.weight": ("W_dec", True)}  # fmt: skip
"""``nn.Linear`` tensors of the library -> ``ForeignSAE`` name, and whether to transpose."""
CLASSES = {
    "AutoEncoder": ({**LINEAR, "bias": ("b_dec", False)}, "relu"),
    "AutoEncoderNew": ({**LINEAR, "decoder.bias": ("b_dec", False)}, "relu"),
    "AutoEncoderTopK": ({**LINEAR, "b_dec": ("b_dec", False)}, "topk"),
    "BatchTopKSAE": ({**LINEAR, "b_dec": ("b_dec", False)}, "jumprelu"),
    "MatryoshkaBatchTopKSAE": ({name: (name, False) for name in SAELENS_LIKE}, "jumprelu"),
    "JumpReluAutoEncoder": ({name: (name, False) for name in (*SAELENS_LIKE, "threshold")}, "jumprelu"),
    "GatedAutoEncoder": (
        {
            "encoder.weight": ("W_enc", True),
            "decoder.weight": ("W_dec", True),
            "decoder_bias": ("b_dec", False),
            "gate_bias": ("b_gate", False),
            "mag_bias": ("b_mag", False),
            "r_mag": ("r_mag", False),
        },
        "gated",
    ),  # fmt: skip
}
"""dict_class -> (tensor renames, ``ForeignSAE`` activation)."""
SCALARS = {"AutoEncoderTopK": {"k", "threshold"}, "BatchTopKSAE": {"k", "threshold"},
           "MatryoshkaBatchTopKSAE": {"k", "threshold", "group_sizes"}}  # fmt: skip
"""dict_class -> its scalar buffers (``threshold`` is one number there, applied to every latent)."""


def _folder_and_file(path: Path) -> tuple[Path, Path]:
    return (path.parent, path) if path.is_file() else (path, path / WEIGHTS_FILE)


def recognizes(path: Path) -> bool:
    """``ae.pt`` with ``config.json`` beside it (the folder or the file)."""
    folder, weights = _folder_and_file(path)
    return weights.name == WEIGHTS_FILE and weights.is_file() and (folder / CONFIG_FILE).is_file()


def read_dictionary_learning(path: str | Path) -> ForeignSAE:
    """The dictionary_learning SAE of the trainer folder ``path`` (or its ``ae.pt``).

    Raises
    ------
    ValueError
        ``config.json`` names no known ``trainer.dict_class``, ``ae.pt`` is not a plain state dict
        (or is a training backup, whose biases are not yet scaled for raw inputs), or the tensors do not
        fit the class.
    """
    folder, weights = _folder_and_file(Path(path))
    source = folder / CONFIG_FILE
    trainer = read_json(source, "a dictionary_learning trainer config", ("trainer",), ("trainer",))["trainer"]
    dict_class = trainer.get("dict_class")
    if dict_class not in CLASSES:
        raise ValueError(f"{source}: expected trainer.dict_class in {sorted(CLASSES)}, got {dict_class!r}")
    state = read_torch_pickle(weights, "a dictionary_learning state dict")
    if isinstance(state, dict) and isinstance(state.get("ae"), dict):
        raise ValueError(
            f"{weights}: this is a training backup ({{'ae': ...}}), written before dictionary_learning "
            "scales the biases for raw activations: expected the final ae.pt of a finished trainer"
        )
    if not isinstance(state, dict):
        raise ValueError(f"{weights}: expected a state dict, got a {type(state).__name__}")
    renames, activation = CLASSES[dict_class]
    expected = set(renames) | SCALARS.get(dict_class, set())
    if set(state) != expected:
        raise ValueError(
            f"{weights}: expected the tensors of a {dict_class} ({sorted(expected)}), "
            f"got missing {sorted(expected - set(state))}, unexpected {sorted(set(state) - expected)}"
        )
    tensors = {}
    for name, (renamed, transpose) in renames.items():
        tensor = state[name].float()
        tensors[renamed] = tensor.T if transpose else tensor
    if dict_class == "AutoEncoder":
        fold_decoder_norms(tensors)  # as AutoEncoder.from_pretrained does
    d_in, d_sae = tensors["W_enc"].shape
    if dict_class in ("BatchTopKSAE", "MatryoshkaBatchTopKSAE"):
        tensors["threshold"] = torch.full((d_sae,), float(state["threshold"]))
    k = int(state["k"]) if "k" in state else 0
    foreign = ForeignConfig(
        format="dictionary_learning",
        architecture=dict_class,
        d_in=d_in,
        d_sae=d_sae,
        activation=activation,
        k=k if activation == "topk" else 0,
        subtract_b_dec=dict_class not in ("AutoEncoderNew", "JumpReluAutoEncoder"),
        source=str(weights),
    )
    return ForeignSAE(foreign, tensors)


FORMATS["dictionary_learning"] = ForeignFormat(
    f"{WEIGHTS_FILE} + {CONFIG_FILE} (trainer.dict_class)", recognizes, read_dictionary_learning
)
