"""Finetune a classifier with MonoLoss on its intermediate layer; resumable, DDP-ready.

The loss of a step is ``ce + mono_lambda * mono_loss(hidden, emb)``:

- ``ce``: cross-entropy of the head's logits (harmonic logits for the
  harmonic head, which makes it the harmonic loss), with optional label
  smoothing, mixup and CutMix;
- ``mono_loss(hidden, emb) = 1 - mean_k MS_k^(batch)`` over **all** units of
  the intermediate layer (the MonoLoss finetuning objective, which writes
  ``ce - lambda mean_k MS_k``: the same gradient), with the eps of
  ``harmono.mono``, so dead or constant units give finite gradients.

``emb`` is the reference embedding of each image (see ``REFERENCES``):

- ``"encoder"`` (default): a frozen reference encoder (the pretrained
  backbone unless ``reference_backbone`` names another) run on the same
  augmented view the classifier sees;
- ``"store"``: rows of a feature store of the un-augmented images, looked up
  by sample id (the official code's way; with augmentation the embedding then
  describes another view of the image than the one scored).

Every ``log_every`` steps ``metrics.jsonl`` gets the step's ``ce``,
``mono_loss``, ``loss`` and ``accuracy``; after every epoch it gets the
validation accuracy, cross-entropy and the MonoScore of the intermediate
layer over the whole validation set (streaming ``MonoScore``, dataset-wide
min-max), under both dead-unit conventions. ``mono_loss`` is logged also at
``mono_lambda = 0``; it then has no effect on training.

Determinism and resume: the data order is a seeded permutation per epoch,
the augmentation parameters come from ``(seed, step)``, and checkpoints hold
the model, the optimizer, the EMA and the random state, so on the CPU a
resumed run ends with the weights an uninterrupted one ends with.

Distributed: under ``torchrun`` every rank takes its slice of each global
batch, ``DistributedDataParallel`` averages the gradients (MonoLoss is
computed per rank on the local batch, as the official code does), and the
validation metrics are reduced over ranks.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm.auto import tqdm

from harmono.core import checks
from harmono.core.device import resolve_device
from harmono.core.io import write_json_atomically
from harmono.data.augment import AUGMENTATIONS, MixedBatch, crop_flip, mix_batch, step_rng
from harmono.data.image_batches import (
    SquareImages,
    epoch_order,
    load_batches,
    rank_batches,
    stratified_subset,
)
from harmono.data.images import ImageSet, load_image_dataset
from harmono.encoders.backbones import load_backbone
from harmono.encoders.registry import Encoder
from harmono.features.store import FeatureStore
from harmono.models.classifier import ClassifierConfig, MonoClassifier
from harmono.mono import MonoScore, mono_loss, summarize
from harmono.training.checkpoint import (
    load_checkpoint,
    prefixed,
    restore_training_state,
    save_training_state,
    unprefixed,
)
from harmono.training.runs import PRECISIONS, RUN_FILE, MetricLog, autocast_for, check_resumable, world

logger = logging.getLogger("harmono")
OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("cosine", "constant", "step")
REFERENCES = ("encoder", "store")
RESULTS_FILE = "results.json"
MODEL_DIR = "model"


@dataclass(frozen=True)
class FinetuneConfig:
    """How to finetune (the network is a ``ClassifierConfig``). Defaults: the CPU recipe on Fashion-MNIST."""

    dataset: str = "fashion-mnist"
    """Training dataset: fashion-mnist, mnist, digits or folder:<path>."""
    train_split: str = "train"
    """Split of dataset to train on."""
    val_dataset: str = ""
    """Validation dataset (empty: dataset)."""
    val_split: str = "test"
    """Split of the validation dataset (the same split as training: a disjoint subset of it)."""
    train_size: int = 1600
    """Training images, a class-balanced subset (0: all)."""
    val_size: int = 1000
    """Validation images, a class-balanced subset (0: all)."""
    subset_seed: int = 0
    """Which images the subsets hold (fixed across the seeds of a sweep)."""
    epochs: int = 3
    """Passes over the training images."""
    batch_size: int = 64
    """Images per step, over all ranks."""
    optimizer: str = "adamw"
    """adamw, or sgd with momentum."""
    lr: float = 3e-4
    """Peak learning rate."""
    weight_decay: float = 0.05
    """Weight decay of the weight matrices and kernels (not of biases and norm parameters)."""
    momentum: float = 0.9
    """SGD momentum."""
    schedule: str = "cosine"
    """Learning rate after warmup: cosine to 0, constant, or step (times step_gamma every step_epochs)."""
    warmup_epochs: float = 0.0
    """Linear warmup from 0, in epochs."""
    step_epochs: int = 30
    """Epochs between decays of the step schedule."""
    step_gamma: float = 0.1
    """Factor of each decay of the step schedule."""
    label_smoothing: float = 0.0
    """Label smoothing of the cross-entropy."""
    augment: str = "crop-flip"
    """Training augmentation: crop-flip (random resized crop + horizontal flip), flip or none."""
    crop_scale: float = 0.35
    """Smallest random crop area, as a fraction of the image."""
    mixup_alpha: float = 0.0
    """Mixup Beta parameter (0: off)."""
    cutmix_alpha: float = 0.0
    """CutMix Beta parameter (0: off)."""
    mono_lambda: float = 0.0
    """Weight of MonoLoss on the intermediate layer (0: plain finetuning)."""
    reference: str = "encoder"
    """Reference embeddings: encoder (frozen, same augmented view) or store (un-augmented, by sample id)."""
    reference_backbone: str = ""
    """Reference encoder (empty: a frozen copy of the classifier's backbone as loaded, before finetuning)."""
    reference_source: str = ""
    """Checkpoint name or directory of a transformers reference encoder, or its open_clip architecture."""
    reference_store: str = ""
    """Feature store of the training images' reference embeddings (reference=store)."""
    reference_val_store: str = ""
    """Feature store of the validation images' reference embeddings (reference=store)."""
    grad_clip: float = 0.0
    """Gradient-norm clip (0: off)."""
    ema_decay: float = 0.0
    """Decay of an exponential moving average of the weights, evaluated and saved instead (0: off)."""
    precision: str = "auto"
    """auto (bf16 autocast on GPU, fp32 on CPU), fp32 or bf16."""
    seed: int = 0
    """Initialisation, data order and augmentation."""
    device: str = "auto"
    """auto (cuda when available; the local rank's GPU under torchrun), cpu, cuda, cuda:1, ..."""
    workers: int = 0
    """Data-loading worker processes."""
    eval_batch_size: int = 256
    """Images per validation batch, over all ranks."""
    checkpoint_every: int = 100
    """Steps between checkpoints (one is written after every epoch)."""
    log_every: int = 10
    """Steps between training metric records."""

    def __post_init__(self) -> None:
        checks.require_at_least(
            self,
            ("epochs", "batch_size", "eval_batch_size", "checkpoint_every", "log_every", "step_epochs"),
            1,
        )
        checks.require_at_least(self, ("train_size", "val_size", "workers", "subset_seed"), 0)
        checks.require_positive_number("lr", self.lr)
        for name in ("weight_decay", "momentum", "warmup_epochs", "mono_lambda", "grad_clip", "mixup_alpha",
                     "cutmix_alpha", "step_gamma"):  # fmt: skip
            checks.require_non_negative_number(name, getattr(self, name))
        for name in ("label_smoothing", "ema_decay"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must lie in [0, 1), got {getattr(self, name)}")
        if not 0 < self.crop_scale <= 1:
            raise ValueError(f"crop_scale must lie in (0, 1], got {self.crop_scale}")
        checks.require_choice("optimizer", self.optimizer, OPTIMIZERS)
        checks.require_choice("schedule", self.schedule, SCHEDULES)
        checks.require_choice("augment", self.augment, AUGMENTATIONS)
        checks.require_choice("reference", self.reference, REFERENCES)
        checks.require_choice("precision", self.precision, PRECISIONS)
        if self.reference == "store" and not (self.reference_store and self.reference_val_store):
            raise ValueError(
                "reference='store' needs reference_store and reference_val_store, got "
                f"{self.reference_store!r} and {self.reference_val_store!r}"
            )


@dataclass(frozen=True)
class FinetuneResult:
    """What a finetuning run produced."""

    model: MonoClassifier
    """The finetuned classifier (the EMA weights when ema_decay > 0), in eval mode."""
    steps: int
    """Steps of the whole run."""
    seconds: float
    """Wall time of this call."""
    metrics: dict
    """The last validation record (val_accuracy, val_ce, val_monoscore, ...)."""


@dataclass(frozen=True)
class _Data:
    train: SquareImages
    val: SquareImages
    train_ids: tuple[str, ...]
    val_ids: tuple[str, ...]
    num_classes: int


def _load_data(
    config: FinetuneConfig, side: int, train_set: ImageSet | None, val_set: ImageSet | None
) -> _Data:
    same = val_set is None and (config.val_dataset or config.dataset, config.val_split) == (
        config.dataset,
        config.train_split,
    )
    train_set = train_set or load_image_dataset(config.dataset, config.train_split)
    if val_set is None:
        val_set = (
            train_set if same else load_image_dataset(config.val_dataset or config.dataset, config.val_split)
        )
    if len(train_set.class_names) != len(val_set.class_names):
        raise ValueError(
            f"expected the same classes in training and validation, got {len(train_set.class_names)} "
            f"and {len(val_set.class_names)}"
        )
    train_idx = stratified_subset(train_set.labels, config.train_size, config.subset_seed)
    val_idx = stratified_subset(
        val_set.labels,
        config.val_size,
        config.subset_seed + 1,
        exclude=train_idx if val_set is train_set else None,
    )
    return _Data(
        SquareImages(train_set, train_idx, side),
        SquareImages(val_set, val_idx, side),
        tuple(train_set.ids[i] for i in train_idx),
        tuple(val_set.ids[i] for i in val_idx),
        len(train_set.class_names),
    )


class _StoreReference:
    """Reference embeddings looked up by sample id in a feature store."""

    def __init__(self, path: str, ids: tuple[str, ...]) -> None:
        store = FeatureStore(path, verify="shape")
        rows = {sample_id: row for row, sample_id in enumerate(store.ids)}
        missing = [sample_id for sample_id in ids if sample_id not in rows]
        if missing:
            raise ValueError(
                f"{path}: expected reference embeddings of every sample, {len(missing)} of {len(ids)} are "
                f"missing (e.g. {missing[0]!r})"
            )
        self.store, self.rows, self.dim = store, np.array([rows[i] for i in ids]), store.dim

    def __call__(self, pixels: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """``(B, E)`` rows of the samples at ``positions (B,)`` of the subset (``pixels`` unused)."""
        return torch.from_numpy(self.store.take(self.rows[positions.numpy()], np.float32)).to(pixels.device)


class _CachedReference:
    """A reference of fixed images (the un-augmented validation set): each position is embedded once."""

    def __init__(self, reference, size: int) -> None:
        self.reference, self.dim, self.size = reference, reference.dim, size
        self.rows: torch.Tensor | None = None
        self.filled = torch.zeros(size, dtype=torch.bool)

    def __call__(self, pixels: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """``(B, E)`` embeddings of the samples at ``positions (B,)``, computed the first time only."""
        if self.rows is None:
            self.rows = torch.zeros(self.size, self.dim, device=pixels.device)
        new = ~self.filled[positions]
        if new.any():
            self.rows[positions[new]] = self.reference(pixels[new.to(pixels.device)], positions[new])
            self.filled[positions[new]] = True
        return self.rows[positions]


class _EncoderReference:
    """A frozen reference encoder on the view the classifier sees (pixels in ``[0, 1]``)."""

    def __init__(self, encoder: Encoder, device: torch.device) -> None:
        self.encoder, self.dim = encoder, encoder.feature_dim
        encoder.model.to(device).eval().requires_grad_(False)
        encoder.features.to(device).eval()
        self.mean = torch.tensor(encoder.mean, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(encoder.std, device=device).view(1, 3, 1, 1)

    @torch.no_grad()
    def __call__(self, pixels: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """``(B, E)`` features of ``pixels (B, 3, S, S)`` in ``[0, 1]`` (``positions`` unused)."""
        side = self.encoder.image_size
        if pixels.shape[-1] != side:
            pixels = F.interpolate(
                pixels, size=(side, side), mode="bilinear", antialias=True, align_corners=False
            )
        return self.encoder.features((pixels - self.mean) / self.std).float()


def _reference_encoder(model_config: ClassifierConfig, config: FinetuneConfig, side: int) -> Encoder:
    if config.reference_backbone:
        return load_backbone(config.reference_backbone, "pretrained", config.reference_source, side)
    weights = model_config.backbone_weights
    return load_backbone(model_config.backbone, weights, model_config.backbone_source, side)


def _optimizer(model: torch.nn.Module, config: FinetuneConfig) -> torch.optim.Optimizer:
    decayed, plain = [], []
    for parameter in model.parameters():
        if parameter.requires_grad:
            (decayed if parameter.ndim >= 2 else plain).append(parameter)
    groups = [
        {"params": decayed, "weight_decay": config.weight_decay},
        {"params": plain, "weight_decay": 0.0},
    ]
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum)
    return torch.optim.AdamW(groups, lr=config.lr)


def lr_factor(config: FinetuneConfig, steps_per_epoch: int, total: int, step: int) -> float:
    """Learning rate of ``step`` (0-based) as a fraction of ``config.lr``."""
    warmup = round(config.warmup_epochs * steps_per_epoch)
    if step < warmup:
        return (step + 1) / warmup
    if config.schedule == "constant":
        return 1.0
    if config.schedule == "step":
        return config.step_gamma ** (step // (config.step_epochs * steps_per_epoch))
    progress = (step - warmup) / max(total - warmup, 1)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def _ema_update(ema: dict[str, torch.Tensor], model: MonoClassifier, decay: float) -> None:
    with torch.no_grad():
        for name, value in model.state_dict().items():
            if value.is_floating_point():
                ema[name].lerp_(value, 1.0 - decay)
            else:
                ema[name].copy_(value)


@contextlib.contextmanager
def _weights(model: MonoClassifier, ema: dict[str, torch.Tensor] | None):
    """Use the EMA weights inside the block (when there are), then restore the trained ones."""
    if ema is None:
        yield
        return
    trained = {name: value.clone() for name, value in model.state_dict().items()}
    model.load_state_dict(ema)
    try:
        yield
    finally:
        model.load_state_dict(trained)


def evaluate_classifier(
    model: MonoClassifier,
    data: SquareImages,
    reference,
    batch_size: int,
    device: torch.device,
    workers: int = 0,
    autocast=None,
) -> dict[str, float | int]:
    """Accuracy, cross-entropy and the MonoScore of the intermediate layer over ``data`` (all ranks together).

    ``reference(pixels in [0, 1] (B, 3, S, S), positions (B,)) -> (B, E)`` gives the reference embeddings
    and ``reference.dim`` is ``E``.
    ``batch_size`` counts the images of a batch over all ranks (each rank evaluates its slice).
    The MonoScore is the dataset-wide one (min-max over all of ``data``), summarised as the mean over units
    with a score, the mean with dead units as 0 (the MonoLoss evaluation) and the number of dead units.
    """
    rank, size = world()
    order = np.arange(len(data))
    metric = MonoScore(model.width, reference.dim, dead="nan").to(device)
    sums = torch.zeros(3, dtype=torch.float64, device=device)  # correct, summed ce, count
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for images, labels, positions in load_batches(
            data, rank_batches(order, batch_size, rank, size, False), workers
        ):
            pixels = images.to(device).float().div_(255.0)
            labels = labels.to(device)
            with autocast or contextlib.nullcontext():
                output = model(model.normalize(pixels))
            logits = output.logits.float()
            sums[0] += (logits.argmax(dim=1) == labels).sum()
            sums[1] += F.cross_entropy(logits, labels, reduction="sum").double()
            sums[2] += len(labels)
            metric.update(output.hidden.float(), reference(pixels, positions).to(device))
    model.train(was_training)
    if size > 1:
        dist.all_reduce(sums)
    summary = summarize(metric.compute())
    return {
        "val_accuracy": float(sums[0] / sums[2]),
        "val_ce": float(sums[1] / sums[2]),
        "val_monoscore": summary.mean_dead_as_zero,
        "val_monoscore_alive": summary.mean,
        "val_dead_units": summary.num_dead,
    }


def _references(model_config: ClassifierConfig, config: FinetuneConfig, data: _Data, side: int, device):
    """The training and the validation reference, ``f(pixels in [0, 1], positions) -> (B, E)``."""
    if config.reference == "encoder":
        encoder = _EncoderReference(_reference_encoder(model_config, config, side), device)
        return encoder, _CachedReference(encoder, len(data.val))
    train_reference = _StoreReference(config.reference_store, data.train_ids)
    val_reference = _StoreReference(config.reference_val_store, data.val_ids)
    if train_reference.dim != val_reference.dim:
        raise ValueError(
            f"expected reference stores of one dimension, got {train_reference.dim} and {val_reference.dim}"
        )
    return train_reference, val_reference


def _mixed_cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, mixed: MixedBatch, smoothing: float
) -> torch.Tensor:
    """CE of ``logits (B, C)``; for a mixed batch ``lam CE(labels) + (1 - lam) CE(other labels)``."""
    ce = F.cross_entropy(logits, labels, label_smoothing=smoothing)
    if mixed.lam < 1.0:
        other = F.cross_entropy(logits, mixed.other_labels, label_smoothing=smoothing)
        ce = mixed.lam * ce + (1.0 - mixed.lam) * other
    return ce


def _resume(out: Path, record: dict, model: MonoClassifier, ema: dict | None, optimizer, device) -> int:
    """Load the latest checkpoint of ``out`` into model, EMA, optimizer and RNG; return its step (0: none)."""
    saved = load_checkpoint(out / "checkpoints")
    if saved is None:
        return 0
    check_resumable(out, RUN_FILE, record, ("model", "train", "world_size"))
    model.load_state_dict(unprefixed(saved[0], "model"))
    if ema is not None:
        ema.update({name: value.to(device) for name, value in unprefixed(saved[0], "ema").items()})
    return restore_training_state(saved, optimizer)


def _run_record(model_config: ClassifierConfig, config: FinetuneConfig, data: _Data, size: int) -> dict:
    return {"model": asdict(model_config), "train": asdict(config), "world_size": size,
            "train_images": len(data.train), "val_images": len(data.val)}  # fmt: skip


def finetune(
    model_config: ClassifierConfig,
    config: FinetuneConfig,
    out: str | Path,
    *,
    train_set: ImageSet | None = None,
    val_set: ImageSet | None = None,
    progress: bool = True,
    stop_after_steps: int = 0,
) -> FinetuneResult:
    """Finetune ``MonoClassifier(model_config)`` into the run directory ``out`` (resumed from a checkpoint).

    Writes ``run.json`` (both configs), ``metrics.jsonl``, ``checkpoints/``
    and, at the end, ``results.json`` and ``model/``
    (``MonoClassifier.from_pretrained`` reads it).

    Parameters
    ----------
    model_config : ClassifierConfig
        The network; ``num_classes`` must match the dataset's.
    config : FinetuneConfig
    out : str or Path
        Run directory.
    train_set, val_set : ImageSet, optional
        Images to use instead of ``config.dataset`` / ``config.val_dataset``
        (the subsets of ``train_size`` and ``val_size`` are still taken).
    progress : bool
        Show a progress bar (rank 0).
    stop_after_steps : int
        Stop once this many steps of the run are done, after a checkpoint
        (0: run to the end); a later call resumes. For time-sliced jobs.
    """
    start = time.perf_counter()
    rank, size = world()
    if config.batch_size % size or config.eval_batch_size % size:
        raise ValueError(
            f"batch_size and eval_batch_size must be divisible by the world size {size}, "
            f"got {config.batch_size} and {config.eval_batch_size}"
        )
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    model = MonoClassifier(model_config)
    data = _load_data(config, model.image_size, train_set, val_set)
    if data.num_classes != model_config.num_classes:
        raise ValueError(
            f"expected num_classes = {data.num_classes} (the dataset's), got {model_config.num_classes}"
        )
    steps_per_epoch = len(data.train) // config.batch_size
    if steps_per_epoch == 0:
        raise ValueError(
            f"expected at least batch_size = {config.batch_size} training images, got {len(data.train)}"
        )
    total = config.epochs * steps_per_epoch
    model.to(device)
    train_reference, val_reference = _references(model_config, config, data, model.image_size, device)
    optimizer = _optimizer(model, config)
    ema = (
        {name: value.detach().clone() for name, value in model.state_dict().items()}
        if config.ema_decay
        else None
    )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    record = _run_record(model_config, config, data, size)
    step = _resume(out, record, model, ema, optimizer, device)
    if step:
        logger.info("%s: resumed at step %d of %d", out, step, total)
    elif rank == 0:
        write_json_atomically(out / RUN_FILE, record, indent=1)

    net = model
    if size > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    autocast = autocast_for(config.precision, device)
    log = MetricLog(out, step, tensorboard=False, active=rank == 0)
    bar = tqdm(total=total, initial=step, desc="finetune", disable=not progress or rank > 0)
    last_eval: dict = {}
    model.train()
    while step < total and not (stop_after_steps and step >= stop_after_steps):
        epoch, skip = divmod(step, steps_per_epoch)
        batches = rank_batches(
            epoch_order(len(data.train), config.seed, epoch), config.batch_size, rank, size, True
        )
        for images, labels, positions in load_batches(data.train, batches[skip:], config.workers):
            rng = step_rng(config.seed, step)
            pixels = images.to(device, non_blocking=True).float().div_(255.0)
            labels = labels.to(device, non_blocking=True)
            if config.augment != "none":
                pixels = crop_flip(pixels, rng, config.crop_scale, crop=config.augment == "crop-flip")
            mixed = mix_batch(pixels, labels, rng, config.mixup_alpha, config.cutmix_alpha)
            emb = train_reference(mixed.pixels, positions)
            for param_group in optimizer.param_groups:
                param_group["lr"] = config.lr * lr_factor(config, steps_per_epoch, total, step)
            with autocast:
                output = net(model.normalize(mixed.pixels))
            logits = output.logits.float()
            ce = _mixed_cross_entropy(logits, labels, mixed, config.label_smoothing)
            mono = mono_loss(output.hidden.float(), emb.to(device), average="all", validate=False)
            loss = ce + config.mono_lambda * mono
            if not torch.isfinite(loss.detach()):
                raise ValueError(
                    f"step {step}: expected a finite training loss, got {float(loss.detach())} "
                    f"(cross-entropy {float(ce.detach())}, mono_loss {float(mono.detach())}); lower the "
                    "learning rate or check the images and reference embeddings; the checkpoints written "
                    "so far are intact"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            if ema is not None:
                _ema_update(ema, model, config.ema_decay)
            step += 1
            bar.update(1)
            if step % config.log_every == 0 or step == total:
                accuracy = float((logits.argmax(dim=1) == labels).float().mean())
                entry = {"step": step, "epoch": epoch, "lr": optimizer.param_groups[0]["lr"],
                         "loss": float(loss.detach()), "ce": float(ce.detach()),
                         "mono_loss": float(mono.detach()), "accuracy": accuracy}  # fmt: skip
                log.write(entry)
                bar.set_postfix(
                    ce=f"{entry['ce']:.3f}", mono=f"{entry['mono_loss']:.3f}", acc=f"{accuracy:.2f}"
                )
            end_of_epoch = step % steps_per_epoch == 0
            if end_of_epoch:
                with _weights(model, ema):
                    last_eval = evaluate_classifier(
                        model,
                        data.val,
                        val_reference,
                        config.eval_batch_size,
                        device,
                        config.workers,
                        autocast,
                    )
                log.write({"step": step, "epoch": epoch + 1, **last_eval})
                logger.info("epoch %d: %s", epoch + 1, last_eval)
            if end_of_epoch or step % config.checkpoint_every == 0 or step == stop_after_steps:
                _save(out, step, model, ema, optimizer, rank)
            if step == stop_after_steps:
                break
    bar.close()
    log.close()
    if step < total:
        return FinetuneResult(model.eval(), total, time.perf_counter() - start, last_eval)
    if ema is not None:
        model.load_state_dict(ema)
    model.eval()
    if not last_eval:  # resumed after the last evaluation
        last_eval = evaluate_classifier(
            model, data.val, val_reference, config.eval_batch_size, device, config.workers, autocast
        )
    seconds = time.perf_counter() - start
    if rank == 0:
        model.save_pretrained(out / MODEL_DIR)
        results = {**last_eval, "steps": total, "seconds": seconds, "ema": bool(ema)}
        write_json_atomically(out / RESULTS_FILE, results, indent=1)
    if size > 1:
        dist.barrier()
    return FinetuneResult(model, total, seconds, last_eval)


def _save(out: Path, step: int, model: MonoClassifier, ema, optimizer, rank: int) -> None:
    tensors = {**prefixed(model.state_dict(), "model"), **prefixed(ema or {}, "ema")}
    save_training_state(out / "checkpoints", step, optimizer, tensors, rank)


def read_results(out: str | Path) -> dict | None:
    """``results.json`` of a finished run in ``out``, or None."""
    path = Path(out) / RESULTS_FILE
    return json.loads(path.read_text()) if path.is_file() else None
