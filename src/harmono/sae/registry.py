"""The SAE architectures by name: each ``SAE`` subclass with an ``architecture`` registers itself here.

The single source of the architecture names: ``SAEConfig`` checks against it, ``harmono.sae.ARCHITECTURES``
and the command line's choices are read from it, and loading a saved SAE picks its class from it.
"""

from torch import nn

REGISTRY: dict[str, type[nn.Module]] = {}
"""Architecture name -> SAE class, in the order the classes were defined."""
