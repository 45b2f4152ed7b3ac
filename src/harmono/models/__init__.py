"""Trainable models: the toy-task MLP and transformer, GPT, classifiers on an encoder backbone, LoRA."""
