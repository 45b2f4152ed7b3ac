"""Datasets, all offline: images, text corpora, the algorithmic toy tasks, the 2-D point cases, analogies."""

from harmono.data.images import IMAGE_DATASETS, ImageSet, image_folder, load_image_dataset

__all__ = ["IMAGE_DATASETS", "ImageSet", "image_folder", "load_image_dataset"]
