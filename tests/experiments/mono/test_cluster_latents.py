import pytest
import torch

from harmono.experiments.mono.cluster_latents import (
    KINDS,
    MonoToyConfig,
    check_mono_toy_claims,
    make_mono_toy,
    run_mono_toy,
)

SMALL = MonoToyConfig(clusters=5, per_cluster=80, dim=32, latents_per_kind=5)


def test_latents_fire_where_their_kind_says():
    acts, emb, labels = make_mono_toy(SMALL)
    assert acts.shape == (400, 15) and emb.shape == (400, 32) and labels.shape == (400,)
    for j in range(5):
        assert set(labels[acts[:, j] > 0].tolist()) == {j}
        assert set(labels[acts[:, 5 + j] > 0].tolist()) == {j, (j + 1) % 5}
    random_share = (acts[:, 10:] > 0).double().mean()
    assert abs(float(random_share) - SMALL.fire_rate) < 0.03


def test_claims_hold_on_a_small_toy():
    result = run_mono_toy(SMALL)
    assert [k.kind for k in result.kinds] == list(KINDS)
    assert result.kinds[0].mean_purity == 1.0 and result.kinds[1].mean_purity == pytest.approx(0.5, abs=0.05)
    claims = check_mono_toy_claims(result)
    assert len(claims) == 4 and all(c.holds for c in claims), [c.text for c in claims]


def test_claims_fail_when_the_numbers_do_not_support_them():
    result = run_mono_toy(SMALL)
    swapped = type(result)(
        kinds=(result.kinds[2], result.kinds[1], result.kinds[0]),
        within_similarity=result.within_similarity,
        mean_similarity=result.mean_similarity,
        max_pairwise_diff=1.0,
    )
    assert not any(c.holds for c in check_mono_toy_claims(swapped))


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("clusters", 1, "clusters must be >= 2"),
        ("per_cluster", 0, "per_cluster must be >= 1"),
        ("spread", -0.1, "spread must be a finite number >= 0"),
        ("fire_rate", 0.0, r"fire_rate must lie in \(0, 1\]"),
    ],
)
def test_config_rejects_bad_values(field, value, message):
    with pytest.raises(ValueError, match=message):
        MonoToyConfig(**{field: value})


def test_data_is_reproducible():
    first, second = make_mono_toy(SMALL), make_mono_toy(SMALL)
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
