"""Headless rollouts: run the engine for many steps and write a summary, plots and a subsampled trajectory.

Memory stays bounded: besides the engine's ring buffers, the run keeps one
row per ``save_every`` steps and the spectra at a fixed number of steps.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import pathlib
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .engine import RolloutEngine
from .export import flat_attributes, grid_coordinates, write_netcdf
from .models.checkpoint import sha256_of_file
from .models.catalog import ModelPair

logger = logging.getLogger(__name__)

#: Number of steps at which spectra are kept for the spectra plot.
SPECTRUM_SNAPSHOTS = 5


@dataclasses.dataclass
class RolloutRecord:
    """Subsampled per-step records of a headless run: rows every ``save_every`` steps."""

    save_every: int
    spectrum_steps: list[int]
    steps: list[int] = dataclasses.field(default_factory=list)
    series: dict[str, dict[str, list[np.ndarray]]] = dataclasses.field(default_factory=dict)
    fields: dict[str, list[np.ndarray]] = dataclasses.field(default_factory=dict)
    spectra: dict[str, dict[int, np.ndarray]] = dataclasses.field(default_factory=dict)

    def capture(self, engine: RolloutEngine) -> None:
        step = engine.step_count
        if step in self.spectrum_steps:
            for name, run in engine.runs.items():
                self.spectra.setdefault(name, {})[step] = run.spectrum.cpu().numpy()
        if step % self.save_every:
            return
        self.steps.append(step)
        for name, run in engine.runs.items():
            rows = self.series.setdefault(name, {})
            for record in ("measure", "level", "denoising_steps", "mse", "correlation"):
                rows.setdefault(record, []).append(run.history[record].latest())
            self.fields.setdefault(name, []).append(run.field.float().cpu().numpy())


def checkpoint_settings(pair: ModelPair) -> dict[str, Any]:
    """Return the checkpoint folders and the SHA-256 of their files, for the record."""
    entries = {}
    for role, folder in (("emulator", pair.emulator_folder), ("thermalizer", pair.thermalizer_folder)):
        entries[role] = {"path": str(folder),
                         "sha256": {p.name: sha256_of_file(p) for p in sorted(folder.glob("*")) if p.is_file()
                                    and p.name in ("model.safetensors", "config.json")}}
    return entries


def run_rollout(engine: RolloutEngine, steps: int, save_every: int, progress: bool = True) -> RolloutRecord:
    """Advance ``engine`` by ``steps`` and return the subsampled record."""
    spectrum_steps = sorted({int(s) for s in np.linspace(0, steps, SPECTRUM_SNAPSHOTS).round()})
    record = RolloutRecord(save_every=save_every, spectrum_steps=spectrum_steps)
    with tqdm(total=steps, desc=f"{engine.system.name} rollout", unit="step", disable=not progress) as bar:
        for name, run in engine.runs.items():
            record.spectra.setdefault(name, {})[0] = run.spectrum.cpu().numpy()
        for _ in range(steps):
            engine.step()
            record.capture(engine)
            bar.update(1)
            if engine.step_count % 100 == 0:
                bar.set_postfix({name: int(run.monitor.stable.sum()) for name, run in engine.runs.items()})
    return record


def trajectory_dataset(engine: RolloutEngine, record: RolloutRecord, attributes: dict[str, Any]):
    """Return the subsampled fields and series of every run as an xarray Dataset."""
    import xarray as xr

    system = engine.system
    coords = grid_coordinates(system, system.field_shape[1:])
    dims = ["batch", "step", "channel", *coords]
    variables = {}
    for name, frames in record.fields.items():
        variables[f"{name}_field"] = xr.DataArray(np.stack(frames, axis=1), dims=dims)
        for series, rows in record.series[name].items():
            variables[f"{name}_{series}"] = xr.DataArray(np.stack(rows, axis=1), dims=["batch", "step"])
    dataset = xr.Dataset(variables, coords={"step": np.array(record.steps), "channel": list(system.channels),
                                            **coords})
    dataset.attrs.update({"system": system.name, "emulator_interval": system.emulator_interval})
    dataset.attrs.update(flat_attributes("param_", system.params.to_dict()))
    dataset.attrs.update(flat_attributes("", attributes))
    return dataset


def write_outputs(engine: RolloutEngine, record: RolloutRecord, pair: ModelPair, out: pathlib.Path) -> dict[str, Any]:
    """Write ``summary.json``, the PNG plots and ``trajectory.nc`` into ``out``; return the summary."""
    from .plots import plot_measure, plot_spectra, plot_ticker_tape

    summary = engine.summary()
    summary["settings"] = {**summary["settings"], "seed": engine.seed, "device": str(engine.device),
                           "checkpoints": checkpoint_settings(pair), "save_every": record.save_every}
    thermalized = summary["runs"].get("thermalized")
    if thermalized is not None:
        summary["thermalized_fraction"] = thermalized["thermalized_fraction"]
        summary["mean_denoising_steps"] = thermalized["mean_denoising_steps"]
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    plot_measure(engine, record, out / "measure.png")
    plot_spectra(engine, record, out / "spectra.png")
    if "thermalized" in engine.runs:
        plot_ticker_tape(record, out / "ticker_tape.png")
    attributes = {"settings": summary["settings"], "seed": engine.seed}
    write_netcdf(trajectory_dataset(engine, record, attributes), out / "trajectory.nc")
    return summary
