"""Other libraries' SAEs: read (SAELens, sparsify, dictionary_learning, saev, OpenAI), written (SAELens).

Each module registers its format in ``harmono.sae.registry.FORMATS``, so
``SAE.from_pretrained(path)`` reads any of them; the result is a
``ForeignSAE`` that runs its library's own forward pass on raw inputs.
The ``.pt`` formats are pickles: harmono reads them with
``torch.load(weights_only=True)`` only, which builds tensors, numbers,
strings and containers and refuses anything else without running it.
"""

from harmono.sae.foreign.model import ForeignConfig, ForeignSAE
from harmono.sae.foreign.saelens import read_saelens, write_saelens

# isort: split
# The order of FORMATS is the order of recognition: OpenAI's reader takes any .pt file the others did not.
from harmono.sae.foreign.sparsify import read_sparsify

from harmono.sae.foreign.dictionary_learning import read_dictionary_learning  # isort: skip
from harmono.sae.foreign.saev import read_saev  # isort: skip
from harmono.sae.foreign.openai import read_openai  # isort: skip

__all__ = [
    "ForeignConfig",
    "ForeignSAE",
    "read_dictionary_learning",
    "read_openai",
    "read_saelens",
    "read_saev",
    "read_sparsify",
    "write_saelens",
]
