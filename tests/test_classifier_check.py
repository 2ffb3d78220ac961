"""Classifier check on the shipped KS thermalizer with true KS states: noising, confusion counts and argument errors."""
import numpy as np
import pytest
import torch

from thermalizer_core.classifier_check import DEFAULT_PREDICTED_MARGIN, classifier_confusion, noise_to_level
from thermalizer_core.models.catalog import SHIPPED_CHECKPOINTS, load_pair

BATCH = 64


@pytest.fixture(scope="module")
def pair():
    if not (SHIPPED_CHECKPOINTS / "ks-thermalizer" / "model.safetensors").is_file():
        pytest.skip(f"the shipped KS pair is not in {SHIPPED_CHECKPOINTS}")
    return load_pair("ks", device="cpu")


@pytest.fixture(scope="module")
def truth(pair) -> torch.Tensor:
    """True KS fields ``(64, 1, 64)`` on the attractor, from the ETDRK4 solver."""
    system = pair.system
    return system.to_emulator_grid(system.initial_state(BATCH, seed=7)).float()


def test_noise_to_level_adds_scheduled_noise(pair, truth):
    thermalizer = pair.thermalizer
    level = 500
    noisy = noise_to_level(thermalizer, truth, level, torch.Generator().manual_seed(0))
    assert noisy.shape == truth.shape, f"shape {tuple(noisy.shape)}"
    assert noisy.dtype == truth.dtype, f"dtype {noisy.dtype}"

    # In normalized units x_t = sqrt(abar) x0 + sqrt(1 - abar) eps, so eps must come back standard normal.
    abar = float(thermalizer.schedule.alphas_cumprod[level])
    x0 = thermalizer.normalization.normalize(truth)
    eps = (thermalizer.normalization.normalize(noisy) - abar ** 0.5 * x0) / (1 - abar) ** 0.5
    # 4096 samples: the standard errors are 0.016 for the mean and 0.011 for the std.
    assert abs(float(eps.mean())) < 0.06, f"noise mean {float(eps.mean()):.4f}"
    assert abs(float(eps.std()) - 1.0) < 0.05, f"noise std {float(eps.std()):.4f}"


def test_noise_to_level_per_member_levels(pair, truth):
    thermalizer = pair.thermalizer
    levels = torch.tensor([0, 100] * (BATCH // 2), dtype=torch.long)
    noisy = noise_to_level(thermalizer, truth, levels, torch.Generator().manual_seed(1))
    std = float(thermalizer.normalization.std[0])
    schedule = thermalizer.schedule
    for level in (0, 100):
        members = levels == level
        abar = float(schedule.alphas_cumprod[level])
        residual = noisy[members] - abar ** 0.5 * truth[members]
        expected_std = std * (1 - abar) ** 0.5
        measured_std = float(residual.std())
        assert measured_std == pytest.approx(expected_std, rel=0.05), f"level {level}: std {measured_std:.5f}"


def test_noise_to_level_reproducible(pair, truth):
    thermalizer = pair.thermalizer
    first = noise_to_level(thermalizer, truth, 20, torch.Generator().manual_seed(3))
    again = noise_to_level(thermalizer, truth, 20, torch.Generator().manual_seed(3))
    other = noise_to_level(thermalizer, truth, 20, torch.Generator().manual_seed(4))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_noise_to_level_invalid_arguments(pair, truth):
    thermalizer = pair.thermalizer
    with pytest.raises(ValueError, match=r"\[0, 999\]"):
        noise_to_level(thermalizer, truth, 1000)
    with pytest.raises(ValueError, match=r"\[0, 999\]"):
        noise_to_level(thermalizer, truth, -1)
    with pytest.raises(ValueError, match="long tensor"):
        noise_to_level(thermalizer, truth, torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\(B, 1, n\)"):
        noise_to_level(thermalizer, truth[:, 0], 5)


def test_confusion_on_shipped_ks_thermalizer(pair, truth):
    levels = (0, 10, 20, 40)
    result = classifier_confusion(pair.thermalizer, truth, levels, repeats=2, generator=torch.Generator().manual_seed(7))
    assert result.levels.tolist() == list(levels)
    assert result.samples_per_level == 2 * BATCH
    assert result.max_predicted == 40 + DEFAULT_PREDICTED_MARGIN
    assert result.counts.shape == (4, result.max_predicted + 2), f"counts {result.counts.shape}"
    assert result.predicted_levels.tolist() == list(range(result.max_predicted + 1))
    assert result.counts.sum(axis=1).tolist() == [2 * BATCH] * 4

    # Measured with seeds 7-9 on one CPU: mean readings 0, 9.6-9.7, 19.2-19.5, 38.5-38.9 and mean
    # absolute errors 0, 1.0-1.2, 2.0-2.3, 3.9-4.4; the bounds below leave about a factor of 2.
    assert result.mean_predicted[0] < 0.5, f"clean fields read {result.mean_predicted[0]:.2f}"
    assert np.all(np.diff(result.mean_predicted) > 0), f"mean readings {result.mean_predicted}"
    for level, mean, error in zip(levels[1:], result.mean_predicted[1:], result.mean_abs_error[1:]):
        assert abs(mean - level) < 0.1 * level, f"level {level}: mean reading {mean:.2f}"
        assert error < 0.2 * level, f"level {level}: mean absolute error {error:.2f}"


def test_confusion_above_column(pair, truth):
    result = classifier_confusion(pair.thermalizer, truth[:16], (0, 40), generator=torch.Generator().manual_seed(2),
                                  max_predicted=15)
    assert result.counts.shape == (2, 17), f"counts {result.counts.shape}"
    # Readings of level 40 measured 30 to 49: all must land in the "above 15" column.
    assert result.counts[1, -1] == 16, f"level 40 row {result.counts[1]}"
    assert result.counts[0, 0] == 16, f"clean row {result.counts[0]}"
    assert result.mean_predicted[1] > 30, f"mean reading {result.mean_predicted[1]}: should not be clipped at 16"


def test_confusion_invalid_arguments(pair, truth):
    thermalizer = pair.thermalizer
    with pytest.raises(ValueError, match="duplicates"):
        classifier_confusion(thermalizer, truth, (10, 10))
    with pytest.raises(ValueError, match=r"\[0, 999\]"):
        classifier_confusion(thermalizer, truth, (10, 1000))
    with pytest.raises(ValueError, match="non-empty"):
        classifier_confusion(thermalizer, truth, ())
    with pytest.raises(ValueError, match="repeats = 0"):
        classifier_confusion(thermalizer, truth, (10,), repeats=0)
    with pytest.raises(ValueError, match="max_predicted = -1"):
        classifier_confusion(thermalizer, truth, (10,), max_predicted=-1)
    with pytest.raises(ValueError, match="NaN"):
        classifier_confusion(thermalizer, torch.full_like(truth, float("nan")), (10,))
    with pytest.raises(ValueError, match=r"\(B, 1, n\)"):
        classifier_confusion(thermalizer, truth[:0], (10,))
