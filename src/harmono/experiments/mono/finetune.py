"""Finetune a classifier with MonoLoss on its intermediate layer; resumable, DDP-ready.

The loss of a step is ``ce + mono_lambda * mono_loss(hidden, emb)``:

- ``ce``: cross-entropy of the head's logits (harmonic logits for the
  harmonic head, which makes it the harmonic loss), with optional label
  smoothing, mixup and CutMix;
- ``mono_loss(hidden, emb) = 1 - mean_k MS_k^(batch)`` over **all** units of
  the intermediate layer (the MonoLoss finetuning objective, which writes
  ``ce - lambda mean_k MS_k``: the same gradient), with the eps of
  ``harmono.mono``, so dead or constant units give finite gradients.

``emb`` is the reference embedding of each image: a frozen reference
encoder on the same augmented view, or rows of a feature store (see
``harmono.experiments.mono.finetune_reference``). The settings are a
``FinetuneConfig`` (``harmono.experiments.mono.finetune_config``); the
validation metrics come from ``finetune_eval.evaluate_classifier``.

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
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm.auto import tqdm

from harmono.core.device import resolve_device
from harmono.core.io import write_json_atomically
from harmono.data.augment import MixedBatch, crop_flip, mix_batch, step_rng
from harmono.data.image_batches import (
    SquareImages,
    epoch_order,
    load_batches,
    rank_batches,
    stratified_subset,
)
from harmono.data.images import ImageSet, load_image_dataset
from harmono.experiments.mono.finetune_config import FinetuneConfig
from harmono.experiments.mono.finetune_eval import RESULTS_FILE, evaluate_classifier
from harmono.experiments.mono.finetune_reference import build_references
from harmono.models.classifier import ClassifierConfig, MonoClassifier
from harmono.mono import mono_loss
from harmono.training.checkpoint import (
    load_checkpoint,
    prefixed,
    restore_training_state,
    save_training_state,
    unprefixed,
)
from harmono.training.runs import RUN_FILE, MetricLog, autocast_for, check_resumable, world

logger = logging.getLogger("harmono")
MODEL_DIR = "model"
"""The finetuned classifier of a finished run, in its run directory (``MonoClassifier.from_pretrained``)."""


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
def _weights(model: MonoClassifier, ema: dict[str, torch.Tensor] | None) -> Iterator[None]:
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


def _mixed_cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, mixed: MixedBatch, smoothing: float
) -> torch.Tensor:
    """CE of ``logits (B, C)``; for a mixed batch ``lam CE(labels) + (1 - lam) CE(other labels)``."""
    ce = F.cross_entropy(logits, labels, label_smoothing=smoothing)
    if mixed.lam < 1.0:
        other = F.cross_entropy(logits, mixed.other_labels, label_smoothing=smoothing)
        ce = mixed.lam * ce + (1.0 - mixed.lam) * other
    return ce


def _resume(
    out: Path,
    record: dict,
    model: MonoClassifier,
    ema: dict[str, torch.Tensor] | None,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
) -> int:
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
    train_reference, val_reference = build_references(
        model_config, config, data.train_ids, data.val_ids, model.image_size, device
    )
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


def _save(
    out: Path,
    step: int,
    model: MonoClassifier,
    ema: dict[str, torch.Tensor] | None,
    optimizer: torch.optim.Optimizer,
    rank: int,
) -> None:
    tensors = {**prefixed(model.state_dict(), "model"), **prefixed(ema or {}, "ema")}
    save_training_state(out / "checkpoints", step, optimizer, tensors, rank)
