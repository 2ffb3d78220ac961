"""Trajectories as xarray datasets and netCDF files, with coordinates and parameters as attributes."""
from __future__ import annotations

import dataclasses
import json
import math
import pathlib
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import xarray as xr

from .systems import System

if TYPE_CHECKING:
    from .engine import RolloutEngine


def grid_coordinates(system: System, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    """Return the physical coordinates of the spatial axes of ``shape`` (the grid part of a state or field).

    KS has ``x`` in ``[0, L)``; Kolmogorov has ``y, x`` in ``[0, 2 pi)``; QG has
    ``y, x`` in metres over ``[0, W)`` and ``[0, L)``. The right boundary is not a grid point.
    """
    params = system.params
    if system.name == "ks":
        return {"x": np.arange(shape[-1]) * params.L / shape[-1]}
    if system.name == "qg":
        ny, nx = shape[-2:]
        return {"y": np.arange(ny) * params.W / ny, "x": np.arange(nx) * params.L / nx}
    n = shape[-1]
    return {"y": np.arange(n) * 2 * math.pi / n, "x": np.arange(n) * 2 * math.pi / n}


def flat_attributes(prefix: str, values: dict[str, Any]) -> dict[str, Any]:
    """Return netCDF-safe attributes: numbers and strings as they are, anything else as JSON."""
    attributes = {}
    for name, value in values.items():
        if isinstance(value, bool):
            value = int(value)
        elif value is None or isinstance(value, (dict, list, tuple)):
            value = json.dumps(value)
        attributes[f"{prefix}{name}"] = value
    return attributes


def states_to_dataset(system: System, states: np.ndarray, times: np.ndarray, name: str = "state",
                      attributes: dict[str, Any] | None = None) -> xr.Dataset:
    """Wrap solver states ``(B, K, *state_shape)`` saved at ``times`` ``(K,)`` in a dataset."""
    coords = grid_coordinates(system, states.shape[2:])
    spatial = list(coords)
    layered = states.ndim - 2 > len(spatial)
    dims = ["batch", "time"] + (["layer"] if layered else []) + spatial
    if layered:
        # Layers are numbered from 1 at the top, as pyqg's ``lev`` coordinate.
        coords = {"layer": np.arange(1, states.shape[2] + 1), **coords}
    data = xr.DataArray(states, dims=dims, coords={"time": times, **coords}, name=name)
    dataset = data.to_dataset()
    dataset.attrs.update({"system": system.name, "emulator_interval": system.emulator_interval})
    dataset.attrs.update(flat_attributes("param_", system.params.to_dict()))
    dataset.attrs.update(flat_attributes("", attributes or {}))
    return dataset


def channel_coordinate(system: System) -> tuple[str, np.ndarray]:
    """Return the name and values of the axis before the grid: QG's ``layer`` (1 at the top) or ``channel``."""
    if system.name == "qg":
        return "layer", np.arange(1, system.field_shape[0] + 1)
    return "channel", np.array(system.channels)


def run_settings_json(engine: "RolloutEngine", name: str) -> str:
    """Return run ``name``'s settings as JSON, with the checkpoint's emulator noise in place of None.

    The emulator-only run is never thermalized, so it gets only the settings that act on it: the
    emulator noise and how often it is classified.
    """
    settings = engine.run_settings(name)
    if settings.emulator_sigma is None:
        settings = dataclasses.replace(settings, emulator_sigma=float(engine.emulator.sigma))
    if name not in engine.thermalized_names:
        return json.dumps({"emulator_sigma": settings.emulator_sigma, "classify_every": settings.classify_every})
    return json.dumps(dataclasses.asdict(settings))


def recorded_levels(engine: "RolloutEngine", name: str, steps: np.ndarray) -> np.ndarray:
    """Return run ``name``'s predicted levels ``(K, B)`` at ``steps``, -1 where none was recorded or kept."""
    levels = np.full((len(steps), engine.batch), -1, dtype=np.int32)
    history = engine.history(name)
    row_of_step = {int(step): row for row, step in enumerate(history["step"])}
    for index, step in enumerate(steps):
        row = row_of_step.get(int(step))
        if row is not None:
            levels[index] = history["level"][row]
    return levels


def engine_dataset(engine: "RolloutEngine", names: Sequence[str] | None = None) -> xr.Dataset:
    """Return the recent trajectory of the engine's runs ``names`` (default: all) as a dataset.

    ``field`` has dims ``("run", "step", "batch", channel or layer, *spatial)``
    with the steps of :meth:`RolloutEngine.recent_fields`, a ``time`` coordinate
    along ``step`` (step times the emulator interval, in the system's time unit)
    and physical grid coordinates. ``level`` ``(run, step, batch)`` is the
    predicted noise level, -1 where none was recorded (step 0, unclassified
    steps, rows older than the engine's ``history``). Attributes hold the system
    and its parameters, the seed, the current step, the batch and, per emulated
    run, the settings as JSON in ``settings_<run>``. Raises ValueError for an
    unknown run or an engine that keeps no fields.
    """
    names = tuple(engine.run_names if names is None else names)
    unknown = [name for name in names if name not in engine.run_names]
    if unknown or not names:
        raise ValueError(f"cannot export runs {list(names)}: choose one or more of {', '.join(engine.run_names)}")
    system = engine.system
    steps = engine.recent_fields(names[0])[0]
    fields = np.stack([engine.recent_fields(name)[1] for name in names])
    levels = np.stack([recorded_levels(engine, name, steps) for name in names])

    channel_name, channel_values = channel_coordinate(system)
    spatial = grid_coordinates(system, system.field_shape[1:])
    dims = ("run", "step", "batch", channel_name, *spatial)
    coords = {"run": list(names), "step": steps, "time": ("step", steps * system.emulator_interval),
              "batch": np.arange(engine.batch), channel_name: channel_values, **spatial}
    dataset = xr.Dataset({"field": (dims, fields), "level": (("run", "step", "batch"), levels)}, coords=coords)
    dataset["time"].attrs["description"] = "step times the emulator interval, in the system's time unit"
    dataset["level"].attrs["description"] = "predicted noise level of the thermalizer's classifier; -1: none recorded"

    dataset.attrs.update({"system": system.name, "emulator_interval": system.emulator_interval,
                          "seed": engine.seed, "step": engine.step_count, "batch": engine.batch,
                          "classify_truth": int(engine.classify_truth)})
    dataset.attrs.update(flat_attributes("param_", system.params.to_dict()))
    for name in names:
        if name in engine.emulated_names:
            dataset.attrs[f"settings_{name}"] = run_settings_json(engine, name)
    return dataset


def write_netcdf(dataset: xr.Dataset, path: str | pathlib.Path) -> None:
    """Write ``dataset`` to ``path`` with the h5netcdf engine."""
    dataset.to_netcdf(path, engine="h5netcdf")
