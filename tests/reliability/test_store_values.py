"""A shard overwritten in place with absurd values is refused when read for training, naming the shard."""

import hashlib

import numpy as np
import pytest

from harmono.cli import main
from harmono.features import FeatureStore, FeatureStoreWriter
from harmono.features.store_format import MAX_ABS_VALUE
from harmono.sae import SAEConfig
from harmono.sae.train import TrainConfig, train_sae

D_IN, ROWS, SHARD_ROWS = 8, 256, 64


def write_store(directory, dtype="float32"):
    x = np.random.default_rng(0).standard_normal((ROWS, D_IN)).astype(np.float32)
    with FeatureStoreWriter(
        directory, D_IN, {"dataset": "random"}, dtype=dtype, shard_rows=SHARD_ROWS
    ) as writer:
        writer.append(x, [str(i) for i in range(ROWS)], [0] * ROWS)
    return directory


def corrupt(directory, shard, value, dtype=np.float32):
    """Overwrite ``shard_<shard>.npy`` in place, same size, with ``value`` everywhere."""
    path = directory / f"shard_{shard:05d}.npy"
    size = path.stat().st_size
    np.save(path, np.full((SHARD_ROWS, D_IN), value, dtype=dtype))
    assert path.stat().st_size == size
    return path


def hashes(folder):
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(folder.iterdir())}


CONFIG = TrainConfig(epochs=1, batch_size=32, l2_normalize=True, b_dec_init="zeros", init_samples=32)


@pytest.mark.parametrize(
    ("dtype", "value"),
    [("float32", 3.3e38), ("float32", float("nan")), ("float32", -2e30), ("float16", float("inf"))],
)
def test_training_refuses_a_shard_of_absurd_values_and_names_it(tmp_path, dtype, value):
    store_dir = write_store(tmp_path / "store", dtype)
    path = corrupt(store_dir, 2, value, np.dtype(dtype))  # rows 128..191, past the init sample
    before = hashes(store_dir)
    store = FeatureStore(store_dir, verify="shape")  # the sizes match: opening passes
    with pytest.raises(ValueError, match="the shard is corrupted") as err:
        train_sae(
            SAEConfig("topk", d_in=D_IN, d_sae=16, k=2), CONFIG, store, tmp_path / "run", progress=False
        )
    assert str(path) in str(err.value)
    assert not (tmp_path / "run" / "sae").exists()
    assert hashes(store_dir) == before


def test_the_cli_exits_with_the_shard_named(tmp_path, capsys):
    store_dir = write_store(tmp_path / "store")
    path = corrupt(store_dir, 0, 3.3e38)  # the init sample reads it: refused before the run folder exists
    before = hashes(store_dir)
    command = ["sae", "train", "--arch", "topk", "--features", str(store_dir), "--out", str(tmp_path / "run")]
    assert (
        main([*command, "--d-sae", "16", "--k", "2", "--epochs", "1", "--batch-size", "32", "--no-progress"])
        == 2
    )
    assert str(path) in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    assert hashes(store_dir) == before


def test_every_reader_checks_and_names_the_row(tmp_path):
    store_dir = write_store(tmp_path / "store")
    path = store_dir / "shard_00001.npy"
    rows = np.load(path)
    rows[5, 3] = np.float32(1e31)
    np.save(path, rows)
    store = FeatureStore(store_dir, verify="shape")
    for batches in (store.view().batches(100), store.view().shuffled_batches(100, seed=0)):
        with pytest.raises(ValueError, match=r"row 5 \(store row 69\) holds 1e\+31 in column 3") as err:
            list(batches)
        assert str(path) in str(err.value)


def test_large_but_plausible_values_pass(tmp_path):
    store_dir = tmp_path / "store"
    with FeatureStoreWriter(store_dir, D_IN, {"dataset": "big"}, dtype="float32") as writer:
        writer.append(np.full((4, D_IN), MAX_ABS_VALUE / 10, np.float32), list("abcd"), [0] * 4)
    assert sum(len(batch.indices) for batch in FeatureStore(store_dir).view().batches(3)) == 4


def test_the_writer_refuses_what_the_reader_would(tmp_path):
    with FeatureStoreWriter(tmp_path / "store", D_IN, {"dataset": "big"}, dtype="float32") as writer:
        with pytest.raises(ValueError, match=r"within \+-1e\+30, got a largest magnitude of 3\.3e\+38"):
            writer.append(np.full((4, D_IN), 3.3e38, np.float32), list("abcd"), [0] * 4)
    assert FeatureStore(tmp_path / "store").shards == []
