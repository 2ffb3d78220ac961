"""Training and evaluation of residual emulators on true trajectories."""
from __future__ import annotations

import dataclasses
import logging
import pathlib
from typing import Any

import numpy as np
import torch

from ..data import TrajectoryData, sample_windows
from ..models.emulator import Emulator
from ..models.normalization import ChannelNormalization
from .config import EmulatorTrainingConfig
from .distributed import ProcessInfo
from .loop import train

logger = logging.getLogger(__name__)


def build_emulator(data: TrajectoryData, config: EmulatorTrainingConfig) -> Emulator:
    """Return an untrained emulator for the dataset's system, with the training split's normalization.

    The initial weights depend only on ``config.seed``; the global torch generator is left as it was.
    """
    system = data.system
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return Emulator(channels=system.field_shape[0], dims=system.spatial_dims, sigma=config.sigma,
                        mean=data.mean, std=data.std, **config.architecture)


def unrolled_loss(model: torch.nn.Module, windows: torch.Tensor, config: EmulatorTrainingConfig,
                  generator: torch.Generator) -> torch.Tensor:
    """Return the mean one-step MSE over ``unroll_steps`` steps from normalized windows ``(B, k + 1, C, *grid)``.

    The input of the first step gets ``input_noise``, and every step adds the
    emulator's own ``sigma``, as in a rollout. Gradients flow through all steps.
    """
    state = windows[:, 0]
    if config.input_noise > 0:
        state = state + config.input_noise * torch.randn(state.shape, generator=generator).to(state.device)
    loss = torch.zeros((), device=windows.device)
    for k in range(1, windows.shape[1]):
        state = state + model(state)
        if config.sigma > 0:
            state = state + config.sigma * torch.randn(state.shape, generator=generator).to(state.device)
        loss = loss + torch.mean((state - windows[:, k]) ** 2)
    return loss / (windows.shape[1] - 1)


@torch.no_grad()
def evaluate_emulator(model: Emulator, array: np.ndarray, device: torch.device, samples: int = 256,
                      seed: int = 1) -> dict[str, float]:
    """Return one-step errors of ``model`` on held-out trajectories ``(N, T + 1, C, *grid)``.

    ``relative_error`` is ``|pred - true| / |true|`` and ``residual_error`` is
    ``|pred - true| / |true - x|`` (the error relative to the change in one
    step), both as means over ``samples`` random pairs.
    """
    model.eval()
    pairs = sample_windows(array, samples, 2, np.random.default_rng(seed)).to(device)
    x, target = pairs[:, 0], pairs[:, 1]
    prediction = model.step(x, sigma=0.0)
    flat = lambda t: t.reshape(t.shape[0], -1)  # noqa: E731
    error = flat(prediction - target).norm(dim=1)
    return {
        "relative_error": float((error / flat(target).norm(dim=1)).mean()),
        "residual_error": float((error / flat(target - x).norm(dim=1)).mean()),
        "evaluation_samples": samples,
    }


def train_emulator(data: TrajectoryData, out: pathlib.Path, config: EmulatorTrainingConfig, info: ProcessInfo,
                   resume: bool = False) -> tuple[Emulator, dict[str, Any]]:
    """Train an emulator on ``data`` and return it with the run record (steps, wall time, evaluation)."""
    train_array = data.split("train")
    model = build_emulator(data, config).to(info.device)
    normalization = ChannelNormalization(len(data.mean), data.mean, data.std).to(info.device)

    def loss_fn(wrapped: torch.nn.Module, rng: np.random.Generator, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        windows = sample_windows(train_array, config.batch_size, config.unroll_steps + 1, rng).to(info.device)
        batch, length = windows.shape[:2]
        windows = normalization.normalize(windows.flatten(0, 1)).reshape(batch, length, *windows.shape[2:])
        generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
        return unrolled_loss(wrapped, windows, config, generator), {}

    model.train()
    trained, steps, wall = train(model, loss_fn, info, out, steps=config.steps, learning_rate=config.learning_rate,
                                 weight_decay=config.weight_decay, grad_clip=config.grad_clip,
                                 checkpoint_every=config.checkpoint_every, log_every=config.log_every,
                                 seed=config.seed, max_minutes=config.max_minutes, resume=resume,
                                 description=f"{data.meta['system']} emulator")
    record: dict[str, Any] = {"steps": steps, "wall_time_s": wall, "config": dataclasses.asdict(config)}
    if info.is_main:
        record["evaluation"] = evaluate_emulator(trained, data.split("test"), info.device)
        logger.info("emulator evaluation: %s", record["evaluation"])
    return trained, record
