"""Train a GPT with a standard or harmonic head on a prepared token corpus; resumable, DDP-ready.

The loop is nanoGPT's: random windows of the training tokens, AdamW
(β = 0.9, 0.95), linear warmup then cosine decay to ``min_lr``, gradient
clipping, gradient accumulation, bf16 autocast on GPU (the harmonic head
computes its distances in float32 regardless).

Batches and determinism: the ``batch_size`` windows of step ``s`` are drawn
from a generator seeded with ``(seed, s)`` and laid out as ``(micro steps,
ranks, micro_batch)``; every rank takes its column. So the data never depends
on where a run was interrupted, a resumed run ends with the weights an
uninterrupted one ends with, and N processes with DDP take the same step as
one process with the whole batch.

Evaluation: every ``eval_every`` steps the mean loss over ``eval_batches``
fixed validation batches (the same windows for every run and seed), and at
the end the loss over the whole validation split in non-overlapping windows.
Losses are next-token NLL in nats for both heads.

A run directory holds ``run.json`` (configs and corpus), ``metrics.jsonl``,
``checkpoints/``, and at the end ``results.json`` and ``model/``
(``GPT.from_pretrained``; with the corpus' ``tokenizer.json``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from harmono.core import checks
from harmono.core.device import resolve_device
from harmono.core.io import read_json, write_json_atomically
from harmono.core.provenance import provenance
from harmono.data.text import TOKENIZER_FILE, TokenCorpus
from harmono.models.gpt import GPT, GPTConfig
from harmono.training.checkpoint import (
    load_checkpoint,
    prefixed,
    restore_training_state,
    save_training_state,
    unprefixed,
)
from harmono.training.runs import (
    PRECISIONS,
    RUN_FILE,
    MetricLog,
    autocast_for,
    check_resumable,
    read_metric_log,
    world,
)

logger = logging.getLogger("harmono")

RESULTS_FILE = "results.json"
MODEL_DIR = "model"
EVAL_SEED = 20_250_203
"""Seed of the fixed validation windows (shared by every run, whatever its seed)."""


@dataclass(frozen=True)
class GPTTrainConfig:
    """How to train a :class:`~harmono.models.gpt.GPT`."""

    data: str = ""
    """Prepared corpus folder (``harmono gpt prepare``)."""
    batch_size: int = 16
    """Sequences per optimizer step, over all ranks and micro steps."""
    micro_batch: int = 0
    """Sequences per forward pass on one rank; 0: ``batch_size / world size`` (no accumulation)."""
    max_steps: int = 300
    """Optimizer steps; the token budget is ``max_steps * batch_size * block_size``."""
    lr: float = 6e-4
    """Peak learning rate."""
    min_lr: float = 3e-5
    """Learning rate at the end of the cosine decay."""
    warmup_steps: int = 30
    """Steps of linear warmup from 0 to ``lr``."""
    weight_decay: float = 0.0
    """AdamW weight decay of the matrices other than the embeddings (the paper: 0)."""
    beta1: float = 0.9
    """AdamW β1."""
    beta2: float = 0.95
    """AdamW β2."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this (0: off)."""
    seed: int = 0
    """Seed of the initialisation, the batches and dropout."""
    device: str = "auto"
    """auto (cuda when available; the local rank's GPU under torchrun), cpu, cuda, cuda:1, ..."""
    precision: str = "auto"
    """auto (bf16 autocast on GPU, fp32 on CPU), bf16 or fp32."""
    eval_every: int = 100
    """Steps between validation losses on the fixed batches."""
    eval_batches: int = 8
    """Fixed validation batches (of ``batch_size`` windows) per evaluation."""
    final_eval: bool = True
    """At the end, the loss over the whole validation split."""
    checkpoint_every: int = 100
    """Steps between checkpoints (one is written at the end too)."""
    log_every: int = 10
    """Steps between training metric records."""

    def __post_init__(self) -> None:
        checks.require_at_least(
            self,
            ("batch_size", "max_steps", "eval_every", "eval_batches", "checkpoint_every", "log_every"),
            1,
        )
        checks.require_at_least(self, ("micro_batch", "warmup_steps", "seed"), 0)
        checks.require_positive_number("lr", self.lr)
        for name in ("min_lr", "weight_decay", "grad_clip"):
            checks.require_non_negative_number(name, getattr(self, name))
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must lie in [0, 1), got {getattr(self, name)}")
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr must be <= lr, got {self.min_lr} > {self.lr}")
        checks.require_choice("precision", self.precision, PRECISIONS)


