from collections import Counter

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from harmono.data.image_batches import (
    SquareImages,
    epoch_order,
    load_batches,
    rank_batches,
    square_image,
    stratified_subset,
)
from harmono.data.images import ImageSet

# stratified_subset


def _labels(counts: list[int], seed: int = 0) -> np.ndarray:
    labels = np.concatenate([np.full(n, c) for c, n in enumerate(counts)]).astype(np.int64)
    return np.random.default_rng(seed).permutation(labels)


def _check_balanced(labels: np.ndarray, chosen: np.ndarray, allowed: np.ndarray) -> None:
    """Water-filling: classes with samples left differ by at most 1; a used-up class has no more."""
    picked = Counter(labels[chosen].tolist())
    available = Counter(labels[allowed].tolist())
    left = [picked[c] for c in available if picked[c] < available[c]]
    if left:
        assert max(left) - min(left) <= 1
        assert all(picked[c] <= max(left) for c in available if picked[c] == available[c])


@pytest.mark.parametrize(
    ("counts", "size"), [([20, 20, 20], 30), ([20, 20, 20], 31), ([10, 3, 7], 12), ([1, 50, 2, 9], 20)]
)
def test_stratified_subset_spreads_evenly_over_classes(counts, size):
    labels = _labels(counts)
    chosen = stratified_subset(labels, size, seed=1)
    assert chosen.dtype == np.int64 and len(chosen) == size
    np.testing.assert_array_equal(chosen, np.unique(chosen))  # sorted and unique
    assert 0 <= chosen.min() and chosen.max() < len(labels)
    _check_balanced(labels, chosen, np.arange(len(labels)))


def test_stratified_subset_hand_counts():
    labels = _labels([10, 3, 7])
    # 12 of (10, 3, 7): the class of 3 is used up, the other two share the remaining 9 as 5 + 4 or 4 + 5
    counts = np.bincount(labels[stratified_subset(labels, 12, seed=0)], minlength=3)
    assert counts[1] == 3 and sorted(counts[[0, 2]].tolist()) == [4, 5]
    # 30 of 3 x 20: exactly 10 per class
    labels = _labels([20, 20, 20])
    np.testing.assert_array_equal(np.bincount(labels[stratified_subset(labels, 30, seed=0)]), [10, 10, 10])


def test_stratified_subset_honours_exclude():
    labels = _labels([15, 15, 15], seed=2)
    first = stratified_subset(labels, 15, seed=0)
    second = stratified_subset(labels, 15, seed=0, exclude=first)
    assert not set(first.tolist()) & set(second.tolist())
    np.testing.assert_array_equal(np.bincount(labels[second]), [5, 5, 5])
    allowed = np.setdiff1d(np.arange(len(labels)), first)
    _check_balanced(labels, second, allowed)


def test_stratified_subset_size_zero_is_everything_not_excluded():
    labels = _labels([4, 6, 5])
    np.testing.assert_array_equal(stratified_subset(labels, 0, seed=3), np.arange(len(labels)))
    exclude = np.array([0, 5, 7, 14])
    expected = np.array([i for i in range(len(labels)) if i not in set(exclude.tolist())])
    np.testing.assert_array_equal(stratified_subset(labels, 0, seed=3, exclude=exclude), expected)


def test_stratified_subset_with_everything_allowed_is_a_sorted_permutation():
    labels = _labels([4, 6, 5])
    np.testing.assert_array_equal(stratified_subset(labels, len(labels), seed=9), np.arange(len(labels)))


def test_stratified_subset_is_deterministic_in_the_seed():
    labels = _labels([30, 30, 30])
    first = stratified_subset(labels, 12, seed=4)
    np.testing.assert_array_equal(first, stratified_subset(labels, 12, seed=4))
    assert not np.array_equal(first, stratified_subset(labels, 12, seed=5))


def test_stratified_subset_rejects_a_size_above_what_is_allowed():
    labels = _labels([3, 3])
    with pytest.raises(ValueError, match=r"expected a subset of at most 6 samples, got size 7"):
        stratified_subset(labels, 7, seed=0)
    with pytest.raises(ValueError, match=r"expected a subset of at most 4 samples, got size 5"):
        stratified_subset(labels, 5, seed=0, exclude=np.array([0, 1]))


# square_image


def test_square_image_of_a_same_size_rgb_image_is_its_channels_first_copy():
    image = np.random.default_rng(0).integers(0, 256, (9, 9, 3), dtype=np.uint8)
    out = square_image(image, 9)
    assert out.dtype == torch.uint8 and out.shape == (3, 9, 9)
    np.testing.assert_array_equal(out.numpy(), image.transpose(2, 0, 1))


