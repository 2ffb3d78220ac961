"""Reference statistics of long true runs: stable-band thresholds, time-mean spectra, Lyapunov time.

``thermalizer calibrate --system S`` runs :func:`calibrate` and stores the result
in ``thermalizer_core/systems/reference/<S>.json``, where
:meth:`System.reference` finds it.
"""
from __future__ import annotations

import logging
import math
from typing import Any

import torch
from tqdm.auto import tqdm

from .stability import StableBand, spectrum_average
from .systems import System

logger = logging.getLogger(__name__)


def true_trajectory(system: System, state: torch.Tensor, steps: int, progress: bool = True) -> torch.Tensor:
    """Advance ``state`` by ``steps`` emulator intervals and return the fields, shape ``(steps + 1, B, C, *grid)``."""
    fields = [system.to_emulator_grid(state)]
    states = system.trajectory(state)
    for _ in tqdm(range(steps), desc=f"{system.name} truth", disable=not progress, leave=False):
        fields.append(system.to_emulator_grid(next(states)))
    return torch.stack(fields)


def lyapunov_exponent(system: System, state: torch.Tensor, steps: int, epsilon: float = 1e-7,
                      progress: bool = True) -> float:
    """Estimate the largest Lyapunov exponent (per time unit) from twin trajectories.

    Each member of ``state`` gets a twin displaced by ``epsilon`` times its norm.
    After every emulator interval the separation is measured and rescaled back
    to that size (Benettin's method). Returns the batch mean of the growth rate.
    """
    generator = torch.Generator().manual_seed(12345)
    norm = state.reshape(state.shape[0], -1).norm(dim=1)
    direction = torch.randn(state.shape, generator=generator, dtype=state.dtype).to(state.device)
    direction = direction / direction.reshape(state.shape[0], -1).norm(dim=1).reshape(-1, *[1] * (state.dim() - 1))
    separation = (epsilon * norm).reshape(-1, *[1] * (state.dim() - 1))
    twin = state + separation * direction
    log_growth = torch.zeros(state.shape[0], dtype=torch.float64, device=state.device)
    for _ in tqdm(range(steps), desc=f"{system.name} Lyapunov", disable=not progress, leave=False):
        state = system.advance(state, system.emulator_interval)
        twin = system.advance(twin, system.emulator_interval)
        difference = twin - state
        distance = difference.reshape(state.shape[0], -1).norm(dim=1).reshape(separation.shape)
        log_growth += torch.log(distance / separation).flatten().double()
        twin = state + difference * (separation / distance)
    return float(log_growth.mean() / (steps * system.emulator_interval))


def rolling_std(values: torch.Tensor, window: int) -> torch.Tensor:
    """Return the standard deviation over every window of ``window`` consecutive rows of ``values`` ``(T, B)``."""
    return values.unfold(0, window, 1).std(dim=-1)


def running_spectrum_ratio(spectra: torch.Tensor, reference: torch.Tensor, window: int) -> tuple[float, float]:
    """Return the extremes of (running-average spectrum / reference) after the first ``window`` steps.

    ``spectra`` is ``(T, B, K)``; the running average is the one the stability monitor uses.
    """
    average = torch.zeros_like(spectra[0])
    low, high = math.inf, 0.0
    for count, spectrum in enumerate(spectra):
        average = spectrum_average(average, spectrum, count, window)
        if count + 1 >= window:
            ratio = average / reference
            low, high = min(low, float(ratio.min())), max(high, float(ratio.max()))
    return low, high


def stable_band_from_truth(system: System, fields: torch.Tensor, window: int, spectrum_window: int,
                           energetic_fraction: float = 0.9) -> tuple[StableBand, dict[str, Any]]:
    """Derive the stable-band thresholds from true fields ``(T, B, C, *grid)``.

    Returns the band and the statistics it came from (for the record).
    """
    steps, batch = fields.shape[:2]
    flat = fields.reshape(steps * batch, *fields.shape[2:])
    measures = system.measure(flat).reshape(steps, batch).double()
    spectra = system.energy_spectrum(flat).reshape(steps, batch, -1).double()

    reference_spectrum = spectra.mean(dim=(0, 1))
    order = torch.argsort(reference_spectrum, descending=True)
    cumulative = torch.cumsum(reference_spectrum[order], dim=0) / reference_spectrum.sum()
    count = int((cumulative < energetic_fraction).sum()) + 1
    energetic = torch.zeros_like(reference_spectrum, dtype=torch.bool)
    energetic[order[:count]] = True

    ratio_min, ratio_max = running_spectrum_ratio(spectra[..., energetic], reference_spectrum[energetic],
                                                  spectrum_window)
    window_std = rolling_std(measures, window)
    spectrum_factor = max(10.0, 2.0 * max(ratio_max, 1.0 / ratio_min))

    band = StableBand(
        measure_min=float(measures.min()),
        measure_max=float(measures.max()),
        window=window,
        min_window_std=float(window_std.min()),
        reference_spectrum=tuple(reference_spectrum.tolist()),
        energetic_modes=tuple(energetic.tolist()),
        spectrum_window=spectrum_window,
        spectrum_factor=spectrum_factor,
    )
    stats = {
        "measure_mean": float(measures.mean()),
        "measure_std": float(measures.std()),
        "truth_running_spectrum_ratio_min": ratio_min,
        "truth_running_spectrum_ratio_max": ratio_max,
        "truth_window_std_median": float(window_std.median()),
        "spectrum_p05": torch.quantile(spectra.reshape(-1, spectra.shape[-1]), 0.05, dim=0).tolist(),
        "spectrum_p95": torch.quantile(spectra.reshape(-1, spectra.shape[-1]), 0.95, dim=0).tolist(),
    }
    return band, stats


def calibrate(system: System, batch: int, steps: int, window: int, spectrum_window: int, lyapunov_steps: int,
              seed: int = 1000, fields: torch.Tensor | None = None,
              device: torch.device | str | None = None, progress: bool = True) -> dict[str, Any]:
    """Run long true trajectories and return the system's reference statistics as a JSON-able dict.

    With ``fields`` ``(T, B, C, *grid)`` (true fields already computed, e.g. a
    dataset's held-out splits) the thresholds come from them, and only the
    twin-trajectory run for the Lyapunov exponent integrates ``batch`` new states.
    """
    state = system.initial_state(batch, seed=seed, device=device)
    if fields is None:
        fields = true_trajectory(system, state, steps, progress=progress)[1:]
    band, stats = stable_band_from_truth(system, fields, window, spectrum_window)
    exponent = lyapunov_exponent(system, state, lyapunov_steps, progress=progress)
    lyapunov_time_steps = 1.0 / (exponent * system.emulator_interval) if exponent > 0 else math.inf
    logger.info("%s: measure %.4g to %.4g, Lyapunov exponent %.4g, Lyapunov time %.1f emulator steps",
                system.name, band.measure_min, band.measure_max, exponent, lyapunov_time_steps)
    return {
        "system": system.describe(),
        "calibration": {"batch": batch, "steps": int(fields.shape[0]), "trajectories": int(fields.shape[1]),
                        "seed": seed, "lyapunov_steps": lyapunov_steps},
        "stable_band": band.to_dict(),
        "statistics": stats,
        "wavenumbers": system.wavenumbers.tolist(),
        "lyapunov_exponent": exponent,
        "lyapunov_time_steps": lyapunov_time_steps,
    }
