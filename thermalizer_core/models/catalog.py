"""Finding emulator/thermalizer pairs in a models folder, and loading them with their system.

A pair is two checkpoint folders named ``<name>-emulator`` and
``<name>-thermalizer`` for the same system and system parameters. The shipped
pairs live in the repository's ``checkpoints/`` folder as ``ks``,
``kolmogorov`` and ``qg``.
"""
from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

import torch

from ..systems import InvalidParameterError, System, get_system
from .checkpoint import CheckpointError, load_checkpoint
from .emulator import Emulator
from .thermalizer import Thermalizer

#: The checkpoints that ship with the repository.
SHIPPED_CHECKPOINTS = pathlib.Path(__file__).resolve().parents[2] / "checkpoints"
EMULATOR_SUFFIX = "-emulator"
THERMALIZER_SUFFIX = "-thermalizer"


@dataclasses.dataclass
class ModelPair:
    """An emulator and a thermalizer for one system, loaded and checked against each other."""

    name: str
    system: System
    emulator: Emulator
    thermalizer: Thermalizer
    emulator_folder: pathlib.Path
    thermalizer_folder: pathlib.Path
    emulator_config: dict[str, Any]
    thermalizer_config: dict[str, Any]

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "system": self.system.name, "emulator": str(self.emulator_folder),
                "thermalizer": str(self.thermalizer_folder)}


@dataclasses.dataclass(frozen=True)
class RejectedModel:
    """A folder of a models directory that could not be used, with the reason."""

    name: str
    reason: str


def system_of(config: dict[str, Any], path: pathlib.Path) -> System:
    """Build the system a checkpoint was trained on, or raise CheckpointError."""
    try:
        system = get_system(config["system"], **config["system_params"])
    except InvalidParameterError as error:
        raise CheckpointError(f"{path}: invalid system in config.json ({error})") from error
    if list(system.field_shape) != list(config["field_shape"]):
        raise CheckpointError(f"{path}: field_shape {config['field_shape']} does not match system "
                              f"{system.name} with these parameters ({list(system.field_shape)})")
    return system


def load_pair(name: str, folder: str | pathlib.Path | None = None,
              device: torch.device | str | None = None) -> ModelPair:
    """Load the pair ``name`` from ``folder`` (default: the shipped checkpoints) onto ``device``.

    Raises CheckpointError when either checkpoint is invalid, or when the two
    were trained for different systems or system parameters.
    """
    folder = pathlib.Path(folder) if folder is not None else SHIPPED_CHECKPOINTS
    emulator_folder = folder / f"{name}{EMULATOR_SUFFIX}"
    thermalizer_folder = folder / f"{name}{THERMALIZER_SUFFIX}"
    emulator, emulator_config = load_checkpoint(emulator_folder, expected_kind="emulator", device=device)
    thermalizer, thermalizer_config = load_checkpoint(thermalizer_folder, expected_kind="thermalizer",
                                                      expected_system=emulator_config["system"], device=device)
    if thermalizer_config["system_params"] != emulator_config["system_params"]:
        raise CheckpointError(f"{thermalizer_folder}: system parameters differ from those of {emulator_folder}")
    system = system_of(emulator_config, emulator_folder / "config.json")
    return ModelPair(name, system, emulator, thermalizer, emulator_folder, thermalizer_folder,
                     emulator_config, thermalizer_config)


def scan_models(folder: str | pathlib.Path, device: torch.device | str | None = None
                ) -> tuple[list[ModelPair], list[RejectedModel]]:
    """Load every pair in ``folder``; return the valid pairs and the rejected names with reasons.

    A subfolder that is not part of a pair is rejected too. Nothing here raises
    for a bad checkpoint.
    """
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        return [], [RejectedModel(str(folder), "models folder not found")]
    names: dict[str, set[str]] = {}
    rejected = []
    for child in sorted(p for p in folder.iterdir() if p.is_dir()):
        for suffix in (EMULATOR_SUFFIX, THERMALIZER_SUFFIX):
            if child.name.endswith(suffix) and len(child.name) > len(suffix):
                names.setdefault(child.name[: -len(suffix)], set()).add(suffix)
                break
        else:
            rejected.append(RejectedModel(child.name, f"not a pair member: name must end in {EMULATOR_SUFFIX} "
                                                      f"or {THERMALIZER_SUFFIX}"))
    pairs = []
    for name, suffixes in sorted(names.items()):
        missing = {EMULATOR_SUFFIX, THERMALIZER_SUFFIX} - suffixes
        if missing:
            rejected.append(RejectedModel(name, f"incomplete pair: {name}{missing.pop()} is missing"))
            continue
        try:
            pairs.append(load_pair(name, folder, device))
        except CheckpointError as error:
            rejected.append(RejectedModel(name, str(error)))
    return pairs, rejected
