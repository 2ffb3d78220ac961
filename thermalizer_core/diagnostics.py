"""Diagnostics shared by training, the rollout engine and the dashboard.

Fields have shape ``(B, C, *grid)`` on the emulator grid. System-specific
quantities (energy or enstrophy, energy spectrum) come from the system object,
so every caller computes them the same way. This module adds the comparisons
between runs.
"""
from __future__ import annotations

import torch

from .systems import System


def measure(system: System, field: torch.Tensor) -> torch.Tensor:
    """Return the system's tracked scalar (energy for KS, enstrophy in 2D), shape ``(B,)``."""
    return system.measure(field)


def energy_spectrum(system: System, field: torch.Tensor) -> torch.Tensor:
    """Return the energy spectrum (isotropic shells in 2D), shape ``(B, K)``, at ``system.wavenumbers``."""
    return system.energy_spectrum(field)


def mse(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Return the mean squared error per sample over all non-batch dimensions, shape ``(B,)``."""
    difference = (prediction - target).reshape(prediction.shape[0], -1)
    return difference.pow(2).mean(dim=1)


def pearson_correlation(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Return the Pearson correlation per sample over all non-batch dimensions, shape ``(B,)``.

    A sample with zero variance in either input has correlation NaN.
    """
    a = prediction.reshape(prediction.shape[0], -1)
    b = target.reshape(target.shape[0], -1)
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    return (a * b).sum(dim=1) / (a.norm(dim=1) * b.norm(dim=1))


def correlation_time(correlations: torch.Tensor, threshold: float = 0.8) -> torch.Tensor:
    """Return, per trajectory, the number of steps before the correlation first drops below ``threshold``.

    ``correlations`` has shape ``(T, B)``, row ``t`` being the correlation after
    step ``t + 1``. This is the "correlation time" that PDE-Refiner reports
    (Lippe et al. 2023, with threshold 0.8). A trajectory that never drops below
    gets ``T``; NaN counts as a drop.
    """
    below = ~(correlations >= threshold)
    steps = torch.full((correlations.shape[1],), correlations.shape[0], dtype=torch.long, device=correlations.device)
    any_below = below.any(dim=0)
    first_below = below.to(torch.int8).argmax(dim=0)
    return torch.where(any_below, first_below, steps)


def spectral_distance(spectrum: torch.Tensor, reference: torch.Tensor, modes: torch.Tensor | None = None) -> torch.Tensor:
    """Return the root-mean-square of ``log10(spectrum / reference)`` over ``modes``, shape ``(B,)``.

    ``spectrum`` is ``(B, K)``, ``reference`` is ``(K,)``; ``modes`` is a boolean
    mask ``(K,)`` (all modes with a positive reference by default). A value of 1
    means the spectrum is off by a factor of ten on average.
    """
    if modes is None:
        modes = reference > 0
    ratio = spectrum[:, modes] / reference[modes]
    return torch.log10(ratio).pow(2).mean(dim=1).sqrt()
