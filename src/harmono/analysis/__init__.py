"""Measures and figures of representations and latents, over arrays and saved runs."""
