"""Input checks shared by the public functions.

Every check raises ``ValueError`` with a message that says what was expected
and what came, so a user can fix the call without reading the source. Checks
that only look at shapes and dtypes are free and always on; checks that read
the data (NaN/inf, label range) synchronise with the device and can be
switched off by the caller.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import operator
import typing
from numbers import Real

import torch


def require_tensor(name: str, value: object) -> torch.Tensor:
    """Return ``value`` if it is a tensor, else raise a ``ValueError``."""
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    return value


def require_floating(name: str, tensor: torch.Tensor) -> None:
    """Raise unless ``tensor`` has a floating-point dtype."""
    if not tensor.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {tensor.dtype}")


def require_integer(name: str, tensor: torch.Tensor) -> None:
    """Raise unless ``tensor`` has an integer dtype (not bool)."""
    if tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool:
        raise ValueError(f"{name} must be an integer tensor (e.g. torch.long), got dtype {tensor.dtype}")


def require_ndim(name: str, tensor: torch.Tensor, ndim: int, shape_doc: str) -> None:
    """Raise unless ``tensor`` has exactly ``ndim`` dimensions."""
    if tensor.ndim != ndim:
        raise ValueError(f"{name} must have shape {shape_doc} ({ndim}-D), got shape {tuple(tensor.shape)}")


def require_non_empty(name: str, tensor: torch.Tensor, shape_doc: str) -> None:
    """Raise if ``tensor`` holds no element."""
    if tensor.numel() == 0:
        raise ValueError(f"{name} must not be empty: expected shape {shape_doc}, got {tuple(tensor.shape)}")


def require_finite(name: str, tensor: torch.Tensor) -> float:
    """Raise if ``tensor`` holds a NaN or an infinity (reads the data).

    One reduction pass with no tensor-sized temporary: min and max propagate
    NaN and reach +-inf whenever the tensor holds one.

    Returns
    -------
    float
        The largest absolute value (0.0 for an empty tensor).
    """
    if tensor.numel() == 0:
        return 0.0
    low, high = (v.item() for v in torch.aminmax(tensor.detach()))
    if math.isfinite(low) and math.isfinite(high):
        return max(-low, high)
    bad = int((~torch.isfinite(tensor)).sum())
    n_nan = int(torch.isnan(tensor).sum())
    raise ValueError(
        f"{name} contains {bad} non-finite value(s) ({n_nan} NaN, {bad - n_nan} inf) "
        f"out of {tensor.numel()}; expected finite values (pass validate=False to skip this check)"
    )


def require_nonzero_rows(name: str, rows: torch.Tensor, needed_by: str) -> None:
    """Raise if a row of ``rows`` (``(..., D)``) is the zero vector (reads the data).

    ``needed_by`` names what needs a direction, e.g. ``'distance="cosine"'``.
    """
    zero = int((torch.linalg.vector_norm(rows, dim=-1) == 0).sum())
    if zero:
        raise ValueError(
            f"{name} has {zero} zero vector(s): {needed_by} is undefined for them "
            "(pass validate=False to skip this check)"
        )


def require_positive_number(name: str, value: object) -> float:
    """Return ``value`` (a number or one-element tensor) as a float if finite and > 0, else raise."""
    if isinstance(value, torch.Tensor) and value.numel() == 1 and value.dtype != torch.bool:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ValueError(f"{name} must be a positive real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value}")
    return value


def require_non_negative_number(name: str, value: float) -> float:
    """Return ``value`` as a float if finite and >= 0, else raise."""
    value = float(value)
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    return value


def require_at_least(owner: object, names: tuple[str, ...], minimum: int) -> None:
    """Raise unless every attribute ``names`` of ``owner`` (e.g. a config) is ``>= minimum``."""
    for name in names:
        value = getattr(owner, name)
        if value < minimum:
            raise ValueError(f"{name} must be >= {minimum}, got {value}")


def require_positive_int(name: str, value: object) -> int:
    """Return ``value`` as an int if it is an integer >= 1 (Python, numpy or 0-d tensor; not a bool)."""
    try:
        number = operator.index(value)
    except TypeError:
        number = None
    if isinstance(value, bool) or number is None or number < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return number


def require_package(module: str, needed_by: str, install: str) -> None:
    """Raise ``ModuleNotFoundError`` saying how to install ``module`` unless it is importable."""
    if importlib.util.find_spec(module) is None:
        raise ModuleNotFoundError(f"{needed_by} needs the package {module!r}: {install}")


def require_choice(name: str, value: object, choices: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value  # type: ignore[return-value]


def require_class_targets(
    target: object,
    batch_shape: tuple[int, ...],
    num_classes: int,
    ignore_index: int | None = None,
    read_values: bool = True,
    *,
    name: str = "target",
    shape_doc: str | None = None,
) -> torch.Tensor:
    """Check integer class indices of shape ``batch_shape`` in ``[0, num_classes)``; return them.

    Entries equal to ``ignore_index`` (when given) are allowed anywhere. The
    range check reads the data and runs only when ``read_values`` is true.
    ``shape_doc`` describes the expected shape in the error message.
    """
    target = require_tensor(name, target)
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        raise ValueError(
            f"{name} must hold integer class indices (e.g. torch.long), got dtype {target.dtype}"
        )
    if target.shape != tuple(batch_shape):
        raise ValueError(
            f"{name} must have {shape_doc or f'shape {tuple(batch_shape)}'}, got {tuple(target.shape)}"
        )
    if not read_values:
        return target
    counted = target if ignore_index is None else target[target != ignore_index]
    if counted.numel() == 0:
        return target
    low, high = int(counted.min()), int(counted.max())
    if low < 0 or high >= num_classes:
        allowed = "" if ignore_index is None else f" (or ignore_index={ignore_index})"
        expected = f"[0, {num_classes - 1}]{allowed}"
        raise ValueError(f"{name} has class indices in [{low}, {high}], expected values in {expected}")
    return target


def require_known_fields(cls: type, record: dict, what: str) -> None:
    """Raise unless every key of ``record`` is a field of the dataclass ``cls`` (``what`` names it)."""
    known = {field.name for field in dataclasses.fields(cls)}
    unknown = sorted(set(record) - known)
    if unknown:
        raise ValueError(f"expected {what} fields {sorted(known)}, got unknown {unknown}")


_FIELD_TYPES = {
    bool: lambda value: isinstance(value, bool),
    int: lambda value: isinstance(value, int) and not isinstance(value, bool),
    float: lambda value: isinstance(value, (int, float)) and not isinstance(value, bool),
    str: lambda value: isinstance(value, str),
}
"""Annotation -> whether a value has it: a bool is no int and no float, an int may stand for a float."""


def require_field_types(cls: type, record: dict, source: str) -> None:
    """Raise unless every entry of ``record`` has the type its dataclass field of ``cls`` is annotated with.

    Fields annotated ``bool``, ``int``, ``float`` or ``str`` are checked; the
    others are left to the dataclass' own checks, unknown keys to
    :func:`require_known_fields`. ``source`` names where the record came from
    (a file); the message says which field, the type expected and what came.
    """
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        fits = _FIELD_TYPES.get(hints[field.name])
        if field.name in record and fits is not None and not fits(record[field.name]):
            value = record[field.name]
            raise ValueError(
                f"{source}: field {field.name!r} expected {hints[field.name].__name__}, "
                f"got {type(value).__name__} {value!r}"
            )
