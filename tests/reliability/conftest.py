"""Shared by the reliability tests: a digest of the files under a folder, proof a load wrote nothing."""

import hashlib
from pathlib import Path

import pytest


def tree_digest(root: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every file under ``root``."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


@pytest.fixture
def unchanged():
    """``unchanged(root)`` -> a function that asserts the files under ``root`` are byte-identical to now."""

    def snapshot(root: Path):
        before = tree_digest(root)
        return lambda: tree_digest(root) == before

    return snapshot
