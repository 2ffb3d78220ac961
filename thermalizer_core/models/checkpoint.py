"""Checkpoint folders of emulators and thermalizers, and the manifest that records how they were made.

A checkpoint is a folder with two files:

- ``model.safetensors``: the state dict (weights and normalization buffers).
- ``config.json``: what is needed to rebuild and judge the model, with the keys
  of :data:`REQUIRED_KEYS` (``schedule`` only for thermalizers).

A manifest (``manifest.json``, by default in the folder's parent) maps each
checkpoint folder name to the SHA-256 of its files, the command that made it,
its wall time, hardware and evaluation. Loading verifies the hashes when the
manifest has an entry for the folder. Loading reads only safetensors and JSON
and never unpickles anything.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import platform
import tempfile
from pathlib import Path
from typing import Any

import safetensors
import safetensors.torch
import torch
from torch import nn

from .emulator import Emulator
from .thermalizer import Thermalizer

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
MANIFEST_FILE = "manifest.json"
MODEL_CLASSES: dict[str, type[nn.Module]] = {"emulator": Emulator, "thermalizer": Thermalizer}
REQUIRED_KEYS = (
    "format_version",
    "kind",
    "system",
    "system_params",
    "field_shape",
    "architecture",
    "normalization",
    "training",
    "data",
)
#: Relative tolerance between the normalization in config.json and the float32 buffers in the weights.
NORMALIZATION_RTOL = 1e-6


class CheckpointError(ValueError):
    """A checkpoint folder, its files or its manifest entry is missing, corrupt or does not match."""


def sha256_of_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def describe_hardware() -> str:
    """Return the CUDA device name, or "CPU, N threads", plus the torch version."""
    if torch.cuda.is_available():
        device = f"{torch.cuda.get_device_name(torch.cuda.current_device())} (CUDA {torch.version.cuda})"
    else:
        threads = torch.get_num_threads()
        device = f"CPU {platform.machine()}, {threads} thread{'' if threads == 1 else 's'}"
    return f"{device}, torch {torch.__version__}"


def _write_json_atomically(path: Path, content: dict[str, Any]) -> None:
    """Write JSON to a temporary file in the same folder, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as stream:
        json.dump(content, stream, indent=2, allow_nan=False)
        stream.write("\n")
    os.replace(stream.name, path)


# -- saving ---------------------------------------------------------------------------------------------------------


def _model_kind(model: nn.Module) -> str:
    for kind, model_class in MODEL_CLASSES.items():
        if isinstance(model, model_class):
            return kind
    raise TypeError(f"can only save an Emulator or a Thermalizer, got {type(model).__name__}")


