"""Harmonic LM head vs a linear head: forward+backward time and peak memory.

Compares, at the same shapes and in the same run:

(a) ``linear_ce``: ``F.linear`` + ``F.cross_entropy`` (the standard LM head),
(b) ``harmonic_naive``: ``F.cross_entropy(harmonic_logits(x, W), y)``, which
    materialises every ``(B, V)`` intermediate,
(c) ``harmonic_chunked``: ``harmono.harmonic_loss`` with its automatic chunks.

The variants run in interleaved rounds; a time ratio is the median over rounds
of (variant / (a) in the same round), which cancels slow drifts of a noisy
machine. Peak memory is measured once per
variant in a fresh child process, on the second step (CPU: growth of the peak
resident set size, Linux ``VmHWM``, over the inputs; CUDA: ``max_memory_allocated`` over the inputs). Both are
reported as ratios to (a). Targets: (c) <= 1.15x the time and <= 0.3x the
peak memory of (a).

Usage::

    python benchmarks/harmonic_head.py                  # CPU: B=2048, D=768, V=50304
    python benchmarks/harmonic_head.py --device cuda    # GPU: B=16384 by default
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from _common import device_name, median_ratio, timed, write_json
from harmono import harmonic_logits, harmonic_loss
from harmono.report.text_table import format_table

VARIANTS = ("linear_ce", "harmonic_naive", "harmonic_chunked")
TIME_TARGET = 1.15
MEMORY_TARGET = 0.3


def make_inputs(batch: int, dim: int, vocab: int, device: str, seed: int = 0):
    """Token features ``x (B, D)``, head weight ``W (V, D)`` and targets ``(B,)``."""
    gen = torch.Generator(device=device).manual_seed(seed)
    x = torch.randn(batch, dim, device=device, generator=gen).requires_grad_()
    weight = torch.randn(vocab, dim, device=device, generator=gen).mul_(dim**-0.5).requires_grad_()
    target = torch.randint(0, vocab, (batch,), device=device, generator=gen)
    return x, weight, target


def loss_fn(variant: str) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    """The loss of one variant as ``f(x, W, target) -> scalar``."""
    if variant == "linear_ce":
        return lambda x, w, t: F.cross_entropy(F.linear(x, w), t)
    if variant == "harmonic_naive":
        return lambda x, w, t: F.cross_entropy(harmonic_logits(x, w), t)
    if variant == "harmonic_chunked":
        return harmonic_loss
    raise ValueError(f"unknown variant {variant!r}, expected one of {VARIANTS}")


def step(variant: str, x: torch.Tensor, weight: torch.Tensor, target: torch.Tensor) -> float:
    """One forward+backward; returns the loss value."""
    x.grad = None
    weight.grad = None
    loss = loss_fn(variant)(x, weight, target)
    loss.backward()
    return loss.item()


def time_variants(args: argparse.Namespace) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Median-ready lists of seconds per forward+backward, variants interleaved."""
    x, weight, target = make_inputs(args.batch, args.dim, args.vocab, args.device)
    losses = {v: step(v, x, weight, target) for v in VARIANTS}  # warm-up
    seconds: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for _ in range(args.repeats):
        for variant in VARIANTS:
            seconds[variant].append(timed(lambda v=variant: step(v, x, weight, target), args.device))
    return seconds, losses


def measure_peak_memory(variant: str, args: argparse.Namespace) -> int:
    """Bytes one steady-state forward+backward needs beyond its inputs (run in this process)."""
    x, weight, target = make_inputs(args.batch, args.dim, args.vocab, args.device)
    step(variant, x, weight, target)  # a first step loads kernels and library workspaces
    x.grad = weight.grad = None
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step(variant, x, weight, target)
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    reset_peak_rss()
    base = peak_rss()
    step(variant, x, weight, target)
    return peak_rss() - base


def peak_rss() -> int:
    """Peak resident set size of this process in bytes (Linux ``VmHWM``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("VmHWM not found in /proc/self/status: the CPU memory figure needs Linux")


def reset_peak_rss() -> None:
    """Reset ``VmHWM`` to the current resident set size (Linux >= 4.0)."""
    Path("/proc/self/clear_refs").write_text("5")


def peak_memory_in_child(variant: str, args: argparse.Namespace) -> int:
    """Run :func:`measure_peak_memory` in a fresh interpreter, so no variant sees another's peak."""
    cmd = [
        sys.executable,
        __file__,
        "--memory-child",
        variant,
        "--device",
        args.device,
        "--batch",
        str(args.batch),
        "--dim",
        str(args.dim),
        "--vocab",
        str(args.vocab),
    ]
    # A fixed mmap threshold makes glibc return every large block on free, so the
    # peak RSS follows the bytes the step needs rather than allocator retention.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(1 << 20)}
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return int(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, help="tokens per step (default: 2048 on CPU, 16384 on CUDA)")
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--vocab", type=int, default=50304)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", type=Path, help="where to write the results (default: benchmarks/results/)")
    parser.add_argument("--memory-child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.batch is None:
        args.batch = 16384 if args.device.startswith("cuda") else 2048
    if args.memory_child:
        print(measure_peak_memory(args.memory_child, args))
        return

    seconds, losses = time_variants(args)
    peaks = {v: peak_memory_in_child(v, args) for v in VARIANTS}
    median = {v: statistics.median(s) for v, s in seconds.items()}
    rows = []
    for variant in VARIANTS:
        rows.append(
            {
                "variant": variant,
                "median_s": median[variant],
                "time_ratio": median_ratio(seconds[variant], seconds["linear_ce"]),
                "peak_mib": peaks[variant] / 2**20,
                "memory_ratio": peaks[variant] / peaks["linear_ce"],
                "loss": losses[variant],
                "seconds": seconds[variant],
            }
        )
    chunked = rows[-1]
    record = {
        "benchmark": "harmonic_head",
        "device": device_name(args.device),
        "torch": torch.__version__,
        "shape": {"batch": args.batch, "dim": args.dim, "vocab": args.vocab},
        "repeats": args.repeats,
        "targets": {"time_ratio": TIME_TARGET, "memory_ratio": MEMORY_TARGET},
        "met": {
            "time": chunked["time_ratio"] <= TIME_TARGET,
            "memory": chunked["memory_ratio"] <= MEMORY_TARGET,
        },
        "harmonic_naive_vs_chunked_loss_rel_diff": abs(losses["harmonic_naive"] - losses["harmonic_chunked"])
        / abs(losses["harmonic_naive"]),
        "rows": rows,
    }
    print(
        f"forward+backward, B={args.batch} tokens, D={args.dim}, V={args.vocab}, "
        f"{record['device']}, torch {torch.__version__}, median of {args.repeats}"
    )
    print(
        format_table(
            ["variant", "time (s)", "time / (a)", "peak MiB", "memory / (a)"],
            [
                (
                    r["variant"],
                    f"{r['median_s']:.3f}",
                    f"{r['time_ratio']:.2f}x",
                    f"{r['peak_mib']:.0f}",
                    f"{r['memory_ratio']:.2f}x",
                )
                for r in rows
            ],
            markdown=True,
        )
    )
    verdict = {key: "met" if met else "MISSED" for key, met in record["met"].items()}
    print(
        f"targets for harmonic_chunked: time <= {TIME_TARGET}x ({verdict['time']}), "
        f"memory <= {MEMORY_TARGET}x ({verdict['memory']}); "
        f"chunked vs naive loss rel. diff {record['harmonic_naive_vs_chunked_loss_rel_diff']:.1e}"
    )
    path = write_json(record, args.json, f"harmonic_head_{args.device.split(':')[0]}.json")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
