"""The ``harmono`` command: its top-level parser and the entry point that dispatches to a command.

Thin by design: each command group's module (``demo``, ``features``, ``data``,
``sae``, ``toy``, ``mnist``, ``finetune``, ``gpt``, ``claims``) parses its
arguments into the library's config dataclasses, calls the library and
presents what it returns.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from harmono.cli.claims import add_claims_command
from harmono.cli.data import add_data_commands
from harmono.cli.demo import add_demo_and_report_commands
from harmono.cli.features import add_features_commands
from harmono.cli.finetune import add_finetune_command
from harmono.cli.gpt import add_gpt_commands
from harmono.cli.lm import add_lm_commands
from harmono.cli.mnist import add_mnist_command
from harmono.cli.sae import add_sae_commands
from harmono.cli.toy import add_toy_commands
from harmono.core.version import __version__


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``harmono`` command.

    Returns
    -------
    argparse.ArgumentParser
        The parser; each command sets ``func``, which takes the parsed arguments and returns the exit status.
    """
    parser = argparse.ArgumentParser(
        prog="harmono", description="Interpretable models with harmonic loss and MonoLoss."
    )
    parser.add_argument("--version", action="version", version=f"harmono {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)
    add_demo_and_report_commands(sub)
    add_features_commands(sub)
    add_data_commands(sub)
    add_sae_commands(sub)
    add_toy_commands(sub)
    add_mnist_command(sub)
    add_finetune_command(sub)
    add_gpt_commands(sub)
    add_lm_commands(sub)
    add_claims_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``harmono`` console script.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit status: 0, or 2 after an error in the user's input or files (printed, no traceback).
    """
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    try:
        return args.func(args)
    except (ValueError, OSError, ModuleNotFoundError) as err:
        print(f"harmono: error: {err}", file=sys.stderr)
        return 2
