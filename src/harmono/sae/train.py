"""Train an SAE on a feature store, with MonoLoss as a named loss term; resumable and DDP-ready.

The loss of a step is the SAE's own terms (``reconstruction`` and ``aux``,
``l0`` or ``l1``) plus ``mono = mono_coef * mono_loss(latents, emb)``, where
``emb`` is the SAE input (the paper's default) or the rows of a second store
with the same ids. Every term is logged by name in ``metrics.jsonl``. The
loss reads the latents as sparse entries (``SAE.sparse_code``: the top-k
code, or every entry a gradient can pass), which costs ``O(B k d_in)``
instead of the ``O(B d_sae d_in)`` of dense latents, with the same gradients,
unless the code lists more than ``SPARSE_MONO_MAX_DENSITY`` of the entries
(an untrained ReLU or JumpReLU SAE), when it reads the dense latents.

Determinism and resume: batches come from the store's seeded shuffled reader
(seed and epoch fix the order), so a run resumed from a checkpoint skips to
the same batch and, on the CPU, ends with exactly the weights an
uninterrupted run ends with.

Distributed: under ``torchrun`` (``torch.distributed`` initialised by the
caller) each rank reads its own equal part of the store
(``FeatureStore.rank_view``), ``batch_size`` is the global batch, gradients are
averaged by ``DistributedDataParallel``, and the dead-latent counters and the
BatchTopK threshold are reduced across ranks, so every rank holds the same SAE.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from harmono.core import checks
from harmono.core.device import resolve_device
from harmono.core.io import TMP_SUFFIX, write_json_atomically
from harmono.features.store import FeatureStore, StoreView
from harmono.mono import mono_loss
from harmono.mono.loss import LOSS_AVERAGES
from harmono.sae import SAE, SAEConfig, create_sae
from harmono.sae.base import B_DEC_INITS
from harmono.sae.evaluate import EVALUATION_FILE, TOP_ACTIVATIONS_FILE
from harmono.training.checkpoint import (
    load_checkpoint,
    prefixed,
    restore_training_state,
    save_training_state,
    unprefixed,
)
from harmono.training.runs import (
    METRICS_FILE,
    PRECISIONS,
    RUN_FILE,
    MetricLog,
    autocast_for,
    check_resumable,
)
from harmono.training.runs import world as world_info

logger = logging.getLogger("harmono")
SPARSE_MONO_MAX_DENSITY = 1 / 8
"""MonoLoss reads the sparse code while it lists up to this fraction of the latent entries, the dense
latents above (on the CPU the sparse product costs about 7x the dense one per entry)."""
CHECKPOINTS = "checkpoints"
RUN_ENTRIES = (RUN_FILE, METRICS_FILE, CHECKPOINTS, "tensorboard")
"""What an unfinished run folder holds (besides leftover ``*.tmp`` files of these)."""
FINISHED_ENTRIES = ("sae", EVALUATION_FILE, TOP_ACTIVATIONS_FILE)
"""What a finished run folder holds besides ``RUN_ENTRIES``: the SAE and its evaluation."""


@dataclass(frozen=True)
class TrainConfig:
    """How to train (the SAE itself is an ``SAEConfig``). Defaults: the MonoLoss paper's."""

    epochs: int = 50
    """Passes over the store."""
    batch_size: int = 2048
    """Samples per step, over all ranks."""
    lr: float = 1e-4
    """Adam learning rate."""
    adam_eps: float = 6.25e-10
    """Adam epsilon."""
    warmup_steps: int = 0
    """Linear learning-rate warmup."""
    decay_fraction: float = 0.0
    """Fraction of the steps at the end over which the learning rate decays linearly to 0."""
    grad_clip: float = 1.0
    """Gradient-norm clip (0: off)."""
    mono_coef: float = 0.0
    """Weight of MonoLoss (0: off)."""
    mono_average: str = "active"
    """MonoLoss mean over the latents active in the batch (active, the paper's) or all of them."""
    dead_samples: int = 10_000_000
    """A latent is dead after this many samples without firing (drives the AuxK loss)."""
    b_dec_init: str = "geometric_median"
    """Decoder bias at initialisation: geometric_median, mean or zeros of the first init_samples rows."""
    init_samples: int = 4096
    """Rows used to initialise b_dec (and input_scale)."""
    l2_normalize: bool = True
    """L2-normalise every feature row at read time (the paper's features are)."""
    scale_input: bool = False
    """Scale inputs so their mean norm is sqrt(d_in) (folded into the weights on save)."""
    precision: str = "fp32"
    """fp32, or bf16 autocast with fp32 parameters."""
    seed: int = 0
    """Initialisation and data order."""
    device: str = "auto"
    """auto (cuda when available; the local rank's GPU under torchrun), cpu, cuda, cuda:1, ..."""
    checkpoint_every: int = 200
    """Steps between checkpoints (a last one is written at the end)."""
    log_every: int = 10
    """Steps between metric records."""
    tensorboard: bool = False
    """Also log to TensorBoard (needs the tensorboard package)."""

    def __post_init__(self) -> None:
        checks.require_at_least(
            self, ("epochs", "batch_size", "init_samples", "checkpoint_every", "log_every"), 1
        )
        checks.require_at_least(self, ("warmup_steps", "dead_samples"), 0)
        for name in ("lr", "adam_eps"):
            checks.require_positive_number(name, getattr(self, name))
        for name in ("grad_clip", "mono_coef"):
            checks.require_non_negative_number(name, getattr(self, name))
        if not 0 <= self.decay_fraction <= 1:
            raise ValueError(f"decay_fraction must lie in [0, 1], got {self.decay_fraction}")
        checks.require_choice("mono_average", self.mono_average, LOSS_AVERAGES)
        checks.require_choice("b_dec_init", self.b_dec_init, B_DEC_INITS)
        checks.require_choice("precision", self.precision, PRECISIONS)


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced."""

    sae: SAE
    """The trained SAE (eval mode; input_scale not folded)."""
    steps: int
    """Steps of the whole run."""
    seconds: float
    """Wall time of this call."""
    last_metrics: dict
    """The last metric record."""


def _rows(store: FeatureStore, indices: np.ndarray, normalize: bool) -> torch.Tensor:
    rows = torch.from_numpy(store.take(indices, np.float32))
    store.check_values(rows, indices)
    return torch.nn.functional.normalize(rows, dim=1) if normalize else rows


def epoch_batches(
    view: StoreView, batch_size: int, seed: int, epoch: int, normalize: bool, embeddings: FeatureStore | None
) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    """Full batches ``(x (b, d_in), emb (b, E) or None)`` of one epoch, in its seeded shuffled order."""
    for batch in view.shuffled_batches(batch_size, seed=seed * 1_000_003 + epoch, normalize=normalize):
        if len(batch.indices) < batch_size:
            continue
        emb = _rows(embeddings, batch.indices.numpy(), normalize) if embeddings is not None else None
        yield batch.features, emb


def _schedule(config: TrainConfig, total: int):
    decay = int(config.decay_fraction * total)

    def factor(step: int) -> float:
        warm = min(1.0, (step + 1) / config.warmup_steps) if config.warmup_steps else 1.0
        tail = min(1.0, (total - step) / decay) if decay else 1.0
        return warm * max(tail, 0.0)

    return factor


def _check_store(store: FeatureStore, sae_config: SAEConfig, embeddings: FeatureStore | None) -> None:
    if len(store) == 0:
        raise ValueError(f"{store.directory}: expected a store with features, got 0 rows")
    if store.dim != sae_config.d_in:
        raise ValueError(
            f"expected features of d_in = {sae_config.d_in}, got {store.directory} with {store.dim}"
        )
    if embeddings is not None and embeddings.ids != store.ids:
        raise ValueError(
            f"expected an embedding store with the same ids in the same order as {store.directory}, "
            f"got {embeddings.directory} ({len(embeddings)} rows)"
        )


def _check_run_folder(out: Path, record: dict, total: int, saved_step: int | None) -> None:
    """Refuse ``out`` unless it is empty or holds a run of ``record``'s settings that training may resume.

    Resumable: ``run.json`` of the same settings with only ``RUN_ENTRIES``,
    plus ``FINISHED_ENTRIES`` where the checkpoint of the last step ``total``
    (``saved_step``) is there to rebuild them from. Anything else (a finished
    run whose checkpoints are gone, another run, foreign files) would be
    overwritten: ``FileExistsError`` names the folder and what it holds.
    """
    entries = sorted(path.name for path in out.iterdir()) if out.is_dir() else []
    if not entries:
        return
    fix = "; pass overwrite=True (--overwrite) to replace it, or train into another directory"
    try:
        saved = json.loads((out / RUN_FILE).read_text())
    except (OSError, ValueError):
        saved = None
    if not isinstance(saved, dict) or not {"sae", "train"} <= saved.keys():
        raise FileExistsError(
            f"{out} holds files but no {RUN_FILE} of an SAE run ({', '.join(entries)})" + fix
        )
    check_resumable(out, RUN_FILE, record, ("sae", "train", "world_size"))
    known = RUN_ENTRIES + FINISHED_ENTRIES
    foreign = [name for name in entries if name.removesuffix(TMP_SUFFIX) not in known]
    if foreign:
        raise FileExistsError(f"{out} holds files an SAE run does not write ({', '.join(foreign)})" + fix)
    finished = [name for name in entries if name in FINISHED_ENTRIES]
    if finished and saved_step != total:
        raise FileExistsError(
            f"{out} holds a finished run ({', '.join(finished)}) but not the checkpoint of its last step "
            f"{total} in {CHECKPOINTS}/ (it holds {'none' if saved_step is None else f'step {saved_step}'})"
            + fix
        )


def _clear_run_folder(out: Path) -> None:
    """Delete what a run wrote into ``out`` (``RUN_ENTRIES``, ``FINISHED_ENTRIES``); other files stay."""
    for name in RUN_ENTRIES + FINISHED_ENTRIES:
        for path in (out / name, out / (name + TMP_SUFFIX)):
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
            else:
                continue
            logger.warning("%s: removed (overwrite)", path)


def _run_record(sae_config: SAEConfig, config: TrainConfig, store: FeatureStore, world: int) -> dict:
    return {"sae": sae_config.to_dict(), "train": asdict(config), "features": str(store.directory),
            "features_metadata": store.metadata, "world_size": world}  # fmt: skip


def train_sae(
    sae_config: SAEConfig,
    config: TrainConfig,
    store: FeatureStore,
    out: str | Path,
    embeddings: FeatureStore | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> TrainResult:
    """Train an SAE on ``store`` into the run directory ``out`` (resumed if it holds a checkpoint).

    Writes ``run.json`` (both configs), ``metrics.jsonl``, ``checkpoints/``
    and, at the end, ``sae/`` (``SAE.from_pretrained`` reads it). ``out``
    must be empty or hold a run of the same settings, unfinished or with
    the checkpoint of its last step (then nothing is trained and the same
    SAE is saved again); anything else is refused before a file is written.

    Parameters
    ----------
    sae_config : SAEConfig
        The SAE (``d_in`` must be the store's ``dim``).
    config : TrainConfig
    store : FeatureStore
        Training features, read with the store's shuffled reader.
    out : str or Path
        Run directory.
    embeddings : FeatureStore, optional
        Embeddings for MonoLoss, row-aligned with ``store`` (default: the SAE input).
    progress : bool
        Show a progress bar (rank 0).
    overwrite : bool
        Train from scratch even where ``out`` holds another or a finished
        run: the files a run writes there are deleted first (other files
        stay).

    Raises
    ------
    FileExistsError
        Without ``overwrite``, where ``out`` holds a finished run without
        its last checkpoint, or files that are not an SAE run.
    ValueError
        Where ``out`` holds a run with other settings, or the store does
        not fit the SAE.
    """
    start = time.perf_counter()
    rank, world = world_info()
    _check_store(store, sae_config, embeddings)
    if config.batch_size % world:
        raise ValueError(f"batch_size must be divisible by the world size {world}, got {config.batch_size}")
    local_batch = config.batch_size // world
    view = store.rank_view(rank, world) if world > 1 else store.view()
    steps_per_epoch = len(view) // local_batch
    if steps_per_epoch == 0:
        raise ValueError(f"expected at least {local_batch} rows per rank for one batch, got {len(view)}")
    total = config.epochs * steps_per_epoch
    out = Path(out)

    sample = _rows(store, np.arange(min(config.init_samples, len(store))), config.l2_normalize)
    if config.scale_input:
        sae_config = replace(
            sae_config, input_scale=math.sqrt(sae_config.d_in) / float(sample.norm(dim=1).mean())
        )
    torch.manual_seed(config.seed)
    sae = create_sae(sae_config)
    sae.initialize_from_data(sample, config.b_dec_init)
    optimizer = torch.optim.Adam(sae.parameters(), lr=config.lr, eps=config.adam_eps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(config, total))
    device = resolve_device(config.device)
    sae.to(device)
    since_fired = torch.zeros(sae_config.d_sae, dtype=torch.int64, device=device)
    record = _run_record(sae_config, config, store, world)

    step = 0
    saved = None if overwrite else load_checkpoint(out / CHECKPOINTS)
    if not overwrite:
        _check_run_folder(out, record, total, saved[1]["step"] if saved is not None else None)
    if world > 1:
        dist.barrier()  # every rank has looked at out before rank 0 changes it
    if rank == 0:
        if overwrite:
            _clear_run_folder(out)
        out.mkdir(parents=True, exist_ok=True)
    if saved is not None:
        sae.load_state_dict(unprefixed(saved[0], "model"))
        since_fired = saved[0]["since_fired"].to(device)
        step = restore_training_state(saved, optimizer)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, _schedule(config, total), last_epoch=step - 1
        )
        logger.info("%s: resumed at step %d of %d", out, step, total)
    elif rank == 0:
        write_json_atomically(out / RUN_FILE, record, indent=1)
    if rank == 0:
        logger.info("dead latent: no activation in the last %d samples", config.dead_samples)

    model = sae
    if world > 1:
        device_ids = [device.index] if device.type == "cuda" else None
        model = torch.nn.parallel.DistributedDataParallel(sae, device_ids=device_ids, broadcast_buffers=False)
    log = MetricLog(out, step, config.tensorboard, active=rank == 0)
    autocast = autocast_for(config.precision, device)
    bar = tqdm(total=total, initial=step, desc=f"{sae_config.architecture} SAE", disable=not progress or rank)
    metrics: dict = {}
    tic, tic_step = time.perf_counter(), step
    sae.train()
    while step < total:
        epoch, skip = divmod(step, steps_per_epoch)
        batches = epoch_batches(view, local_batch, config.seed, epoch, config.l2_normalize, embeddings)
        for position, (x, emb) in enumerate(batches):
            if position < skip:
                continue
            checks.require_finite("features", x)
            x = x.to(device, non_blocking=True)
            emb = emb.to(device, non_blocking=True) if emb is not None else None
            with autocast:
                output = model(x, dead_mask=since_fired >= config.dead_samples)
                losses = dict(output.losses)
                if config.mono_coef:
                    target = x if emb is None else emb
                    code = sae.sparse_code(output, max_density=SPARSE_MONO_MAX_DENSITY)
                    losses["mono"] = config.mono_coef * mono_loss(
                        output.latents.float() if code is None else code,
                        target,
                        num_latents=sae_config.d_sae,
                        average=config.mono_average,
                    )
            loss = sum(losses.values())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            sae.remove_parallel_gradient()
            if config.grad_clip:
                torch.nn.utils.clip_grad_norm_(sae.parameters(), config.grad_clip)
            optimizer.step()
            scheduler.step()
            sae.normalize_decoder()
            with torch.no_grad():
                active = output.latents > 0
                fired = active.any(dim=0).to(torch.int64)
                l0 = active.sum(dim=1).float().mean()
                if world > 1:
                    dist.all_reduce(fired, op=dist.ReduceOp.MAX)
                    dist.all_reduce(l0)
                    l0 /= world
                since_fired = torch.where(fired.bool(), 0, since_fired + config.batch_size)
            step += 1
            bar.update(1)
            if step % config.log_every == 0 or step == total:
                elapsed = time.perf_counter() - tic
                metrics = {
                    "step": step,
                    "epoch": epoch,
                    "lr": scheduler.get_last_lr()[0],
                    "loss": float(loss.detach()),
                    **{name: float(value.detach()) for name, value in losses.items()},
                    "l0": float(l0),
                    "dead_fraction": float((since_fired >= config.dead_samples).float().mean()),
                    "samples_per_s": (step - tic_step) * config.batch_size / max(elapsed, 1e-9),
                }
                log.write(metrics)
                bar.set_postfix(loss=f"{metrics['loss']:.4g}", l0=f"{metrics['l0']:.1f}",
                                dead=f"{metrics['dead_fraction']:.2f}")  # fmt: skip
                tic, tic_step = time.perf_counter(), step
            if step % config.checkpoint_every == 0 or step == total:
                _save(out, step, sae, optimizer, since_fired, rank)
    bar.close()
    log.close()
    sae.eval()
    if rank == 0:
        sae.save_pretrained(out / "sae")
    if world > 1:
        dist.barrier()
    return TrainResult(sae, total, time.perf_counter() - start, metrics)


def _save(out: Path, step: int, sae: SAE, optimizer, since_fired: torch.Tensor, rank: int) -> None:
    tensors = {**prefixed(sae.state_dict(), "model"), "since_fired": since_fired}
    save_training_state(out / CHECKPOINTS, step, optimizer, tensors, rank)
