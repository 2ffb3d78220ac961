"""Window statistics: bins, value PDFs against the normal density, spectra and distances with closed forms."""
import math

import numpy as np
import pytest
import torch

from thermalizer_core import diagnostics, statistics


def normal_bin_density(edges: np.ndarray, mean: float = 0.0, std: float = 1.0) -> np.ndarray:
    """Return the exact mean density of N(mean, std^2) over each bin: CDF difference over bin width."""
    cdf = np.array([0.5 * (1.0 + math.erf((edge - mean) / (std * math.sqrt(2.0)))) for edge in edges])
    return np.diff(cdf) / np.diff(edges)


def test_shared_bins_span_finite_values():
    first = np.array([0.5, np.nan, 2.0, np.inf])
    second = np.array([[-1.5, -np.inf], [1.0, np.nan]])
    edges = statistics.shared_bins([first, second], count=7)
    assert edges.shape == (8,), f"shape {edges.shape}"
    assert edges[0] == -1.5, f"lowest edge {edges[0]}"
    assert edges[-1] == 2.0, f"highest edge {edges[-1]}"
    np.testing.assert_allclose(np.diff(edges), 0.5)


def test_shared_bins_constant_and_empty():
    constant = statistics.shared_bins([np.full(5, 3.0), np.array([np.nan])], count=4)
    np.testing.assert_allclose(constant, [2.5, 2.75, 3.0, 3.25, 3.5])
    no_finite = statistics.shared_bins([np.array([np.nan, np.inf])], count=2)
    np.testing.assert_allclose(no_finite, [-0.5, 0.0, 0.5])


def test_shared_bins_invalid_arguments():
    with pytest.raises(ValueError, match="count = 0"):
        statistics.shared_bins([np.zeros(3)], count=0)
    with pytest.raises(ValueError, match="arrays is empty"):
        statistics.shared_bins([])


def test_value_pdf_of_gaussian_matches_normal_density():
    samples = np.random.default_rng(0).normal(size=200_000)
    edges = np.linspace(-5.0, 5.0, 61)
    pdf = statistics.value_pdf(samples, edges)
    expected = normal_bin_density(edges)
    # Poisson error of the fullest bin: sqrt(0.066 * 2e5) / (2e5 * width 1/6), about 0.0035.
    # The largest error over the 60 bins measured 0.005 with this seed (0.004-0.007 with seeds 1-5).
    largest_error = np.abs(pdf - expected).max()
    assert largest_error < 0.012, f"largest density error {largest_error:.4f}"
    assert np.sum(pdf * np.diff(edges)) == pytest.approx(1.0, abs=1e-12)


def test_value_pdf_ignores_non_finite():
    values = np.array([0.1, 0.2, 0.6, 0.9])
    edges = np.array([0.0, 0.5, 1.0])
    with_gaps = np.array([np.nan, 0.1, np.inf, 0.2, -np.inf, 0.6, 0.9])
    np.testing.assert_allclose(statistics.value_pdf(values, edges), [1.0, 1.0])
    np.testing.assert_allclose(statistics.value_pdf(with_gaps, edges), [1.0, 1.0])


def test_value_pdf_outside_edges_and_all_nan():
    edges = np.array([0.0, 0.5, 1.0])
    inside_one_bin = statistics.value_pdf(np.array([0.2, 0.3, 5.0]), edges)
    np.testing.assert_allclose(inside_one_bin, [2.0, 0.0])
    all_nan = statistics.value_pdf(np.full(4, np.nan), edges)
    assert all_nan.shape == (2,), f"shape {all_nan.shape}"
    assert np.isnan(all_nan).all(), f"pdf {all_nan}"


def test_value_pdf_rejects_bad_edges():
    with pytest.raises(ValueError, match="increasing"):
        statistics.value_pdf(np.zeros(3), np.array([1.0, 0.0]))
    with pytest.raises(ValueError, match="shared_bins"):
        statistics.value_pdf(np.zeros(3), np.array([0.0]))


def test_time_mean_spectrum_skips_non_finite_rows():
    spectra = np.array([
        [[1.0, 2.0], [3.0, np.nan]],
        [[3.0, 4.0], [np.inf, 1.0]],
    ])
    np.testing.assert_allclose(statistics.time_mean_spectrum(spectra), [2.0, 3.0])
    np.testing.assert_allclose(statistics.time_mean_spectrum(spectra[:, 0]), [2.0, 3.0])
    all_bad = statistics.time_mean_spectrum(np.full((2, 3), np.nan))
    assert np.isnan(all_bad).all(), f"mean {all_bad}"
    with pytest.raises(ValueError, match="shape"):
        statistics.time_mean_spectrum(np.zeros(4))


