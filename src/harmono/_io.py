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
