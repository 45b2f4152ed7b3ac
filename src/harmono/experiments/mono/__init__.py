"""Experiments of the MonoScore and MonoLoss papers: synthetic latents on clusters, classifier finetuning."""
