"""Ground-truth systems: Kuramoto–Sivashinsky, Kolmogorov flow and two-layer QG."""
from __future__ import annotations

import importlib
from typing import Any

from .base import InvalidParameterError, System, SystemParams

SYSTEM_CLASSES = {
    "ks": ("thermalizer_core.systems.ks", "KuramotoSivashinsky"),
    "kolmogorov": ("thermalizer_core.systems.kolmogorov", "KolmogorovFlow"),
    "qg": ("thermalizer_core.systems.qg", "TwoLayerQG"),
}
SYSTEM_NAMES = tuple(SYSTEM_CLASSES)


def system_class(name: str) -> type[System]:
    """Return the System subclass registered as ``name``."""
    if name not in SYSTEM_CLASSES:
        raise InvalidParameterError(f"unknown system {name!r}; choose one of {', '.join(SYSTEM_NAMES)}")
    module_name, class_name = SYSTEM_CLASSES[name]
    return getattr(importlib.import_module(module_name), class_name)


def get_system(name: str, **overrides: Any) -> System:
    """Build the system ``name`` with its default parameters changed by ``overrides``."""
    return system_class(name)(**overrides)


__all__ = ["InvalidParameterError", "System", "SystemParams", "SYSTEM_NAMES", "get_system", "system_class"]
