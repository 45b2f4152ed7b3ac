"""Built-in run recipes as JSON (``finetune-<name>.json``: ``{"model": ..., "train": ...}``)."""