@dataclass(frozen=True)
class GPTTrainResult:
    """What :func:`train_gpt` returns.

    Attributes
    ----------
    model : GPT
        The trained model (eval mode).
    steps : int
        Optimizer steps done.
    seconds : float
        Wall time of this call.
    metrics : dict
        ``results.json`` when the run finished, else the last evaluation.
    """

    model: GPT
    steps: int
    seconds: float
    metrics: dict


def lr_at(config: GPTTrainConfig, step: int) -> float:
    """Learning rate of ``step`` (0-based): linear warmup, then cosine from ``lr`` to ``min_lr``."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(config.max_steps - config.warmup_steps, 1)
    return config.min_lr + 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0))) * (config.lr - config.min_lr)


def micro_batch_size(config: GPTTrainConfig, world_size: int) -> int:
    """Sequences per forward pass on one rank; checks that they tile ``batch_size``."""
    micro = config.micro_batch or config.batch_size // world_size
    if micro < 1 or config.batch_size % (micro * world_size):
        raise ValueError(
            f"batch_size must be a multiple of micro_batch x world size = {config.micro_batch} x "
            f"{world_size}, got {config.batch_size}"
        )
    return micro


def step_offsets(config: GPTTrainConfig, step: int, windows: int, rank: int, size: int) -> torch.Tensor:
    """Window starts of ``rank`` at ``step``: ``(micro steps, micro_batch)``, drawn from ``(seed, step)``."""
    generator = torch.Generator().manual_seed(config.seed * 1_000_003 + step)
    offsets = torch.randint(windows, (config.batch_size,), generator=generator)
    micro = micro_batch_size(config, size)
    return offsets.view(-1, size, micro)[:, rank]


def _optimizer(model: GPT, config: GPTTrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """AdamW; weight decay on the block matrices only (not the embeddings, the head or the norms)."""
    decayed, plain = [], []
    for name, parameter in model.named_parameters():
        (decayed if parameter.ndim >= 2 and name.startswith("blocks.") else plain).append(parameter)
    groups = [
        {"params": decayed, "weight_decay": config.weight_decay},
        {"params": plain, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(
        groups, lr=config.lr, betas=(config.beta1, config.beta2), fused=device.type == "cuda"
    )


def _summed_loss(
    model: GPT, corpus: TokenCorpus, offsets: torch.Tensor, block: int, device, autocast
) -> float:
    """Summed next-token NLL of the validation windows at ``offsets``."""
    if offsets.numel() == 0:
        return 0.0
    x, y = corpus.batch("val", offsets, block)
    with autocast:
        return float(model(x.to(device), y.to(device))) * y.numel()


@torch.no_grad()
def evaluate_gpt(
    model: GPT,
    corpus: TokenCorpus,
    offsets: torch.Tensor,
    batch_rows: int,
    device: torch.device,
    autocast: contextlib.AbstractContextManager | None = None,
) -> float:
    """Mean next-token NLL (nats) of the validation windows starting at ``offsets (N,)``, over all ranks.

    Every rank scores its share of the windows in batches of ``batch_rows``;
    the sums are all-reduced. ``autocast`` wraps the forward passes (e.g. bf16 on GPU).
    """
    rank, size = world()
    block = model.config.block_size
    autocast = autocast or contextlib.nullcontext()
    mine = offsets[rank::size]
    was_training = model.training
    model.eval()
    total = sum(
        _summed_loss(model, corpus, mine[start : start + batch_rows], block, device, autocast)
        for start in range(0, len(mine), batch_rows)
    )
    model.train(was_training)
    sums = torch.tensor([total, float(len(mine) * block)], dtype=torch.float64, device=device)
    if size > 1:
        dist.all_reduce(sums)
    return float(sums[0] / sums[1])


def full_validation_offsets(corpus: TokenCorpus, block: int) -> torch.Tensor:
    """Starts of the non-overlapping windows that cover the validation split: ``(N,)``."""
    return torch.arange(0, corpus.windows("val", block), block)


def fixed_validation_offsets(corpus: TokenCorpus, config: GPTTrainConfig, block: int) -> torch.Tensor:
    """The ``eval_batches * batch_size`` validation windows of the periodic evaluations (seed-independent)."""
    generator = torch.Generator().manual_seed(EVAL_SEED)
    return torch.randint(
        corpus.windows("val", block), (config.eval_batches * config.batch_size,), generator=generator
    )


def _resume(out: Path, record: dict, model: GPT, optimizer) -> int:
    saved = load_checkpoint(out / "checkpoints")
    if saved is None:
        return 0
    check_resumable(out, RUN_FILE, record, ("model", "train", "world_size"))
    model.load_state_dict(unprefixed(saved[0], "model"))
    return restore_training_state(saved, optimizer)


def resolved_model_config(model_config: GPTConfig, corpus: TokenCorpus) -> GPTConfig:
    """``model_config`` with ``vocab_size`` 0 replaced by the corpus'; refuses a smaller vocabulary."""
    if model_config.vocab_size == 0:
        return replace(model_config, vocab_size=corpus.vocab_size)
    if model_config.vocab_size < corpus.vocab_size:
        raise ValueError(
            f"expected vocab_size >= {corpus.vocab_size} (the corpus' vocabulary), "
            f"got {model_config.vocab_size}"
        )
    return model_config


