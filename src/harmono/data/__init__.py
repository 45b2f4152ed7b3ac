"""Datasets: image sets that work offline (and, later, algorithmic toys and text corpora)."""

from harmono.data.images import IMAGE_DATASETS, ImageSet, image_folder, load_image_dataset

__all__ = ["IMAGE_DATASETS", "ImageSet", "image_folder", "load_image_dataset"]
