"""Experiments of the harmonic-loss paper: the 2-D point cases, the algorithmic toy tasks, MNIST, GPT."""
