"""An evaluated SAE run on a store of (fake) Fashion-MNIST images, shared by the report tests."""

import numpy as np
import pytest
import torch

from fake_data import fake_fashion_mnist
from harmono.cli import main
from harmono.data.images import FASHION_MNIST_ENV, load_image_dataset
from harmono.features import FeatureStoreWriter
from harmono.sae import SAEConfig, create_sae

ROWS, D_IN, D_SAE = 120, 12, 40


@pytest.fixture(scope="module")
def sae_run(tmp_path_factory):
    """``(run_dir, store_dir, images)``: an SAE evaluated by ``harmono sae eval`` on 120 test images.

    The fake Fashion-MNIST stays the one ``$HARMONO_FASHION_MNIST`` names for the module's tests.
    """
    root = tmp_path_factory.mktemp("report")
    folder = fake_fashion_mnist(root / "fm", n_train=10, n_test=ROWS)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(FASHION_MNIST_ENV, str(folder))
        images = load_image_dataset("fashion-mnist", "test")
        features = np.random.default_rng(0).normal(size=(ROWS, D_IN)).astype(np.float32)
        metadata = {"dataset": images.name, "class_names": list(images.class_names)}
        with FeatureStoreWriter(root / "store", D_IN, metadata, dtype="float32", shard_rows=50) as writer:
            writer.append(features, list(images.ids), images.labels.tolist())
        torch.manual_seed(0)
        create_sae(SAEConfig("topk", d_in=D_IN, d_sae=D_SAE, k=3)).save_pretrained(root / "run" / "sae")
        argv = [
            "sae",
            "eval",
            str(root / "run"),
            "--features",
            str(root / "store"),
            "--batch-size",
            "32",
            "--no-progress",
        ]
        assert main(argv) == 0
        yield root / "run", root / "store", images
