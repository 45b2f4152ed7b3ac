import math

import pytest
import torch

from harmono.experiments.toy_points import (
    LINEAR_FIVE_POINT_FLOOR,
    TOY_CASES,
    ToyPointsConfig,
    build_head,
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
    # the centre point's logits are all w_i . 0 = 0, so it is predicted with probability 1/5
    head = build_head("linear", 5, CONFIG)
    with torch.no_grad():
        head.weight.copy_(torch.tensor(result.weights))
        probs = head(torch.zeros(1, 2)).softmax(-1)
    torch.testing.assert_close(probs, torch.full((1, 5), 0.2))
    assert math.isclose(LINEAR_FIVE_POINT_FLOOR, math.log(5) / 5)


def test_linear_weights_keep_growing(fits):
    short = fit_toy_case("two_points", "linear", ToyPointsConfig(steps=500))
    long = fits["two_points", "linear"]
    assert long.weight_norm > short.weight_norm + 1.0
    assert long.final_loss < short.final_loss
    # far from the points: no center-like solution
    assert min(long.center_distances) > 0.5


def test_bad_config_and_names():
    with pytest.raises(ValueError, match="steps must be >= 1"):
        ToyPointsConfig(steps=0)
    with pytest.raises(ValueError, match="case must be one of"):
        fit_toy_case("three_points", "harmonic")
    with pytest.raises(ValueError, match="head must be one of"):
        fit_toy_case("two_points", "mlp")
