"""Fourier helpers shared by the pseudo-spectral solvers on periodic grids.

Conventions: real fields are transformed with ``torch.fft.rfft`` / ``rfft2`` over the
last one or two dimensions. In 2D the last two dimensions are ``[y, x]``, so the
half-spectrum runs over ``kx >= 0`` (last dimension) and all ``ky`` (second to last).
Wavenumbers are angular, ``2 pi m / length`` for the integer mode number ``m``.
"""
from __future__ import annotations

import math

import torch


def rfft_wavenumbers(n: int, length: float, device=None, dtype=torch.float64) -> torch.Tensor:
    """Return the angular wavenumbers ``2 pi m / length`` of ``rfft`` on ``n`` points, shape ``(n//2 + 1,)``."""
    return torch.fft.rfftfreq(n, d=length / (2 * math.pi * n), device=device, dtype=dtype)


def rfft2_wavenumbers(n: int, device=None, dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """Return integer wavenumbers ``(ky, kx)`` of ``rfft2`` on an ``n x n`` grid of ``[0, 2 pi)^2``.

    ``ky`` has shape ``(n, 1)`` (all signs, ``fftfreq`` order) and ``kx`` has shape
    ``(1, n//2 + 1)`` (``kx >= 0``), so they broadcast to the half-spectrum shape.
    """
    ky = torch.fft.fftfreq(n, d=1.0 / n, device=device, dtype=dtype)
    kx = torch.fft.rfftfreq(n, d=1.0 / n, device=device, dtype=dtype)
    return ky[:, None], kx[None, :]


def dealias_mask_2d(n: int, device=None) -> torch.Tensor:
    """Return the 2/3-rule mask of an ``n x n`` half-spectrum, shape ``(n, n//2 + 1)``, boolean.

    Kept modes have ``|kx| < n/3`` and ``|ky| < n/3``. Quadratic products of kept modes
    then alias only onto discarded modes, because ``n - 2 k_max > k_max``.
    """
    ky, kx = rfft2_wavenumbers(n, device=device)
    cutoff = n / 3
    return (ky.abs() < cutoff) & (kx.abs() < cutoff)


def half_spectrum_weights_2d(n: int, device=None, dtype=torch.float64) -> torch.Tensor:
    """Return how often each ``rfft2`` mode counts in a sum over the full spectrum, shape ``(n, n//2 + 1)``.

    Columns ``kx = 0`` and (for even ``n``) ``kx = n/2`` appear once in the full
    spectrum; every other column stands for itself and its complex conjugate.
    """
    weights = torch.full((n, n // 2 + 1), 2.0, device=device, dtype=dtype)
    weights[:, 0] = 1.0
    if n % 2 == 0:
        weights[:, -1] = 1.0
    return weights


def fourier_resample_2d(field: torch.Tensor, m: int) -> torch.Tensor:
    """Resample real fields ``(..., n, n)`` on ``[0, 2 pi)^2`` to ``(..., m, m)`` by Fourier truncation or zero-padding.

    Modes with ``|ky| < min(n, m)/2`` and ``|kx| < min(n, m)/2`` keep their amplitudes.
    The Nyquist modes of the smaller grid are dropped, so the result stays real, and a
    field band-limited below ``min(n, m)/2`` survives a round trip ``n -> m -> n`` exactly.
    Sample values are preserved: a field band-limited below ``m/2`` takes the same
    values at the points that both grids share.
    """
    n = field.shape[-1]
    if field.shape[-2] != n:
        raise ValueError(f"expected square fields (..., n, n), got shape {tuple(field.shape)}")
    if m == n:
        return field.clone()
    if m < 2 or m % 2:
        raise ValueError(f"target grid size must be even and >= 2, got {m}")

    keep = min(n, m) // 2  # modes 0..keep-1 and -(keep-1)..-1 along each axis
    field_hat = torch.fft.rfft2(field) / (n * n)
    resampled_hat = field_hat.new_zeros(*field.shape[:-2], m, m // 2 + 1)
    resampled_hat[..., :keep, :keep] = field_hat[..., :keep, :keep]
    resampled_hat[..., m - keep + 1:, :keep] = field_hat[..., n - keep + 1:, :keep]
    return torch.fft.irfft2(resampled_hat * (m * m), s=(m, m))


def isotropic_shell_spectrum(mode_density: torch.Tensor, shells: int) -> torch.Tensor:
    """Sum a density over the ``rfft2`` half-spectrum of ``[0, 2 pi)^2`` into integer wavenumber shells.

    Args:
        mode_density: ``(..., n, n//2 + 1)``, the value of each mode (for one sign of ``kx``).
            Conjugate modes are counted through :func:`half_spectrum_weights_2d`.
        shells: number of shells. Shell ``j = 1..shells`` contains the modes with
            ``j - 1/2 <= |k| < j + 1/2``. The mean mode ``k = 0`` and the modes beyond
            ``shells + 1/2`` (the grid's corners) are not counted.

    Returns:
        ``(..., shells)``, the sum over each shell, in the units of ``mode_density``.
    """
    n = mode_density.shape[-2]
    device, dtype = mode_density.device, mode_density.dtype
    ky, kx = rfft2_wavenumbers(n, device=device, dtype=dtype)
    shell_index = torch.round(torch.sqrt(kx**2 + ky**2)).long()  # |k| in [j - 1/2, j + 1/2) -> j
    weighted = mode_density * half_spectrum_weights_2d(n, device=device, dtype=dtype)

    in_range = (shell_index >= 1) & (shell_index <= shells)
    flat_index = torch.where(in_range, shell_index - 1, torch.full_like(shell_index, shells)).flatten()
    flat_density = weighted.flatten(start_dim=-2)
    sums = flat_density.new_zeros(*flat_density.shape[:-1], shells + 1)
    sums.index_add_(-1, flat_index, flat_density)
    return sums[..., :shells]
