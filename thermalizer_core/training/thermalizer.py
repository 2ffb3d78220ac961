"""Training and evaluation of thermalizers (DDPM with a noise-level classifier) on true snapshots."""
from __future__ import annotations

import dataclasses
import logging
import pathlib
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from .. import diagnostics
from ..data import TrajectoryData
from ..models import ddpm
from ..models.normalization import ChannelNormalization
from ..models.thermalizer import Thermalizer
from ..systems import System
from .config import ThermalizerTrainingConfig
from .distributed import ProcessInfo
from .loop import train

logger = logging.getLogger(__name__)

#: Levels at which the evaluation reads the classifier: 0..50, as the rollout thresholds use low levels.
EVALUATION_LEVELS = tuple(range(51))
#: Start levels of the denoising evaluation (noise truth to this level, denoise to 0).
DENOISE_EVALUATION_LEVELS = (10, 25, 50)


def sample_snapshots(array: np.ndarray, count: int, rng: np.random.Generator) -> torch.Tensor:
    """Draw ``count`` random snapshots ``(count, C, *grid)`` from trajectories ``(N, T + 1, C, *grid)``."""
    rows = rng.integers(0, array.shape[0], size=count)
    steps = rng.integers(0, array.shape[1], size=count)
    return torch.from_numpy(np.stack([array[r, s] for r, s in zip(rows, steps)]))


def build_thermalizer(data: TrajectoryData, config: ThermalizerTrainingConfig) -> Thermalizer:
    """Return an untrained thermalizer whose initial weights depend only on ``config.seed``."""
    system = data.system
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return Thermalizer(channels=system.field_shape[0], dims=system.spatial_dims, mean=data.mean, std=data.std,
                           **config.architecture)


def diffusion_loss(wrapped: torch.nn.Module, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor,
                   schedule: ddpm.NoiseSchedule, lambda_ce: float) -> tuple[torch.Tensor, dict[str, float]]:
    """Return ``MSE(eps_pred, eps) + lambda_ce * CE(level_logits, t)`` and its two parts."""
    x_t = ddpm.q_sample(x0, t, noise, schedule)
    eps_pred, level_logits = wrapped(x_t)
    mse = F.mse_loss(eps_pred, noise)
    ce = F.cross_entropy(level_logits, t)
    return mse + lambda_ce * ce, {"noise_mse": mse.item(), "level_cross_entropy": ce.item()}


@torch.no_grad()
def classifier_confusion(model: Thermalizer, snapshots: torch.Tensor, generator: torch.Generator) -> dict[str, Any]:
    """Return the classifier's readings of ``snapshots`` noised to each level in :data:`EVALUATION_LEVELS`.

    ``confusion[i][j]`` counts snapshots noised to level ``i`` that were
    classified as level ``j`` (the last column counts every reading above 50).
    Also returns the median reading per level and the readings of the clean snapshots.
    """
    schedule = model.schedule_on(snapshots.device)
    x0 = model.normalization.normalize(snapshots)
    size = len(EVALUATION_LEVELS) + 1
    confusion = torch.zeros(len(EVALUATION_LEVELS), size, dtype=torch.long)
    medians = []
    for row, level in enumerate(EVALUATION_LEVELS):
        t = torch.full((x0.shape[0],), level, dtype=torch.long, device=x0.device)
        noise = torch.randn(x0.shape, generator=generator).to(x0.device)
        _, logits = model(ddpm.q_sample(x0, t, noise, schedule))
        predicted = logits.argmax(dim=1).cpu()
        confusion[row] = torch.bincount(predicted.clamp(max=size - 1), minlength=size)
        medians.append(int(predicted.median()))
    _, clean_logits = model(x0)
    clean = clean_logits.argmax(dim=1).cpu()
    return {
        "levels": list(EVALUATION_LEVELS),
        "confusion": confusion.tolist(),
        "median_reading": medians,
        "clean_median_reading": int(clean.median()),
        "clean_max_reading": int(clean.max()),
        "mean_abs_error_levels_0_50": float(np.mean([abs(m - l) for m, l in zip(medians, EVALUATION_LEVELS)])),
    }


