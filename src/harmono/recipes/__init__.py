"""Built-in run recipes, and reading a recipe or a config file.

The recipes are JSON files named ``<family>-<name>.json`` (``finetune-...``,
``gpt-...``), each ``{"model": {...}, "train": {...}}``: the fields of a
model config and of a training config. :func:`read_recipe` reads one of them,
or a JSON file of the same shape (a run's ``run.json`` works), and checks it
against the config dataclasses it is meant to fill.
"""

from __future__ import annotations

import importlib.resources
import json
from pathlib import Path

from harmono.core import checks


def read_recipe(name_or_path: str, family: str, names: tuple[str, ...], sections: dict[str, type]) -> dict:
    """A config file ``{section: {field: value}}``: a built-in recipe or a JSON file (a ``run.json`` works).

    Parameters
    ----------
    name_or_path : str
        One of ``names`` (read from ``harmono/recipes/<family>-<name>.json``) or a JSON file.
    family : str
        The recipes' file-name prefix, e.g. ``"finetune"``.
    names : tuple of str
        The built-in recipes of the family.
    sections : dict of str -> type
        The sections the file must have, and the config dataclass each one fills; unknown fields
        are refused.

    Returns
    -------
    dict
        The file's JSON object, with at least the keys of ``sections``.

    Raises
    ------
    FileNotFoundError
        When ``name_or_path`` is neither a built-in recipe nor a file.
    ValueError
        When the file is not JSON, lacks a section, or a section has a field its config lacks or a
        value of another type than the field's.
    """
    if name_or_path in names:
        source = importlib.resources.files(__name__).joinpath(f"{family}-{name_or_path}.json")
    else:
        source = Path(name_or_path)
        if not source.is_file():
            raise FileNotFoundError(f"--config must be one of {names} or a JSON file, got {name_or_path!r}")
    try:
        record = json.loads(source.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{name_or_path} is not valid JSON ({err})") from err
    if not isinstance(record, dict) or not set(record) >= set(sections):
        raise ValueError(
            f"{name_or_path}: expected a JSON object with {' and '.join(map(repr, sections))}, "
            f"got {str(record)[:80]}"
        )
    for key, cls in sections.items():
        checks.require_known_fields(cls, record[key], f"{name_or_path}: {key}")
        checks.require_field_types(cls, record[key], f"{name_or_path}: {key}")
    return record