def _split_architecture(model: nn.Module) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Return the model config without the noise schedule, and the schedule (None for emulators)."""
    architecture = model.config()
    schedule = architecture.pop("schedule", None)
    return architecture, schedule


def _check_field_shape(field_shape: list[int], model: nn.Module) -> str | None:
    """Return why ``model`` cannot take fields of ``field_shape``, or None if it can."""
    if len(field_shape) != model.dims + 1 or field_shape[0] != model.channels:
        return (
            f"field_shape {field_shape} does not fit a model with {model.channels} channels "
            f"and {model.dims} spatial dims"
        )
    divisor = model.unet.grid_divisor if isinstance(model, Thermalizer) else model.net.grid_divisor
    if any(size % divisor for size in field_shape[1:]):
        return f"the grid {field_shape[1:]} is not divisible by {divisor}, as the UNet's levels require"
    return None


def save_checkpoint(
    model: nn.Module, folder: str | Path, system_description: dict[str, Any], training: dict[str, Any], data: dict[str, Any]
) -> Path:
    """Write ``model.safetensors`` and ``config.json`` of an Emulator or Thermalizer into ``folder``.

    ``system_description`` is :meth:`System.describe` output (keys ``system``,
    ``params``, ``field_shape``; ``emulator_interval`` and ``channels`` are kept
    when present). ``training`` and ``data`` are JSON-able dicts recorded as given.
    Existing files are overwritten; a manifest entry for the folder then needs
    :func:`update_manifest`. Returns the folder path.
    """
    kind = _model_kind(model)
    missing = [key for key in ("system", "params", "field_shape") if key not in system_description]
    if missing:
        raise ValueError(f"system_description is missing {', '.join(missing)}; pass System.describe() output")
    architecture, schedule = _split_architecture(model)
    field_shape = [int(size) for size in system_description["field_shape"]]
    problem = _check_field_shape(field_shape, model)
    if problem:
        raise ValueError(f"cannot save a {kind} for system {system_description['system']!r}: {problem}")

    config: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "system": system_description["system"],
        "system_params": system_description["params"],
        "field_shape": field_shape,
        "architecture": architecture,
        "normalization": model.normalization.to_dict(),
    }
    for optional_key in ("emulator_interval", "channels"):
        if optional_key in system_description:
            config[optional_key] = system_description[optional_key]
    if schedule is not None:
        config["schedule"] = schedule
    config["training"] = training
    config["data"] = data

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    safetensors.torch.save_file(tensors, folder / WEIGHTS_FILE, metadata={"format": "pt", "kind": kind})
    _write_json_atomically(folder / CONFIG_FILE, config)
    logger.info("saved %s checkpoint for %s to %s", kind, config["system"], folder)
    return folder


# -- manifest -------------------------------------------------------------------------------------------------------


def _default_manifest_path(folder: Path) -> Path:
    return folder.parent / MANIFEST_FILE


def _read_manifest(manifest_path: Path) -> dict[str, Any]:
    """Return the manifest at ``manifest_path``, or an empty one if the file does not exist."""
    if not manifest_path.is_file():
        return {"checkpoints": {}}
    try:
        manifest = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{manifest_path}: not valid JSON ({error}); fix or delete the manifest") from error
    if not isinstance(manifest, dict) or not isinstance(manifest.get("checkpoints"), dict):
        raise CheckpointError(f'{manifest_path}: expected an object with a "checkpoints" object')
    return manifest


def update_manifest(
    folder: str | Path,
    command: str,
    wall_time_s: float,
    hardware: str,
    evaluation: dict[str, Any],
    manifest_path: str | Path | None = None,
) -> dict[str, Any]:
    """Record the checkpoint in ``folder`` in the manifest and return its entry.

    The entry, keyed by the folder name, contains the SHA-256 of every file in the
    folder, the ``command`` that produced it, ``wall_time_s`` (seconds),
    ``hardware`` (see :func:`describe_hardware`), ``evaluation`` and the
    checkpoint's kind and system. Other entries are kept.
    """
    folder = Path(folder)
    manifest_path = _default_manifest_path(folder) if manifest_path is None else Path(manifest_path)
    config = _read_config(folder)
    files = {path.name: sha256_of_file(path) for path in sorted(folder.iterdir()) if path.is_file()}
    entry = {
        "files": files,
        "command": command,
        "wall_time_s": float(wall_time_s),
        "hardware": hardware,
        "evaluation": evaluation,
        "kind": config["kind"],
        "system": config["system"],
    }
    manifest = _read_manifest(manifest_path)
    manifest["checkpoints"][folder.name] = entry
    _write_json_atomically(manifest_path, manifest)
    logger.info("recorded %s in %s", folder.name, manifest_path)
    return entry


def verify_manifest_entry(folder: Path, manifest_path: Path) -> bool:
    """Check the files of ``folder`` against its manifest entry; return False if it has none.

    Raises CheckpointError naming the first listed file that is missing or whose
    SHA-256 differs from the manifest.
    """
    entry = _read_manifest(manifest_path)["checkpoints"].get(folder.name)
    if entry is None:
        return False
    files = entry.get("files")
    if not isinstance(files, dict) or not files:
        raise CheckpointError(f'{manifest_path}: the entry for {folder.name!r} lists no "files"')
    for name, expected in files.items():
        path = folder / name
        if not path.is_file():
            raise CheckpointError(f"{path}: file not found, but the manifest {manifest_path} lists it")
        actual = sha256_of_file(path)
        if actual != expected:
            raise CheckpointError(
                f"{path}: SHA-256 {actual} does not match {expected} in {manifest_path}; "
                "the file was changed or corrupted after it was recorded (rerun update_manifest if the change is intended)"
            )
    return True


# -- loading --------------------------------------------------------------------------------------------------------


def _read_config(folder: Path) -> dict[str, Any]:
    """Return the parsed config.json of ``folder`` after checking that its required keys are present."""
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{path}: file not found; a checkpoint folder needs {CONFIG_FILE} and {WEIGHTS_FILE}")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {type(config).__name__}")

    required = list(REQUIRED_KEYS) + (["schedule"] if config.get("kind") == "thermalizer" else [])
    missing = [key for key in required if key not in config]
    if missing:
        raise CheckpointError(f"{path}: missing required keys {', '.join(missing)}")
    if config["format_version"] != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: format_version {config['format_version']!r} is not supported; this code reads version {FORMAT_VERSION}"
        )
    if config["kind"] not in MODEL_CLASSES:
        raise CheckpointError(f"{path}: kind {config['kind']!r} is not one of {', '.join(MODEL_CLASSES)}")
    return config


def _check_expected(path: Path, config: dict[str, Any], expected_kind: str | None, expected_system: str | None) -> None:
    if expected_kind is not None and config["kind"] != expected_kind:
        raise CheckpointError(f"{path}: this checkpoint is of kind {config['kind']!r}, but {expected_kind!r} was expected")
    if expected_system is not None and config["system"] != expected_system:
        raise CheckpointError(
            f"{path}: this checkpoint is for system {config['system']!r}, but {expected_system!r} was expected"
        )


def _build_model(path: Path, config: dict[str, Any]) -> nn.Module:
    """Build the untrained model described by the config at ``path`` and check it fits ``field_shape``."""
    if not isinstance(config["architecture"], dict):
        raise CheckpointError(f"{path}: architecture must be a JSON object, got {config['architecture']!r}")
    field_shape = config["field_shape"]
    if not isinstance(field_shape, list) or not all(isinstance(size, int) for size in field_shape):
        raise CheckpointError(f"{path}: field_shape must be a list of integers, got {field_shape!r}")
    architecture = dict(config["architecture"])
    if config["kind"] == "thermalizer":
        architecture["schedule"] = config["schedule"]
    try:
        model = MODEL_CLASSES[config["kind"]].from_config(architecture)
    except (TypeError, ValueError, KeyError) as error:
        raise CheckpointError(f"{path}: invalid architecture {config['architecture']} ({error})") from error
    problem = _check_field_shape(field_shape, model)
    if problem:
        raise CheckpointError(f"{path}: {problem}")
    return model


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"{path}: file not found; a checkpoint folder needs {CONFIG_FILE} and {WEIGHTS_FILE}")
    try:
        return safetensors.torch.load_file(path, device="cpu")
    except (safetensors.SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path}: not a valid safetensors file ({error})") from error


def _check_weights_match(path: Path, weights: dict[str, torch.Tensor], model: nn.Module) -> None:
    """Raise CheckpointError naming the first tensor whose name or shape differs from the model's."""
    expected = model.state_dict()
    for name, tensor in expected.items():
        if name not in weights:
            raise CheckpointError(
                f"{path}: tensor {name!r} of shape {tuple(tensor.shape)} is missing; "
                f"the weights do not match the architecture in {CONFIG_FILE}"
            )
        if weights[name].shape != tensor.shape:
            raise CheckpointError(
                f"{path}: tensor {name!r} has shape {tuple(weights[name].shape)}, "
                f"but the architecture in {CONFIG_FILE} expects {tuple(tensor.shape)}"
            )
    unexpected = [name for name in weights if name not in expected]
    if unexpected:
        raise CheckpointError(
            f"{path}: tensor {unexpected[0]!r} is not part of the architecture in {CONFIG_FILE} "
            f"({len(unexpected)} unexpected tensors)"
        )


