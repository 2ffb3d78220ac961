"""Resumable training state: model, EMA and optimizer tensors in safetensors, the rest in JSON.

A run folder ``OUT`` contains ``OUT/resume/`` with ``model.safetensors``,
``optimizer.safetensors``, optional ``ema.safetensors`` and ``state.json``
(step, elapsed wall time, optimizer hyperparameters). Nothing is pickled.
"""
from __future__ import annotations

import json
import pathlib
from typing import Any

import torch
from safetensors.torch import load_file, save_file


def flatten_optimizer_state(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer's state dict into named tensors and JSON-able values."""
    state = optimizer.state_dict()
    tensors = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, entry in state["state"].items():
        for key, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def unflatten_optimizer_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    for index, entries in meta["scalars"].items():
        state.setdefault(int(index), {}).update(entries)
    return {"state": state, "param_groups": meta["param_groups"]}


def weights_of(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().cpu().contiguous() for name, tensor in module.state_dict().items()}


def save_training_state(folder: pathlib.Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                        ema: torch.nn.Module | None, step: int, elapsed_s: float) -> None:
    """Write the state needed to resume after ``step`` optimizer steps; files are replaced atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    tensors, meta = flatten_optimizer_state(optimizer)
    pending = {"model.safetensors": weights_of(model), "optimizer.safetensors": tensors}
    if ema is not None:
        pending["ema.safetensors"] = weights_of(ema)
    for name, values in pending.items():
        save_file(values, str(folder / f"{name}.tmp"))
    (folder / "state.json.tmp").write_text(json.dumps({"step": step, "elapsed_s": elapsed_s, "optimizer": meta}))
    for name in [*pending, "state.json"]:
        (folder / f"{name}.tmp").replace(folder / name)


def load_training_state(folder: pathlib.Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                        ema: torch.nn.Module | None) -> tuple[int, float]:
    """Restore a state written by :func:`save_training_state`; return ``(step, elapsed_s)``."""
    state_path = folder / "state.json"
    if not state_path.is_file():
        raise FileNotFoundError(f"no resumable state in {folder}: {state_path} is missing; start without --resume")
    meta = json.loads(state_path.read_text())
    model.load_state_dict(load_file(str(folder / "model.safetensors")))
    optimizer.load_state_dict(unflatten_optimizer_state(load_file(str(folder / "optimizer.safetensors")),
                                                        meta["optimizer"]))
    if ema is not None:
        ema.load_state_dict(load_file(str(folder / "ema.safetensors")))
    return int(meta["step"]), float(meta["elapsed_s"])