def test_square_image_replicates_grayscale_to_three_equal_channels():
    image = np.random.default_rng(1).integers(0, 256, (10, 10), dtype=np.uint8)
    out = square_image(image, 10)
    assert out.dtype == torch.uint8 and out.shape == (3, 10, 10)
    for channel in out:
        np.testing.assert_array_equal(channel.numpy(), image)
    resized = square_image(image, 6)
    assert resized.shape == (3, 6, 6)
    assert torch.equal(resized[0], resized[1]) and torch.equal(resized[1], resized[2])


@pytest.mark.parametrize(
    ("height", "width", "rows", "cols"), [(10, 13, (0, 10), (1, 11)), (15, 10, (2, 12), (0, 10))]
)
def test_square_image_center_crops_the_longer_side(height, width, rows, cols):
    # the shorter side already has the target size: only a center crop, (longer - side) // 2 from the start
    image = np.random.default_rng(2).integers(0, 256, (height, width, 3), dtype=np.uint8)
    out = square_image(image, 10).numpy()
    np.testing.assert_array_equal(out, image[rows[0] : rows[1], cols[0] : cols[1]].transpose(2, 0, 1))


def test_square_image_of_a_wide_image_keeps_the_middle_third():
    # 24 x 72 with left, middle and right thirds of different colours -> 12 x 36 -> middle 12 x 12
    image = np.zeros((24, 72, 3), dtype=np.uint8)
    image[:, :24] = (200, 10, 10)
    image[:, 24:48] = (30, 120, 60)
    image[:, 48:] = (0, 0, 250)
    out = square_image(image, 12).numpy()
    assert out.shape == (3, 12, 12)
    # the antialiasing filter of a 2x reduction reaches one output column across a border
    np.testing.assert_array_equal(
        out[:, :, 1:-1], np.broadcast_to(np.array([30, 120, 60])[:, None, None], (3, 12, 10))
    )
    # the border columns blend the middle colour with its neighbour's, channel by channel
    for column, neighbour in ((0, (200, 10, 10)), (11, (0, 0, 250))):
        low = np.minimum(neighbour, (30, 120, 60))[:, None]
        high = np.maximum(neighbour, (30, 120, 60))[:, None]
        assert bool(((low <= out[:, :, column]) & (out[:, :, column] <= high)).all())
        assert not np.array_equal(out[:, 0, column], (30, 120, 60))


def test_square_image_matches_interpolate_then_center_crop():
    rng = np.random.default_rng(3)
    for height, width, side in [(20, 31, 8), (33, 17, 12), (5, 7, 11)]:
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        scale = side / min(height, width)
        size = (max(side, round(height * scale)), max(side, round(width * scale)))
        assert min(size) == side
        pixels = torch.from_numpy(image).permute(2, 0, 1)[None].float()
        resized = F.interpolate(pixels, size=size, mode="bilinear", antialias=True, align_corners=False)[0]
        top, left = (size[0] - side) // 2, (size[1] - side) // 2
        expected = resized[:, top : top + side, left : left + side].round().clamp(0, 255).to(torch.uint8)
        out = square_image(image, side)
        assert out.shape == (3, side, side)
        torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_square_image_keeps_a_constant_image_constant_when_scaling_up_or_down():
    for shape, side in [((4, 4), 9), ((40, 25, 3), 7)]:
        out = square_image(np.full(shape, 77, dtype=np.uint8), side)
        assert out.shape == (3, side, side)
        assert bool((out == 77).all())


# epoch_order and rank_batches


def test_epoch_order_is_a_seeded_permutation_per_epoch():
    order = epoch_order(50, seed=1, epoch=0)
    np.testing.assert_array_equal(np.sort(order), np.arange(50))
    np.testing.assert_array_equal(order, epoch_order(50, seed=1, epoch=0))
    assert not np.array_equal(order, epoch_order(50, seed=1, epoch=1))
    assert not np.array_equal(order, epoch_order(50, seed=2, epoch=0))


def test_rank_batches_by_hand():
    order = np.arange(10)
    training = [rank_batches(order, 4, rank, 2, drop_last=True) for rank in (0, 1)]
    assert [b.tolist() for b in training[0]] == [[0, 1], [4, 5]]
    assert [b.tolist() for b in training[1]] == [[2, 3], [6, 7]]
    evaluation = [rank_batches(order, 4, rank, 2, drop_last=False) for rank in (0, 1)]
    assert [b.tolist() for b in evaluation[0]] == [[0, 1], [4, 5], [8]]
    assert [b.tolist() for b in evaluation[1]] == [[2, 3], [6, 7], [9]]


