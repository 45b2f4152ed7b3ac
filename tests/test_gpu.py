"""On a CUDA GPU, the toy stack, the harmonic loss and MonoScore give what they give on the CPU."""

import numpy as np
import pytest
import torch

from harmono import harmonic_loss, mono_score
from harmono.data.toy import toy_task
from harmono.experiments.harmonic.toy_suite import paper_configs
from harmono.experiments.harmonic.toy_tasks import ToyConfiguration
from harmono.experiments.harmonic.toy_training import train_toy_configs

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("arch", ["mlp", "transformer"])
def test_toy_stack_trains_the_same_models_on_the_gpu(arch):
    configurations = [
        ToyConfiguration(*paper_configs("lattice", arch, head, epochs=3, paper_sampling=paper), (0, 52))
        for head in ("standard", "harmonic")
        for paper in (False, True)
    ]
    task = toy_task("lattice")
    on_cpu = train_toy_configs(task, configurations, progress=False, device="cpu")
    on_gpu = train_toy_configs(task, configurations, progress=False, device="cuda")
    for a, b in zip(on_cpu, on_gpu, strict=True):
        np.testing.assert_allclose(a.embedding, b.embedding, atol=1e-4, rtol=0)


def test_harmonic_loss_and_gradient_match_the_cpu():
    generator = torch.Generator().manual_seed(0)
    x, centers = torch.randn(64, 32, generator=generator), torch.randn(100, 32, generator=generator)
    target = torch.randint(0, 100, (64,), generator=generator)
    losses, grads = [], []
    for device in ("cpu", "cuda"):
        c = centers.to(device).requires_grad_(True)
        loss = harmonic_loss(x.to(device), c, target.to(device), exponent=8.0)
        loss.backward()
        losses.append(loss.item())
        grads.append(c.grad.cpu())
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    torch.testing.assert_close(grads[0], grads[1], atol=1e-5, rtol=1e-4)


def test_mono_score_matches_the_cpu():
    generator = torch.Generator().manual_seed(1)
    acts = torch.rand(500, 40, generator=generator).mul(torch.rand(500, 40, generator=generator) > 0.7)
    emb = torch.randn(500, 16, generator=generator)
    cpu = mono_score(acts, emb)
    gpu = mono_score(acts.cuda(), emb.cuda())
    torch.testing.assert_close(torch.as_tensor(cpu).cpu(), torch.as_tensor(gpu).cpu(), atol=1e-5, rtol=1e-4)
