"""Presentation of results: the HTML report, text tables, the generated sections of the README and docs."""
