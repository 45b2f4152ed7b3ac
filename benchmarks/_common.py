"""Helpers shared by the benchmark scripts: device name, synchronisation, timing, JSON output."""

from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results"


def synchronize(device: str) -> None:
    """Wait for queued GPU work so a timer measures it."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def device_name(device: str) -> str:
    """The GPU name, or the CPU model and the number of torch threads."""
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(device)
    name = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        models = [
            ln.split(":", 1)[1].strip()
            for ln in cpuinfo.read_text().splitlines()
            if ln.startswith("model name")
        ]
        name = models[0] if models else name
    return f"{name}, {torch.get_num_threads()} threads"


def timed(fn: Callable[[], object], device: str) -> float:
    """Seconds one call of ``fn`` takes, GPU work included."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def interleaved_seconds(
    variants: dict[str, Callable[[], object]], repeats: int, device: str
) -> dict[str, list[float]]:
    """Time every variant once per round, ``repeats`` rounds, after one warm-up call each."""
    for fn in variants.values():
        fn()
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            seconds[name].append(timed(fn, device))
    return seconds


def median_ratio(numerator: list[float], denominator: list[float]) -> float:
    """Median over rounds of ``numerator / denominator`` measured in the same round."""
    return statistics.median(a / b for a, b in zip(numerator, denominator, strict=True))


def write_json(record: dict, path: Path | None, default_name: str) -> Path:
    """Write ``record`` to ``path`` (default ``benchmarks/results/<default_name>``) and return the path."""
    path = path or RESULTS / default_name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1))
    return path
