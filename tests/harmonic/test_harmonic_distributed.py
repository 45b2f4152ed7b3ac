"""A harmonic head under DDP with 2 CPU processes (gloo) equals one process on the whole batch."""

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from harmono import HarmonicLinear

BATCH, DIM, CLASSES = 16, 6, 9


class TinyModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(DIM, DIM)
        self.head = HarmonicLinear(DIM, CLASSES)

    def forward(self, x, target):
        return self.head.loss(self.body(x), target, chunk_size=3)


def make_model_and_data():
    torch.manual_seed(0)
    model = TinyModel()
    x = torch.randn(BATCH, DIM)
    target = torch.randint(0, CLASSES, (BATCH,))
    return model, x, target


def ddp_step(rank, world_size, out_file):
    model, x, target = make_model_and_data()
    ddp = DistributedDataParallel(model)
    shard = slice(rank * BATCH // world_size, (rank + 1) * BATCH // world_size)
    ddp(x[shard], target[shard]).backward()
    if rank == 0:
        save_file({name: p.grad.contiguous() for name, p in model.named_parameters()}, out_file)


def ddp_worker(rank, world_size, init_file, out_file):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        # DDP's reducer is freed when ddp_step returns, while the process group is alive: freeing it
        # later would run the gloo group's destructor with the GIL held, which can deadlock.
        ddp_step(rank, world_size, out_file)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def test_ddp_gradients_equal_single_process_on_the_whole_batch(tmp_path):
    out_file = str(tmp_path / "grads.safetensors")
    mp.spawn(ddp_worker, args=(2, str(tmp_path / "init"), out_file), nprocs=2, join=True)
    model, x, target = make_model_and_data()
    model(x, target).backward()
    ddp_grads = load_file(out_file)
    for name, param in model.named_parameters():
        torch.testing.assert_close(ddp_grads[name], param.grad, rtol=1e-5, atol=1e-7)
