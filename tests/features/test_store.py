import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from harmono.features import FeatureStore, FeatureStoreWriter, store_writer

N, D = 1000, 8
META = {"encoder": "synthetic", "output": "pooled", "dataset": "test/train", "class_names": ["a", "b", "c"]}


def features_of(ids):
    """Deterministic features from ids, so any row can be checked after a crash."""
    numbers = np.asarray([int(i.split(":")[1]) for i in ids], dtype=np.float64) + 1.0
    return np.stack([np.sin(numbers * (j + 1)) * (j + 1) for j in range(D)], axis=1).astype(np.float32)


def all_ids(n=N):
    return [f"s:{i}" for i in range(n)]


def write_store(path, dtype="float32", shard_rows=256, batch=37, n=N):
    ids = all_ids(n)
    with FeatureStoreWriter(path, D, META, dtype=dtype, shard_rows=shard_rows) as writer:
        for start in range(0, n, batch):
            chunk = ids[start : start + batch]
            writer.append(features_of(chunk), chunk, [int(i.split(":")[1]) % 3 for i in chunk])
    return ids


def test_round_trip_sequential_batches(tmp_path):
    ids = write_store(tmp_path)
    store = FeatureStore(tmp_path)
    assert len(store) == N and store.complete and store.ids == ids
    assert [s.shape[0] for s in store.shards] == [256, 256, 256, 232]
    batches = list(store.view().batches(100))
    features = torch.cat([b.features for b in batches])
    assert torch.equal(features, torch.from_numpy(features_of(ids)))
    assert torch.equal(torch.cat([b.indices for b in batches]), torch.arange(N))
    assert torch.cat([b.labels for b in batches]).tolist() == [i % 3 for i in range(N)]
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["metadata"] == META and manifest["dim"] == D and len(manifest["shards"]) == 4


def test_float16_storage_and_random_access(tmp_path):
    ids = write_store(tmp_path, dtype="float16")
    store = FeatureStore(tmp_path, verify="shape")
    expected = torch.from_numpy(features_of(ids).astype(np.float16).astype(np.float32))
    for index in (0, 255, 256, 511, 999, -1):
        row, label = store[index]
        assert torch.equal(row, expected[index]) and label == (index % N) % 3
    with pytest.raises(IndexError):
        store[N]
    stored = torch.cat([b.features for b in store.view().batches(300, dtype=None)])
    assert stored.dtype == torch.float16 and torch.equal(stored.float(), expected)
    shuffled = next(iter(store.view().shuffled_batches(50, seed=1, dtype=None, normalize=True)))
    assert shuffled.features.dtype == torch.float16
    torch.testing.assert_close(shuffled.features.float().norm(dim=1), torch.ones(50), atol=2e-3, rtol=0)
    assert torch.equal(store.view(250, 260)[7][0], expected[257])


def test_normalised_reads_leave_the_stored_data_alone(tmp_path):
    ids = write_store(tmp_path)
    store = FeatureStore(tmp_path)
    rows = torch.cat([b.features for b in store.view().batches(300, normalize=True)])
    torch.testing.assert_close(rows.norm(dim=1), torch.ones(N))
    assert torch.equal(store[5][0], torch.from_numpy(features_of(ids[5:6])[0]))


def test_shuffled_batches_are_a_seeded_permutation(tmp_path):
    write_store(tmp_path)
    view = FeatureStore(tmp_path).view()

    def order(seed, **kw):
        return torch.cat([b.indices for b in view.shuffled_batches(64, seed, **kw)])

    first = order(3, buffer_rows=300, block_rows=50)
    assert sorted(first.tolist()) == list(range(N))
    assert torch.equal(first, order(3, buffer_rows=300, block_rows=50))
    assert not torch.equal(first, order(4, buffer_rows=300, block_rows=50))
    assert not torch.equal(first, torch.arange(N))
    for batch in view.shuffled_batches(64, 3, buffer_rows=300, block_rows=50):
        assert torch.equal(batch.features, torch.from_numpy(features_of([f"s:{i}" for i in batch.indices])))


def test_rank_views_are_disjoint_and_cover_the_store(tmp_path):
    write_store(tmp_path)
    store = FeatureStore(tmp_path)
    for equal, sizes in ((True, [333] * 3), (False, [333, 333, 334])):
        views = [store.rank_view(rank, 3, equal=equal) for rank in range(3)]
        assert [len(v) for v in views] == sizes
        seen = [i for v in views for i in torch.cat([b.indices for b in v.batches(128)]).tolist()]
        assert sorted(seen) == list(range(sum(sizes))) and len(set(seen)) == len(seen)
    loader = torch.utils.data.DataLoader(store.rank_view(1, 3), batch_size=50)
    features, labels = next(iter(loader))
    assert features.shape == (50, D) and labels.dtype == torch.int64
    with pytest.raises(ValueError, match=r"rank must lie in \[0, 3\)"):
        store.rank_view(3, 3)
    with pytest.raises(ValueError, match="world_size must be a positive int, got"):
        store.rank_view(0, 0)