def _check_normalization(path: Path, config: dict[str, Any], model: nn.Module) -> None:
    stored = model.normalization.to_dict()
    for key in ("mean", "std"):
        recorded = config["normalization"].get(key) if isinstance(config["normalization"], dict) else None
        valid = isinstance(recorded, list) and all(isinstance(value, (int, float)) for value in recorded)
        if not valid or len(recorded) != len(stored[key]):
            raise CheckpointError(f"{path}: normalization.{key} must list {len(stored[key])} values, got {recorded!r}")
        for recorded_value, stored_value in zip(recorded, stored[key]):
            if not math.isclose(recorded_value, stored_value, rel_tol=NORMALIZATION_RTOL, abs_tol=1e-12):
                raise CheckpointError(
                    f"{path}: normalization.{key} {recorded} differs from the buffers in {WEIGHTS_FILE} {stored[key]}"
                )


def load_checkpoint(
    folder: str | Path,
    expected_kind: str | None = None,
    expected_system: str | None = None,
    device: torch.device | str | None = None,
    manifest_path: str | Path | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Load a checkpoint folder and return ``(model, config)``, the model in eval mode on ``device``.

    The checks run in this order. The folder must exist. If the manifest (at
    ``manifest_path``, by default ``manifest.json`` in the folder's parent) has an
    entry for the folder, every file it lists must match its SHA-256; without an
    entry a warning is logged. config.json must have the required keys and the
    expected kind and system. model.safetensors must be a safetensors file whose
    tensor names and shapes match the architecture. Every failure raises
    CheckpointError naming the file and the problem.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: checkpoint folder not found")
    manifest_path = _default_manifest_path(folder) if manifest_path is None else Path(manifest_path)
    if not manifest_path.is_file():
        logger.warning("no manifest at %s; loading %s without checking file hashes", manifest_path, folder)
    elif not verify_manifest_entry(folder, manifest_path):
        logger.warning("%s has no entry in %s; loading it without checking file hashes", folder, manifest_path)

    config = _read_config(folder)
    config_path = folder / CONFIG_FILE
    _check_expected(config_path, config, expected_kind, expected_system)
    model = _build_model(config_path, config)

    weights_path = folder / WEIGHTS_FILE
    weights = _read_weights(weights_path)
    _check_weights_match(weights_path, weights, model)
    model.load_state_dict(weights)
    _check_normalization(config_path, config, model)

    if device is not None:
        model.to(device)
    model.eval()
    return model, config
