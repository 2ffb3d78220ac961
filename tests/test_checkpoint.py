"""Checkpoint round trips, manifest hashes, and the CheckpointError raised for each kind of bad checkpoint."""
import hashlib
import json
import logging
import pickle

import pytest
import torch

from thermalizer_core.models.checkpoint import (
    CheckpointError,
    describe_hardware,
    load_checkpoint,
    save_checkpoint,
    update_manifest,
)
from thermalizer_core.models.emulator import Emulator
from thermalizer_core.models.thermalizer import Thermalizer

TINY = {"base_channels": 8, "channel_mults": (1, 2), "blocks_per_level": 1}
KS_DESCRIPTION = {
    "system": "ks",
    "params": {"L": 22.0, "n": 64},
    "field_shape": [1, 32],
    "state_shape": [64],
    "emulator_interval": 1.0,
    "channels": ["u"],
}
QG_DESCRIPTION = {"system": "qg", "params": {"beta": 1.5e-11}, "field_shape": [2, 16, 16], "channels": ["q1", "q2"]}
TRAINING = {"steps": 10, "lr": 1e-3}
DATA = {"trajectories": 4, "seed": 0}


def randomize_weights(model: torch.nn.Module, seed: int) -> None:
    """Replace every weight by random values, so outputs depend on all of them."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(0.1 * torch.randn(parameter.shape, generator=generator))


@pytest.fixture
def emulator_folder(tmp_path):
    emulator = Emulator(channels=1, dims=1, sigma=0.05, mean=[0.1], std=[1.3], **TINY)
    randomize_weights(emulator, seed=0)
    return save_checkpoint(emulator, tmp_path / "ks-emulator", KS_DESCRIPTION, TRAINING, DATA)


@pytest.fixture
def thermalizer_folder(tmp_path):
    thermalizer = Thermalizer(channels=2, dims=2, classifier_hidden=16, mean=[0.0, 1.0], std=[2.0, 0.5], **TINY)
    randomize_weights(thermalizer, seed=1)
    return save_checkpoint(thermalizer, tmp_path / "qg-thermalizer", QG_DESCRIPTION, TRAINING, DATA)


def rewrite_config(folder, **changes):
    config = json.loads((folder / "config.json").read_text())
    for key, value in changes.items():
        if value is None:
            del config[key]
        else:
            config[key] = value
    (folder / "config.json").write_text(json.dumps(config))


def test_emulator_round_trip_bitwise(tmp_path):
    emulator = Emulator(channels=1, dims=1, sigma=0.05, mean=[0.1], std=[1.3], **TINY)
    randomize_weights(emulator, seed=2)
    emulator.eval()
    folder = save_checkpoint(emulator, tmp_path / "emulator", KS_DESCRIPTION, TRAINING, DATA)
    field = torch.randn(3, 1, 32, dtype=torch.float64)

    loaded, config = load_checkpoint(folder, expected_kind="emulator", expected_system="ks")

    before = emulator.step(field, generator=torch.Generator().manual_seed(3))
    after = loaded.step(field, generator=torch.Generator().manual_seed(3))
    assert torch.equal(before, after)
    assert loaded.sigma == 0.05
    assert config["normalization"] == {"mean": [pytest.approx(0.1)], "std": [pytest.approx(1.3)]}
    assert config["emulator_interval"] == 1.0
    assert config["training"] == TRAINING
    assert config["data"] == DATA


def test_thermalizer_round_trip_bitwise(tmp_path):
    thermalizer = Thermalizer(channels=2, dims=2, classifier_hidden=16, mean=[0.0, 1.0], std=[2.0, 0.5], **TINY)
    randomize_weights(thermalizer, seed=4)
    thermalizer.eval()
    folder = save_checkpoint(thermalizer, tmp_path / "thermalizer", QG_DESCRIPTION, TRAINING, DATA)
    field = torch.randn(3, 2, 16, 16)
    start_levels = torch.tensor([8, 1, 5])

    loaded, config = load_checkpoint(folder, expected_kind="thermalizer", expected_system="qg")

    assert torch.equal(thermalizer.level_probabilities(field), loaded.level_probabilities(field))
    before, steps_before = thermalizer.denoise(field, start_levels, 2, True, torch.Generator().manual_seed(5))
    after, steps_after = loaded.denoise(field, start_levels, 2, True, torch.Generator().manual_seed(5))
    assert torch.equal(before, after)
    assert torch.equal(steps_before, steps_after)
    assert config["schedule"] == {"kind": "cosine", "T": 1000, "s": 0.008, "max_beta": 0.999}
    assert "schedule" not in config["architecture"]
    assert config["field_shape"] == [2, 16, 16]


def test_config_records_system(emulator_folder):
    config = json.loads((emulator_folder / "config.json").read_text())
    assert config["kind"] == "emulator"
    assert config["system"] == "ks"
    assert config["system_params"] == {"L": 22.0, "n": 64}
    assert config["format_version"] == 1
    assert config["architecture"]["channel_mults"] == [1, 2]


def test_save_rejects_mismatched_field_shape(tmp_path):
    emulator = Emulator(channels=2, dims=1, **TINY)
    with pytest.raises(ValueError, match="field_shape"):
        save_checkpoint(emulator, tmp_path / "bad", KS_DESCRIPTION, TRAINING, DATA)


def test_missing_folder(tmp_path):
    with pytest.raises(CheckpointError, match="not-there: checkpoint folder not found"):
        load_checkpoint(tmp_path / "not-there")


@pytest.mark.parametrize("name", ["config.json", "model.safetensors"])
def test_missing_file(emulator_folder, name):
    (emulator_folder / name).unlink()
    with pytest.raises(CheckpointError, match=f"{name}: file not found"):
        load_checkpoint(emulator_folder)


def test_pickle_weights_never_unpickled(emulator_folder, tmp_path):
    marker = tmp_path / "unpickled"

    class CreatesFileWhenUnpickled:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (emulator_folder / "model.safetensors").write_bytes(pickle.dumps({"weights": CreatesFileWhenUnpickled()}))

    with pytest.raises(CheckpointError, match="model.safetensors: not a valid safetensors file"):
        load_checkpoint(emulator_folder)
    assert not marker.exists()


def test_torch_save_weights_rejected(emulator_folder):
    torch.save({"net.stem.weight": torch.zeros(3)}, emulator_folder / "model.safetensors")
    with pytest.raises(CheckpointError, match="model.safetensors: not a valid safetensors file"):
        load_checkpoint(emulator_folder)


@pytest.mark.parametrize("size", [3, 4096])
def test_random_bytes_weights_rejected(emulator_folder, size):
    generator = torch.Generator().manual_seed(size)
    (emulator_folder / "model.safetensors").write_bytes(bytes(torch.randint(0, 256, (size,), generator=generator).tolist()))
    with pytest.raises(CheckpointError, match="model.safetensors: not a valid safetensors file"):
        load_checkpoint(emulator_folder)


def test_config_not_json(emulator_folder):
    (emulator_folder / "config.json").write_text("{kind: emulator")
    with pytest.raises(CheckpointError, match="config.json: not valid JSON"):
        load_checkpoint(emulator_folder)


def test_config_missing_keys(emulator_folder):
    rewrite_config(emulator_folder, normalization=None, system=None)
    with pytest.raises(CheckpointError, match="config.json: missing required keys system, normalization"):
        load_checkpoint(emulator_folder)


def test_thermalizer_config_missing_schedule(thermalizer_folder):
    rewrite_config(thermalizer_folder, schedule=None)
    with pytest.raises(CheckpointError, match="config.json: missing required keys schedule"):
        load_checkpoint(thermalizer_folder)


def test_unexpected_kind(emulator_folder):
    with pytest.raises(CheckpointError, match="config.json: this checkpoint is of kind 'emulator', but 'thermalizer' was expected"):
        load_checkpoint(emulator_folder, expected_kind="thermalizer")


def test_unexpected_system(emulator_folder):
    with pytest.raises(CheckpointError, match="config.json: this checkpoint is for system 'ks', but 'kolmogorov' was expected"):
        load_checkpoint(emulator_folder, expected_system="kolmogorov")


def test_unknown_format_version(emulator_folder):
    rewrite_config(emulator_folder, format_version=99)
    with pytest.raises(CheckpointError, match="config.json: format_version 99 is not supported"):
        load_checkpoint(emulator_folder)


def test_weights_shape_mismatch(emulator_folder):
    config = json.loads((emulator_folder / "config.json").read_text())
    rewrite_config(emulator_folder, architecture={**config["architecture"], "base_channels": 16})
    expected = r"model.safetensors: tensor 'net.stem.weight' has shape \(8, 1, 3\), but the architecture in config.json expects \(16, 1, 3\)"
    with pytest.raises(CheckpointError, match=expected):
        load_checkpoint(emulator_folder)


def test_weights_missing_tensor(emulator_folder):
    config = json.loads((emulator_folder / "config.json").read_text())
    rewrite_config(emulator_folder, architecture={**config["architecture"], "blocks_per_level": 2})
    with pytest.raises(CheckpointError, match=r"model.safetensors: tensor 'net.encoder.0.1.norm1.weight' .* is missing"):
        load_checkpoint(emulator_folder)


def test_invalid_architecture(emulator_folder):
    config = json.loads((emulator_folder / "config.json").read_text())
    rewrite_config(emulator_folder, architecture={**config["architecture"], "depth": 3})
    with pytest.raises(CheckpointError, match="config.json: invalid architecture"):
        load_checkpoint(emulator_folder)


def test_field_shape_mismatch(emulator_folder):
    rewrite_config(emulator_folder, field_shape=[2, 32])
    with pytest.raises(CheckpointError, match=r"config.json: field_shape \[2, 32\] does not fit"):
        load_checkpoint(emulator_folder)


def test_normalization_mismatch(emulator_folder):
    rewrite_config(emulator_folder, normalization={"mean": [5.0], "std": [1.3]})
    with pytest.raises(CheckpointError, match="config.json: normalization.mean"):
        load_checkpoint(emulator_folder)


def test_manifest_records_hashes(emulator_folder, thermalizer_folder):
    update_manifest(thermalizer_folder, "thermalizer train qg", 12.5, "CPU", {"accuracy": 0.5})
    entry = update_manifest(emulator_folder, "thermalizer train ks", 3.0, describe_hardware(), {"mse": 0.01})

    manifest = json.loads((emulator_folder.parent / "manifest.json").read_text())
    assert set(manifest["checkpoints"]) == {"ks-emulator", "qg-thermalizer"}
    assert manifest["checkpoints"]["ks-emulator"] == entry
    weights_hash = hashlib.sha256((emulator_folder / "model.safetensors").read_bytes()).hexdigest()
    assert entry["files"]["model.safetensors"] == weights_hash
    assert set(entry["files"]) == {"model.safetensors", "config.json"}
    assert entry["kind"] == "emulator"
    assert entry["system"] == "ks"
    assert entry["wall_time_s"] == 3.0
    assert manifest["checkpoints"]["qg-thermalizer"]["evaluation"] == {"accuracy": 0.5}


def test_manifest_verified_on_load(emulator_folder, caplog):
    update_manifest(emulator_folder, "thermalizer train ks", 3.0, "CPU", {})
    with caplog.at_level(logging.WARNING):
        load_checkpoint(emulator_folder)
    assert "no entry" not in caplog.text


@pytest.mark.parametrize("name", ["model.safetensors", "config.json"])
def test_manifest_hash_mismatch(emulator_folder, name):
    update_manifest(emulator_folder, "thermalizer train ks", 3.0, "CPU", {})
    path = emulator_folder / name
    content = bytearray(path.read_bytes())
    content[-2] ^= 0x01
    path.write_bytes(bytes(content))

    with pytest.raises(CheckpointError, match=f"{name}: SHA-256 [0-9a-f]{{64}} does not match"):
        load_checkpoint(emulator_folder)


def test_manifest_at_given_path(emulator_folder, tmp_path):
    manifest_path = tmp_path / "elsewhere" / "manifest.json"
    update_manifest(emulator_folder, "cmd", 1.0, "CPU", {}, manifest_path=manifest_path)
    (emulator_folder / "config.json").write_text((emulator_folder / "config.json").read_text() + " ")

    load_checkpoint(emulator_folder)
    with pytest.raises(CheckpointError, match="config.json: SHA-256"):
        load_checkpoint(emulator_folder, manifest_path=manifest_path)


def test_manifest_not_json(emulator_folder):
    (emulator_folder.parent / "manifest.json").write_text("not json")
    with pytest.raises(CheckpointError, match="manifest.json: not valid JSON"):
        load_checkpoint(emulator_folder)


def test_load_without_manifest_entry_warns(emulator_folder, caplog):
    with caplog.at_level(logging.WARNING, logger="thermalizer_core.models.checkpoint"):
        model, _ = load_checkpoint(emulator_folder)
    assert isinstance(model, Emulator)
    assert "no manifest at" in caplog.text
    assert not model.training


def test_load_with_other_manifest_entries_warns(emulator_folder, thermalizer_folder, caplog):
    update_manifest(thermalizer_folder, "thermalizer train qg", 12.5, "CPU", {})
    with caplog.at_level(logging.WARNING, logger="thermalizer_core.models.checkpoint"):
        load_checkpoint(emulator_folder)
    assert "ks-emulator has no entry in" in caplog.text


def test_describe_hardware_names_torch():
    description = describe_hardware()
    assert f"torch {torch.__version__}" in description
    if not torch.cuda.is_available():
        assert description.startswith("CPU")
        assert f"{torch.get_num_threads()} thread" in description
