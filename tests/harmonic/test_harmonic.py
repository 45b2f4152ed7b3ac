import math
import zlib

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch.utils._python_dispatch import TorchDispatchMode

import harmono
from harmono import HarmonicLinear, harmax, harmonic_logits, harmonic_loss
from harmono.harmonic import functional as harmonic_module
from naive_harmonic import naive_harmax, naive_harmonic_loss

RTOL = 1e-5


def rel_err(value: torch.Tensor, reference: torch.Tensor) -> float:
    """Norm-wise relative error of a float32 result against a float64 reference."""
    return ((value.double() - reference).norm() / reference.norm().clamp_min(1e-300)).item()


def random_problem(seed, lead_shape, dim, num_classes, ignore_every=0, ignore_index=-100):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(*lead_shape, dim, generator=gen)
    centers = torch.randn(num_classes, dim, generator=gen)
    target = torch.randint(0, num_classes, lead_shape, generator=gen)
    if ignore_every:
        flat = target.view(-1)
        flat[::ignore_every] = ignore_index
    return x, centers, target


def loss_and_grads(fn, x, centers, target, seed=0):
    """Value and gradients of ``sum(loss * w)`` for a fixed random ``w`` (for "none")."""
    x = x.detach().clone().requires_grad_()
    centers = centers.detach().clone().requires_grad_()
    loss = fn(x, centers, target)
    weights = torch.randn(loss.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    grad_x, grad_c = torch.autograd.grad((loss * weights.to(loss.dtype)).sum(), (x, centers))
    return loss.detach(), grad_x, grad_c


def assert_matches_reference(ours, reference, x, centers, target):
    """``ours`` on float32 inputs equals ``reference`` on float64 ones: loss, grad x, grad centers."""
    got = loss_and_grads(ours, x, centers, target)
    want = loss_and_grads(reference, x.double(), centers.double(), target)
    for name, value, expected in zip(("loss", "grad x", "grad centers"), got, want, strict=True):
        assert rel_err(value, expected) < RTOL, name
    return got[0], want[0]


# --------------------------------------------------------------------------- values and gradients

SHAPES = [((7,), 3, 2), ((3, 5), 16, 13), ((2, 3, 4), 33, 7)]
EXPONENTS = [1.0, 2.5, 8.0, 28.0, 64.0]


@pytest.mark.parametrize("lead_shape,dim,num_classes", SHAPES)
@pytest.mark.parametrize("exponent", EXPONENTS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("chunk_size", [None, 3])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_loss_and_gradients_match_float64_formula(
    lead_shape, dim, num_classes, exponent, reduction, chunk_size, label_smoothing
):
    seed = zlib.crc32(repr((lead_shape, dim, exponent, reduction)).encode())
    x, centers, target = random_problem(seed, lead_shape, dim, num_classes, ignore_every=4, ignore_index=-7)
    kwargs = dict(reduction=reduction, ignore_index=-7, label_smoothing=label_smoothing)

    value, ref_value = assert_matches_reference(
        lambda a, c, t: harmonic_loss(a, c, t, exponent, chunk_size=chunk_size, eps=0.0, **kwargs),
        lambda a, c, t: naive_harmonic_loss(a, c, t, exponent, **kwargs),
        x,
        centers,
        target,
    )
    assert value.dtype == torch.float32 and value.shape == ref_value.shape == (
        lead_shape if reduction == "none" else ()
    )


@pytest.mark.parametrize("exponent", [1.0, 7.0, 40.0])
def test_logits_are_minus_n_log_distance_and_harmax_is_the_formula(exponent):
    x, centers, _ = random_problem(1, (4, 6), 10, 9)
    distances = (x.double().unsqueeze(-2) - centers.double()).norm(dim=-1)
    logits = harmonic_logits(x, centers, exponent, eps=0.0)
    assert logits.shape == (4, 6, 9)
    assert rel_err(logits, -exponent * distances.log()) < RTOL
    probs = harmax(x, centers, exponent, eps=0.0)
    assert rel_err(probs, naive_harmax(x, centers, exponent)) < RTOL
    torch.testing.assert_close(probs.sum(-1), torch.ones(4, 6))


def test_default_exponent_is_sqrt_dim():
    x, centers, target = random_problem(2, (5,), 49, 4)
    assert harmono.default_exponent(49) == 7.0
    torch.testing.assert_close(harmonic_logits(x, centers), harmonic_logits(x, centers, 7.0))
    assert HarmonicLinear(49, 3).exponent == 7.0


@pytest.mark.parametrize("chunk_size", [None, 2])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_cosine_distance_matches_its_formula(chunk_size, reduction):
    x, centers, target = random_problem(3, (9,), 12, 5)
    target[1] = -100
    eps = 1e-3
    assert_matches_reference(
        lambda a, c, t: harmonic_loss(
            a, c, t, 6.0, distance="cosine", eps=eps, chunk_size=chunk_size, reduction=reduction
        ),
        lambda a, c, t: naive_harmonic_loss(a, c, t, 6.0, distance="cosine", eps=eps, reduction=reduction),
        x,
        centers,
        target,
    )
    distances = 1 - F.cosine_similarity(x.unsqueeze(1).double(), centers.double(), dim=-1)
    logits = harmonic_logits(x, centers, 6.0, eps, distance="cosine")
    assert rel_err(logits, -6.0 * (distances + eps).log()) < RTOL


def test_all_targets_ignored_matches_cross_entropy():
    x, centers, _ = random_problem(4, (6,), 5, 3)
    target = torch.full((6,), -100)
    for chunk_size in (None, 4):
        xg = x.clone().requires_grad_()
        loss = harmonic_loss(xg, centers, target, chunk_size=chunk_size)
        loss.backward()
        assert math.isnan(loss.item())  # as F.cross_entropy: 0 / 0
        assert torch.equal(xg.grad, torch.zeros_like(x))


def test_automatic_choice_chunks_large_logits(monkeypatch):
    x, centers, target = random_problem(5, (40,), 4, 30)
    expected = harmonic_loss(x, centers, target)
    assert record_largest_tensor(lambda: harmonic_loss(x, centers, target)) == 40 * 30
    monkeypatch.setattr(harmonic_module, "AUTO_CHUNK_BYTES", 40 * 30 * 4 // 5)
    assert harmonic_module._auto_chunk_rows(40, 30, 4) == 8
    assert record_largest_tensor(lambda: harmonic_loss(x, centers, target)) == 8 * 30
    torch.testing.assert_close(harmonic_loss(x, centers, target), expected, rtol=1e-6, atol=0)


# --------------------------------------------------------------------------- memory of the chunked path


class LargestTensor(TorchDispatchMode):
    """Records the largest tensor any ATen op produces (autograd's own ops included)."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def record_largest_tensor(fn) -> int:
    with LargestTensor() as mode:
        fn()
    return mode.largest


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_chunked_path_never_materialises_full_logits(reduction):
    rows, dim, vocab, chunk = 64, 4, 1000, 8
    x, centers, target = random_problem(6, (rows,), dim, vocab)
    x.requires_grad_()
    centers.requires_grad_()

    def step(chunk_size):
        loss = harmonic_loss(x, centers, target, chunk_size=chunk_size, reduction=reduction)
        loss.sum().backward()

    assert record_largest_tensor(lambda: step(chunk)) <= chunk * vocab
    # one chunk of all rows does hold (rows, vocab): the probe can see it
    assert record_largest_tensor(lambda: step(rows)) >= rows * vocab


# --------------------------------------------------------------------------- scale invariance


@pytest.mark.parametrize("scale", [1e-3, 0.5, 7.0, 1e3])
def test_harmax_is_invariant_to_scaling_all_distances(scale):
    x, centers, _ = random_problem(7, (11,), 5, 6)
    base = harmax(x, centers, 3.0, eps=0.0)
    scaled = harmax(scale * x, scale * centers, 3.0, eps=0.0)
    torch.testing.assert_close(scaled, base, rtol=1e-5, atol=1e-7)
    # and a translation of everything moves no distance
    shifted = harmax(x + 4.0, centers + 4.0, 3.0, eps=0.0)
    torch.testing.assert_close(shifted, base, rtol=1e-4, atol=1e-6)


# --------------------------------------------------------------------------- numerics at the edges


@pytest.mark.parametrize("chunk_size", [None, 2])
@pytest.mark.parametrize("exponent", [1.0, 64.0])
def test_point_exactly_on_a_center_is_finite(chunk_size, exponent):
    centers = torch.randn(5, 16, generator=torch.Generator().manual_seed(13))
    x = centers[[0, 3, 3, 1]].clone().requires_grad_()
    c = centers.clone().requires_grad_()
    target = torch.tensor([0, 3, 3, 1])
    loss = harmonic_loss(x, c, target, exponent, chunk_size=chunk_size)
    loss.backward()
    assert torch.isfinite(loss) and loss.item() < 0.05  # d_target ~ sqrt(eps): p_target ~ 1
    assert torch.isfinite(x.grad).all() and torch.isfinite(c.grad).all()
    logits = harmonic_logits(x, c, exponent)
    assert torch.isfinite(logits).all()
    assert torch.equal(logits.argmax(-1), target)
    # with eps = 0 too: the distance is floored at the smallest normal number
    assert torch.isfinite(harmonic_logits(x, c, exponent, eps=0.0)).all()
    assert torch.isfinite(harmax(x, c, exponent, eps=0.0)).all()


@pytest.mark.parametrize("chunk_size", [None, 2])
@pytest.mark.parametrize("eps", [0.0, 1e-6])
def test_point_exactly_on_another_center_has_finite_gradients(chunk_size, eps):
    """x sits on a center that is not its target: the largest 1/d^2 meets a zero difference."""
    centers = torch.randn(5, 8, generator=torch.Generator().manual_seed(21)).requires_grad_()
    x = centers.detach()[[2, 4, 0]].clone().requires_grad_()
    target = torch.tensor([1, 4, 3])
    loss = harmonic_loss(x, centers, target, 64.0, eps=eps, chunk_size=chunk_size)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(x.grad).all() and torch.isfinite(centers.grad).all()


@pytest.mark.parametrize("chunk_size", [None, 16])
def test_large_exponent_and_width_are_finite(chunk_size):
    dim, num_classes = 4096, 40
    gen = torch.Generator().manual_seed(8)
    centers = torch.randn(num_classes, dim, generator=gen).requires_grad_()
    x = (centers.detach()[:32] + 0.01 * torch.randn(32, dim, generator=gen)).requires_grad_()
    x.data[0] = centers.data[5]  # one point exactly on a center
    target = torch.arange(32) % num_classes
    loss = harmonic_loss(x, centers, target, 64.0, chunk_size=chunk_size)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(x.grad).all() and torch.isfinite(centers.grad).all()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("chunk_size", [None, 4])
def test_half_precision_inputs_use_float32_distances(dtype, chunk_size):
    x, centers, target = random_problem(9, (12,), 64, 10)
    x_half = (10 + x).to(dtype).requires_grad_()  # a large common offset: cancellation-prone
    c_half = (10 + centers).to(dtype).requires_grad_()
    loss = harmonic_loss(x_half, c_half, target, chunk_size=chunk_size)
    loss.backward()
    assert loss.dtype == torch.float32
    assert x_half.grad.dtype == dtype and c_half.grad.dtype == dtype
    assert torch.isfinite(x_half.grad.float()).all() and torch.isfinite(c_half.grad.float()).all()
    reference = naive_harmonic_loss(x_half.detach(), c_half.detach(), target, 8.0)
    assert rel_err(loss.detach(), reference) < RTOL
    logits = harmonic_logits(x_half, c_half)
    assert logits.dtype == torch.float32


@pytest.mark.parametrize("amp_dtype", [torch.bfloat16, torch.float16])
def test_autocast_keeps_distances_in_float32(amp_dtype):
    torch.manual_seed(10)
    body = torch.nn.Linear(8, 32)
    head = HarmonicLinear(32, 6)
    inputs = torch.randn(20, 8)
    target = torch.randint(0, 6, (20,))
    with torch.autocast("cpu", dtype=amp_dtype):
        features = body(inputs)
        assert features.dtype == amp_dtype
        logits = head(features)
        loss = F.cross_entropy(logits, target)
        chunked = head.loss(features, target, chunk_size=3)
    assert logits.dtype == torch.float32
    (loss + chunked).backward()
    assert torch.isfinite(head.weight.grad).all() and torch.isfinite(body.weight.grad).all()
    reference = naive_harmonic_loss(features.detach(), head.weight.detach(), target, head.exponent, eps=1e-6)
    assert rel_err(chunked.detach(), reference) < RTOL


# --------------------------------------------------------------------------- HarmonicLinear


def test_harmonic_linear_is_a_drop_in_head():
    torch.manual_seed(11)
    head = HarmonicLinear(12, 7, exponent=3.0)
    assert head.centers is head.weight and head.centers.shape == (7, 12)
    x = torch.randn(4, 5, 12)
    target = torch.randint(0, 7, (4, 5))
    logits = head(x)
    assert logits.shape == (4, 5, 7)
    via_module = torch.nn.CrossEntropyLoss()(logits.reshape(-1, 7), target.reshape(-1))
    torch.testing.assert_close(via_module, head.loss(x, target))
    torch.testing.assert_close(via_module, head.loss(x, target, chunk_size=6))
    reference = naive_harmonic_loss(x, head.weight.detach(), target, 3.0, eps=1e-6)
    assert rel_err(via_module.detach(), reference) < RTOL
    assert "exponent=3" in repr(head)


def test_harmonic_linear_ties_to_an_embedding():
    embedding = torch.nn.Embedding(11, 6)
    head = HarmonicLinear(6, 11)
    head.weight = embedding.weight
    tokens = torch.randint(0, 11, (3, 4))
    loss = head.loss(embedding(tokens), tokens)
    loss.backward()
    assert embedding.weight.grad is not None and torch.isfinite(embedding.weight.grad).all()


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_harmonic_linear_state_round_trips_through_safetensors(tmp_path, distance):
    head = HarmonicLinear(9, 4, distance=distance)
    save_file(head.state_dict(), tmp_path / "head.safetensors")
    other = HarmonicLinear(9, 4, distance=distance)
    other.load_state_dict(load_file(tmp_path / "head.safetensors"))
    x = torch.randn(3, 9)
    torch.testing.assert_close(other(x), head(x), rtol=0, atol=0)


def test_harmonic_linear_learns_a_separable_problem():
    torch.manual_seed(12)
    means = torch.randn(4, 10) * 3
    labels = torch.arange(4).repeat_interleave(50)
    x = means[labels] + torch.randn(200, 10)
    head = HarmonicLinear(10, 4)
    optimizer = torch.optim.Adam(head.parameters(), lr=0.05)
    for _ in range(200):
        loss = F.cross_entropy(head(x), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert (head(x).argmax(-1) == labels).float().mean() > 0.97
    # the centers become prototypes: each is closest to its own class mean
    nearest_mean = torch.cdist(head.centers.detach(), means).argmin(-1)
    assert torch.equal(nearest_mean, torch.arange(4))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.3])
def test_reference_formula_has_the_semantics_of_cross_entropy(reduction, label_smoothing):
    """The float64 reference reduces, ignores and smooths exactly as F.cross_entropy does."""
    x, centers, target = random_problem(14, (10,), 5, 4, ignore_every=3)
    logits = -3.0 * (x.double().unsqueeze(1) - centers.double()).norm(dim=-1).log()
    expected = F.cross_entropy(logits, target, reduction=reduction, label_smoothing=label_smoothing)
    got = naive_harmonic_loss(x, centers, target, 3.0, reduction=reduction, label_smoothing=label_smoothing)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    ours = harmonic_loss(x, centers, target, 3.0, reduction=reduction, label_smoothing=label_smoothing, eps=0)
    torch.testing.assert_close(ours.double(), expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("trainable", ["x", "centers"])
def test_gradient_of_only_one_input(reduction, trainable):
    """Features without grad (a probe on frozen features) or a frozen head: the other gradient is exact."""
    x, centers, target = random_problem(15, (12,), 6, 5)
    leaf = (x if trainable == "x" else centers).clone().requires_grad_()
    args = (leaf, centers) if trainable == "x" else (x, leaf)
    loss = harmonic_loss(*args, target, 2.0, chunk_size=5, reduction=reduction, eps=0.0)
    (grad,) = torch.autograd.grad(loss.sum(), leaf)
    ref_args = [a.double().requires_grad_(a is leaf) for a in args]
    reference = naive_harmonic_loss(*ref_args, target, 2.0, reduction=reduction)
    (ref_grad,) = torch.autograd.grad(reference.sum(), ref_args[0 if trainable == "x" else 1])
    assert rel_err(grad, ref_grad) < RTOL


# --------------------------------------------------------------------------- precision close to centers


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
@pytest.mark.parametrize("chunk_size", [None, 3])
def test_points_close_to_their_centers_keep_their_digits(distance, chunk_size):
    """|x - c| << |x|: the regime a harmonic head trains into, where |x|^2 + |c|^2 - 2 x.c cancels."""
    gen = torch.Generator().manual_seed(17)
    centers = 3 * torch.randn(10, 64, generator=gen)
    target = torch.arange(10).repeat(2)
    x = centers[target] + 0.1 * torch.randn(20, 64, generator=gen)
    kwargs = dict(distance=distance, eps=1e-6)
    assert_matches_reference(
        lambda a, c, t: harmonic_loss(a, c, t, 8.0, chunk_size=chunk_size, **kwargs),
        lambda a, c, t: naive_harmonic_loss(a, c, t, 8.0, **kwargs),
        x,
        centers,
        target,
    )
    assert rel_err(harmax(x, centers, 8.0, **kwargs), naive_harmax(x, centers, 8.0, **kwargs)) < RTOL


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
@pytest.mark.parametrize("exponent", [2.0, 64.0])
def test_crowded_low_dimensional_classes(distance, exponent):
    """Many classes in 2-D: several centers are close to each point at once."""
    x, centers, target = random_problem(18, (32,), 2, 31)
    assert_matches_reference(
        lambda a, c, t: harmonic_loss(a, c, t, exponent, distance=distance, reduction="none", chunk_size=7),
        lambda a, c, t: naive_harmonic_loss(a, c, t, exponent, distance=distance, eps=1e-6, reduction="none"),
        x,
        centers,
        target,
    )


# --------------------------------------------------------------------------- autograd behaviour


MATMULS = {"aten.mm.default", "aten.addmm.default", "aten.addmm.out", "aten.addmm_.default"}


class OpNames(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.names = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(str(func))
        return func(*args, **(kwargs or {}))


def count_matmuls(fn) -> int:
    with OpNames() as mode:
        fn()
    return sum(name in MATMULS for name in mode.names)


def test_no_grad_computes_the_loss_only():
    x, centers, target = random_problem(19, (12,), 6, 9)
    x.requires_grad_()
    centers.requires_grad_()
    with torch.no_grad():
        assert count_matmuls(lambda: harmonic_loss(x, centers, target, chunk_size=4)) == 3  # one per chunk
    with torch.inference_mode():
        assert count_matmuls(lambda: harmonic_loss(x, centers, target, chunk_size=4)) == 3
    assert count_matmuls(lambda: harmonic_loss(x, centers, target, chunk_size=4)) > 3


def test_backward_twice_through_a_retained_graph():
    x, centers, target = random_problem(20, (10,), 5, 4)
    x.requires_grad_()
    loss = harmonic_loss(x, centers, target, chunk_size=3)
    (first,) = torch.autograd.grad(loss, x, retain_graph=True)
    (second,) = torch.autograd.grad(loss, x, retain_graph=True)
    torch.testing.assert_close(first, second)
    first.zero_()  # the results share no storage
    assert second.abs().sum() > 0
    loss.backward(retain_graph=True)
    x.grad.mul_(0.5)  # e.g. gradient clipping between the two passes
    loss.backward()
    torch.testing.assert_close(x.grad, 1.5 * second)


def test_centers_changed_in_place_before_backward_is_an_error():
    x, centers, target = random_problem(22, (6,), 4, 3)
    centers.requires_grad_()
    loss = harmonic_loss(x, centers, target)
    with torch.no_grad():
        centers.add_(1.0)  # e.g. an optimizer step before backward
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()
