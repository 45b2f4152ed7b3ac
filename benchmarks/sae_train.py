"""SAE training step: samples/s per architecture, with and without MonoLoss; TopK vs a dense reference.

One step = forward, losses, backward, decoder-gradient projection, Adam,
decoder renormalisation, as ``harmono.sae.train`` does it, at d_in = 1280,
d_sae = 8192, k = 64 (the MonoLoss paper's sizes). Compared in the same run,
in interleaved rounds (a ratio is the median over rounds of the two times
measured in the same round):

- ``<arch>+mono`` against ``<arch>``: the cost of MonoLoss (target <= 1.10x),
  computed as the trainer does, on the SAE's sparse code (``SAE.sparse_code``);
  JumpReLU and ReLU are set to fire about ``k`` latents per sample, as
  trained ones do (untrained, half their latents fire);
- ``topk+dense_mono`` against ``topk``: MonoLoss on the dense ``(B, d_sae)``
  latents instead, what the sparse code saves;
- ``topk`` against ``topk_dense_reference``, a straightforward TopK step
  written here (dense scatter of the top-k, dense decoder matmul):
  throughput ratio (target >= 1.0x; harmono decodes from indices with
  ``embedding_bag``).

Usage::

    python benchmarks/sae_train.py                  # CPU, batch 1024
    python benchmarks/sae_train.py --device cuda    # GPU, batch 2048
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from _common import device_name, interleaved_seconds, median_ratio, write_json
from harmono.mono import mono_loss
from harmono.report.text_table import format_table
from harmono.sae import ARCHITECTURES, SAE, SAEConfig, create_sae
from harmono.sae.train import SPARSE_MONO_MAX_DENSITY


def calibrate_sparsity(sae: SAE, x: torch.Tensor, k: int) -> None:
    """Give an untrained JumpReLU or ReLU SAE the sparsity of a trained one (L0 about ``k``).

    Each latent fires on ``k / d_sae`` of ``x``. At initialisation about
    half their latents fire, which a trained SAE
    (L0 near ``k``) never does; the TopK variants have ``k`` by construction.
    """
    if sae.architecture not in ("jumprelu", "relu"):
        return
    with torch.no_grad():
        cut = sae.pre_activations(x).quantile(1 - k / sae.config.d_sae, dim=0)
        if sae.architecture == "jumprelu":
            sae.threshold.copy_(cut.clamp_min(0))
        else:
            sae.b_enc.sub_(cut)


def harmono_step(architecture: str, x: torch.Tensor, d_sae: int, k: int, mono: str = ""):
    """A closure running one harmono training step of an SAE at L0 about ``k``.

    ``mono``: "" (none), "trainer" (MonoLoss as ``train_sae`` computes it: on
    the sparse code unless it is denser than ``SPARSE_MONO_MAX_DENSITY``) or
    "dense" (on the dense latents).
    """
    torch.manual_seed(0)
    sae = create_sae(SAEConfig(architecture, d_in=x.shape[1], d_sae=d_sae, k=k)).to(x.device)
    calibrate_sparsity(sae, x, k)
    optimizer = torch.optim.Adam(sae.parameters(), lr=1e-4)

    def step() -> None:
        output = sae(x)
        loss = sum(output.losses.values())
        if mono:
            code = sae.sparse_code(output, SPARSE_MONO_MAX_DENSITY) if mono == "trainer" else None
            loss = loss + 3e-4 * mono_loss(output.latents if code is None else code, x, num_latents=d_sae)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        sae.remove_parallel_gradient()
        optimizer.step()
        sae.normalize_decoder()

    return step


def dense_topk_step(x: torch.Tensor, d_sae: int, k: int):
    """A straightforward TopK SAE step: dense latents and a dense decoder matmul."""
    torch.manual_seed(0)
    d_in = x.shape[1]
    W_dec = torch.nn.Parameter(
        torch.nn.functional.normalize(torch.randn(d_sae, d_in, device=x.device), dim=1)
    )
    W_enc = torch.nn.Parameter(W_dec.detach().T.clone())
    b_enc = torch.nn.Parameter(torch.zeros(d_sae, device=x.device))
    b_dec = torch.nn.Parameter(torch.zeros(d_in, device=x.device))
    optimizer = torch.optim.Adam([W_enc, b_enc, W_dec, b_dec], lr=1e-4)

    def step() -> None:
        pre = (x - b_dec) @ W_enc + b_enc
        values, indices = pre.topk(k, dim=1)
        latents = torch.zeros_like(pre).scatter(1, indices, values.relu())
        recon = latents @ W_dec + b_dec
        loss = ((recon - x).square().mean(1) / x.square().mean(1)).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():
            W_dec.grad -= (W_dec.grad * W_dec).sum(1, keepdim=True) * W_dec
        optimizer.step()
        with torch.no_grad():
            W_dec.div_(W_dec.norm(dim=1, keepdim=True))

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=0, help="samples per step (default: 1024 CPU, 2048 GPU)")
    parser.add_argument("--d-in", type=int, default=1280)
    parser.add_argument("--d-sae", type=int, default=8192)
    parser.add_argument("--k", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--steps", type=int, default=2, help="steps per variant and round")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    batch = args.batch or (2048 if args.device.startswith("cuda") else 1024)
    x = torch.nn.functional.normalize(torch.randn(batch, args.d_in, device=args.device), dim=1)
    variants = {"topk_dense_reference": dense_topk_step(x, args.d_sae, args.k)}
    for architecture in ARCHITECTURES:
        variants[architecture] = harmono_step(architecture, x, args.d_sae, args.k)
        variants[f"{architecture}+mono"] = harmono_step(architecture, x, args.d_sae, args.k, mono="trainer")
    variants["topk+dense_mono"] = harmono_step("topk", x, args.d_sae, args.k, mono="dense")

    def repeated(step):
        return lambda: [step() for _ in range(args.steps)]

    timed_rounds = {name: repeated(step) for name, step in variants.items()}
    rounds = interleaved_seconds(timed_rounds, args.repeats, args.device)
    seconds = {name: [t / args.steps for t in times] for name, times in rounds.items()}
    rows, record = (
        [],
        {
            "device": device_name(args.device),
            "batch": batch,
            "d_in": args.d_in,
            "d_sae": args.d_sae,
            "k": args.k,
            "repeats": args.repeats,
            "steps_per_round": args.steps,
            "variants": {},
        },
    )
    for name, times in seconds.items():
        median = sorted(times)[len(times) // 2]
        base = name.split("+")[0]
        versus = "topk_dense_reference" if name == "topk" else (base if "+" in name else None)
        ratio = median_ratio(times, seconds[versus]) if versus else None
        record["variants"][name] = {
            "seconds": times,
            "samples_per_s": batch / median,
            "time_ratio": ratio,
            "versus": versus,
        }
        shown = (
            ""
            if ratio is None
            else (f"{1 / ratio:.2f}x throughput" if name == "topk" else f"{ratio:.3f}x time")
        )
        rows.append((name, f"{median * 1e3:.0f}", f"{batch / median:,.0f}", versus or "", shown))
    sizes = f"batch {batch}, d_in {args.d_in}, d_sae {args.d_sae}, k {args.k}"
    print(f"SAE training step on {record['device']}: {sizes}")
    print(format_table(["variant", "median ms/step", "samples/s", "compared with", "ratio"], rows))
    kind = args.device.split(":")[0]
    print(f"results: {write_json(record, args.json, f'sae_train_{kind}.json')}")


if __name__ == "__main__":
    main()
