"""Emulator/thermalizer pairs that a session can choose, and loading each once per server process.

A choice is either the shipped pair of a system (``checkpoints/<system>-*``)
or a pair found in the folder given with ``--models DIR`` at server start.
Loaded weights are shared read-only between sessions through ``pn.cache``.
The cache key includes the modification times of the checkpoint files, so the
next load picks up a pair that was trained (or retrained) while the server runs.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import pathlib
import threading

import panel as pn
import torch

from thermalizer_core.models.catalog import (EMULATOR_SUFFIX, SHIPPED_CHECKPOINTS, THERMALIZER_SUFFIX, ModelPair,
                                             load_pair, scan_models)
from thermalizer_core.models.checkpoint import CONFIG_FILE, WEIGHTS_FILE

logger = logging.getLogger(__name__)

#: Systems the dashboard shows, with their labels, in menu order.
SYSTEM_LABELS = {"ks": "Kuramoto–Sivashinsky (1D)", "kolmogorov": "Kolmogorov flow (2D)", "qg": "Two-layer QG (2D)"}
SHIPPED_LABEL = "shipped checkpoints"

_load_lock = threading.Lock()


@dataclasses.dataclass(frozen=True)
class ModelChoice:
    """One pair a session can run: ``folder`` None means the shipped checkpoints."""

    system: str
    name: str
    folder: str | None = None

    @property
    def label(self) -> str:
        return SHIPPED_LABEL if self.folder is None else f"{self.name} (models folder)"

    @property
    def checkpoint_names(self) -> tuple[str, str]:
        return f"{self.name}{EMULATOR_SUFFIX}", f"{self.name}{THERMALIZER_SUFFIX}"


@dataclasses.dataclass(frozen=True)
class FolderScan:
    """Pairs found in a models folder, by system, and the folders rejected with their reasons."""

    choices: dict[str, tuple[ModelChoice, ...]]
    rejected: tuple[tuple[str, str], ...]


def shipped_choice(system: str) -> ModelChoice:
    """Return the shipped pair of ``system``; the catalog names it after the system."""
    return ModelChoice(system, system)


def checkpoint_stamp(folder: pathlib.Path, name: str) -> tuple[int, ...]:
    """Return the modification times (ns) of the pair's files, -1 for a missing file."""
    stamp = []
    for suffix in (EMULATOR_SUFFIX, THERMALIZER_SUFFIX):
        for file_name in (CONFIG_FILE, WEIGHTS_FILE):
            try:
                stamp.append(os.stat(folder / f"{name}{suffix}" / file_name).st_mtime_ns)
            except OSError:
                stamp.append(-1)
    return tuple(stamp)


@pn.cache(max_items=8)
def _load_pair_cached(name: str, folder: str, device: str, stamp: tuple[int, ...]) -> ModelPair:
    logger.info("loading pair %s from %s onto %s", name, folder, device)
    return load_pair(name, folder, device)


def choice_folder(choice: ModelChoice) -> pathlib.Path:
    return SHIPPED_CHECKPOINTS if choice.folder is None else pathlib.Path(choice.folder)


def choice_stamp(choice: ModelChoice) -> tuple[int, ...]:
    """Return :func:`checkpoint_stamp` of the pair of ``choice``; it changes when a checkpoint is written."""
    return checkpoint_stamp(choice_folder(choice), choice.name)


def load_models(choice: ModelChoice, device: torch.device) -> ModelPair:
    """Load (or reuse) the pair of ``choice`` on ``device``; raises CheckpointError when it is missing or invalid.

    The returned models are shared with other sessions: use them for inference only.
    """
    folder = choice_folder(choice)
    stamp = checkpoint_stamp(folder, choice.name)
    # One load at a time, so two sessions requesting the same pair do not both read it.
    with _load_lock:
        return _load_pair_cached(choice.name, str(folder), str(device), stamp)


@pn.cache(max_items=4)
def _scan_cached(folder: str, stamp: int) -> FolderScan:
    pairs, rejected = scan_models(folder, device="cpu")
    choices: dict[str, list[ModelChoice]] = {}
    for pair in pairs:
        choices.setdefault(pair.system.name, []).append(ModelChoice(pair.system.name, pair.name, folder))
    logger.info("models folder %s: %d valid pair(s), %d rejected", folder, len(pairs), len(rejected))
    for model in rejected:
        logger.warning("models folder %s: rejected %s: %s", folder, model.name, model.reason)
    return FolderScan({system: tuple(items) for system, items in choices.items()},
                      tuple((model.name, model.reason) for model in rejected))


def scan_folder(folder: str | None) -> FolderScan:
    """Return the valid pairs and rejected entries of the models folder (empty for None)."""
    if folder is None:
        return FolderScan({}, ())
    path = pathlib.Path(folder).resolve()
    try:
        stamp = os.stat(path).st_mtime_ns
    except OSError:
        stamp = -1
    with _load_lock:
        return _scan_cached(str(path), stamp)


def model_choices(system: str, folder: str | None) -> list[ModelChoice]:
    """Return the shipped pair of ``system`` followed by the models folder's pairs for it."""
    return [shipped_choice(system), *scan_folder(folder).choices.get(system, ())]


def public_message(message: str) -> str:
    """Return ``message`` with the server's absolute checkpoint paths shortened for display."""
    return message.replace(str(SHIPPED_CHECKPOINTS), "checkpoints")
