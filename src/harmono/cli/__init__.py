"""The ``harmono`` command: one thin module per command group, each parsing arguments and calling the library.

- ``main``: the entry point and the top-level parser.
- ``options``: dataclass configs as command-line options (``--config`` recipes: :mod:`harmono.recipes`).
- ``demo`` (with ``report``), ``features``, ``data``, ``sae``, ``toy``, ``mnist``, ``finetune``, ``gpt``,
  ``claims``: the command groups.
"""

from harmono.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
