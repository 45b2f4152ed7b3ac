import math

import numpy as np
import pytest
import torch

from harmono.data.augment import MixedBatch, crop_flip, mix_batch, step_rng


def _images(batch: int = 4, channels: int = 3, height: int = 16, width: int = 16, seed: int = 0):
    return torch.rand(batch, channels, height, width, generator=torch.Generator().manual_seed(seed))


def _ramps(batch: int, side: int) -> torch.Tensor:
    """Channel 0 holds the column index, channel 1 the row index."""
    columns = torch.arange(side, dtype=torch.float64).expand(side, side)
    return torch.stack([columns, columns.T])[None].repeat(batch, 1, 1, 1)


def _fit(values: np.ndarray) -> tuple[float, float, float]:
    """Slope, intercept and largest residual of a straight line through ``values`` against their index."""
    x = np.arange(len(values), dtype=np.float64)
    slope, intercept = np.polyfit(x, values, 1)
    return slope, intercept, float(np.abs(slope * x + intercept - values).max())


# step_rng


def test_step_rng_depends_on_seed_and_step_only():
    draws = step_rng(3, 7).random(5)
    np.testing.assert_array_equal(draws, step_rng(3, 7).random(5))
    np.testing.assert_array_equal(draws, np.random.default_rng((3, 7)).random(5))
    assert not np.array_equal(draws, step_rng(3, 8).random(5))
    assert not np.array_equal(draws, step_rng(4, 7).random(5))


# crop_flip without crop: flips only


def test_flip_only_gives_each_image_or_its_mirror_and_both_occur():
    pixels = _images(64, seed=1)
    out = crop_flip(pixels, step_rng(0, 0), crop=False)
    assert out.shape == pixels.shape and out.dtype == pixels.dtype
    flipped = torch.flip(pixels, dims=[-1])
    same = [torch.allclose(o, p, atol=1e-5) for o, p in zip(out, pixels, strict=True)]
    mirrored = [torch.allclose(o, f, atol=1e-5) for o, f in zip(out, flipped, strict=True)]
    assert all(s != m for s, m in zip(same, mirrored, strict=True))  # exactly one of the two per image
    assert 10 < sum(mirrored) < 54  # flip with probability 1/2: both cases occur


def test_flip_only_on_a_non_square_image():
    pixels = _images(32, channels=2, height=5, width=9, seed=2)
    out = crop_flip(pixels, step_rng(1, 0), crop=False)
    flipped = torch.flip(pixels, dims=[-1])
    for o, p, f in zip(out, pixels, flipped, strict=True):
        assert torch.allclose(o, p, atol=1e-5) or torch.allclose(o, f, atol=1e-5)


def test_crop_flip_is_deterministic_in_the_generator():
    pixels = _images(16, seed=3)
    for crop in (False, True):
        first = crop_flip(pixels, step_rng(5, 2), crop=crop)
        torch.testing.assert_close(first, crop_flip(pixels, step_rng(5, 2), crop=crop), rtol=0, atol=0)
        assert not torch.allclose(first, crop_flip(pixels, step_rng(5, 3), crop=crop))
        assert not torch.allclose(first, crop_flip(pixels, step_rng(6, 2), crop=crop))


def test_crop_flip_does_not_change_its_input():
    pixels = _images(8, seed=4)
    before = pixels.clone()
    crop_flip(pixels, step_rng(0, 1))
    torch.testing.assert_close(pixels, before, rtol=0, atol=0)


def test_crop_flip_float64_matches_float32():
    pixels = _images(8, seed=5)
    out32 = crop_flip(pixels, step_rng(2, 2))
    out64 = crop_flip(pixels.double(), step_rng(2, 2))
    assert out64.dtype == torch.float64
    torch.testing.assert_close(out64.float(), out32, rtol=0, atol=1e-5)


# crop_flip with crop


def test_crop_keeps_the_shape_and_a_constant_image_constant():
    pixels = torch.full((6, 3, 12, 20), 0.25)
    out = crop_flip(pixels, step_rng(0, 0), min_scale=0.1)
    assert out.shape == pixels.shape
    torch.testing.assert_close(out, pixels, rtol=0, atol=1e-6)


