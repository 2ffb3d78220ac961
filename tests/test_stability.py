"""The stable-horizon criterion: each exit reason on synthetic series, and no exit for the true KS solver.

Step convention of :class:`StabilityMonitor`: the caller passes ``step = 1`` with
the state after the first emulator step (the initial state is never fed), so
the ``n``-th call to ``update`` is step ``n``. The frozen check first runs at
step ``window``, whose window covers steps ``1 .. window``. The spectrum check
first runs at step ``spectrum_window``.
"""
from __future__ import annotations

import math

import pytest
import torch

from thermalizer_core.stability import (
    FROZEN,
    NON_FINITE,
    OUT_OF_BAND,
    SPECTRUM,
    StabilityMonitor,
    StableBand,
)
from thermalizer_core.systems import get_system

WINDOW = 5
SPECTRUM_WINDOW = 8
#: Band of a made-up system with measure in [1, 2] and a three-mode spectrum; mode 2 is not energetic.
BAND = StableBand(
    measure_min=1.0,
    measure_max=2.0,
    window=WINDOW,
    min_window_std=0.1,
    reference_spectrum=(1.0, 0.5, 0.01),
    energetic_modes=(True, True, False),
    spectrum_window=SPECTRUM_WINDOW,
    band_factor=1.5,
    frozen_fraction=0.1,
    spectrum_factor=10.0,
)


def lively_measure(step: int, batch: int) -> torch.Tensor:
    """A measure inside the band whose std over any window is 0.2, far above the frozen threshold 0.01."""
    return torch.full((batch,), 1.5 + 0.2 * (-1) ** step, dtype=torch.float64)


def feed(monitor: StabilityMonitor, steps: int, measure_at, spectrum_at=None, field_at=None) -> None:
    """Call ``monitor.update`` for steps ``1 .. steps`` with the given per-step series (defaults: healthy)."""
    batch = monitor.batch
    for step in range(1, steps + 1):
        spectrum = spectrum_at(step) if spectrum_at else torch.tensor([BAND.reference_spectrum] * batch)
        field = field_at(step) if field_at else torch.zeros(batch, 1, 4)
        monitor.update(step, field, measure_at(step), spectrum)


def test_band_thresholds():
    assert BAND.lower == pytest.approx(1.0 / 1.5)
    assert BAND.upper == pytest.approx(3.0)
    assert BAND.frozen_std == pytest.approx(0.01)


def test_healthy_series_stays_stable():
    monitor = StabilityMonitor(BAND, batch=2)
    feed(monitor, 50, lambda step: lively_measure(step, 2))
    assert monitor.stable.all(), f"exits {monitor.exit_step.tolist()} {monitor.exit_reason}"
    assert monitor.horizon(50) == [50, 50]


def test_non_finite_field_flagged_at_step():
    monitor = StabilityMonitor(BAND, batch=2)

    def field_at(step: int) -> torch.Tensor:
        field = torch.zeros(2, 1, 4)
        if step >= 3:
            field[1, 0, 2] = float("nan")
        return field

    feed(monitor, 20, lambda step: lively_measure(step, 2), field_at=field_at)
    assert monitor.exit_step.tolist() == [-1, 3], f"exit steps {monitor.exit_step.tolist()}"
    assert monitor.exit_reason == [None, NON_FINITE], f"reasons {monitor.exit_reason}"
    assert monitor.horizon(20) == [20, 3]


def test_non_finite_measure_flagged():
    monitor = StabilityMonitor(BAND, batch=1)
    feed(monitor, 6, lambda step: torch.tensor([math.inf if step == 4 else 1.5], dtype=torch.float64))
    assert monitor.exit_step.tolist() == [4]
    assert monitor.exit_reason == [NON_FINITE], f"reasons {monitor.exit_reason}"


def test_measure_above_band_is_out_of_band():
    monitor = StabilityMonitor(BAND, batch=3)

    def measure_at(step: int) -> torch.Tensor:
        measure = lively_measure(step, 3)
        if step >= 4:
            measure[0] = BAND.upper * 1.01
            measure[1] = BAND.lower * 0.99
            measure[2] = BAND.upper - 0.2 + 0.2 * (-1) ** step  # touches the upper bound, which is inside
        return measure

    feed(monitor, 10, measure_at)
    assert monitor.exit_step.tolist() == [4, 4, -1], f"exit steps {monitor.exit_step.tolist()}"
    assert monitor.exit_reason[:2] == [OUT_OF_BAND, OUT_OF_BAND], f"reasons {monitor.exit_reason}"


def test_first_reason_is_kept():
    """A trajectory that leaves the band and later turns NaN keeps its first step and reason."""
    monitor = StabilityMonitor(BAND, batch=1)

    def measure_at(step: int) -> torch.Tensor:
        value = 1.5
        if step >= 3:
            value = 10.0
        if step >= 6:
            value = math.nan
        return torch.tensor([value], dtype=torch.float64)

    feed(monitor, 8, measure_at)
    assert monitor.exit_step.tolist() == [3]
    assert monitor.exit_reason == [OUT_OF_BAND], f"reasons {monitor.exit_reason}"


