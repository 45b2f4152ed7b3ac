"""Make ``torchvision`` (and so ``timm`` and ``open_clip``) importable next to a CPU build of torch.

The only torchvision release that matches ``torch==2.13.0`` is a CUDA build
whose compiled operators cannot load with the CPU torch. Its import then
fails with ``operator torchvision::nms does not exist``, because
``torchvision/_meta_registrations.py`` registers fake kernels for operators
that were never defined, and every package importing torchvision fails with
it (``timm``, ``open_clip``, ``transformers`` image processing).

``make_torchvision_importable`` defines the schemas of the two operators that
the import touches (``nms``, ``qnms``) when, and only when, torchvision is
installed, not yet imported, and its compiled library does not load. The
models, transforms and datasets then work; the compiled detection operators
(``torchvision.ops.nms``, ``roi_align``) still do not, and harmono needs none.
Where torchvision's library loads (a matching CUDA or CPU build) nothing is
defined.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch

_library: torch.library.Library | None = None


def _defined(op: str) -> bool:
    try:
        getattr(torch.ops.torchvision, op)
    except (AttributeError, RuntimeError):
        return False
    return True


def make_torchvision_importable() -> None:
    """Define ``torchvision::nms`` and ``torchvision::qnms`` if torchvision's compiled ops cannot load."""
    global _library
    if _library is not None or "torchvision" in sys.modules or _defined("nms"):
        return
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return
    compiled = sorted(Path(spec.submodule_search_locations[0]).glob("_C.*"))
    if compiled:
        try:
            torch.ops.load_library(str(compiled[0]))
            return
        except OSError:
            pass
    _library = torch.library.Library("torchvision", "DEF")
    _library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _library.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
