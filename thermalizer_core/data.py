"""Training data: true trajectories on the emulator grid, stored as memory-mapped ``.npy`` files.

A dataset folder contains ``train.npy``, ``valid.npy`` and ``test.npy``, each of
shape ``(N, T + 1, C, *grid)`` in float32 (trajectory, emulator step, channel,
grid), and ``meta.json`` with the system, its parameters, the emulator interval,
the seeds of every split and the per-channel normalization of the training split.
Arrays are opened with ``mmap_mode="r"``, so datasets larger than memory work.
"""
from __future__ import annotations

import json
import logging
import pathlib
from typing import Any

import numpy as np
import torch
from numpy.lib.format import open_memmap
from tqdm.auto import tqdm

from .systems import System, get_system

logger = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")


def write_split(system: System, path: pathlib.Path, trajectories: int, steps: int, seed: int,
                batch_size: int, device: torch.device | str | None, progress: bool = True) -> None:
    """Integrate ``trajectories`` true runs of ``steps`` emulator steps and write them to ``path``.

    Chunk ``i`` of ``batch_size`` trajectories starts from ``initial_state(batch, seed + i)``.
    """
    array = open_memmap(path, mode="w+", dtype=np.float32, shape=(trajectories, steps + 1, *system.field_shape))
    with tqdm(total=trajectories * steps, desc=f"{path.stem}", unit="step", disable=not progress) as bar:
        for chunk, start in enumerate(range(0, trajectories, batch_size)):
            count = min(batch_size, trajectories - start)
            state = system.initial_state(count, seed=seed + chunk, device=device)
            array[start:start + count, 0] = system.to_emulator_grid(state).float().cpu().numpy()
            for step, state in enumerate(system.trajectory(state), start=1):
                array[start:start + count, step] = system.to_emulator_grid(state).float().cpu().numpy()
                bar.update(count)
                if step == steps:
                    break
    array.flush()
    del array


def channel_statistics(array: np.ndarray, chunk: int = 16) -> tuple[list[float], list[float]]:
    """Return the per-channel mean and standard deviation of ``(N, T, C, *grid)``, reading in chunks."""
    channels = array.shape[2]
    total = np.zeros(channels)
    total_sq = np.zeros(channels)
    count = 0
    axes = (0, 1) + tuple(range(3, array.ndim))
    for start in range(0, array.shape[0], chunk):
        block = np.asarray(array[start:start + chunk], dtype=np.float64)
        total += block.sum(axis=axes)
        total_sq += (block ** 2).sum(axis=axes)
        count += block.size // channels
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean ** 2, 0.0))
    return mean.tolist(), std.tolist()


def generate_dataset(system: System, out: str | pathlib.Path, train: int, valid: int, test: int, steps: int,
                     seed: int = 0, batch_size: int = 16, device: torch.device | str | None = None,
                     progress: bool = True) -> dict[str, Any]:
    """Write the three splits and ``meta.json`` to ``out`` and return the metadata.

    Split seeds are ``seed``, ``seed + 10000`` and ``seed + 20000`` (chunk ``i``
    adds ``i``), so the splits never share an initial condition.
    """
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    counts = {"train": train, "valid": valid, "test": test}
    seeds = {split: seed + 10000 * index for index, split in enumerate(SPLITS)}
    for split in SPLITS:
        write_split(system, out / f"{split}.npy", counts[split], steps, seeds[split], batch_size, device, progress)
    mean, std = channel_statistics(np.load(out / "train.npy", mmap_mode="r"))
    meta = {
        **system.describe(),
        "steps": steps,
        "trajectories": counts,
        "seeds": seeds,
        "batch_size": batch_size,
        "normalization": {"mean": mean, "std": std},
        "layout": "(trajectory, step, channel, *grid), float32",
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    logger.info("wrote %s dataset to %s", system.name, out)
    return meta


class TrajectoryData:
    """A dataset folder opened lazily: ``data.split("train")`` is a read-only memmap ``(N, T + 1, C, *grid)``."""

    def __init__(self, folder: str | pathlib.Path):
        self.folder = pathlib.Path(folder)
        meta_path = self.folder / "meta.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"dataset metadata {meta_path} not found: create the dataset with "
                                    "`thermalizer generate-data`")
        self.meta = json.loads(meta_path.read_text())

    @property
    def system(self) -> System:
        return get_system(self.meta["system"], **self.meta["params"])

    def split(self, name: str) -> np.ndarray:
        path = self.folder / f"{name}.npy"
        if not path.is_file():
            raise FileNotFoundError(f"dataset split {path} not found")
        return np.load(path, mmap_mode="r")

    @property
    def mean(self) -> list[float]:
        return self.meta["normalization"]["mean"]

    @property
    def std(self) -> list[float]:
        return self.meta["normalization"]["std"]


def sample_windows(array: np.ndarray, count: int, length: int, generator: np.random.Generator) -> torch.Tensor:
    """Draw ``count`` random windows of ``length`` consecutive steps, shape ``(count, length, C, *grid)``."""
    trajectories, steps = array.shape[:2]
    if length > steps:
        raise ValueError(f"window of {length} steps is longer than the {steps} stored steps per trajectory")
    rows = generator.integers(0, trajectories, size=count)
    starts = generator.integers(0, steps - length + 1, size=count)
    windows = np.stack([array[r, s:s + length] for r, s in zip(rows, starts)])
    return torch.from_numpy(windows)
