"""Fixtures for the dashboard tests: a models folder of tiny untrained pairs, and the worker's compute pool."""
import logging

import pytest
import torch
from torch import nn

from thermalizer_core.models.checkpoint import save_checkpoint
from thermalizer_core.models.emulator import Emulator
from thermalizer_core.models.thermalizer import Thermalizer
from thermalizer_core.systems import get_system

TINY_ARCHITECTURE = {"base_channels": 8, "channel_mults": (1, 2), "blocks_per_level": 1}
#: The level that the tiny thermalizers always predict: above the default s_init (10), so every
#: step runs a short denoising loop (12 - s_stop steps) and the thermalized run differs from the emulator.
TINY_PREDICTED_LEVEL = 12


def fix_predicted_level(thermalizer: Thermalizer, level: int) -> None:
    """Make the classifier head predict ``level`` for every input, so untrained rollouts stay cheap."""
    output_layer = thermalizer.unet.classifier[-1]
    with torch.no_grad():
        nn.init.zeros_(output_layer.weight)
        output_layer.bias.zero_()
        output_layer.bias[level] = 10.0


def save_tiny_pair(folder, system_name: str, name: str | None = None, sigma: float = 0.0) -> None:
    """Save an untrained emulator/thermalizer pair ``<name>-emulator``/``<name>-thermalizer`` for ``system_name``."""
    system = get_system(system_name)
    channels, dims = system.field_shape[0], system.spatial_dims
    torch.manual_seed(0)
    emulator = Emulator(channels, dims, sigma=sigma, **TINY_ARCHITECTURE)
    thermalizer = Thermalizer(channels, dims, classifier_hidden=16, **TINY_ARCHITECTURE)
    fix_predicted_level(thermalizer, TINY_PREDICTED_LEVEL)
    name = name or f"tiny-{system_name}"
    description = system.describe()
    save_checkpoint(emulator, folder / f"{name}-emulator", description, {"note": "untrained, for tests"}, {})
    save_checkpoint(thermalizer, folder / f"{name}-thermalizer", description, {"note": "untrained, for tests"}, {})


@pytest.fixture
def tiny_pair_writer():
    """Return :func:`save_tiny_pair`, for tests that write a pair while the app runs."""
    return save_tiny_pair


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """A models folder with tiny KS and QG pairs, a stochastic tiny KS pair and an incomplete pair."""
    folder = tmp_path_factory.mktemp("models")
    save_tiny_pair(folder, "ks")
    save_tiny_pair(folder, "ks", name="noisy-ks", sigma=0.05)
    save_tiny_pair(folder, "qg")
    (folder / "broken-emulator").mkdir()
    logging.getLogger(__name__).info("tiny models in %s", folder)
    return folder