def test_spectral_distance_closed_forms():
    reference = np.array([1e-19, 1.0, 0.5, 0.1, 1e-3])
    assert statistics.spectral_distance(reference, reference) == 0.0
    assert statistics.spectral_distance(2 * reference, reference) == pytest.approx(math.log10(2), rel=1e-12)
    up_and_down = reference * np.array([1.0, 2.0, 0.5, 2.0, 0.5])
    assert statistics.spectral_distance(up_and_down, reference) == pytest.approx(math.log10(2), rel=1e-12)
    one_mode_tenfold = reference * np.array([1.0, 10.0, 1.0, 1.0, 1.0])
    assert statistics.spectral_distance(one_mode_tenfold, reference) == pytest.approx(0.25, rel=1e-12)


def test_spectral_distance_leaves_out_k0_and_round_off():
    """The KS mean mode is round-off (about 1e-17 of the peak); it must not count even when the run's is large."""
    reference = np.array([1e-18, 1.0, 0.5])
    spectrum = np.array([1e-3, 1.0, 0.5])
    assert statistics.spectral_distance(spectrum, reference) == 0.0
    wavenumbers = np.array([0.0, 0.3, 0.6])
    large_mean = np.array([1.0, 2.0, 0.5])
    resolved_mean = np.array([1.0, 1.0, 0.5])
    assert statistics.spectral_distance(large_mean, resolved_mean, wavenumbers) == pytest.approx(math.log10(2) / 2)
    assert statistics.spectral_distance(large_mean, resolved_mean) == pytest.approx(math.log10(2) / 3)


def test_spectral_distance_nan_cases():
    reference = np.array([1.0, 0.5, 0.1])
    assert math.isnan(statistics.spectral_distance(np.array([1.0, np.nan, 0.1]), reference))
    assert math.isnan(statistics.spectral_distance(np.array([1.0, 0.0, 0.1]), reference))
    assert math.isnan(statistics.spectral_distance(reference, np.zeros(3)))
    with pytest.raises(ValueError, match="time_mean_spectrum"):
        statistics.spectral_distance(np.ones((2, 3)), reference)


def test_spectral_distance_relates_to_diagnostics():
    """Both use log10 ratios on the same modes: equal for a constant |log ratio|, RMS >= mean otherwise."""
    rng = np.random.default_rng(3)
    reference = rng.uniform(0.1, 1.0, size=12)
    modes = torch.ones(12, dtype=torch.bool)
    alternating = reference * np.where(np.arange(12) % 2 == 0, 3.0, 1 / 3)
    numpy_distance = statistics.spectral_distance(alternating, reference)
    torch_distance = float(diagnostics.spectral_distance(torch.from_numpy(alternating)[None], torch.from_numpy(reference), modes))
    assert numpy_distance == pytest.approx(math.log10(3), rel=1e-12)
    assert torch_distance == pytest.approx(numpy_distance, rel=1e-12)

    scattered = reference * 10 ** rng.normal(scale=0.5, size=12)
    numpy_distance = statistics.spectral_distance(scattered, reference)
    torch_distance = float(diagnostics.spectral_distance(torch.from_numpy(scattered)[None], torch.from_numpy(reference), modes))
    log_ratio = np.log10(scattered / reference)
    assert numpy_distance == pytest.approx(np.abs(log_ratio).mean(), rel=1e-12)
    assert torch_distance == pytest.approx(np.sqrt((log_ratio ** 2).mean()), rel=1e-12)
    assert torch_distance > numpy_distance, f"RMS {torch_distance} not above mean {numpy_distance}"


def test_pdf_distance_closed_forms():
    edges = np.linspace(-12.0, 14.0, 2601)
    standard = normal_bin_density(edges)
    assert statistics.pdf_distance(standard, standard, edges) == 0.0
    shift = 1.0
    shifted = normal_bin_density(edges, mean=shift)
    # L1 distance between N(0, 1) and N(d, 1) is 2 (2 Phi(d / 2) - 1) = 2 erf(d / (2 sqrt 2)).
    expected = 2 * math.erf(shift / (2 * math.sqrt(2)))
    assert statistics.pdf_distance(shifted, standard, edges) == pytest.approx(expected, rel=1e-4)
    disjoint_edges = np.array([0.0, 1.0, 2.0])
    assert statistics.pdf_distance(np.array([1.0, 0.0]), np.array([0.0, 1.0]), disjoint_edges) == 2.0


