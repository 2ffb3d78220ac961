"""The stable-horizon criterion: when a rollout stops looking like the system.

This is the one definition that the engine, the benchmarks, the CLI and the
dashboard use. A trajectory leaves the *stable band* at the first step where
any of these is true (checked in this order):

``non-finite``
    a value of the field, or its measure, is NaN or infinite;
``out of band``
    the measure (energy for KS, enstrophy in 2D) lies outside
    ``[measure_min / band_factor, measure_max * band_factor]``, where the bounds
    are the extremes over long true runs;
``frozen``
    the standard deviation of the measure over the last ``window`` steps is
    below ``frozen_fraction`` times the smallest such standard deviation seen in
    long true runs (the dynamics have died although the measure may sit inside
    the band);
``spectrum``
    the energy spectrum, averaged exponentially with a time constant of
    ``spectrum_window`` steps, differs from the true time-mean spectrum by more
    than ``spectrum_factor`` in any of the energetic modes (the modes that hold
    90% of the energy). The factor is at least twice the largest deviation that
    the same average of long true runs shows.

The frozen check needs ``window`` steps of history and the spectrum check
``spectrum_window`` steps, so a trajectory cannot fail them earlier. The thresholds are
derived from long true runs by :func:`thermalizer_core.calibration.calibrate`
and stored with each system's defaults.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import torch

NON_FINITE = "non-finite"
OUT_OF_BAND = "out of band"
FROZEN = "frozen"
SPECTRUM = "spectrum"
HARD_LIMIT = "noise level above hard limit"
SOLVER_ERROR = "solver error"
EXIT_REASONS = (NON_FINITE, OUT_OF_BAND, FROZEN, SPECTRUM, HARD_LIMIT, SOLVER_ERROR)


@dataclasses.dataclass(frozen=True)
class StableBand:
    """Thresholds of the stable-horizon criterion, in the units of the system's measure."""

    measure_min: float
    measure_max: float
    window: int
    min_window_std: float
    reference_spectrum: tuple[float, ...]
    energetic_modes: tuple[bool, ...]
    spectrum_window: int = 200
    band_factor: float = 1.5
    frozen_fraction: float = 0.1
    spectrum_factor: float = 10.0

    @property
    def lower(self) -> float:
        return self.measure_min / self.band_factor

    @property
    def upper(self) -> float:
        return self.measure_max * self.band_factor

    @property
    def frozen_std(self) -> float:
        return self.frozen_fraction * self.min_window_std

    @classmethod
    def from_reference(cls, reference: dict[str, Any]) -> "StableBand":
        """Build the band from a system's stored reference statistics (its ``stable_band`` entry)."""
        entry = reference["stable_band"]
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {name: entry[name] for name in fields if name in entry}
        values["reference_spectrum"] = tuple(entry["reference_spectrum"])
        values["energetic_modes"] = tuple(bool(m) for m in entry["energetic_modes"])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def spectrum_average(average: torch.Tensor, spectrum: torch.Tensor, count: int, window: int) -> torch.Tensor:
    """Return the running average of spectra after adding the ``count``-th one (0-based).

    It is the plain mean for the first ``window`` spectra and an exponential
    average with weight ``1 / window`` after that, so it needs no history.
    """
    weight = 1.0 / min(count + 1, window)
    return average + weight * (spectrum - average)


class StabilityMonitor:
    """Tracks a batch of trajectories step by step and records when each leaves the stable band.

    Memory is bounded: it keeps the last ``band.window`` measures and a running
    mean spectrum. Once a trajectory has exited it keeps its first step and
    reason. With ``band=None`` (no reference statistics, e.g. for non-default
    parameters) only non-finite values and explicit :meth:`mark` calls count.
    """

    def __init__(self, band: StableBand | None, batch: int, device: torch.device | str | None = None):
        self.band = band
        self.batch = batch
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        if band is not None:
            self.reference_spectrum = torch.tensor(band.reference_spectrum, dtype=torch.float64, device=self.device)
            self.energetic_modes = torch.tensor(band.energetic_modes, dtype=torch.bool, device=self.device)
        self.reset()

    def reset(self) -> None:
        self.count = 0
        self.exit_step = torch.full((self.batch,), -1, dtype=torch.long, device=self.device)
        self.exit_reason: list[str | None] = [None] * self.batch
        if self.band is None:
            return
        window = self.band.window
        self.measures = torch.zeros(window, self.batch, dtype=torch.float64, device=self.device)
        self.mean_spectrum = torch.zeros(self.batch, len(self.band.reference_spectrum),
                                         dtype=torch.float64, device=self.device)

    @property
    def stable(self) -> torch.Tensor:
        """Boolean mask ``(B,)`` of trajectories that have not left the band."""
        return self.exit_step < 0

    def mark(self, step: int, mask: torch.Tensor, reason: str) -> None:
        """Record ``reason`` at ``step`` for the still-stable trajectories selected by ``mask``."""
        new = mask.to(self.device) & self.stable
        self.exit_step[new] = step
        for index in torch.nonzero(new).flatten().tolist():
            self.exit_reason[index] = reason

    def update(self, step: int, field: torch.Tensor, measure: torch.Tensor, spectrum: torch.Tensor) -> torch.Tensor:
        """Check step ``step`` and return the mask ``(B,)`` of trajectories that exit at it.

        ``field`` is ``(B, C, *grid)``, ``measure`` is ``(B,)`` and ``spectrum``
        is ``(B, K)``, all for the state after step ``step``.
        """
        before = self.stable.clone()
        measure = measure.to(self.device, torch.float64)
        finite = torch.isfinite(field.reshape(field.shape[0], -1)).all(dim=1).to(self.device) & torch.isfinite(measure)
        self.mark(step, ~finite, NON_FINITE)
        if self.band is None:
            self.count += 1
            return before & ~self.stable
        spectrum = spectrum.to(self.device, torch.float64)
        slot = self.count % self.band.window
        self.measures[slot] = torch.nan_to_num(measure, nan=0.0, posinf=0.0, neginf=0.0)
        self.mean_spectrum = spectrum_average(self.mean_spectrum, torch.nan_to_num(spectrum, nan=0.0, posinf=0.0),
                                              self.count, self.band.spectrum_window)
        self.count += 1
        self.mark(step, (measure < self.band.lower) | (measure > self.band.upper), OUT_OF_BAND)
        if self.count >= self.band.window:
            self.mark(step, self.measures.std(dim=0) < self.band.frozen_std, FROZEN)
        if self.count >= self.band.spectrum_window:
            self.mark(step, self.spectrum_off(self.mean_spectrum), SPECTRUM)
        return before & ~self.stable

    def spectrum_off(self, mean_spectrum: torch.Tensor) -> torch.Tensor:
        """Return the mask of trajectories whose window-mean spectrum is off by more than the factor."""
        ratio = mean_spectrum[:, self.energetic_modes] / self.reference_spectrum[self.energetic_modes]
        factor = self.band.spectrum_factor
        return ((ratio > factor) | (ratio < 1.0 / factor)).any(dim=1)

    def horizon(self, steps: int) -> list[int]:
        """Return the stable horizon per trajectory: its exit step, or ``steps`` if it never left."""
        return [int(s) if s >= 0 else steps for s in self.exit_step.tolist()]
