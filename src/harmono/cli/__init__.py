"""The ``harmono`` command: one thin module per command group, each parsing arguments and calling the library.

- ``main``: the entry point and the top-level parser.
- ``options``: dataclass configs as command-line options, and ``--config`` recipes.
- ``demo``, ``features``, ``toy``, ``mnist``, ``gpt``, ``finetune``, ``sae``: the command groups.
"""

from harmono.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
