"""Pieces every trainer shares: the torchrun process group, the metric log, the resume check."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.distributed as dist

from harmono.core.io import read_json

RUN_FILE = "run.json"
"""A run folder's record of its settings, its progress and its result."""
METRICS_FILE = "metrics.jsonl"
"""A run folder's metric log, one JSON line per logged step."""
PRECISIONS = ("auto", "fp32", "bf16")
"""``auto``: bf16 autocast on a GPU, fp32 on the CPU; ``bf16``: bf16 autocast with fp32 parameters."""

logger = logging.getLogger(__name__)


def world() -> tuple[int, int]:
    """``(rank, world size)`` of the ``torch.distributed`` process group; ``(0, 1)`` without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def autocast_for(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast for ``precision`` "bf16", or "auto" on CUDA; otherwise a context that does nothing."""
    bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def check_resumable(out: Path, run_file: str, record: dict, keys: tuple[str, ...]) -> None:
    """Refuse to resume ``out`` when its ``run_file`` differs from ``record`` in one of ``keys``.

    A ``"device"`` entry inside a compared dict is ignored: a run may resume on another device.
    A ``run_file`` that is no JSON object raises ``ValueError`` naming it.
    """
    path = out / run_file
    saved = read_json(path, "the record of the run to resume")
    for key in keys:
        mine, theirs = json.loads(json.dumps(record[key])), saved.get(key)
        if isinstance(mine, dict) and "device" in mine and isinstance(theirs, dict):
            mine, theirs = {**mine, "device": None}, {**theirs, "device": None}
        if theirs != mine:
            raise ValueError(
                f"{out} holds a run with another {key}: expected {mine}, got {theirs} in {path}; resume it "
                "with the same settings or train into another directory"
            )


def read_metric_log(out: str | Path) -> list[dict]:
    """The records of ``out/metrics.jsonl`` in order (empty when there is none).

    A last line that is no JSON record (the partial line a run killed while
    writing it leaves) is skipped with a logged warning.

    Raises
    ------
    ValueError
        An earlier line is no JSON record; the message names the file and the line.
    """
    path = Path(out) / METRICS_FILE
    if not path.is_file():
        return []
    lines = [(number, line) for number, line in enumerate(path.read_text().splitlines(), 1) if line.strip()]
    records = []
    for index, (number, line) in enumerate(lines):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if isinstance(record, dict):
            records.append(record)
        elif index == len(lines) - 1:
            logger.warning(
                "%s: skipping the partial last line %d (%.60r), left by a killed run", path, number, line
            )
        else:
            raise ValueError(f"{path}: line {number} is corrupt: expected a JSON object, got {line[:60]!r}")
    return records


class MetricLog:
    """``metrics.jsonl`` (truncated to the resumed step) and optional TensorBoard, written by rank 0."""

    def __init__(self, out: Path, resumed_step: int, tensorboard: bool, active: bool):
        self.path, self.active, self.writer = out / METRICS_FILE, active, None
        if not active:
            return
        if self.path.is_file():
            kept = [record for record in read_metric_log(out) if record["step"] <= resumed_step]
            self.path.write_text("".join(json.dumps(record) + "\n" for record in kept))
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as err:
                raise ModuleNotFoundError("tensorboard=True needs the package 'tensorboard'") from err
            self.writer = SummaryWriter(str(out / "tensorboard"))

    def write(self, record: dict) -> None:
        """Append ``record`` (it holds ``"step"``)."""
        if not self.active:
            return
        with self.path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for name, value in record.items():
                if name != "step" and isinstance(value, (int, float)):
                    self.writer.add_scalar(name, value, record["step"])

    def close(self) -> None:
        """Close TensorBoard's writer."""
        if self.writer is not None:
            self.writer.close()


@contextlib.contextmanager
def process_group_from_environment() -> Iterator[None]:
    """Join the ``torch.distributed`` process group that ``torchrun`` describes, for the block.

    Under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) the group is
    initialised with NCCL when CUDA is available, else gloo, and destroyed
    after the block; otherwise, or when a group exists already, nothing is done.
    """
    wanted = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if not wanted or not dist.is_available() or dist.is_initialized():
        yield
        return
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    try:
        yield
    finally:
        dist.destroy_process_group()
