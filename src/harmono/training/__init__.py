"""What the three trainers (SAE, GPT, classifier finetuning) share.

- ``runs``: the run file, the metric log, resumability checks, precision and autocast, the process group.
- ``checkpoint``: atomic safetensors checkpoints of model and optimizer state, resumed bit-exactly.
"""