def test_pdf_distance_nan_and_shapes():
    edges = np.array([0.0, 1.0, 2.0])
    assert math.isnan(statistics.pdf_distance(np.array([np.nan, np.nan]), np.array([0.5, 0.5]), edges))
    with pytest.raises(ValueError, match="one value per bin"):
        statistics.pdf_distance(np.ones(3), np.ones(2), edges)


def make_history(steps: int = 10, batch: int = 3) -> tuple[np.ndarray, dict, dict]:
    """Return steps, fields ``(K, B, 1, 16)`` and spectra ``(K, B, 5)`` of a truth and an emulator run.

    The emulator's spectrum is twice the truth's in the last 4 rows and 100 times it before.
    Its field values are those of the truth shifted by 50, so the two PDFs are disjoint.
    """
    rng = np.random.default_rng(1)
    truth_fields = rng.normal(size=(steps, batch, 1, 16))
    truth_spectra = np.tile(np.array([1e-18, 1.0, 0.5, 0.2, 0.1]), (steps, batch, 1))
    factor = np.where(np.arange(steps) >= steps - 4, 2.0, 100.0).reshape(-1, 1, 1)
    fields = {"truth": truth_fields, "emulator": truth_fields + 50.0}
    spectra = {"truth": truth_spectra, "emulator": truth_spectra * factor}
    return np.arange(100, 100 + 5 * steps, 5), fields, spectra


def test_window_statistics_last_rows():
    steps, fields, spectra = make_history()
    result = statistics.window_statistics(steps, fields, spectra, window=4, bins=30)
    assert (result.first_step, result.last_step, result.window) == (130, 145, 4)
    assert result.edges.shape == (31,), f"edges {result.edges.shape}"
    assert result.pdfs["truth"].shape == (30,), f"pdf {result.pdfs['truth'].shape}"
    assert result.spectral_distances["truth"] == 0.0
    assert result.pdf_distances["truth"] == 0.0
    assert result.spectral_distances["emulator"] == pytest.approx(math.log10(2), rel=1e-12)
    assert result.pdf_distances["emulator"] == pytest.approx(2.0, rel=1e-12)
    np.testing.assert_allclose(result.mean_spectra["emulator"], 2 * result.mean_spectra["truth"])
    for name, pdf in result.pdfs.items():
        assert np.sum(pdf * np.diff(result.edges)) == pytest.approx(1.0), f"pdf of {name} does not integrate to 1"


def test_window_statistics_clips_window():
    steps, fields, spectra = make_history()
    result = statistics.window_statistics(steps, fields, spectra, window=1000)
    assert (result.first_step, result.last_step, result.window) == (100, 145, 10)
    # 6 rows at a factor 100 and 4 at a factor 2: the mean factor is 60.8 on every mode.
    assert result.spectral_distances["emulator"] == pytest.approx(math.log10(60.8), rel=1e-12)


def test_window_statistics_channel_and_wavenumbers():
    steps, fields, spectra = make_history()
    two_channels = {name: np.concatenate([f, 1000.0 + f], axis=2) for name, f in fields.items()}
    first_channel = statistics.window_statistics(steps, two_channels, spectra, window=4, channel=0)
    assert first_channel.edges[-1] < 100.0, f"edges reach {first_channel.edges[-1]}: channel 1 was pooled"
    pooled = statistics.window_statistics(steps, two_channels, spectra, window=4)
    assert pooled.edges[-1] > 1000.0, f"edges end at {pooled.edges[-1]}: channel 1 missing"
    wavenumbers = np.arange(5.0)
    with_k = statistics.window_statistics(steps, fields, spectra, window=4, wavenumbers=wavenumbers)
    assert with_k.spectral_distances["emulator"] == pytest.approx(math.log10(2), rel=1e-12)


def test_window_statistics_invalid_arguments():
    steps, fields, spectra = make_history()
    with pytest.raises(ValueError, match="window = 0"):
        statistics.window_statistics(steps, fields, spectra, window=0)
    with pytest.raises(ValueError, match="'reference'"):
        statistics.window_statistics(steps, fields, spectra, window=4, reference_run="reference")
    with pytest.raises(ValueError, match="same runs"):
        statistics.window_statistics(steps, fields, {"truth": spectra["truth"]}, window=4)
    with pytest.raises(ValueError, match="one row per step"):
        statistics.window_statistics(steps[:-1], fields, spectra, window=4)
    with pytest.raises(ValueError, match="non-empty"):
        statistics.window_statistics(steps[:0], fields, spectra, window=4)
    with pytest.raises(ValueError, match="channel = 3"):
        statistics.window_statistics(steps, fields, spectra, window=4, channel=3)
