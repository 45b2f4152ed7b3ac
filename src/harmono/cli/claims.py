"""``harmono claims``: the harmonic-loss paper's claims beside the committed results, as a Markdown table."""

from __future__ import annotations

import argparse

from harmono.experiments.harmonic.claims import SECTION, claim_rows
from harmono.report.marked_sections import update_marked_sections
from harmono.report.text_table import format_table


def _claims(args: argparse.Namespace) -> int:
    text = format_table(*claim_rows(args.results), markdown=True)
    print(text)
    for line in update_marked_sections(args.write or [], text, SECTION):
        print(line)
    return 0


def add_claims_command(sub: argparse._SubParsersAction) -> None:
    """Add ``harmono claims`` to the top-level parser's subcommands ``sub``."""
    claims = sub.add_parser(
        "claims", help="the harmonic-loss paper's claims beside harmono's committed results"
    )
    claims.add_argument("--results", default="results", help="folder with toy/ and gpt/ (default: results)")
    claims.add_argument("--write", nargs="+", help="files whose harmonic-claims markers to fill")
    claims.set_defaults(func=_claims)
