"""The papers' experiments as plain functions that return results.

``harmonic/`` and ``mono/`` hold each paper's experiments; ``demo`` runs a small piece of each.
"""
