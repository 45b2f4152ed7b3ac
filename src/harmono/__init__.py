"""harmono: interpretable models with harmonic loss and MonoLoss."""

from harmono.core.torchvision_shim import make_torchvision_importable

make_torchvision_importable()  # before torchmetrics, which imports torchvision when it is installed

from harmono.core.version import __version__  # noqa: E402
from harmono.harmonic import (  # noqa: E402
    HarmonicLinear,
    default_exponent,
    harmax,
    harmonic_logits,
    harmonic_loss,
)
from harmono.mono import (  # noqa: E402
    BatchMonoScores,
    ClassPurity,
    MonoScore,
    MonoSummary,
    PurityResult,
    SparseActivations,
    SparseEntries,
    batch_mono_scores,
    class_purity,
    mono_loss,
    mono_score,
    mono_score_pairwise,
    summarize,
)

__all__ = [
    "BatchMonoScores",
    "ClassPurity",
    "HarmonicLinear",
    "MonoScore",
    "MonoSummary",
    "PurityResult",
    "SparseActivations",
    "SparseEntries",
    "__version__",
    "default_exponent",
    "harmax",
    "harmonic_logits",
    "batch_mono_scores",
    "class_purity",
    "harmonic_loss",
    "mono_loss",
    "mono_score",
    "mono_score_pairwise",
    "summarize",
]
