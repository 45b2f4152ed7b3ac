import pytest
import torch

from harmono.data.points import TOY_CASES
from harmono.experiments.harmonic.points import (
    LINEAR_FIVE_POINT_FLOOR,
    ToyPointsConfig,
    check_toy_claims,
    fit_toy_case,
)

CONFIG = ToyPointsConfig(steps=2000)


@pytest.fixture(scope="module")
def fits():
    return {
        (case, head): fit_toy_case(case, head, CONFIG)
        for case in TOY_CASES
        for head in ("harmonic", "linear")
    }


@pytest.mark.parametrize("case", list(TOY_CASES))
def test_harmonic_centers_converge_to_the_points(fits, case):
    result = fits[case, "harmonic"]
    assert max(result.center_distances) < 1e-2
    assert result.final_loss < 1e-4
    # the centers stop where the data is: |W| is the norm of the points themselves
    points = torch.tensor(TOY_CASES[case])
    assert result.weight_norm == pytest.approx(points.norm().item(), rel=1e-2)


def test_linear_head_cannot_fit_the_centre_point(fits):
    result = fits["five_points", "linear"]
    assert result.final_loss >= LINEAR_FIVE_POINT_FLOOR - 1e-6
    assert result.final_loss < LINEAR_FIVE_POINT_FLOOR + 0.05  # the four outer points are fitted


def test_linear_weights_keep_growing(fits):
    short = fit_toy_case("two_points", "linear", ToyPointsConfig(steps=500))
    long = fits["two_points", "linear"]
    assert long.weight_norm > short.weight_norm + 1.0
    assert long.final_loss < short.final_loss
    # far from the points: no center-like solution
    assert min(long.center_distances) > 0.5


def test_claims_are_checked_on_the_results(fits):
    claims = check_toy_claims(list(fits.values()))
    assert len(claims) == 4 and all(claim.holds for claim in claims)
    # a run too short to converge does not pass the first claim
    short = [fit_toy_case(case, head, ToyPointsConfig(steps=5)) for case, head in fits]
    assert not check_toy_claims(short)[0].holds


def test_divergence_is_reported():
    with pytest.raises(ValueError, match="training diverged, try a smaller lr"):
        fit_toy_case("five_points", "harmonic", ToyPointsConfig(steps=50, lr=1e30))


def test_bad_config_and_names():
    with pytest.raises(ValueError, match="steps must be >= 1"):
        ToyPointsConfig(steps=0)
    for bad in (dict(lr=float("inf")), dict(exponent=0.0), dict(eps=-1.0)):
        with pytest.raises(ValueError, match="must be a finite number"):
            ToyPointsConfig(**bad)
    with pytest.raises(ValueError, match="case must be one of"):
        fit_toy_case("three_points", "harmonic")
    with pytest.raises(ValueError, match="head must be one of"):
        fit_toy_case("two_points", "mlp")
