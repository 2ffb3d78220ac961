"""The optimization loop shared by emulator and thermalizer training.

It draws each batch from a generator seeded by ``(seed, rank, step)``, so a
resumed run gets the same batches as an uninterrupted one. Only rank 0 writes
metrics, progress and checkpoints.
"""
from __future__ import annotations

import copy
import csv
import logging
import pathlib
import time
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from .distributed import ProcessInfo, barrier
from .state import load_training_state, save_training_state

logger = logging.getLogger(__name__)

#: ``loss_fn(model, rng, step)`` returns the scalar loss and a dict of floats to log.
LossFunction = Callable[[torch.nn.Module, np.random.Generator, int], tuple[torch.Tensor, dict[str, float]]]


def warmed_up_decay(decay: float, step: int) -> float:
    """Return the EMA decay used after optimizer step ``step``: ``min(decay, (1 + step) / (10 + step))``.

    Without the warm-up, a decay of 0.999 keeps the average close to the random
    initial weights for the first few thousand steps, which is most of a short run.
    """
    return min(decay, (1.0 + step) / (10.0 + step))


def update_ema(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """Set every parameter of ``ema`` to ``decay * ema + (1 - decay) * model``; buffers are copied."""
    with torch.no_grad():
        for ema_param, param in zip(ema.parameters(), model.parameters()):
            ema_param.lerp_(param, 1.0 - decay)
        for ema_buffer, buffer in zip(ema.buffers(), model.buffers()):
            ema_buffer.copy_(buffer)


class MetricsLog:
    """Appends rows of metrics to ``metrics.csv``; the header is the keys of the first row.

    A run that starts at ``start_step`` keeps only the existing rows up to that
    step: a fresh run (0) starts a new file, and a resumed run drops the rows
    logged after its last saved state, which it is about to repeat.
    """

    def __init__(self, path: pathlib.Path, start_step: int = 0):
        self.path = path
        self.fields: list[str] | None = None
        if not path.is_file():
            return
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            fields = reader.fieldnames
            kept = [row for row in reader if int(row["step"]) <= start_step] if fields else []
        if not kept:
            path.unlink()
            return
        self.fields = list(fields)
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=self.fields)
            writer.writeheader()
            writer.writerows(kept)

    def append(self, row: dict[str, float]) -> None:
        new_file = self.fields is None
        if new_file:
            self.fields = list(row)
        with self.path.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=self.fields, extrasaction="ignore")
            if new_file:
                writer.writeheader()
            writer.writerow(row)


def out_of_time(info: ProcessInfo, started: float, max_minutes: float) -> bool:
    """Return whether rank 0 has passed the wall-time limit; every rank receives rank 0's result."""
    late = torch.tensor([time.perf_counter() - started > 60.0 * max_minutes], dtype=torch.int32, device=info.device)
    if info.distributed:
        dist.broadcast(late, src=0)
    return bool(late.item())


def train(model: torch.nn.Module, loss_fn: LossFunction, info: ProcessInfo, run_dir: pathlib.Path, *,
          steps: int, learning_rate: float, weight_decay: float, grad_clip: float, checkpoint_every: int,
          log_every: int, seed: int, max_minutes: float | None = None, ema_decay: float | None = None,
          resume: bool = False, description: str = "train") -> tuple[torch.nn.Module, int, float]:
    """Optimize ``model`` with AdamW and return ``(trained or EMA model, steps done, wall time in s)``.

    The model must already be on ``info.device``. Under torchrun it is wrapped
    in DistributedDataParallel, so every replica applies the same averaged gradients.
    """
    ema = copy.deepcopy(model).requires_grad_(False) if ema_decay is not None else None
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=weight_decay)
    run_dir.mkdir(parents=True, exist_ok=True)
    resume_dir = run_dir / "resume"
    start, elapsed = (load_training_state(resume_dir, model, optimizer, ema) if resume else (0, 0.0))
    if resume:
        logger.info("resuming %s from step %d (%.0f s trained)", description, start, elapsed)
    wrapped = DistributedDataParallel(model) if info.distributed else model
    metrics = MetricsLog(run_dir / "metrics.csv", start) if info.is_main else None
    started = time.perf_counter() - elapsed
    bar = tqdm(total=steps, initial=start, desc=description, unit="step", disable=not info.is_main)
    step = start
    while step < steps:
        if max_minutes is not None and out_of_time(info, started, max_minutes):
            logger.info("stopping %s at step %d: wall-time limit of %.1f min reached", description, step, max_minutes)
            break
        rng = np.random.default_rng([seed, info.rank, step])
        loss, values = loss_fn(wrapped, rng, step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        if ema is not None:
            update_ema(ema, model, warmed_up_decay(ema_decay, step))
        step += 1
        bar.update(1)
        if info.is_main and (step % log_every == 0 or step == steps):
            wall = time.perf_counter() - started
            bar.set_postfix(loss=f"{loss.item():.4g}")
            metrics.append({"step": step, "wall_time_s": round(wall, 2), "loss": loss.item(), **values,
                            "steps_per_second": step / max(wall, 1e-9)})
        if step % checkpoint_every == 0 or step == steps:
            if info.is_main:
                save_training_state(resume_dir, model, optimizer, ema, step, time.perf_counter() - started)
            barrier(info)
    bar.close()
    wall = time.perf_counter() - started
    if info.is_main:
        save_training_state(resume_dir, model, optimizer, ema, step, wall)
    return (ema if ema is not None else model), step, wall
