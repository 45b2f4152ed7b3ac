"""Crash-safe file writes: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def write_atomically(path: Path, write: Callable[[BinaryIO], object]) -> Path:
    """Call ``write(handle)`` on a temporary file beside ``path``, sync it, rename it to ``path``."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as handle:
        write(handle)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)
    return path


def write_json_atomically(path: Path, record: object, indent: int | None = None) -> Path:
    """Write ``record`` as JSON to ``path`` with ``write_atomically``."""
    return write_atomically(path, lambda handle: handle.write(json.dumps(record, indent=indent).encode()))
