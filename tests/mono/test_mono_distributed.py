"""MonoScore and ClassPurity over 2 CPU processes (gloo) equal one process on all the data."""

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from harmono import ClassPurity, MonoScore, mono_score_pairwise

N, M, D, C, K = 70, 16, 6, 3, 4


def make_data():
    gen = torch.Generator().manual_seed(0)
    acts = torch.randn(N, M, generator=gen, dtype=torch.float64)
    acts[:, M // 2 :] = torch.relu(acts[:, M // 2 :])
    acts[:, 0] = 1.0
    emb = torch.randn(N, D, generator=gen, dtype=torch.float64) * 2
    labels = torch.randint(0, C, (N,), generator=gen)
    return acts, emb, labels


def worker(rank, world_size, init_file, out_file):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        acts, emb, labels = make_data()
        mine = slice(0, 23) if rank == 0 else slice(23, N)  # unequal shards
        score, sparse_score, float32_score = MonoScore(M, D), MonoScore(M, D), MonoScore(M, D)
        purity = ClassPurity(M, C)
        for start in range(mine.start, mine.stop, 9):
            rows = slice(start, min(start + 9, mine.stop))
            score.update(acts[rows], emb[rows])
            sparse_score.update(acts[rows].topk(K, dim=1), emb[rows])
            float32_score.update(acts[rows].float(), emb[rows].float())
            purity.update(acts[rows], labels[rows])
        result = {
            "dense": score.compute(),
            "sparse": sparse_score.compute(),
            "float32": float32_score.compute(),
            "purity": purity.compute().binary,
        }
        save_file(result, out_file.format(rank=rank))
    finally:
        dist.destroy_process_group()


def test_two_processes_merge_to_the_single_process_scores(tmp_path):
    out_file = str(tmp_path / "scores_{rank}.safetensors")
    mp.spawn(worker, args=(2, str(tmp_path / "init"), out_file), nprocs=2, join=True)
    merged, merged_on_rank_1 = (load_file(out_file.format(rank=rank)) for rank in (0, 1))
    for name, value in merged.items():
        torch.testing.assert_close(merged_on_rank_1[name], value, rtol=0, atol=0, equal_nan=True)
    acts, emb, labels = make_data()
    top = acts.topk(K, dim=1)
    topk_dense = torch.zeros_like(acts).scatter_(1, top.indices, top.values)
    single = MonoScore(M, D)
    single.update(acts, emb)
    purity = ClassPurity(M, C)
    purity.update(acts, labels)
    torch.testing.assert_close(merged["dense"], single.compute(), rtol=0, atol=1e-12, equal_nan=True)
    torch.testing.assert_close(
        merged["dense"], mono_score_pairwise(acts.double(), emb.double()), rtol=0, atol=1e-10, equal_nan=True
    )
    torch.testing.assert_close(
        merged["sparse"],
        mono_score_pairwise(topk_dense.double(), emb.double()),
        rtol=0,
        atol=1e-10,
        equal_nan=True,
    )
    torch.testing.assert_close(merged["purity"], purity.compute().binary, equal_nan=True)
    pairwise32 = mono_score_pairwise(acts.float().double(), emb.float().double())
    torch.testing.assert_close(merged["float32"], pairwise32, rtol=0, atol=1e-5, equal_nan=True)
    assert torch.isnan(merged["dense"][0])
