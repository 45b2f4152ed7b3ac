"""The papers' experiments as plain functions that return results."""