def test_shuffled_batches_of_a_rank_view_cover_exactly_its_rows(tmp_path):
    write_store(tmp_path)
    view = FeatureStore(tmp_path).rank_view(2, 3)
    batches = list(view.shuffled_batches(64, seed=1, buffer_rows=100, block_rows=30))
    indices = torch.cat([b.indices for b in batches])
    assert sorted(indices.tolist()) == list(range(view.start, view.stop))
    expected = torch.from_numpy(features_of(all_ids()))[indices]
    assert torch.equal(torch.cat([b.features for b in batches]), expected)


def test_read_sizes_and_ranges_are_checked(tmp_path):
    write_store(tmp_path, n=40)
    store = FeatureStore(tmp_path)
    view = store.view()
    for call, name in (
        (lambda: next(view.batches(0)), "batch_size"),
        (lambda: next(view.batches(-1)), "batch_size"),
        (lambda: next(view.shuffled_batches(8, seed=0, block_rows=-1)), "block_rows"),
        (lambda: next(view.shuffled_batches(8, seed=0, buffer_rows=0)), "buffer_rows"),
    ):
        with pytest.raises(ValueError, match=f"{name} must be a positive int, got"):
            call()
    for start, stop in ((0, 41), (-1, 1), (5, 4)):
        with pytest.raises(ValueError, match=r"expected rows with 0 <= start <= stop <= 40"):
            store.rows(start, stop)


def test_corrupted_truncated_and_missing_shards_are_detected(tmp_path):
    write_store(tmp_path)
    shard = tmp_path / "shard_00001.npy"
    data = bytearray(shard.read_bytes())
    data[-5] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="shard_00001.npy does not match its checksum"):
        FeatureStore(tmp_path)
    shard.write_bytes(bytes(data[:-100]))
    with pytest.raises(ValueError, match="shard_00001.npy.*truncated"):
        FeatureStore(tmp_path, verify="shape")
    shard.unlink()
    with pytest.raises(FileNotFoundError, match="shard_00001.npy is listed in the manifest but missing"):
        FeatureStore(tmp_path, verify="shape")
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ValueError, match="manifest.json is not valid JSON"):
        FeatureStore(tmp_path)
    with pytest.raises(FileNotFoundError, match="is not a feature store"):
        FeatureStore(tmp_path / "elsewhere")


def test_an_interrupted_writer_resumes_without_duplicates(tmp_path):
    ids = all_ids()
    with pytest.raises(KeyboardInterrupt):
        with FeatureStoreWriter(tmp_path, D, META, dtype="float32", shard_rows=256) as writer:
            writer.append(features_of(ids[:600]), ids[:600], [0] * 600)  # two shards, 88 rows buffered
            raise KeyboardInterrupt
    resumed = FeatureStoreWriter(tmp_path, D, {**META, "class_names": ("a", "b", "c")}, "float32", 256)
    todo = resumed.remaining(ids)
    assert todo == list(range(512, N))
    rest = [ids[i] for i in todo]
    resumed.append(features_of(rest), rest, [0] * len(rest))
    resumed.close()
    store = FeatureStore(tmp_path)
    assert store.ids == ids and torch.equal(
        torch.cat([b.features for b in store.view().batches(N)]), torch.from_numpy(features_of(ids))
    )


def test_crash_between_shard_and_manifest_resumes(tmp_path, monkeypatch):
    """The shard file is renamed into place, then the writer dies before the manifest names it."""
    ids = all_ids(300)
    writer = FeatureStoreWriter(tmp_path, D, META, dtype="float32", shard_rows=100)
    writer.append(features_of(ids[:100]), ids[:100], [0] * 100)

    def die(directory, manifest):
        raise KeyboardInterrupt

    monkeypatch.setattr(store_writer, "write_manifest", die)
    with pytest.raises(KeyboardInterrupt):
        writer.append(features_of(ids[100:200]), ids[100:200], [0] * 100)
    monkeypatch.undo()
    writer._release_lock()  # what the operating system does for a killed process
    (tmp_path / "shard_00002.npy.tmp").write_bytes(b"half a shard")
    assert (tmp_path / "shard_00001.npy").is_file()  # on disk, not in the manifest
    resumed = FeatureStoreWriter(tmp_path, D, META, dtype="float32", shard_rows=100)
    assert not list(tmp_path.glob("*.tmp"))
    todo = [ids[i] for i in resumed.remaining(ids)]
    assert todo == ids[100:]
    resumed.append(features_of(todo), todo, [0] * len(todo))
    resumed.close()
    store = FeatureStore(tmp_path)
    assert store.ids == ids and np.array_equal(store.rows(0, 300), features_of(ids))


def test_a_second_writer_is_locked_out(tmp_path):
    writer = FeatureStoreWriter(tmp_path, D, META)
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            f"from harmono.features import FeatureStoreWriter as W; W({str(tmp_path)!r}, 8, {{}})",
        ],
        capture_output=True,
        text=True,
    )
    assert child.returncode != 0 and "being written by another process" in child.stderr
    writer.close()
    FeatureStoreWriter(tmp_path, D, META).close()


