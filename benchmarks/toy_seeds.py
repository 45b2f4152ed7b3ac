"""Toy-task training: seeds in one batched model, and configurations in one stack, against one at a time.

Two measurements, each timed in interleaved rounds (ratio = median over
rounds of the two times measured in the same round):

1. **Seeds**: 20 seeds of one configuration in one batched model vs the
   same 20 seeds one by one (target >= 5x; the tests check both train the
   same models).
2. **Stacks**: the four configurations of one task (standard and harmonic
   head x leak-free and paper sampling), 20 seeds each, in one stack vs
   one configuration at a time. The latter is timed twice: in this process
   (one call per configuration) and as one process per configuration
   (``python -c`` training it, start-up and imports included), which is what
   running ``harmono toy run`` per configuration costs. Reported as models
   trained per second and the ratio (target >= 3x).

Usage::

    python benchmarks/toy_seeds.py                 # modadd, 1 thread, CPU
    python benchmarks/toy_seeds.py --device cuda   # on a GPU
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import torch

from _common import device_name, interleaved_seconds, median_ratio, synchronize, write_json
from harmono.data.toy import toy_task
from harmono.experiments.harmonic.toy_suite import paper_configs
from harmono.experiments.harmonic.toy_tasks import PAPER_SEEDS, ToyConfiguration
from harmono.experiments.harmonic.toy_training import train_toy_configs, train_toy_seeds
from harmono.report.text_table import format_table

PROCESS_SCRIPT = """
import sys, torch
torch.set_num_threads(int(sys.argv[1]))
from harmono.data.toy import toy_task
from harmono.experiments.harmonic.toy_suite import paper_configs
from harmono.experiments.harmonic.toy_tasks import PAPER_SEEDS, ToyConfiguration
from harmono.experiments.harmonic.toy_training import train_toy_configs
task, arch, head, paper, epochs, seeds, device = sys.argv[2:9]
model, train = paper_configs(task, arch, head, epochs=int(epochs), paper_sampling=paper == "paper")
configuration = ToyConfiguration(model, train, PAPER_SEEDS[: int(seeds)])
train_toy_configs(toy_task(task), [configuration], progress=False, device=device)
if device.startswith("cuda"):
    torch.cuda.synchronize()
"""


def _seed_rows(args: argparse.Namespace, record: dict) -> list[tuple]:
    task, seeds = toy_task(args.task), PAPER_SEEDS[: args.seeds]
    rows = []
    for arch, epochs in (("mlp", args.mlp_epochs), ("transformer", args.transformer_epochs)):
        model, train = paper_configs(args.task, arch, "harmonic", epochs=epochs)

        def batched(model=model, train=train) -> None:
            train_toy_seeds(task, model, train, seeds, progress=False, device=args.device)

        def sequential(model=model, train=train) -> None:
            for seed in seeds:
                train_toy_seeds(task, model, train, (seed,), progress=False, device=args.device)

        seconds = interleaved_seconds(
            {"batched": batched, "sequential": sequential}, args.repeats, args.device
        )
        ratio = median_ratio(seconds["sequential"], seconds["batched"])
        record["seeds_in_one_model"][arch] = {"epochs": epochs, "seconds": seconds, "speedup": ratio}
        rows.append(
            (arch, epochs, f"{min(seconds['batched']) / epochs:.3f}",
             f"{min(seconds['sequential']) / epochs:.3f}", f"{ratio:.1f}x")
        )  # fmt: skip
    return rows


def _stack_rows(args: argparse.Namespace, record: dict) -> list[tuple]:
    task, seeds = toy_task(args.task), PAPER_SEEDS[: args.seeds]
    rows = []
    for arch, epochs in (("mlp", args.mlp_stack_epochs), ("transformer", args.transformer_stack_epochs)):
        variants = [
            (head, sampling) for head in ("standard", "harmonic") for sampling in ("leak-free", "paper")
        ]
        configurations = []
        for head, sampling in variants:
            model, train = paper_configs(
                args.task, arch, head, epochs=epochs, paper_sampling=sampling == "paper"
            )
            configurations.append(ToyConfiguration(model, train, seeds))

        def stacked(configurations=configurations) -> None:
            train_toy_configs(task, configurations, progress=False, device=args.device)

        def per_call(configurations=configurations) -> None:
            for configuration in configurations:
                train_toy_configs(task, [configuration], progress=False, device=args.device)

        def per_process(arch=arch, epochs=epochs, variants=variants) -> None:
            for head, sampling in variants:
                command = [sys.executable, "-c", PROCESS_SCRIPT, str(args.threads), args.task, arch, head,
                           sampling, str(epochs), str(args.seeds), args.device]  # fmt: skip
                subprocess.run(command, check=True, cwd=Path(__file__).parent)
            synchronize(args.device)

        seconds = interleaved_seconds(
            {"stacked": stacked, "per_call": per_call, "per_process": per_process}, args.repeats, args.device
        )
        models = len(configurations) * len(seeds)
        rates = {name: models / min(times) for name, times in seconds.items()}
        vs_call = median_ratio(seconds["per_call"], seconds["stacked"])
        vs_process = median_ratio(seconds["per_process"], seconds["stacked"])
        record["configurations_in_one_stack"][arch] = {
            "epochs": epochs, "models": models, "seconds": seconds, "models_per_s": rates,
            "speedup_vs_one_configuration_per_call": vs_call,
            "speedup_vs_one_configuration_per_process": vs_process,
        }  # fmt: skip
        rows.append(
            (arch, epochs, models, f"{rates['stacked']:.1f}", f"{rates['per_call']:.1f}",
             f"{rates['per_process']:.1f}", f"{vs_call:.2f}x", f"{vs_process:.2f}x")
        )  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="modadd")
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--mlp-epochs", type=int, default=4)
    parser.add_argument("--transformer-epochs", type=int, default=1)
    parser.add_argument("--mlp-stack-epochs", type=int, default=40)
    parser.add_argument("--transformer-stack-epochs", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-seeds", action="store_true", help="only the stack measurement")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    record = {"device": device_name(args.device), "task": args.task, "seeds": args.seeds,
              "seeds_in_one_model": {}, "configurations_in_one_stack": {}}  # fmt: skip
    if not args.skip_seeds:
        seed_rows = _seed_rows(args, record)
    stack_rows = _stack_rows(args, record)
    print(f"{args.task}, {args.seeds} seeds, on {record['device']}")
    if not args.skip_seeds:
        print("\nseeds in one batched model (harmonic head)")
        headers = ["arch", "epochs", "batched s/epoch", "one by one s/epoch", "speedup (target >= 5x)"]
        print(format_table(headers, seed_rows))
    print("\nfour configurations (2 heads x 2 samplings) in one stack: models trained per second")
    headers = ["arch", "epochs", "models", "stacked", "one config per call", "one config per process",
               "vs per call", "vs per process (target >= 3x)"]  # fmt: skip
    print(format_table(headers, stack_rows))
    suffix = "cpu" if args.device == "cpu" else "cuda"
    print(f"wrote {write_json(record, args.json, f'toy_seeds_{suffix}.json')}")


if __name__ == "__main__":
    main()
