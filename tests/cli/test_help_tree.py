"""The ``harmono --help`` tree is the CLI's contract: every command, option, default and help text.

The tree is compared with a committed copy, so that moving code around cannot drop or change a
command or a flag unnoticed. After an intended change to the command line, rewrite the copy with
``HARMONO_WRITE_HELP_TREE=1 pytest tests/cli/test_help_tree.py`` and review its diff.
"""

import argparse
import json
import os
from pathlib import Path

from harmono.cli import build_parser

COPY = Path(__file__).with_name("help_tree.json")


def _describe(parser: argparse.ArgumentParser) -> dict:
    options, commands = [], {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, child in action.choices.items():
                commands[name] = {"help": helps.get(name), **_describe(child)}
            continue
        options.append(
            {
                "flags": list(action.option_strings),
                "dest": action.dest,
                "kind": type(action).__name__,
                "nargs": action.nargs,
                "default": repr(action.default),
                "choices": None if action.choices is None else [repr(c) for c in action.choices],
                "required": action.required,
                "metavar": action.metavar if isinstance(action.metavar, str | None) else list(action.metavar),
                "help": action.help,
            }
        )
    return {"description": parser.description, "options": options, "commands": commands}


def test_the_help_tree_equals_the_committed_copy():
    tree = _describe(build_parser())
    if os.environ.get("HARMONO_WRITE_HELP_TREE") == "1":
        COPY.write_text(json.dumps(tree, indent=1, sort_keys=True) + "\n")
    committed = json.loads(COPY.read_text())
    assert tree == committed, "the CLI changed; see this module's docstring"


def test_the_tree_reaches_the_leaf_commands():
    """The walk itself must see nested commands and their flags (else the comparison proves little)."""
    tree = _describe(build_parser())
    toy_suite = tree["commands"]["toy"]["commands"]["suite"]
    assert any("--samplings" in option["flags"] for option in toy_suite["options"])
    assert {"demo", "sae", "gpt", "toy", "features", "finetune"} <= set(tree["commands"])
