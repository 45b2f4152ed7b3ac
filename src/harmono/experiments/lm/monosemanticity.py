"""Is a harmonic-loss language model more monosemantic? MonoScore of a GPT's MLP neurons and of SAEs on them.

For one trained GPT (a ``harmono gpt train`` run) and each chosen block:

1. the MLP hidden activations (``mlp.L``) of the corpus' train split (for the
   SAEs) and val split (for every measure) go into token stores;
2. each token's context (16 tokens) is embedded by all-MiniLM-L6-v2: the
   meaning MonoScore compares (shared by every model on the same corpus);
3. MonoScore of the MLP neurons themselves, on the val tokens, against the
   contexts and against token identity (how much a unit fires on one token);
4. two TopK SAEs on the train tokens, the same ``d_sae`` and ``k``, without
   and with MonoLoss; each evaluated on the val tokens (MonoScore, R², L0,
   dead fraction) and spliced into the model (CE loss recovered, KL).

Every step resumes from what its folder holds; ``measure_model`` returns the
record that goes into ``results/lm/`` (one file per model).

The image companion: for a finished ``harmono finetune`` run (a Fashion-MNIST
classifier with a cross-entropy or a harmonic head), ``classifier_record``
takes the MonoScore of its penultimate units, which the finetuning measured
on the val set against the frozen encoder's embeddings, into the same table.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from harmono.core import checks
from harmono.core.device import resolve_device
from harmono.core.provenance import provenance
from harmono.features import FeatureStore
from harmono.features.context_embeddings import embed_token_contexts
from harmono.features.store_format import MANIFEST
from harmono.features.token_activations import TokenExtractConfig, extract_token_activations
from harmono.mono import MonoScore, summarize
from harmono.mono.token_identity import TokenIdentityMonoScore
from harmono.sae import SAE, SAEConfig
from harmono.sae.evaluate import evaluate_sae
from harmono.sae.lm_evaluate import evaluate_in_model
from harmono.sae.train import TrainConfig, train_sae


@dataclass(frozen=True)
class LMMonoConfig:
    """The protocol of the experiment (recorded with every result)."""

    layers: tuple[int, ...] = (1, 3)
    """Blocks whose MLP is measured (the middle and the last of the 4-block CPU recipe)."""
    context: int = 128
    """Tokens per context the GPT reads."""
    train_tokens: int = 16384
    """Token activations the SAEs train on (train split)."""
    val_tokens: int = 8192
    """Token activations every measure uses (val split)."""
    window: int = 16
    """Tokens of context embedded for each token."""
    d_sae: int = 4096
    """SAE latents (4x the MLP width of the CPU recipe)."""
    k: int = 32
    """Active latents per token."""
    epochs: int = 4
    """SAE training epochs over the train tokens."""
    batch_size: int = 256
    """SAE training batch."""
    lr: float = 1e-3
    """SAE learning rate."""
    mono_coef: float = 0.09
    """MonoLoss weight of the second SAE (the Fashion-MNIST TopK setting; not tuned for text)."""
    ce_contexts: int = 64
    """Held-out val contexts for CE loss recovered (after the val tokens the measures use)."""
    device: str = "auto"
    """Where the GPT, the SAEs and the sentence encoder run: auto (a GPU if any), cpu, cuda, ..."""

    def __post_init__(self) -> None:
        layers = self.layers
        if isinstance(layers, (list, tuple)) and layers and all(type(layer) is int for layer in layers):
            object.__setattr__(self, "layers", tuple(layers))  # a recipe's JSON list
        else:
            raise ValueError(f"layers must be a non-empty list of block indices, got {layers!r}")
        checks.require_at_least(self, ("context", "train_tokens", "val_tokens", "window", "d_sae", "k",
                                       "epochs", "batch_size", "ce_contexts"), 1)  # fmt: skip
        if self.k > self.d_sae:
            raise ValueError(f"k must be <= d_sae = {self.d_sae}, got {self.k}")


def _stores(lm, corpus, out: Path, layer: int, config: LMMonoConfig, progress: bool) -> dict[str, Path]:
    paths = {}
    for split, count in (("train", config.train_tokens), ("val", config.val_tokens)):
        extract = TokenExtractConfig(hook=f"mlp.{layer}", context=config.context, skip_first=1,
                                     max_tokens=count, device=config.device)  # fmt: skip
        paths[split] = out / f"mlp{layer}-{split}"
        metadata = {
            "model": lm.name,
            "tokens": f"{corpus.directory} {split}",
            "tokenizer": str(Path(lm.tokenizer).resolve()),
        }
        extract_token_activations(lm.model, corpus.splits[split], paths[split], extract, metadata,
                                  corpus.meta.get("end_of_text"), progress)  # fmt: skip
    return paths


def _contexts(store: Path, tokens: np.ndarray, corpus, lm, out: Path, config: LMMonoConfig, progress: bool):
    """The context embeddings of ``store``'s rows in ``out`` (resumed; shared by the models of one corpus)."""
    from tokenizers import Tokenizer

    from harmono.encoders.sentence import MINILM_NAME, SentenceEmbedder

    if (out / MANIFEST).is_file() and FeatureStore(out).ids == FeatureStore(store).ids:
        return FeatureStore(out)  # complete: read only, so several models can share it at once
    decode = Tokenizer.from_file(str(lm.tokenizer)).decode
    end = corpus.meta.get("end_of_text")
    embedder = SentenceEmbedder(device=resolve_device(config.device))
    embed_token_contexts(store, tokens, decode, embedder.embed, out, config.window, end,
                         {"embedder": MINILM_NAME}, progress=progress)  # fmt: skip
    return FeatureStore(out)