def train_gpt(
    model_config: GPTConfig,
    config: GPTTrainConfig,
    out: str | Path,
    *,
    progress: bool = True,
    stop_after_steps: int = 0,
) -> GPTTrainResult:
    """Train ``GPT(model_config)`` on ``config.data`` into the run directory ``out`` (resumed if begun).

    Parameters
    ----------
    model_config : GPTConfig
        The network; ``vocab_size`` 0 takes the corpus'.
    config : GPTTrainConfig
    out : str or Path
        Run directory.
    progress : bool
        Show a progress bar with the loss and tokens/s (rank 0).
    stop_after_steps : int
        Stop once this many steps are done, after a checkpoint (0: run to the
        end); a later call resumes.
    """
    start = time.perf_counter()
    rank, size = world()
    corpus = TokenCorpus.open(config.data)
    model_config = resolved_model_config(model_config, corpus)
    block = model_config.block_size
    windows = corpus.windows("train", block)
    eval_offsets = fixed_validation_offsets(corpus, config, block)
    micro = micro_batch_size(config, size)
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    model = GPT(model_config).to(device)
    optimizer = _optimizer(model, config, device)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    record = {
        "model": asdict(model_config),
        "train": asdict(config),
        "world_size": size,
        "corpus": corpus.meta,
    }
    step = _resume(out, record, model, optimizer)
    if step:
        logger.info("%s: resumed at step %d of %d", out, step, config.max_steps)
    elif rank == 0:
        write_json_atomically(out / RUN_FILE, {**record, "provenance": provenance()}, indent=1)
    net = model
    if size > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    autocast = autocast_for(config.precision, device)
    tokens_per_step = config.batch_size * block
    log = MetricLog(out, step, tensorboard=False, active=rank == 0)
    bar = tqdm(total=config.max_steps, initial=step, desc=f"gpt {model_config.head}",
               disable=not progress or rank > 0)  # fmt: skip
    last_eval: dict = {}
    window_start, window_steps = time.perf_counter(), 0
    model.train()
    while step < config.max_steps and not (stop_after_steps and step >= stop_after_steps):
        lr = lr_at(config, step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        offsets = step_offsets(config, step, windows, rank, size)
        accumulation = len(offsets)
        total_loss = torch.zeros((), device=device)
        for index, micro_offsets in enumerate(offsets):
            x, y = corpus.batch("train", micro_offsets, block)
            last = index == accumulation - 1
            sync = contextlib.nullcontext() if last or size == 1 else net.no_sync()
            with sync:
                with autocast:
                    loss = net(x.to(device, non_blocking=True), y.to(device, non_blocking=True))
                (loss / accumulation).backward()
            total_loss += loss.detach() / accumulation
        if size > 1:
            dist.all_reduce(total_loss)
            total_loss /= size
        train_loss = float(total_loss)
        if not math.isfinite(train_loss):
            raise ValueError(
                f"step {step}: expected a finite training loss, got {train_loss}; lower the learning rate "
                f"(now {lr:.3g}); the checkpoints written so far are intact"
            )
        grad_norm = (
            float(torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip))
            if config.grad_clip
            else None
        )
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        window_steps += 1
        bar.update(1)
        if step % config.log_every == 0 or step == config.max_steps:
            seconds = time.perf_counter() - window_start
            tokens_per_s = window_steps * tokens_per_step / seconds
            window_start, window_steps = time.perf_counter(), 0
            log.write({"step": step, "tokens": step * tokens_per_step, "lr": lr, "loss": train_loss,
                       "grad_norm": grad_norm, "tokens_per_s": tokens_per_s})  # fmt: skip
            bar.set_postfix(loss=f"{train_loss:.3f}", tok_s=f"{tokens_per_s:,.0f}")
        if step % config.eval_every == 0 or step == config.max_steps:
            val_loss = evaluate_gpt(model, corpus, eval_offsets, micro, device, autocast)
            last_eval = {"step": step, "tokens": step * tokens_per_step, "val_loss": val_loss}
            log.write(last_eval)
            logger.info("step %d: val_loss %.4f", step, val_loss)
            window_start, window_steps = time.perf_counter(), 0  # the throughput excludes evaluations
        if step % config.checkpoint_every == 0 or step == config.max_steps or step == stop_after_steps:
            save_training_state(
                out / "checkpoints", step, optimizer, prefixed(model.state_dict(), "model"), rank
            )
    bar.close()
    log.close()
    model.eval()
    if step < config.max_steps:
        return GPTTrainResult(model, step, time.perf_counter() - start, last_eval)
    results = {**last_eval, "steps": step, "tokens": step * tokens_per_step,
               "parameters": model.num_parameters(), "head": model_config.head}  # fmt: skip
    if config.final_eval:
        full = full_validation_offsets(corpus, block)
        results["final_val_loss"] = evaluate_gpt(model, corpus, full, micro, device, autocast)
        results["final_val_tokens"] = len(full) * block
    results["train_tokens_per_s"] = _mean_throughput(out)
    results["seconds"] = time.perf_counter() - start
    if rank == 0:
        model.save_pretrained(out / MODEL_DIR)
        if (corpus.directory / TOKENIZER_FILE).is_file():
            shutil.copyfile(corpus.directory / TOKENIZER_FILE, out / MODEL_DIR / TOKENIZER_FILE)
        write_json_atomically(out / RESULTS_FILE, results, indent=1)
    if size > 1:
        dist.barrier()
    return GPTTrainResult(model, step, results["seconds"], results)


def _mean_throughput(out: Path) -> float | None:
    """Mean of the logged tokens/s (rank 0 holds the log; None elsewhere)."""
    values = [r["tokens_per_s"] for r in read_metric_log(out) if "tokens_per_s" in r]
    return sum(values) / len(values) if values else None


def read_results(out: str | Path) -> dict | None:
    """``results.json`` of a finished run in ``out``, or None."""
    path = Path(out) / RESULTS_FILE
    return read_json(path, "a GPT run's results") if path.is_file() else None
