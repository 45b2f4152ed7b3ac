"""A paper's claim checked on measured numbers: what every experiment reports."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Claim:
    """A statement from a paper (or about a check) and whether a run supports it."""

    text: str
    """The statement, with the numbers it was judged on."""
    holds: bool
    """Whether the measured numbers support it."""