@torch.no_grad()
def neuron_monoscore(
    store: FeatureStore, embeddings: FeatureStore, batch_size: int = 4096
) -> tuple[dict, dict]:
    """``(against the embeddings, against token identity)``: MonoScore summaries of the store's dimensions.

    The embeddings are row-aligned with ``store``; the token of a row is its label.
    """
    metric = MonoScore(store.dim, embeddings.dim, dead="nan")
    tokens = TokenIdentityMonoScore(store.dim)
    for begin in range(0, len(store), batch_size):
        rows = np.arange(begin, min(begin + batch_size, len(store)))
        acts, emb = (torch.from_numpy(s.take(rows, "float32")) for s in (store, embeddings))
        metric.update(acts, emb)
        tokens.update(acts, torch.from_numpy(np.asarray(store.labels[rows], dtype=np.int64)))
    return summarize(metric.compute()).as_dict(), summarize(tokens.compute()).as_dict()


def measure_model(gpt_run: str | Path, corpus_dir: str | Path, out: str | Path, seed: int = 0,
                  config: LMMonoConfig = LMMonoConfig(), shared: str | Path | None = None,
                  progress: bool = True) -> dict:  # fmt: skip
    """Run the experiment for the GPT of ``gpt_run``; its record (see the module notes).

    Parameters
    ----------
    gpt_run : str or Path
        A ``harmono gpt train`` run folder (or its ``model/``).
    corpus_dir : str or Path
        The prepared corpus it was trained on.
    out : str or Path
        This model's working folder (stores, SAE runs); resumed.
    seed : int
        Seed of the SAEs.
    config : LMMonoConfig
    shared : str or Path, optional
        Folder for the context embeddings, shared by the models of one corpus (default: ``out``).
    progress : bool
        Show progress bars.
    """
    from harmono.data.text import TokenCorpus
    from harmono.models.causal_lm import load_causal_lm

    out, shared = Path(out), Path(shared or out)
    lm = load_causal_lm(gpt_run)
    corpus = TokenCorpus.open(corpus_dir)
    record: dict = {"model": lm.name.split(" ")[0], "run": Path(gpt_run).name, "sae_seed": seed,
                    "protocol": asdict(config), "provenance": provenance(), "layers": {}}  # fmt: skip
    for layer in tqdm(config.layers, desc="layers", disable=not progress):
        stores = _stores(lm, corpus, out, layer, config, progress)
        embeddings = {}
        for split, count in (("train", config.train_tokens), ("val", config.val_tokens)):
            folder = shared / f"contexts-{split}-{config.context}-{count}"
            embeddings[split] = _contexts(
                stores[split], corpus.splits[split], corpus, lm, folder, config, progress
            )
        train, val = FeatureStore(stores["train"]), FeatureStore(stores["val"])
        contexts, tokens = neuron_monoscore(val, embeddings["val"])
        measured = {"neurons": contexts, "neurons_tokens": tokens}
        held_out = np.asarray(corpus.splits["val"][config.val_tokens * 2 :])  # beyond the val store's tokens
        for name, coef in (("sae", 0.0), ("sae_mono", config.mono_coef)):
            run = out / f"mlp{layer}-{name}"
            sae_config = SAEConfig("topk", d_in=train.dim, d_sae=config.d_sae, k=config.k)
            train_config = TrainConfig(epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
                                       mono_coef=coef, seed=seed, device=config.device)  # fmt: skip
            if not (run / "sae" / "config.json").is_file():
                train_sae(
                    sae_config, train_config, train, run, embeddings=embeddings["train"], progress=progress
                )
            sae = SAE.from_pretrained(run / "sae")
            evaluation = evaluate_sae(
                sae, val, embeddings=embeddings["val"], progress=progress, token_identity=True
            )
            spliced = evaluate_in_model(sae, lm.model, lm.logits, held_out, f"mlp.{layer}", config.context,
                                        config.ce_contexts, progress=progress)  # fmt: skip
            measured[name] = {**evaluation.as_dict(), "lm": spliced.as_dict()}
        record["layers"][str(layer)] = measured
    return record


def is_classifier_run(run: str | Path) -> bool:
    """Whether ``run`` is a ``harmono finetune`` run (its ``run.json`` names a backbone), not a GPT run."""
    import json

    from harmono.training.runs import RUN_FILE

    path = Path(run) / RUN_FILE
    try:
        record = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        return False
    return (
        isinstance(record, dict) and isinstance(record.get("model"), dict) and "backbone" in record["model"]
    )


def classifier_record(run: str | Path) -> dict:
    """The record of a finished ``harmono finetune`` run: MonoScore of its penultimate units, by head.

    Raises
    ------
    FileNotFoundError
        The run has no ``results.json`` (it did not finish).
    """
    from harmono.core.io import read_json
    from harmono.experiments.mono.finetune_eval import RESULTS_FILE
    from harmono.training.runs import RUN_FILE

    run = Path(run)
    results = read_json(run / RESULTS_FILE, "a finished finetune run's results", ("val_monoscore_alive",))
    setup = read_json(run / RUN_FILE, "a finetune run record", ("model",), ("model", "train"))
    model = setup["model"]
    head = "cross-entropy" if model.get("head") == "linear" else model.get("head")
    units = {"mean": results["val_monoscore_alive"], "mean_dead_as_zero": results["val_monoscore"],
             "num_dead": results["val_dead_units"], "val_accuracy": results["val_accuracy"]}  # fmt: skip
    return {"model": f"{model.get('backbone')} classifier, {head} head", "run": run.name,
            "protocol": {"model": model, "train": setup.get("train", {})}, "provenance": provenance(),
            "layers": {"penultimate": {"neurons": units}}}  # fmt: skip