def test_crop_of_a_ramp_is_an_affine_window_of_allowed_area_and_aspect():
    side, batch, min_scale = 32, 64, 0.35
    out = crop_flip(_ramps(batch, side), step_rng(9, 4), min_scale=min_scale).numpy()
    flips = []
    for image in out:
        # a horizontal ramp stays horizontal (no shear) and the vertical one vertical
        np.testing.assert_allclose(image[0], np.broadcast_to(image[0][:1], image[0].shape), atol=1e-9)
        np.testing.assert_allclose(image[1], np.broadcast_to(image[1][:, :1], image[1].shape), atol=1e-9)
        # inside (away from the reflected border pixels) the resampled ramp is a line:
        # slope = crop width (signed by the flip) and height as fractions of the image
        slope_x, intercept_x, residual_x = _fit(image[0, 0, 1:-1])
        slope_y, intercept_y, residual_y = _fit(image[1, 1:-1, 0])
        assert residual_x < 1e-6 and residual_y < 1e-6
        width, height = abs(slope_x), slope_y
        assert slope_y > 0  # never flipped vertically
        assert min_scale - 1e-6 <= width * height <= 1 + 1e-6
        assert 3 / 4 - 1e-6 <= width / height <= 4 / 3 + 1e-6
        # the window lies inside the image: its centre (normalised to [-1, 1]) is at most 1 - size away
        middle = (side - 1) / 2
        center_x = (2 * (intercept_x + slope_x * (middle - 1)) + 1) / side - 1
        center_y = (2 * (intercept_y + slope_y * (middle - 1)) + 1) / side - 1
        assert abs(center_x) <= 1 - width + 1e-6 and abs(center_y) <= 1 - height + 1e-6
        flips.append(slope_x < 0)
    assert 10 < sum(flips) < batch - 10


def test_crop_with_min_scale_one_spans_one_full_side():
    # min_scale = 1 asks for the whole area; with an aspect ratio != 1 one side is clipped to the image
    out = crop_flip(_ramps(16, 16), step_rng(0, 0), min_scale=1.0).numpy()
    for image in out:
        slope_x, _, _ = _fit(image[0, 0, 1:-1])
        slope_y, _, _ = _fit(image[1, 1:-1, 0])
        assert abs(slope_x) <= 1 + 1e-6 and slope_y <= 1 + 1e-6
        assert max(abs(slope_x), slope_y) == pytest.approx(1, abs=1e-6)
        assert abs(slope_x) * slope_y >= math.sqrt(3 / 4) - 1e-6  # clipped side: area >= sqrt(1 / ratio)


# crop_flip errors


@pytest.mark.parametrize(
    "pixels",
    [torch.zeros(3, 8, 8), torch.zeros(1, 2, 3, 8, 8), torch.zeros(2, 3, 8, 8, dtype=torch.uint8)],
    ids=["3d", "5d", "uint8"],
)
def test_crop_flip_rejects_bad_pixels(pixels):
    with pytest.raises(ValueError, match=r"expected float pixels of shape \(B, C, H, W\), got torch\."):
        crop_flip(pixels, step_rng(0, 0))


@pytest.mark.parametrize("min_scale", [0.0, -0.5, 1.5, float("nan")])
def test_crop_flip_rejects_min_scale_outside_unit_interval(min_scale):
    with pytest.raises(ValueError, match=r"min_scale must lie in \(0, 1\], got"):
        crop_flip(_images(), step_rng(0, 0), min_scale=min_scale)


# mix_batch


def test_mix_without_alphas_returns_the_batch_unchanged():
    pixels, labels = _images(), torch.tensor([0, 1, 2, 3])
    mixed = mix_batch(pixels, labels, step_rng(0, 0))
    assert isinstance(mixed, MixedBatch)
    assert mixed.lam == 1.0
    torch.testing.assert_close(mixed.pixels, pixels, rtol=0, atol=0)
    torch.testing.assert_close(mixed.other_labels, labels, rtol=0, atol=0)


@pytest.mark.parametrize("step", range(5))
def test_mixup_blends_each_image_with_the_previous_one(step):
    pixels, labels = _images(5, seed=step), torch.tensor([4, 0, 3, 1, 2])
    mixed = mix_batch(pixels, labels, step_rng(1, step), mixup_alpha=0.4)
    assert 0.0 <= mixed.lam <= 1.0
    previous = torch.cat([pixels[-1:], pixels[:-1]])  # image b mixed with image b - 1
    expected = mixed.lam * pixels + (1 - mixed.lam) * previous
    torch.testing.assert_close(mixed.pixels, expected, rtol=0, atol=1e-6)
    assert mixed.other_labels.tolist() == [2, 4, 0, 3, 1]


def test_mixup_weight_follows_beta_alpha_alpha():
    # Beta(1, 1) is uniform: mean 1/2, variance 1/12
    lams = np.array(
        [mix_batch(_images(2), torch.zeros(2), step_rng(0, s), mixup_alpha=1.0).lam for s in range(2000)]
    )
    assert abs(lams.mean() - 0.5) < 0.03 and abs(lams.var() - 1 / 12) < 0.01
    # Beta(0.2, 0.2) piles up near 0 and 1
    lams = np.array(
        [mix_batch(_images(2), torch.zeros(2), step_rng(0, s), mixup_alpha=0.2).lam for s in range(500)]
    )
    assert np.mean((lams < 0.1) | (lams > 0.9)) > 0.5


