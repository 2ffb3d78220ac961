"""Training settings, with per-system defaults sized for a 2-core CPU.

A ``--config FILE`` JSON object overrides any field; unknown keys are rejected.
"""
from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any


@dataclasses.dataclass
class EmulatorTrainingConfig:
    """Settings of emulator training. Noise levels are in normalized field units."""

    steps: int = 3000
    batch_size: int = 32
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    #: Emulator steps unrolled in the loss (1 = one-step MSE).
    unroll_steps: int = 1
    #: Standard deviation of Gaussian noise added to the inputs in training only.
    input_noise: float = 0.0
    #: Noise added after every step, in training and in rollouts (0 = deterministic emulator).
    sigma: float = 0.0
    architecture: dict[str, Any] = dataclasses.field(default_factory=dict)
    checkpoint_every: int = 250
    log_every: int = 25
    #: Stop after this many minutes of wall time, even before ``steps`` is reached (None = no limit).
    max_minutes: float | None = None
    seed: int = 0


@dataclasses.dataclass
class ThermalizerTrainingConfig:
    """Settings of thermalizer (diffusion model with level classifier) training."""

    steps: int = 4000
    batch_size: int = 32
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    #: Levels are drawn uniformly from [0, max_level); inference uses only low levels.
    max_level: int = 200
    #: Weight of the level cross-entropy against the noise MSE.
    lambda_ce: float = 0.5
    ema_decay: float = 0.999
    architecture: dict[str, Any] = dataclasses.field(default_factory=dict)
    checkpoint_every: int = 250
    log_every: int = 25
    max_minutes: float | None = None
    seed: int = 0


#: Per-system overrides of the defaults above.
EMULATOR_DEFAULTS: dict[str, dict[str, Any]] = {
    "ks": {"steps": 4000, "batch_size": 64, "unroll_steps": 2, "input_noise": 0.01,
           "architecture": {"base_channels": 32, "channel_mults": [1, 2, 2], "blocks_per_level": 1}},
    "kolmogorov": {"steps": 3000, "batch_size": 16, "unroll_steps": 1, "input_noise": 0.0,
                   "architecture": {"base_channels": 24, "channel_mults": [1, 2, 2], "blocks_per_level": 1}},
    "qg": {"steps": 3000, "batch_size": 16, "unroll_steps": 1, "input_noise": 0.0,
           "architecture": {"base_channels": 24, "channel_mults": [1, 2, 2], "blocks_per_level": 1}},
}
THERMALIZER_DEFAULTS: dict[str, dict[str, Any]] = {
    "ks": {"steps": 6000, "batch_size": 64,
           "architecture": {"base_channels": 32, "channel_mults": [1, 2, 2], "blocks_per_level": 1}},
    "kolmogorov": {"steps": 4000, "batch_size": 16,
                   "architecture": {"base_channels": 24, "channel_mults": [1, 2, 2], "blocks_per_level": 1}},
    "qg": {"steps": 4000, "batch_size": 16,
           "architecture": {"base_channels": 24, "channel_mults": [1, 2, 2], "blocks_per_level": 1}},
}


#: Keys that ``architecture`` may set, per model kind (the keyword arguments of the model classes).
ARCHITECTURE_KEYS = {
    "emulator": ("base_channels", "channel_mults", "blocks_per_level"),
    "thermalizer": ("base_channels", "channel_mults", "blocks_per_level", "classifier_hidden"),
}
#: Settings that must be positive, and those that must be 0 or more.
POSITIVE_SETTINGS = ("steps", "batch_size", "learning_rate", "checkpoint_every", "log_every", "unroll_steps",
                     "max_minutes")
NON_NEGATIVE_SETTINGS = ("weight_decay", "grad_clip", "input_noise", "sigma", "lambda_ce")


def check_config(kind: str, config: EmulatorTrainingConfig | ThermalizerTrainingConfig, source: str) -> None:
    """Raise ValueError naming the first setting of ``config`` with the wrong type or out of range."""
    for setting in dataclasses.fields(config):
        value = getattr(config, setting.name)
        default = setting.default if setting.default is not dataclasses.MISSING else setting.default_factory()
        if default is None or isinstance(default, float):
            valid = (value is None and default is None) or (isinstance(value, (int, float)) and not isinstance(value, bool))
            expected = "a number" + (" or null" if default is None else "")
        elif isinstance(default, int):
            valid, expected = isinstance(value, int) and not isinstance(value, bool), "an integer"
        else:
            valid, expected = isinstance(value, type(default)), f"a JSON {type(default).__name__}"
        if not valid:
            raise ValueError(f"{setting.name} = {value!r} in {source} is invalid: expected {expected}")
        if value is None:
            continue
        if setting.name in POSITIVE_SETTINGS and not value > 0:
            raise ValueError(f"{setting.name} = {value!r} in {source} is out of range: expected a positive value")
        if setting.name in NON_NEGATIVE_SETTINGS and not value >= 0:
            raise ValueError(f"{setting.name} = {value!r} in {source} is out of range: expected 0 or more")
    if isinstance(config, ThermalizerTrainingConfig) and not 0 <= config.ema_decay < 1:
        raise ValueError(f"ema_decay = {config.ema_decay!r} in {source} is out of range: use 0 <= ema_decay < 1")
    unknown = sorted(set(config.architecture) - set(ARCHITECTURE_KEYS[kind]))
    if unknown:
        raise ValueError(f"unknown architecture keys {unknown} in {source}; known keys: {list(ARCHITECTURE_KEYS[kind])}")


def load_config(kind: str, system: str, path: str | pathlib.Path | None) -> EmulatorTrainingConfig | ThermalizerTrainingConfig:
    """Return the settings for ``kind`` on ``system``: defaults, then the JSON file at ``path``.

    Raises ValueError for unknown keys and for values of the wrong type or out of range.
    """
    cls = EmulatorTrainingConfig if kind == "emulator" else ThermalizerTrainingConfig
    defaults = (EMULATOR_DEFAULTS if kind == "emulator" else THERMALIZER_DEFAULTS).get(system, {})
    values = dict(defaults)
    if path is not None:
        overrides = json.loads(pathlib.Path(path).read_text())
        if not isinstance(overrides, dict):
            raise ValueError(f"training config {path} must contain a JSON object")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown keys {unknown} in training config {path}; known keys: {sorted(known)}")
        values.update(overrides)
    config = cls(**values)
    check_config(kind, config, str(path) if path is not None else f"the {system} defaults")
    return config
