"""Every ``harmono`` command the README and the guides quote parses with the CLI's own parser.

A command in a shell block, or with options in a table cell, must be complete: it runs as written
once its placeholders are filled. A command named in prose or bare in a table may leave out
required arguments (it names the command, as in "`harmono sae train --out DIR` refuses ..."), but
every option it shows must exist and take the value it is given.
"""

import contextlib
import io
import re
import shlex

import pytest

from documents import DOCUMENTS
from harmono.cli.main import build_parser

PARSER = build_parser()
SUBCOMMANDS = set(PARSER._subparsers._group_actions[0].choices)
PLACEHOLDERS = {"T": "lattice"}
"""Placeholder words of the docs and a value the parser accepts for them (paths need none)."""
MISSING_ARGUMENTS = ("the following arguments are required", "one of the arguments")
"""argparse's messages for a missing required argument, alone or from a required group."""


def _is_command(text: str) -> bool:
    words = text.split()
    return len(words) > 1 and words[0] == "harmono" and words[1] in SUBCOMMANDS


def _expand(line: str, variables: dict[str, str]) -> str:
    line = re.sub(r"\$\(seq (\d+) (\d+)\)", r"\1 \2", line)

    def value(match: re.Match) -> str:
        name = match.group(1) or match.group(2)
        assert name in variables, f"${name} in {line!r} is set nowhere in its block"
        return variables[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, line)


def block_commands(text: str) -> list[str]:
    """The ``harmono`` lines of the fenced blocks, continuation lines joined and variables filled.

    A variable takes the value its block gives it: an assignment, the first value of a ``for``
    loop, or the words of ``set --``.
    """
    commands = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.DOTALL):
        variables: dict[str, str] = {}
        for line in block.replace("\\\n", " ").splitlines():
            line = _expand(line.strip().removeprefix("$ ").split(" #")[0].removesuffix("; do"), variables)
            if loop := re.fullmatch(r"for (\w+) in (.+)", line):
                variables[loop.group(1)] = shlex.split(loop.group(2))[0]
            elif assignment := re.fullmatch(r"(\w+)=(.+)", line):
                variables[assignment.group(1)] = shlex.split(assignment.group(2))[0]
            elif line.startswith("set -- "):
                variables.update({str(i): word for i, word in enumerate(line.split()[2:], start=1)})
            elif _is_command(line):
                commands.append(" ".join(line.split()))
    return commands


def inline_commands(text: str) -> list[tuple[str, bool]]:
    """``(command, complete)`` for each inline ``harmono`` span outside the blocks.

    A table cell with options is a complete command; a bare name or a span in prose names one.
    """
    commands = []
    prose = re.sub(r"```.*?```", "", text, flags=re.DOTALL)
    for paragraph in re.split(r"\n\s*\n", prose):
        for match in re.finditer(r"`([^`]+)`", paragraph):
            span = " ".join(match.group(1).split())
            if _is_command(span):
                line_start = paragraph.rfind("\n", 0, match.start()) + 1
                in_table = paragraph[line_start:].lstrip().startswith("|")
                commands.append((span, in_table and " --" in span))
    return commands


def _arguments(command: str) -> list[str]:
    return [PLACEHOLDERS.get(word, word) for word in shlex.split(command)[1:]]


def parse_error(command: str) -> str | None:
    """The parser's error for ``command`` (its last line), or None if it parses."""
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            PARSER.parse_args(_arguments(command))
    except SystemExit as exit_:
        if exit_.code:
            return stderr.getvalue().strip().splitlines()[-1]
    return None


def _quoted(text: str) -> list[tuple[str, bool]]:
    return [(command, True) for command in block_commands(text)] + inline_commands(text)


CASES = [
    pytest.param(command, complete, id=f"{path.name}:{command[:60]}")
    for path in DOCUMENTS
    for command, complete in _quoted(path.read_text())
]


def test_the_docs_quote_commands():
    complete = [case for case in CASES if case.values[1]]
    assert len(complete) >= 50


@pytest.mark.parametrize(("command", "complete"), CASES)
def test_quoted_command_parses(command, complete):
    error = parse_error(command)
    if error is not None and not complete:
        assert any(message in error for message in MISSING_ARGUMENTS), f"{command!r}: {error}"
    else:
        assert error is None, f"{command!r}: {error}"


def test_a_command_without_its_required_output_fails_when_complete():
    assert MISSING_ARGUMENTS[0] in parse_error("harmono toy suite --archs mlp")
    assert MISSING_ARGUMENTS[1] in parse_error("harmono mnist --dataset mnist")
    assert "invalid choice" in parse_error("harmono toy suite --archs conv --out runs/x")
    assert parse_error("harmono toy efficiency --task T --out runs/x") is None


def test_table_cells_and_blocks_are_complete_commands_and_prose_names_are_not():
    text = (
        "Prose names `harmono sae train --out DIR` here.\n\n"
        "| a | `harmono toy suite --archs mlp` | `harmono gpt sample` |\n\n"
        "```bash\nharmono toy run --task modadd \\\n    --out runs/x  # one\n```\n"
        '```bash\nARGS="--seeds 2"\nfor s in 3 4; do\n  set -- $s b\n'
        "  harmono toy run $ARGS --seed $1\ndone\n```\n"
    )
    assert inline_commands(text) == [
        ("harmono sae train --out DIR", False),
        ("harmono toy suite --archs mlp", True),
        ("harmono gpt sample", False),
    ]
    assert block_commands(text) == [
        "harmono toy run --task modadd --out runs/x",
        "harmono toy run --seeds 2 --seed 3",
    ]
