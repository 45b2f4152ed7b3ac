"""Training checkpoints without pickle: tensors in safetensors, everything else in JSON.

A checkpoint is a directory ``checkpoints/step_<N>/`` holding ``state.safetensors``
(model parameters and buffers, optimizer moments, the dead-latent counters,
the random generator state) and ``state.json`` (the step, the optimizer's
scalar settings). ``checkpoints/latest.json`` names the newest complete one
and is replaced atomically after it is written, so a run killed at any
moment resumes from the last checkpoint that was finished.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import load_file, save

from harmono.core.io import write_atomically, write_json_atomically

LATEST = "latest.json"


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split ``optimizer.state_dict()`` into named tensors and a JSON-ready rest."""
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, slots in state["state"].items():
        for name, value in slots.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{index}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{index}.{name}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def optimizer_state(tensors: dict[str, torch.Tensor], rest: dict) -> dict:
    """The ``optimizer.state_dict()`` that ``optimizer_tensors`` split."""
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    for key, value in rest["scalars"].items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    return {"state": state, "param_groups": rest["param_groups"]}


def save_checkpoint(
    root: Path, step: int, tensors: dict[str, torch.Tensor], record: dict, keep: int = 1
) -> Path:
    """Write checkpoint ``step`` under ``root``, point ``latest.json`` at it, keep the newest ``keep``."""
    root.mkdir(parents=True, exist_ok=True)
    directory = root / f"step_{step:09d}"
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir()
    cpu = {name: tensor.detach().cpu().contiguous() for name, tensor in tensors.items()}
    write_atomically(directory / "state.safetensors", lambda handle: handle.write(save(cpu)))
    write_json_atomically(directory / "state.json", {**record, "step": step})
    write_json_atomically(root / LATEST, {"directory": directory.name, "step": step})
    for old in sorted(root.glob("step_*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return directory


def load_checkpoint(root: Path) -> tuple[dict[str, torch.Tensor], dict] | None:
    """Tensors and record of the checkpoint ``latest.json`` names, or None where there is none."""
    pointer = root / LATEST
    if not pointer.is_file():
        return None
    directory = root / json.loads(pointer.read_text())["directory"]
    for name in ("state.safetensors", "state.json"):
        if not (directory / name).is_file():
            raise FileNotFoundError(
                f"{directory / name} is missing: the checkpoint {LATEST} names is damaged"
            )
    return load_file(directory / "state.safetensors"), json.loads((directory / "state.json").read_text())


def save_training_state(
    root: Path, step: int, optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], rank: int
) -> None:
    """Rank 0 saves ``tensors``, the optimizer and the CPU RNG as checkpoint ``step``; all ranks wait."""
    if rank == 0:
        optimizer_part, rest = optimizer_tensors(optimizer)
        state = {**optimizer_part, **tensors, "rng": torch.get_rng_state()}
        save_checkpoint(root, step, state, {"optimizer": rest})
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def restore_training_state(
    saved: tuple[dict[str, torch.Tensor], dict], optimizer: torch.optim.Optimizer
) -> int:
    """Load the optimizer and the CPU random state of a ``load_checkpoint`` result; return its step."""
    tensors, record = saved
    optimizer.load_state_dict(optimizer_state(tensors, record["optimizer"]))
    torch.set_rng_state(tensors["rng"])
    return int(record["step"])


def unprefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries of ``tensors`` named ``<prefix>.<name>``, keyed by ``<name>``."""
    return {
        key.removeprefix(f"{prefix}."): value
        for key, value in tensors.items()
        if key.startswith(f"{prefix}.")
    }


def prefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """``tensors`` keyed by ``<prefix>.<name>``."""
    return {f"{prefix}.{name}": value for name, value in tensors.items()}
