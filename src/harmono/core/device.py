"""The device a command runs on when the user says ``auto``."""

from __future__ import annotations

import torch
import torch.distributed as dist


def resolve_device(name: str) -> torch.device:
    """``name`` as a device; ``"auto"``: CUDA if available (the local rank's GPU under torchrun), else CPU."""
    if name != "auto":
        return torch.device(name)
    if not torch.cuda.is_available():
        return torch.device("cpu")
    rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
    return torch.device("cuda", rank % torch.cuda.device_count())
