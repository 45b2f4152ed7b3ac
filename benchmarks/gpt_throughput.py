"""Training throughput of a GPT with the harmonic head vs the standard head.

One optimizer step (forward, backward, AdamW) of ``harmono.models.gpt.GPT``
with each head, on random tokens, at the same shapes and in the same run. The
two heads run in interleaved rounds; the reported ratio is the median over
rounds of (harmonic step time / standard step time in the same round), which
cancels the slow drifts of a noisy machine. Tokens/s are reported as well.

Sizes: ``cpu-small`` is the Shakespeare CPU recipe (4 layers, 256 wide,
block 256, vocabulary 8192, 16 sequences); ``gpt2-small`` is the paper's
GPT-2 small (12 layers, 768 wide, block 1024, vocabulary 50304) with
``--batch`` sequences per step (default 8) in bf16 autocast on CUDA.

Usage::

    python benchmarks/gpt_throughput.py                                   # CPU, cpu-small
    python benchmarks/gpt_throughput.py --device cuda --size gpt2-small   # a GPU
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
from pathlib import Path

import torch

from _common import device_name, interleaved_seconds, median_ratio, write_json
from harmono.models.gpt import GPT, GPTConfig
from harmono.report.text_table import format_table

SIZES = {
    "cpu-small": dict(vocab_size=8192, block_size=256, n_layer=4, n_head=4, n_embd=256),
    "gpt2-small": dict(vocab_size=50304, block_size=1024, n_layer=12, n_head=12, n_embd=768),
}
HEADS = ("standard", "harmonic")


def make_step(size: str, head: str, batch: int, device: str, bf16: bool):
    """A closure that runs one training step of a fresh model with ``head``."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(head=head, **SIZES[size])).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.startswith("cuda"))
    generator = torch.Generator(device=device).manual_seed(1)
    block, vocab = model.config.block_size, model.config.vocab_size
    tokens = torch.randint(vocab, (batch, block + 1), device=device, generator=generator)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    def step() -> None:
        with autocast:
            loss = model(tokens[:, :-1], tokens[:, 1:])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", choices=tuple(SIZES), default="cpu-small")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=0, help="sequences per step (default: 16 CPU, 8 GPU)")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds (default: 5)")
    parser.add_argument("--json", type=Path, help="output file (default: benchmarks/results/...)")
    args = parser.parse_args()
    batch = args.batch or (8 if args.device.startswith("cuda") else 16)
    bf16 = args.device.startswith("cuda")
    steps = {head: make_step(args.size, head, batch, args.device, bf16) for head in HEADS}
    seconds = interleaved_seconds(steps, args.repeats, args.device)
    tokens = batch * SIZES[args.size]["block_size"]
    ratio = median_ratio(seconds["harmonic"], seconds["standard"])
    rows = [
        (head, f"{tokens / statistics.median(seconds[head]):,.0f}", f"{statistics.median(seconds[head]):.3f}",
         f"{median_ratio(seconds[head], seconds['standard']):.3f}")
        for head in HEADS
    ]  # fmt: skip
    device = device_name(args.device)
    print(f"GPT {args.size}, {batch} x {SIZES[args.size]['block_size']} tokens per step, {device}"
          f"{', bf16 autocast' if bf16 else ', fp32'}")  # fmt: skip
    print(format_table(["head", "tokens/s", "s per step", "time / standard"], rows))
    record = {
        "size": args.size, "config": SIZES[args.size], "batch": batch, "device": device, "bf16": bf16,
        "seconds": seconds, "tokens_per_step": tokens, "harmonic_over_standard": ratio,
        "tokens_per_s": {head: tokens / statistics.median(seconds[head]) for head in HEADS},
    }  # fmt: skip
    path = write_json(record, args.json, f"gpt_throughput_{args.size}_{args.device.split(':')[0]}.json")
    print(f"\nJSON: {path}")


if __name__ == "__main__":
    main()