@pytest.mark.parametrize(("size", "batch_size", "world"), [(103, 16, 4), (64, 16, 4), (30, 6, 3), (17, 8, 1)])
def test_rank_batches_for_training_split_each_full_global_batch(size, batch_size, world):
    order = epoch_order(size, seed=0, epoch=3)
    per_rank = [rank_batches(order, batch_size, rank, world, drop_last=True) for rank in range(world)]
    full = size // batch_size
    for batches in per_rank:
        assert len(batches) == full
        assert all(len(b) == batch_size // world for b in batches)
    for b in range(full):
        together = np.concatenate([per_rank[rank][b] for rank in range(world)])
        np.testing.assert_array_equal(together, order[b * batch_size : (b + 1) * batch_size])  # no overlap
    used = np.concatenate([np.concatenate(batches) for batches in per_rank])
    assert len(set(used.tolist())) == full * batch_size


@pytest.mark.parametrize(
    ("size", "batch_size", "world"), [(103, 16, 4), (9, 4, 2), (5, 8, 4), (2, 8, 4), (12, 4, 1)]
)
def test_rank_batches_for_evaluation_give_every_sample_exactly_once(size, batch_size, world):
    order = epoch_order(size, seed=5, epoch=0)
    per_rank = [rank_batches(order, batch_size, rank, world, drop_last=False) for rank in range(world)]
    used = np.concatenate([b for batches in per_rank for b in batches])
    np.testing.assert_array_equal(np.sort(used), np.arange(size))
    assert all(len(b) > 0 for batches in per_rank for b in batches)
    lengths = [len(b) for batches in per_rank for b in batches]
    assert max(lengths) <= batch_size // world + (size % batch_size > 0)


# SquareImages and load_batches


def _image_set(rgb: bool) -> ImageSet:
    rng = np.random.default_rng(7)
    shape = (12, 9, 11, 3) if rgb else (12, 9, 11)
    images = rng.integers(0, 256, shape, dtype=np.uint8)
    labels = np.array([0, 1, 2, 0, 1, 2, 2, 2, 1, 0, 0, 1], dtype=np.int64)
    return ImageSet("toy/train", labels, ("a", "b", "c"), tuple(f"img{i}" for i in range(12)), images=images)


def test_square_images_gives_each_subset_position():
    images = _image_set(rgb=True)
    indices = np.array([10, 3, 7])
    data = SquareImages(images, indices, side=8)
    assert len(data) == 3
    for position, index in enumerate(indices):
        pixels, label, pos = data[position]
        torch.testing.assert_close(pixels, square_image(images.images[index], 8), rtol=0, atol=0)
        assert label == images.labels[index] and pos == position
    torch.testing.assert_close(data.labels, torch.as_tensor(images.labels[indices]), rtol=0, atol=0)


@pytest.mark.parametrize(("rgb", "workers"), [(True, 0), (False, 0), (False, 2)])
def test_load_batches_yields_the_chosen_batches_in_order(rgb, workers):
    images = _image_set(rgb)
    indices = np.array([1, 4, 5, 8, 9, 11])
    data = SquareImages(images, indices, side=8)
    batches = [np.array([5, 0, 2]), np.array([3]), np.array([1, 4])]
    loaded = list(load_batches(data, batches, workers))
    assert len(loaded) == len(batches)
    for (pixels, labels, positions), batch in zip(loaded, batches, strict=True):
        assert pixels.dtype == torch.uint8 and pixels.shape == (len(batch), 3, 8, 8)
        assert positions.tolist() == batch.tolist()
        assert labels.tolist() == images.labels[indices[batch]].tolist()
        for row, position in zip(pixels, batch, strict=True):
            expected = square_image(images.image(int(indices[position])), 8)
            torch.testing.assert_close(row, expected, rtol=0, atol=0)
        if not rgb:
            assert torch.equal(pixels[:, 0], pixels[:, 2])


def test_inputs_that_would_lose_samples_or_channels_are_refused():
    with pytest.raises(ValueError, match="batch_size must be divisible by the world size 4, got 6"):
        rank_batches(np.arange(100), 6, 0, 4, False)
    with pytest.raises(ValueError, match="expected a subset size >= 0, got -2"):
        stratified_subset(np.array([0, 1, 0, 1]), -2, seed=0)
    with pytest.raises(ValueError, match=r"expected a uint8 image .* got uint8 \(5, 5, 4\)"):
        square_image(np.zeros((5, 5, 4), np.uint8), 8)
    with pytest.raises(ValueError, match="got float32"):
        square_image(np.zeros((5, 5), np.float32), 8)
