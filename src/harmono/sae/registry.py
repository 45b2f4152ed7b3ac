"""The SAE architectures and the foreign SAE formats by name, each registered by the module that defines it.

``REGISTRY`` is the single source of the architecture names: ``SAEConfig`` checks against it,
``harmono.sae.ARCHITECTURES`` and the command line's choices are read from it, and loading a saved SAE
picks its class from it. ``FORMATS`` lists the other libraries' SAE files harmono reads
(:mod:`harmono.sae.foreign`); ``SAE.from_pretrained`` asks each whether a path is one of its own.
"""

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from torch import nn

REGISTRY: dict[str, type[nn.Module]] = {}
"""Architecture name -> SAE class, in the order the classes were defined."""


class ForeignFormat(NamedTuple):
    """How to recognise and read one library's saved SAEs."""

    files: str
    """What a saved SAE looks like on disk, for messages (e.g. ``"cfg.json + sae_weights.safetensors"``)."""
    recognizes: Callable[[Path], bool]
    """Whether a path (folder or file) is an SAE of this format; cheap, reads no tensors."""
    read: Callable[[Path], nn.Module]
    """The SAE at a path this format recognises."""


FORMATS: dict[str, ForeignFormat] = {}
"""Format name (the library) -> its reader, in the order they were registered."""
