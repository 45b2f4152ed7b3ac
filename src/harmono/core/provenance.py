"""Where a committed result comes from: harmono's commit, torch, the machine."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

import torch


def provenance() -> dict:
    """The git commit of harmono's checkout and whether tracked files differ from it, torch, machine.

    ``harmono_commit`` and ``dirty`` are ``None`` outside a git checkout.
    """
    root = Path(__file__).resolve().parents[3]
    commit, dirty = None, None
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root, capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        dirty = bool(status.strip())
    except (OSError, subprocess.CalledProcessError):
        pass
    return {
        "harmono_commit": commit,
        "dirty": dirty,
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
    }


def exported_provenance() -> dict:
    """:func:`provenance` taken now, for a record exported from a run that did not keep its own.

    Marked ``taken_at_export``: the commit is the exporting checkout's, not
    necessarily the one the run trained at.
    """
    return {**provenance(), "taken_at_export": True}
