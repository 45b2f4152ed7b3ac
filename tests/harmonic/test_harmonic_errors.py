import math

import pytest
import torch

from harmono import HarmonicLinear, harmax, harmonic_logits, harmonic_loss


@pytest.fixture
def problem():
    torch.manual_seed(0)
    return torch.randn(6, 4), torch.randn(3, 4), torch.randint(0, 3, (6,))


def test_mismatched_feature_dims(problem):
    x, centers, target = problem
    with pytest.raises(ValueError, match=r"feature dims differ.*\(6, 5\).*D = 5.*\(3, 4\).*D = 4"):
        harmonic_loss(torch.randn(6, 5), centers, target)
    with pytest.raises(ValueError, match="feature dims differ"):
        harmonic_logits(x, torch.randn(3, 7))


@pytest.mark.parametrize("bad", [3, -1, -100 + 1])
def test_target_out_of_range(problem, bad):
    x, centers, target = problem
    target = target.clone()
    target[2] = bad
    with pytest.raises(ValueError, match=r"expected values in \[0, 2\]"):
        harmonic_loss(x, centers, target)


def test_ignore_index_is_not_out_of_range(problem):
    x, centers, target = problem
    target = target.clone()
    target[0] = -100
    assert torch.isfinite(harmonic_loss(x, centers, target))
    target[0] = 9
    assert torch.isfinite(harmonic_loss(x, centers, target, ignore_index=9))


def test_target_on_another_device(problem):
    x, centers, target = problem
    with pytest.raises(ValueError, match="target is on meta but x is on cpu"):
        harmonic_loss(x, centers, target.to("meta"), validate=False)


def test_target_dtype_and_shape(problem):
    x, centers, target = problem
    with pytest.raises(ValueError, match="integer class indices.*float32"):
        harmonic_loss(x, centers, target.float())
    with pytest.raises(ValueError, match=r"leading shape of x, \(6,\), got \(2, 3\)"):
        harmonic_loss(x, centers, target.reshape(2, 3))


@pytest.mark.parametrize("exponent", [0, -1.0, math.nan, math.inf, "2", True])
def test_non_positive_or_invalid_exponent(problem, exponent):
    x, centers, target = problem
    with pytest.raises(ValueError, match="exponent"):
        harmonic_loss(x, centers, target, exponent)
    with pytest.raises(ValueError, match="exponent"):
        harmax(x, centers, exponent)
    with pytest.raises(ValueError, match="exponent"):
        HarmonicLinear(4, 3, exponent=exponent)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("where", ["x", "centers"])
def test_non_finite_inputs(problem, value, where):
    x, centers, target = (t.clone() for t in problem)
    (x if where == "x" else centers)[1, 2] = value
    with pytest.raises(ValueError, match=rf"{where} contains 1 non-finite value"):
        harmonic_loss(x, centers, target)
    with pytest.raises(ValueError, match=rf"{where} contains 1 non-finite"):
        harmonic_logits(x, centers)
    # the check can be switched off for speed: the value then flows through
    assert not torch.isfinite(harmonic_logits(x, centers, validate=False)).all()


def test_non_finite_input_to_harmonic_linear():
    head = HarmonicLinear(4, 3)
    with pytest.raises(ValueError, match="x contains 1 non-finite"):
        head(torch.tensor([[1.0, math.nan, 0.0, 0.0]]))
    head.validate = False
    assert torch.isnan(head(torch.tensor([[1.0, math.nan, 0.0, 0.0]]))).any()


def test_empty_and_malformed_inputs(problem):
    x, centers, target = problem
    with pytest.raises(ValueError, match="x must not be empty"):
        harmonic_loss(x[:0], centers, target[:0])
    with pytest.raises(ValueError, match="centers must not be empty"):
        harmonic_logits(x, centers[:0])
    with pytest.raises(ValueError, match=r"centers must have shape \(C, D\)"):
        harmonic_logits(x, centers[0])
    with pytest.raises(ValueError, match="0-d"):
        harmonic_logits(torch.tensor(1.0), centers)
    with pytest.raises(ValueError, match="floating-point"):
        harmonic_logits(x.long(), centers)
    with pytest.raises(ValueError, match="must be a torch.Tensor, got list"):
        harmonic_logits([[1.0, 2.0, 3.0, 4.0]], centers)


def test_bad_options(problem):
    x, centers, target = problem
    with pytest.raises(ValueError, match="reduction must be one of"):
        harmonic_loss(x, centers, target, reduction="avg")
    with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 1\], got 1.5"):
        harmonic_loss(x, centers, target, label_smoothing=1.5)
    with pytest.raises(ValueError, match="label_smoothing must be a number"):
        harmonic_loss(x, centers, target, label_smoothing="0.1")
    with pytest.raises(ValueError, match="chunk_size must be a positive int"):
        harmonic_loss(x, centers, target, chunk_size=0)
    with pytest.raises(ValueError, match="eps must be a finite number >= 0"):
        harmonic_logits(x, centers, eps=-1e-3)
    with pytest.raises(ValueError, match="distance must be one of"):
        harmonic_logits(x, centers, distance="manhattan")
    with pytest.raises(ValueError, match="out_features must be a positive int"):
        HarmonicLinear(4, 0)


def test_cosine_distance_of_a_zero_vector(problem):
    x, centers, target = (t.clone() for t in problem)
    x[3] = 0
    with pytest.raises(ValueError, match=r'x has 1 zero vector\(s\): distance="cosine" is undefined'):
        harmonic_loss(x, centers, target, distance="cosine")
    centers[0] = 0
    with pytest.raises(ValueError, match="centers has 1 zero vector"):
        harmonic_logits(problem[0], centers, distance="cosine")
    assert torch.isfinite(harmonic_loss(x, centers, target, distance="cosine", validate=False))


def test_magnitudes_whose_squares_overflow(problem):
    x, centers, target = problem
    with pytest.raises(ValueError, match=r"squared distances would overflow torch.float32; rescale both"):
        harmonic_loss(x * 1e19, centers * 1e19, target)
    with pytest.raises(ValueError, match=r"would overflow torch.float64"):
        harmonic_logits(x.double() * 1e160, centers.double())
    # the float64 path takes them, and scale invariance gives the same loss
    torch.testing.assert_close(
        harmonic_loss(x.double() * 1e19, centers.double() * 1e19, target).float(),
        harmonic_loss(x, centers, target),
    )


@pytest.mark.parametrize("dtype", [torch.int32, torch.int16, torch.int8, torch.uint8])
def test_integer_targets_of_any_width(problem, dtype):
    x, centers, target = problem
    torch.testing.assert_close(harmonic_loss(x, centers, target.to(dtype)), harmonic_loss(x, centers, target))


def test_ignore_index_must_be_an_int(problem):
    x, centers, target = problem
    with pytest.raises(ValueError, match="ignore_index must be an int, got None"):
        harmonic_loss(x, centers, target, ignore_index=None)


def test_exponent_as_a_one_element_tensor(problem):
    x, centers, target = problem
    torch.testing.assert_close(
        harmonic_loss(x, centers, target, torch.tensor(3.0)), harmonic_loss(x, centers, target, 3.0)
    )
