"""A causal language model from a local folder: harmono's GPT or a Hugging Face ``transformers`` model.

Nothing is downloaded: a Hugging Face folder (``config.json`` with a
``model_type``, the weights, and usually ``tokenizer.json``) is read with
``local_files_only=True``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from harmono.core.io import PRETRAINED_CONFIG
from harmono.models.gpt import GPT

TOKENIZER_FILE = "tokenizer.json"


@dataclass
class CausalLM:
    """A loaded causal LM and what is known about it."""

    model: nn.Module
    """Takes token ids ``(B, T)``; in eval mode."""
    name: str
    """``harmono-gpt/<head>`` or the Hugging Face ``model_type``, and the folder."""
    context: int
    """The longest input it takes, in tokens."""
    tokenizer: Path | None
    """Its ``tokenizer.json``, when the folder has one."""
    end_of_text: int | None
    """The token that ends a document, when known."""

    def logits(self, idx: torch.Tensor) -> torch.Tensor:
        """``(B, T, V)`` next-token logits at every position of token ids ``idx (B, T)``."""
        if isinstance(self.model, GPT):
            return self.model.logits(self.model.hidden(idx))
        return self.model(idx).logits


def _model_folder(path: Path) -> Path:
    """``path``, or its ``model/`` when it is a ``harmono gpt train`` run folder."""
    return path / "model" if (path / "model" / PRETRAINED_CONFIG).is_file() else path


def load_causal_lm(path: str | Path) -> CausalLM:
    """The causal LM saved in the folder ``path`` (a harmono GPT, its run folder, or a Hugging Face folder).

    Raises
    ------
    FileNotFoundError
        ``path`` holds no ``config.json``.
    ModuleNotFoundError
        A Hugging Face folder without ``transformers`` installed.
    """
    folder = _model_folder(Path(path))
    config_file = folder / PRETRAINED_CONFIG
    if not config_file.is_file():
        raise FileNotFoundError(
            f"{path}: expected a causal LM folder (a harmono GPT, its run folder, or a Hugging Face model), "
            f"found no {PRETRAINED_CONFIG}"
        )
    tokenizer = folder / TOKENIZER_FILE if (folder / TOKENIZER_FILE).is_file() else None
    record = json.loads(config_file.read_text())
    if isinstance(record, dict) and "model_type" in record:
        return _huggingface(folder, record, tokenizer)
    gpt = GPT.from_pretrained(folder)
    end = _end_of_text(tokenizer)
    return CausalLM(gpt, f"harmono-gpt/{gpt.config.head} {folder}", gpt.config.block_size, tokenizer, end)


def _huggingface(folder: Path, record: dict, tokenizer: Path | None) -> CausalLM:
    from harmono.core.torchvision_shim import make_torchvision_importable

    make_torchvision_importable()
    try:
        from transformers import AutoModelForCausalLM
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(
            f"{folder} is a Hugging Face model: reading it needs transformers (pip install harmono[encoders])"
        ) from err
    model = AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True).eval()
    context = int(record.get("max_position_embeddings") or record.get("n_positions") or 1024)
    end = record.get("eos_token_id")
    end = end if isinstance(end, int) else _end_of_text(tokenizer)
    return CausalLM(model, f"{record['model_type']} {folder}", context, tokenizer, end)


def _end_of_text(tokenizer: Path | None) -> int | None:
    if tokenizer is None:
        return None
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(tokenizer)).token_to_id("<|endoftext|>")