@torch.no_grad()
def denoised_spectra(model: Thermalizer, system: System, snapshots: torch.Tensor,
                     generator: torch.Generator) -> dict[str, Any]:
    """Noise ``snapshots`` to each level in :data:`DENOISE_EVALUATION_LEVELS`, denoise to 0 and compare spectra.

    Returns, per level, the spectral distance (RMS of log10 ratio) of the mean
    denoised spectrum and of the mean noisy spectrum to the mean true spectrum,
    and the largest ratio denoised / true over all modes.
    """
    reference = system.energy_spectrum(snapshots.double()).mean(dim=0)
    modes = reference > reference.max() * 1e-12
    results = {}
    for level in DENOISE_EVALUATION_LEVELS:
        levels = torch.full((snapshots.shape[0],), level, dtype=torch.long, device=snapshots.device)
        noisy = model.normalization.denormalize(ddpm.q_sample(
            model.normalization.normalize(snapshots), levels, torch.randn(snapshots.shape, generator=generator).to(
                snapshots.device), model.schedule_on(snapshots.device)))
        denoised, _ = model.denoise(noisy, levels, 0, forward_diffuse=False, generator=generator)
        denoised_spectrum = system.energy_spectrum(denoised.double()).mean(dim=0, keepdim=True)
        noisy_spectrum = system.energy_spectrum(noisy.double()).mean(dim=0, keepdim=True)
        results[str(level)] = {
            "denoised_spectral_distance": float(diagnostics.spectral_distance(denoised_spectrum, reference, modes)),
            "noisy_spectral_distance": float(diagnostics.spectral_distance(noisy_spectrum, reference, modes)),
            "denoised_max_ratio": float((denoised_spectrum[0, modes] / reference[modes]).max()),
        }
    return results


def evaluate_thermalizer(model: Thermalizer, system: System, array: np.ndarray, device: torch.device,
                         samples: int = 64, seed: int = 1) -> dict[str, Any]:
    """Return the classifier confusion over levels 0-50 and the denoised-spectrum check on held-out truth."""
    model.eval()
    snapshots = sample_snapshots(array, samples, np.random.default_rng(seed)).to(device)
    generator = torch.Generator().manual_seed(seed)
    return {
        "classifier": classifier_confusion(model, snapshots, generator),
        "denoising": denoised_spectra(model, system, snapshots, generator),
        "evaluation_samples": samples,
    }


def train_thermalizer(data: TrajectoryData, out: pathlib.Path, config: ThermalizerTrainingConfig, info: ProcessInfo,
                      resume: bool = False) -> tuple[Thermalizer, dict[str, Any]]:
    """Train a thermalizer on snapshots of ``data``; return the EMA model and the run record."""
    if not 1 <= config.max_level <= 1000:
        raise ValueError(f"max_level = {config.max_level} is out of range: use 1 to 1000")
    train_array = data.split("train")
    model = build_thermalizer(data, config).to(info.device)
    schedule = model.schedule_on(info.device)
    normalization = ChannelNormalization(len(data.mean), data.mean, data.std).to(info.device)

    def loss_fn(wrapped: torch.nn.Module, rng: np.random.Generator, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        x0 = normalization.normalize(sample_snapshots(train_array, config.batch_size, rng).to(info.device))
        t = torch.from_numpy(rng.integers(0, config.max_level, size=config.batch_size)).to(info.device)
        generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
        noise = torch.randn(x0.shape, generator=generator).to(info.device)
        return diffusion_loss(wrapped, x0, t, noise, schedule, config.lambda_ce)

    model.train()
    trained, steps, wall = train(model, loss_fn, info, out, steps=config.steps, learning_rate=config.learning_rate,
                                 weight_decay=config.weight_decay, grad_clip=config.grad_clip,
                                 checkpoint_every=config.checkpoint_every, log_every=config.log_every,
                                 seed=config.seed, max_minutes=config.max_minutes, ema_decay=config.ema_decay,
                                 resume=resume, description=f"{data.meta['system']} thermalizer")
    record: dict[str, Any] = {"steps": steps, "wall_time_s": wall, "config": dataclasses.asdict(config)}
    if info.is_main:
        record["evaluation"] = evaluate_thermalizer(trained, data.system, data.split("test"), info.device)
        logger.info("thermalizer classifier: median readings at levels 0, 5, 10, 20, 50: %s",
                    [record["evaluation"]["classifier"]["median_reading"][k] for k in (0, 5, 10, 20, 50)])
    return trained, record
