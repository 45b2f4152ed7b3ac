"""Metrics and figures computed from trained models and results."""
