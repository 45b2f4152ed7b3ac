"""Command-line options generated from a frozen config dataclass.

Each field becomes ``--<prefix>-<field-name>`` with the field's type, its
default and, as help, the one-line docstring written under the field. The
parsed values build the config back, so the CLI maps to the config one to
one and its ``__post_init__`` checks run on what the user typed.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import textwrap
import typing
from typing import Any, TypeVar

ConfigT = TypeVar("ConfigT")

_PARSEABLE = (int, float, str, bool)


def field_docs(cls: type) -> dict[str, str]:
    """Map each field of a dataclass to the docstring written under it.

    Parameters
    ----------
    cls : type
        A dataclass whose source is available.

    Returns
    -------
    dict
        ``{field name: first line of its docstring}``; fields without one are
        absent, and all are when the source cannot be read (a frozen app).
    """
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):
        return {}
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs = {}
    for node, following in zip(body, body[1:], strict=False):
        is_field = isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
        is_doc = isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)
        if is_field and is_doc and isinstance(following.value.value, str):
            docs[node.target.id] = following.value.value.strip().splitlines()[0]
    return docs


def _option(prefix: str, name: str) -> str:
    return f"--{prefix}-{name}".replace("_", "-") if prefix else f"--{name}".replace("_", "-")


def _dest(prefix: str, name: str) -> str:
    return f"{prefix}_{name}" if prefix else name


def add_config_arguments(
    parser: argparse._ActionsContainer,
    cls: type,
    prefix: str = "",
    exclude: tuple[str, ...] = (),
    layered: bool = False,
) -> None:
    """Add one option per field of the config dataclass ``cls`` to ``parser``.

    Only fields of type int, float, str or bool are supported; bools become
    ``--flag / --no-flag`` pairs. Fields in ``exclude`` get no option (the
    caller passes them to ``config_from_arguments``). With ``layered``, an
    option that is not typed leaves no attribute, so ``config_from_arguments``
    can take it from a ``base`` (a config file) before the field's default.
    """
    docs = field_docs(cls)
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if field.name in exclude:
            continue
        kind = hints[field.name]
        if kind not in _PARSEABLE:
            raise TypeError(f"{cls.__name__}.{field.name}: type {kind} has no command-line form")
        help_text = f"{docs.get(field.name, '')} (default: {field.default})".strip()
        default = argparse.SUPPRESS if layered else field.default
        option, dest = _option(prefix, field.name), _dest(prefix, field.name)
        if kind is bool:
            parser.add_argument(
                option,
                dest=dest,
                action=argparse.BooleanOptionalAction,
                default=default,
                help=help_text,
            )
        else:
            parser.add_argument(option, dest=dest, type=kind, default=default, help=help_text)


def config_from_arguments(
    cls: type[ConfigT], args: argparse.Namespace, prefix: str = "", base: dict | None = None, **given: Any
) -> ConfigT:
    """Build the config ``cls`` from options added by :func:`add_config_arguments`.

    ``given`` supplies the fields that were excluded from the options. For
    options added with ``layered=True``, a field's value is the typed option,
    else ``base[field]``, else the field's default.
    """
    base = base or {}
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        dest = _dest(prefix, field.name)
        if field.name in given:
            values[field.name] = given[field.name]
        elif hasattr(args, dest):
            values[field.name] = getattr(args, dest)
        else:
            values[field.name] = base.get(field.name, field.default)
    return cls(**values)
