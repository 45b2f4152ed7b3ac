"""Config dataclasses as command-line options: field docs as help, defaults, prefixes, checks."""

import argparse
from dataclasses import dataclass

import pytest

from harmono.cli.options import add_config_arguments, config_from_arguments, field_docs
from harmono.experiments.harmonic.points import ToyPointsConfig


@dataclass(frozen=True)
class ExampleConfig:
    """A config with every supported field type."""

    width: int = 4
    """Hidden width."""
    rate: float = 0.5
    """Learning rate; a second sentence is kept."""
    name: str = "run"
    verbose: bool = False
    """Print more."""

    def __post_init__(self) -> None:
        if self.width < 1:
            raise ValueError(f"width must be >= 1, got {self.width}")


def parse(cls, argv, prefix=""):
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, cls, prefix)
    return config_from_arguments(cls, parser.parse_args(argv), prefix)


def test_field_docs_are_the_lines_under_each_field():
    assert field_docs(ExampleConfig) == {
        "width": "Hidden width.",
        "rate": "Learning rate; a second sentence is kept.",
        "verbose": "Print more.",
    }


def test_defaults_and_overrides_round_trip():
    assert parse(ExampleConfig, []) == ExampleConfig()
    got = parse(ExampleConfig, ["--width", "9", "--rate", "1e-3", "--name", "x", "--verbose"])
    assert got == ExampleConfig(width=9, rate=1e-3, name="x", verbose=True)
    assert parse(ExampleConfig, ["--no-verbose"]).verbose is False


def test_prefix_maps_every_toy_field():
    got = parse(ToyPointsConfig, ["--toy-steps", "7", "--toy-exponent", "3", "--toy-seed", "2"], prefix="toy")
    assert got == ToyPointsConfig(steps=7, exponent=3.0, seed=2)


def test_config_checks_run_on_parsed_values():
    with pytest.raises(ValueError, match="width must be >= 1, got 0"):
        parse(ExampleConfig, ["--width", "0"])


def test_unsupported_field_type_is_refused():
    @dataclass(frozen=True)
    class WithList:
        sizes: list = None

    with pytest.raises(TypeError, match="WithList.sizes"):
        add_config_arguments(argparse.ArgumentParser(), WithList)
