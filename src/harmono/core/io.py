"""Crash-safe file writes: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import json
import os
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


PRETRAINED_CONFIG = "config.json"
PRETRAINED_WEIGHTS = "model.safetensors"


def write_pretrained(directory: str | Path, state: dict, record: dict) -> Path:
    """Save a model: ``record`` + the harmono version as ``config.json``, ``state`` as safetensors."""
    from safetensors.torch import save

    from harmono.core.version import __version__

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cpu = {name: tensor.detach().cpu().contiguous() for name, tensor in state.items()}
    write_atomically(directory / PRETRAINED_WEIGHTS, lambda handle: handle.write(save(cpu)))
    write_json_atomically(directory / PRETRAINED_CONFIG, {**record, "harmono_version": __version__}, indent=1)
    return directory


def read_pretrained(directory: str | Path, what: str) -> tuple[dict, dict]:
    """``(config record without the version, tensors)`` of a model saved by ``write_pretrained``.

    ``what`` names the kind of model in the errors (a missing file, invalid JSON).
    """
    from safetensors.torch import load_file

    directory = Path(directory)
    for name in (PRETRAINED_CONFIG, PRETRAINED_WEIGHTS):
        if not (directory / name).is_file():
            raise FileNotFoundError(f"{directory} is not a saved {what}: {name} is missing")
    try:
        record = json.loads((directory / PRETRAINED_CONFIG).read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{directory / PRETRAINED_CONFIG} is not valid JSON ({err})") from err
    record.pop("harmono_version", None)
    return record, load_file(directory / PRETRAINED_WEIGHTS)


def load_fitting_state(module, state: dict, directory: str | Path) -> None:
    """``module.load_state_dict(state)`` if names and shapes match the module's, else ``ValueError``."""
    expected = {name: tuple(t.shape) for name, t in module.state_dict().items()}
    found = {name: tuple(t.shape) for name, t in state.items()}
    if expected != found:
        path = Path(directory) / PRETRAINED_WEIGHTS
        raise ValueError(f"{path} does not fit its config: expected {expected}, got {found}")
    module.load_state_dict(state)
