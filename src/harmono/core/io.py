"""Crash-safe file writes (a reader sees the old file or the new one, never half of one) and checked reads.

Every read names the file, what was expected and what came when the file is missing or damaged:
JSON records, safetensors, ``config.json`` + safetensors models, and the pickled ``.pt`` files of
other libraries, which are only ever read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import io
import json
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

TMP_SUFFIX = ".tmp"


def _sync_directory(directory: Path) -> None:
    """Make a rename inside ``directory`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: Path, write: Callable[[BinaryIO], object]) -> Path:
    """Call ``write(handle)`` on a temporary file beside ``path``, sync it, rename it to ``path``.

    The directory is synced after the rename, so the new file survives a
    power loss once this returns. If ``write`` raises, the temporary file is
    removed and ``path`` is untouched.
    """
    tmp = path.with_name(path.name + TMP_SUFFIX)
    try:
        with tmp.open("wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _sync_directory(path.parent)
    return path


def write_json_atomically(path: Path, record: object, indent: int | None = None) -> Path:
    """Write ``record`` as JSON to ``path`` with ``write_atomically``.

    The record is serialised before anything is written, so a value JSON
    cannot hold raises ``TypeError`` with ``path`` untouched.
    """
    text = json.dumps(record, indent=indent).encode()
    return write_atomically(path, lambda handle: handle.write(text))


def read_json(path: str | Path, what: str, keys: tuple[str, ...] = (), objects: tuple[str, ...] = ()) -> dict:
    """The JSON object saved in ``path``, checked to hold ``keys``.

    Every JSON record harmono reads back (run records, results, manifests)
    goes through here, so a damaged one is reported the same way everywhere:
    the message names the file, what was expected and what came.

    Parameters
    ----------
    path : str or Path
        The file.
    what : str
        What the file should hold, e.g. ``"an SAE evaluation"``.
    keys : tuple of str
        Keys the object must have.
    objects : tuple of str
        Keys whose values, where present, must be JSON objects themselves.

    Returns
    -------
    dict
        The object.

    Raises
    ------
    FileNotFoundError
        ``path`` is not a file.
    ValueError
        ``path`` is not UTF-8 JSON, holds no JSON object, lacks one of ``keys``, or one of
        ``objects`` is not an object.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"expected {what} at {path}, found no file")
    try:
        record = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON: expected {what}, got the error {err}") from err
    if not isinstance(record, dict):
        raise ValueError(f"{path}: expected {what} (a JSON object), got {type(record).__name__}")
    missing = [key for key in keys if key not in record]
    if missing:
        raise ValueError(f"{path}: expected {what} with the keys {list(keys)}, got one without {missing}")
    for key in objects:
        if key in record and not isinstance(record[key], dict):
            raise ValueError(
                f"{path}: expected {what} whose {key!r} is a JSON object, got {type(record[key]).__name__}"
            )
    return record


PRETRAINED_CONFIG = "config.json"
PRETRAINED_WEIGHTS = "model.safetensors"
ARCHITECTURE_KEY = "harmono_architecture"
"""The key of the weights file's metadata that names the architecture the tensors were trained for."""


def read_safetensors(path: str | Path) -> tuple[dict, dict[str, str]]:
    """``(tensors, metadata)`` of the safetensors file ``path``, the tensors on the CPU.

    Every safetensors read of harmono goes through here, so a damaged file is
    reported the same way everywhere.

    Raises
    ------
    FileNotFoundError
        ``path`` is not a file.
    ValueError
        ``path`` is truncated or not a safetensors file (the message names it).
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"expected a safetensors file at {path}, found none")
    try:
        with safe_open(str(path), "pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.offset_keys()}
    except SafetensorError as err:
        raise ValueError(
            f"{path} is truncated or not a safetensors file: expected a complete safetensors file "
            f"({path.stat().st_size} bytes read), got the error {err}"
        ) from err
    return tensors, metadata


def read_torch_pickle(path: str | Path, what: str, start: int = 0) -> object:
    """What ``torch.load(..., weights_only=True)`` reads from ``path``: tensors, numbers, strings, containers.

    ``weights_only=True`` is passed explicitly, so ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` cannot turn
    it off: a file whose pickle would build anything else is refused without running it.

    Parameters
    ----------
    path : str or Path
        The file (a ``torch.save`` archive or legacy pickle).
    what : str
        What it should hold, for the errors (e.g. ``"EfficientNet weights"``).
    start : int
        Byte offset where the ``torch.save`` data begins (after a text header, as saev writes).

    Raises
    ------
    FileNotFoundError
        ``path`` is not a file.
    ValueError
        The pickle asks for more than plain data, or the file is truncated or not a torch file.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"expected {what} at {path}, found no file")
    with path.open("rb") as handle:
        handle.seek(start)
        data = io.BytesIO(handle.read())
    try:
        return torch.load(data, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(
            f"{path}: refused to load {what} that is not plain tensors, numbers, strings and containers "
            f"(the file's pickle asks for more: {err})"
        ) from err
    except (RuntimeError, EOFError, OSError) as err:
        raise ValueError(
            f"{path} is truncated or not a torch file: expected {what} ({path.stat().st_size} bytes), "
            f"got the error {err}"
        ) from err


def write_pretrained(directory: str | Path, state: dict, record: dict, architecture: str) -> Path:
    """Save a model: ``record`` + the harmono version as ``config.json``, ``state`` as safetensors.

    ``architecture`` (e.g. ``"sae/topk"``) is stored in the weights file's
    metadata; :func:`read_pretrained` refuses a ``config.json`` that names another.
    """
    from safetensors.torch import save

    from harmono.core.version import __version__

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cpu = {name: tensor.detach().cpu().contiguous() for name, tensor in state.items()}
    blob = save(cpu, {ARCHITECTURE_KEY: architecture})
    write_atomically(directory / PRETRAINED_WEIGHTS, lambda handle: handle.write(blob))
    write_json_atomically(directory / PRETRAINED_CONFIG, {**record, "harmono_version": __version__}, indent=1)
    return directory


def read_pretrained(directory: str | Path, what: str) -> tuple[dict, dict, str | None]:
    """``(config record without the version, tensors, architecture)`` of a ``write_pretrained`` model.

    ``what`` names the kind of model in the errors (a missing file, invalid
    JSON, a truncated weights file). The architecture is the one the weights
    file's metadata names (None for files saved before harmono stored it);
    pass it to :func:`load_fitting_state`.
    """
    directory = Path(directory)
    for name in (PRETRAINED_CONFIG, PRETRAINED_WEIGHTS):
        if not (directory / name).is_file():
            raise FileNotFoundError(f"{directory} is not a saved {what}: {name} is missing")
    path = directory / PRETRAINED_CONFIG
    try:
        record = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err})") from err
    if not isinstance(record, dict):
        raise ValueError(f"{path}: expected a JSON object of {what} settings, got {type(record).__name__}")
    record.pop("harmono_version", None)
    tensors, metadata = read_safetensors(directory / PRETRAINED_WEIGHTS)
    return record, tensors, metadata.get(ARCHITECTURE_KEY)


