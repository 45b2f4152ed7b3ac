import sys
from pathlib import Path

# the float64 reference formulas live beside the tests
sys.path.insert(0, str(Path(__file__).parent))


def pytest_collection_modifyitems(config, items):
    """Skip the tests marked ``gpu`` when no CUDA GPU is present, saying so."""
    import pytest
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (none here); benchmarks/gpu_check.sh runs these on one")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
