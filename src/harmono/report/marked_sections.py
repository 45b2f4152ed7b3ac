"""Generated Markdown between two marker lines of a hand-written file (README, docs)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


def markers(name: str) -> tuple[str, str]:
    """The begin and end lines of the section ``name``: ``<!-- name:begin -->``, ``<!-- name:end -->``."""
    return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"


def update_marked_section(path: str | Path, text: str, name: str) -> bool:
    """Put ``text`` between the markers of section ``name`` in ``path``; ``True`` if the file changed.

    The file is written only when the text differs, and refused (left as it
    was) unless it holds each marker once, begin before end.
    """
    path = Path(path)
    begin, end = markers(name)
    content = path.read_text()
    found = content.count(begin), content.count(end)
    if found != (1, 1) or content.index(begin) > content.index(end):
        raise ValueError(
            f"{path}: expected one {begin!r} line before one {end!r} line, found {found[0]} and {found[1]}"
        )
    head, rest = content.split(begin)
    _, tail = rest.split(end)
    updated = f"{head}{begin}\n{text.strip()}\n{end}{tail}"
    if updated == content:
        return False
    path.write_text(updated)
    return True


def update_marked_sections(paths: Iterable[str | Path], text: str, name: str) -> list[str]:
    """:func:`update_marked_section` for each of ``paths``: a line per file for the command to print.

    Each line is ``"<path>: updated"`` or ``"<path>: already up to date"``.
    """
    return [
        f"{path}: {'updated' if update_marked_section(path, text, name) else 'already up to date'}"
        for path in paths
    ]
