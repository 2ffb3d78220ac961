"""Comparisons between runs: MSE, Pearson correlation, correlation time and spectral distance."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from thermalizer_core import diagnostics
from thermalizer_core.systems import get_system


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray]:
    """Two batches of 2D fields ``(3, 2, 8, 8)``: a target and a noisy, rescaled prediction of it."""
    rng = np.random.default_rng(4)
    target = rng.normal(size=(3, 2, 8, 8))
    prediction = 0.7 * target + rng.normal(scale=0.5, size=target.shape) + 0.3
    return prediction, target


def test_mse_matches_numpy(pair):
    prediction, target = pair
    measured = diagnostics.mse(torch.from_numpy(prediction), torch.from_numpy(target)).numpy()
    expected = ((prediction - target) ** 2).reshape(3, -1).mean(axis=1)
    assert measured.shape == (3,), f"shape {measured.shape}"
    np.testing.assert_allclose(measured, expected, rtol=1e-12)


def test_pearson_matches_numpy(pair):
    prediction, target = pair
    measured = diagnostics.pearson_correlation(torch.from_numpy(prediction), torch.from_numpy(target)).numpy()
    expected = [np.corrcoef(p.ravel(), t.ravel())[0, 1] for p, t in zip(prediction, target)]
    np.testing.assert_allclose(measured, expected, rtol=1e-12)


def test_pearson_of_affine_copy_is_one(pair):
    _, target = pair
    target = torch.from_numpy(target)
    correlation = diagnostics.pearson_correlation(2.5 * target - 1.0, target)
    assert torch.allclose(correlation, torch.ones(3, dtype=torch.float64)), f"correlation {correlation.tolist()}"
    anti = diagnostics.pearson_correlation(-target, target)
    assert torch.allclose(anti, -torch.ones(3, dtype=torch.float64)), f"correlation {anti.tolist()}"


def test_pearson_of_constant_is_nan():
    constant = torch.ones(1, 1, 16)
    varying = torch.linspace(0, 1, 16).reshape(1, 1, 16)
    correlation = diagnostics.pearson_correlation(constant, varying)
    assert torch.isnan(correlation).all(), f"correlation {correlation.tolist()}"


def test_correlation_time_constructed():
    """Row t is the correlation after step t + 1; the count is the steps before the first value below 0.8."""
    columns = [
        [0.99, 0.95, 0.85, 0.79, 0.90, 0.95],  # drops after 3 correlated steps; the later recovery is ignored
        [0.70, 0.99, 0.99, 0.99, 0.99, 0.99],  # below at the first step
        [0.99, 0.80, 0.80, 0.80, 0.80, 0.80],  # exactly 0.8 does not count as a drop
        [0.99, 0.99, float("nan"), 0.99, 0.99, 0.99],  # NaN counts as a drop
    ]
    correlations = torch.tensor(columns, dtype=torch.float64).T
    times = diagnostics.correlation_time(correlations, threshold=0.8)
    assert times.tolist() == [3, 0, 6, 2], f"correlation times {times.tolist()}"


def test_correlation_time_threshold_argument():
    correlations = torch.tensor([[0.95], [0.9], [0.85], [0.5]], dtype=torch.float64)
    assert diagnostics.correlation_time(correlations, threshold=0.9).tolist() == [2]
    assert diagnostics.correlation_time(correlations, threshold=0.8).tolist() == [3]
    assert diagnostics.correlation_time(correlations, threshold=0.99).tolist() == [0]


def test_spectral_distance_factor_ten():
    reference = torch.tensor([0.0, 3.0, 1.0, 0.2, 1e-4], dtype=torch.float64)
    spectra = torch.stack([10 * reference, reference / 10, reference])
    distance = diagnostics.spectral_distance(spectra, reference)
    expected = torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64)
    assert torch.allclose(distance, expected, atol=1e-12), f"distance {distance.tolist()}"


def test_spectral_distance_mixed_modes():
    """Modes off by 10 and 100 in opposite directions: RMS of log10 ratios (1, -2, 0) is sqrt(5/3)."""
    reference = torch.tensor([1.0, 2.0, 4.0], dtype=torch.float64)
    spectrum = torch.tensor([[10.0, 0.02, 4.0]], dtype=torch.float64)
    distance = float(diagnostics.spectral_distance(spectrum, reference))
    assert distance == pytest.approx((5 / 3) ** 0.5, rel=1e-12)
    masked = float(diagnostics.spectral_distance(spectrum, reference, modes=torch.tensor([True, False, True])))
    assert masked == pytest.approx(0.5 ** 0.5, rel=1e-12)


def test_ks_spectrum_sums_to_energy():
    """The KS energy spectrum counts both signs of each wavenumber, so it sums to the energy (Parseval)."""
    ks = get_system("ks")
    field = ks.to_emulator_grid(ks.random_smooth_state(3, seed=2))
    energy = diagnostics.measure(ks, field)
    spectrum = diagnostics.energy_spectrum(ks, field)
    assert spectrum.shape == (3, ks.params.n // 2 + 1), f"shape {tuple(spectrum.shape)}"
    assert torch.allclose(spectrum.sum(dim=1), energy, rtol=1e-12), f"{spectrum.sum(dim=1)} vs {energy}"
