"""Trajectories as xarray datasets and netCDF files, with coordinates and parameters as attributes."""
from __future__ import annotations

import json
import math
import pathlib
from typing import Any

import numpy as np
import xarray as xr

from .systems import System


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


def write_netcdf(dataset: xr.Dataset, path: str | pathlib.Path) -> None:
    """Write ``dataset`` to ``path`` with the h5netcdf engine."""
    dataset.to_netcdf(path, engine="h5netcdf")
