"""MonoScore: single pass vs the pairwise definition, vs one matmul, and sparse vs dense input.

For each N (default 2^10 .. 2^16) with D-dim embeddings and M latents holding
TopK-sparse activations (k of M nonzero per sample, like SAE latents), all in
float32:

- ``pairwise``: ``harmono.mono_score_pairwise``, the O(N^2 (D + M)) definition
  computed with blocked matmuls (a strong baseline: the official reference is
  a Python loop over samples, far slower), run once per N up to
  ``--pairwise-max-log2``;
- ``single_pass``: ``harmono.MonoScore`` fed the dense ``(N, M)`` activations
  in batches of ``--batch`` rows, then ``compute()``;
- ``matmul``: one ``(D, N) x (N, M)`` matmul, the floor of any exact dense method;
- ``sparse``: ``harmono.MonoScore`` fed the same activations as TopK
  ``(values, indices)`` pairs.

single_pass, matmul and sparse run in interleaved rounds; each ratio is the
median over rounds of the two times measured in the same round. Targets:
single_pass <= 1.5x matmul, sparse >= 10x faster than single_pass.

Usage::

    python benchmarks/monoscore.py                  # CPU: M=8192, pairwise up to 2^14
    python benchmarks/monoscore.py --device cuda --pairwise-max-log2 16
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch

from _common import device_name, interleaved_seconds, median_ratio, timed, write_json
from harmono import MonoScore, mono_score_pairwise
from harmono.report.text_table import format_table

MATMUL_TARGET = 1.5
SPARSE_TARGET = 10.0


def topk_activations(n: int, latents: int, k: int, device: str, seed: int = 0):
    """TopK-style activations: ``values, indices (N, k)`` and the same as a dense ``(N, M)`` tensor."""
    gen = torch.Generator(device=device).manual_seed(seed)
    indices = torch.empty(n, k, dtype=torch.long, device=device)
    for start in range(0, n, 4096):
        rows = min(4096, n - start)
        indices[start : start + rows] = (
            torch.rand(rows, latents, device=device, generator=gen).topk(k).indices
        )
    values = torch.rand(n, k, device=device, generator=gen).exponential_()
    dense = torch.zeros(n, latents, device=device).scatter_(1, indices, values)
    return values, indices, dense


def stream(metric: MonoScore, acts, emb: torch.Tensor, batch: int) -> torch.Tensor:
    """Reset ``metric``, feed ``acts`` (dense tensor or sparse pair) in batches, return the scores."""
    metric.reset()
    for start in range(0, emb.shape[0], batch):
        rows = slice(start, start + batch)
        chunk = acts[rows] if isinstance(acts, torch.Tensor) else (acts[0][rows], acts[1][rows])
        metric.update(chunk, emb[rows])
    return metric.compute()


def abs_diff(a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
    """Largest and 99th-percentile difference of two score vectors; NaN (dead) positions must agree."""
    if not torch.equal(torch.isnan(a), torch.isnan(b)):
        return {"max": float("inf"), "p99": float("inf")}
    diff = (a.double() - b.double()).nan_to_num(0.0).abs()
    return {"max": float(diff.max()), "p99": float(torch.quantile(diff, 0.99))}


def measure(log2_n: int, data, args: argparse.Namespace) -> dict:
    """Times and agreement for the first ``2^log2_n`` samples of ``data``."""
    n = 2**log2_n
    values, indices, dense, emb = (t[:n] for t in data)
    metric = MonoScore(args.latents, args.dim).to(args.device)
    variants = {
        "single_pass": lambda: stream(metric, dense, emb, args.batch),
        "matmul": lambda: emb.T @ dense,
        "sparse": lambda: stream(metric, (values, indices), emb, args.batch),
    }
    seconds = interleaved_seconds(variants, args.repeats, args.device)
    single = stream(metric, dense, emb, args.batch)
    row = {
        "log2_n": log2_n,
        "seconds": seconds,
        "single_pass_s": statistics.median(seconds["single_pass"]),
        "matmul_s": statistics.median(seconds["matmul"]),
        "sparse_s": statistics.median(seconds["sparse"]),
        "single_pass_vs_matmul": median_ratio(seconds["single_pass"], seconds["matmul"]),
        "sparse_speedup": median_ratio(seconds["single_pass"], seconds["sparse"]),
        "sparse_vs_dense_diff": abs_diff(stream(metric, (values, indices), emb, args.batch), single),
        "pairwise_s": None,
        "pairwise_speedup": None,
        "pairwise_vs_single_diff": None,
    }
    if log2_n <= args.pairwise_max_log2:
        pairwise = {}
        row["pairwise_s"] = timed(
            lambda: pairwise.setdefault("scores", mono_score_pairwise(dense, emb)), args.device
        )
        row["pairwise_speedup"] = row["pairwise_s"] / row["single_pass_s"]
        row["pairwise_vs_single_diff"] = abs_diff(pairwise["scores"], single)
    return row


def met_from(rows: list[dict], met) -> int | None:
    """Smallest log2 N from which ``met(row)`` holds for every larger N measured, or None."""
    first = None
    for row in reversed(rows):
        if not met(row):
            break
        first = row["log2_n"]
    return first


def print_table(rows: list[dict], record: dict) -> None:
    """The markdown table of times and ratios."""
    shape = record["shape"]
    print(
        f"MonoScore, D={shape['dim']}, M={shape['latents']}, TopK k={shape['k']}, "
        f"stream batch {shape['batch']}, "
        f"float32, {record['device']}, torch {record['torch']}, median of {record['repeats']} rounds"
    )

    def fmt(value, spec):
        return "-" if value is None else format(value, spec)

    print(
        format_table(
            [
                "N",
                "pairwise (s)",
                "single pass (s)",
                "speedup",
                "matmul (s)",
                "single / matmul",
                "sparse (s)",
                "sparse speedup",
            ],
            [
                (
                    f"2^{r['log2_n']}",
                    fmt(r["pairwise_s"], ".2f"),
                    f"{r['single_pass_s']:.3f}",
                    "-" if r["pairwise_speedup"] is None else f"{r['pairwise_speedup']:.0f}x",
                    f"{r['matmul_s']:.3f}",
                    f"{r['single_pass_vs_matmul']:.2f}x",
                    f"{r['sparse_s']:.4f}",
                    f"{r['sparse_speedup']:.2f}x",
                )
                for r in rows
            ],
            markdown=True,
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--latents", type=int, default=8192)
    parser.add_argument("--k", type=int, default=64, help="nonzero latents per sample (TopK)")
    parser.add_argument("--min-log2", type=int, default=10)
    parser.add_argument("--max-log2", type=int, default=16)
    parser.add_argument(
        "--pairwise-max-log2", type=int, default=14, help="largest N (log2) for the pairwise run"
    )
    parser.add_argument("--batch", type=int, default=4096, help="rows per MonoScore.update")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, help="where to write the results (default: benchmarks/results/)")
    args = parser.parse_args()

    n_max = 2**args.max_log2
    values, indices, dense = topk_activations(n_max, args.latents, args.k, args.device)
    emb = torch.randn(
        n_max, args.dim, device=args.device, generator=torch.Generator(args.device).manual_seed(1)
    )
    rows = [measure(p, (values, indices, dense, emb), args) for p in range(args.min_log2, args.max_log2 + 1)]
    record = {
        "benchmark": "monoscore",
        "device": device_name(args.device),
        "torch": torch.__version__,
        "shape": {"dim": args.dim, "latents": args.latents, "k": args.k, "batch": args.batch},
        "repeats": args.repeats,
        "targets": {"single_pass_vs_matmul": MATMUL_TARGET, "sparse_speedup": SPARSE_TARGET},
        "met_from_log2_n": {
            "single_pass_vs_matmul": met_from(rows, lambda r: r["single_pass_vs_matmul"] <= MATMUL_TARGET),
            "sparse_speedup": met_from(rows, lambda r: r["sparse_speedup"] >= SPARSE_TARGET),
        },
        "rows": rows,
    }
    print_table(rows, record)
    verdict = {
        key: "missed at every N" if p is None else f"met for N >= 2^{p}"
        for key, p in record["met_from_log2_n"].items()
    }
    pair_diffs = [r["pairwise_vs_single_diff"] for r in rows if r["pairwise_s"] is not None]
    worst_pair = max((d["max"] for d in pair_diffs), default=float("nan"))
    worst_pair_p99 = max((d["p99"] for d in pair_diffs), default=float("nan"))
    worst_sparse = max(r["sparse_vs_dense_diff"]["max"] for r in rows)
    print(
        f"targets: single pass <= {MATMUL_TARGET}x matmul ({verdict['single_pass_vs_matmul']}), "
        f"sparse >= {SPARSE_TARGET:.0f}x faster than dense ({verdict['sparse_speedup']}); "
        f"|score diff| single vs pairwise: max {worst_pair:.1e}, 99th percentile {worst_pair_p99:.1e}; "
        f"sparse vs dense: max {worst_sparse:.1e}"
    )
    device = args.device.split(":")[0]
    path = write_json(record, args.json, f"monoscore_{device}.json")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
