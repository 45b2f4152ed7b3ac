"""Training checkpoints without pickle: tensors in safetensors, everything else in JSON.

A checkpoint is a directory ``checkpoints/step_<N>/`` holding ``state.safetensors``
(model parameters and buffers, optimizer moments, the dead-latent counters,
the random generator state) and ``state.json`` (the step, the optimizer's
scalar settings). It is written as ``step_<N>.partial/`` and renamed when
complete; ``checkpoints/latest.json`` then names it, replaced atomically, and
the previous checkpoint is kept. A run killed at any moment resumes from the
last checkpoint that was finished, and one whose newest checkpoint was damaged
afterwards resumes from the one before, with a logged warning.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import save

from harmono.core.io import read_safetensors, write_atomically, write_json_atomically

LATEST = "latest.json"
STATE_TENSORS = "state.safetensors"
STATE_RECORD = "state.json"
PARTIAL = ".partial"
"""Suffix of a checkpoint directory being written; renamed to ``step_<N>`` when complete."""
STEP_NAME = re.compile(r"step_\d{9}")

logger = logging.getLogger(__name__)


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
    root: Path, step: int, tensors: dict[str, torch.Tensor], record: dict, keep: int = 2
) -> Path:
    """Write checkpoint ``step`` under ``root``, point ``latest.json`` at it, keep the newest ``keep``.

    The checkpoint is written into ``step_<N>.partial`` and renamed when
    complete, so the ones before it stay whole until then; with ``keep`` >= 2
    the previous one also outlives it, for :func:`load_checkpoint` to fall back on.
    """
    root.mkdir(parents=True, exist_ok=True)
    directory = root / f"step_{step:09d}"
    partial = root / f"{directory.name}{PARTIAL}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    cpu = {name: tensor.detach().cpu().contiguous() for name, tensor in tensors.items()}
    write_atomically(partial / STATE_TENSORS, lambda handle: handle.write(save(cpu)))
    write_json_atomically(partial / STATE_RECORD, {**record, "step": step})
    if directory.exists():
        shutil.rmtree(directory)
    partial.rename(directory)
    write_json_atomically(root / LATEST, {"directory": directory.name, "step": step})
    for old in _complete_directories(root)[keep:]:
        shutil.rmtree(old, ignore_errors=True)
    return directory


def _complete_directories(root: Path) -> list[Path]:
    """The ``step_<N>`` directories under ``root``, newest first (no ``.partial`` one)."""
    return sorted((d for d in root.glob("step_*") if STEP_NAME.fullmatch(d.name)), reverse=True)


def _read_checkpoint(directory: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Tensors and record of the checkpoint in ``directory``; ``ValueError`` naming the damaged file."""
    for name in (STATE_TENSORS, STATE_RECORD):
        if not (directory / name).is_file():
            raise ValueError(f"{directory / name} is missing")
    path = directory / STATE_RECORD
    try:
        record = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err})") from err
    expected = int(directory.name.removeprefix("step_"))
    step = record.get("step") if isinstance(record, dict) else record
    if type(step) is not int or step != expected:
        raise ValueError(f"{path}: expected a JSON object with the int step {expected}, got {step!r}")
    tensors, _ = read_safetensors(directory / STATE_TENSORS)
    return tensors, record


def _named_by_latest(root: Path) -> Path | None:
    """The directory ``latest.json`` names, or None (with a warning) when it is unreadable."""
    pointer = root / LATEST
    try:
        name = json.loads(pointer.read_text())["directory"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as err:
        logger.warning("%s is unreadable (%r); looking for the newest complete checkpoint", pointer, err)
        return None
    if not isinstance(name, str) or not STEP_NAME.fullmatch(name):
        logger.warning("%s names no checkpoint (%r); looking for the newest complete one", pointer, name)
        return None
    return root / name


def load_checkpoint(root: Path) -> tuple[dict[str, torch.Tensor], dict] | None:
    """Tensors and record of the newest readable checkpoint under ``root``, or None where there is none.

    The one ``latest.json`` names is tried first, then the other complete
    ``step_<N>`` directories, newest first. Each unreadable one (a missing or
    truncated file, a corrupt ``state.json``) is skipped with a logged warning;
    nothing is changed on disk.

    Raises
    ------
    ValueError
        Checkpoints exist but none is readable; the message names each damaged file.
    """
    if not (root / LATEST).is_file() and not _complete_directories(root):
        return None
    named = _named_by_latest(root) if (root / LATEST).is_file() else None
    candidates = [named] if named is not None else []
    candidates += [d for d in _complete_directories(root) if d != named]
    problems = []
    for directory in candidates:
        try:
            saved = _read_checkpoint(directory)
        except ValueError as err:
            logger.warning("skipping the checkpoint %s: %s", directory, err)
            problems.append(str(err))
            continue
        if problems:
            logger.warning("resuming from the older checkpoint %s", directory)
        return saved
    problems = problems or [f"{root / LATEST} is unreadable and no step_<N> directory is complete"]
    raise ValueError(f"expected a readable checkpoint under {root}, got none: {'; '.join(problems)}")


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