def test_float16_overflow_is_rejected(tmp_path):
    writer = FeatureStoreWriter(tmp_path, D, META, dtype="float16", shard_rows=2)
    big = features_of(all_ids(2))
    big[0, 0] = 1e5
    with pytest.raises(ValueError, match=r"expected features within \+-65504 for a float16 store"):
        writer.append(big, all_ids(2), [0, 0])
    writer.append(big / 10, all_ids(2), [0, 0])
    writer.close()
    assert np.isfinite(FeatureStore(tmp_path).rows(0, 2, np.float32)).all()


def test_metadata_json_cannot_hold_is_rejected_before_writing(tmp_path):
    with pytest.raises(ValueError, match="expected JSON-ready metadata"):
        FeatureStoreWriter(tmp_path, D, {**META, "count": np.int64(3)})
    assert not (tmp_path / "manifest.json").exists() and not list(tmp_path.glob("*.tmp"))


def test_damaged_stores_are_reported_on_resume_and_open(tmp_path):
    write_store(tmp_path, n=600)
    (tmp_path / "shard_00001.npy").write_bytes(b"")
    for open_store in (
        lambda: FeatureStore(tmp_path, verify="shape"),
        lambda: FeatureStoreWriter(tmp_path, D, META, dtype="float32", shard_rows=256),
    ):
        with pytest.raises(ValueError, match="shard_00001.npy is not a readable .npy shard"):
            open_store()
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["shards"][0]["labels"].pop()
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(
        ValueError, match="expected 256 ids and labels for shard_00000.npy, got 256 ids and 255"
    ):
        FeatureStore(tmp_path, verify="shape")


def test_writer_rejects_bad_input(tmp_path):
    writer = FeatureStoreWriter(tmp_path, D, META, shard_rows=4)
    ids = all_ids(6)
    with pytest.raises(ValueError, match=r"features must have shape \(B, 8\)"):
        writer.append(np.zeros((2, 3)), ids[:2], [0, 0])
    with pytest.raises(ValueError, match="one id and one label per row"):
        writer.append(features_of(ids[:2]), ids[:1], [0, 0])
    bad = features_of(ids[:2])
    bad[1, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        writer.append(bad, ids[:2], [0, 0])
    with pytest.raises(ValueError, match="ids repeat within the batch"):
        writer.append(features_of(ids[:2]), [ids[0], ids[0]], [0, 0])
    writer.append(features_of(ids[:4]), ids[:4], [0] * 4)
    with pytest.raises(ValueError, match=r"1 id\(s\) are stored already"):
        writer.append(features_of(ids[3:5]), ids[3:5], [0, 0])
    writer.close()
    with pytest.raises(ValueError, match="holds a store with dim = 8"):
        FeatureStoreWriter(tmp_path, 9, META)
    with pytest.raises(ValueError, match="holds a store with metadata"):
        FeatureStoreWriter(tmp_path, D, {**META, "encoder": "other"})
    with pytest.raises(ValueError, match="dtype must be one of"):
        FeatureStoreWriter(tmp_path / "other", D, META, dtype="int8")


KILLABLE_WRITER = """
import sys, time
import numpy as np
sys.path.insert(0, {tests!r})
from harmono.features import FeatureStoreWriter
from test_store import D, META, all_ids, features_of
ids = all_ids()
writer = FeatureStoreWriter({path!r}, D, META, dtype="float32", shard_rows=128)
todo = [ids[i] for i in writer.remaining(ids)]
for start in range(0, len(todo), 20):
    chunk = todo[start : start + 20]
    writer.append(features_of(chunk), chunk, [0] * len(chunk))
    time.sleep({pause})
writer.close()
"""


def test_extraction_killed_at_any_point_resumes_to_the_full_store(tmp_path):
    tests_dir = str(__import__("pathlib").Path(__file__).parent)
    script = KILLABLE_WRITER.format(tests=tests_dir, path=str(tmp_path), pause=0.05)
    child = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.time() + 60
    while not (tmp_path / "shard_00002.npy").exists() and time.time() < deadline:
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    child.wait()
    partial = FeatureStore(tmp_path)
    assert not partial.complete and 0 < len(partial) < N and len(partial) % 128 == 0
    finish = KILLABLE_WRITER.format(tests=tests_dir, path=str(tmp_path), pause=0.0)
    subprocess.run([sys.executable, "-c", finish], check=True)
    store = FeatureStore(tmp_path)
    assert store.complete and sorted(store.ids, key=lambda i: int(i.split(":")[1])) == all_ids()
    assert len(set(store.ids)) == N
    rows = torch.cat([b.features for b in store.view().batches(N)])
    assert torch.equal(rows, torch.from_numpy(features_of(store.ids)))


def test_take_reads_rows_at_arbitrary_indices(tmp_path):
    ids = write_store(tmp_path)
    store = FeatureStore(tmp_path)
    indices = np.random.default_rng(0).permutation(N)[:300]
    assert np.array_equal(store.take(indices), features_of(ids)[indices])
    assert store.take(np.array([], dtype=np.int64)).shape == (0, D)
    with pytest.raises(ValueError, match=r"expected row indices in \[0, 1000\), got 5 .. 1000"):
        store.take(np.array([5, 1000]))
