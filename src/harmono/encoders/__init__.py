"""Image encoders by name, from local weights only: feature extraction and finetuning backbones."""
