"""Models: the toy MLP and transformer of the harmonic-loss experiments (and, later, GPT and classifiers)."""