def _cutmix_mask(pixels: torch.Tensor, mixed: torch.Tensor) -> torch.Tensor:
    """``(H, W)`` True where the batch holds the previous image; every pixel must be one or the other."""
    previous = pixels.roll(1, dims=0)
    from_previous = (mixed == previous).all(dim=1)
    from_self = (mixed == pixels).all(dim=1)
    assert bool((from_previous ^ from_self).all())
    assert bool((from_previous == from_previous[:1]).all())  # one box for the whole batch
    return from_previous[0]


@pytest.mark.parametrize("step", range(8))
def test_cutmix_pastes_one_box_of_the_previous_image_and_lam_is_the_area_kept(step):
    height, width = 12, 20
    # distinct values everywhere, so each pixel tells which image it came from
    pixels = torch.arange(4 * 3 * height * width, dtype=torch.float32).reshape(4, 3, height, width)
    labels = torch.tensor([7, 8, 9, 6])
    mixed = mix_batch(pixels, labels, step_rng(2, step), cutmix_alpha=1.0)
    mask = _cutmix_mask(pixels, mixed.pixels)
    rows, cols = mask.any(dim=1), mask.any(dim=0)
    torch.testing.assert_close(mask, rows[:, None] & cols[None, :], rtol=0, atol=0)  # a rectangle
    for line in (rows, cols):  # contiguous
        hits = torch.nonzero(line).flatten()
        if len(hits):
            assert hits[-1] - hits[0] + 1 == len(hits)
    assert mixed.lam == pytest.approx(1 - int(mask.sum()) / mask.numel(), abs=1e-12)
    assert mixed.other_labels.tolist() == [6, 7, 8, 9]


def test_cutmix_area_kept_is_roughly_uniform_for_alpha_one():
    pixels = torch.arange(2 * 32 * 32, dtype=torch.float32).reshape(2, 1, 32, 32)
    lams = [mix_batch(pixels, torch.zeros(2), step_rng(3, s), cutmix_alpha=1.0).lam for s in range(1000)]
    assert abs(np.mean(lams) - 0.5) < 0.04
    assert 0.1 < np.mean(np.array(lams) < 0.25) < 0.4


def test_both_alphas_pick_mixup_or_cutmix_evenly():
    pixels = torch.arange(3 * 8 * 8, dtype=torch.float32).reshape(3, 1, 8, 8) + 1
    cutmix = 0
    trials = 200
    for step in range(trials):
        mixed = mix_batch(pixels, torch.zeros(3), step_rng(4, step), mixup_alpha=1.0, cutmix_alpha=1.0)
        previous = pixels.roll(1, dims=0)
        blend = mixed.lam * pixels + (1 - mixed.lam) * previous
        is_pasted = bool(((mixed.pixels == pixels) | (mixed.pixels == previous)).all())
        is_blend = torch.allclose(mixed.pixels, blend, atol=1e-4)
        assert is_pasted or is_blend
        cutmix += is_pasted and not is_blend
    assert 0.3 * trials < cutmix < 0.7 * trials


def test_mix_batch_is_deterministic_in_the_generator():
    pixels, labels = _images(4), torch.arange(4)
    for alphas in ({"mixup_alpha": 0.5}, {"cutmix_alpha": 0.5}):
        first = mix_batch(pixels, labels, step_rng(1, 1), **alphas)
        again = mix_batch(pixels, labels, step_rng(1, 1), **alphas)
        assert first.lam == again.lam
        torch.testing.assert_close(first.pixels, again.pixels, rtol=0, atol=0)


def test_cutmix_does_not_change_its_input():
    pixels = _images(4)
    before = pixels.clone()
    mix_batch(pixels, torch.arange(4), step_rng(0, 0), cutmix_alpha=1.0)
    torch.testing.assert_close(pixels, before, rtol=0, atol=0)


@pytest.mark.parametrize("alphas", [{"mixup_alpha": -0.1}, {"cutmix_alpha": -1.0}])
def test_mix_batch_rejects_negative_alphas(alphas):
    with pytest.raises(ValueError, match=r"alphas must be >= 0, got mixup .*, cutmix"):
        mix_batch(_images(), torch.arange(4), step_rng(0, 0), **alphas)


def test_a_nan_alpha_is_refused():
    pixels, labels = torch.rand(4, 3, 8, 8), torch.arange(4)
    with pytest.raises(ValueError, match="alphas must be >= 0"):
        mix_batch(pixels, labels, np.random.default_rng(0), mixup_alpha=float("nan"))
