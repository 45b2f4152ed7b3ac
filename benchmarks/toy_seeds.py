"""Toy-task training: 20 seeds in one batched model vs the same 20 seeds one by one.

Both train exactly the same models (the test suite checks it): the official
protocol (batch 32, AdamW, embedding regulariser) for a few epochs of one
configuration per architecture. Timed in interleaved rounds; the ratio is
the median over rounds of sequential time / batched time measured in the
same round (target >= 5x).

Usage::

    python benchmarks/toy_seeds.py            # modadd, 20 seeds, 1 thread
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from _common import device_name, interleaved_seconds, median_ratio, write_json
from harmono.data.toy import toy_task
from harmono.experiments.toy_suite import paper_configs
from harmono.experiments.toy_tasks import PAPER_SEEDS
from harmono.experiments.toy_training import train_toy_seeds
from harmono.report.text_table import format_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="modadd")
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--mlp-epochs", type=int, default=4)
    parser.add_argument("--transformer-epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    task, seeds = toy_task(args.task), PAPER_SEEDS[: args.seeds]
    rows, record = [], {"device": device_name("cpu"), "task": args.task, "seeds": args.seeds, "results": {}}
    for arch, epochs in (("mlp", args.mlp_epochs), ("transformer", args.transformer_epochs)):
        model, train = paper_configs(args.task, arch, "harmonic", epochs=epochs)

        def batched(model=model, train=train) -> None:
            train_toy_seeds(task, model, train, seeds, progress=False)

        def sequential(model=model, train=train) -> None:
            for seed in seeds:
                train_toy_seeds(task, model, train, (seed,), progress=False)

        seconds = interleaved_seconds({"batched": batched, "sequential": sequential}, args.repeats, "cpu")
        ratio = median_ratio(seconds["sequential"], seconds["batched"])
        per_epoch = min(seconds["batched"]) / epochs
        record["results"][arch] = {"epochs": epochs, "seconds": seconds, "speedup": ratio}
        rows.append(
            (arch, epochs, f"{per_epoch:.3f}", f"{min(seconds['sequential']) / epochs:.3f}", f"{ratio:.1f}x")
        )
    print(f"{args.seeds} seeds of {args.task} (harmonic head) on {record['device']}")
    print(
        format_table(
            ["arch", "epochs", "batched s/epoch", "sequential s/epoch", "speedup (target >= 5x)"], rows
        )
    )
    print(f"wrote {write_json(record, args.json, 'toy_seeds_cpu.json')}")


if __name__ == "__main__":
    main()