def shape_differences(expected: dict[str, tuple], found: dict[str, tuple]) -> str:
    """``missing [...], unexpected [...], mismatched shapes {...}``: how tensor shapes by name differ."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    mismatched = {
        name: f"expected {expected[name]}, got {found[name]}"
        for name in sorted(set(expected) & set(found))
        if expected[name] != found[name]
    }
    return f"missing {missing}, unexpected {unexpected}, mismatched shapes {mismatched}"


def load_fitting_state(
    module, state: dict, directory: str | Path, architecture: str, saved_architecture: str | None
) -> None:
    """``module.load_state_dict(state)`` if the weights fit the module, else ``ValueError``.

    They fit when the architecture ``config.json`` names (``architecture``)
    is the one the weights file was saved for (``saved_architecture``, None:
    not recorded) and the tensor names and shapes are the module's. The
    error lists the missing, unexpected and mismatched tensors.
    """
    path = Path(directory) / PRETRAINED_WEIGHTS
    config = Path(directory) / PRETRAINED_CONFIG
    if saved_architecture is not None and saved_architecture != architecture:
        raise ValueError(
            f"{path} does not fit its config: expected weights of the architecture {config} names, "
            f"{architecture!r}, got weights saved for {saved_architecture!r}"
        )
    expected = {name: tuple(t.shape) for name, t in module.state_dict().items()}
    found = {name: tuple(t.shape) for name, t in state.items()}
    if expected != found:
        raise ValueError(
            f"{path} does not fit its config: expected the tensors of the {architecture!r} {config} names, "
            f"got {shape_differences(expected, found)}"
        )
    module.load_state_dict(state)
