"""harmono makes torchvision (and timm, open_clip) importable next to a CPU build of torch."""

import importlib.util
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("torchvision") is None, reason="torchvision is not installed"
)


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def test_torchvision_and_its_dependents_import_after_harmono():
    code = (
        "import harmono, torch, torchvision, torchvision.transforms.v2\n"
        "m = torchvision.models.resnet18(weights=None).eval()\n"
        "assert m(torch.zeros(1, 3, 32, 32)).shape == (1, 1000)\n"
        "import importlib.util\n"
        "for name in ('timm', 'open_clip'):\n"
        "    if importlib.util.find_spec(name): __import__(name)\n"
    )
    result = _run(code)
    assert result.returncode == 0, result.stderr


def test_shim_defines_nothing_when_torchvision_ops_exist():
    code = (
        "import torch\n"
        "lib = torch.library.Library('torchvision', 'DEF')\n"
        "for op in ('nms', 'qnms'):\n"
        "    lib.define(op + '(Tensor dets, Tensor scores, float iou_threshold) -> Tensor')\n"
        "from harmono.core import torchvision_shim as shim\n"
        "shim.make_torchvision_importable()\n"
        "assert shim._library is None\n"
    )
    result = _run(code)
    assert result.returncode == 0, result.stderr