def test_constant_measure_frozen_at_window():
    """A measure constant from step 1 is flagged frozen at step ``window``, the first step the check runs."""
    monitor = StabilityMonitor(BAND, batch=2)
    exits = {}

    def measure_at(step: int) -> torch.Tensor:
        measure = lively_measure(step, 2)
        measure[0] = 1.5
        return measure

    for step in range(1, 3 * WINDOW):
        monitor.update(step, torch.zeros(2, 1, 4), measure_at(step), torch.tensor([BAND.reference_spectrum] * 2))
        for index in torch.nonzero(~monitor.stable).flatten().tolist():
            exits.setdefault(index, step)
    assert exits == {0: WINDOW}, f"first exit step per trajectory {exits}"
    assert monitor.exit_reason[0] == FROZEN, f"reasons {monitor.exit_reason}"


def test_freeze_after_lively_start():
    """Lively for 10 steps, constant from step 11: the window first contains only constant values at step 10 + window."""
    monitor = StabilityMonitor(BAND, batch=1)
    feed(monitor, 30, lambda step: lively_measure(step, 1) if step <= 10 else torch.tensor([1.2], dtype=torch.float64))
    assert monitor.exit_step.tolist() == [10 + WINDOW], f"exit step {monitor.exit_step.tolist()}"
    assert monitor.exit_reason == [FROZEN]


def test_spectrum_off_in_energetic_mode():
    """Mode 1 at 100x the reference is flagged at step ``spectrum_window``; mode 2 (not energetic) is ignored."""
    monitor = StabilityMonitor(BAND, batch=3)
    exits = {}

    def spectrum_at(step: int) -> torch.Tensor:
        spectrum = torch.tensor([BAND.reference_spectrum] * 3, dtype=torch.float64)
        spectrum[0, 1] *= 100.0
        spectrum[1, 2] *= 100.0
        spectrum[2, 0] *= 5.0  # inside the factor of 10
        return spectrum

    for step in range(1, 3 * SPECTRUM_WINDOW):
        monitor.update(step, torch.zeros(3, 1, 4), lively_measure(step, 3), spectrum_at(step))
        for index in torch.nonzero(~monitor.stable).flatten().tolist():
            exits.setdefault(index, step)
    assert exits == {0: SPECTRUM_WINDOW}, f"first exit step per trajectory {exits}"
    assert monitor.exit_reason[0] == SPECTRUM, f"reasons {monitor.exit_reason}"


def test_spectrum_collapse_flagged():
    """A spectrum 100x too small in an energetic mode is caught as well."""
    monitor = StabilityMonitor(BAND, batch=1)
    weak = torch.tensor([[1.0, 0.005, 0.01]], dtype=torch.float64)
    feed(monitor, SPECTRUM_WINDOW + 2, lambda step: lively_measure(step, 1), spectrum_at=lambda step: weak)
    assert monitor.exit_step.tolist() == [SPECTRUM_WINDOW]
    assert monitor.exit_reason == [SPECTRUM]


def test_mark_and_no_band():
    """Without a band only non-finite values and explicit marks count."""
    monitor = StabilityMonitor(None, batch=2)
    feed(monitor, 5, lambda step: torch.tensor([100.0, 1.0], dtype=torch.float64))
    assert monitor.stable.all(), f"exit steps {monitor.exit_step.tolist()}"
    monitor.mark(6, torch.tensor([False, True]), "noise level above hard limit")
    assert monitor.exit_step.tolist() == [-1, 6]
    monitor.reset()
    assert monitor.stable.all()


def test_band_round_trip():
    assert StableBand.from_reference({"stable_band": BAND.to_dict()}) == BAND


@pytest.fixture(scope="module")
def ks_reference() -> dict:
    reference = get_system("ks").reference()
    assert reference is not None, "the KS reference statistics (systems/reference/ks.json) are missing"
    return reference


def test_ks_lyapunov_time_plausible(ks_reference):
    """The stored exponent agrees with 0.043-0.048 per time unit (Cvitanovic et al. 2010) within 0.005 either side."""
    exponent = ks_reference["lyapunov_exponent"]
    assert 0.038 <= exponent <= 0.053, f"Lyapunov exponent {exponent}"
    interval = ks_reference["system"]["emulator_interval"]
    steps = ks_reference["lyapunov_time_steps"]
    assert steps == pytest.approx(1.0 / (exponent * interval), rel=1e-9), f"Lyapunov time {steps} steps"


def test_ks_truth_stays_in_band(ks_reference):
    """2000 steps of 4 true KS trajectories, from seeds the calibration did not use, never leave the band."""
    ks = get_system("ks")
    band = StableBand.from_reference(ks_reference)
    assert band.window == 50, f"window {band.window}"
    assert band.spectrum_window == 200, f"spectrum window {band.spectrum_window}"
    monitor = StabilityMonitor(band, batch=4)
    states = ks.trajectory(ks.initial_state(4, seed=7))
    low, high = math.inf, 0.0
    for step in range(1, 2001):
        field = ks.to_emulator_grid(next(states))
        measure = ks.measure(field)
        low, high = min(low, float(measure.min())), max(high, float(measure.max()))
        monitor.update(step, field, measure, ks.energy_spectrum(field))
    assert monitor.stable.all(), (
        f"exits {monitor.exit_step.tolist()} {monitor.exit_reason}; energy {low:.3f}..{high:.3f}, "
        f"band {band.lower:.3f}..{band.upper:.3f}"
    )
