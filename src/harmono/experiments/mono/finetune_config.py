"""The settings of a MonoLoss finetuning run (``FinetuneConfig``) and the choices they take.

The network itself is a ``harmono.models.classifier.ClassifierConfig``;
``harmono.experiments.mono.finetune.finetune`` runs both.
"""

from __future__ import annotations

from dataclasses import dataclass

from harmono.core import checks
from harmono.data.augment import AUGMENTATIONS
from harmono.training.runs import PRECISIONS

OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("cosine", "constant", "step")
REFERENCES = ("encoder", "store")
"""Sources of MonoLoss's reference embeddings (see ``harmono.experiments.mono.finetune_reference``)."""


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
